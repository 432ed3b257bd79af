"""Validation speed: livedb's compiled validators next to msgspec on the same document.

livedb compiles each `v.*` validator into a closure (exact error paths, ints accepted
for floats, `v.id` table checks); msgspec cannot express all of that, so it is measured
here as the reference a hand-written msgspec schema would give.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec

from livedb import v

from .harness import Config, Row, Run, best_rates, workload


class _MessageDict(TypedDict):
    channel: str
    body: str
    n: int


class _MessageStruct(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    body: str
    n: int


@workload("validate", "validate a document")
def validate(config: Config) -> list[Row]:
    """One 3-field document checked by livedb, msgspec TypedDict and msgspec Struct."""
    doc: dict[str, Any] = {"channel": "c1", "body": "hello from message 1", "n": 1}
    check = v.object({"channel": v.string(), "body": v.string(), "n": v.int64()}).compile()
    count = 1_000 if config.smoke else 200_000

    def side(fn: Any) -> Any:
        def prepare() -> Run:
            def run() -> int:
                for _ in range(count):
                    fn(doc)
                return count
            return run
        return prepare

    ours, as_dict, as_struct = best_rates(
        config, side(lambda d: check(d, 1)), side(lambda d: msgspec.convert(d, _MessageDict)),
        side(lambda d: msgspec.convert(d, _MessageStruct)))
    return [Row("validate a document", ours, None,
                detail=f"livedb {1e6 / ours:.2f} us; msgspec.convert to a TypedDict "
                       f"{1e6 / as_dict:.2f} us, to a Struct {1e6 / as_struct:.2f} us "
                       "(no dict out, no livedb error paths)")]
