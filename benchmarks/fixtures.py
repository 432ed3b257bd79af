"""The data every engine holds: the messages schema, livedb functions and the other engines.

A message is `{"channel": "c7", "body": "hello from message 7", "n": 7}`. The engines:

- livedb: the `SCHEMA` below (an index `by_channel`), called only through its public API.
- sqlite3: `messages(id INTEGER PRIMARY KEY, channel TEXT, data TEXT)` with an index on
  `channel`; each document stored as JSON text, written inside `with conn:` (one
  transaction per operation) and decoded with `json.loads` on every read, so it hands
  back plain dicts as livedb does.
- apsw: the same table and SQL on apsw's bundled SQLite (`with conn:` is a savepoint
  transaction there). Optional: without apsw installed its figures say so.
- msgspec: stdlib sqlite3 again, storing msgpack blobs made by a cached
  `msgspec.msgpack.Encoder` and read by a cached `Decoder`: what a hand-rolled store
  could do instead of JSON.
- dict: the floor. `DictFloor` keeps documents (with `_id` and `_creation_time`, as
  livedb returns them) in a dict by integer id and a list of ids per channel; a read
  returns a copy, a write stores a fresh dict. For these flat documents a shallow copy
  is a complete one, so this is the least any engine with livedb's isolation promise
  can do.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec

from livedb import Database, Id, PaginationResult, define_schema, define_table, mutation, query, v

from .harness import Untimed


def _optional(name: str) -> Any:
    """The module `name`, or None when it cannot be imported (an optional engine)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


apsw: Any = _optional("apsw")
"""apsw, from the `bench` extra; None when it is not installed."""

APSW_MISSING = "apsw is not installed (pip install '.[bench]')"
"""The figure of every apsw column when apsw cannot be imported."""

USER_FIELDS = ("channel", "body", "n")

SCHEMA = define_schema({
    "messages": define_table({"channel": v.string(), "body": v.string(), "n": v.int64()})
    .index("by_channel", ["channel"]),
})

SQL_CREATE = "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel TEXT, data TEXT)"
SQL_CREATE_BLOB = "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel TEXT, data BLOB)"
SQL_INDEX = "CREATE INDEX messages_by_channel ON messages (channel)"
SQL_INSERT = "INSERT INTO messages (channel, data) VALUES (?, ?)"
SQL_GET = "SELECT data FROM messages WHERE id = ?"
SQL_LATEST = "SELECT data FROM messages WHERE channel = ? ORDER BY id DESC LIMIT 20"
SQL_UPDATE = "UPDATE messages SET data = ? WHERE id = ?"
SQL_ALL = "SELECT data FROM messages"
SQL_COUNT = "SELECT count(*) FROM messages"

PAGE = 8_000
"""Documents per page when listing every id (below the 8192-item array limit)."""

LOAD_BATCH = 50_000
"""Documents per livedb mutation when loading a large table."""

MSGPACK_ENCODE = msgspec.msgpack.Encoder().encode
MSGPACK_DECODE = msgspec.msgpack.Decoder().decode


def channel_name(number: int) -> str:
    return f"c{number}"


def make_doc(i: int, channels: int) -> dict[str, Any]:
    """The i-th small message document, in channel `i % channels`."""
    return {"channel": channel_name(i % channels), "body": f"hello from message {i}", "n": i}


def user_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """A document without its system fields, for comparing the engines' answers."""
    return {name: doc[name] for name in USER_FIELDS}


# -- livedb -----------------------------------------------------------------------------


@mutation(args={"channel": v.string(), "body": v.string(), "n": v.int64()},
          returns=v.id("messages"))
def insert_message(ctx: Any, channel: str, body: str, n: int) -> Id:
    """Insert one message."""
    return ctx.db.insert("messages", {"channel": channel, "body": body, "n": n})


@mutation(args={"count": v.int64(), "channels": v.int64(), "first": v.optional(v.int64())})
def insert_many(ctx: Any, count: int, channels: int, first: int = 0) -> None:
    """Insert messages `first` .. `first + count - 1` made by `make_doc`, in one transaction."""
    insert = ctx.db.insert
    for i in range(first, first + count):
        insert("messages", make_doc(i, channels))


