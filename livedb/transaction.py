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

from .errors import DocumentNotFoundError, ValidationError
from .ids import Id, parse_id, valid_table_name
from .validators import Mismatch, check_any, check_field_name
from .values import check_size, decode, encode, type_name

if TYPE_CHECKING:
    from .database import Database
    from .query import Query
    from .schema import TableInfo
    from .store import Snapshot


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


def to_document(blob: bytes) -> dict:
    doc = decode(blob)
    doc["_id"] = Id(doc["_id"])
    return doc


class ReadSet:
    """What a transaction read: index ranges `[start, end)` per index, and ids by `get`."""

    __slots__ = ("ranges", "ids")

    def __init__(self) -> None:
        self.ranges: list[tuple[tuple, tuple, tuple]] = []
        self.ids: set[str] = set()

    def add_range(self, index: tuple, start: tuple, end: tuple) -> None:
        self.ranges.append((index, start, end))


class Transaction:
    """The read side of `ctx.db`: `get`, `query`, `normalize_id` and `system` at a snapshot."""

    __slots__ = ("_db", "_snapshot", "_state", "_ts", "_store", "reads", "_writes", "_overlay",
                 "__weakref__")

    def __init__(self, db: Database, snapshot: Snapshot) -> None:
        self._db = db
        self._snapshot = snapshot
        self._state = snapshot.state
        self._ts = snapshot.ts
        self._store = db._store
        self.reads = ReadSet()
        self._writes: dict[str, tuple] | None = None
        self._overlay: dict[tuple, _Overlay] | None = None

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
        self.reads.ids.add(doc_id)
        blob = self._blob(doc_id)
        return None if blob is None else to_document(blob)

    def query(self, table: str) -> Query:
        """Start a query over `table` (then with_index, order, filter and a terminal)."""
        from .query import Query

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
        from .query import SystemReader

        return SystemReader(self)

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

    def _scan(self, index: tuple, start: tuple, end: tuple, reverse: bool) -> Iterator[tuple]:
        """Index keys in `[start, end)` as this transaction sees them."""
        keys = self._state.index(index).irange(start, end, reverse)
        overlay = self._overlay.get(index) if self._overlay is not None else None
        if overlay is None or not (overlay.added or overlay.removed):
            return keys
        return overlay.merge(keys, start, end, reverse)

    def close(self) -> None:
        self._snapshot.close()


class _Overlay:
    """A writing transaction's net changes to one index: keys added and keys removed."""

    __slots__ = ("added", "removed", "_sorted")

    def __init__(self) -> None:
        self.added: dict[tuple, None] = {}
        self.removed: set[tuple] = set()
        self._sorted: list[tuple] | None = None

    def replace(self, old: tuple | None, new: tuple | None) -> None:
        if old == new:
            return
        self._sorted = None
        if old is not None:
            if old in self.added:
                del self.added[old]
            else:
                self.removed.add(old)
        if new is not None:
            if new in self.removed:
                self.removed.discard(new)
            else:
                self.added[new] = None

    def merge(self, committed: Iterator[tuple], start: tuple, end: tuple,
              reverse: bool) -> Iterator[tuple]:
        if self._sorted is None:
            self._sorted = sorted(self.added)
        mine = self._sorted
        lo, hi = bisect_left(mine, start), bisect_left(mine, end)
        extra = mine[lo:hi]
        if reverse:
            extra.reverse()
        removed = self.removed
        i, n = 0, len(extra)
        for key in committed:
            if key in removed:
                continue
            while i < n and ((extra[i] < key) != reverse):
                yield extra[i]
                i += 1
            yield key
        while i < n:
            yield extra[i]
            i += 1


