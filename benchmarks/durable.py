"""Durable workloads: livedb on a file next to SQLite WAL files on the same disk.

(a) `durable`: one-document mutations with `durability="full"` and `"normal"` against
single-insert transactions (`BEGIN; INSERT; COMMIT`) in WAL mode with
`synchronous=FULL` and `NORMAL` on sqlite3 (JSON), apsw (the same SQL and JSON) and
sqlite3 storing msgpack; the dict floor appends the msgpack document to a plain file and
calls `fdatasync` for "full" (just the write for "normal"). Target: livedb full within
1.1x of sqlite3 FULL.
(b) `groupcommit`: four threads committing single inserts with durability "full"
against one thread of sqlite3 FULL (target: less time per commit: group commit lets
concurrent mutations share one sync).
(c) `open`: opening a livedb file of 100,000 and of 1,000,000 documents (loading them and
rebuilding indexes: `Database(schema, path=...)` until it returns) against opening a
SQLite file of the same documents and reading and decoding every row (`json.loads`;
msgpack for the msgspec column; apsw reads the sqlite3 file); the dict floor reads one
msgpack file of all documents and decodes it in one call. The files are built once per
run in a temporary directory, livedb's by bulk mutations of 50,000 documents. Target:
1M documents within 2.5x of sqlite3. `--skip-1m` leaves the 1M case out; `--smoke` opens
2,000 documents.

A sync's cost swings by 10x from one second to the next on shared or virtual disks, so
best-of-N runs compare one engine's lucky second with another's unlucky one. Commit
workloads are therefore interleaved: (a) alternates engines commit by commit, (b) in
short rounds, and each figure is all the time that engine spent over all its commits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from time import perf_counter
from typing import Any

from livedb import Database

from .core import engine_figures
from .fixtures import (
    MSGPACK_DECODE,
    MSGPACK_ENCODE,
    SCHEMA,
    SQL_ALL,
    SQL_COUNT,
    SQL_CREATE,
    SQL_CREATE_BLOB,
    SQL_INDEX,
    SQL_INSERT,
    DictFloor,
    apsw,
    insert_message,
    livedb_count,
    livedb_load,
    make_doc,
)
from .harness import (
    SECONDS,
    Config,
    GcState,
    Prepare,
    Row,
    Run,
    Untimed,
    best_times,
    check,
    workload,
)

WRITERS = 4
Step = Callable[[int], None]


class _Files:
    """Fresh file names in one temporary directory, all removed at the end."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="livedb-bench-")
        self._numbers = count()
        self._open: list[Any] = []

    def path(self, suffix: str) -> str:
        return os.path.join(self._dir.name, f"{next(self._numbers)}.{suffix}")

    def livedb(self, durability: str) -> Database:
        db = Database(SCHEMA, path=self.path("livedb"), durability=durability)
        self._open.append(db)
        return db

    def sqlite(self, synchronous: str, blob: bool = False) -> sqlite3.Connection:
        """A sqlite3 WAL file with the messages table, as an application would set it up."""
        conn = sqlite3.connect(self.path("sqlite"), isolation_level=None,
                               check_same_thread=False)
        self._setup(conn, synchronous, blob)
        return conn

    def apsw(self, synchronous: str) -> Any:
        """The same as `sqlite` on apsw."""
        conn = apsw.Connection(self.path("apsw"))
        self._setup(conn, synchronous, False)
        return conn

    def _setup(self, conn: Any, synchronous: str, blob: bool) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(SQL_CREATE_BLOB if blob else SQL_CREATE)
        conn.execute(SQL_INDEX)
        self._open.append(conn)

    def floor(self) -> _FileFloor:
        floor = _FileFloor(self.path("floor"))
        self._open.append(floor)
        return floor

    def close(self) -> None:
        for handle in self._open:
            handle.close()
        self._dir.cleanup()


class _FileFloor:
    """The durable floor: a `DictFloor` plus an append-only file of msgpack documents."""

    def __init__(self, path: str) -> None:
        self.floor = DictFloor()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def step(self, sync: bool) -> Step:
        insert, docs, fd, write = self.floor.insert, self.floor.docs, self.fd, os.write
        encode = MSGPACK_ENCODE
        flush = getattr(os, "fdatasync", os.fsync)

        def step(i: int) -> None:
            write(fd, encode(docs[insert(make_doc(i, 100))]))
            if sync:
                flush(fd)

        return step

    def close(self) -> None:
        os.close(self.fd)


def _livedb_step(db: Database) -> Step:
    mutate = db.mutation
    return lambda i: mutate(insert_message, make_doc(i, 100))


