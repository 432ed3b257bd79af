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
    """The `q` given to the range function of `.with_index(name, lambda q: ...)`.

    A range is `eq` on a prefix of the index's fields, in the index's order, then at most
    one lower bound (`gt` or `gte`) and one upper bound (`lt` or `lte`) on the next field.
    Each method returns `q`, so they chain; the range function returns the chain. Any
    other shape (a field out of order, a bound before an `eq`, two lower bounds) is a
    `ValidationError` naming what was expected.

    Values compare in livedb's total order, across kinds: a missing field < `None` <
    numbers < booleans < strings < bytes < lists < dicts. `int` and `float` are one kind,
    compared by value (`1 < 1.5 < 2`; NaN after every other number); `True` and `False`
    are booleans, never numbers. Within a kind the natural order: strings by code point,
    lists element by element (a prefix first), dicts by their (key, value) pairs in key
    order. So `q.gt("age", 30)` also matches documents whose `age` is a string: bound
    both ends, or keep one kind per field (the schema's validators do).

    Examples:
        >>> from livedb import Database, define_schema, define_table, v
        >>> schema = define_schema({"events": define_table(
        ...     {"room": v.string(), "at": v.float64()}).index("by_room_at", ["room", "at"])})
        >>> db = Database(schema)
        >>> for room, at in [("a", 1), ("a", 5), ("a", 9), ("b", 5)]:
        ...     _ = db.mutation(lambda ctx: ctx.db.insert("events", {"room": room, "at": at}))
        >>> db.query(lambda ctx: [e["at"] for e in ctx.db.query("events").with_index(
        ...     "by_room_at", lambda q: q.eq("room", "a").gt("at", 1).lte("at", 9)).collect()])
        [5.0, 9.0]
        >>> db.close()
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
        """Keep the documents whose `field` equals `value`.

        `eq`s come first, on the index's fields in order: the first `eq` on its first field,
        the next on its second, and so on. Equality is in the total order: `1 == 1.0`, but
        `1` is not `True`. A document missing the field matches no `eq`.

        Args:
            field: The next field of the index (a dotted path if the index has one).
            value: A storable value.

        Returns:
            This range, to chain on.

        Raises:
            ValidationError: `field` is not the index's next field, a bound came before,
                or `value` is not storable.
        """
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
        """Keep the documents whose `field` is greater than `value` (in the total order).

        A lower bound: at most one `gt` or `gte`, on the field right after the `eq`s (the
        same field as an upper bound).

        Args:
            field: The index's field after those fixed by `eq`.
            value: A storable value.

        Returns:
            This range, to chain on.

        Raises:
            ValidationError: A lower bound was given already, `field` is not the field after
                the `eq`s, or `value` is not storable.
        """
        return self._set_lower("gt", field, value, inclusive=False)

    def gte(self, field: str, value: Any) -> IndexRange:
        """Keep the documents whose `field` is greater than or equal to `value`.

        A lower bound, like `gt`: at most one, on the field right after the `eq`s.

        Args:
            field: The index's field after those fixed by `eq`.
            value: A storable value.

        Returns:
            This range, to chain on.

        Raises:
            ValidationError: A lower bound was given already, `field` is not the field after
                the `eq`s, or `value` is not storable.
        """
        return self._set_lower("gte", field, value, inclusive=True)

    def lt(self, field: str, value: Any) -> IndexRange:
        """Keep the documents whose `field` is less than `value` (in the total order).

        An upper bound: at most one `lt` or `lte`, on the field right after the `eq`s (the
        same field as a lower bound). A document missing the field sorts before every value,
        so `lt` alone also matches it: add a lower bound (`gte(field, None)` keeps
        everything present) to leave such documents out.

        Args:
            field: The index's field after those fixed by `eq`.
            value: A storable value.

        Returns:
            This range, to chain on.

        Raises:
            ValidationError: An upper bound was given already, `field` is not the field after
                the `eq`s, or `value` is not storable.
        """
        return self._set_upper("lt", field, value, inclusive=False)

    def lte(self, field: str, value: Any) -> IndexRange:
        """Keep the documents whose `field` is less than or equal to `value`.

        An upper bound, like `lt`: at most one, on the field right after the `eq`s.

        Args:
            field: The index's field after those fixed by `eq`.
            value: A storable value.

        Returns:
            This range, to chain on.

        Raises:
            ValidationError: An upper bound was given already, `field` is not the field after
                the `eq`s, or `value` is not storable.
        """
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
    """A query over one table, built by `ctx.db.query(table)`; single-use.

    Chain, in this order, each optional: `with_index` (or `with_search_index`), `order`,
    `filter`; then one terminal: `collect`, `take`, `first`, `unique`, `paginate`, or
    iteration (`for doc in query`). Without `with_index`, documents come in
    `by_creation_time` order (oldest first). Once its terminal ran, a query cannot run
    again: build a new one.

    What a query reads is what a live query watches: the index range it scanned (up to
    where a `take` or `first` stopped) and the documents it fetched. A `filter` does not
    narrow that range, so prefer an index range to a filter when a table is large.

    Examples:
        >>> from livedb import Database, define_schema, define_table, v
        >>> schema = define_schema({"messages": define_table(
        ...     {"channel": v.string(), "body": v.string()}).index("by_channel", ["channel"])})
        >>> db = Database(schema)
        >>> for body in ["one", "two", "three"]:
        ...     _ = db.mutation(lambda ctx: ctx.db.insert(
        ...         "messages", {"channel": "general", "body": body}))
        >>> db.query(lambda ctx: [m["body"] for m in ctx.db.query("messages")
        ...     .with_index("by_channel", lambda q: q.eq("channel", "general"))
        ...     .order("desc")
        ...     .take(2)])
        ['three', 'two']
        >>> db.close()
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
        """Read through index `name`, limited to the range `range` describes.

        Documents come in the index's order: by its fields in the total order of values,
        ties by `_creation_time`, then `_id`. Call it first, right after `ctx.db.query`.

        Args:
            name: An index of the table: one the schema defines, `by_creation_time` (on
                `_creation_time`) or `by_id` (on `_id`).
            range: A function of `q` (an `IndexRange`) calling `q.eq(...)` on a prefix of
                the index's fields, then at most one lower (`gt`/`gte`) and one upper
                (`lt`/`lte`) bound on the next field, and returning `q`. Without it the
                whole index is read.

        Returns:
            This query, to chain on.

        Raises:
            ValidationError: An unknown index, a range that does not fit the index, or
                `with_index` called after `order`, `filter` or another `with_index`.
            TypeError: `range` is not callable.

        Examples:
            >>> from livedb import Database
            >>> now = [1000.0]
            >>> db = Database(clock=lambda: now[0])
            >>> for text in ["old", "new"]:
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": text}))
            ...     now[0] += 60
            >>> db.query(lambda ctx: [n["text"] for n in ctx.db.query("notes").with_index(
            ...     "by_creation_time", lambda q: q.gt("_creation_time", 1030)).collect()])
            ['new']
            >>> db.close()
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
        """Full-text search through search index `name`; results in relevance order.

        A document matches if its search field holds any term of the text (terms are runs of
        letters, digits and `_`, compared case-insensitively); the last term also matches
        as a prefix, so search-as-you-type works. Results are ranked by relevance (BM25),
        then newest first; at most 1024 are ranked. Call it first, right after
        `ctx.db.query`; `order` cannot follow it, `filter` and every terminal can.

        Args:
            name: A search index of the table (see `TableDefinition.search_index`).
            search: A function of `q` calling `q.search(field, text)`, then optionally
                `.eq(field, value)` on the index's filter fields, and returning `q`.

        Returns:
            This query, to chain on.

        Raises:
            ValidationError: An unknown search index, a malformed search (no `search`, a
                wrong field, more than 16 terms), or `with_search_index` called out of order.
            TypeError: `search` is not callable.

        Examples:
            >>> from livedb import Database, define_schema, define_table, v
            >>> schema = define_schema({"messages": define_table(
            ...     {"channel": v.string(), "body": v.string()}).search_index(
            ...     "search_body", search_field="body", filter_fields=["channel"])})
            >>> db = Database(schema)
            >>> for body in ["hello world", "say hello", "goodbye"]:
            ...     _ = db.mutation(lambda ctx: ctx.db.insert(
            ...         "messages", {"channel": "general", "body": body}))
            >>> db.query(lambda ctx: [m["body"] for m in ctx.db.query("messages").with_search_index(
            ...     "search_body", lambda q: q.search("body", "hel").eq("channel", "general")
            ... ).collect()])
            ['say hello', 'hello world']
            >>> db.close()
        """
        self._advance(1, "with_search_index")
        self._search = search_plan(self._txn, self._table, self._info, name, search)
        return self

    def order(self, order: str) -> Query:
        """Read in ascending (`"asc"`, the default) or descending (`"desc"`) index order.

        Without `with_index` the order is that of `by_creation_time`: `"desc"` gives the
        newest documents first. Call it after `with_index` and before `filter`.

        Args:
            order: `"asc"` or `"desc"`.

        Returns:
            This query, to chain on.

        Raises:
            ValidationError: Neither `"asc"` nor `"desc"`, called twice or after `filter`, or
                after `with_search_index` (search results come in relevance order).

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> for text in ["first", "second"]:
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": text}))
            >>> db.query(lambda ctx: ctx.db.query("notes").order("desc").first()["text"])
            'second'
            >>> db.close()
        """
        if order not in ("asc", "desc"):
            raise ValidationError(f"order: expected 'asc' or 'desc', got {order!r}")
        if self._search is not None:
            raise ValidationError(f"query on {self._table!r}: search results come in "
                                  "relevance order; order() cannot follow with_search_index")
        self._advance(2, "order")
        self._reverse = order == "desc"
        return self

    def filter(self, predicate: Callable[[dict[str, Any]], Any]) -> Query:
        """Keep only the documents for which `predicate(doc)` is true.

        It may be called several times (a document must pass every predicate), after
        `with_index` and `order`. A filter does not narrow what the query reads: the query
        still scans its whole index range (up to where a `take` stops), and a live query
        re-runs for any write in that range. On a large table, narrow with an index range
        first.

        Args:
            predicate: A function of the document returning a truth value.

        Returns:
            This query, to chain on.

        Raises:
            TypeError: `predicate` is not callable.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> for n in range(5):
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("numbers", {"n": n}))
            >>> db.query(lambda ctx: [d["n"] for d in ctx.db.query("numbers")
            ...                       .filter(lambda d: d["n"] % 2 == 0).collect()])
            [0, 2, 4]
            >>> db.close()
        """
        if not callable(predicate):
            raise TypeError(f"filter: expected a function of the document, got "
                            f"{type_name(predicate)}")
        self._advance(3, "filter")
        self._filters.append(predicate)
        return self

    # -- terminals ---------------------------------------------------------------

    def collect(self) -> list[dict[str, Any]]:
        """Every matching document, in the query's order.

        A query may return any number of documents (memory is the limit); prefer `take` or
        `paginate` for tables that grow.

        Returns:
            A list of documents (fresh dicts, yours to change).

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> [note["text"] for note in db.query(lambda ctx: ctx.db.query("notes").collect())]
            ['hi']
            >>> db.close()
        """
        return self._run(None)

    def take(self, n: int) -> list[dict[str, Any]]:
        """The first `n` matching documents (fewer if there are not that many).

        It reads only as far as it needs: a live `take(20)` is not woken by writes past its
        20th document.

        Args:
            n: How many, an int >= 0.

        Returns:
            A list of at most `n` documents.

        Raises:
            ValidationError: `n` is not an int >= 0.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> for n in range(5):
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("numbers", {"n": n}))
            >>> db.query(lambda ctx: [d["n"] for d in ctx.db.query("numbers")
            ...                       .order("desc").take(2)])
            [4, 3]
            >>> db.close()
        """
        if n.__class__ is not int or n < 0:
            raise ValidationError(f"take: n must be an int >= 0, got {n!r}")
        if n == 0:
            self._advance(9, "take")
            return []
        return self._run(n)

    def first(self) -> dict[str, Any] | None:
        """The first matching document, or None if there is none.

        Returns:
            A document, or None.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> db.query(lambda ctx: ctx.db.query("notes").first()) is None
            True
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> db.query(lambda ctx: ctx.db.query("notes").first()["text"])
            'hi'
            >>> db.close()
        """
        docs = self._run(1)
        return docs[0] if docs else None

    def unique(self) -> dict[str, Any] | None:
        """The only matching document, or None if there is none.

        Use it where at most one document may match, such as a lookup by a unique field's
        index: it reads up to two documents to make sure.

        Returns:
            The document, or None.

        Raises:
            LiveDBError: More than one document matches (the message names two of them).

        Examples:
            >>> from livedb import Database, define_schema, define_table, v
            >>> schema = define_schema({"users": define_table(
            ...     {"email": v.string()}).index("by_email", ["email"])})
            >>> db = Database(schema)
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("users", {"email": "ada@example.com"}))
            >>> db.query(lambda ctx: ctx.db.query("users").with_index(
            ...     "by_email", lambda q: q.eq("email", "ada@example.com")).unique()["email"])
            'ada@example.com'
            >>> db.close()
        """
        docs = self._run(2)
        if len(docs) > 1:
            raise LiveDBError(f"unique: more than one document in {self._table!r} matches "
                              f"({docs[0]['_id']} and {docs[1]['_id']})")
        return docs[0] if docs else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Iterate over the matching documents one at a time: `for doc in query`.

        Stopping early reads less, and a live query then watches only what was read.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> for n in range(5):
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("numbers", {"n": n}))
            >>> def first_above_two(ctx):
            ...     for doc in ctx.db.query("numbers"):
            ...         if doc["n"] > 2:
            ...             return doc["n"]
            >>> db.query(first_above_two)
            3
            >>> db.close()
        """
        self._advance(9, "iteration")
        if self._search is not None:
            return iter(self._search.collect(self._txn, self._filters, None))
        return self._iterate(self._start, self._end)

    def paginate(self, num_items: int | dict[str, Any], cursor: str | None = None, *,
                 end_cursor: str | None = None) -> PaginationResult:
        """One page of at most `num_items` documents, starting after `cursor`.

        Pages fetched one after another, each with the previous page's `continue_cursor`,
        visit every document that existed throughout exactly once, even while others are
        written. A page holds `num_items` documents that passed the filters, fewer only on
        the last page. A cursor is an opaque `str`, valid only for the same query (table,
        index, range, order, search); it may be stored or sent to a client.

        Args:
            num_items: How many documents a page holds, an int >= 1. It may also be a dict
                of the pagination options, as a live paginated view passes them:
                `{"num_items": n, "cursor": c, "end_cursor": e}` (`cursor` and `end_cursor`
                optional).
            cursor: The `continue_cursor` of the previous page, or None for the first page.
            end_cursor: Return exactly the documents between `cursor` and this cursor
                (however many that is), so that a live page keeps its boundaries fixed.

        Returns:
            A `PaginationResult` with `.page`, `.is_done` and `.continue_cursor`.

        Raises:
            ValidationError: A bad `num_items`, unknown pagination options, or a cursor that
                livedb did not make or made for another query.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> for n in range(5):
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("numbers", {"n": n}))
            >>> pages, cursor, done = [], None, False
            >>> while not done:
            ...     result = db.query(lambda ctx: ctx.db.query("numbers").paginate(2, cursor))
            ...     pages.append([d["n"] for d in result.page])
            ...     cursor, done = result.continue_cursor, result.is_done
            >>> pages
            [[0, 1], [2, 3], [4]]
            >>> db.close()
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
    """`ctx.db.system`: read-only access to the system tables.

    livedb keeps two system tables, written only by livedb itself:

    - `_scheduled_functions`: one document per scheduled call (see `ctx.scheduler`):
      `name`, `args`, `scheduled_time`, `completed_time` (None until finished) and
      `state`, `{"kind": "pending" | "in_progress" | "success" | "failed" | "canceled"}`
      plus `"error"` (a str) when failed. Finished calls are kept for 7 days.
    - `_storage`: one document per stored file: `sha256` (hex), `size` (bytes) and
      `content_type` (str or None).

    Both are reactive like user tables: a live query reading them re-runs when they
    change.
    """

    __slots__ = ("_txn",)

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    def get(self, id: str) -> dict[str, Any] | None:
        """A document of a system table by id, or None if there is none.

        Args:
            id: An id of `_scheduled_functions` or `_storage` (what `ctx.scheduler.run_after`
                or `ctx.storage.store` returned).

        Returns:
            The document (with `_id` and `_creation_time`), or None.

        Raises:
            ValidationError: `id` is not an id of a system table.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello", content_type="text/plain")
            >>> db.query(lambda ctx: ctx.db.system.get(file_id)["size"])
            5
            >>> db.close()
        """
        return self._txn.system_get(id)

    def query(self, table: str) -> Query:
        """A query over a system table; chain `with_index`, `order`, `filter` and a terminal
        as on a user table (the built-in indexes `by_id` and `by_creation_time`).

        Args:
            table: `"_scheduled_functions"` or `"_storage"`.

        Returns:
            A `Query`.

        Raises:
            ValidationError: `table` is not a system table.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> _ = db.store_file(b"hello")
            >>> db.query(lambda ctx: [f["size"] for f in ctx.db.system.query("_storage").collect()])
            [5]
            >>> db.close()
        """
        if not system_table_name(table):
            raise ValidationError(f"system.query: {table!r} is not a system table "
                                  "(_scheduled_functions, _storage)")
        info = self._txn.catalog.for_read(table, "system.query")
        return Query(self._txn, table, info)


class _Reading:
    """What `ctx.db` adds to a transaction for reading: `query` and `system`."""

    __slots__ = ()

    def query(self, table: str) -> Query:
        """Start a query over `table`: chain `with_index` (or `with_search_index`),
        `order`, `filter`, then a terminal (`collect`, `take`, `first`, `unique`,
        `paginate`, or iteration).

        Args:
            table: A user table (any valid name without a schema).

        Returns:
            A single-use `Query`.

        Raises:
            ValidationError: A table the schema does not have, or a name that is not a valid
                table name.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> db.query(lambda ctx: [n["text"] for n in ctx.db.query("notes").collect()])
            ['hi']
            >>> db.close()
        """
        txn: Transaction = self  # type: ignore[assignment]
        return Query(txn, table, txn.catalog.for_read(table, "query"))

    @property
    def system(self) -> SystemReader:
        """Read-only access to the system tables `_scheduled_functions` and `_storage`:
        `ctx.db.system.get(id)` and `ctx.db.system.query(table)`."""
        return SystemReader(self)  # type: ignore[arg-type]


class Reader(_Reading, Transaction):
    """`ctx.db` in a query: `get`, `query`, `normalize_id` and `system`, all at the
    query's one snapshot. It cannot write: `insert`, `patch`, `replace` and `delete`
    raise `LiveDBError`."""

    __slots__ = ()


class Writer(_Reading, WriteTransaction):
    """`ctx.db` in a mutation: the reads of a query (seeing this mutation's own writes)
    plus `insert`, `patch`, `replace` and `delete`, all committed together or not at all."""

    __slots__ = ()
