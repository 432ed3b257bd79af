"""Validation cost: a query call with validated args next to the same call unvalidated.

livedb validates a function's args with the `v.*` validators it was declared with
(exact error paths, ints accepted for floats, `v.id` table checks). Through the public
API the cost shows as the difference between `db.query(fn, doc)` for a function
declared with `args={...}` and one declared with `args=None`; the row's ratio is
validated over unvalidated. msgspec cannot express all of livedb's rules, so
`msgspec.convert` of the same document to a Struct (and to a TypedDict) is shown as the
reference a hand-written msgspec schema would give.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec

from livedb import Database, query, v

from .harness import Config, Prepare, Row, best_times, check, workload


class _MessageDict(TypedDict):
    channel: str
    body: str
    n: int


class _MessageStruct(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    body: str
    n: int


@query(args={"channel": v.string(), "body": v.string(), "n": v.int64()})
def validated(ctx: Any, channel: str, body: str, n: int) -> int:
    """Nothing but the args check: returns `n`."""
    return n


@query
def unvalidated(ctx: Any, channel: str, body: str, n: int) -> int:
    """The same function without an args validator."""
    return n


@workload("validate", "validated query call")
def validate(config: Config) -> list[Row]:
    """A 3-field document as validated query args, unvalidated, and through msgspec."""
    doc: dict[str, Any] = {"channel": "c1", "body": "hello from message 1", "n": 1}
    count = 1_000 if config.smoke else 200_000
    db = Database()
    check(db.query(validated, doc) == db.query(unvalidated, doc) == 1,
          "validate: the query functions returned the wrong value")

    def side(fn: Any) -> Prepare:
        def run() -> int:
            for _ in range(count):
                fn(doc)
            return count

        return lambda: run

    run_query = db.query
    ours, bare, as_dict, as_struct = best_times(
        config, side(lambda d: run_query(validated, d)),
        side(lambda d: run_query(unvalidated, d)),
        side(lambda d: msgspec.convert(d, _MessageDict)),
        side(lambda d: msgspec.convert(d, _MessageStruct)))
    db.close()
    return [Row("validate", "validated query call",
                {"livedb": ours, "livedb, args=None": bare, "msgspec": as_struct,
                 "msgspec TypedDict": as_dict},
                baseline="livedb, args=None",
                detail=f"db.query of a function whose args are a 3-field document: validated "
                       f"{ours * 1e6:.2f} us vs args=None {bare * 1e6:.2f} us (validation "
                       f"about {(ours - bare) * 1e6:.2f} us); msgspec.convert to a Struct "
                       f"(msgspec column) and to a TypedDict {as_dict * 1e6:.2f} us")]
