"""Round trips of every kind of value, and results a Convex client cannot accept."""

from typing import Any

from livedb import action, mutation, query


@action
def echo(ctx: Any, **args: Any) -> dict:
    return args


@mutation
def store(ctx: Any, **args: Any) -> Any:
    doc_id = ctx.db.insert("things", args)
    return ctx.db.get(doc_id)


@query
def bad_key(ctx: Any) -> dict:
    return {"café": 1}


@query
def big(ctx: Any) -> dict:
    return {"max": 2**63 - 1, "min": -2**63, "neg_zero": -0.0, "nan": float("nan"),
            "inf": float("inf"), "bytes": bytes(range(256)), "len": len("four")}


@query
def default(ctx: Any) -> str:
    return "the default export"
