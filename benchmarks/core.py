"""The core workloads: single inserts, bulk insert, point get, take(20), read-modify-write.

Each workload checks once, outside the timed loops, that both engines gave the same
answers, so a broken side fails the run instead of producing a fast wrong figure.
"""

from __future__ import annotations

import json
import random
import sqlite3
from typing import Any

from livedb import Database

from .fixtures import (
    SCHEMA,
    SQL_GET,
    SQL_INSERT,
    SQL_LATEST,
    SQL_UPDATE,
    bump_counter,
    channel_name,
    get_message,
    insert_many,
    insert_message,
    latest_in_channel,
    livedb_ids,
    loaded,
    make_doc,
    sqlite_connect,
    sqlite_get,
    sqlite_insert_many,
    sqlite_latest,
    user_fields,
)
from .harness import Config, Row, Run, best_rates, workload

SEED = 20240601


def _count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _check_counts(db: Database, conn: sqlite3.Connection, expected: int, what: str) -> None:
    in_livedb, in_sqlite = len(livedb_ids(db)), _count(conn)
    _check(in_livedb == in_sqlite == expected,
           f"{what}: expected {expected} documents, livedb has {in_livedb}, "
           f"sqlite3 {in_sqlite}")


@workload("insert", "single insert")
def single_insert(config: Config) -> list[Row]:
    """One transaction per inserted document, into fresh tables each repetition."""
    docs = [make_doc(i, config.channels) for i in range(config.inserts)]
    latest: dict[str, Any] = {}

    def livedb_side() -> Run:
        db = latest["db"] = Database(SCHEMA)

        def run() -> int:
            mutate = db.mutation
            for doc in docs:
                mutate(insert_message, doc)
            return len(docs)

        return run

    def sqlite_side() -> Run:
        conn = latest["conn"] = sqlite_connect()

        def run() -> int:
            execute, dumps = conn.execute, json.dumps
            for doc in docs:
                with conn:
                    execute(SQL_INSERT, (doc["channel"], dumps(doc)))
            return len(docs)

        return run

    livedb_rate, sqlite_rate = best_rates(config, livedb_side, sqlite_side)
    _check_counts(latest["db"], latest["conn"], len(docs), "single insert")
    return [Row("single insert", livedb_rate, sqlite_rate, target=1.0,
                detail=f"{len(docs):,} one-document transactions into an empty table")]


@workload("bulk", "bulk insert")
def bulk_insert(config: Config) -> list[Row]:
    """One transaction inserting `bulk_docs` documents; a rate here is documents/s."""
    count, channels = config.bulk_docs, config.channels
    latest: dict[str, Any] = {}

    def livedb_side() -> Run:
        db = latest["db"] = Database(SCHEMA)

        def run() -> int:
            db.mutation(insert_many, {"count": count, "channels": channels})
            return count

        return run

    def sqlite_side() -> Run:
        conn = latest["conn"] = sqlite_connect()

        def run() -> int:
            sqlite_insert_many(conn, count, channels)
            return count

        return run

    livedb_rate, sqlite_rate = best_rates(config, livedb_side, sqlite_side)
    _check_counts(latest["db"], latest["conn"], count, "bulk insert")
    return [Row("bulk insert", livedb_rate, sqlite_rate,
                detail=f"one transaction of {count:,} inserts (executemany); ops = documents")]


