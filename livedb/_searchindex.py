"""Full-text and vector indexes, kept up to date on every commit (a store listener).

Both kinds follow the store's superset rule (see _index.py): a commit adds what its new
document versions need at once, and what old versions needed is dropped only when no
snapshot can see those versions any more; a reader (_search.py) keeps only what its
snapshot sees.

Full text: per search index, `entries` holds per document the analysis of each kept
version (term counts, length, filter keys) with the commits that made and replaced it,
so a reader tells visibility from the entry alone. Postings (term -> entries) and the
sorted vocabulary (for the prefix term) are numpy arrays when numpy is importable, so a
query ranks whole posting lists at once; otherwise Python sets walked term at a time.

Vectors: per vector index, one row per kept document version, normalized, in a numpy
matrix when numpy is importable (else tuples of floats); each row keeps its version's
blob object, so a reader tells whether its snapshot sees that version by identity.

Every commit's search keys are added to its index changes under a pseudo-index per
search index, `(table, "search:" + name)`: `(mask number, filter pairs..., (RANK_STR,
term))` once per term and mask, which live searches' read ranges match (_search.py).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from numbers import Real
from operator import mul
from typing import TYPE_CHECKING, Any

from ._errors import ValidationError
from ._index import SortedIndex
from ._schema import SearchIndexDefinition, TableDefinition, VectorIndexDefinition
from ._store import Changes, IndexName, Store, Write
from ._values import ABSENT, RANK_STR, decode, pair_getter, type_name, value_getter

try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised by monkeypatching np to None
    if TYPE_CHECKING:  # type checkers see numpy installed; its uses check for None
        raise
    np = None

MAX_TERMS = 16
"""A search text may hold at most this many distinct terms."""
MAX_RESULTS = 1024
"""A search query ranks at most this many documents."""
MAX_VECTOR_RESULTS = 256
K1 = 1.2
B = 0.75
PREFIX_WEIGHT = 0.5
"""A word the last term only begins counts half as much as the word itself."""

_TOKEN = re.compile(r"\w+")
_REBUILD_AT = 4096
"""With numpy, columns are rebuilt once this many (and half of all) entries are dead."""
FOREVER = 1 << 62
"""The end of a version nothing has replaced yet."""
TERM_END = "\U0010ffff"
"""Sorts after every character a token may hold: `p <= t < p + TERM_END` for prefix p."""
_MAX_MASKED_FILTERS = 3
"""Up to this many filter fields, live searches are filed by any subset of their eqs;
beyond it, by the leading filter fields they fix (fewer keys per write)."""


def tokenize(text: str) -> list[str]:
    """The terms of a text: runs of letters, digits and '_', case-folded."""
    return _TOKEN.findall(text.casefold())


def _is_kept(blob: bytes, kept: list[bytes]) -> bool:
    for other in kept:
        if other is blob:
            return True
    return False


# -- full-text search ----------------------------------------------------------------


class Columns:
    """A search index's postings as numpy arrays, for fast ranking (writer serialized).

    Every indexed version (an entry) gets a number, `eid`, under which arrays hold its
    visibility (`start`, `end`), length, creation time and filter codes;
    `postings[term]` is `[eids, counts, n]`, filled up to `n` (Python lists while short).
    A reader reads a term's posting before the arrays, so every eid it finds is in them.
    Entries no snapshot can see are left in place (`dead`) until there are as many as live
    ones; then the index builds fresh columns from its live entries and swaps them in.
    """

    _SHORT = 32

    def __init__(self, filters: int, capacity: int = 1024) -> None:
        self.size = 0
        self.dead = 0
        self.start = np.zeros(capacity, dtype=np.int64)
        self.end = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.float64)
        self.ctime = np.zeros(capacity, dtype=np.float64)
        self.fcodes = [np.zeros(capacity, dtype=np.int64) for _ in range(filters)]
        self.codes: list[dict[tuple[Any, ...], int]] = [{} for _ in range(filters)]
        self.doc_ids: list[str] = []
        self.blobs: list[bytes] = []
        self.postings: dict[str, list[Any]] = {}
        self.vocab = SortedIndex()

    def add(self, doc_id: str, entry: list[Any]) -> int:
        """Number a new entry and append it to its terms' postings; returns its eid."""
        eid = self.size
        if eid == len(self.start):
            self._grow()
        self.start[eid] = entry[5]
        self.end[eid] = entry[6]
        self.length[eid] = entry[2]
        self.ctime[eid] = entry[4]
        for position, key in enumerate(entry[3]):
            codes = self.codes[position]
            code = codes.get(key)
            if code is None:
                code = codes[key] = len(codes)
            self.fcodes[position][eid] = code
        self.doc_ids.append(doc_id)
        self.blobs.append(entry[0])
        self.size = eid + 1
        postings = self.postings
        for term, count in entry[1].items():
            posting = postings.get(term)
            if posting is None:
                postings[term] = [[eid], [float(count)], 1]
                self.vocab.add((term,))
                continue
            eids, counts, n = posting
            if eids.__class__ is list:
                eids.append(eid)
                counts.append(float(count))
                if n + 1 == self._SHORT:
                    posting[0] = np.array(eids, dtype=np.int64)
                    posting[1] = np.array(counts, dtype=np.float64)
            else:
                if n == len(eids):
                    grown = np.empty(2 * n, dtype=np.int64)
                    grown[:n] = eids
                    more = np.empty(2 * n, dtype=np.float64)
                    more[:n] = counts
                    posting[0], posting[1] = eids, counts = grown, more
                eids[n] = eid
                counts[n] = count
            posting[2] = n + 1
        return eid

    def _grow(self) -> None:
        capacity = 2 * len(self.start)
        for name in ("start", "end", "length", "ctime"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)
        fcodes = []
        for old in self.fcodes:
            new = np.zeros(capacity, dtype=np.int64)
            new[:len(old)] = old
            fcodes.append(new)
        self.fcodes = fcodes


