"""`ctx.db` for reading: the query builder, index ranges, pagination, the system reader.

A range becomes a half-open interval `[start, end)` of index keys (see _values.py).
Bounds are built from prefixes of `(rank, value)` pairs and the sentinels KEY_MIN /
KEY_MAX, so that no stored key ever equals a bound: inclusive and exclusive bounds are
all expressed by where the bound sorts. The `by_id` index's keys are the id strings
themselves, so its bounds are strings too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from ._catalog import TableInfo
from ._errors import LiveDBError, ValidationError
from ._ids import Id, system_table_name
from ._results import PaginationResult, decode_cursor, encode_cursor
from ._search import SearchPlan, search_plan
from ._transaction import Transaction, WriteTransaction
from ._validators import Mismatch, check_value
from ._values import KEY_MAX, KEY_MIN, RANK_STR, decode, encode_key, is_pairs, type_name

_CURSOR_VERSION = 2
_ID_MAX = "\U0010ffff"
"""Sorts after every id (ids are ASCII)."""


def after(key: Any) -> Any:
    """The least bound above `key` (and below every key it is not a prefix of)."""
    return key + "\0" if key.__class__ is str else key + (KEY_MIN,)


class IndexRange:
    """The `q` given to a `with_index` range function: `eq`s, then one lower and upper bound.

    Example:
        ```python
        ctx.db.query("messages").with_index(
            "by_channel_time", lambda q: q.eq("channel", "general").gte("time", since))
        ```
    """

    __slots__ = ("_fields", "_index", "_eq", "_lower", "_upper", "_bound_field")

    def __init__(self, index: str, fields: tuple[str, ...]) -> None:
        self._index = index
        self._fields = fields
        self._eq: list[Any] = []
        self._lower: tuple[Any, ...] | None = None
        self._upper: tuple[Any, ...] | None = None
        self._bound_field: str | None = None

    def _value(self, op: str, field: str, value: Any) -> tuple[int, Any]:
        try:
            check_value(value, 1)
        except Mismatch as e:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}, ...): "
                                  f"{e.render('value')}") from None
        return encode_key(value)

    def _next_field(self, op: str, field: str) -> None:
        if not isinstance(field, str):
            raise ValidationError(f"with_index({self._index!r}).{op}: field must be a str, "
                                  f"got {type_name(field)}")
        position = len(self._eq) // 2
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
        """Documents whose `field` equals `value` (fields in the index's order)."""
        if self._bound_field is not None:
            raise ValidationError(f"with_index({self._index!r}).eq({field!r}): eq must come "
                                  "before gt/gte/lt/lte")
        self._next_field("eq", field)
        self._eq.extend(self._value("eq", field, value))
        return self

    def _bound(self, op: str, field: str, value: Any) -> tuple[int, Any]:
        if self._bound_field is None:
            self._next_field(op, field)
            self._bound_field = field
        elif field != self._bound_field:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): bounds must "
                                  f"be on {self._bound_field!r}, the field after the eq prefix")
        return self._value(op, field, value)

    def gt(self, field: str, value: Any) -> IndexRange:
        """Documents whose `field` is greater than `value` (by the total order)."""
        return self._set_lower("gt", field, value, inclusive=False)

    def gte(self, field: str, value: Any) -> IndexRange:
        """Documents whose `field` is greater than or equal to `value`."""
        return self._set_lower("gte", field, value, inclusive=True)

    def lt(self, field: str, value: Any) -> IndexRange:
        """Documents whose `field` is less than `value`."""
        return self._set_upper("lt", field, value, inclusive=False)

    def lte(self, field: str, value: Any) -> IndexRange:
        """Documents whose `field` is less than or equal to `value`."""
        return self._set_upper("lte", field, value, inclusive=True)

    def _set_lower(self, op: str, field: str, value: Any, inclusive: bool) -> IndexRange:
        if self._lower is not None:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): only one "
                                  "lower bound (gt or gte) is allowed")
        pair = self._bound(op, field, value)
        self._lower = pair if inclusive else (*pair, KEY_MAX)
        return self

    def _set_upper(self, op: str, field: str, value: Any, inclusive: bool) -> IndexRange:
        if self._upper is not None:
            raise ValidationError(f"with_index({self._index!r}).{op}({field!r}): only one "
                                  "upper bound (lt or lte) is allowed")
        pair = self._bound(op, field, value)
        self._upper = (*pair, KEY_MAX) if inclusive else pair
        return self

    def bounds(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """`(start, end)` in key space: every key `k` in range has `start <= k < end`."""
        prefix = tuple(self._eq)
        start = prefix + self._lower if self._lower is not None else prefix
        end = prefix + self._upper if self._upper is not None else prefix + (KEY_MAX,)
        return start, end


def _id_bound(bound: tuple[Any, ...]) -> str:
    """A `by_id` bound in string space from a bound in pair space."""
    if not bound:
        return ""
    if bound[0] == KEY_MAX:
        return _ID_MAX
    rank = bound[0]
    if rank < RANK_STR:
        return ""
    if rank > RANK_STR:
        return _ID_MAX
    text: str = bound[1]
    return text + "\0" if len(bound) > 2 else text


class Query:
    """A single-use query over one table; built by `ctx.db.query(table)`.

    Chain, in this order, any of `with_index` (or `with_search_index`), `order`,
    `filter`, then one terminal: `collect`, `take`, `first`, `unique`, `paginate`, or
    iteration.

    Example:
        ```python
        latest = (ctx.db.query("messages")
                  .with_index("by_channel", lambda q: q.eq("channel", "general"))
                  .order("desc")
                  .take(20))
        ```
    """

    __slots__ = ("_txn", "_table", "_info", "_index", "_name", "_position", "_start", "_end",
                 "_reverse", "_filters", "_stage", "_search")

    def __init__(self, txn: Transaction, table: str, info: TableInfo) -> None:
        self._txn = txn
        self._table = table
        self._info = info
        self._index = "by_creation_time"
        self._name = info.index_ids[1]
        self._position = 1
        self._start: Any = ()
        self._end: Any = (KEY_MAX,)
        self._reverse = False
        self._filters: list[Callable[[dict[str, Any]], Any]] = []
        self._stage = 0
        self._search: SearchPlan | None = None

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
        """Read through index `name`, limited by `range` (eq on a prefix, then bounds).

        Args:
            name: An index of the table: `by_id`, `by_creation_time`, or one the schema
                defines.
            range: A function of `q` (an `IndexRange`) calling `q.eq(...)` on a prefix of
                the index's fields, then at most one lower (`gt`/`gte`) and one upper
                (`lt`/`lte`) bound on the next field. Without it the whole index is read.

        Raises:
            ValidationError: an unknown index, or a range that does not fit the index.
        """
        self._advance(1, "with_index")
        info = self._info
        position = info.positions.get(name) if isinstance(name, str) else None
        if position is None:
            raise ValidationError(f"with_index: table {self._table!r} has no index {name!r} "
                                  f"(indexes: {', '.join(info.index_names)})")
        self._index = name
        self._name = info.index_ids[position]
        self._position = position
        start: tuple[Any, ...] = ()
        end: tuple[Any, ...] = (KEY_MAX,)
        if range is not None:
            if not callable(range):
                raise TypeError(f"with_index({name!r}, ...): the range must be a function of "
                                f"q, got {type_name(range)}")
            q = IndexRange(name, info.index_fields[position])
            result = range(q)
            if result is not q and result is not None:
                raise ValidationError(f"with_index({name!r}, ...): the range function must "
                                      "return q (chain q.eq(...).gt(...))")
            start, end = q.bounds()
        if position == 0:
            self._start, self._end = _id_bound(start), _id_bound(end)
        else:
            self._start, self._end = start, end
        return self

    def with_search_index(self, name: str, search: Callable[[Any], Any]) -> Query:
        """Full-text search through a search index (results in relevance order).

        `search(q)` calls `q.search(field, text)`, then optionally `.eq(field, value)` on
        the index's filter fields. The last term of the text also matches as a prefix."""
        self._advance(1, "with_search_index")
        self._search = search_plan(self._txn, self._table, self._info, name, search)
        return self

    def order(self, order: str) -> Query:
        """`"asc"` (the default) or `"desc"` along the index."""
        if order not in ("asc", "desc"):
            raise ValidationError(f"order: expected 'asc' or 'desc', got {order!r}")
        if self._search is not None:
            raise ValidationError(f"query on {self._table!r}: search results come in "
                                  "relevance order; order() cannot follow with_search_index")
        self._advance(2, "order")
        self._reverse = order == "desc"
        return self

    def filter(self, predicate: Callable[[dict[str, Any]], Any]) -> Query:
        """Keep only documents for which `predicate(doc)` is true.

        A filter does not narrow what the query reads: a live query re-runs for any write
        in the range it scans."""
        if not callable(predicate):
            raise TypeError(f"filter: expected a function of the document, got "
                            f"{type_name(predicate)}")
        self._advance(3, "filter")
        self._filters.append(predicate)
        return self

    # -- terminals ---------------------------------------------------------------

    def collect(self) -> list[dict[str, Any]]:
        """Every matching document."""
        return self._run(None)

    def take(self, n: int) -> list[dict[str, Any]]:
        """The first `n` matching documents (`n` >= 0)."""
        if n.__class__ is not int or n < 0:
            raise ValidationError(f"take: n must be an int >= 0, got {n!r}")
        if n == 0:
            self._advance(9, "take")
            return []
        return self._run(n)

    def first(self) -> dict[str, Any] | None:
        """The first matching document, or None."""
        docs = self._run(1)
        return docs[0] if docs else None

    def unique(self) -> dict[str, Any] | None:
        """The only matching document, None if there is none.

        Raises:
            LiveDBError: more than one document matches.
        """
        docs = self._run(2)
        if len(docs) > 1:
            raise LiveDBError(f"unique: more than one document in {self._table!r} matches "
                              f"({docs[0]['_id']} and {docs[1]['_id']})")
        return docs[0] if docs else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._advance(9, "iteration")
        if self._search is not None:
            return iter(self._search.collect(self._txn, self._filters, None))
        return self._iterate(self._start, self._end)

    def paginate(self, num_items: int | dict[str, Any], cursor: str | None = None, *,
                 end_cursor: str | None = None) -> PaginationResult:
        """One page of at most `num_items` documents after `cursor` (None: the start).

        Args:
            num_items: How many documents (that pass the filters) a page holds, >= 1. It
                may also be a dict of the arguments, as a live paginated view passes it:
                `{"num_items": n, "cursor": c, "end_cursor": e}`.
            cursor: The `continue_cursor` of the previous page, or None.
            end_cursor: Return exactly the documents between `cursor` and this cursor (a
                live page keeps its boundaries fixed this way).

        Returns:
            A `PaginationResult` with `.page`, `.is_done` and `.continue_cursor`.

        Raises:
            ValidationError: a bad `num_items`, or a cursor of another query.
        """
        if num_items.__class__ is dict:
            opts: dict[str, Any] = num_items  # pyright: ignore[reportAssignmentType]
            unknown = set(opts) - {"num_items", "cursor", "end_cursor"}
            if unknown or "num_items" not in opts:
                raise ValidationError(f"paginate: pagination options take num_items, cursor "
                                      f"and end_cursor, got {sorted(opts)}")
            num_items = opts["num_items"]
            cursor = opts.get("cursor", cursor)
            end_cursor = opts.get("end_cursor", end_cursor)
        if num_items.__class__ is not int or num_items < 1:  # pyright: ignore[reportOperatorIssue]
            raise ValidationError(f"paginate: num_items must be an int >= 1, got "
                                  f"{num_items!r}")
        self._advance(9, "paginate")
        if self._search is not None:
            return self._search.paginate(self._txn, self._filters, num_items,  # type: ignore[no-any-return]
                                         cursor, end_cursor)
        start, end, reverse = self._start, self._end, self._reverse
        mark = self._fingerprint()
        if cursor is not None:
            past = self._decode_cursor(cursor, mark)
            if reverse:
                end = min(end, past)
            else:
                start = max(start, after(past))
        limit: int | None = num_items  # pyright: ignore[reportAssignmentType]
        until = None
        if end_cursor is not None:
            until = self._decode_cursor(end_cursor, mark)
            limit = None
            if reverse:
                start = max(start, until)
            else:
                end = min(end, after(until))
        page: list[dict[str, Any]] = []
        last = self._fill(start, end, limit, page)
        if until is not None:
            position = until
            is_done = self._exhausted(position)
        elif len(page) >= num_items:  # pyright: ignore[reportOperatorIssue]
            position = last
            is_done = self._exhausted(position)
        else:
            position = self._start if reverse else self._end
            is_done = True
        return PaginationResult(page, is_done, encode_cursor(_CURSOR_VERSION, mark, position))

    # -- internals ---------------------------------------------------------------

    def _run(self, limit: int | None) -> list[dict[str, Any]]:
        self._advance(9, "the terminal")
        if self._search is not None:
            return self._search.collect(self._txn, self._filters, limit)
        out: list[dict[str, Any]] = []
        self._fill(self._start, self._end, limit, out)
        return out

    def _fill(self, start: Any, end: Any, limit: int | None, out: list[dict[str, Any]]
              ) -> Any:
        """Collect into `out`; record the range read (up to the last key if stopped early)."""
        txn = self._txn
        name = self._name
        last, complete = txn.fill(name, self._position, start, end, self._reverse,
                                  self._filters, limit, out)
        if txn.read_ranges is not None:
            if complete:
                txn.read_ranges.append((name, start, end))
            elif self._reverse:
                txn.read_ranges.append((name, last, end))
            else:
                txn.read_ranges.append((name, start, after(last)))
        return last

    def _iterate(self, start: Any, end: Any) -> Iterator[dict[str, Any]]:
        """Lazily yield documents; records the range read so far when closed early."""
        txn = self._txn
        name = self._name
        position = self._position
        reverse = self._reverse
        filters = self._filters
        trusted = txn.trusted
        last = None
        complete = False
        try:
            for key, blob in txn.scan(name, position, start, end, reverse):
                last = key
                doc = decode(blob)
                doc["_id"] = Id(key if position == 0 else key[-1])
                if filters and not all(p(doc) for p in filters):
                    continue
                trusted[id(doc)] = (doc, blob)
                yield doc
            complete = True
        finally:
            ranges = txn.read_ranges
            if ranges is not None:
                if complete:
                    ranges.append((name, start, end))
                elif last is None:
                    pass
                elif reverse:
                    ranges.append((name, last, end))
                else:
                    ranges.append((name, start, after(last)))

    def _exhausted(self, position: Any) -> bool:
        """Whether no key follows `position` in this query's range (recorded as read)."""
        txn = self._txn
        name = self._name
        if self._reverse:
            start, end = self._start, position
        else:
            start, end = after(position), self._end
        ranges = txn.read_ranges
        for key, _blob in txn.scan(name, self._position, start, end, self._reverse):
            if ranges is not None:
                if self._reverse:
                    ranges.append((name, key, end))
                else:
                    ranges.append((name, start, after(key)))
            return False
        if ranges is not None:
            ranges.append((name, start, end))
        return True

    def _fingerprint(self) -> bytes:
        text = repr((self._table, self._index, self._start, self._end, self._reverse))
        return hashlib.blake2b(text.encode(), digest_size=8).digest()

    def _decode_cursor(self, cursor: Any, mark: bytes) -> Any:
        key = decode_cursor(cursor, _CURSOR_VERSION, mark,
                            "another table, index, range or order")
        if self._position == 0:
            ok = key.__class__ is str
        else:
            ok = key.__class__ is tuple and _is_position(key)
        if not ok:
            raise ValidationError("paginate: the cursor is not one livedb made")
        return key


def _is_position(key: tuple[Any, ...]) -> bool:
    """Whether `key` has the shape of a key or a bound livedb puts in a cursor: pairs,
    maybe a creation time and an id, maybe a final sentinel."""
    shapes = [key]
    if key and key[-1].__class__ is float and key[-1] in (KEY_MIN, KEY_MAX):
        shapes.append(key[:-1])
    for shape in shapes:
        if is_pairs(shape) or (len(shape) >= 2 and shape[-1].__class__ is str
                               and shape[-2].__class__ is float and is_pairs(shape[:-2])):
            return True
    return False


class SystemReader:
    """`ctx.db.system`: read-only `get` and `query` on the system tables
    (`_scheduled_functions`, `_storage`)."""

    __slots__ = ("_txn",)

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    def get(self, id: str) -> dict[str, Any] | None:
        """A document of a system table by id, or None."""
        return self._txn.system_get(id)

    def query(self, table: str) -> Query:
        """A query over a system table (then `with_index`, `order`, ... as usual)."""
        if not system_table_name(table):
            raise ValidationError(f"system.query: {table!r} is not a system table "
                                  "(_scheduled_functions, _storage)")
        info = self._txn.catalog.for_read(table, "system.query")
        return Query(self._txn, table, info)


class _Reading:
    """What `ctx.db` adds to a transaction for reading: `query` and `system`."""

    __slots__ = ()

    def query(self, table: str) -> Query:
        """Start a query over `table` (then `with_index`, `order`, `filter`, a terminal).

        Raises:
            ValidationError: an unknown table (with a strict schema), or a bad name.
        """
        txn: Transaction = self  # type: ignore[assignment]
        return Query(txn, table, txn.catalog.for_read(table, "query"))

    @property
    def system(self) -> SystemReader:
        """Read-only access to the system tables `_scheduled_functions` and `_storage`."""
        return SystemReader(self)  # type: ignore[arg-type]


class Reader(_Reading, Transaction):
    """`ctx.db` in a query: `get`, `query`, `normalize_id`, `system`, at one snapshot."""

    __slots__ = ()


class Writer(_Reading, WriteTransaction):
    """`ctx.db` in a mutation: the reads of a query (seeing this mutation's own writes)
    plus `insert`, `patch`, `replace` and `delete`, all committed together or not at all."""

    __slots__ = ()
