"""Transactions: the `ctx.db` of queries and mutations, with read sets and write sets.

A transaction reads one snapshot. It records what it read (index ranges actually
scanned, ids fetched) so reactivity can tell which commits could change its result.
A writing transaction buffers its writes, reads them back (read-your-writes) by
overlaying its own index changes on the snapshot's, and hands the store one commit.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._errors import DocumentNotFoundError, LiveDBError, ValidationError
from ._ids import Id, new_id, parse_id
from ._search import check_vectors
from ._validators import Mismatch, check_any, check_field_name
from ._values import MAX_DOCUMENT_BYTES, check_size, decode, encode, type_name

if TYPE_CHECKING:
    from ._database import Database
    from ._query import Query
    from ._schema import TableInfo


class _DeleteField:
    """Sentinel type of `DELETE_FIELD`."""

    _instance: _DeleteField | None = None

    def __new__(cls) -> _DeleteField:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE_FIELD"

    def __reduce__(self) -> str:
        return "DELETE_FIELD"


DELETE_FIELD: Any = _DeleteField()
"""As a value in `ctx.db.patch(id, {...})`, removes that field from the document."""

SYSTEM_FIELDS = ("_id", "_creation_time")
_address = id


def to_document(blob: bytes) -> dict:
    doc = decode(blob)
    doc["_id"] = Id(doc["_id"])
    return doc


class Transaction:
    """The read side of `ctx.db`: `get`, `query`, `normalize_id` and `system` at a snapshot.

    `read_ranges` lists the index ranges `(index, start, end)` scanned, `read_ids` the ids
    fetched: together, everything a commit would have to touch to change what was read.
    """

    __slots__ = ("_db", "_ts", "_store", "read_ranges", "read_ids", "_writes", "_open",
                 "trusted")

    def __init__(self, db: Database, writer: bool = False, at: int | None = None) -> None:
        self._db = db
        self._store = store = db._store
        if at is not None:
            store.pin(at)
            self._ts = at
        else:
            self._ts = store.writer_snapshot() if writer else store.snapshot()
        self._open = True
        self.read_ranges: list[tuple[tuple, tuple, tuple]] = []
        self.read_ids: set[str] = set()
        self._writes: dict[str, tuple] | None = None
        self.trusted: dict[int, tuple] = {}
        """Documents reads returned, by `id()`: `(doc, keys, values, encoded size)`.

        Returning a document unchanged since it was read needs no second walk of its
        leaves (see functions.check_result)."""

    # -- reading -----------------------------------------------------------------

    def get(self, id: str) -> dict | None:
        """The document with this id at the transaction's snapshot, or None."""
        parsed = parse_id(id)
        if parsed is None:
            raise ValidationError(f"get: {id!r} is not a document id")
        table, doc_id = parsed
        if table[0] == "_":
            raise ValidationError(f"get: {id!r} belongs to a system table; use "
                                  "ctx.db.system.get")
        self._db._table_for_read(table, "get")
        self.read_ids.add(doc_id)
        blob = self._blob(doc_id)
        if blob is None:
            return None
        doc = to_document(blob)
        self.trusted[_address(doc)] = (doc, tuple(doc), tuple(doc.values()), len(blob))
        return doc

    def query(self, table: str) -> Query:
        """Start a query over `table` (then with_index, order, filter and a terminal)."""
        from ._query import Query

        info = self._db._table_for_read(table, "query")
        return Query(self, table, info)

    def normalize_id(self, table: str, id: str) -> Id | None:
        """`id` as an `Id` if it is a well-formed id of `table`, else None."""
        if not isinstance(table, str):
            raise TypeError(f"normalize_id: table must be a str, got {type_name(table)}")
        self._db._table_for_read(table, "normalize_id")
        parsed = parse_id(id)
        if parsed is None or parsed[0] != table:
            return None
        return Id(parsed[1])

    @property
    def system(self) -> Any:
        """Read-only access to the system tables `_scheduled_functions` and `_storage`."""
        from ._query import SystemReader

        return SystemReader(self)

    def insert(self, table: str, document: dict) -> Id:
        """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
        raise _read_only("insert")

    def patch(self, id: str, fields: dict) -> None:
        """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
        raise _read_only("patch")

    def replace(self, id: str, document: dict) -> None:
        """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
        raise _read_only("replace")

    def delete(self, id: str) -> None:
        """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
        raise _read_only("delete")

    # -- internals ---------------------------------------------------------------

    def _blob(self, doc_id: str) -> bytes | None:
        writes = self._writes
        if writes is not None and doc_id in writes:
            return writes[doc_id][1]
        version = self._store.read(doc_id, self._ts)
        return None if version is None else version[1]

    def _version_keys(self, doc_id: str) -> tuple | None:
        writes = self._writes
        if writes is not None and doc_id in writes:
            return writes[doc_id][2]
        version = self._store.read(doc_id, self._ts)
        return None if version is None else version[2]

    def _scan(self, index: tuple, position: int, start: tuple, end: tuple,
              reverse: bool) -> Iterator[tuple[tuple, bytes]]:
        """`(key, blob)` of the index entries in `[start, end)` this transaction sees.

        The index may hold keys of versions this snapshot cannot see (see index.py): a
        key counts only if the version visible here has exactly that key.
        """
        store = self._store
        keyed_blob = store.keyed_blob
        ts = self._ts
        for key in store.index(index).irange(start, end, reverse):
            blob = keyed_blob(key, position, ts)
            if blob is not None:
                yield key, blob

    def _fill(self, index: tuple, position: int, start: tuple, end: tuple, reverse: bool,
              filters: list, limit: int | None, out: list) -> tuple[tuple | None, bool]:
        """Append the visible documents passing `filters` to `out`, at most `limit`.

        Returns the last key examined and whether the range was read to its end. This is
        `_scan` and decoding fused into one loop, `Store.keyed_blob` inlined: the hot path
        of every query.
        """
        store = self._store
        docs = store.docs
        read = store.read
        ts = self._ts
        trusted = self.trusted
        last = None
        for keys in store.index(index).slices(start, end, reverse):
            for key in keys:
                doc_id = key[-1][2]
                version = docs.get(doc_id)
                if version is None:
                    continue
                if version[0] > ts:
                    version = read(doc_id, ts)
                    if version is None:
                        continue
                elif version[1] is None:
                    continue
                mine = version[2][position]
                if mine is not key and mine != key:
                    continue
                last = key
                blob = version[1]
                doc = decode(blob)
                doc["_id"] = Id(doc_id)
                if filters and not _passes(filters, doc):
                    continue
                trusted[_address(doc)] = (doc, tuple(doc), tuple(doc.values()), len(blob))
                out.append(doc)
                if limit is not None and len(out) >= limit:
                    return last, False
        return last, True

    def close(self) -> None:
        """Release the snapshot so old versions it kept can be collected."""
        if self._open:
            self._open = False
            self._store.release(self._ts)


