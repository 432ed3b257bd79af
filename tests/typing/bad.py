"""Wrong uses of livedb's API that mypy --strict and pyright must both reject.

Each line ending in a `wrong:` comment must be reported by both checkers, and no other
line may be (tests/test_typing.py). The program is never run.
"""

from __future__ import annotations

import asyncio

from livedb import ActionCtx, Database, MutationCtx, QueryCtx, action, mutation, query, v


@query(args={"channel": v.string()})
def count(ctx: QueryCtx, channel: str) -> int:
    return len(ctx.db.query("messages").collect())


@mutation(args={"body": v.string()})
def send(ctx: MutationCtx, body: str) -> str:
    return ctx.db.insert("messages", {"body": body})


@action
async def count_later(ctx: ActionCtx) -> int:
    return ctx.run_query(count, {"channel": "general"})


@query
def writes(ctx: QueryCtx) -> None:
    ctx.db.insert("messages", {"body": "x"})  # wrong: a query's ctx.db cannot write


@query
def stores(ctx: QueryCtx) -> None:
    ctx.storage.store(b"x")  # wrong: a query's ctx.storage cannot store
    ctx.scheduler.run_after(1, send, {"body": "x"})  # wrong: a query has no scheduler


@mutation
def schedules(ctx: MutationCtx) -> None:
    ctx.scheduler.run_later(1, send, {"body": "x"})  # wrong: a misspelt scheduler method


@query  # wrong: a query handler that takes a mutation's context
def wrong_context(ctx: MutationCtx) -> None:
    ctx.db.delete("messages:0000000000")


@action
def mixes_up_kinds(ctx: ActionCtx) -> None:
    ctx.run_query(send, {"body": "x"})  # wrong: a mutation run as a query


def on_text(text: str) -> None:
    print(text.upper())


async def watch(db: Database) -> None:
    async for total in db.watch(count, {"channel": "general"}):
        print(total.upper())  # wrong: a live query's int result used as str


def main(db: Database) -> None:
    total: str = db.query(count, {"channel": "general"})  # wrong: an int result used as str
    db.query(count, {"channel": "general"}).upper()  # wrong: str method on an int result
    db.query(send, {"body": "hi"})  # wrong: a mutation passed where a query is expected
    db.mutation(count, {"channel": "general"})  # wrong: a query passed as a mutation
    db.subscribe(count, {"channel": "general"}, on_text)  # wrong: callback takes str, gets int
    db.query(count, ["general"])  # wrong: args are a dict, not a list
    print(db.mutation(send, {"body": "hi"}).table)  # wrong: send returns str, not Id
    asyncio.run(db.action(count_later))  # wrong: an async action's result is not awaitable
    client = db.client()
    n: int = client.mutation(send, {"body": "hi"}).result()  # wrong: Future[str], not int
    client.subscribe(count, {"channel": "general"}, on_text)  # wrong: client callback of str
    print(total, n)