class WriteTransaction(Transaction):
    """The `ctx.db` of a mutation: reads plus insert, patch, replace and delete."""

    __slots__ = ("_new_ids", "_last_time")

    def __init__(self, db: Database, snapshot: Snapshot) -> None:
        super().__init__(db, snapshot)
        self._writes = {}
        self._overlay = {}
        self._new_ids: set[str] = set()

    def insert(self, table: str, document: dict) -> Id:
        """Insert a new document; returns its id."""
        info = self._db._table_for_write(table)
        doc = self._checked(info, document, "insert")
        doc_id = self._db._ids.new(table)
        creation_time = self._db._next_creation_time()
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(doc)
        self._put(info, doc_id, full, creation_time, None)
        self._new_ids.add(doc_id)
        return Id(doc_id)

    def patch(self, id: str, fields: dict) -> None:
        """Shallow-merge `fields` into the document; `DELETE_FIELD` values remove fields."""
        table, doc_id, current = self._existing(id, "patch")
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
        self._replace_with(info, doc_id, current, doc)

    def replace(self, id: str, document: dict) -> None:
        """Replace the whole document (system fields stay as they are)."""
        table, doc_id, current = self._existing(id, "replace")
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
        self._replace_with(info, doc_id, current, doc)

    def delete(self, id: str) -> None:
        """Delete the document."""
        table, doc_id, _current = self._existing(id, "delete")
        info = self._db._table_for_write(table)
        old_keys = self._version_keys(doc_id)
        self._writes[doc_id] = (table, None, None)
        self._index_changes(info, old_keys, None)

    # -- internals ---------------------------------------------------------------

    def _existing(self, id: Any, op: str) -> tuple[str, str, dict]:
        parsed = parse_id(id)
        if parsed is None:
            raise ValidationError(f"{op}: {id!r} is not a document id")
        table, doc_id = parsed
        if table[0] == "_":
            raise ValidationError(f"{op}: {id!r} belongs to a read-only system table")
        self.reads.ids.add(doc_id)
        blob = self._blob(doc_id)
        if blob is None:
            raise DocumentNotFoundError(f"{op}: no document with id {id!r}")
        return table, doc_id, decode(blob)

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

    def _replace_with(self, info: TableInfo, doc_id: str, current: dict, doc: dict) -> None:
        creation_time = current["_creation_time"]
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(doc)
        self._put(info, doc_id, full, creation_time, self._version_keys(doc_id))

    def _put(self, info: TableInfo, doc_id: str, full: dict, creation_time: float,
             old_keys: tuple | None) -> None:
        blob = encode(full)
        if len(blob) > 1 << 20:
            check_size(blob, f"{info.name}")
        keys = info.keys_for(full, doc_id, creation_time)
        self._writes[doc_id] = (info.name, blob, keys)
        self._index_changes(info, old_keys, keys)

    def _index_changes(self, info: TableInfo, old: tuple | None, new: tuple | None) -> None:
        overlay = self._overlay
        table = info.name
        for position, name in enumerate(info.index_names):
            old_key = None if old is None else old[position]
            new_key = None if new is None else new[position]
            if old_key == new_key:
                continue
            index = (table, name)
            entry = overlay.get(index)
            if entry is None:
                entry = overlay[index] = _Overlay()
            entry.replace(old_key, new_key)

    def commit_changes(self) -> tuple[list, dict]:
        """The final writes for the store: docs and per-index (removed, added) keys."""
        docs = []
        new_ids = self._new_ids
        for doc_id, (_table, blob, keys) in self._writes.items():
            if blob is None and doc_id in new_ids:
                continue
            docs.append((doc_id, blob, keys))
        changes = {index: (list(o.removed), list(o.added))
                   for index, o in self._overlay.items() if o.added or o.removed}
        return docs, changes


def next_after(previous: float, now: float) -> float:
    """A creation time after `previous`: `now` when it is later, else the next float."""
    return now if now > previous else math.nextafter(previous, math.inf)


__all__ = ["DELETE_FIELD", "Transaction", "WriteTransaction", "ReadSet", "valid_table_name"]
