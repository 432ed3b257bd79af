"""Transactions: reading at a snapshot, buffering writes, and what a commit hands over.

A `Transaction` reads one snapshot of the store. When asked to (live queries and
mutations), it records what it read: the index ranges it actually scanned and the ids it
fetched, so a commit can tell whether it could change what was read. A one-shot query
records nothing. A `WriteTransaction` buffers its writes, reads them back
(read-your-writes) by overlaying its pending index keys on the snapshot's, and hands
the kernel one commit: the final writes and, per index, the keys removed and added.

Reading is the hot path of every function call, so a transaction reads the store's
`docs`, `history`, `indexes` and `stale` directly (a documented downward arrangement:
see _store.py for their meaning) instead of calling a method per key.

Returned documents are fresh dicts decoded from stored blobs. Each one is remembered in
`trusted` with its blob: a function returning it unchanged is checked by decoding the
blob again (in C) and comparing, instead of walking its values (see
_functions.check_result).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ._catalog import Catalog, TableInfo
from ._errors import DocumentNotFoundError, LiveDBError, ValidationError
from ._ids import Id, new_id, parse_id
from ._searchindex import check_vectors
from ._store import Changes, IndexName, Store, Write
from ._validators import Mismatch, check_any, check_field_name
from ._values import MAX_DOCUMENT_BYTES, check_size, decode, decode_many, encode, type_name


class _DeleteField:
    """The type of `DELETE_FIELD`: as a value in `ctx.db.patch(id, {...})`, it removes
    that field from the document.

    `patch` merges the fields it is given into the document (a shallow merge), so it
    needs a way to say "remove this field": give the field the value `DELETE_FIELD`
    (Convex's `undefined`). Storing `None` instead keeps the field, with the value null.
    Removing a field the schema requires is a `ValidationError`, as is `DELETE_FIELD`
    anywhere but at the top level of a `patch`.

    Examples:
        >>> from livedb import DELETE_FIELD, Database
        >>> db = Database()
        >>> user_id = db.mutation(lambda ctx: ctx.db.insert(
        ...     "users", {"name": "Ada", "nickname": "ada"}))
        >>> db.mutation(lambda ctx: ctx.db.patch(user_id, {"nickname": DELETE_FIELD}))
        >>> sorted(db.query(lambda ctx: ctx.db.get(user_id)))
        ['_creation_time', '_id', 'name']
        >>> db.close()
    """

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
"""As a value in `ctx.db.patch(id, {...})`, removes that field from the document.

`patch` merges the fields it is given into the document (a shallow merge), so it needs a
way to say "remove this field": give the field the value `DELETE_FIELD` (Convex's
`undefined`). Storing `None` instead keeps the field, with the value null. Removing a
field the schema requires is a `ValidationError`, as is `DELETE_FIELD` anywhere but at
the top level of a `patch`.

Examples:
    >>> from livedb import DELETE_FIELD, Database
    >>> db = Database()
    >>> user_id = db.mutation(lambda ctx: ctx.db.insert(
    ...     "users", {"name": "Ada", "nickname": "ada"}))
    >>> db.mutation(lambda ctx: ctx.db.patch(user_id, {"nickname": DELETE_FIELD}))
    >>> sorted(db.query(lambda ctx: ctx.db.get(user_id)))
    ['_creation_time', '_id', 'name']
    >>> db.close()
"""

SYSTEM_FIELDS = ("_id", "_creation_time")
PendingWrite = tuple[str, bytes | None, tuple[Any, ...] | None]
"""A buffered write: (table, new blob or None for a delete, new index keys or None)."""
ReadRange = tuple[IndexName, Any, Any]


def _read_only(op: str) -> LiveDBError:
    return LiveDBError(f"ctx.db.{op}: queries are read-only; write from a @mutation "
                       "(or call one with ctx.run_mutation from an action)")


class Transaction:
    """Reads at one snapshot: `get`, `normalize_id`, and index scans for queries.

    `read_ranges` lists the index ranges `(index, start, end)` scanned and `read_ids` the
    ids fetched when the transaction records its reads (else both are None).
    """

    __slots__ = ("store", "catalog", "ts", "read_ranges", "read_ids", "writes", "trusted",
                 "search_indexes", "_open")

    def __init__(self, store: Store, catalog: Catalog, ts: int, record: bool,
                 search_indexes: Any = None) -> None:
        self.store = store
        self.catalog = catalog
        self.ts = ts
        """The snapshot: the commit this transaction reads (registered with the store)."""
        self._open = True
        self.read_ranges: list[ReadRange] | None = [] if record else None
        self.read_ids: set[str] | None = set() if record else None
        self.writes: dict[str, PendingWrite] | None = None
        self.trusted: dict[int, tuple[dict[str, Any], bytes]] = {}
        """Documents reads returned, by `id()`: `(doc, the blob it was decoded from)`."""
        self.search_indexes = search_indexes
        """The database's full-text and vector indexes (_searchindex.Indexes), or None."""

    # -- reading -----------------------------------------------------------------------

    def get(self, id: str) -> dict[str, Any] | None:
        """The document with this id, or None if there is none.

        `ctx.db.get(id)` reads the query's snapshot; in a mutation it also sees the
        mutation's own earlier writes. A live query that calls it re-runs when that document
        changes (or is created, deleted). The document is a fresh dict, yours to change: it
        holds every field, plus `_id` (an `Id`) and `_creation_time` (float seconds since
        the epoch).

        Args:
            id: An `Id`, or a string holding one (use `normalize_id` to check a string
                from outside first).

        Returns:
            The document, or None if no document of that table has this id.

        Raises:
            ValidationError: `id` is not a document id, belongs to a system table (use
                `ctx.db.system.get`), or to a table the schema does not have.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> note_id = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> note = db.query(lambda ctx: ctx.db.get(note_id))
            >>> note["text"], note["_id"] == note_id
            ('hi', True)
            >>> db.mutation(lambda ctx: ctx.db.delete(note_id))
            >>> db.query(lambda ctx: ctx.db.get(note_id)) is None
            True
            >>> db.close()
        """
        if id.__class__ is Id or id.__class__ is str:
            if self.read_ids is not None:
                self.read_ids.add(id)
            writes = self.writes
            if writes is not None and id in writes:
                blob: bytes | None = writes[id][1]
            else:
                version = self.store.docs.get(id)
                if version is None:
                    return self._missing(id, "get")
                if version.__class__ is bytes:
                    blob = version  # pyright: ignore[reportAssignmentType]
                elif version[0] <= self.ts:
                    blob = version[1]  # type: ignore[assignment]
                else:
                    blob = self.store.older(id, self.ts)
            if blob is None:
                return None
            if id[0] == "_":
                raise ValidationError(f"get: {id!r} belongs to a system table; use "
                                      "ctx.db.system.get")
            doc: dict[str, Any] = decode(blob)
            doc["_id"] = id if id.__class__ is Id else Id(id)
            self.trusted[_address(doc)] = (doc, blob)
            return doc
        return self._missing(id, "get")

    def _missing(self, id: Any, op: str) -> dict[str, Any] | None:
        """A `get` found nothing: check that `id` was a well-formed id of a known user
        table (else `ValidationError`), and return None (what `get` returns)."""
        parsed = parse_id(id)
        if parsed is None:
            raise ValidationError(f"{op}: {id!r} is not a document id")
        table = parsed[0]
        if table[0] == "_":
            raise ValidationError(f"{op}: {id!r} belongs to a system table; use "
                                  "ctx.db.system.get")
        self.catalog.for_read(table, op)
        if self.read_ids is not None:
            self.read_ids.add(parsed[1])
        return None

    def normalize_id(self, table: str, id: str) -> Id | None:
        """`id` as an `Id` if it is a well-formed id of `table`, else None.

        Use it on strings from outside (a URL, a form, JSON) before `get`: it checks the form
        and the table only, not that the document exists.

        Args:
            table: The table the id should belong to.
            id: Any string.

        Returns:
            The `Id`, or None if `id` is not an id of `table`.

        Raises:
            ValidationError: `table` is not a table of the schema.
            TypeError: `table` is not a str.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> note_id = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> text = str(note_id)
            >>> db.query(lambda ctx: ctx.db.normalize_id("notes", text)) == note_id
            True
            >>> db.query(lambda ctx: ctx.db.normalize_id("notes", "not-an-id")) is None
            True
            >>> db.close()
        """
        if not isinstance(table, str):
            raise TypeError(f"normalize_id: table must be a str, got {type_name(table)}")
        self.catalog.for_read(table, "normalize_id")
        parsed = parse_id(id)
        if parsed is None or parsed[0] != table:
            return None
        return Id(parsed[1])

    def system_get(self, id: Any, op: str = "system.get") -> dict[str, Any] | None:
        """A document of a system table at the snapshot (livedb's own reads)."""
        parsed = parse_id(id)
        if parsed is None or parsed[0][0] != "_":
            raise ValidationError(f"{op}: {id!r} is not an id of a system table")
        self.catalog.for_read(parsed[0], op)
        doc_id = parsed[1]
        if self.read_ids is not None:
            self.read_ids.add(doc_id)
        blob = self.blob(doc_id)
        if blob is None:
            return None
        doc: dict[str, Any] = decode(blob)
        doc["_id"] = Id(doc_id)
        return doc

    if not TYPE_CHECKING:  # to type checkers, a query's ctx.db has no writes at all
        def insert(self, table: str, document: dict[str, Any]) -> Id:
            """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
            raise _read_only("insert")

        def patch(self, id: str, fields: dict[str, Any]) -> None:
            """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
            raise _read_only("patch")

        def replace(self, id: str, document: dict[str, Any]) -> None:
            """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
            raise _read_only("replace")

        def delete(self, id: str) -> None:
            """Queries cannot write: raises `LiveDBError` saying to use a mutation."""
            raise _read_only("delete")

    # -- scanning (used by _query.Query) ------------------------------------------------

    def blob(self, doc_id: str) -> bytes | None:
        """The blob of `doc_id` this transaction sees (its own writes first), or None."""
        writes = self.writes
        if writes is not None and doc_id in writes:
            return writes[doc_id][1]
        return self.store.read(doc_id, self.ts)

    def record(self, name: IndexName, start: Any, end: Any) -> None:
        """Record that the range `[start, end)` of index `name` was read."""
        if self.read_ranges is not None:
            self.read_ranges.append((name, start, end))

    def scan(self, name: IndexName, position: int, start: Any, end: Any,
             reverse: bool) -> Iterator[tuple[Any, bytes]]:
        """`(key, blob)` of the keys in `[start, end)` of index `name` this transaction
        sees, in order (None bounds: unbounded)."""
        for keys, epoch in self._slices(name, start, end, reverse):
            yield from self._visible(name, position, keys, epoch)

    def _slices(self, name: IndexName, start: Any, end: Any, reverse: bool
                ) -> Iterator[tuple[list[Any], int]]:
        """The index's key lists for `[start, end)`, each with the store's epoch read
        before it was sliced (what `_visible` checks collections against)."""
        store = self.store
        slices = store.index(name).slices(start, end, reverse)
        while True:
            epoch = store.epoch
            keys = next(slices, None)
            if keys is None:
                return
            yield keys, epoch

    def _visible(self, name: IndexName, position: int, keys: list[Any], epoch: int
                 ) -> list[tuple[Any, bytes]]:
        """The `(key, blob)` of a chunk's keys this transaction sees.

        A key of an unchanged document that is not stale costs one dict lookup. If a
        collection ran since `epoch` (read before the chunk was sliced), a key stale for
        this snapshot may have been dropped from `stale` after the slice was taken, so
        the chunk is checked again, strictly."""
        store = self.store
        docs = store.docs
        ts = self.ts
        stale = store.stale.get(name)
        strict = bool(epoch & 1) or store.epoch != epoch
        while True:
            found: list[tuple[Any, bytes]] = []
            for key in keys:
                doc_id = key if position == 0 else key[-1]
                version = docs.get(doc_id)
                if version is None:
                    continue
                if not strict:
                    if version.__class__ is bytes:
                        if not (stale and key in stale):
                            found.append((key, version))  # pyright: ignore[reportArgumentType]
                            continue
                    elif version[0] <= ts and version[1] is not None and not (
                            stale and key in stale):
                        found.append((key, version[1]))  # type: ignore[arg-type]
                        continue
                blob = store.key_visible(name, key, doc_id, ts, strict)
                if blob is not None:
                    found.append((key, blob))
            if strict or store.epoch == epoch:
                return found
            strict = True

    def fill(self, name: IndexName, position: int, start: Any, end: Any, reverse: bool,
             filters: list[Any], limit: int | None, out: list[dict[str, Any]]
             ) -> tuple[Any, bool]:
        """Append the visible documents passing `filters` to `out`, at most `limit`.

        Returns the last key examined (None if none) and whether the range was read to
        its end. The hot loop of every query: the blobs of a chunk are decoded in one call.
        """
        trusted = self.trusted
        last = None
        for keys, epoch in self._slices(name, start, end, reverse):
            if limit is None or filters:
                found = self._visible(name, position, keys, epoch)
            else:
                need = limit - len(out)
                found = []
                done = 0
                while done < len(keys) and len(found) < need:
                    step = max(need - len(found), 8)
                    found += self._visible(name, position, keys[done:done + step], epoch)
                    done += step
                del found[need:]
            if not found:
                continue
            blobs = list(map(_second, found))
            decoded = decode_many(blobs)
            if not filters:
                # the whole chunk in a few C-level passes (`found` is cut to the limit)
                keys = list(map(_first, found))
                _consume(map(_set_item, decoded, repeat("_id"),
                             map(Id, keys if position == 0 else map(_last, keys))))
                trusted.update(zip(map(_address, decoded), zip(decoded, blobs, strict=True),
                                   strict=True))
                out += decoded
                last = keys[-1]
                if limit is not None and len(out) >= limit:
                    return last, False
                continue
            for (key, blob), doc in zip(found, decoded, strict=True):
                last = key
                doc["_id"] = Id(key if position == 0 else key[-1])
                if not _passes(filters, doc):
                    continue
                trusted[_address(doc)] = (doc, blob)
                out.append(doc)
                if limit is not None and len(out) >= limit:
                    return last, False
        return last, True

    def close(self) -> None:
        """Release the snapshot so old versions it kept can be collected."""
        if self._open:
            self._open = False
            self.store.release(self.ts)


class WriteTransaction(Transaction):
    """The transaction of a mutation: reads plus insert, patch, replace and delete.

    Writes are buffered in `writes` as `id -> (table, blob, keys)`; `originals` keeps
    each written document's index keys at the snapshot (None for a new document) so
    reads can overlay the pending keys, and the commit can name the keys removed.
    """

    __slots__ = ("originals", "system_written", "_pending")

    def __init__(self, store: Store, catalog: Catalog, ts: int, record: bool,
                 search_indexes: Any = None) -> None:
        # Transaction's fields, set here without a super() call (every mutation's path):
        self.store = store
        self.catalog = catalog
        self.ts = ts
        self.read_ranges = [] if record else None
        self.read_ids = set() if record else None
        self.trusted = {}
        self.search_indexes = search_indexes
        self._open = False
        """The writer reads the newest applied commit unregistered: nothing to release."""
        self.writes = {}
        self.originals: dict[str, tuple[Any, ...] | None] = {}
        self.system_written = False
        """Whether livedb's own writes touched a system table (see `Commit.system`)."""
        self._pending: dict[IndexName, tuple[list[Any], set[Any]]] = {}

    def insert(self, table: str, document: dict[str, Any]) -> Id:
        """Insert a new document into `table` and return its id.

        The document is validated against the table's schema (without a schema, as any
        storable value) and against the value limits; it is stored as a copy, so changing
        your dict afterwards changes nothing. livedb adds `_id` and `_creation_time` (the
        database clock's time in seconds, strictly increasing within the database, so
        documents inserted by one mutation keep their order).

        Args:
            table: A user table (any valid name without a schema).
            document: A dict of field values. Field names must not start with `_` or `$`.

        Returns:
            The new document's `Id`.

        Raises:
            ValidationError: The document does not fit the schema or the limits (the message
                names the table and the path, e.g. `notes.text: expected string, got int`),
                or `table` is unknown, a system table, or not a valid name.

        Examples:
            >>> from livedb import Database, define_schema, define_table, v
            >>> db = Database(define_schema({"notes": define_table({"text": v.string()})}))
            >>> note_id = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> note_id.table
            'notes'
            >>> db.mutation(lambda ctx: ctx.db.insert("notes", {"text": 1}))
            Traceback (most recent call last):
            livedb._errors.ValidationError: notes.text: expected string, got int
            >>> db.close()
        """
        info = self.catalog.for_write(table)
        doc = self._checked(info, document, "insert")
        creation_time = self.catalog.next_creation_time()
        doc_id = new_id(table, creation_time)
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(doc)
        self.originals[doc_id] = None
        self._put(info, doc_id, full, creation_time)
        return Id(doc_id)

    def patch(self, id: str, fields: dict[str, Any]) -> None:
        """Merge `fields` into a document (a shallow merge): fields given are set, the
        others are kept.

        A field whose value is `DELETE_FIELD` is removed. Nested objects are replaced whole,
        not merged. The result is validated against the schema like an insert. `_id` and
        `_creation_time` may be given only with their current values.

        Args:
            id: The document's id.
            fields: The fields to set (or remove with `DELETE_FIELD`).

        Raises:
            DocumentNotFoundError: No document has this id (it never existed, or was
                deleted).
            ValidationError: The patched document does not fit the schema or the limits, a
                system field would change, or `id` is not a document id of a user table.

        Examples:
            >>> from livedb import DELETE_FIELD, Database
            >>> db = Database()
            >>> user_id = db.mutation(lambda ctx: ctx.db.insert(
            ...     "users", {"name": "Ada", "city": "London", "age": 36}))
            >>> db.mutation(lambda ctx: ctx.db.patch(user_id, {"age": 37, "city": DELETE_FIELD}))
            >>> user = db.query(lambda ctx: ctx.db.get(user_id))
            >>> user["name"], user["age"], "city" in user
            ('Ada', 37, False)
            >>> db.close()
        """
        table, doc_id, current = self._existing(id, "patch")
        if not isinstance(fields, dict):
            raise ValidationError(f"patch: fields must be a dict, got {type_name(fields)}")
        info = self.catalog.for_write(table, "patch")
        for name, value in fields.items():
            if name in SYSTEM_FIELDS:
                if value != current[name]:
                    raise ValidationError(f"{table}.{name}: system fields cannot be changed")
                continue
            if value is DELETE_FIELD:
                current.pop(name, None)
            else:
                current[name] = value
        self._rewrite(info, doc_id, current, "patch")

    def replace(self, id: str, document: dict[str, Any]) -> None:
        """Replace a whole document: fields not in `document` are removed.

        `_id` and `_creation_time` stay as they are (`document` may carry them only
        unchanged, so a document read with `get`, changed and written back is fine). The new
        document is validated like an insert.

        Args:
            id: The document's id.
            document: Its new fields.

        Raises:
            DocumentNotFoundError: No document has this id.
            ValidationError: The new document does not fit the schema or the limits, a system
                field would change, or `id` is not a document id of a user table.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> user_id = db.mutation(lambda ctx: ctx.db.insert(
            ...     "users", {"name": "Ada", "age": 36}))
            >>> db.mutation(lambda ctx: ctx.db.replace(user_id, {"name": "Grace"}))
            >>> user = db.query(lambda ctx: ctx.db.get(user_id))
            >>> user["name"], "age" in user
            ('Grace', False)
            >>> db.close()
        """
        table, doc_id, current = self._existing(id, "replace")
        if not isinstance(document, dict):
            raise ValidationError(f"replace: document must be a dict, got "
                                  f"{type_name(document)}")
        info = self.catalog.for_write(table, "replace")
        full = {"_id": current["_id"], "_creation_time": current["_creation_time"]}
        for name, value in document.items():
            if name in SYSTEM_FIELDS:
                if value != current[name]:
                    raise ValidationError(f"{table}.{name}: system fields cannot be changed")
                continue
            full[name] = value
        self._rewrite(info, doc_id, full, "replace")

    def delete(self, id: str) -> None:
        """Delete a document.

        Its id is never reused. Documents that refer to it (through `v.id` fields) are not
        touched: delete or patch them in the same mutation if needed.

        Args:
            id: The document's id.

        Raises:
            DocumentNotFoundError: No document has this id (deleting twice raises).
            ValidationError: `id` is not a document id of a user table.

        Examples:
            >>> from livedb import Database, DocumentNotFoundError
            >>> db = Database()
            >>> note_id = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> db.mutation(lambda ctx: ctx.db.delete(note_id))
            >>> try:
            ...     db.mutation(lambda ctx: ctx.db.delete(note_id))
            ... except DocumentNotFoundError:
            ...     print("already gone")
            already gone
            >>> db.close()
        """
        table, doc_id, _current = self._existing(id, "delete")
        self.writes[doc_id] = (table, None, None)  # type: ignore[index]
        if self._pending:
            self._pending.clear()

    # -- livedb's own writes to system tables (scheduler, file storage, serve, import) --

    def system_insert(self, table: str, fields: dict[str, Any], doc_id: str | None = None,
                      creation_time: float | None = None) -> Id:
        """Insert into a system table (or, for an import, a user table), skipping the
        system-table refusal and the schema. `doc_id` and `creation_time` keep a given
        identity (an import); by default both are new."""
        info = self.catalog.for_read(table, "insert")
        self.system_written = self.system_written or info.system
        if doc_id is None or creation_time is None:
            creation_time = self.catalog.next_creation_time()
            doc_id = new_id(table, creation_time)
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(fields)
        self.originals.setdefault(doc_id, None)
        self._put(info, doc_id, full, creation_time)
        return Id(doc_id)

    def system_update(self, id: Any, fields: dict[str, Any] | None) -> dict[str, Any] | None:
        """Shallow-merge `fields` into a system document, or delete it when `fields` is
        None. Returns the document as it was before, or None (and writes nothing) if it
        is absent."""
        doc_id = str(id)
        if self.read_ids is not None:
            self.read_ids.add(doc_id)
        current = self._current(doc_id)
        if current is None:
            return None
        table = doc_id[:doc_id.index(":")]
        self.system_written = self.system_written or table[0] == "_"
        if fields is None:
            self.writes[doc_id] = (table, None, None)  # type: ignore[index]
            if self._pending:
                self._pending.clear()
        else:
            merged = dict(current)
            merged.update(fields)
            self._put(self.catalog.for_read(table, "update"), doc_id, merged,
                      merged["_creation_time"])
        return current

    def checked_put(self, info: TableInfo, doc_id: str, creation_time: float,
                    fields: dict[str, Any], op: str) -> None:
        """Validate `fields` for `info` and write them as document `doc_id` (an import)."""
        full = {"_id": doc_id, "_creation_time": creation_time}
        full.update(self._checked(info, fields, op))
        self.system_written = self.system_written or info.system
        self.originals.setdefault(doc_id, None)
        self._put(info, doc_id, full, creation_time)

    # -- internals -----------------------------------------------------------------------

    def _current(self, doc_id: str) -> dict[str, Any] | None:
        """The document as this mutation sees it, remembering its keys at the snapshot."""
        written = self.writes.get(doc_id)  # type: ignore[union-attr]
        if written is not None:
            blob = written[1]
            return None if blob is None else decode(blob)
        blob = self.store.read(doc_id, self.ts)
        if blob is None:
            return None
        current: dict[str, Any] = decode(blob)
        if doc_id not in self.originals:
            info = self.catalog.for_read(doc_id[:doc_id.index(":")], "update")
            self.originals[doc_id] = info.keys(current, doc_id, current["_creation_time"])
        return current

    def _existing(self, id: Any, op: str) -> tuple[str, str, dict[str, Any]]:
        parsed = parse_id(id)
        if parsed is None:
            raise ValidationError(f"{op}: {id!r} is not a document id")
        table, doc_id = parsed
        if table[0] == "_":
            raise ValidationError(f"{op}: {id!r} belongs to a read-only system table")
        if self.read_ids is not None:
            self.read_ids.add(doc_id)
        current = self._current(doc_id)
        if current is None:
            self.catalog.for_read(table, op)
            raise DocumentNotFoundError(f"{op}: no document with id {id!r}")
        return table, doc_id, current

    def _checked(self, info: TableInfo, document: Any, op: str) -> dict[str, Any]:
        """`document` as the table stores it (checked against the schema, or as any
        storable object); `ValidationError` naming the table and the path otherwise.
        A schema's check also refuses names starting with `_` or `$` (its fields cannot)."""
        table = info.name
        check = info.check
        if check is not None and document.__class__ is dict:
            try:
                return check(document, 1)  # type: ignore[no-any-return]
            except Mismatch as e:
                raise ValidationError(e.render(table)) from None
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
        return document  # type: ignore[no-any-return]

    def _rewrite(self, info: TableInfo, doc_id: str, full: dict[str, Any], op: str) -> None:
        """Write `full` (a fresh dict this transaction owns, system fields first) as the
        new version of `doc_id`, checked against the table's schema with its system
        fields in one pass, or else as any storable object."""
        check = info.check_full
        if check is not None:
            try:
                full = check(full, 1)
            except Mismatch as e:
                raise ValidationError(e.render(info.name)) from None
        else:
            system = {"_id": full.pop("_id"), "_creation_time": full.pop("_creation_time")}
            system.update(self._checked(info, full, op))
            full = system
        self._put(info, doc_id, full, full["_creation_time"])

    def _put(self, info: TableInfo, doc_id: str, full: dict[str, Any],
             creation_time: float) -> None:
        definition = info.definition
        if definition is not None and definition.vector_indexes:
            check_vectors(info.name, definition.vector_indexes, full)
        blob = encode(full)
        if len(blob) > MAX_DOCUMENT_BYTES:
            check_size(blob, info.name)
        keys = info.keys(full, doc_id, creation_time)
        old = self.originals.get(doc_id)
        if old is not None:
            # unchanged keys keep their very objects: the commit tells them by identity
            if keys == old:
                keys = old
            else:
                keys = tuple([o if o == n else n for o, n in zip(old, keys, strict=True)])
        self.writes[doc_id] = (info.name, blob, keys)  # type: ignore[index]
        if self._pending:
            self._pending.clear()

    def scan(self, name: IndexName, position: int, start: Any, end: Any,
             reverse: bool) -> Iterator[tuple[Any, bytes]]:
        writes = self.writes
        if not writes:
            yield from Transaction.scan(self, name, position, start, end, reverse)
            return
        pending, pending_set = self._pending_keys(name, position)
        lo = 0 if start is None else bisect_left(pending, start)
        hi = len(pending) if end is None else bisect_left(pending, end)
        extra = pending[lo:hi]
        if reverse:
            extra.reverse()
        i, n = 0, len(extra)
        for key, blob in Transaction.scan(self, name, position, start, end, reverse):
            doc_id = key if position == 0 else key[-1]
            written = writes.get(doc_id)
            if written is not None:
                keys = written[2]
                if keys is None or keys[position] != key or key in pending_set:
                    continue
                blob = written[1]  # type: ignore[assignment]
            while i < n and ((extra[i] < key) != reverse):
                yield extra[i], self._pending_blob(extra[i], position)
                i += 1
            yield key, blob  # pyright: ignore[reportReturnType]  # (written: keys, so a blob)
        while i < n:
            yield extra[i], self._pending_blob(extra[i], position)
            i += 1

    def _pending_blob(self, key: Any, position: int) -> bytes:
        blob = self.writes[key if position == 0 else key[-1]][1]  # type: ignore[index]
        assert blob is not None
        return blob

    def fill(self, name: IndexName, position: int, start: Any, end: Any, reverse: bool,
             filters: list[Any], limit: int | None, out: list[dict[str, Any]]
             ) -> tuple[Any, bool]:
        if not self.writes:
            return Transaction.fill(self, name, position, start, end, reverse, filters,
                                    limit, out)
        last = None
        trusted = self.trusted
        for key, blob in self.scan(name, position, start, end, reverse):
            last = key
            doc = decode(blob)
            doc["_id"] = Id(key if position == 0 else key[-1])
            if filters and not _passes(filters, doc):
                continue
            trusted[_address(doc)] = (doc, blob)
            out.append(doc)
            if limit is not None and len(out) >= limit:
                return last, False
        return last, True

    def _pending_keys(self, name: IndexName, position: int) -> tuple[list[Any], set[Any]]:
        """Sorted keys of this index held by pending writes but not by the snapshot."""
        found = self._pending.get(name)
        if found is None:
            table = name[0]
            originals = self.originals
            keys = []
            for doc_id, (written_table, _blob, new) in self.writes.items():  # type: ignore[union-attr]
                if written_table != table or new is None:
                    continue
                old = originals.get(doc_id)
                if old is None or old[position] != new[position]:
                    keys.append(new[position])
            keys.sort()
            found = self._pending[name] = (keys, set(keys))
        return found

    def commit_changes(self) -> tuple[list[Write], Changes]:
        """The final writes, and per index `(removed, added, rewritten)` keys."""
        out: list[Write] = []
        changes: Changes = {}
        originals = self.originals
        tables = self.catalog.tables
        for doc_id, (table, blob, keys) in self.writes.items():  # type: ignore[union-attr]
            old = originals.get(doc_id)
            if blob is None and old is None:
                continue
            out.append((doc_id, blob, 0.0 if keys is None else keys[1][1]))
            for position, name in enumerate(tables[table].index_ids):
                old_key = None if old is None else old[position]
                new_key = None if keys is None else keys[position]
                entry = changes.get(name)
                if entry is None:
                    entry = changes[name] = ([], [], [])
                if old_key is new_key:
                    entry[2].append(old_key)
                    continue
                if old_key is not None:
                    entry[0].append(old_key)
                if new_key is not None:
                    entry[1].append(new_key)
        return out, changes


def _passes(filters: list[Any], doc: dict[str, Any]) -> bool:
    for predicate in filters:
        if not predicate(doc):
            return False
    return True


_address = id
_first = itemgetter(0)
_second = itemgetter(1)
_last = itemgetter(-1)
_set_item = dict.__setitem__
_consume: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend
"""Runs an iterator to its end (for a `map` run for its effect, in C)."""