class WriteTransaction(Transaction):
    """The `ctx.db` of a mutation: reads plus insert, patch, replace and delete.

    Writes are buffered as `id -> (table, blob, keys)`; `_original` keeps each written
    document's index keys at the snapshot so reads can overlay the pending keys.
    """

    __slots__ = ("_original", "_pending")

    def __init__(self, db: Database) -> None:
        super().__init__(db, True)
        self._writes = {}
        self._original: dict[str, tuple | None] = {}
        self._pending: dict[tuple, tuple[list, set]] = {}

    def insert(self, table: str, document: dict) -> Id:
        """Insert a new document; returns its id."""
        info = self._db._table_for_write(table)
        doc = self._checked(info, document, "insert")
        creation_time = self._db._next_creation_time()
        doc_id = new_id(table, creation_time)
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(doc)
        self._original[doc_id] = None
        self._put(info, doc_id, full, creation_time, None)
        return Id(doc_id)

    def patch(self, id: str, fields: dict) -> None:
        """Shallow-merge `fields` into the document; `DELETE_FIELD` values remove fields."""
        table, doc_id, current, old_keys = self._existing(id, "patch")
        if not isinstance(fields, dict):
            raise ValidationError(f"patch: fields must be a dict, got {type_name(fields)}")
        info = self._db._table_for_write(table)
        merged = dict(current)
        for name, value in fields.items():
            if name in SYSTEM_FIELDS:
                if value != current[name]:
                    raise ValidationError(f"{table}.{name}: system fields cannot be changed")
                continue
            if value is DELETE_FIELD:
                merged.pop(name, None)
            else:
                merged[name] = value
        del merged["_id"], merged["_creation_time"]
        doc = self._checked(info, merged, "patch")
        self._replace_with(info, doc_id, current, doc, old_keys)

    def replace(self, id: str, document: dict) -> None:
        """Replace the whole document (system fields stay as they are)."""
        table, doc_id, current, old_keys = self._existing(id, "replace")
        if not isinstance(document, dict):
            raise ValidationError(f"replace: document must be a dict, got "
                                  f"{type_name(document)}")
        info = self._db._table_for_write(table)
        stripped = {}
        for name, value in document.items():
            if name in SYSTEM_FIELDS:
                if value != current[name]:
                    raise ValidationError(f"{table}.{name}: system fields cannot be changed")
                continue
            stripped[name] = value
        doc = self._checked(info, stripped, "replace")
        self._replace_with(info, doc_id, current, doc, old_keys)

    def delete(self, id: str) -> None:
        """Delete the document."""
        table, doc_id, _current, _keys = self._existing(id, "delete")
        self._writes[doc_id] = (table, None, None)
        if self._pending:
            self._pending.clear()

    # -- system tables: livedb's own writes (scheduler, file storage) ----------------

    def _system_insert(self, table: str, fields: dict, doc_id: str | None = None,
                       creation_time: float | None = None) -> Id:
        """Insert into a system table, skipping the user-write refusal and the schema.

        `doc_id` and `creation_time` keep a given identity (import); by default both are new.
        """
        info = self._db._tables[table]
        if doc_id is None or creation_time is None:
            creation_time = self._db._next_creation_time()
            doc_id = new_id(table, creation_time)
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(fields)
        self._original.setdefault(doc_id, None)
        self._put(info, doc_id, full, creation_time, None)
        return Id(doc_id)

    def _system_update(self, id: str, fields: dict | None) -> dict | None:
        """Shallow-merge `fields` into a system document, or delete it when `fields` is None.

        Returns the document as it was before, or None (and writes nothing) if it is absent.
        """
        doc_id = str(id)
        self.read_ids.add(doc_id)
        written = self._writes.get(doc_id)
        if written is not None:
            blob, keys = written[1], written[2]
        else:
            version = self._store.read(doc_id, self._ts)
            if version is None:
                return None
            blob, keys = version[1], version[2]
            self._original[doc_id] = keys
        if blob is None:
            return None
        current = decode(blob)
        table = doc_id[:doc_id.index(":")]
        if fields is None:
            self._writes[doc_id] = (table, None, None)
            if self._pending:
                self._pending.clear()
        else:
            merged = dict(current)
            merged.update(fields)
            self._put(self._db._tables[table], doc_id, merged, merged["_creation_time"], keys)
        return current

    # -- end of system-table writes --------------------------------------------------

    # -- internals ---------------------------------------------------------------

    def _existing(self, id: Any, op: str) -> tuple[str, str, dict, tuple]:
        parsed = parse_id(id)
        if parsed is None:
            raise ValidationError(f"{op}: {id!r} is not a document id")
        table, doc_id = parsed
        if table[0] == "_":
            raise ValidationError(f"{op}: {id!r} belongs to a read-only system table")
        self.read_ids.add(doc_id)
        written = self._writes.get(doc_id)
        if written is not None:
            blob, keys = written[1], written[2]
        else:
            version = self._store.read(doc_id, self._ts)
            if version is None:
                blob = keys = None
            else:
                blob, keys = version[1], version[2]
                self._original[doc_id] = keys
        if blob is None:
            raise DocumentNotFoundError(f"{op}: no document with id {id!r}")
        return table, keys[0][-1][2], decode(blob), keys

    def _checked(self, info: TableInfo, document: Any, op: str) -> dict:
        table = info.name
        if not isinstance(document, dict):
            raise ValidationError(f"{op}: {table}: a document must be a dict, got "
                                  f"{type_name(document)}")
        try:
            for name in document:
                if name.__class__ is not str or not name or name[0] in "_$":
                    check_field_name(name, True)
            document = (check_any if info.check is None else info.check)(document, 1)
        except Mismatch as e:
            raise ValidationError(e.render(table)) from None
        return document

    def _replace_with(self, info: TableInfo, doc_id: str, current: dict, doc: dict,
                      old_keys: tuple) -> None:
        creation_time = current["_creation_time"]
        full = {"_id": current["_id"], "_creation_time": creation_time}
        full.update(doc)
        self._put(info, doc_id, full, creation_time, old_keys)

    def _put(self, info: TableInfo, doc_id: str, full: dict, creation_time: float,
             old_keys: tuple | None) -> None:
        definition = info.definition
        if definition is not None and definition.vector_indexes:
            check_vectors(info.name, definition.vector_indexes, full)
        blob = encode(full)
        if len(blob) > MAX_DOCUMENT_BYTES:
            check_size(blob, info.name)
        keys = info.keys_for(full, doc_id, creation_time)
        if old_keys is not None:
            keys = tuple([o if o == n else n for o, n in zip(old_keys, keys, strict=True)])
        self._writes[doc_id] = (info.name, blob, keys)
        if self._pending:
            self._pending.clear()

    def _scan(self, index: tuple, position: int, start: tuple, end: tuple,
              reverse: bool) -> Iterator[tuple[tuple, bytes]]:
        writes = self._writes
        if not writes:
            yield from Transaction._scan(self, index, position, start, end, reverse)
            return
        pending, pending_set = self._pending_keys(index, position)
        lo, hi = bisect_left(pending, start), bisect_left(pending, end)
        extra = pending[lo:hi]
        if reverse:
            extra.reverse()
        i, n = 0, len(extra)
        store = self._store
        ts = self._ts
        for key in store.index(index).irange(start, end, reverse):
            doc_id = key[-1][2]
            written = writes.get(doc_id)
            if written is not None:
                keys = written[2]
                if keys is None or keys[position] != key or key in pending_set:
                    continue
                blob = written[1]
            else:
                blob = store.keyed_blob(key, position, ts)
                if blob is None:
                    continue
            while i < n and ((extra[i] < key) != reverse):
                yield extra[i], writes[extra[i][-1][2]][1]
                i += 1
            yield key, blob
        while i < n:
            yield extra[i], writes[extra[i][-1][2]][1]
            i += 1

    def _fill(self, index: tuple, position: int, start: tuple, end: tuple, reverse: bool,
              filters: list, limit: int | None, out: list) -> tuple[tuple | None, bool]:
        last = None
        for key, blob in self._scan(index, position, start, end, reverse):
            last = key
            doc = to_document(blob)
            if filters and not _passes(filters, doc):
                continue
            self.trusted[_address(doc)] = (doc, tuple(doc), tuple(doc.values()), len(blob))
            out.append(doc)
            if limit is not None and len(out) >= limit:
                return last, False
        return last, True

    def _pending_keys(self, index: tuple, position: int) -> tuple[list, set]:
        """Sorted keys of this index held by pending writes but not by the snapshot."""
        found = self._pending.get(index)
        if found is None:
            table = index[0]
            original = self._original
            keys = []
            for doc_id, (written_table, _blob, new) in self._writes.items():
                if written_table != table or new is None:
                    continue
                old = original.get(doc_id)
                if old is None or old[position] != new[position]:
                    keys.append(new[position])
            keys.sort()
            found = self._pending[index] = (keys, set(keys))
        return found

    def commit_changes(self) -> tuple[list, dict]:
        """The final writes, and per index `(position, removed, added, rewritten)` keys.

        `rewritten` holds the unchanged keys of documents written in place: the index
        itself keeps them, but a reader of that range read the document, so it counts.
        """
        docs = []
        changes: dict[tuple, tuple[int, list, list, list]] = {}
        original = self._original
        tables = self._db._tables
        for doc_id, (table, blob, keys) in self._writes.items():
            old = original.get(doc_id)
            if blob is None and old is None:
                continue
            docs.append((doc_id, blob, keys))
            for position, name in enumerate(tables[table].index_names):
                old_key = None if old is None else old[position]
                new_key = None if keys is None else keys[position]
                entry = changes.get((table, name))
                if entry is None:
                    entry = changes[(table, name)] = (position, [], [], [])
                if old_key is new_key:
                    entry[3].append(old_key)
                    continue
                if old_key is not None:
                    entry[1].append(old_key)
                if new_key is not None:
                    entry[2].append(new_key)
        return docs, changes


def _read_only(op: str) -> LiveDBError:
    return LiveDBError(f"ctx.db.{op}: queries are read-only; write from a @mutation "
                       "(or call one with ctx.run_mutation from an action)")


def _passes(filters: list, doc: dict) -> bool:
    for predicate in filters:
        if not predicate(doc):
            return False
    return True


def next_after(previous: float, now: float) -> float:
    """A creation time after `previous`: `now` when it is later, else the next float."""
    return now if now > previous else math.nextafter(previous, math.inf)


__all__ = ["DELETE_FIELD", "Transaction", "WriteTransaction"]
