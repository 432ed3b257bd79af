"""Durable workloads: livedb on a file next to raw sqlite3 WAL files on the same disk.

(a) `durable`: one-document mutations with `durability="full"` and `"normal"` against
sqlite3 single-insert transactions in WAL mode with `synchronous=FULL` and `NORMAL`
(target: livedb full within 1.3x of sqlite3 FULL, a ratio of at least 0.77).
(b) `groupcommit`: four threads committing single inserts with durability "full"
against one thread of sqlite3 FULL (target: more commits per second: group commit lets
concurrent mutations share one sync).
(c) `open`: opening a file of 100,000 documents (loading them and rebuilding indexes)
against sqlite3 opening its file and decoding every row.

Sync costs differ a lot between disks and even from minute to minute on one, so the
runs are time-bounded and the engines alternate, as everywhere in this suite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from itertools import count
from time import perf_counter

from livedb import Database

from .fixtures import (
    SCHEMA,
    SQL_CREATE,
    SQL_INDEX,
    SQL_INSERT,
    insert_many,
    insert_message,
    make_doc,
)
from .harness import Config, Row, Run, best_rates, workload

FULL_TARGET = 1 / 1.3
"""Within 1.3x of sqlite3 FULL: a ratio of at least 0.77."""
WRITERS = 4


def _budget(config: Config) -> float:
    """Seconds each timed repetition of a commit workload runs for."""
    return 0.03 if config.smoke else 0.5


class _Files:
    """Fresh file names in one temporary directory, all removed at the end."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="livedb-bench-")
        self._numbers = count()
        self._open: list[Database | sqlite3.Connection] = []

    def path(self, suffix: str) -> str:
        return os.path.join(self._dir.name, f"{next(self._numbers)}.{suffix}")

    def keep(self, handle: Database | sqlite3.Connection) -> None:
        self._open.append(handle)

    def close(self) -> None:
        for handle in self._open:
            handle.close()
        self._dir.cleanup()