@query(args={"id": v.id("messages")})
def get_message(ctx: Any, id: Id) -> dict[str, Any] | None:
    """One message by id."""
    return ctx.db.get(id)


@query(args={"channel": v.string()})
def latest_in_channel(ctx: Any, channel: str) -> list[dict[str, Any]]:
    """The 20 newest messages of a channel."""
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").take(20))


@mutation(args={"id": v.id("messages")})
def bump_counter(ctx: Any, id: Id) -> None:
    """Read a message and write back its counter `n` plus one."""
    doc = ctx.db.get(id)
    ctx.db.patch(id, {"n": doc["n"] + 1})


@query(args={"cursor": v.union(v.string(), v.null()), "num_items": v.int64()})
def page_of_messages(ctx: Any, cursor: str | None, num_items: int) -> PaginationResult:
    """One page of messages in insertion order."""
    return ctx.db.query("messages").paginate(num_items, cursor)


@query(args={"cursor": v.union(v.string(), v.null()), "num_items": v.int64()})
def count_page(ctx: Any, cursor: str | None, num_items: int) -> list[Any]:
    """How many messages one page holds, and the cursor after it (None when done)."""
    page = ctx.db.query("messages").paginate(num_items, cursor)
    return [len(page.page), None if page.is_done else page.continue_cursor]


def livedb_ids(db: Database) -> list[Id]:
    """Every message id in insertion order, read page by page."""
    ids: list[Id] = []
    cursor = None
    while True:
        page = db.query(page_of_messages, {"cursor": cursor, "num_items": PAGE})
        ids.extend(doc["_id"] for doc in page.page)
        if page.is_done:
            return ids
        cursor = page.continue_cursor


def livedb_count(db: Database) -> int:
    """How many messages the database holds (counted page by page, public API only)."""
    total, cursor = 0, None
    while True:
        size, cursor = db.query(count_page, {"cursor": cursor, "num_items": PAGE})
        total += size
        if cursor is None:
            return total


def livedb_load(db: Database, count: int, channels: int, batch: int = LOAD_BATCH) -> None:
    """Insert `make_doc(0..count-1)` in mutations of at most `batch` documents."""
    for first in range(0, count, batch):
        db.mutation(insert_many, {"count": min(batch, count - first), "channels": channels,
                                  "first": first})