def _sql_step(conn: Any, dumps: Callable[[Any], Any]) -> Step:
    execute = conn.execute

    def step(i: int) -> None:
        doc = make_doc(i, 100)
        execute("BEGIN")
        execute(SQL_INSERT, (doc["channel"], dumps(doc)))
        execute("COMMIT")

    return step


def _sql_count(conn: Any) -> int:
    return int(conn.execute(SQL_COUNT).fetchone()[0])


def _interleaved(config: Config, seconds: float, *steps: Step) -> tuple[list[float], int]:
    """Seconds per commit of each step, run in turn commit by commit for `seconds` in all."""
    for i in range(3):
        for step in steps:
            step(-1 - i)
    spent = [0.0] * len(steps)
    done = 0
    with GcState(config):
        end = perf_counter() + seconds
        while perf_counter() < end:
            for position, step in enumerate(steps):
                start = perf_counter()
                step(done)
                spent[position] += perf_counter() - start
            done += 1
    return [s / done for s in spent], done + 3


@workload("durable", "durable insert")
def durable_insert(config: Config) -> list[Row]:
    """One-document durable commits: livedb, SQLite WAL (three ways) and the file floor."""
    seconds = 0.1 if config.smoke else 8.0
    files = _Files()
    rows = []
    try:
        for durability, synchronous in (("full", "FULL"), ("normal", "NORMAL")):
            db = files.livedb(durability)
            conns = {"sqlite3": files.sqlite(synchronous)}
            if apsw is not None:
                conns["apsw"] = files.apsw(synchronous)
            conns["msgspec"] = files.sqlite(synchronous, blob=True)
            floor = files.floor()
            steps = [_livedb_step(db),
                     *(_sql_step(conn, MSGPACK_ENCODE if name == "msgspec" else json.dumps)
                       for name, conn in conns.items()),
                     floor.step(durability == "full")]
            costs, commits = _interleaved(config, seconds, *steps)
            stored = {"livedb": livedb_count(db), "dict": len(floor.floor.docs)}
            stored.update((name, _sql_count(conn)) for name, conn in conns.items())
            check(set(stored.values()) == {commits},
                  f"durable insert: {commits} commits acknowledged, stored: {stored}")
            full = durability == "full"
            rows.append(Row(
                f"durable-{durability}", f"durable insert ({durability})",
                engine_figures(["livedb", *conns, "dict"], costs),
                target=1.1 if full else None,
                detail=f"durability={durability!r} vs WAL synchronous={synchronous}, "
                       f"{commits:,} commits each, engines alternating commit by commit; "
                       f"dict: append to a file{' + fdatasync' if full else ''}",
                extra={"commits": float(commits)}))
    finally:
        files.close()
    return rows


def _rounds(config: Config, rounds: int, seconds: float,
            *sides: Callable[[float], int]) -> list[float]:
    """Seconds per commit of each side, run in turn for `seconds` per round."""
    done = [0] * len(sides)
    spent = [0.0] * len(sides)
    with GcState(config):
        for _ in range(rounds):
            for position, side in enumerate(sides):
                start = perf_counter()
                done[position] += side(seconds)
                spent[position] += perf_counter() - start
    return [s / d for d, s in zip(done, spent, strict=True)]


def _until(seconds: float, step: Step, first: int = 0) -> int:
    """Call `step(first + i)` for i = 0, 1, ... until `seconds` have passed; the count."""
    end = perf_counter() + seconds
    done = 0
    while perf_counter() < end:
        step(first + done)
        done += 1
    return done


@workload("groupcommit", "group commit")
def group_commit(config: Config) -> list[Row]:
    """Four threads of durable single-insert mutations vs one thread of sqlite3 FULL."""
    files = _Files()
    db, conn = files.livedb("full"), files.sqlite("FULL")
    totals = {"livedb": 0, "sqlite": 0}

    def livedb_side(seconds: float) -> int:
        done = [0] * WRITERS
        start = threading.Barrier(WRITERS)
        base = totals["livedb"]

        def writer(number: int) -> None:
            step = _livedb_step(db)
            start.wait()
            done[number] = _until(seconds, step, base + number * 1_000_000)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        totals["livedb"] += sum(done)
        return sum(done)

    def sqlite_side(seconds: float) -> int:
        done = _until(seconds, _sql_step(conn, json.dumps), totals["sqlite"])
        totals["sqlite"] += done
        return done

    try:
        rounds, seconds = (2, 0.03) if config.smoke else (12, 0.4)
        livedb_cost, sqlite_cost = _rounds(config, rounds, seconds, livedb_side, sqlite_side)
        check(livedb_count(db) == totals["livedb"],
              f"group commit: {totals['livedb']} acknowledged, {livedb_count(db)} stored")
        check(_sql_count(conn) == totals["sqlite"], "group commit: sqlite3 lost a commit")
    finally:
        files.close()
    return [Row("groupcommit", f"group commit ({WRITERS} writers, full)",
                {"livedb": livedb_cost, "sqlite3": sqlite_cost},
                target=1.0,
                detail=f"{WRITERS} threads of durable single-insert mutations (time per commit "
                       f"= wall time / all threads' commits) vs one thread of sqlite3 "
                       f"synchronous=FULL, {rounds} alternating rounds of {seconds} s")]