def segment(posting: list[Any] | None) -> tuple[Any, ...] | None:
    """A posting's `(eids, counts)` arrays as far as they are filled."""
    if posting is None:
        return None
    eids, counts, n = posting[0], posting[1], posting[2]
    n = min(n, len(eids), len(counts))
    if not n:
        return None
    if eids.__class__ is list:
        return np.array(eids[:n], dtype=np.int64), np.array(counts[:n], dtype=np.float64)
    return eids[:n], counts[:n]


class SearchIndex:
    """The inverted index of one search index (writer side serialized by the store).

    `entries[doc id]` holds the analysis of each kept version: `[blob, term counts,
    length, filter keys, creation time, start, end, eid]` (`start` the commit that made the
    version, `end` the one that replaced it). With numpy, postings live in `columns`;
    without, `postings` maps each term to the ids of documents having it in some entry.
    """

    def __init__(self, table: str, definition: SearchIndexDefinition) -> None:
        self.table = table
        self.name = definition.name
        self.field = definition.search_field
        self.filter_fields = definition.filter_fields
        self.pseudo = (table, "search:" + definition.name)
        """The index name live queries file this index's read ranges under."""
        self._text = value_getter(tuple(definition.search_field.split(".")))
        self._filters = tuple(pair_getter(tuple(f.split("."))) for f in self.filter_fields)
        count = len(self.filter_fields)
        if count <= _MAX_MASKED_FILTERS:
            masks = [tuple(i for i in range(count) if bits >> i & 1)
                     for bits in range(1 << count)]
        else:
            masks = [tuple(range(j)) for j in range(count + 1)]
        self.masks: list[tuple[int, ...]] = masks
        """The sets of filter positions live searches are filed under (see `write`)."""
        self.entries: dict[str, tuple[list[Any], ...]] = {}
        self.columns = Columns(count) if np is not None else None
        self.postings: dict[str, set[str]] = {}
        self.vocab = SortedIndex()

    def analyze(self, blob: bytes, doc: dict[str, Any], start: int) -> list[Any] | None:
        """The entry of one document version committed at `start`, or None if its search
        field holds no term (`end` is set when a later commit replaces the version)."""
        text = self._text(doc)
        if not isinstance(text, str):
            return None
        tokens = tokenize(text)
        if not tokens:
            return None
        tf: dict[str, int] = {}
        for term in tokens:
            tf[term] = tf.get(term, 0) + 1
        return [blob, tf, len(tokens), tuple([g(doc) for g in self._filters]),
                doc["_creation_time"], start, FOREVER, -1]

    def write(self, ts: int, doc_id: str, blob: bytes | None, doc: dict[str, Any] | None,
              keys: set[Any]) -> bool:
        """Index the version commit `ts` wrote (None: a delete); end the one it replaces.

        Adds to `keys` the pseudo-index keys of the old and new version: `(mask number,
        the filter keys of that mask..., (4, term))` once per term and mask. A live search
        files its ranges under the largest mask its `eq`s cover, so a write wakes only
        searches whose filters the old or new version passes.

        Returns whether an entry was ended (and will need collecting)."""
        found = self.entries.get(doc_id, ())
        columns = self.columns
        old = None
        if found and found[-1][6] == FOREVER:
            old = found[-1]
            old[6] = ts
            if columns is not None:
                columns.end[old[7]] = ts
        new = None if doc is None else self.analyze(blob, doc, ts)  # type: ignore[arg-type]
        if new is not None:
            self.entries[doc_id] = (*found, new)
            if columns is not None:
                new[7] = columns.add(doc_id, new)
            else:
                self._post(doc_id, new)
        masks = self.masks
        for entry in (old, new):
            if entry is not None:
                filters = entry[3]
                prefixes = [(number, *[filters[i] for i in mask])
                            for number, mask in enumerate(masks)]
                for term in entry[1]:
                    element = (RANK_STR, term)
                    for prefix in prefixes:
                        keys.add((*prefix, element))
        return old is not None

    def _post(self, doc_id: str, entry: list[Any]) -> None:
        postings = self.postings
        for term in entry[1]:
            ids = postings.get(term)
            if ids is None:
                postings[term] = {doc_id}
                self.vocab.add((term,))
            else:
                ids.add(doc_id)

    def clean(self, doc_id: str, horizon: int) -> None:
        """Drop the entries (and postings) of versions replaced at or before `horizon`:
        no snapshot can see them any more."""
        entries = self.entries.get(doc_id)
        if entries:
            self._keep(doc_id, entries, tuple(e for e in entries if e[6] > horizon))

    def rollback(self, doc_id: str, after: int) -> None:
        """Forget what commits after `after` did to `doc_id` (they were rolled back)."""
        entries = self.entries.get(doc_id)
        if not entries:
            return
        columns = self.columns
        keep = tuple(e for e in entries if e[5] <= after)
        for entry in entries:
            if entry[5] > after:
                entry[6] = -1
            elif entry[6] > after:
                entry[6] = FOREVER
            if columns is not None:
                columns.end[entry[7]] = entry[6]
        self._keep(doc_id, entries, keep)

    def _keep(self, doc_id: str, entries: tuple[Any, ...], keep: tuple[Any, ...]) -> None:
        if len(keep) == len(entries):
            return
        if keep:
            self.entries[doc_id] = keep
        else:
            del self.entries[doc_id]
        columns = self.columns
        if columns is not None:
            columns.dead += len(entries) - len(keep)
            if columns.dead >= _REBUILD_AT and 2 * columns.dead > columns.size:
                self.rebuild()
            return
        still: set[str] = set()
        for entry in keep:
            still.update(entry[1])
        postings = self.postings
        for entry in entries:
            if any(entry is k for k in keep):
                continue
            for term in entry[1]:
                if term in still:
                    continue
                ids = postings.get(term)
                if ids is None:
                    continue
                ids.discard(doc_id)
                if not ids:
                    del postings[term]
                    self.vocab.discard((term,))

    def rebuild(self) -> None:
        """Fresh columns holding only the kept entries (readers go on with the old ones)."""
        columns = Columns(len(self.filter_fields), max(1024, 2 * len(self.entries)))
        for doc_id, entries in self.entries.items():
            for entry in entries:
                entry[7] = columns.add(doc_id, entry)
        self.columns = columns