# -- the SQL engines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """One SQL engine: a connection (sqlite3 or apsw) and its document codec.

    `execute` and `executemany` are the connection's own bound methods (both libraries
    spell them alike), so a loop over them is as tight as a hand-written one.
    """

    name: str
    conn: Any
    dumps: Callable[[Any], Any]
    loads: Callable[[Any], Any]

    @property
    def execute(self) -> Callable[..., Any]:
        return self.conn.execute

    def insert_many(self, count: int, channels: int, first: int = 0) -> None:
        """Insert `make_doc(first..first+count-1)` in one transaction (executemany)."""
        dumps = self.dumps
        rows = ((doc["channel"], dumps(doc))
                for doc in (make_doc(i, channels) for i in range(first, first + count)))
        with self.conn:
            self.conn.executemany(SQL_INSERT, rows)

    def get(self, rowid: int) -> dict[str, Any] | None:
        row = self.conn.execute(SQL_GET, (rowid,)).fetchone()
        return None if row is None else self.loads(row[0])

    def latest(self, channel: str) -> list[dict[str, Any]]:
        loads = self.loads
        return [loads(data) for (data,) in self.conn.execute(SQL_LATEST, (channel,))]

    def count(self) -> int:
        return int(self.conn.execute(SQL_COUNT).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _create(conn: Any, blob: bool = False) -> Any:
    conn.execute(SQL_CREATE_BLOB if blob else SQL_CREATE)
    conn.execute(SQL_INDEX)
    return conn


def sqlite_engine() -> Sql:
    """A fresh stdlib sqlite3 `:memory:` database of JSON documents."""
    return Sql("sqlite3", _create(sqlite3.connect(":memory:")), json.dumps, json.loads)


def apsw_engine() -> Sql | None:
    """A fresh apsw `:memory:` database of JSON documents, or None without apsw."""
    if apsw is None:
        return None
    return Sql("apsw", _create(apsw.Connection(":memory:")), json.dumps, json.loads)


def msgspec_engine() -> Sql:
    """A fresh stdlib sqlite3 `:memory:` database of msgpack documents."""
    return Sql("msgspec", _create(sqlite3.connect(":memory:"), blob=True), MSGPACK_ENCODE,
               MSGPACK_DECODE)


def sql_factories() -> list[tuple[str, Callable[[], Sql]]]:
    """(name, maker of a fresh in-memory database) of every SQL engine available."""
    makers: list[tuple[str, Callable[[], Sql]]] = [("sqlite3", sqlite_engine)]
    if apsw is not None:
        makers.append(("apsw", _apsw_engine))
    makers.append(("msgspec", msgspec_engine))
    return makers


def _apsw_engine() -> Sql:
    engine = apsw_engine()
    if engine is None:
        raise RuntimeError(APSW_MISSING)
    return engine


def sql_engines() -> list[Sql]:
    """Fresh in-memory databases of every SQL engine available, in column order."""
    return [make() for _name, make in sql_factories()]


def missing_engines() -> dict[str, str]:
    """The engine columns that cannot be measured here, with the reason."""
    return {} if apsw is not None else {"apsw": APSW_MISSING}


# -- the floor ------------------------------------------------------------------------------


class DictFloor:
    """Documents in a dict by integer id, and the ids of each channel in insertion order.

    Stored documents carry `_id` and `_creation_time` like livedb's. Workloads use
    `docs` and `by_channel` directly in their loops; the methods here are for set-up
    and checks.
    """

    def __init__(self) -> None:
        self.docs: dict[int, dict[str, Any]] = {}
        self.by_channel: dict[str, list[int]] = {}
        self.next_id = 1

    def insert(self, doc: dict[str, Any]) -> int:
        """Store a copy of `doc` with system fields; its id (ids count from 1 as rowids)."""
        doc_id = self.next_id
        self.next_id = doc_id + 1
        self.docs[doc_id] = {**doc, "_id": doc_id, "_creation_time": time.time()}
        self.by_channel.setdefault(doc["channel"], []).append(doc_id)
        return doc_id

    def insert_many(self, count: int, channels: int, first: int = 0) -> None:
        """Insert `make_doc(first..first+count-1)` (the loop `insert` does, inlined)."""
        docs, by_channel, clock = self.docs, self.by_channel, time.time
        doc_id = self.next_id
        for i in range(first, first + count):
            doc = make_doc(i, channels)
            docs[doc_id] = {**doc, "_id": doc_id, "_creation_time": clock()}
            channel = doc["channel"]
            ids = by_channel.get(channel)
            if ids is None:
                by_channel[channel] = [doc_id]
            else:
                ids.append(doc_id)
            doc_id += 1
        self.next_id = doc_id

    def get(self, doc_id: int) -> dict[str, Any] | None:
        doc = self.docs.get(doc_id)
        return None if doc is None else doc.copy()

    def latest(self, channel: str) -> list[dict[str, Any]]:
        docs = self.docs
        return [docs[i].copy() for i in reversed(self.by_channel.get(channel, [])[-20:])]

    def documents(self) -> Iterator[dict[str, Any]]:
        return iter(self.docs.values())


# -- every engine loaded ------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """Every engine holding the same `size` messages; `ids[i]` and rowid `i + 1` match."""

    size: int
    channels: int
    db: Database
    ids: list[Id]
    sql: list[Sql]
    floor: DictFloor


@cache
def loaded(size: int, channels: int) -> Loaded:
    """Every engine loaded with `size` messages in `channels` channels (built once a run)."""
    with Untimed():
        db = Database(SCHEMA)
        livedb_load(db, size, channels)
        sql = sql_engines()
        for engine in sql:
            engine.insert_many(size, channels)
        floor = DictFloor()
        floor.insert_many(size, channels)
        ids = livedb_ids(db)
    if len(ids) != size:
        raise AssertionError(f"livedb lists {len(ids)} of the {size} messages inserted")
    return Loaded(size, channels, db, ids, sql, floor)
