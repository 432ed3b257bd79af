"""Search at a snapshot: full-text queries (planning, ranking, pages) and vector search.

The indexes themselves are kept by _searchindex.py; this module reads them (its entries,
posting columns and vector rows: a documented downward arrangement) at a reader's
snapshot, overlaid with the reader's own pending writes. Relevance is BM25 whose
statistics (document count, average length, document frequencies) are taken over the
matching documents: the visible documents that pass the `eq` filters and hold a query
term. A result therefore depends on nothing but those documents, which is exactly what
a live search watches: the pseudo-index ranges of its terms (see `SearchPlan.ranges`).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterable
from operator import mul
from typing import TYPE_CHECKING, Any

from ._errors import ValidationError
from ._ids import Id
from ._results import PaginationResult, decode_cursor, encode_cursor
from ._searchindex import (  # type: ignore[attr-defined]  # np: numpy, or None
    K1,
    MAX_RESULTS,
    MAX_TERMS,
    MAX_VECTOR_RESULTS,
    PREFIX_WEIGHT,
    TERM_END,
    B,
    Columns,
    SearchIndex,
    VectorIndex,
    as_vector,
    np,
    segment,
    tokenize,
)
from ._store import Store
from ._validators import Mismatch, check_any, valid_text
from ._values import ABSENT, KEY_MAX, RANK_STR, decode, encode_key, type_name

if TYPE_CHECKING:
    from ._catalog import TableInfo
    from ._transaction import PendingWrite, Transaction

_CURSOR_VERSION = "s1"

class SearchFilter:
    """The `q` of `.with_search_index(name, lambda q: q.search(field, text).eq(f, x))`.

    Call `search` once, then `eq` on any of the index's filter fields; return `q`.
    """

    __slots__ = ("_index", "_text", "_eqs")

    def __init__(self, index: SearchIndex) -> None:
        self._index = index
        self._text: str | None = None
        self._eqs: dict[int, tuple[Any, ...]] = {}

    def search(self, field: str, text: str) -> SearchFilter:
        """Match the documents whose `field` holds any term of `text`.

        Terms are runs of letters, digits and `_`, compared case-insensitively; the last
        term of `text` also matches as a prefix (`"hel"` finds "hello"), weighted half. A
        document holding more of the terms, or rarer ones, ranks higher (BM25). An empty
        text matches nothing.

        Args:
            field: The index's search field.
            text: What to search for: at most 16 distinct terms.

        Returns:
            This filter, to chain `eq` on.

        Raises:
            ValidationError: `field` is not the index's search field, `search` was called
                already, or `text` is not a str of valid Unicode.
        """
        name = self._index.name
        if self._text is not None:
            raise ValidationError(f"with_search_index({name!r}): search may be called once")
        if field != self._index.field:
            raise ValidationError(f"with_search_index({name!r}).search({field!r}, ...): the "
                                  f"index searches {self._index.field!r}")
        if not isinstance(text, str):
            raise ValidationError(f"with_search_index({name!r}).search: the text must be a "
                                  f"str, got {type_name(text)}")
        if not valid_text(text):
            raise ValidationError(f"with_search_index({name!r}).search: the text is not valid "
                                  "Unicode (it holds a lone surrogate)")
        self._text = text
        return self

    def eq(self, field: str, value: Any) -> SearchFilter:
        """Keep only the documents whose filter field `field` equals `value`.

        Unlike `.filter(...)`, the index applies it: a live search is, as a rule, not re-run
        for writes to documents with other values.

        Args:
            field: One of the index's `filter_fields`, at most one `eq` each.
            value: A storable value.

        Returns:
            This filter, to chain on.

        Raises:
            ValidationError: `search` was not called first, `field` is not a filter field of
                the index or has an `eq` already, or `value` is not storable.
        """
        index = self._index
        name = index.name
        if self._text is None:
            raise ValidationError(f"with_search_index({name!r}).eq({field!r}): call "
                                  "search(field, text) first")
        if field not in index.filter_fields:
            known = ", ".join(repr(f) for f in index.filter_fields) or "none"
            raise ValidationError(f"with_search_index({name!r}).eq({field!r}): not a filter "
                                  f"field of the index (filter fields: {known})")
        position = index.filter_fields.index(field)
        if position in self._eqs:
            raise ValidationError(f"with_search_index({name!r}).eq({field!r}): this field "
                                  "already has an eq")
        try:
            check_any(value, 1)
        except Mismatch as e:
            raise ValidationError(f"with_search_index({name!r}).eq({field!r}, ...): "
                                  f"{e.render('value')}") from None
        self._eqs[position] = encode_key(value)
        return self


class SearchPlan:
    """A validated search: what to match and which pseudo-index ranges that reads."""

    __slots__ = ("index", "exact", "prefix", "eqs", "ranges", "fingerprint")

    def __init__(self, index: SearchIndex, text: str, eqs: dict[int, tuple[Any, ...]]) -> None:
        tokens = tokenize(text)
        prefix = tokens[-1] if tokens else None
        exact = [t for t in dict.fromkeys(tokens[:-1]) if t != prefix]
        terms = [*exact, prefix] if prefix is not None else []
        if len(terms) > MAX_TERMS:
            raise ValidationError(f"with_search_index({index.name!r}): the search text has "
                                  f"{len(terms)} terms; the limit is {MAX_TERMS}")
        self.index = index
        self.exact = exact
        """The distinct terms before the last one, matched as whole words."""
        self.prefix: str | None = prefix
        """The last term of the text (wherever else it occurs), also matched as a prefix."""
        self.eqs = sorted(eqs.items())
        number, mask = max(((n, m) for n, m in enumerate(index.masks) if set(m) <= set(eqs)),
                           key=lambda found: len(found[1]))
        lead = (number, *[eqs[i] for i in mask])
        ranges = []
        for term in self.exact:
            start = (*lead, (RANK_STR, term))
            ranges.append((index.pseudo, start, (*start, KEY_MAX)))
        if self.prefix is not None:
            ranges.append((index.pseudo, (*lead, (RANK_STR, self.prefix)),
                           (*lead, (RANK_STR, self.prefix + TERM_END))))
        self.ranges = ranges
        text_key = repr((index.table, index.name, terms, self.eqs))
        self.fingerprint = hashlib.blake2b(text_key.encode(), digest_size=8).hexdigest()

    def ranked(self, txn: Transaction, best: int = MAX_RESULTS) -> list[tuple[Any, ...]]:
        """The `best` (at most `MAX_RESULTS`) matches at the snapshot, best first, as
        `(-score, -creation time, doc id, blob)`: relevance, then newest first.

        Term at a time: each posting list is walked once; a document is checked against
        its snapshot (version and filters) the first time it turns up.
        """
        if txn.read_ranges is not None:
            txn.read_ranges.extend(self.ranges)
        prefix = self.prefix
        if prefix is None:
            return []
        index = self.index
        columns = index.columns
        if columns is not None:
            return self._ranked_columns(txn, columns, min(best, MAX_RESULTS))
        postings = index.postings
        exact = self.exact
        lists = []
        for slot, term in enumerate(exact):
            ids = postings.get(term)
            if ids:
                lists.append((slot + 2, term, 1.0, list(ids)))
        for (term,) in index.vocab.irange((prefix,), (prefix + TERM_END,)):
            ids = postings.get(term)
            if ids:
                lists.append((1, term, 1.0 if term == prefix else PREFIX_WEIGHT, list(ids)))
        ts = txn.ts
        entries = index.entries
        eqs = self.eqs
        blank = [0.0] * (len(exact) + 1)
        seen: dict[str, list[Any] | None] = {}
        writes = txn.writes
        if writes:
            self._pending(writes, seen, blank)

        def admit(doc_id: str) -> list[Any] | None:
            for entry in entries.get(doc_id, ()):
                if entry[5] <= ts < entry[6]:
                    if eqs and not _passes(entry[3], eqs):
                        return None
                    return [entry, *blank]
            return None

        for slot, term, weight, ids in lists:
            for doc_id in ids:
                record = seen.get(doc_id, ABSENT)
                if record is ABSENT:
                    record = seen[doc_id] = admit(doc_id)
                if record is None:
                    continue
                count = record[0][1].get(term)
                if count:
                    if slot == 1:
                        record[1] += weight * count
                    else:
                        record[slot] = count
        return _rank(seen, len(exact), min(best, MAX_RESULTS))

    def _ranked_columns(self, txn: Transaction, columns: Columns,
                        best: int) -> list[tuple[Any, ...]]:
        """`ranked` with numpy: the same BM25, bit for bit, over whole posting arrays."""
        prefix = self.prefix
        assert prefix is not None
        exact = self.exact
        postings = columns.postings
        segments = []
        for slot, term in enumerate(exact):
            found = segment(postings.get(term))
            if found is not None:
                segments.append((slot + 1, 1.0, *found))
        for (term,) in columns.vocab.irange((prefix,), (prefix + TERM_END,)):
            found = segment(postings.get(term))
            if found is not None:
                segments.append((0, 1.0 if term == prefix else PREFIX_WEIGHT, *found))
        pending: dict[str, list[Any] | None] = {}
        if txn.writes:
            self._pending(txn.writes, pending, [0.0] * (len(exact) + 1))
        extra = [r for r in pending.values() if r is not None]
        if not segments and not extra:
            return []
        ts = txn.ts
        doc_ids, blobs = columns.doc_ids, columns.blobs
        start, end = columns.start, columns.end
        length, ctime, fcodes = columns.length, columns.ctime, columns.fcodes
        if segments:
            eids = np.concatenate([segment[2] for segment in segments])
            visible = (start[eids] <= ts) & (end[eids] > ts)
            for position, key in self.eqs:
                code = columns.codes[position].get(key)
                if code is None:
                    visible[:] = False
                    break
                visible &= fcodes[position][eids] == code
        else:
            eids = np.zeros(0, dtype=np.int64)
            visible = np.zeros(0, dtype=bool)
        unique, rows = np.unique(eids[visible], return_inverse=True)
        found_ids = [doc_ids[e] for e in unique.tolist()]
        found_blobs = [blobs[e] for e in unique.tolist()]
        lengths = length[unique]
        times = ctime[unique]
        counts = np.zeros((len(unique) + len(extra), len(exact) + 1))
        offset = 0
        prefix_rows, prefix_weights = [], []
        for slot, weight, _eids, values in segments:
            chosen = visible[offset:offset + len(values)]
            offset += len(values)
            taken = rows[:int(chosen.sum())]
            rows = rows[len(taken):]
            if slot:
                counts[taken, slot] = values[chosen]
            else:
                prefix_rows.append(taken)
                prefix_weights.append(weight * values[chosen])
        if prefix_rows:
            counts[:len(unique), 0] = np.bincount(np.concatenate(prefix_rows),
                                                  weights=np.concatenate(prefix_weights),
                                                  minlength=len(unique))
        if extra:
            base_row = len(unique)
            for i, record in enumerate(extra):
                counts[base_row + i] = record[1:]
            lengths = np.concatenate([lengths, [r[0][2] for r in extra]])
            times = np.concatenate([times, [r[0][4] for r in extra]])
            found_ids += [d for d, r in pending.items() if r is not None]
            found_blobs += [r[0][0] for r in extra]
        keep: Any = counts.any(axis=1)
        if pending:
            keep[:len(unique)] &= np.array([d not in pending for d in found_ids[:len(unique)]],
                                           dtype=bool)
        if not keep.all():
            where = np.flatnonzero(keep).tolist()
            counts, lengths, times = counts[keep], lengths[keep], times[keep]
            found_ids = [found_ids[i] for i in where]
            found_blobs = [found_blobs[i] for i in where]
        n = len(found_ids)
        if not n:
            return []
        total = int(lengths.sum())
        log = math.log
        df = (counts > 0).sum(axis=0).tolist()
        scale = K1 * B * n / total
        norm = K1 * (1.0 - B) + scale * lengths
        k1p = K1 + 1.0
        score = np.zeros(n)
        for slot, count in enumerate(df):
            if count:
                idf = log(1.0 + (n - count + 0.5) / (count + 0.5))
                column = counts[:, slot]
                score += idf * column * k1p / (column + norm)
        order = np.lexsort((-times, -score))[:best].tolist()
        return [(-float(score[i]), -float(times[i]), found_ids[i], found_blobs[i])
                for i in order]

    def _pending(self, writes: dict[str, PendingWrite], seen: dict[str, list[Any] | None],
                 blank: list[Any]) -> None:
        """File a mutation's own writes of this table in `seen` (they replace the index's
        view of those documents)."""
        index = self.index
        table = index.table
        prefix = self.prefix
        assert prefix is not None
        for doc_id, (written_table, blob, _keys) in writes.items():
            if written_table != table:
                continue
            seen[doc_id] = None
            entry = None if blob is None else index.analyze(blob, decode(blob), 0)
            if entry is None or not _passes(entry[3], self.eqs):
                continue
            tf = entry[1]
            record = [entry, *blank]
            for slot, term in enumerate(self.exact):
                record[slot + 2] = tf.get(term, 0)
            for term, count in tf.items():
                if term.startswith(prefix):
                    record[1] += count if term == prefix else PREFIX_WEIGHT * count
            seen[doc_id] = record

    def collect(self, txn: Transaction, filters: list[Any],
                limit: int | None) -> list[dict[str, Any]]:
        """The matching documents in relevance order that pass `filters`, at most `limit`."""
        out: list[dict[str, Any]] = []
        if limit is not None and limit <= 0:
            return out
        trusted = txn.trusted
        best = limit if limit is not None and not filters else MAX_RESULTS
        for _score, _time, doc_id, blob in self.ranked(txn, best):
            doc = decode(blob)
            doc["_id"] = Id(doc_id)
            if filters and not all(p(doc) for p in filters):
                continue
            trusted[id(doc)] = (doc, blob)
            out.append(doc)
            if limit is not None and len(out) >= limit:
                break
        return out

    def paginate(self, txn: Transaction, filters: list[Any], num_items: int,
                 cursor: str | None, end_cursor: str | None) -> Any:
        """One page of the ranking after `cursor` (to `end_cursor` if given)."""
        after = self._decode_cursor(cursor) if cursor is not None else None
        until = self._decode_cursor(end_cursor) if end_cursor is not None else None
        items = self.ranked(txn)
        if after == "end":
            return PaginationResult([], True, self._encode_cursor(None))
        page: list[dict[str, Any]] = []
        position: tuple[Any, ...] | None = None
        more = False
        trusted = txn.trusted
        for item in items:
            key, doc_id, blob = item[:3], item[2], item[3]
            if after is not None and key <= after:
                continue
            if until is not None:
                if until != "end" and key > until:
                    more = True
                    break
            elif len(page) >= num_items:
                more = True
                break
            position = key
            doc = decode(blob)
            doc["_id"] = Id(doc_id)
            if filters and not all(p(doc) for p in filters):
                continue
            trusted[id(doc)] = (doc, blob)
            page.append(doc)
        if end_cursor is not None:
            return PaginationResult(page, not more, end_cursor)
        if more:
            return PaginationResult(page, False, self._encode_cursor(position))
        return PaginationResult(page, True, self._encode_cursor(None))

    def _encode_cursor(self, position: tuple[Any, ...] | None) -> str:
        return encode_cursor(_CURSOR_VERSION, self.fingerprint,
                             None if position is None else list(position))

    def _decode_cursor(self, cursor: Any) -> Any:
        position = decode_cursor(cursor, _CURSOR_VERSION, self.fingerprint,
                                 "another table, index, search text or filter")
        if position is None:
            return "end"
        if (position.__class__ is not tuple or len(position) != 3
                or position[0].__class__ is not float or position[1].__class__ is not float
                or position[2].__class__ is not str):
            raise ValidationError("paginate: the cursor is not one livedb made")
        return position


def _passes(filters: tuple[Any, ...], eqs: list[tuple[int, tuple[Any, ...]]]) -> bool:
    for position, key in eqs:
        if filters[position] != key:
            return False
    return True


def _rank(seen: dict[str, list[Any] | None], terms: int, best: int) -> list[tuple[Any, ...]]:
    """BM25 over the matching documents of `seen`; the `best` first.

    A record is `[entry, prefix count, count of each exact term...]`. The last (prefix)
    term is one term whose occurrences are the document's words it begins, each
    counting 1 if equal to it and `PREFIX_WEIGHT` otherwise."""
    matched = [(doc_id, record) for doc_id, record in seen.items()
               if record is not None and any(record[1:])]
    n = len(matched)
    if not n:
        return []
    total = 0
    df = [0] * (terms + 2)
    for _doc_id, record in matched:
        total += record[0][2]
        for slot in range(1, terms + 2):
            if record[slot]:
                df[slot] += 1
    log = math.log
    idf = [log(1.0 + (n - count + 0.5) / (count + 0.5)) for count in df]
    slots = range(1, terms + 2)
    base = K1 * (1.0 - B)
    scale = K1 * B * n / total
    k1p = K1 + 1.0
    ranking = []
    for doc_id, record in matched:
        entry = record[0]
        norm = base + scale * entry[2]
        score = 0.0
        for slot in slots:
            count = record[slot]
            if count:
                score += idf[slot] * count * k1p / (count + norm)
        ranking.append((-score, -entry[4], doc_id, entry[0]))
    if n > best:
        return heapq.nsmallest(best, ranking)
    ranking.sort()
    return ranking


def search_plan(txn: Transaction, table: str, info: TableInfo, name: Any,
                build: Callable[[SearchFilter], Any]) -> SearchPlan:
    """Validate `with_search_index(name, build)` on `table` and plan the search."""
    definition = info.definition
    known = definition.search_indexes if definition is not None else {}
    indexes = txn.search_indexes
    index = None
    if isinstance(name, str) and name in known and indexes is not None:
        index = indexes.search.get((table, name))
    if index is None:
        listed = ", ".join(known) or "none"
        raise ValidationError(f"with_search_index: table {table!r} has no search index "
                              f"{name!r} (search indexes: {listed})")
    if not callable(build):
        raise TypeError(f"with_search_index({name!r}, ...): expected a function of q, got "
                        f"{type_name(build)}")
    q = SearchFilter(index)
    result = build(q)
    if result is not q and result is not None:
        raise ValidationError(f"with_search_index({name!r}, ...): the function must return q "
                              "(chain q.search(...).eq(...))")
    if q._text is None:
        raise ValidationError(f"with_search_index({name!r}, ...): call q.search(field, text)")
    return SearchPlan(index, q._text, q._eqs)


# -- vector search -------------------------------------------------------------------


class _Expr:
    """A vector search filter: the set of `(filter position, key)` pairs any of which holds."""

    __slots__ = ("terms",)

    def __init__(self, terms: tuple[tuple[int, tuple[Any, ...]], ...]) -> None:
        self.terms = terms


class VectorFilter:
    """The `q` of `ctx.vector_search(..., filter=lambda q: ...)`: return `q.eq(...)`, or
    `q.or_(...)` of such expressions.

    Examples:
        >>> from livedb import Database, define_schema, define_table, v
        >>> schema = define_schema({"movies": define_table(
        ...     {"genre": v.string(), "embedding": v.array(v.float64())}
        ... ).vector_index("by_embedding", vector_field="embedding", dimensions=2,
        ...                filter_fields=["genre"])})
        >>> db = Database(schema)
        >>> for genre, embedding in [("comedy", [1.0, 0.0]), ("drama", [1.0, 0.1]),
        ...                          ("horror", [1.0, 0.2])]:
        ...     _ = db.mutation(lambda ctx: ctx.db.insert(
        ...         "movies", {"genre": genre, "embedding": embedding}))
        >>> hits = db.action(lambda ctx: ctx.vector_search(
        ...     "movies", "by_embedding", [1.0, 0.0],
        ...     filter=lambda q: q.or_(q.eq("genre", "drama"), q.eq("genre", "horror"))))
        >>> [db.query(lambda ctx: ctx.db.get(hit["_id"])["genre"]) for hit in hits]
        ['drama', 'horror']
        >>> db.close()
    """

    __slots__ = ("_index",)

    def __init__(self, index: VectorIndex) -> None:
        self._index = index

    def eq(self, field: str, value: Any) -> _Expr:
        """The documents whose filter field `field` equals `value`.

        Args:
            field: One of the vector index's `filter_fields`.
            value: A storable value.

        Returns:
            An expression: return it from the filter, or combine it with `or_`.

        Raises:
            ValidationError: `field` is not a filter field of the index, or `value` is not
                storable.
        """
        index = self._index
        if field not in index.filter_fields:
            known = ", ".join(repr(f) for f in index.filter_fields) or "none"
            raise ValidationError(f"vector_search filter: {field!r} is not a filter field of "
                                  f"vector index {index.name!r} (filter fields: {known})")
        try:
            check_any(value, 1)
        except Mismatch as e:
            raise ValidationError(f"vector_search filter eq({field!r}, ...): "
                                  f"{e.render('value')}") from None
        return _Expr(((index.filter_fields.index(field), encode_key(value)),))

    def or_(self, *exprs: _Expr) -> _Expr:
        """The documents matching any of `exprs` (`or_` because `or` is a Python keyword).

        Args:
            *exprs: Expressions made by `eq` (or `or_`).

        Returns:
            An expression matching their union.

        Raises:
            ValidationError: An argument is not such an expression.
        """
        for expr in exprs:
            if not isinstance(expr, _Expr):
                raise ValidationError(f"vector_search filter: or_ takes q.eq(...) or "
                                      f"q.or_(...) expressions, got {type_name(expr)}")
        return _Expr(tuple(t for expr in exprs for t in expr.terms))


_sumprod: Callable[..., float] | None = getattr(math, "sumprod", None)


def _py_dot(a: tuple[Any, ...], b: tuple[Any, ...]) -> float:
    return _sumprod(a, b) if _sumprod is not None else sum(map(mul, a, b))


# -- vector search at a snapshot ------------------------------------------------------


def vector_search(self: VectorIndex, store: Store, vector: Any, limit: Any, filter: Any
                  ) -> list[dict[str, Any]]:
    """The `limit` documents most similar to `vector` in index `self`, at the newest
    snapshot, as `{"_id", "_score"}` (cosine similarity)."""
    where = f"vector_search({self.table!r}, {self.name!r})"
    if limit.__class__ is not int or not 1 <= limit <= MAX_VECTOR_RESULTS:
        raise ValidationError(f"{where}: limit must be an int from 1 to "
                              f"{MAX_VECTOR_RESULTS}, got {limit!r}")
    query = as_vector(vector, self.dimensions)
    if query is None:
        if isinstance(vector, (list, tuple)) or (np is not None
                                                 and isinstance(vector, np.ndarray)):
            if len(vector) != self.dimensions:
                raise ValidationError(f"{where}: the vector has {len(vector)} dimensions; "
                                      f"the index has {self.dimensions}")
            raise ValidationError(f"{where}: the vector must hold finite numbers only")
        raise ValidationError(f"{where}: the vector must be a list of "
                              f"{self.dimensions} numbers, got {type_name(vector)}")
    selected = None
    if filter is not None:
        if not callable(filter):
            raise TypeError(f"{where}: filter must be a function of q, got "
                            f"{type_name(filter)}")
        expr = filter(VectorFilter(self))
        if not isinstance(expr, _Expr):
            raise ValidationError(f"{where}: the filter must return q.eq(...) or "
                                  f"q.or_(...), got {type_name(expr)}")
        selected = set()
        for position, key in expr.terms:
            rows = self.by_filter[position].get(key)
            if rows:
                selected.update(rows)
    norm = math.sqrt(sum(map(mul, query, query)))
    ts = store.snapshot()
    try:
        if self.use_numpy:
            found = _search_numpy(self, store, ts, query, norm, limit, selected)
        else:
            found = _search_python(self, store, ts, query, norm, limit, selected)
    finally:
        store.release(ts)
    return [{"_id": Id(doc_id), "_score": score} for score, doc_id in found]


def _visible(self: VectorIndex, store: Store, ts: int, row: int) -> str | None:
    entry = self.rows[row]
    if entry is None:
        return None
    doc_id: str = entry[0]
    blob = store.read(doc_id, ts)
    if blob is None or blob is not entry[1]:
        return None
    return doc_id


def _search_numpy(self: VectorIndex, store: Store, ts: int, query: list[float], norm: float,
                  limit: int, selected: set[int] | None) -> list[tuple[float, str]]:
    matrix = self.matrix
    n = min(self.size, matrix.shape[0])
    q = np.asarray(query, dtype=np.float32)
    if norm:
        q = q / np.float32(norm)
    if selected is None:
        rows = None
        scores = matrix[:n] @ q
    else:
        rows = np.fromiter((r for r in selected if r < n), dtype=np.int64)
        rows.sort()
        scores = matrix[rows] @ q if len(rows) else np.zeros(0, dtype=np.float32)
    total = len(scores)
    k = min(total, limit + max(0, len(self.rows) - len(self.doc_rows)) + 8)
    while True:
        if k <= 0:
            return []
        if k < total:
            top = np.argpartition(-scores, k - 1)[:k]
        else:
            top = np.arange(total)
        top = top[np.lexsort((top, -scores[top]))]
        found = []
        for position in top.tolist():
            row = position if rows is None else int(rows[position])
            doc_id = _visible(self, store, ts, row)
            if doc_id is not None:
                found.append((float(scores[position]), doc_id))
                if len(found) == limit:
                    return found
        if k >= total:
            return found
        k = min(total, 2 * k)


def _search_python(self: VectorIndex, store: Store, ts: int, query: list[float], norm: float,
                   limit: int, selected: set[int] | None) -> list[tuple[float, str]]:
    q = tuple(x / norm for x in query) if norm else tuple(query)
    vectors = self.vectors
    rows: Iterable[int] = range(len(vectors)) if selected is None else sorted(selected)
    scored = []
    for row in rows:
        vector = vectors[row] if row < len(vectors) else None
        if vector is not None:
            scored.append((-_py_dot(vector, q), row))
    scored.sort()
    found = []
    for negative, row in scored:
        doc_id = _visible(self, store, ts, row)
        if doc_id is not None:
            found.append((-negative, doc_id))
            if len(found) == limit:
                break
    return found


# -- the registry the store and database use ---------------------------------------------