def _build_files(files: _Files, size: int, channels: int) -> tuple[dict[str, str], float]:
    """Every engine's file holding `size` documents; the paths and livedb's build time."""
    paths = {"livedb": files.path("livedb"), "sqlite3": files.path("sqlite"),
             "msgspec": files.path("sqlite"), "dict": files.path("msgpack")}
    started = perf_counter()
    with Database(SCHEMA, path=paths["livedb"], durability="normal") as db:
        livedb_load(db, size, channels)
    built = perf_counter() - started
    for name, blob, dumps in (("sqlite3", False, json.dumps),
                              ("msgspec", True, MSGPACK_ENCODE)):
        conn = sqlite3.connect(paths[name], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SQL_CREATE_BLOB if blob else SQL_CREATE)
        conn.execute(SQL_INDEX)
        conn.execute("BEGIN")
        conn.executemany(SQL_INSERT, ((doc["channel"], dumps(doc)) for doc in
                                      (make_doc(i, channels) for i in range(size))))
        conn.execute("COMMIT")
        conn.close()
    floor = DictFloor()
    floor.insert_many(size, channels)
    Path(paths["dict"]).write_bytes(MSGPACK_ENCODE(list(floor.docs.values())))
    return paths, built


def _read_all(connect: Callable[[str], Any], path: str, loads: Callable[[Any], Any],
              size: int) -> Prepare:
    """Open the SQLite file, read and decode every row, close: one timed operation."""
    def run() -> int:
        conn = connect(path)
        docs = [loads(data) for (data,) in conn.execute(SQL_ALL)]
        conn.close()
        check(len(docs) == size, f"open: read {len(docs)} of {size} rows")
        return 1

    return lambda: run


def _open_row(config: Config, files: _Files, size: int) -> Row:
    """One row of `open`: the files built, then each engine's best time to open them."""
    started = time.perf_counter()
    with Untimed():
        paths, built = _build_files(files, size, config.channels)
    build_seconds = time.perf_counter() - started
    opened: list[Database] = []

    def livedb_side() -> Run:
        for db in opened:
            db.close()
        opened.clear()

        def run() -> int:
            opened.append(Database(SCHEMA, path=paths["livedb"]))
            return 1

        return run

    def dict_side() -> Run:
        def run() -> int:
            docs = MSGPACK_DECODE(Path(paths["dict"]).read_bytes())
            check(len(docs) == size, f"open: the floor decoded {len(docs)} of {size}")
            return 1

        return run

    sides: list[tuple[str, Prepare]] = [
        ("livedb", livedb_side),
        ("sqlite3", _read_all(sqlite3.connect, paths["sqlite3"], json.loads, size))]
    if apsw is not None:
        sides.append(("apsw", _read_all(apsw.Connection, paths["sqlite3"], json.loads, size)))
    sides += [("msgspec", _read_all(sqlite3.connect, paths["msgspec"], MSGPACK_DECODE, size)),
              ("dict", dict_side)]
    repeats = min(config.repeats, 2) if size >= 1_000_000 else config.repeats
    costs = best_times(config, *(prepare for _, prepare in sides), repeats=repeats)
    stored = livedb_count(opened[-1])
    for db in opened:
        db.close()
    check(stored == size, f"open: livedb holds {stored} of {size} documents")
    return Row(f"open-{size}", f"open {size:,} documents",
               engine_figures([name for name, _ in sides], costs), unit=SECONDS,
               target=2.5 if size >= 1_000_000 else None,
               detail=f"open a file of {size:,} documents and hold them as dicts (livedb: "
                      f"load + rebuild indexes); SQL: connect + SELECT every row + decode; "
                      f"best of {repeats}; files built in {build_seconds:.1f} s (livedb's in "
                      f"{built:.1f} s)",
               extra={"build_seconds": build_seconds})


@workload("open", "open")
def open_file(config: Config) -> list[Row]:
    """Open (load every document, rebuild indexes) vs reading and decoding every row."""
    rows = []
    for size in config.open_sizes:
        files = _Files()
        try:
            rows.append(_open_row(config, files, size))
        finally:
            files.close()
    return rows
