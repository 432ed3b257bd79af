"""The data both engines hold: the messages schema, livedb functions and sqlite3 helpers.

sqlite3 stores each document as JSON text in `messages(id INTEGER PRIMARY KEY, channel
TEXT, data TEXT)` with an index on `channel`, writes inside `with conn:` and decodes
every row it returns, so both engines hand back plain dicts.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from functools import cache
from typing import Any

from livedb import Database, Id, PaginationResult, define_schema, define_table, mutation, query, v

USER_FIELDS = ("channel", "body", "n")

SCHEMA = define_schema({
    "messages": define_table({"channel": v.string(), "body": v.string(), "n": v.int64()})
    .index("by_channel", ["channel"]),
})

SQL_CREATE = "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel TEXT, data TEXT)"
SQL_INDEX = "CREATE INDEX messages_by_channel ON messages (channel)"
SQL_INSERT = "INSERT INTO messages (channel, data) VALUES (?, ?)"
SQL_GET = "SELECT data FROM messages WHERE id = ?"
SQL_LATEST = "SELECT data FROM messages WHERE channel = ? ORDER BY id DESC LIMIT 20"
SQL_UPDATE = "UPDATE messages SET data = ? WHERE id = ?"

PAGE = 8_000
"""Documents per page when listing every id (below the 8192-item array limit)."""


def channel_name(number: int) -> str:
    return f"c{number}"


def make_doc(i: int, channels: int) -> dict[str, Any]:
    """The i-th small message document, in channel `i % channels`."""
    return {"channel": channel_name(i % channels), "body": f"hello from message {i}", "n": i}


def user_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """A document without its system fields, for comparing the engines' answers."""
    return {name: doc[name] for name in USER_FIELDS}


@mutation(args={"channel": v.string(), "body": v.string(), "n": v.int64()},
          returns=v.id("messages"))
def insert_message(ctx: Any, channel: str, body: str, n: int) -> Id:
    """Insert one message."""
    return ctx.db.insert("messages", {"channel": channel, "body": body, "n": n})


@mutation(args={"count": v.int64(), "channels": v.int64()})
def insert_many(ctx: Any, count: int, channels: int) -> None:
    """Insert `count` messages made by `make_doc`, all in this one transaction."""
    insert = ctx.db.insert
    for i in range(count):
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


def sqlite_connect() -> sqlite3.Connection:
    """A fresh in-memory sqlite3 database with the messages table and its index."""
    conn = sqlite3.connect(":memory:")
    conn.execute(SQL_CREATE)
    conn.execute(SQL_INDEX)
    return conn


def sqlite_insert_many(conn: sqlite3.Connection, count: int, channels: int) -> None:
    """Insert `count` messages made by `make_doc` in one transaction."""
    rows = ((doc["channel"], json.dumps(doc))
            for doc in (make_doc(i, channels) for i in range(count)))
    with conn:
        conn.executemany(SQL_INSERT, rows)


def sqlite_get(conn: sqlite3.Connection, rowid: int) -> dict[str, Any] | None:
    row = conn.execute(SQL_GET, (rowid,)).fetchone()
    return None if row is None else json.loads(row[0])


def sqlite_latest(conn: sqlite3.Connection, channel: str) -> list[dict[str, Any]]:
    return [json.loads(data) for (data,) in conn.execute(SQL_LATEST, (channel,))]


@dataclass(frozen=True)
class Loaded:
    """Both engines holding the same `size` messages; `ids[i]` and rowid `i + 1` match."""

    size: int
    channels: int
    db: Database
    conn: sqlite3.Connection
    ids: list[Id]


@cache
def loaded(size: int, channels: int) -> Loaded:
    """Both engines loaded with `size` messages in `channels` channels (built once)."""
    db = Database(SCHEMA)
    db.mutation(insert_many, {"count": size, "channels": channels})
    conn = sqlite_connect()
    sqlite_insert_many(conn, size, channels)
    ids = livedb_ids(db)
    if len(ids) != size:
        raise AssertionError(f"livedb lists {len(ids)} of the {size} messages inserted")
    return Loaded(size, channels, db, conn, ids)
