"""Memory per document: each engine holding the same 100,000 bench documents.

Each column says how it was measured, because no one method sees every engine:

- livedb and dict: `tracemalloc`'s peak while building the in-memory database (livedb:
  bulk mutations of 10,000 documents; dict: the `DictFloor`) and holding it, divided by
  the document count. tracemalloc sees every Python allocation, msgspec's included; an
  in-memory livedb keeps nothing in C libraries. What stays allocated once loading is
  done (after a collection) is reported too, as `retained_bytes_per_doc`.
- sqlite3 and msgspec: `page_count x page_size` of the `:memory:` database after the
  same inserts: the database image itself. tracemalloc cannot see SQLite's C
  allocations, so it would report next to nothing for them.
- apsw: `apsw.memory_high_water()` across the load, minus what was in use before: every
  allocation of apsw's SQLite library (pages, page-cache headers, schema, statements),
  the strictest count of the three SQLite columns.

The headline ratio is livedb's peak over sqlite3's pages (target: at most 5x).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from livedb import Database

from .core import engine_figures
from .fixtures import (
    SCHEMA,
    DictFloor,
    Sql,
    apsw,
    apsw_engine,
    livedb_count,
    livedb_load,
    msgspec_engine,
    sqlite_engine,
)
from .harness import BYTES, Config, Row, check, workload

BATCH = 10_000


def _traced(build: Callable[[], Any], size: int) -> tuple[int, int]:
    """(peak, retained) bytes that Python allocated while `build()` ran and what it keeps.

    `build` returns what it built (a livedb `Database` or a `DictFloor`); it must hold
    `size` documents.
    """
    gc.collect()
    tracemalloc.start()
    try:
        kept = build()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if isinstance(kept, Database):
        held = livedb_count(kept)
        kept.close()
    else:
        held = len(kept.docs)
    check(held == size, f"memory: {type(kept).__name__} holds {held} of {size} documents")
    return peak, current


def _pages(make: Callable[[], Sql], size: int, channels: int) -> int:
    """Bytes of a `:memory:` database image holding `size` documents."""
    engine = make()
    engine.insert_many(size, channels)
    pages = engine.execute("PRAGMA page_count").fetchone()[0]
    page_size = engine.execute("PRAGMA page_size").fetchone()[0]
    held = engine.count()
    engine.close()
    check(held == size, f"memory: {engine.name} holds {held} of {size} documents")
    return int(pages) * int(page_size)


def _apsw_high_water(size: int, channels: int) -> tuple[int, int]:
    """(peak, retained) bytes apsw's SQLite allocated for a `:memory:` database of `size`."""
    apsw.memory_high_water(True)
    before = apsw.memory_used()
    engine = apsw_engine()
    if engine is None:
        raise RuntimeError("apsw is not installed")
    engine.insert_many(size, channels)
    peak, retained = apsw.memory_high_water() - before, apsw.memory_used() - before
    engine.close()
    return peak, retained


@workload("memory", "memory per document")
def memory(config: Config) -> list[Row]:
    """Bytes per document of each engine holding `config.memory_docs` bench documents."""
    size, channels = config.memory_docs, config.channels

    def build_livedb() -> Database:
        db = Database(SCHEMA)
        livedb_load(db, size, channels, batch=BATCH)
        return db

    def build_floor() -> DictFloor:
        floor = DictFloor()
        floor.insert_many(size, channels)
        return floor

    livedb_peak, livedb_kept = _traced(build_livedb, size)
    floor_peak, floor_kept = _traced(build_floor, size)
    names = ["livedb", "sqlite3"]
    values = [livedb_peak / size, _pages(sqlite_engine, size, channels) / size]
    extra = {"livedb_retained_bytes_per_doc": livedb_kept / size,
             "dict_retained_bytes_per_doc": floor_kept / size}
    if apsw is not None:
        apsw_peak, apsw_kept = _apsw_high_water(size, channels)
        names.append("apsw")
        values.append(apsw_peak / size)
        extra["apsw_retained_bytes_per_doc"] = apsw_kept / size
    names += ["msgspec", "dict"]
    values += [_pages(msgspec_engine, size, channels) / size, floor_peak / size]
    return [Row("memory", f"memory per document ({size:,})", engine_figures(names, values),
                unit=BYTES, target=5.0,
                detail=f"livedb, dict: tracemalloc peak while loading and holding {size:,} "
                       f"documents (retained after: livedb {livedb_kept / size:,.0f} B, dict "
                       f"{floor_kept / size:,.0f} B); sqlite3, msgspec: page_count x "
                       "page_size of :memory:; apsw: apsw.memory_high_water() (all of its "
                       "SQLite's allocations)",
                extra=extra)]
