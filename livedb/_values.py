"""Storable values: their kinds, limits, total order, index-key encoding and msgpack form.

The total order across kinds is: missing field < null < numbers < NaN < booleans <
strings < bytes < arrays < objects; `int` and `float` are one kind compared by value.
An indexed value is encoded once, when its document is written, as a flat pair
`(rank, value)`: the rank of its kind, then a value that compares correctly against
any other value of that rank (arrays and objects become tuples of such pairs). An
index key is the pairs of the index's fields, then the document's creation time and
id, all in one flat tuple, so comparing two keys never reaches Python code: it is all
C-level tuple, int, float, str and bytes comparison. Two values of one rank are always
of comparable types, and a valueless rank (missing, null, NaN) carries a 0.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from ._errors import ValidationError

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 16
MAX_ARRAY_LENGTH = 8192
MAX_FIELD_NAME_LENGTH = 1024
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

RANK_MISSING, RANK_NULL, RANK_NUMBER, RANK_NAN, RANK_BOOL = 0, 1, 2, 3, 4
RANK_STR, RANK_BYTES, RANK_LIST, RANK_DICT = 5, 6, 7, 8
"""The rank of each kind, in the total order (defined here once)."""

MISSING_PAIR = (RANK_MISSING, 0)
NULL_PAIR = (RANK_NULL, 0)
NAN_PAIR = (RANK_NAN, 0)

KEY_MIN = -math.inf
"""Sorts before whatever follows a key prefix: `key + (KEY_MIN,)` is the least bound
above every key that `key` is a prefix of... and `key` itself sorts before it."""
KEY_MAX = math.inf
"""Sorts after whatever follows a key prefix (a rank, or a creation time):
`prefix + (KEY_MAX,)` bounds every key that starts with `prefix`."""

Key = tuple[Any, ...]


def storable_hook(value: Any) -> Any:
    """msgspec `enc_hook`: `str`, `float` and `int` subclasses as their base types."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"{type_name(value)} is not a storable value")


encoder = msgspec.msgpack.Encoder(enc_hook=storable_hook)
decoder = msgspec.msgpack.Decoder()
reencode = msgspec.msgpack.Encoder(enc_hook=str).encode
"""msgpack bytes for comparing a value with a stored blob, never for storing: a type
msgpack lacks becomes its `str` in C (an `Id` its text) instead of a call to
`storable_hook`, so an unstorable value may encode; the caller checks the types."""
encode = encoder.encode
"""A value as msgpack bytes (an `Id` becomes a plain string)."""
decode = decoder.decode
"""A fresh value from msgpack bytes: a deep copy nothing else references."""

_ARRAY32 = struct.Struct(">BI").pack
_ARRAY16 = struct.Struct(">BH").pack


def decode_many(blobs: list[bytes]) -> list[Any]:
    """Decode many msgpack blobs in one call (framed as one msgpack array)."""
    return decode(_ARRAY32(0xDD, len(blobs)) + b"".join(blobs))  # type: ignore[no-any-return]


def encoded_list(blobs: list[bytes]) -> bytes:
    """The bytes msgpack encodes a list as when its items encode as `blobs` (the
    shortest array header, as msgspec writes it)."""
    n = len(blobs)
    header = bytes((0x90 | n,)) if n < 16 else (
        _ARRAY16(0xDC, n) if n < 0x10000 else _ARRAY32(0xDD, n))
    return header + b"".join(blobs)


_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "int", float: "float", str: "string",
               bytes: "bytes", list: "array", dict: "object"}


def type_name(value: Any) -> str:
    """The API's name for a value's kind, used in error messages."""
    for kind in type(value).__mro__:
        name = _TYPE_NAMES.get(kind)
        if name is not None:
            return name
    return type(value).__name__


def check_size(blob: bytes, what: str) -> None:
    """Raise `ValidationError` if an encoded document is over the 1 MiB limit."""
    if len(blob) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{what}: document of {len(blob)} bytes is larger than the limit "
                              f"of {MAX_DOCUMENT_BYTES} bytes (1 MiB) encoded")


def encode_key(value: Any) -> tuple[int, Any]:
    """The `(rank, value)` pair a stored value sorts by in the total order across kinds."""
    cls = value.__class__
    if cls is str:
        return (RANK_STR, value)
    if cls is int or cls is float:
        if value != value:
            return NAN_PAIR
        return (RANK_NUMBER, value)
    if value is None:
        return NULL_PAIR
    if cls is bool:
        return (RANK_BOOL, value)
    if cls is bytes:
        return (RANK_BYTES, value)
    if cls is list:
        flat: list[Any] = []
        for item in value:
            flat.extend(encode_key(item))
        return (RANK_LIST, tuple(flat))
    if cls is dict:
        flat = []
        for name in sorted(value):
            flat.append(name)
            flat.extend(encode_key(value[name]))
        return (RANK_DICT, tuple(flat))
    if isinstance(value, str):
        return (RANK_STR, str(value))
    if isinstance(value, float):
        return encode_key(float(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return encode_key(int(value))
    raise ValidationError(f"{type_name(value)} cannot be used as an index value")


def compare_values(a: Any, b: Any) -> int:
    """-1, 0 or 1 by the total order (used by tests and by sorting in Python code)."""
    ka, kb = encode_key(a), encode_key(b)
    return (ka > kb) - (ka < kb)


ABSENT: Any = object()
"""What `value_getter` returns for a field a document does not have."""


def value_getter(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A function reading a (possibly dotted) field path's value, `ABSENT` if it has none."""
    if len(path) == 1:
        name = path[0]
        return lambda doc: doc.get(name, ABSENT)

    def get(doc: dict[str, Any]) -> Any:
        value: Any = doc
        for name in path:
            if value.__class__ is not dict:
                return ABSENT
            value = value.get(name, ABSENT)
            if value is ABSENT:
                return ABSENT
        return value

    return get


def pair_getter(path: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    """A function reading a field path as its `(rank, value)` pair (missing: rank 0)."""
    raw = value_getter(path)

    def get(doc: dict[str, Any]) -> tuple[int, Any]:
        value = raw(doc)
        return MISSING_PAIR if value is ABSENT else encode_key(value)

    return get


_RANKED = frozenset({RANK_NUMBER, RANK_BOOL, RANK_STR, RANK_BYTES, RANK_LIST, RANK_DICT})


def is_pairs(flat: Any) -> bool:
    """Whether `flat` is a sequence of `(rank, value)` pairs as `encode_key` makes them
    (used to refuse forged cursors before they reach a comparison)."""
    if flat.__class__ is not tuple or len(flat) % 2:
        return False
    for i in range(0, len(flat), 2):
        if not _is_pair(flat[i], flat[i + 1]):
            return False
    return True


def _is_pair(rank: Any, value: Any) -> bool:
    if rank.__class__ is not int:
        return False
    if rank in (RANK_MISSING, RANK_NULL, RANK_NAN):
        return value.__class__ is int and value == 0
    if rank not in _RANKED:
        return False
    cls = value.__class__
    if rank == RANK_NUMBER:
        return (cls is int or cls is float) and value == value
    if rank == RANK_BOOL:
        return cls is bool
    if rank == RANK_STR:
        return cls is str
    if rank == RANK_BYTES:
        return cls is bytes
    if rank == RANK_LIST:
        return is_pairs(value)
    if cls is not tuple or len(value) % 3:
        return False
    return all(value[i].__class__ is str and _is_pair(value[i + 1], value[i + 2])
               for i in range(0, len(value), 3))
