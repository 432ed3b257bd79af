"""Storable values: the kinds, their limits, their total order and index-key encoding.

Index keys are plain tuples built once per write; every element of a key is itself a
tuple whose first item is a small int rank, so comparing two keys never reaches Python
code: it is all C-level tuple, int, float, str and bytes comparison.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._errors import ValidationError

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 16
MAX_ARRAY_LENGTH = 8192
MAX_FIELD_NAME_LENGTH = 1024
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

RANK_MISSING, RANK_NULL, RANK_NUMBER, RANK_BOOL = 0, 1, 2, 3
RANK_STR, RANK_BYTES, RANK_LIST, RANK_DICT = 4, 5, 6, 7

MISSING_KEY = (RANK_MISSING,)
NULL_KEY = (RANK_NULL,)
NAN_KEY = (RANK_NUMBER, 1)
KEY_MIN = (-1,)
"""Sorts before every key element: `key + (KEY_MIN,)` is the least bound above `key`."""
KEY_MAX = (99,)
"""Sorts after every key element: `prefix + (KEY_MAX,)` bounds everything under `prefix`."""



def _enc_hook(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"{type_name(value)} is not a storable value")


encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
decoder = msgspec.msgpack.Decoder()
encode = encoder.encode
decode = decoder.decode


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
    if len(blob) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{what}: document of {len(blob)} bytes is larger than the limit "
                              f"of {MAX_DOCUMENT_BYTES} bytes (1 MiB) encoded")


def encode_key(value: Any) -> tuple:
    """Encode a stored value as a tuple that sorts in the API's total order across kinds."""
    cls = value.__class__
    if cls is str:
        return (RANK_STR, value)
    if cls is int or cls is float:
        if value != value:
            return NAN_KEY
        return (RANK_NUMBER, 0, value)
    if value is None:
        return NULL_KEY
    if cls is bool:
        return (RANK_BOOL, value)
    if cls is bytes:
        return (RANK_BYTES, value)
    if cls is list:
        return (RANK_LIST, tuple([encode_key(item) for item in value]))
    if cls is dict:
        return (RANK_DICT, tuple([(k, encode_key(value[k])) for k in sorted(value)]))
    if isinstance(value, str):
        return (RANK_STR, str(value))
    if isinstance(value, float):
        return encode_key(float(value))
    raise ValidationError(f"{type_name(value)} cannot be used as an index value")


def compare_values(a: Any, b: Any) -> int:
    """-1, 0 or 1 by the total order (used by tests and by sorting in Python code)."""
    ka, kb = encode_key(a), encode_key(b)
    return (ka > kb) - (ka < kb)


def field_getter(path: tuple[str, ...]):
    """A function reading a (possibly dotted) field path from a document, MISSING_KEY if absent."""
    if len(path) == 1:
        name = path[0]

        def get_one(doc: dict) -> tuple:
            value = doc.get(name, ABSENT)
            return MISSING_KEY if value is ABSENT else encode_key(value)

        return get_one

    raw = value_getter(path)

    def get_nested(doc: dict) -> tuple:
        value = raw(doc)
        return MISSING_KEY if value is ABSENT else encode_key(value)

    return get_nested


def value_getter(path: tuple[str, ...]):
    """A function reading a (possibly dotted) field path's value, `ABSENT` if it has none."""

    def get(doc: dict) -> Any:
        value: Any = doc
        for name in path:
            if value.__class__ is not dict:
                return ABSENT
            value = value.get(name, ABSENT)
            if value is ABSENT:
                return ABSENT
        return value

    return get


ABSENT: Any = object()
"""What `value_getter` returns for a field a document does not have."""


def is_key_element(e: Any) -> bool:
    """Whether `e` is shaped like an element `encode_key` makes (or a sentinel / tie)."""
    if e.__class__ is not tuple or not e or e[0].__class__ is not int:
        return False
    rank, n = e[0], len(e)
    if rank in (RANK_MISSING, RANK_NULL, -1, 99):
        return n == 1
    if rank == RANK_NUMBER:
        return (n == 3 and e[1] == 0 and e[2].__class__ in (int, float)) or e == NAN_KEY
    if rank == RANK_BOOL:
        return n == 2 and e[1].__class__ is bool
    if rank == RANK_STR:
        return n == 2 and e[1].__class__ is str
    if rank == RANK_BYTES:
        return n == 2 and e[1].__class__ is bytes
    if rank == RANK_LIST:
        return n == 2 and e[1].__class__ is tuple and all(is_key_element(x) for x in e[1])
    if rank == RANK_DICT:
        return n == 2 and e[1].__class__ is tuple and all(
            p.__class__ is tuple and len(p) == 2 and p[0].__class__ is str
            and is_key_element(p[1]) for p in e[1])
    if rank == 8:
        return n == 3 and e[1].__class__ is float and e[2].__class__ is str
    return False
