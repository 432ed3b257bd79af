"""A named counter: what exactly-once mutations are checked with."""

from typing import Any

from livedb import mutation, query, v


def _find(ctx: Any, name: str) -> dict | None:
    return ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()


@query(args={"name": v.string()})
def get(ctx: Any, name: str) -> int:
    found = _find(ctx, name)
    return 0 if found is None else found["value"]


@mutation(args={"name": v.string()})
def increment(ctx: Any, name: str) -> int:
    found = _find(ctx, name)
    if found is None:
        ctx.db.insert("counters", {"name": name, "value": 1})
        return 1
    ctx.db.patch(found["_id"], {"value": found["value"] + 1})
    return found["value"] + 1
