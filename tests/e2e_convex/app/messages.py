"""Chat messages: a live list, a paginated list, sending (signed in or not)."""

from typing import Any

from livedb import AppError, PaginationResult, mutation, query, v


def _author(ctx: Any) -> str:
    identity = ctx.auth.get_user_identity()
    return identity.email if identity is not None else "anonymous"


@query(args={"channel": v.string()})
def list(ctx: Any, channel: str) -> list[dict]:
    return (ctx.db.query("messages").with_index("by_channel", lambda q: q.eq("channel", channel))
            .collect())


@query(args={"channel": v.string(), "pagination_opts": v.any()})
def page(ctx: Any, channel: str, pagination_opts: dict) -> PaginationResult:
    return (ctx.db.query("messages").with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").paginate(pagination_opts))


@query(args={"channel": v.string()})
def count(ctx: Any, channel: str) -> int:
    return len(list(ctx, channel=channel))


@mutation(args={"channel": v.string(), "body": v.string()}, returns=v.id("messages"))
def send(ctx: Any, channel: str, body: str) -> str:
    if not body.strip():
        raise AppError({"code": "EMPTY", "message": "a message needs a body"})
    return ctx.db.insert("messages", {"channel": channel, "author": _author(ctx), "body": body})


@mutation(args={"code": v.string()})
def fail(ctx: Any, code: str) -> None:
    ctx.db.insert("messages", {"channel": "never", "author": "x", "body": "rolled back"})
    raise AppError({"code": code, "n": 7})


@query
def whoami(ctx: Any) -> str | None:
    identity = ctx.auth.get_user_identity()
    return None if identity is None else identity.email
