"""The query builder: index ranges, order, filters, terminals and pagination cursors.

A range becomes a half-open interval `[start, end)` of encoded keys. Bounds are built
from prefixes and the sentinels KEY_MIN / KEY_MAX so that no stored key ever equals a
bound: inclusive and exclusive bounds are all expressed by where the bound sorts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import LiveDBError, ValidationError
from ._ids import Id, parse_id
from ._validators import Mismatch, check_any
from ._values import (
    KEY_MAX,
    KEY_MIN,
    MAX_DEPTH,
    encode,
    encode_key,
    is_key_element,
    type_name,
)

if TYPE_CHECKING:
    from ._schema import TableInfo
    from ._transaction import Transaction

_CURSOR_VERSION = 1


class PaginationResult:
    """One page of a paginated query: `.page`, `.is_done`, `.continue_cursor`."""

    __slots__ = ("page", "is_done", "continue_cursor")

    def __init__(self, page: list[dict], is_done: bool, continue_cursor: str) -> None:
        self.page = page
        self.is_done = is_done
        self.continue_cursor = continue_cursor

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PaginationResult) and self.page == other.page
                and self.is_done == other.is_done
                and self.continue_cursor == other.continue_cursor)

    def __repr__(self) -> str:
        return (f"PaginationResult(page=<{len(self.page)} documents>, is_done={self.is_done}, "
                f"continue_cursor={self.continue_cursor!r})")


class IndexRange:
    """The `q` given to a `with_index` range function: `eq`s, then one lower and upper bound."""

    __slots__ = ("_fields", "_index", "_eq", "_lower", "_upper", "_bound_field")

    def __init__(self, index: str, fields: tuple[str, ...]) -> None:
        self._index = index
        self._fields = fields
        self._eq: list[tuple] = []
        self._lower: tuple | None = None
        self._upper: tuple | None = None
        self._bound_field: str | None = None

    def _value(self, op: str, field: str, value: Any) -> tuple:
        try:
            check_any(value, 1)
        except Mismatch as e:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}, ...): "
                                  f"{e.render('value')}") from None
        return encode_key(value)

    def _next_field(self, op: str, field: str) -> None:
        if not isinstance(field, str):
            raise ValidationError(f"with_index({self._index!r}).{op}: field must be a str, "
                                  f"got {type_name(field)}")
        position = len(self._eq)
        if position >= len(self._fields):
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): every field "
                                  f"of the index {list(self._fields)} is already fixed by eq")
        want = self._fields[position]
        if field != want:
            done = f" after eq on {list(self._fields[:position])}" if position else ""
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): expected a "
                                  f"condition on {want!r}{done} (index fields "
                                  f"{list(self._fields)}, used in order)")

    def eq(self, field: str, value: Any) -> IndexRange:
        if self._bound_field is not None:
            raise ValidationError(f"with_index({self._index!r}).eq({field!r}): eq must come "
                                  "before gt/gte/lt/lte")
        self._next_field("eq", field)
        self._eq.append(self._value("eq", field, value))
        return self

    def _bound(self, op: str, field: str, value: Any) -> tuple:
        if self._bound_field is None:
            self._next_field(op, field)
            self._bound_field = field
        elif field != self._bound_field:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): bounds must "
                                  f"be on {self._bound_field!r}, the field after the eq prefix")
        return self._value(op, field, value)

    def gt(self, field: str, value: Any) -> IndexRange:
        return self._set_lower("gt", field, value, inclusive=False)

    def gte(self, field: str, value: Any) -> IndexRange:
        return self._set_lower("gte", field, value, inclusive=True)

    def lt(self, field: str, value: Any) -> IndexRange:
        return self._set_upper("lt", field, value, inclusive=False)

    def lte(self, field: str, value: Any) -> IndexRange:
        return self._set_upper("lte", field, value, inclusive=True)

    def _set_lower(self, op: str, field: str, value: Any, inclusive: bool) -> IndexRange:
        if self._lower is not None:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): only one "
                                  "lower bound (gt or gte) is allowed")
        key = self._bound(op, field, value)
        self._lower = (key,) if inclusive else (key, KEY_MAX)
        return self

    def _set_upper(self, op: str, field: str, value: Any, inclusive: bool) -> IndexRange:
        if self._upper is not None:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): only one "
                                  "upper bound (lt or lte) is allowed")
        key = self._bound(op, field, value)
        self._upper = (key, KEY_MAX) if inclusive else (key,)
        return self

    def bounds(self) -> tuple[tuple, tuple]:
        prefix = tuple(self._eq)
        start = prefix + self._lower if self._lower is not None else prefix
        end = prefix + self._upper if self._upper is not None else prefix + (KEY_MAX,)
        return start, end


def _whole_index() -> tuple[tuple, tuple]:
    return (), (KEY_MAX,)


class Query:
    """A single-use query over one table; built by `ctx.db.query(table)`."""

    __slots__ = ("_txn", "_table", "_info", "_index", "_position", "_start", "_end",
                 "_reverse", "_filters", "_stage", "_search")

    def __init__(self, txn: Transaction, table: str, info: TableInfo) -> None:
        self._txn = txn
        self._table = table
        self._info = info
        self._index = "by_creation_time"
        self._position = 1
        self._start, self._end = _whole_index()
        self._reverse = False
        self._filters: list[Callable[[dict], Any]] = []
        self._stage = 0
        self._search: Any = None

    def _advance(self, stage: int, what: str) -> None:
        if self._stage == 9:
            raise LiveDBError(f"query on {self._table!r}: this query was already run; build a "
                              "new one with ctx.db.query(...)")
        if stage <= self._stage and not (stage == 3 and self._stage == 3):
            raise ValidationError(f"query on {self._table!r}: {what} must come right after "
                                  "query(...), before order, filter and the terminal"
                                  if stage == 1 else
                                  f"query on {self._table!r}: {what} may be called once, "
                                  "before filter and the terminal")
        self._stage = stage

    def with_index(self, name: str,
                   range: Callable[[IndexRange], Any] | None = None) -> Query:
        """Read through index `name`, limited by `range` (eq on a prefix, then bounds)."""
        self._advance(1, "with_index")
        info = self._info
        position = info.positions.get(name) if isinstance(name, str) else None
        if position is None:
            raise ValidationError(f"with_index: table {self._table!r} has no index {name!r} "
                                  f"(indexes: {', '.join(info.index_names)})")
        self._index = name
        self._position = position
        if range is not None:
            if not callable(range):
                raise TypeError(f"with_index({name!r}, ...): the range must be a function of "
                                f"q, got {type_name(range)}")
            q = IndexRange(name, info.index_fields[position])
            result = range(q)
            if result is not q and result is not None:
                raise ValidationError(f"with_index({name!r}, ...): the range function must "
                                      "return q (chain q.eq(...).gt(...))")
            self._start, self._end = q.bounds()
        return self

    def with_search_index(self, name: str, search: Callable[[Any], Any]) -> Query:
        """Full-text search through a search index (results in relevance order).

        `search(q)` calls `q.search(field, text)`, then optionally `.eq(field, value)` on
        the index's filter fields."""
        from ._search import search_plan

        self._advance(1, "with_search_index")
        self._search = search_plan(self._txn, self._table, self._info, name, search)
        return self

    def order(self, order: str) -> Query:
        """`"asc"` (default) or `"desc"` along the index."""
        if order not in ("asc", "desc"):
            raise ValidationError(f"order: expected 'asc' or 'desc', got {order!r}")
        if self._search is not None:
            raise ValidationError(f"query on {self._table!r}: search results come in "
                                  "relevance order; order() cannot follow with_search_index")
        self._advance(2, "order")
        self._reverse = order == "desc"
        return self

    def filter(self, predicate: Callable[[dict], Any]) -> Query:
        """Keep only documents for which `predicate(doc)` is true (does not narrow reads)."""
        if not callable(predicate):
            raise TypeError(f"filter: expected a function of the document, got "
                            f"{type_name(predicate)}")
        self._advance(3, "filter")
        self._filters.append(predicate)
        return self

    # -- terminals ---------------------------------------------------------------

    def collect(self) -> list[dict]:
        """Every matching document."""
        return self._run(None)

    def take(self, n: int) -> list[dict]:
        """The first `n` matching documents."""
        if n.__class__ is not int or n < 0:
            raise ValidationError(f"take: n must be an int >= 0, got {n!r}")
        if n == 0:
            self._advance(9, "take")
            return []
        return self._run(n)

    def first(self) -> dict | None:
        """The first matching document, or None."""
        docs = self._run(1)
        return docs[0] if docs else None

    def unique(self) -> dict | None:
        """The only matching document, None if there is none; `LiveDBError` if several."""
        docs = self._run(2)
        if len(docs) > 1:
            raise LiveDBError(f"unique: more than one document in {self._table!r} matches "
                              f"({docs[0]['_id']} and {docs[1]['_id']})")
        return docs[0] if docs else None

    def __iter__(self) -> Iterator[dict]:
        self._advance(9, "iteration")
        if self._search is not None:
            return iter(self._search.collect(self._txn, self._filters, None))
        return self._iterate(self._start, self._end)

    def paginate(self, num_items: int | dict, cursor: str | None = None, *,
                 end_cursor: str | None = None) -> PaginationResult:
        """One page of at most `num_items` documents after `cursor` (None: the start).

        With `end_cursor`, exactly the documents between `cursor` and `end_cursor`.
        `num_items` may also be a dict of these arguments, as live paginated views pass it
        (`{"num_items": n, "cursor": c, "end_cursor": e}`).
        """
        if num_items.__class__ is dict:
            opts = num_items
            unknown = set(opts) - {"num_items", "cursor", "end_cursor"}
            if unknown or "num_items" not in opts:
                raise ValidationError(f"paginate: pagination options take num_items, cursor "
                                      f"and end_cursor, got {sorted(opts)}")
            num_items = opts["num_items"]
            cursor = opts.get("cursor", cursor)
            end_cursor = opts.get("end_cursor", end_cursor)
        if num_items.__class__ is not int or num_items < 1:
            raise ValidationError(f"paginate: num_items must be an int >= 1, got "
                                  f"{num_items!r}")
        self._advance(9, "paginate")
        if self._search is not None:
            return self._search.paginate(self._txn, self._filters, num_items, cursor,
                                         end_cursor)
        start, end, reverse = self._start, self._end, self._reverse
        fingerprint = self._fingerprint()
        if cursor is not None:
            after = self._decode_cursor(cursor, fingerprint)
            if reverse:
                end = min(end, after)
            else:
                start = max(start, after + (KEY_MIN,))
        limit: int | None = num_items
        if end_cursor is not None:
            until = self._decode_cursor(end_cursor, fingerprint)
            limit = None
            if reverse:
                start = max(start, until)
            else:
                end = min(end, until + (KEY_MIN,))
        page: list[dict] = []
        last = self._fill(start, end, limit, page)
        if end_cursor is not None:
            position = until
            is_done = self._exhausted(position)
        elif len(page) >= num_items:
            position = last
            is_done = self._exhausted(position)
        else:
            position = self._start if reverse else self._end
            is_done = True
        return PaginationResult(page, is_done, self._encode_cursor(fingerprint, position))

    # -- internals ---------------------------------------------------------------

    def _run(self, limit: int | None) -> list[dict]:
        self._advance(9, "the terminal")
        if self._search is not None:
            return self._search.collect(self._txn, self._filters, limit)
        out: list[dict] = []
        self._fill(self._start, self._end, limit, out)
        return out

    def _fill(self, start: tuple, end: tuple, limit: int | None, out: list) -> tuple | None:
        """Collect into `out`; record the range read (up to the last key if stopped early)."""
        txn = self._txn
        index = (self._table, self._index)
        last, complete = txn._fill(index, self._position, start, end, self._reverse,
                                   self._filters, limit, out)
        if complete:
            txn.read_ranges.append((index, start, end))
        elif self._reverse:
            txn.read_ranges.append((index, last, end))
        else:
            txn.read_ranges.append((index, start, last + (KEY_MIN,)))
        return last

    def _iterate(self, start: tuple, end: tuple) -> Iterator[dict]:
        """Lazily yield documents; records the range read so far when closed early."""
        from ._transaction import to_document

        txn = self._txn
        index = (self._table, self._index)
        reverse = self._reverse
        filters = self._filters
        trusted = txn.trusted
        last = None
        complete = False
        try:
            for key, blob in txn._scan(index, self._position, start, end, reverse):
                last = key
                doc = to_document(blob)
                if filters and not all(p(doc) for p in filters):
                    continue
                trusted[id(doc)] = (doc, tuple(doc), tuple(doc.values()), len(blob))
                yield doc
            complete = True
        finally:
            ranges = txn.read_ranges
            if complete:
                ranges.append((index, start, end))
            elif last is None:
                pass
            elif reverse:
                ranges.append((index, last, end))
            else:
                ranges.append((index, start, last + (KEY_MIN,)))

    def _exhausted(self, position: tuple) -> bool:
        """Whether no key follows `position` in this query's range (recorded as read)."""
        txn = self._txn
        index = (self._table, self._index)
        if self._reverse:
            start, end = self._start, position
        else:
            start, end = position + (KEY_MIN,), self._end
        ranges = txn.read_ranges
        for key, _blob in txn._scan(index, self._position, start, end, self._reverse):
            if self._reverse:
                ranges.append((index, key, end))
            else:
                ranges.append((index, start, key + (KEY_MIN,)))
            return False
        ranges.append((index, start, end))
        return True

    def _fingerprint(self) -> bytes:
        text = repr((self._table, self._index, self._start, self._end, self._reverse))
        return hashlib.blake2b(text.encode(), digest_size=8).digest()

    @staticmethod
    def _encode_cursor(fingerprint: bytes, position: tuple) -> str:
        return encode_cursor(_CURSOR_VERSION, fingerprint, position)

    def _decode_cursor(self, cursor: Any, fingerprint: bytes) -> tuple:
        position = decode_cursor(cursor, _CURSOR_VERSION, fingerprint,
                                 "another table, index, range or order")
        key = _as_tuple(position)
        if key.__class__ is not tuple or not all(is_key_element(e) for e in key):
            raise ValidationError("paginate: the cursor is not one livedb made")
        return key


