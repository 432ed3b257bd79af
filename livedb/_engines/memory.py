"""The engine of an in-memory database: nothing is stored, nothing is locked."""

from __future__ import annotations

from collections.abc import Iterator

from . import Commit, StoredRow


class MemoryEngine:
    """No storage: a commit is final as soon as it is applied in memory."""

    location = "memory"
    durable = False
    shared = False

    def load(self) -> Iterator[list[StoredRow]]:
        return iter(())

    def last_time(self) -> float:
        return 0.0

    def write(self, batch: list[Commit]) -> None:
        """Never called (commits of a non-durable engine are visible at once)."""

    def close(self) -> None:
        """Nothing to release."""
