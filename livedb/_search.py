"""Full-text and vector indexes, kept up to date on every commit and read at a snapshot.

Both kinds follow the store's superset rule (see index.py): a commit adds what its new
document versions need at once, and what old versions needed is dropped only when no
snapshot can see those versions any more; a reader keeps only what its snapshot sees.

Full text: per search index, `entries` holds per document the analysis of each kept
version (term counts, length, filter keys) with the commits that made and replaced it,
so a reader tells visibility from the entry alone. Postings (term -> entries) and the
sorted vocabulary (for the prefix term) are numpy arrays when numpy is importable, so a
query ranks whole posting lists at once; otherwise Python sets walked term at a time.
Both paths compute the same scores, bit for bit. Relevance is BM25 whose statistics
(document count, average length, document frequencies) are taken over the matching
documents: the visible documents that pass the `eq` filters and hold a query term. A
result therefore depends on nothing but those documents, which is exactly what a live
search watches: writes to documents of that table that hold (or held) one of its terms.

Vectors: per vector index, one row per kept document version, normalized, in a numpy
matrix when numpy is importable (else tuples of floats); a search scores every row (or
the rows its filter selects) and keeps the best rows whose version (the same stored blob
object) is the one its snapshot sees.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from numbers import Real
from operator import mul
from typing import TYPE_CHECKING, Any

from ._errors import ValidationError
from ._ids import Id
from ._index import SortedIndex
from ._query import PaginationResult, decode_cursor, encode_cursor
from ._validators import Mismatch, check_any, valid_text
from ._values import ABSENT, KEY_MAX, decode, encode_key, field_getter, type_name, value_getter

try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised by monkeypatching np to None
    np = None

if TYPE_CHECKING:
    from ._schema import SearchIndexDefinition, TableInfo, VectorIndexDefinition
    from ._store import Store
    from ._transaction import Transaction

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
_FOREVER = 1 << 62
"""The end of a version nothing has replaced yet."""
_TERM_END = "\U0010ffff"
"""Sorts after every character a token may hold: `p <= t < p + _TERM_END` for prefix p."""
_CURSOR_VERSION = "s1"
_MAX_MASKED_FILTERS = 3
"""Up to this many filter fields, live searches are filed by any subset of their eqs;
beyond it, by the leading filter fields they fix (fewer keys per write)."""


def tokenize(text: str) -> list[str]:
    """The terms of a text: runs of letters, digits and '_', case-folded."""
    return _TOKEN.findall(text.casefold())


def _kept_blobs(store: Store, doc_id: str) -> list[bytes]:
    """The blobs of every version of `doc_id` the store still keeps."""
    blobs = [v[1] for v in store.history.get(doc_id, ()) if v[1] is not None]
    version = store.docs.get(doc_id)
    if version is not None and version[1] is not None:
        blobs.append(version[1])
    return blobs


def _is_kept(blob: bytes, kept: list[bytes]) -> bool:
    for other in kept:
        if other is blob:
            return True
    return False


# -- full-text search ----------------------------------------------------------------


class _Columns:
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
        self.codes: list[dict[tuple, int]] = [{} for _ in range(filters)]
        self.doc_ids: list[str] = []
        self.blobs: list[bytes] = []
        self.postings: dict[str, list] = {}
        self.vocab = SortedIndex()

    def add(self, doc_id: str, entry: list) -> int:
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


def _segment(posting: list | None) -> tuple | None:
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
        self._filters = tuple(field_getter(tuple(f.split("."))) for f in self.filter_fields)
        count = len(self.filter_fields)
        if count <= _MAX_MASKED_FILTERS:
            masks = [tuple(i for i in range(count) if bits >> i & 1)
                     for bits in range(1 << count)]
        else:
            masks = [tuple(range(j)) for j in range(count + 1)]
        self.masks: list[tuple[int, ...]] = masks
        """The sets of filter positions live searches are filed under (see `write`)."""
        self.entries: dict[str, tuple[list, ...]] = {}
        self.columns = _Columns(count) if np is not None else None
        self.postings: dict[str, set[str]] = {}
        self.vocab = SortedIndex()

    def analyze(self, blob: bytes, doc: dict, start: int) -> list | None:
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
                doc["_creation_time"], start, _FOREVER, -1]

    def write(self, ts: int, doc_id: str, blob: bytes | None, doc: dict | None,
              keys: set) -> bool:
        """Index the version commit `ts` wrote (None: a delete); end the one it replaces.

        Adds to `keys` the pseudo-index keys of the old and new version: `(mask number,
        the filter keys of that mask..., (4, term))` once per term and mask. A live search
        files its ranges under the largest mask its `eq`s cover, so a write wakes only
        searches whose filters the old or new version passes.

        Returns whether an entry was ended (and will need collecting)."""
        found = self.entries.get(doc_id, ())
        columns = self.columns
        old = None
        if found and found[-1][6] == _FOREVER:
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
                    element = (4, term)
                    for prefix in prefixes:
                        keys.add((*prefix, element))
        return old is not None

    def _post(self, doc_id: str, entry: list) -> None:
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
                entry[6] = _FOREVER
            if columns is not None:
                columns.end[entry[7]] = entry[6]
        self._keep(doc_id, entries, keep)

    def _keep(self, doc_id: str, entries: tuple, keep: tuple) -> None:
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
        columns = _Columns(len(self.filter_fields), max(1024, 2 * len(self.entries)))
        for doc_id, entries in self.entries.items():
            for entry in entries:
                entry[7] = columns.add(doc_id, entry)
        self.columns = columns


class SearchFilter:
    """The `q` of `with_search_index(name, lambda q: q.search(field, text).eq(f, x))`."""

    __slots__ = ("_index", "_text", "_eqs")

    def __init__(self, index: SearchIndex) -> None:
        self._index = index
        self._text: str | None = None
        self._eqs: dict[int, tuple] = {}

    def search(self, field: str, text: str) -> SearchFilter:
        """Match documents whose `field` holds any term of `text` (the last as a prefix)."""
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
        """Keep only documents whose filter field `field` equals `value`."""
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

    def __init__(self, index: SearchIndex, text: str, eqs: dict[int, tuple]) -> None:
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
            start = (*lead, (4, term))
            ranges.append((index.pseudo, start, (*start, KEY_MAX)))
        if self.prefix is not None:
            ranges.append((index.pseudo, (*lead, (4, self.prefix)),
                           (*lead, (4, self.prefix + _TERM_END))))
        self.ranges = ranges
        text_key = repr((index.table, index.name, terms, self.eqs))
        self.fingerprint = hashlib.blake2b(text_key.encode(), digest_size=8).hexdigest()

    def ranked(self, txn: Transaction, best: int = MAX_RESULTS) -> list[tuple]:
        """The `best` (at most `MAX_RESULTS`) matches at the snapshot, best first, as
        `(-score, -creation time, doc id, blob)`: relevance, then newest first.

        Term at a time: each posting list is walked once; a document is checked against
        its snapshot (version and filters) the first time it turns up.
        """
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
        for (term,) in index.vocab.irange((prefix,), (prefix + _TERM_END,)):
            ids = postings.get(term)
            if ids:
                lists.append((1, term, 1.0 if term == prefix else PREFIX_WEIGHT, list(ids)))
        ts = txn._ts
        entries = index.entries
        eqs = self.eqs
        blank = [0.0] * (len(exact) + 1)
        seen: dict[str, list | None] = {}
        writes = txn._writes
        if writes:
            self._pending(writes, seen, blank)

        def admit(doc_id: str) -> list | None:
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

    def _ranked_columns(self, txn: Transaction, columns: _Columns, best: int) -> list[tuple]:
        """`ranked` with numpy: the same BM25, bit for bit, over whole posting arrays."""
        prefix = self.prefix
        assert prefix is not None
        exact = self.exact
        postings = columns.postings
        segments = []
        for slot, term in enumerate(exact):
            found = _segment(postings.get(term))
            if found is not None:
                segments.append((slot + 1, 1.0, *found))
        for (term,) in columns.vocab.irange((prefix,), (prefix + _TERM_END,)):
            found = _segment(postings.get(term))
            if found is not None:
                segments.append((0, 1.0 if term == prefix else PREFIX_WEIGHT, *found))
        pending: dict[str, list | None] = {}
        if txn._writes:
            self._pending(txn._writes, pending, [0.0] * (len(exact) + 1))
        extra = [r for r in pending.values() if r is not None]
        if not segments and not extra:
            return []
        ts = txn._ts
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
        keep = counts.any(axis=1)
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

    def _pending(self, writes: dict, seen: dict, blank: list) -> None:
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

    def collect(self, txn: Transaction, filters: list, limit: int | None) -> list[dict]:
        """The matching documents in relevance order that pass `filters`, at most `limit`."""
        out: list[dict] = []
        if limit is not None and limit <= 0:
            return out
        trusted = txn.trusted
        best = limit if limit is not None and not filters else MAX_RESULTS
        for _score, _time, doc_id, blob in self.ranked(txn, best):
            doc = decode(blob)
            doc["_id"] = Id(doc_id)
            if filters and not all(p(doc) for p in filters):
                continue
            trusted[id(doc)] = (doc, tuple(doc), tuple(doc.values()), len(blob))
            out.append(doc)
            if limit is not None and len(out) >= limit:
                break
        return out

    def paginate(self, txn: Transaction, filters: list, num_items: int,
                 cursor: str | None, end_cursor: str | None) -> Any:
        """One page of the ranking after `cursor` (to `end_cursor` if given)."""
        after = self._decode_cursor(cursor) if cursor is not None else None
        until = self._decode_cursor(end_cursor) if end_cursor is not None else None
        items = self.ranked(txn)
        if after == "end":
            return PaginationResult([], True, self._encode_cursor(None))
        page: list[dict] = []
        position: tuple | None = None
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
            trusted[id(doc)] = (doc, tuple(doc), tuple(doc.values()), len(blob))
            page.append(doc)
        if end_cursor is not None:
            return PaginationResult(page, not more, end_cursor)
        if more:
            return PaginationResult(page, False, self._encode_cursor(position))
        return PaginationResult(page, True, self._encode_cursor(None))

    def _encode_cursor(self, position: tuple | None) -> str:
        return encode_cursor(_CURSOR_VERSION, self.fingerprint,
                             None if position is None else list(position))

    def _decode_cursor(self, cursor: Any) -> Any:
        position = decode_cursor(cursor, _CURSOR_VERSION, self.fingerprint,
                                 "another table, index, search text or filter")
        if position is None:
            return "end"
        if (position.__class__ is not list or len(position) != 3
                or position[0].__class__ is not float or position[1].__class__ is not float
                or position[2].__class__ is not str):
            raise ValidationError("paginate: the cursor is not one livedb made")
        return tuple(position)


def _passes(filters: tuple, eqs: list[tuple[int, tuple]]) -> bool:
    for position, key in eqs:
        if filters[position] != key:
            return False
    return True


def _rank(seen: dict[str, list | None], terms: int, best: int) -> list[tuple]:
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
    indexes = txn._db._search
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


def _as_vector(value: Any, dimensions: int) -> list[float] | None:
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


def check_vectors(table: str, indexes: dict[str, VectorIndexDefinition], doc: dict) -> None:
    """Raise `ValidationError` if a vector-indexed field holds anything but a vector of the
    index's dimensions (a missing field, or null, leaves the document out of the index)."""
    for definition in indexes.values():
        value = value_getter(tuple(definition.vector_field.split(".")))(doc)
        if value is ABSENT or value is None:
            continue
        if _as_vector(value, definition.dimensions) is None:
            got = (f"an array of {len(value)} values" if value.__class__ is list
                   else type_name(value))
            raise ValidationError(f"{table}.{definition.vector_field}: expected an array of "
                                  f"{definition.dimensions} finite numbers for vector index "
                                  f"{definition.name!r}, got {got}")