def _sqlite_file(path: str, synchronous: str) -> sqlite3.Connection:
    """A sqlite3 WAL file with the messages table, as an application would set it up."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(SQL_CREATE)
    conn.execute(SQL_INDEX)
    return conn


def _until(budget: float, step: Callable[[int], None]) -> int:
    """Call `step(i)` for i = 0, 1, ... until `budget` seconds have passed; the count."""
    end = perf_counter() + budget
    done = 0
    while perf_counter() < end:
        step(done)
        done += 1
    return done


def _livedb_inserts(files: _Files, durability: str, budget: float, counts: list) -> Run:
    db = Database(SCHEMA, path=files.path("livedb"), durability=durability)
    files.keep(db)

    def run() -> int:
        mutate = db.mutation
        done = _until(budget, lambda i: mutate(insert_message, make_doc(i, 100)))
        counts.append((db, done))
        return done

    return run


def _sqlite_inserts(files: _Files, synchronous: str, budget: float, counts: list) -> Run:
    conn = _sqlite_file(files.path("sqlite"), synchronous)
    files.keep(conn)

    def step(i: int) -> None:
        doc = make_doc(i, 100)
        conn.execute("BEGIN")
        conn.execute(SQL_INSERT, (doc["channel"], json.dumps(doc)))
        conn.execute("COMMIT")

    def run() -> int:
        done = _until(budget, step)
        counts.append((conn, done))
        return done

    return run


def _check_counts(counts: list) -> None:
    """Every acknowledged insert is in its database (checked after the timed runs)."""
    for handle, done in counts:
        if isinstance(handle, Database):
            stored = handle.stats()["documents"]
        else:
            stored = handle.execute("SELECT count(*) FROM messages").fetchone()[0]
        if stored != done:
            raise AssertionError(f"{done} inserts acknowledged, {stored} stored")


@workload("durable", "durable insert")
def durable_insert(config: Config) -> list[Row]:
    """One-document mutations on a file vs sqlite3 WAL transactions, FULL and NORMAL."""
    budget = _budget(config)
    files = _Files()
    rows = []
    try:
        for durability, synchronous in (("full", "FULL"), ("normal", "NORMAL")):
            counts: list = []
            livedb_rate, sqlite_rate = best_rates(
                config,
                lambda d=durability, c=counts: _livedb_inserts(files, d, budget, c),
                lambda s=synchronous, c=counts: _sqlite_inserts(files, s, budget, c))
            _check_counts(counts)
            target = FULL_TARGET if durability == "full" and not config.smoke else None
            rows.append(Row(
                f"durable insert ({durability})", livedb_rate, sqlite_rate, target=target,
                detail=f"durability={durability!r} vs sqlite3 WAL synchronous={synchronous}; "
                       f"{1e6 / livedb_rate:.0f} vs {1e6 / sqlite_rate:.0f} us per commit"
                       + ("; target: within 1.3x of sqlite3 (ratio >= 0.77)"
                          if durability == "full" else "")))
    finally:
        files.close()
    return rows


@workload("groupcommit", "group commit")
def group_commit(config: Config) -> list[Row]:
    """Four threads of durable single-insert mutations vs one thread of sqlite3 FULL."""
    budget = _budget(config)
    files = _Files()
    counts: list = []
    batches: list[float] = []

    def livedb_side() -> Run:
        db = Database(SCHEMA, path=files.path("livedb"), durability="full")
        files.keep(db)
        persist = db._persist
        assert persist is not None
        flushes: list[int] = []
        original = persist._write

        def counting_write(batch: list) -> None:
            flushes.append(len(batch))
            original(batch)

        persist._write = counting_write  # type: ignore[method-assign]

        def run() -> int:
            done = [0] * WRITERS
            start = threading.Barrier(WRITERS + 1)

            def writer(number: int) -> None:
                mutate = db.mutation
                start.wait()
                done[number] = _until(budget, lambda i: mutate(
                    insert_message, make_doc(number * 1_000_000 + i, 100)))

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
            for thread in threads:
                thread.start()
            start.wait()
            for thread in threads:
                thread.join()
            counts.append((db, sum(done)))
            batches.append(sum(flushes) / max(1, len(flushes)))
            flushes.clear()
            return sum(done)

        return run

    try:
        livedb_rate, sqlite_rate = best_rates(
            config, livedb_side, lambda: _sqlite_inserts(files, "FULL", budget, counts))
        _check_counts(counts)
    finally:
        files.close()
    return [Row(f"group commit ({WRITERS} writers, full)", livedb_rate, sqlite_rate,
                target=None if config.smoke else 1.0,
                detail=f"{WRITERS} threads of durable single-insert mutations vs one thread "
                       f"of sqlite3 synchronous=FULL; {max(batches):.1f} commits per sync at "
                       "best (target: more commits/s than sqlite3)")]


@workload("open", "open")
def open_file(config: Config) -> list[Row]:
    """Open (load every document, rebuild indexes) vs sqlite3 reading every row."""
    size = config.table_docs
    files = _Files()
    try:
        livedb_path = files.path("livedb")
        with Database(SCHEMA, path=livedb_path, durability="normal") as db:
            db.mutation(insert_many, {"count": size, "channels": config.channels})
        sqlite_path = files.path("sqlite")
        conn = _sqlite_file(sqlite_path, "NORMAL")
        with conn:
            conn.executemany(SQL_INSERT, ((doc["channel"], json.dumps(doc)) for doc in
                                          (make_doc(i, config.channels) for i in range(size))))
        conn.close()
        opened: list[Database] = []

        def livedb_side() -> Run:
            for db in opened:
                db.close()
            opened.clear()

            def run() -> int:
                opened.append(Database(SCHEMA, path=livedb_path))
                return size

            return run

        def sqlite_side() -> Run:
            def run() -> int:
                conn = sqlite3.connect(sqlite_path)
                loads = json.loads
                docs = [loads(text) for (text,) in conn.execute("SELECT data FROM messages")]
                conn.close()
                return len(docs)

            return run

        livedb_rate, sqlite_rate = best_rates(config, livedb_side, sqlite_side)
        stored = opened[-1].stats()["documents"]
        for db in opened:
            db.close()
        if stored != size:
            raise AssertionError(f"opened {stored} of {size} documents")
    finally:
        files.close()
    return [Row(f"open {size:,} documents", livedb_rate, sqlite_rate,
                detail=f"{size / livedb_rate:.2f} s to open (load and index) {size:,} "
                       f"documents, {100_000 / livedb_rate:.2f} s per 100k; sqlite3 reads "
                       f"and decodes every row in {size / sqlite_rate:.2f} s")]