def as_vector(value: Any, dimensions: int) -> list[float] | None:
    """`value` as a list of `dimensions` floats whose squares sum to a finite number, or
    None if it is not one (booleans are not numbers)."""
    if value.__class__ is not list and value.__class__ is not tuple:
        if np is None or not isinstance(value, np.ndarray) or value.ndim != 1:
            return None
        value = value.tolist()
    if len(value) != dimensions:
        return None
    kinds = set(map(type, value))
    if kinds == _FLOAT:
        values = value if value.__class__ is list else list(value)
    elif kinds <= _NUMBER:
        values = [float(x) for x in value]
    else:
        for x in value:
            if not isinstance(x, Real) or isinstance(x, bool):
                return None
        try:
            values = [float(x) for x in value]
        except OverflowError:
            return None
    try:
        total = sum(map(mul, values, values))
    except OverflowError:
        return None
    return values if math.isfinite(total) else None


_FLOAT = {float}
_NUMBER = {float, int}


def check_vectors(table: str, indexes: dict[str, VectorIndexDefinition],
                  doc: dict[str, Any]) -> None:
    """Raise `ValidationError` if a vector-indexed field holds anything but a vector of the
    index's dimensions (a missing field, or null, leaves the document out of the index)."""
    for definition in indexes.values():
        value = value_getter(tuple(definition.vector_field.split(".")))(doc)
        if value is ABSENT or value is None:
            continue
        if as_vector(value, definition.dimensions) is None:
            got = (f"an array of {len(value)} values" if value.__class__ is list
                   else type_name(value))
            raise ValidationError(f"{table}.{definition.vector_field}: expected an array of "
                                  f"{definition.dimensions} finite numbers for vector index "
                                  f"{definition.name!r}, got {got}")


