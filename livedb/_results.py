"""What functions hand back: pages of results, exact copies of results, cursors.

`fingerprint` encodes a result exactly (an `Id` stays an `Id`, `1`, `1.0` and `True`
differ, a NaN equals itself) so that a live query can tell a changed result from an
equal one and give every subscriber its own fresh copy (`copy_of`). Cursors are opaque
strings: a format version, a fingerprint of the query they belong to, and a position.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from ._errors import ValidationError
from ._ids import Id
from ._values import MAX_DEPTH, storable_hook, type_name


class PaginationResult:
    """One page of a paginated query, as `query.paginate(...)` returns it.

    A function may return it as it is (a query returning a page is what
    `client.paginated` and Convex's `usePaginatedQuery` expect).

    Attributes:
        page: The documents of this page (plain dicts), in the query's order.
        is_done: True when no document follows this page.
        continue_cursor: Pass it as `cursor` to get the next page: an opaque `str`,
            valid only for the same query.

    Examples:
        >>> from livedb import Database
        >>> db = Database()
        >>> for n in range(3):
        ...     _ = db.mutation(lambda ctx: ctx.db.insert("numbers", {"n": n}))
        >>> first = db.query(lambda ctx: ctx.db.query("numbers").paginate(2))
        >>> [d["n"] for d in first.page], first.is_done
        ([0, 1], False)
        >>> rest = db.query(lambda ctx: ctx.db.query("numbers").paginate(
        ...     2, first.continue_cursor))
        >>> [d["n"] for d in rest.page], rest.is_done
        ([2], True)
        >>> db.close()
    """

    __slots__ = ("page", "is_done", "continue_cursor")

    def __init__(self, page: list[dict[str, Any]], is_done: bool, continue_cursor: str) -> None:
        self.page = page
        self.is_done = is_done
        self.continue_cursor = continue_cursor

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PaginationResult) and self.page == other.page
                and self.is_done == other.is_done
                and self.continue_cursor == other.continue_cursor)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"PaginationResult(page=<{len(self.page)} documents>, is_done={self.is_done}, "
                f"continue_cursor={self.continue_cursor!r})")


# -- exact results ---------------------------------------------------------------------

_ID_EXT, _PAGE_EXT = 1, 2


def _exact_hook(value: Any) -> Any:
    if value.__class__ is Id:
        return msgspec.msgpack.Ext(_ID_EXT, str.encode(value))
    if value.__class__ is PaginationResult:
        return msgspec.msgpack.Ext(_PAGE_EXT, _encode_exact(
            [value.page, value.is_done, value.continue_cursor]))
    return storable_hook(value)


def _exact_ext(code: int, data: memoryview) -> Any:
    if code == _ID_EXT:
        return Id(bytes(data).decode())
    if code == _PAGE_EXT:
        page, is_done, cursor = _decode_exact(data)
        return PaginationResult(page, is_done, cursor)
    raise ValueError(f"unknown msgpack extension {code}")


_encode_exact = msgspec.msgpack.Encoder(enc_hook=_exact_hook).encode
_encode_canonical = msgspec.msgpack.Encoder(enc_hook=_exact_hook, order="sorted").encode
_decode_exact = msgspec.msgpack.Decoder(ext_hook=_exact_ext).decode


def fingerprint(result: Any) -> bytes:
    """A result encoded exactly: kinds count (`1`, `1.0` and `True` differ, an `Id` is not
    a plain `str`), a NaN equals itself, and `copy_of` turns it back into an equal value."""
    return _encode_exact(result)


def copy_of(encoded: bytes) -> Any:
    """A fresh, independent copy of the value `fingerprint` encoded."""
    return _decode_exact(encoded)


def copy_value(value: Any) -> Any:
    """A deep copy of a result (ids stay `Id`s), for its receiver to change freely."""
    if value is None or value.__class__ in (str, int, float, bool, bytes, Id):
        return value
    return _decode_exact(_encode_exact(value))


def same_result(a: Any, b: Any) -> bool:
    """Whether two results are the same value (see `fingerprint`)."""
    return a is b or fingerprint(a) == fingerprint(b)


def args_key(args: dict[str, Any]) -> bytes:
    """Call arguments encoded exactly (`1`, `1.0`, `-0.0` and `0.0` differ) but in key
    order, so calls a handler cannot tell apart share one live query, and only those."""
    return _encode_canonical(args)


# -- cursors ---------------------------------------------------------------------------

_MAX_CURSOR_DEPTH = 2 * MAX_DEPTH + 8
"""How deeply a position in a cursor may nest (an index key of nested values)."""


def encode_cursor(version: Any, mark: bytes | str, position: Any) -> str:
    """An opaque cursor: a format version, the query's fingerprint `mark`, a position."""
    raw = _encode_exact([version, mark, position])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any, version: Any, mark: bytes | str, other: str) -> Any:
    """The position in a cursor `encode_cursor` made for this query, lists as tuples.

    Raises:
        ValidationError: the cursor is not a `str`, not one livedb made, or made for
            another query (the message names what makes queries `other`wise different).
    """
    if not isinstance(cursor, str):
        raise ValidationError(f"paginate: a cursor is a str, got {type_name(cursor)}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found, found_mark, position = _decode_exact(raw)
    except Exception:
        raise ValidationError("paginate: the cursor is not one livedb made") from None
    if found != version or found_mark != mark:
        raise ValidationError(f"paginate: the cursor belongs to a different query ({other})")
    return _as_tuple(position, 0)


def _as_tuple(value: Any, depth: int) -> Any:
    if value.__class__ is list:
        if depth > _MAX_CURSOR_DEPTH:
            raise ValidationError("paginate: the cursor is not one livedb made")
        return tuple([_as_tuple(v, depth + 1) for v in value])
    return value
