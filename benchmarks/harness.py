"""The workload registry, run configuration, result rows and timing."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

Run = Callable[[], int]
"""One timed repetition: does the work and returns how many operations it did."""

Prepare = Callable[[], Run]
"""Untimed set-up before each repetition (e.g. a fresh database); returns the timed run."""


@dataclass(frozen=True)
class Config:
    """Sizes and timing settings of one benchmark run."""

    smoke: bool
    table_docs: int
    channels: int
    bulk_docs: int
    inserts: int
    gets: int
    takes: int
    rmws: int
    repeats: int
    keep_gc: bool = False

    @classmethod
    def default(cls, keep_gc: bool = False) -> Config:
        return cls(smoke=False, table_docs=100_000, channels=100, bulk_docs=100_000,
                   inserts=20_000, gets=50_000, takes=5_000, rmws=20_000, repeats=5,
                   keep_gc=keep_gc)

    @classmethod
    def tiny(cls, keep_gc: bool = False) -> Config:
        return cls(smoke=True, table_docs=2_000, channels=10, bulk_docs=1_000, inserts=200,
                   gets=200, takes=50, rmws=200, repeats=1, keep_gc=keep_gc)


@dataclass(frozen=True)
class Row:
    """One line of the results table; rates are operations per second."""

    title: str
    livedb: float
    sqlite: float | None
    target: float | None = None
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        """livedb ops/s divided by sqlite3 ops/s."""
        if self.sqlite is None or self.sqlite <= 0:
            return None
        return self.livedb / self.sqlite

    @property
    def met(self) -> bool | None:
        """Whether the ratio reaches the target; None when there is no target."""
        ratio = self.ratio
        if self.target is None or ratio is None:
            return None
        return ratio >= self.target


@dataclass(frozen=True)
class Workload:
    """A registered workload: `run(config)` measures it and returns its rows."""

    key: str
    title: str
    run: Callable[[Config], list[Row]]


REGISTRY: dict[str, Workload] = {}


def workload(key: str, title: str) -> Callable[[Callable[[Config], list[Row]]],
                                                Callable[[Config], list[Row]]]:
    """Register the decorated function as the workload `key`, shown as `title`."""

    def register(run: Callable[[Config], list[Row]]) -> Callable[[Config], list[Row]]:
        if key in REGISTRY:
            raise ValueError(f"workload {key!r} is registered twice")
        REGISTRY[key] = Workload(key, title, run)
        return run

    return register


def timed(run: Run, keep_gc: bool) -> float:
    """Operations per second of one call of `run` (gc off while timing, as timeit does)."""
    gc.collect()
    enabled = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        start = perf_counter()
        ops = run()
        elapsed = perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return ops / elapsed


def best_rates(config: Config, *sides: Prepare) -> list[float]:
    """Best ops/s of each side over `config.repeats` repetitions after one warm-up.

    Sides alternate within each repetition so that drift in machine load hits all alike.
    """
    best = [0.0] * len(sides)
    for repetition in range(config.repeats + 1):
        for position, prepare in enumerate(sides):
            rate = timed(prepare(), config.keep_gc)
            if repetition:
                best[position] = max(best[position], rate)
    return best