class VectorIndex:
    """Rows of normalized vectors, one per kept document version (writer serialized)."""

    _GROW = 1024

    def __init__(self, table: str, definition: VectorIndexDefinition) -> None:
        self.table = table
        self.name = definition.name
        self.dimensions = definition.dimensions
        self.filter_fields = definition.filter_fields
        self._vector = value_getter(tuple(definition.vector_field.split(".")))
        self._filters = tuple(pair_getter(tuple(f.split("."))) for f in self.filter_fields)
        self.use_numpy = np is not None
        self.rows: list[tuple[Any, ...] | None] = []
        """Per row: `(doc id, blob, filter keys)`, or None for a free row."""
        self.free: list[int] = []
        self.doc_rows: dict[str, tuple[int, ...]] = {}
        self.by_filter: list[dict[tuple[Any, ...], set[int]]] = [{} for _ in self.filter_fields]
        self.size = 0
        if self.use_numpy:
            self.matrix = np.zeros((0, self.dimensions), dtype=np.float32)
        else:
            self.vectors: list[tuple[Any, ...] | None] = []

    def write(self, doc_id: str, blob: bytes | None, doc: dict[str, Any] | None) -> bool:
        """Add a row for a new version; returns whether an older row may need collecting."""
        had = doc_id in self.doc_rows
        if doc is None:
            return had
        vector = as_vector(self._vector(doc), self.dimensions)
        if vector is None:
            return had
        norm = math.sqrt(sum(map(mul, vector, vector)))
        filters = tuple([g(doc) for g in self._filters])
        if self.free:
            row = self.free.pop()
        else:
            row = self.size
            if self.use_numpy and row >= self.matrix.shape[0]:
                grown = np.zeros((max(self._GROW, 2 * row), self.dimensions), dtype=np.float32)
                grown[:row] = self.matrix[:row]
                self.matrix = grown
        if self.use_numpy:
            values = np.asarray(vector, dtype=np.float64)
            self.matrix[row] = values / norm if norm else 0.0
        else:
            normalized = tuple(x / norm for x in vector) if norm else (0.0,) * self.dimensions
            if row == len(self.vectors):
                self.vectors.append(normalized)
            else:
                self.vectors[row] = normalized
        if row == len(self.rows):
            self.rows.append((doc_id, blob, filters))
        else:
            self.rows[row] = (doc_id, blob, filters)
        if row == self.size:
            self.size = row + 1
        for position, key in enumerate(filters):
            rows = self.by_filter[position].get(key)
            if rows is None:
                self.by_filter[position][key] = {row}
            else:
                rows.add(row)
        self.doc_rows[doc_id] = self.doc_rows.get(doc_id, ()) + (row,)
        return had

    def clean(self, doc_id: str, kept: list[bytes]) -> None:
        """Free the rows of versions the store no longer keeps."""
        rows = self.doc_rows.get(doc_id)
        if not rows:
            return
        keep = []
        for row in rows:
            entry = self.rows[row]
            if entry is not None and _is_kept(entry[1], kept):
                keep.append(row)
                continue
            self.rows[row] = None
            if entry is not None:
                for position, key in enumerate(entry[2]):
                    members = self.by_filter[position].get(key)
                    if members is not None:
                        members.discard(row)
                        if not members:
                            del self.by_filter[position][key]
            if self.use_numpy:
                self.matrix[row] = 0.0
            else:
                self.vectors[row] = None
            self.free.append(row)
        if keep:
            self.doc_rows[doc_id] = tuple(keep)
        else:
            del self.doc_rows[doc_id]

