"""The workload registry, run configuration, result rows and timing.

Every figure is a cost, so lower is better: seconds per operation for timed workloads,
bytes per document for memory. A row holds one figure per engine ("livedb", "sqlite3",
"apsw", "msgspec", "dict", or a workload's own reference such as "no subscriptions")
and names the figure its headline ratio divides livedb's by: the row's *baseline*.
`ratio = livedb / baseline`; a target is the largest ratio that meets it (0.9 means
livedb must take at most 90% of sqlite3's time).

Timing: each side is prepared untimed (e.g. a fresh database), then timed once per
repetition; sides alternate within a repetition so that drift in machine load hits all
alike, the first repetition is a warm-up, and a side's figure is its best (lowest) time
per operation. The cyclic garbage collector stays on while timing, as in real
applications (each timing starts from a `gc.collect()` so no side inherits another's
garbage); `Config.gc_off` turns it off for diagnosis.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter

Run = Callable[[], int]
"""One timed repetition: does the work and returns how many operations it did."""

Prepare = Callable[[], Run]
"""Untimed set-up before each repetition (e.g. a fresh database); returns the timed run."""

Figure = float | str
"""An engine's figure in a row's unit, or the reason it has none (e.g. not installed)."""

ENGINES: tuple[str, ...] = ("livedb", "sqlite3", "apsw", "msgspec", "dict")
"""The engine columns of the table, in order."""

ENGINE_NOTES: dict[str, str] = {
    "livedb": "livedb through its public API (query/mutation functions, documents as dicts)",
    "sqlite3": "stdlib sqlite3, `:memory:` (files for durable rows): JSON text documents "
               "and an indexed channel column; every returned row decoded with json.loads",
    "apsw": "apsw (its own bundled SQLite) running the same SQL on the same JSON documents",
    "msgspec": "stdlib sqlite3 storing msgpack blobs (msgspec Encoder/Decoder) instead of "
               "JSON, same SQL",
    "dict": "floor: the same logical operation on plain Python dicts and lists (a dict of "
            "documents by id, a list of ids per channel), copying as livedb must: reads "
            "return a copy, writes store one",
}

TIME = "s/op"
"""Unit of timed rows: seconds per operation (shown in ns, us, ms or s)."""
BYTES = "B/doc"
"""Unit of memory rows: bytes per document."""
SECONDS = "s"
"""Unit of rows timing one whole operation such as opening a file."""


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
    gc_off: bool = False
    open_sizes: tuple[int, ...] = (100_000, 1_000_000)
    memory_docs: int = 100_000

    @classmethod
    def default(cls, gc_off: bool = False, skip_1m: bool = False) -> Config:
        """The full run: 100k-document tables, best of 5, open 100k and 1M documents."""
        return cls(smoke=False, table_docs=100_000, channels=100, bulk_docs=100_000,
                   inserts=20_000, gets=50_000, takes=5_000, rmws=20_000, repeats=5,
                   gc_off=gc_off,
                   open_sizes=(100_000,) if skip_1m else (100_000, 1_000_000))

    @classmethod
    def tiny(cls, gc_off: bool = False) -> Config:
        """The smoke run: every workload tiny, one repetition; figures meaningless."""
        return cls(smoke=True, table_docs=2_000, channels=10, bulk_docs=1_000, inserts=200,
                   gets=200, takes=50, rmws=200, repeats=1, gc_off=gc_off,
                   open_sizes=(2_000,), memory_docs=2_000)


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    `key` is stable across runs (`compare` matches rows by it); `figures` maps an engine
    (or a reference such as "no subscriptions") to its cost in `unit`, or to the reason
    it has none; `baseline` names the figure the ratio divides livedb's by; `target` is
    the largest ratio that meets the goal; `extra` holds further machine-readable facts
    (re-runs per commit, retained bytes...).
    """

    key: str
    title: str
    figures: Mapping[str, Figure]
    unit: str = TIME
    baseline: str = "sqlite3"
    target: float | None = None
    detail: str = ""
    extra: Mapping[str, float] = field(default_factory=dict)

    def value(self, engine: str) -> float | None:
        """The engine's figure, or None when it has none."""
        figure = self.figures.get(engine)
        return figure if isinstance(figure, float | int) else None

    @property
    def ratio(self) -> float | None:
        """livedb's figure divided by the baseline's (lower is better)."""
        mine, base = self.value("livedb"), self.value(self.baseline)
        if mine is None or base is None or base <= 0:
            return None
        return mine / base

    @property
    def met(self) -> bool | None:
        """Whether the ratio is within the target; None when there is no target."""
        ratio = self.ratio
        if self.target is None or ratio is None:
            return None
        return ratio <= self.target


Measure = Callable[[Config], list[Row]]


@dataclass(frozen=True)
class Workload:
    """A registered workload: `run(config)` measures it and returns its rows."""

    key: str
    title: str
    group: str
    run: Measure


REGISTRY: dict[str, Workload] = {}


def workload(key: str, title: str, group: str | None = None) -> Callable[[Measure], Measure]:
    """Register the decorated function as the workload `key`, shown as `title`.

    `group` defaults to the defining module's name without the package (a workload in
    `benchmarks/shared.py` is in group "shared"); `--only GROUP` runs a whole group.
    """

    def register(run: Measure) -> Measure:
        if key in REGISTRY:
            raise ValueError(f"workload {key!r} is registered twice")
        REGISTRY[key] = Workload(key, title, group or run.__module__.rsplit(".", 1)[-1], run)
        return run

    return register


def timed(run: Run, gc_off: bool) -> float:
    """Seconds per operation of one call of `run`.

    The collector is collected first (no side pays for another's garbage) and stays on
    while timing unless `gc_off`.
    """
    gc.collect()
    enabled = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        start = perf_counter()
        ops = run()
        elapsed = perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed / ops


def best_times(config: Config, *sides: Prepare, repeats: int | None = None) -> list[float]:
    """Best (lowest) seconds per operation of each side over the repetitions.

    `repeats` (default `config.repeats`) timed repetitions follow one warm-up; sides
    alternate within each repetition.
    """
    count = config.repeats if repeats is None else repeats
    best = [float("inf")] * len(sides)
    for repetition in range(count + 1):
        for position, prepare in enumerate(sides):
            seconds = timed(prepare(), config.gc_off)
            if repetition:
                best[position] = min(best[position], seconds)
    return best


class GcState:
    """Context manager: collect, then leave the collector on (or off with `gc_off`).

    For workloads that time themselves (interleaved commits) instead of `best_times`.
    """

    def __init__(self, config: Config) -> None:
        self.gc_off = config.gc_off
        self.enabled = gc.isenabled()

    def __enter__(self) -> None:
        gc.collect()
        self.enabled = gc.isenabled()
        if self.gc_off:
            gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            gc.enable()


class Untimed:
    """Context manager for untimed set-up (building tables and files): the collector off.

    A large build with the collector on spends most of its time in full collections;
    none of it is measured, so it runs without, and a collection follows.
    """

    def __enter__(self) -> None:
        self.enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            gc.enable()
        gc.collect()


def check(condition: bool, message: str) -> None:
    """Fail the run with `message` unless `condition`: a wrong answer is no figure."""
    if not condition:
        raise AssertionError(message)