@workload("get", "point get")
def point_get(config: Config) -> list[Row]:
    """`db.query(get_message, {"id": ...})` at random ids vs SELECT by primary key."""
    data = loaded(config.table_docs, config.channels)
    rng = random.Random(SEED)
    picks = [rng.randrange(data.size) for _ in range(config.gets)]
    ids = [data.ids[i] for i in picks]
    rowids = [i + 1 for i in picks]
    db, conn = data.db, data.conn
    for doc_id, rowid in zip(ids[:100], rowids[:100], strict=True):
        mine, theirs = db.query(get_message, {"id": doc_id}), sqlite_get(conn, rowid)
        _check(mine is not None and theirs is not None
               and user_fields(mine) == user_fields(theirs),
               f"point get: livedb {mine!r} differs from sqlite3 {theirs!r}")

    def livedb_run() -> int:
        run_query = db.query
        for doc_id in ids:
            run_query(get_message, {"id": doc_id})
        return len(ids)

    def sqlite_run() -> int:
        execute, loads = conn.execute, json.loads
        for rowid in rowids:
            loads(execute(SQL_GET, (rowid,)).fetchone()[0])
        return len(rowids)

    livedb_rate, sqlite_rate = best_rates(config, lambda: livedb_run, lambda: sqlite_run)
    return [Row("point get", livedb_rate, sqlite_rate, target=3.0,
                detail=f"random ids over {data.size:,} documents")]


@workload("take", "take(20) by index")
def take_20(config: Config) -> list[Row]:
    """The 20 newest documents of a random channel through the `by_channel` index."""
    data = loaded(config.table_docs, config.channels)
    rng = random.Random(SEED + 1)
    channels = [channel_name(rng.randrange(data.channels)) for _ in range(config.takes)]
    db, conn = data.db, data.conn
    for channel in channels[:20]:
        mine = db.query(latest_in_channel, {"channel": channel})
        theirs = sqlite_latest(conn, channel)
        _check(len(mine) == min(20, data.size // data.channels)
               and [user_fields(d) for d in mine] == [user_fields(d) for d in theirs],
               f"take(20): livedb and sqlite3 disagree on channel {channel!r}")

    def livedb_run() -> int:
        run_query = db.query
        for channel in channels:
            run_query(latest_in_channel, {"channel": channel})
        return len(channels)

    def sqlite_run() -> int:
        execute, loads = conn.execute, json.loads
        for channel in channels:
            [loads(text) for (text,) in execute(SQL_LATEST, (channel,))]
        return len(channels)

    livedb_rate, sqlite_rate = best_rates(config, lambda: livedb_run, lambda: sqlite_run)
    return [Row("take(20) by index", livedb_rate, sqlite_rate, target=3.0,
                detail=f"eq + order desc + take(20); {data.channels} channels, "
                       f"{data.size:,} documents")]


@workload("rmw", "read-modify-write")
def read_modify_write(config: Config) -> list[Row]:
    """Get a document, add one to its counter and write it back, in one transaction.

    Under sqlite3's default isolation level `with conn:` begins the transaction at the
    UPDATE, not the SELECT; with one connection and one thread that changes nothing
    here, and it is the cheaper form for sqlite3.
    """
    data = loaded(config.table_docs, config.channels)
    rng = random.Random(SEED + 2)
    picks = [rng.randrange(data.size) for _ in range(config.rmws)]
    ids = [data.ids[i] for i in picks]
    rowids = [i + 1 for i in picks]
    db, conn = data.db, data.conn

    def livedb_run() -> int:
        mutate = db.mutation
        for doc_id in ids:
            mutate(bump_counter, {"id": doc_id})
        return len(ids)

    def sqlite_run() -> int:
        execute, loads, dumps = conn.execute, json.loads, json.dumps
        for rowid in rowids:
            with conn:
                doc = loads(execute(SQL_GET, (rowid,)).fetchone()[0])
                doc["n"] += 1
                execute(SQL_UPDATE, (dumps(doc), rowid))
        return len(rowids)

    livedb_rate, sqlite_rate = best_rates(config, lambda: livedb_run, lambda: sqlite_run)
    for doc_id, rowid in zip(ids[:100], rowids[:100], strict=True):
        mine, theirs = db.query(get_message, {"id": doc_id}), sqlite_get(conn, rowid)
        _check(mine is not None and theirs is not None
               and user_fields(mine) == user_fields(theirs),
               f"read-modify-write: livedb {mine!r} differs from sqlite3 {theirs!r}")
    return [Row("read-modify-write", livedb_rate, sqlite_rate, target=1.0,
                detail="get + patch(n + 1) per transaction at random ids")]
