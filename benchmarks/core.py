"""The core workloads: single inserts, bulk insert, point get, take(20), read-modify-write.

Each runs on every engine of `fixtures` (livedb, sqlite3, apsw, msgspec, the dict
floor) in one process, alternating engines repetition by repetition; the headline is
livedb's time per operation over sqlite3's. Each workload checks, outside the timed
loops, that every engine gave the same answers, so a broken side fails the run instead
of producing a fast wrong figure.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from livedb import Database

from .fixtures import (
    SCHEMA,
    SQL_GET,
    SQL_INSERT,
    SQL_LATEST,
    SQL_UPDATE,
    DictFloor,
    Sql,
    bump_counter,
    channel_name,
    get_message,
    insert_many,
    insert_message,
    latest_in_channel,
    livedb_count,
    loaded,
    make_doc,
    missing_engines,
    sql_factories,
    user_fields,
)
from .harness import Config, Figure, Prepare, Row, Run, best_times, check, workload

SEED = 20240601


def engine_figures(names: list[str], seconds: list[float]) -> dict[str, Figure]:
    """Figures keyed by engine, with the reason for every engine that could not run."""
    figures: dict[str, Figure] = dict(zip(names, seconds, strict=True))
    figures.update(missing_engines())
    return figures


def _same(what: str, answers: dict[str, Any]) -> None:
    """Every engine's answer equals livedb's (compared without system fields)."""
    def plain(answer: Any) -> Any:
        if answer is None:
            return None
        if isinstance(answer, list):
            return [user_fields(doc) for doc in answer]
        return user_fields(answer)

    mine = plain(answers["livedb"])
    for engine, answer in answers.items():
        check(plain(answer) == mine,
              f"{what}: {engine} answered {answer!r}, livedb {answers['livedb']!r}")


def _close(handle: Database | Sql | None) -> None:
    """Close the previous repetition's database before the next one is made."""
    if handle is not None:
        handle.close()


@workload("insert", "single insert")
def single_insert(config: Config) -> list[Row]:
    """One transaction per inserted document, into fresh tables each repetition."""
    docs = [make_doc(i, config.channels) for i in range(config.inserts)]
    latest: dict[str, Any] = {}

    def livedb_side() -> Run:
        _close(latest.pop("livedb", None))
        db = latest["livedb"] = Database(SCHEMA)

        def run() -> int:
            mutate = db.mutation
            for doc in docs:
                mutate(insert_message, doc)
            return len(docs)

        return run

    def sql_side(name: str, make: Callable[[], Sql]) -> Prepare:
        def prepare() -> Run:
            _close(latest.pop(name, None))
            engine = latest[name] = make()

            def run() -> int:
                conn, execute, dumps = engine.conn, engine.conn.execute, engine.dumps
                for doc in docs:
                    with conn:
                        execute(SQL_INSERT, (doc["channel"], dumps(doc)))
                return len(docs)

            return run

        return prepare

    def dict_side() -> Run:
        floor = latest["dict"] = DictFloor()

        def run() -> int:
            stored, by_channel, clock = floor.docs, floor.by_channel, time.time
            doc_id = floor.next_id
            for doc in docs:
                stored[doc_id] = {**doc, "_id": doc_id, "_creation_time": clock()}
                channel = doc["channel"]
                ids = by_channel.get(channel)
                if ids is None:
                    by_channel[channel] = [doc_id]
                else:
                    ids.append(doc_id)
                doc_id += 1
            floor.next_id = doc_id
            return len(docs)

        return run

    sql = sql_factories()
    names = ["livedb", *(name for name, _ in sql), "dict"]
    seconds = best_times(config, livedb_side, *(sql_side(n, m) for n, m in sql), dict_side)
    counts = {"livedb": livedb_count(latest["livedb"]), "dict": len(latest["dict"].docs)}
    counts.update((name, latest[name].count()) for name, _ in sql)
    check(set(counts.values()) == {len(docs)},
          f"single insert: expected {len(docs)} documents in each engine, found {counts}")
    return [Row("insert", "single insert", engine_figures(names, seconds), target=1.3,
                detail=f"{len(docs):,} one-document transactions into an empty table")]


