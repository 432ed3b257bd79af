"""A small typed livedb program: mypy --strict and pyright must accept it as it is.

tests/test_typing.py type-checks it (and runs `main()`, so it is also a working program).
Every `assert_type` states what the checkers must infer from livedb's public API.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any, assert_type

from livedb import (
    DELETE_FIELD,
    ActionCtx,
    Client,
    Database,
    Id,
    MutationCtx,
    PaginationResult,
    QueryCtx,
    Subscription,
    action,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)

schema = define_schema({
    "messages": define_table({"channel": v.string(), "body": v.string(),
                              "likes": v.optional(v.int64())})
    .index("by_channel", ["channel"]),
})


@query(args={"channel": v.string()})
def latest(ctx: QueryCtx, channel: str) -> list[dict[str, Any]]:
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").take(20))


@query(args={"channel": v.string()}, returns=v.int64())
def count(ctx: QueryCtx, channel: str) -> int:
    return len(ctx.db.query("messages")
               .with_index("by_channel", lambda q: q.eq("channel", channel)).collect())


@query(args={"id": v.id("messages")})
def body_of(ctx: QueryCtx, id: Id) -> str | None:
    doc = ctx.db.get(id)
    assert_type(doc, dict[str, Any] | None)
    return None if doc is None else str(doc["body"])


@query(args={"num_items": v.int64(), "cursor": v.union(v.string(), v.null())})
def page(ctx: QueryCtx, num_items: int, cursor: str | None) -> PaginationResult:
    return ctx.db.query("messages").paginate(num_items, cursor)


@query
def first_message(ctx: QueryCtx) -> dict[str, Any] | None:
    return ctx.db.query("messages").first()


@mutation(args={"channel": v.string(), "body": v.string()}, returns=v.id("messages"))
def send(ctx: MutationCtx, channel: str, body: str) -> Id:
    return ctx.db.insert("messages", {"channel": channel, "body": body})


@mutation(args={"id": v.id("messages")})
def like(ctx: MutationCtx, id: Id) -> int:
    doc = ctx.db.get(id)
    if doc is None:
        return 0
    likes = int(doc.get("likes", 0)) + 1
    ctx.db.patch(id, {"likes": likes})
    return likes


@mutation(args={"id": v.id("messages")})
def unlike_all(ctx: MutationCtx, id: Id) -> None:
    ctx.db.patch(id, {"likes": DELETE_FIELD})


@mutation(args={"body": v.string()})
def send_later(ctx: MutationCtx, body: str) -> Id:
    return ctx.scheduler.run_after(3600, send, {"channel": "later", "body": body})


@query(args={"file": v.id("_storage")})
def file_size(ctx: QueryCtx, file: Id) -> int | None:
    metadata = ctx.storage.get_metadata(file)
    return None if metadata is None else int(metadata["size"])


@action
def attach(ctx: ActionCtx) -> Id:
    file = ctx.storage.store(b"hello", "text/plain")
    data = ctx.storage.get(file)
    assert_type(data, bytes | None)
    return file


@action(args={"channel": v.string()})
def shout(ctx: ActionCtx, channel: str) -> Id:
    before = ctx.run_query(count, {"channel": channel})
    assert_type(before, int)
    return ctx.run_mutation(send, {"channel": channel, "body": f"message {before + 1}!"})


@action(args={"channel": v.string()})
async def shout_later(ctx: ActionCtx, channel: str) -> int:
    await asyncio.sleep(0)
    ctx.run_action(shout, {"channel": channel})
    return ctx.run_query(count, {"channel": channel})


def main() -> None:
    with Database(schema) as db:
        seen: list[list[dict[str, Any]]] = []

        def on_messages(messages: list[dict[str, Any]]) -> None:
            seen.append(messages)

        with db.subscribe(latest, {"channel": "general"}, on_messages) as subscription:
            assert_type(subscription, Subscription)
            message_id = db.mutation(send, {"channel": "general", "body": "hi"})
            assert_type(message_id, Id)
            assert message_id.table == "messages"
            likes = db.mutation(like, {"id": message_id})
            assert_type(likes, int)
            assert likes + 1 == 2
            db.mutation(unlike_all, {"id": message_id})
            messages = db.query(latest, {"channel": "general"})
            assert_type(messages, list[dict[str, Any]])
            total = db.query(count, {"channel": "general"})
            assert_type(total, int)
            body = db.query(body_of, {"id": message_id})
            assert_type(body, str | None)
            assert body is not None and body.upper() == "HI"
            first = db.query(first_message)
            assert first is not None and first["_id"] == message_id
            result = db.query(page, {"num_items": 10, "cursor": None})
            assert_type(result, PaginationResult)
            assert [m["body"] for m in result.page] == ["hi"] and result.is_done
            shouted = db.action(shout, {"channel": "general"})
            assert_type(shouted, Id)
            later = db.action(shout_later, {"channel": "general"})
            assert_type(later, int)
            assert later == total + 2
            scheduled = db.mutation(send_later, {"body": "later"})
            assert_type(scheduled, Id)
            assert scheduled.table == "_scheduled_functions"
            size = db.query(file_size, {"file": db.action(attach)})
            assert_type(size, int | None)
            assert size == 5
            ad_hoc = db.query(lambda ctx: len(ctx.db.query("messages").collect()))
            assert_type(ad_hoc, int)
            assert [m["body"] for m in seen[-1]][-1] == "hi"

        client = db.client()
        assert_type(client, Client)
        with client:
            future = client.mutation(send, {"channel": "random", "body": "yo"})
            assert_type(future, Future[Id])
            sent: Id = future.result(timeout=10)
            got: list[int] = []
            with client.subscribe(count, {"channel": "random"}, got.append):
                pass
            assert got == [1] and client.query(count, {"channel": "random"}) == 1
            assert sent.table == "messages"


if __name__ == "__main__":
    main()