class _Expr:
    """A vector search filter: the set of `(filter position, key)` pairs any of which holds."""

    __slots__ = ("terms",)

    def __init__(self, terms: tuple[tuple[int, tuple], ...]) -> None:
        self.terms = terms


class VectorFilter:
    """The `q` of `filter=lambda q: q.or_(q.eq("genre", "comedy"), q.eq("genre", "drama"))`."""

    __slots__ = ("_index",)

    def __init__(self, index: VectorIndex) -> None:
        self._index = index

    def eq(self, field: str, value: Any) -> _Expr:
        """Documents whose filter field `field` equals `value`."""
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
        """Documents matching any of `exprs`."""
        for expr in exprs:
            if not isinstance(expr, _Expr):
                raise ValidationError(f"vector_search filter: or_ takes q.eq(...) or "
                                      f"q.or_(...) expressions, got {type_name(expr)}")
        return _Expr(tuple(t for expr in exprs for t in expr.terms))


_sumprod = getattr(math, "sumprod", None)


def _py_dot(a: tuple, b: tuple) -> float:
    return _sumprod(a, b) if _sumprod is not None else sum(map(mul, a, b))


class VectorIndex:
    """Rows of normalized vectors, one per kept document version (writer serialized)."""

    _GROW = 1024

    def __init__(self, table: str, definition: VectorIndexDefinition) -> None:
        self.table = table
        self.name = definition.name
        self.dimensions = definition.dimensions
        self.filter_fields = definition.filter_fields
        self._vector = value_getter(tuple(definition.vector_field.split(".")))
        self._filters = tuple(field_getter(tuple(f.split("."))) for f in self.filter_fields)
        self.use_numpy = np is not None
        self.rows: list[tuple | None] = []
        """Per row: `(doc id, blob, filter keys)`, or None for a free row."""
        self.free: list[int] = []
        self.doc_rows: dict[str, tuple[int, ...]] = {}
        self.by_filter: list[dict[tuple, set[int]]] = [{} for _ in self.filter_fields]
        self.size = 0
        if self.use_numpy:
            self.matrix = np.zeros((0, self.dimensions), dtype=np.float32)
        else:
            self.vectors: list[tuple | None] = []

    def write(self, doc_id: str, blob: bytes | None, doc: dict | None) -> bool:
        """Add a row for a new version; returns whether an older row may need collecting."""
        had = doc_id in self.doc_rows
        if doc is None:
            return had
        vector = _as_vector(self._vector(doc), self.dimensions)
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

    def search(self, store: Store, vector: Any, limit: Any, filter: Any) -> list[dict]:
        """The `limit` documents most similar to `vector`, at the newest snapshot."""
        where = f"vector_search({self.table!r}, {self.name!r})"
        if limit.__class__ is not int or not 1 <= limit <= MAX_VECTOR_RESULTS:
            raise ValidationError(f"{where}: limit must be an int from 1 to "
                                  f"{MAX_VECTOR_RESULTS}, got {limit!r}")
        query = _as_vector(vector, self.dimensions)
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
                found = self._search_numpy(store, ts, query, norm, limit, selected)
            else:
                found = self._search_python(store, ts, query, norm, limit, selected)
        finally:
            store.release(ts)
        return [{"_id": Id(doc_id), "_score": score} for score, doc_id in found]

    def _visible(self, store: Store, ts: int, row: int) -> str | None:
        entry = self.rows[row]
        if entry is None:
            return None
        doc_id = entry[0]
        version = store.read(doc_id, ts)
        if version is None or version[1] is not entry[1]:
            return None
        return doc_id

    def _search_numpy(self, store: Store, ts: int, query: list[float], norm: float,
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
                doc_id = self._visible(store, ts, row)
                if doc_id is not None:
                    found.append((float(scores[position]), doc_id))
                    if len(found) == limit:
                        return found
            if k >= total:
                return found
            k = min(total, 2 * k)

    def _search_python(self, store: Store, ts: int, query: list[float], norm: float,
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
            doc_id = self._visible(store, ts, row)
            if doc_id is not None:
                found.append((-negative, doc_id))
                if len(found) == limit:
                    break
        return found


# -- the registry the store and database use ---------------------------------------------


class Indexes:
    """Every search and vector index of a database, maintained through the store's hooks.

    `Store._apply` calls `apply` with each commit, `Store.collect` calls `collect` with its
    horizon, `Store.rollback` calls `rollback`. Text entries carry the commits that made and
    replaced their version, so a search checks visibility without the store; vector rows
    keep their version's blob and are checked against the store (only the best few).
    """

    def __init__(self, store: Store, tables: dict[str, TableInfo]) -> None:
        self._store = store
        self.search: dict[tuple[str, str], SearchIndex] = {}
        self.vector: dict[tuple[str, str], VectorIndex] = {}
        self.by_table: dict[str, tuple[list[SearchIndex], list[VectorIndex]]] = {}
        for name, info in tables.items():
            definition = info.definition
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
    def build(cls, store: Store, tables: dict[str, TableInfo]) -> Indexes | None:
        """The indexes of `tables`, filled from the store's documents; None if there are none."""
        indexes = cls(store, tables)
        if not indexes.by_table:
            return None
        by_table = indexes.by_table
        for doc_id, version in store.docs.items():
            blob = version[1]
            if blob is None:
                continue
            found = by_table.get(doc_id[:doc_id.index(":")])
            if found is not None:
                indexes._write(found, version[0], doc_id, blob, {})
        return indexes

    def _write(self, found: tuple, ts: int, doc_id: str, blob: bytes | None,
               per_index: dict) -> bool:
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

    def apply(self, ts: int, docs: list, changes: dict) -> None:
        """Index commit `ts`'s new versions; record its search keys in `changes` for live
        queries (as written-in-place keys of a pseudo-index, which the store skips)."""
        by_table = self.by_table
        per_index: dict[tuple, set] = {}
        old = self._old
        for doc_id, blob, _keys in docs:
            found = by_table.get(doc_id[:doc_id.index(":")])
            if found is not None and self._write(found, ts, doc_id, blob, per_index):
                old.append((ts, doc_id))
        for name, keys in per_index.items():
            if keys:
                changes[name] = (-1, [], [], list(keys))

    def collect(self, horizon: int) -> None:
        """Drop what only versions replaced at or before `horizon` needed (the store has
        collected those versions)."""
        old = self._old
        while old and old[0][0] <= horizon:
            _ts, doc_id = old.popleft()
            found = self.by_table[doc_id[:doc_id.index(":")]]
            texts, vectors = found
            for index in texts:
                index.clean(doc_id, horizon)
            if vectors:
                kept = _kept_blobs(self._store, doc_id)
                for vector_index in vectors:
                    vector_index.clean(doc_id, kept)

    def rollback(self, doc_ids: Iterable[str], after: int) -> None:
        """Forget what the rolled-back commits after `after` did to `doc_ids`."""
        for doc_id in doc_ids:
            found = self.by_table.get(doc_id[:doc_id.index(":")])
            if found is None:
                continue
            texts, vectors = found
            for index in texts:
                index.rollback(doc_id, after)
            kept = _kept_blobs(self._store, doc_id)
            for vector_index in vectors:
                vector_index.clean(doc_id, kept)

    def stats(self) -> dict[str, int]:
        """Sizes for `db.stats()`: indexed versions (text entries, vector rows)."""
        return {"search_entries": sum(len(e) for i in self.search.values()
                                      for e in i.entries.values()),
                "vector_rows": sum(len(i.rows) - len(i.free) for i in self.vector.values())}


__all__ = ["Indexes", "SearchFilter", "SearchPlan", "VectorFilter", "check_vectors",
           "search_plan", "tokenize"]