@workload("bulk", "bulk insert")
def bulk_insert(config: Config) -> list[Row]:
    """One transaction inserting `bulk_docs` documents; an operation is one document."""
    count, channels = config.bulk_docs, config.channels
    latest: dict[str, Any] = {}

    def livedb_side() -> Run:
        _close(latest.pop("livedb", None))
        db = latest["livedb"] = Database(SCHEMA)

        def run() -> int:
            db.mutation(insert_many, {"count": count, "channels": channels})
            return count

        return run

    def sql_side(name: str, make: Callable[[], Sql]) -> Prepare:
        def prepare() -> Run:
            _close(latest.pop(name, None))
            engine = latest[name] = make()

            def run() -> int:
                engine.insert_many(count, channels)
                return count

            return run

        return prepare

    def dict_side() -> Run:
        floor = latest["dict"] = DictFloor()

        def run() -> int:
            floor.insert_many(count, channels)
            return count

        return run

    sql = sql_factories()
    names = ["livedb", *(name for name, _ in sql), "dict"]
    seconds = best_times(config, livedb_side, *(sql_side(n, m) for n, m in sql), dict_side)
    counts = {"livedb": livedb_count(latest["livedb"]), "dict": len(latest["dict"].docs)}
    counts.update((name, latest[name].count()) for name, _ in sql)
    check(set(counts.values()) == {count},
          f"bulk insert: expected {count} documents in each engine, found {counts}")
    return [Row("bulk", "bulk insert", engine_figures(names, seconds),
                detail=f"one transaction of {count:,} inserts (SQL: executemany); "
                       "time per document")]


@workload("get", "point get")
def point_get(config: Config) -> list[Row]:
    """`db.query(get_message, {"id": ...})` at random ids vs SELECT by primary key."""
    data = loaded(config.table_docs, config.channels)
    rng = random.Random(SEED)
    picks = [rng.randrange(data.size) for _ in range(config.gets)]
    ids = [data.ids[i] for i in picks]
    rowids = [i + 1 for i in picks]
    db, floor = data.db, data.floor
    for doc_id, rowid in zip(ids[:100], rowids[:100], strict=True):
        answers: dict[str, Any] = {"livedb": db.query(get_message, {"id": doc_id}),
                                   "dict": floor.get(rowid)}
        answers.update((engine.name, engine.get(rowid)) for engine in data.sql)
        check(answers["livedb"] is not None, f"point get: livedb lost document {doc_id}")
        _same("point get", answers)

    def livedb_run() -> int:
        run_query = db.query
        for doc_id in ids:
            run_query(get_message, {"id": doc_id})
        return len(ids)

    def sql_side(engine: Sql) -> Prepare:
        def run() -> int:
            execute, loads = engine.conn.execute, engine.loads
            for rowid in rowids:
                loads(execute(SQL_GET, (rowid,)).fetchone()[0])
            return len(rowids)

        return lambda: run

    def dict_run() -> int:
        docs = floor.docs
        for rowid in rowids:
            docs[rowid].copy()
        return len(rowids)

    names = ["livedb", *(engine.name for engine in data.sql), "dict"]
    seconds = best_times(config, lambda: livedb_run, *(sql_side(e) for e in data.sql),
                         lambda: dict_run)
    return [Row("get", "point get", engine_figures(names, seconds), target=0.9,
                detail=f"a query function returning ctx.db.get(id) at random ids over "
                       f"{data.size:,} documents; SQL: SELECT by primary key + decode")]


