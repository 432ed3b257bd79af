"""Helpers for tests that run several threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_threads(targets: list[Callable[[], object]], timeout: float = 30.0) -> None:
    """Start one thread per target, join them all, and re-raise the first failure."""
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads did not finish in time"
    if errors:
        raise errors[0]