def encode_cursor(version: Any, fingerprint: bytes, position: Any) -> str:
    """An opaque cursor: a format version, the query's fingerprint and a position."""
    raw = encode([version, fingerprint, position])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any, version: Any, fingerprint: bytes, other: str) -> Any:
    """The position in a cursor `encode_cursor` made for this query; `ValidationError`
    naming what makes queries `other`wise different when it belongs to another one."""
    if not isinstance(cursor, str):
        raise ValidationError(f"paginate: a cursor is a str, got {type_name(cursor)}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found, mark, position = msgspec.msgpack.decode(raw)
    except Exception:
        raise ValidationError("paginate: the cursor is not one livedb made") from None
    if found != version or mark != fingerprint:
        raise ValidationError(f"paginate: the cursor belongs to a different query ({other})")
    return position


_MAX_CURSOR_DEPTH = 2 * MAX_DEPTH + 8
"""How deeply a position in a cursor may nest (an index key of nested values)."""


def _as_tuple(value: Any, depth: int = 0) -> Any:
    if isinstance(value, list):
        if depth > _MAX_CURSOR_DEPTH:
            raise ValidationError("paginate: the cursor is not one livedb made")
        return tuple(_as_tuple(v, depth + 1) for v in value)
    return value


class SystemReader:
    """`ctx.db.system`: read-only `get` and `query` on the system tables."""

    __slots__ = ("_txn",)

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    def get(self, id: str) -> dict | None:
        parsed = parse_id(id)
        if parsed is None or parsed[0][0] != "_":
            raise ValidationError(f"system.get: {id!r} is not an id of a system table")
        txn = self._txn
        txn._db._table_for_read(parsed[0], "system.get")
        txn.read_ids.add(parsed[1])
        blob = txn._blob(parsed[1])
        if blob is None:
            return None
        from ._transaction import to_document

        return to_document(blob)

    def query(self, table: str) -> Query:
        if not isinstance(table, str) or not table.startswith("_"):
            raise ValidationError(f"system.query: {table!r} is not a system table "
                                  "(_scheduled_functions, _storage)")
        info = self._txn._db._table_for_read(table, "system.query")
        return Query(self._txn, table, info)


__all__ = ["Query", "IndexRange", "PaginationResult", "SystemReader", "Id"]
