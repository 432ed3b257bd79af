"""Values on the wire as the `convex` npm client encodes them (`convexToJson` / `jsonToConvex`).

| Python                 | JSON                                                      |
|------------------------|-----------------------------------------------------------|
| None, bool, str, Id    | as is (an `Id` is a plain string)                         |
| float                  | a JSON number; NaN, +-Inf and -0.0 as `{"$float": b64}`   |
| int (int64)            | `{"$integer": b64}`: 8 bytes, little-endian, two's complement |
| bytes                  | `{"$bytes": b64}`                                         |
| list, dict             | array, object                                             |
| PaginationResult       | `{"page", "isDone", "continueCursor"}`                    |

Base64 is the standard alphabet, padded. Every plain JSON number a client sends is a
JavaScript number, so it becomes a `float` (`5` arrives as `5.0`); a JavaScript bigint
arrives as `{"$integer": ...}` and becomes an `int`.

Documents (dicts holding `_id` and `_creation_time`) show Convex's `_creationTime`, in
milliseconds, instead of livedb's `_creation_time` in seconds; a document sent back by a
client is mapped the other way.

The client refuses an object key that is not printable ASCII (32-126), is longer than
1024 characters or starts with `$`, and it refuses it inside its message handler, where
the error cannot be caught. `to_json` therefore raises `WireError` naming the key, and
the caller reports a failed function instead of sending the value.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import msgspec

from .._errors import ValidationError
from .._results import PaginationResult

_pack_f64 = struct.Struct("<d").pack
_unpack_f64 = struct.Struct("<d").unpack
_b64encode = base64.b64encode
_MAX_KEY = 1024
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_DEPTH = 64

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class WireError(ValidationError):
    """A value the `convex` client cannot accept, or a malformed value from a client."""


# -- Python -> wire ----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return _b64encode(raw).decode("ascii")


def encode_u64(value: int) -> str:
    """A protocol timestamp (u64) as the client reads it: base64 of 8 little-endian bytes."""
    return _b64(value.to_bytes(8, "little", signed=False))


def decode_u64(text: Any) -> int:
    """The u64 `encode_u64` made; `WireError` if `text` is not one."""
    raw = _b64decode(text, "a u64 timestamp")
    if len(raw) != 8:
        raise WireError(f"a u64 timestamp is 8 bytes in base64, got {len(raw)} bytes")
    return int.from_bytes(raw, "little", signed=False)


def _check_key(key: str, path: str) -> None:
    if len(key) > _MAX_KEY:
        raise WireError(f"{path}: the field name {key[:40]!r}... is longer than "
                        f"{_MAX_KEY} characters, which the Convex client refuses")
    if key.startswith("$"):
        raise WireError(f"{path}: the field name {key!r} starts with '$', which the Convex "
                        "client refuses")
    if not key.isascii() or not key.isprintable():
        raise WireError(f"{path}: the field name {key!r} is not printable ASCII, which the "
                        "Convex client refuses")


_KEY_OK: dict[str, bool] = {}


def _key_ok(key: str) -> bool:
    ok = _KEY_OK.get(key)
    if ok is None:
        ok = len(key) <= _MAX_KEY and not key.startswith("$") and key.isascii() and (
            key.isprintable())
        if len(_KEY_OK) < 65536:
            _KEY_OK[key] = ok
    return ok


def to_json(value: Any) -> Any:
    """`value` as a JSON-ready structure in the client's encoding.

    Raises `WireError` (naming the path) for a field name the client refuses or a value
    no Convex type holds."""
    return _to_json(value, "value", 0)


def _to_json(value: Any, path: str, depth: int) -> Any:
    cls = value.__class__
    if cls is str or value is None or cls is bool:
        return value
    if cls is float:
        if math.isfinite(value) and (value or math.copysign(1.0, value) > 0):
            return value
        return {"$float": _b64(_pack_f64(value))}
    if cls is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise WireError(f"{path}: the int {value} is outside the int64 range")
        return {"$integer": _b64(value.to_bytes(8, "little", signed=True))}
    if depth > _MAX_DEPTH:
        raise WireError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
    if cls is dict:
        out = {}
        document = "_id" in value and "_creation_time" in value
        for key, item in value.items():
            if key.__class__ is not str:
                raise WireError(f"{path}: object keys are strings, got {key!r}")
            if document and key == "_creation_time" and item.__class__ is float:
                out["_creationTime"] = item * 1000.0
                continue
            if not _key_ok(key):
                _check_key(key, path)
            out[key] = _to_json(item, f"{path}.{key}", depth + 1)
        return out
    if cls is list or cls is tuple:
        return [_to_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if cls is bytes:
        return {"$bytes": _b64(value)}
    if cls is PaginationResult:
        return {"page": _to_json(value.page, f"{path}.page", depth + 1),
                "isDone": value.is_done, "continueCursor": value.continue_cursor}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return _to_json(float(value), path, depth)
    if isinstance(value, int):
        return _to_json(int(value), path, depth)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": _b64(bytes(value))}
    raise WireError(f"{path}: a {type(value).__name__} has no Convex encoding")


def dumps(message: Any) -> str:
    """A JSON text frame of an already wire-encoded structure."""
    return _json_encode(message).decode()


def encoded(value: Any) -> msgspec.Raw:
    """`value` encoded once, to embed in frames (`msgspec.Raw`): shared results are
    encoded once for every socket that shows them."""
    return msgspec.Raw(_json_encode(to_json(value)))


# -- wire -> Python ----------------------------------------------------------------------


def loads(text: str | bytes) -> Any:
    """Parse one JSON frame; `WireError` if it is not JSON."""
    try:
        return _json_decode(text)
    except msgspec.DecodeError as e:
        raise WireError(f"malformed JSON: {e}") from None


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise WireError(f"{what}: expected a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise WireError(f"{what}: {text[:40]!r} is not base64") from None


def from_json(value: Any) -> Any:
    """A value a client sent (`convexToJson`'s output) as the Python value it stands for."""
    return _from_json(value, "value", 0)


def _from_json(value: Any, path: str, depth: int) -> Any:
    cls = value.__class__
    if cls is str or value is None or cls is bool or cls is float:
        return value
    if cls is int:
        return float(value)
    if depth > _MAX_DEPTH:
        raise WireError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
    if cls is list:
        return [_from_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if cls is dict:
        if len(value) == 1:
            key = next(iter(value))
            if key.startswith("$"):
                return _special(key, value[key], path)
        out = {}
        document = "_id" in value and "_creationTime" in value
        for key, item in value.items():
            if key.startswith("$"):
                raise WireError(f"{path}: the field name {key!r} starts with '$'")
            if document and key == "_creationTime" and item.__class__ in (int, float):
                out["_creation_time"] = float(item) / 1000.0
                continue
            out[key] = _from_json(item, f"{path}.{key}", depth + 1)
        return out
    raise WireError(f"{path}: unexpected {type(value).__name__}")


def _special(key: str, payload: Any, path: str) -> Any:
    if key == "$integer":
        raw = _b64decode(payload, f"{path}: $integer")
        if len(raw) != 8:
            raise WireError(f"{path}: $integer holds 8 bytes, got {len(raw)}")
        return int.from_bytes(raw, "little", signed=True)
    if key == "$float":
        raw = _b64decode(payload, f"{path}: $float")
        if len(raw) != 8:
            raise WireError(f"{path}: $float holds 8 bytes, got {len(raw)}")
        return _unpack_f64(raw)[0]
    if key == "$bytes":
        return _b64decode(payload, f"{path}: $bytes")
    raise WireError(f"{path}: {key} values are not supported (only $integer, $float and "
                    "$bytes)")