@workload("take", "eq + desc + take(20)")
def take_20(config: Config) -> list[Row]:
    """The 20 newest documents of a random channel through the `by_channel` index."""
    data = loaded(config.table_docs, config.channels)
    rng = random.Random(SEED + 1)
    channels = [channel_name(rng.randrange(data.channels)) for _ in range(config.takes)]
    db, floor = data.db, data.floor
    for channel in channels[:20]:
        answers: dict[str, Any] = {"livedb": db.query(latest_in_channel, {"channel": channel}),
                                   "dict": floor.latest(channel)}
        answers.update((engine.name, engine.latest(channel)) for engine in data.sql)
        check(len(answers["livedb"]) == min(20, data.size // data.channels),
              f"take(20): livedb returned {len(answers['livedb'])} documents")
        _same(f"take(20) in {channel!r}", answers)

    def livedb_run() -> int:
        run_query = db.query
        for channel in channels:
            run_query(latest_in_channel, {"channel": channel})
        return len(channels)

    def sql_side(engine: Sql) -> Prepare:
        def run() -> int:
            execute, loads = engine.conn.execute, engine.loads
            for channel in channels:
                [loads(data) for (data,) in execute(SQL_LATEST, (channel,))]
            return len(channels)

        return lambda: run

    def dict_run() -> int:
        docs, by_channel = floor.docs, floor.by_channel
        for channel in channels:
            [docs[i].copy() for i in reversed(by_channel[channel][-20:])]
        return len(channels)

    names = ["livedb", *(engine.name for engine in data.sql), "dict"]
    seconds = best_times(config, lambda: livedb_run, *(sql_side(e) for e in data.sql),
                         lambda: dict_run)
    return [Row("take", "eq + desc + take(20)", engine_figures(names, seconds), target=0.6,
                detail=f"with_index eq + order desc + take(20); {data.channels} channels, "
                       f"{data.size:,} documents; SQL: WHERE channel = ? ORDER BY id DESC "
                       "LIMIT 20 + decode")]


@workload("rmw", "read-modify-write")
def read_modify_write(config: Config) -> list[Row]:
    """Get a document, add one to its counter and write it back, in one transaction.

    Under sqlite3's default isolation level `with conn:` begins the transaction at the
    UPDATE, not the SELECT; with one connection and one thread that changes nothing
    here, and it is the cheaper form for sqlite3. Every engine runs the same number of
    repetitions, so their counters agree afterwards.
    """
    data = loaded(config.table_docs, config.channels)
    rng = random.Random(SEED + 2)
    picks = [rng.randrange(data.size) for _ in range(config.rmws)]
    ids = [data.ids[i] for i in picks]
    rowids = [i + 1 for i in picks]
    db, floor = data.db, data.floor

    def livedb_run() -> int:
        mutate = db.mutation
        for doc_id in ids:
            mutate(bump_counter, {"id": doc_id})
        return len(ids)

    def sql_side(engine: Sql) -> Prepare:
        def run() -> int:
            conn, execute, loads, dumps = engine.conn, engine.conn.execute, engine.loads, \
                engine.dumps
            for rowid in rowids:
                with conn:
                    doc = loads(execute(SQL_GET, (rowid,)).fetchone()[0])
                    doc["n"] += 1
                    execute(SQL_UPDATE, (dumps(doc), rowid))
            return len(rowids)

        return lambda: run

    def dict_run() -> int:
        docs = floor.docs
        for rowid in rowids:
            doc = docs[rowid].copy()
            docs[rowid] = {**doc, "n": doc["n"] + 1}
        return len(rowids)

    names = ["livedb", *(engine.name for engine in data.sql), "dict"]
    seconds = best_times(config, lambda: livedb_run, *(sql_side(e) for e in data.sql),
                         lambda: dict_run)
    for doc_id, rowid in zip(ids[:100], rowids[:100], strict=True):
        answers: dict[str, Any] = {"livedb": db.query(get_message, {"id": doc_id}),
                                   "dict": floor.get(rowid)}
        answers.update((engine.name, engine.get(rowid)) for engine in data.sql)
        _same("read-modify-write", answers)
    return [Row("rmw", "read-modify-write", engine_figures(names, seconds), target=0.9,
                detail="a mutation: get + patch(n + 1) at random ids; SQL: SELECT, decode, "
                       "UPDATE in one transaction")]