class Indexes:
    """Every search and vector index of a database, maintained through the store's hooks.

    `Store._apply` calls `apply` with each commit, `Store.collect` calls `collect` with its
    horizon, `Store.rollback` calls `rollback`. Text entries carry the commits that made and
    replaced their version, so a search checks visibility without the store; vector rows
    keep their version's blob and are checked against the store (only the best few).
    """

    def __init__(self, store: Store, tables: dict[str, TableDefinition | None]) -> None:
        self._store = store
        self.search: dict[tuple[str, str], SearchIndex] = {}
        self.vector: dict[tuple[str, str], VectorIndex] = {}
        self.by_table: dict[str, tuple[list[SearchIndex], list[VectorIndex]]] = {}
        for name, definition in tables.items():
            if definition is None:
                continue
            texts = [SearchIndex(name, d) for d in definition.search_indexes.values()]
            vectors = [VectorIndex(name, d) for d in definition.vector_indexes.values()]
            for index in texts:
                self.search[(name, index.name)] = index
            for vector_index in vectors:
                self.vector[(name, vector_index.name)] = vector_index
            if texts or vectors:
                self.by_table[name] = (texts, vectors)
        self._old: deque[tuple[int, str]] = deque()

    @classmethod
    def build(cls, store: Store, tables: dict[str, TableDefinition | None]) -> Indexes | None:
        """The indexes of `tables`, filled from the store's documents and listening to its
        commits; None if no table has any."""
        indexes = cls(store, tables)
        if not indexes.by_table:
            return None
        by_table = indexes.by_table
        for doc_id, version in store.docs.items():
            if version.__class__ is bytes:
                ts, blob = 0, version
            else:
                ts, blob = version  # type: ignore[assignment]
            if blob is None:
                continue
            found = by_table.get(doc_id[:doc_id.index(":")])
            if found is not None:
                indexes._write(found, ts, doc_id, blob, {})  # pyright: ignore[reportArgumentType]
        store.listeners.append(indexes)
        return indexes

    def _write(self, found: tuple[list[SearchIndex], list[VectorIndex]], ts: int, doc_id: str,
               blob: bytes | None, per_index: dict[IndexName, set[Any]]) -> bool:
        doc = None if blob is None else decode(blob)
        ended = False
        texts, vectors = found
        for index in texts:
            written = per_index.get(index.pseudo)
            if written is None:
                written = per_index[index.pseudo] = set()
            ended = index.write(ts, doc_id, blob, doc, written) or ended
        for vector_index in vectors:
            ended = vector_index.write(doc_id, blob, doc) or ended
        return ended

    def applied(self, ts: int, writes: list[Write], changes: Changes) -> None:
        """Index commit `ts`'s new versions; record its search keys in `changes` for live
        queries (as rewritten keys of a pseudo-index, which the store skips)."""
        by_table = self.by_table
        per_index: dict[IndexName, set[Any]] = {}
        old = self._old
        for doc_id, blob, _creation_time in writes:
            found = by_table.get(doc_id[:doc_id.index(":")])
            if found is not None and self._write(found, ts, doc_id, blob, per_index):
                old.append((ts, doc_id))
        for name, keys in per_index.items():
            if keys:
                changes[name] = ([], [], list(keys))

    def collected(self, horizon: int) -> None:
        """Drop what only versions replaced at or before `horizon` needed (the store has
        collected those versions)."""
        old = self._old
        while old and old[0][0] <= horizon:
            _ts, doc_id = old.popleft()
            texts, vectors = self.by_table[doc_id[:doc_id.index(":")]]
            for index in texts:
                index.clean(doc_id, horizon)
            if vectors:
                kept = self._store.kept_blobs(doc_id)
                for vector_index in vectors:
                    vector_index.clean(doc_id, kept)

    def rolled_back(self, after: int, doc_ids: Iterable[str]) -> None:
        """Forget what the rolled-back commits after `after` did to `doc_ids`."""
        for doc_id in doc_ids:
            found = self.by_table.get(doc_id[:doc_id.index(":")])
            if found is None:
                continue
            texts, vectors = found
            for index in texts:
                index.rollback(doc_id, after)
            kept = self._store.kept_blobs(doc_id)
            for vector_index in vectors:
                vector_index.clean(doc_id, kept)

    def _check(self) -> None:
        """Assert the invariants: every entry's commit range is ordered and ends at most once
        with FOREVER, postings (numpy columns or sets) hold every live entry's terms, and
        vector rows match the documents they name."""
        for index in self.search.values():
            for doc_id, entries in index.entries.items():
                assert entries, f"an empty entry list for {doc_id}"
                open_ended = [e for e in entries if e[6] == FOREVER]
                assert len(open_ended) <= 1, f"two current versions of {doc_id}"
                for entry in entries:
                    assert entry[5] < entry[6], f"an entry of {doc_id} ends before it starts"
                    if index.columns is None:
                        for term in entry[1]:
                            assert doc_id in index.postings.get(term, ()), (doc_id, term)
                    else:
                        assert index.columns.doc_ids[entry[7]] == doc_id, doc_id
        for vector_index in self.vector.values():
            for doc_id, rows in vector_index.doc_rows.items():
                for row in rows:
                    row_entry = vector_index.rows[row]
                    assert row_entry is not None and row_entry[0] == doc_id, (doc_id, row)
            assert not set(vector_index.free) & {r for rows in vector_index.doc_rows.values()
                                                 for r in rows}, "a free row is in use"

    def stats(self) -> dict[str, int]:
        """Sizes for `db.stats()`: indexed versions (text entries, vector rows)."""
        return {"search_entries": sum(len(e) for i in self.search.values()
                                      for e in i.entries.values()),
                "vector_rows": sum(len(i.rows) - len(i.free) for i in self.vector.values())}
