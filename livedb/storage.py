"""File storage: blobs beside the database, their metadata in the system table `_storage`.

A stored file is a row `{sha256, size, content_type}` in `_storage` plus its bytes: in a
dict for an in-memory database, or with a `path` a file named after the row's id in the
folder `<path>.files/`. Data is streamed in chunks (hashed and written as it arrives), so
a large file never sits in memory whole.

Writes keep the row and the bytes consistent through crashes. Storing writes the bytes
to a temporary file and syncs it, then, inside the transaction that inserts the row and
before it commits, renames the file into place and syncs the folder: a committed row
always has its file. Deleting commits the row's removal first and removes the file once
that is durable. What a crash can leave behind is a file without a row, and opening the
database sweeps those away.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import CorruptionError, DocumentNotFoundError, LiveDBError, ValidationError
from .ids import Id, parse_id
from .scheduler import system_mutation
from .transaction import Transaction, WriteTransaction
from .values import type_name

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger("livedb")

TABLE = "_storage"
CHUNK = 1 << 20
"""Bytes read, hashed and written at a time."""
_TEMP = ".tmp-"
EXPORT_ROWS = "_storage/documents.jsonl"
EXPORT_FILES = "_storage/files/"


def _file_id(id: Any, op: str) -> str:
    parsed = parse_id(id)
    if parsed is None or parsed[0] != TABLE:
        raise ValidationError(f"storage.{op}: {id!r} is not a storage id (an id of {TABLE})")
    return parsed[1]


def _chunks(data: Any) -> Iterator[bytes | memoryview]:
    """`data` (bytes-like, or a binary file object) in chunks of at most `CHUNK` bytes."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            yield view[start:start + CHUNK]
        return
    read = getattr(data, "read", None)
    if read is None or isinstance(data, str):
        raise TypeError(f"storage: store bytes or a binary file object, got {type_name(data)}")
    while True:
        chunk = read(CHUNK)
        if not chunk:
            if chunk is None:
                continue
            return
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"storage: the file object returned {type_name(chunk)}, not bytes "
                            "(open the file in binary mode, 'rb')")
        yield chunk


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":  # pragma: no cover - Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _metadata(row: dict) -> dict:
    return {"_id": row["_id"], "_creation_time": row["_creation_time"],
            "sha256": row["sha256"], "size": row["size"], "content_type": row["content_type"]}


class FileStorage:
    """The stored files of one database, in memory or (with a path) in `<path>.files/`."""

    def __init__(self, db: Database, path: str | None) -> None:
        self._db = db
        self.folder = None if path is None else os.path.abspath(path) + ".files"
        self._blobs: dict[str, bytes] = {}

    def open(self) -> None:
        """Remove what a crash left behind: temporary files and files without a row."""
        folder = self.folder
        if folder is None or not os.path.isdir(folder):
            return
        txn = Transaction(self._db)
        try:
            for name in os.listdir(folder):
                if name.startswith(_TEMP) or txn._blob(f"{TABLE}:{name}") is None:
                    try:
                        os.remove(os.path.join(folder, name))
                    except OSError as e:
                        log.warning("livedb: cannot remove leftover file %s: %s", name, e)
        finally:
            txn.close()

    def _path(self, doc_id: str) -> str:
        assert self.folder is not None
        return os.path.join(self.folder, doc_id[doc_id.index(":") + 1:])

    # -- storing -------------------------------------------------------------------------

    def store(self, data: Any, content_type: str | None = None) -> Id:
        """Store `data` (bytes or a binary file object) as a new file; its `_storage` id."""
        if content_type is not None and not isinstance(content_type, str):
            raise ValidationError(f"storage.store: content_type must be a str or None, got "
                                  f"{type_name(content_type)}")
        if self._db._closed:
            raise LiveDBError("the database is closed")
        if self.folder is None:
            return self._store_in_memory(data, content_type)
        return self._store_on_disk(data, content_type)

    def _store_in_memory(self, data: Any, content_type: str | None) -> Id:
        digest = hashlib.sha256()
        parts = []
        for chunk in _chunks(data):
            digest.update(chunk)
            parts.append(bytes(chunk))
        blob = b"".join(parts)
        del parts
        fields = {"sha256": digest.hexdigest(), "size": len(blob), "content_type": content_type}
        placed: list[str] = []

        def insert(txn: WriteTransaction) -> Id:
            doc_id = txn._system_insert(TABLE, fields)
            self._blobs[doc_id] = blob
            placed.append(doc_id)
            return doc_id

        try:
            return system_mutation(self._db, "storage.store", insert)
        except BaseException:
            for doc_id in placed:
                self._blobs.pop(doc_id, None)
            raise

    def _store_on_disk(self, data: Any, content_type: str | None) -> Id:
        folder = self._make_folder()
        fd, temp = tempfile.mkstemp(prefix=_TEMP, dir=folder)
        placed: list[str] = []
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(data):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            fields = {"sha256": digest.hexdigest(), "size": size, "content_type": content_type}

            def insert(txn: WriteTransaction) -> Id:
                doc_id = txn._system_insert(TABLE, fields)
                final = self._path(doc_id)
                os.replace(temp, final)
                placed.append(final)
                _fsync_dir(folder)
                return doc_id

            return system_mutation(self._db, "storage.store", insert)
        except BaseException:
            for leftover in (temp, *placed):
                try:
                    os.remove(leftover)
                except OSError:
                    pass
            raise

    def _make_folder(self) -> str:
        folder = self.folder
        assert folder is not None
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
            _fsync_dir(os.path.dirname(folder))
        return folder

    # -- reading -------------------------------------------------------------------------

    def read(self, row: dict) -> bytes | None:
        """The bytes of the file `row` describes, checked against its size and sha256."""
        doc_id = str(row["_id"])
        if self.folder is None:
            blob = self._blobs.get(doc_id)
        else:
            try:
                with open(self._path(doc_id), "rb") as f:
                    blob = f.read()
            except FileNotFoundError:
                blob = None
        if blob is None:
            if self._row(doc_id) is None:
                return None
            raise CorruptionError(f"stored file {doc_id} is missing although its _storage "
                                  "row exists")
        if len(blob) != row["size"] or hashlib.sha256(blob).hexdigest() != row["sha256"]:
            raise CorruptionError(f"stored file {doc_id} is damaged: its size or sha256 does "
                                  "not match what was stored")
        return blob

    def open_blob(self, doc_id: str) -> IO[bytes] | None:
        """A binary stream of a stored file's bytes, or None if it is gone."""
        if self.folder is None:
            blob = self._blobs.get(doc_id)
            if blob is None:
                return None
            return io.BytesIO(blob)
        try:
            return open(self._path(doc_id), "rb")
        except FileNotFoundError:
            return None

    def url(self, doc_id: str) -> str | None:
        """A `file://` URL of a stored file (durable databases), else None."""
        if self.folder is None:
            return None
        return Path(self._path(doc_id)).as_uri()

    def _row(self, doc_id: str) -> dict | None:
        txn = Transaction(self._db)
        try:
            return txn.system.get(doc_id)
        finally:
            txn.close()

    # -- following commits ---------------------------------------------------------------

    def committed(self, docs: list) -> None:
        """Remove the bytes of files whose rows a commit (now durable) deleted."""
        prefix = TABLE + ":"
        for doc_id, blob, _keys in docs:
            if blob is None and doc_id.startswith(prefix):
                if self.folder is None:
                    self._blobs.pop(doc_id, None)
                    continue
                try:
                    os.remove(self._path(doc_id))
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log.warning("livedb: cannot remove deleted file %s (removed at the next "
                                "open): %s", doc_id, e)

    # -- export and import ---------------------------------------------------------------

    def export_to(self, txn: Transaction, archive: zipfile.ZipFile) -> int:
        """Write the rows visible to `txn` and their bytes into an export; how many."""
        rows = txn.system.query(TABLE).collect()
        written = []
        for row in rows:
            source = self.open_blob(str(row["_id"]))
            if source is None:
                continue
            with source, archive.open(EXPORT_FILES + str(row["_id"]).partition(":")[2], "w",
                                      force_zip64=True) as out:
                for chunk in _chunks(source):
                    out.write(chunk)
            written.append(row)
        if written:
            with archive.open(EXPORT_ROWS, "w") as out:
                for row in written:
                    line = json.dumps({**_metadata(row), "_id": str(row["_id"])},
                                      separators=(",", ":"))
                    out.write(line.encode() + b"\n")
        return len(written)


class FileImport:
    """The stored files of an export being imported: placed inside the import's mutation.

    `discard()` removes what was placed if that mutation does not commit.
    """

    def __init__(self, storage: FileStorage, archive: zipfile.ZipFile, mode: str) -> None:
        self._storage = storage
        self._archive = archive
        self._mode = mode
        self._placed: list[str] = []

    def present(self) -> bool:
        return EXPORT_ROWS in self._archive.namelist()

    def run(self, txn: WriteTransaction) -> int | None:
        """Import the files (in the import's transaction); how many, or None if there are none."""
        if not self.present():
            return None
        storage = self._storage
        db = storage._db
        existing = txn.system.query(TABLE).collect()
        if self._mode == "replace":
            for row in existing:
                txn._system_update(row["_id"], None)
        elif self._mode == "refuse" and existing:
            raise LiveDBError("import: the database already has stored files; import with "
                              "mode='append' or 'replace' (--append / --replace)")
        replaced = {str(row["_id"]) for row in existing} if self._mode == "replace" else set()
        count = 0
        with self._archive.open(EXPORT_ROWS) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                where = f"{EXPORT_ROWS} line {number}"
                doc_id, creation_time, fields = self._parse(line, where)
                if txn._blob(doc_id) is not None:
                    raise LiveDBError(f"import: {where}: a stored file with _id {doc_id!r} "
                                      "already exists")
                self._place(doc_id, fields, where, doc_id in replaced)
                if creation_time > db._last_time:
                    db._last_time = creation_time
                txn._system_insert(TABLE, fields, doc_id, creation_time)
                count += 1
        return count

    @staticmethod
    def _parse(line: bytes, where: str) -> tuple[str, float, dict]:
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValidationError(f"import: {where}: not valid JSON ({e})") from None
        if row.__class__ is not dict:
            raise ValidationError(f"import: {where}: expected a JSON object")
        parsed = parse_id(row.get("_id"))
        creation_time = row.get("_creation_time")
        sha256 = row.get("sha256")
        size = row.get("size")
        content_type = row.get("content_type")
        if (parsed is None or parsed[0] != TABLE
                or creation_time.__class__ not in (int, float)
                or not isinstance(sha256, str) or len(sha256) != 64
                or size.__class__ is not int or size < 0
                or not (content_type is None or isinstance(content_type, str))):
            raise ValidationError(f"import: {where}: not a stored file's metadata (_id, "
                                  "_creation_time, sha256, size, content_type)")
        return (parsed[1], float(creation_time),
                {"sha256": sha256, "size": size, "content_type": content_type})

    def _place(self, doc_id: str, fields: dict, where: str, overwrites: bool) -> None:
        """Copy one file's bytes out of the archive into place, checking size and sha256."""
        storage = self._storage
        member = EXPORT_FILES + doc_id.partition(":")[2]
        try:
            source = self._archive.open(member)
        except KeyError:
            raise ValidationError(f"import: {where}: the export has no {member}") from None
        digest = hashlib.sha256()
        size = 0
        if storage.folder is None:
            parts = []
            with source:
                for chunk in _chunks(source):
                    digest.update(chunk)
                    size += len(chunk)
                    parts.append(chunk)
            self._check(member, fields, digest, size)
            storage._blobs[doc_id] = b"".join(parts)
            if not overwrites:
                self._placed.append(doc_id)
            return
        folder = storage._make_folder()
        fd, temp = tempfile.mkstemp(prefix=_TEMP, dir=folder)
        try:
            with source, os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            self._check(member, fields, digest, size)
            os.replace(temp, storage._path(doc_id))
        except BaseException:
            try:
                os.remove(temp)
            except OSError:
                pass
            raise
        _fsync_dir(folder)
        if not overwrites:
            self._placed.append(doc_id)

    @staticmethod
    def _check(member: str, fields: dict, digest: Any, size: int) -> None:
        if size != fields["size"] or digest.hexdigest() != fields["sha256"]:
            raise ValidationError(f"import: {member} does not match its size and sha256 in "
                                  f"{EXPORT_ROWS}")

    def discard(self) -> None:
        """Remove the files placed for an import that did not commit."""
        storage = self._storage
        for doc_id in self._placed:
            if storage.folder is None:
                storage._blobs.pop(doc_id, None)
                continue
            try:
                os.remove(storage._path(doc_id))
            except OSError:
                pass
        self._placed.clear()


# -- ctx.storage ------------------------------------------------------------------------------


class QueryStorage:
    """`ctx.storage` in a query: `get_url` and `get_metadata`, read at the query's snapshot."""

    __slots__ = ("_txn",)

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    def get_metadata(self, id: str) -> dict | None:
        """`{_id, _creation_time, sha256, size, content_type}` of a stored file, or None."""
        row = self._txn.system.get(_file_id(id, "get_metadata"))
        return None if row is None else _metadata(row)

    def get_url(self, id: str) -> str | None:
        """A `file://` URL of the stored file (durable databases), or None."""
        doc_id = _file_id(id, "get_url")
        if self._txn.system.get(doc_id) is None:
            return None
        return self._txn._db._files.url(doc_id)

    def store(self, data: Any, content_type: str | None = None) -> Id:
        raise LiveDBError("storage.store is available in actions only (or db.store_file "
                          "outside functions)")

    def get(self, id: str) -> bytes | None:
        raise LiveDBError("storage.get is available in actions only; queries and mutations "
                          "may read get_metadata and get_url")


class MutationStorage(QueryStorage):
    """`ctx.storage` in a mutation: also `delete`, which commits with the mutation."""

    __slots__ = ()

    def delete(self, id: str) -> None:
        """Delete a stored file; its bytes are removed once the mutation commits."""
        doc_id = _file_id(id, "delete")
        txn: WriteTransaction = self._txn  # type: ignore[assignment]
        if txn._system_update(doc_id, None) is None:
            raise DocumentNotFoundError(f"storage.delete: no stored file with id {id!r}")


class ActionStorage:
    """`ctx.storage` in an action: `store`, `get`, `get_url`, `get_metadata`, `delete`."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    def store(self, data: Any, content_type: str | None = None) -> Id:
        """Store bytes or a binary file object (streamed in chunks); the new file's id."""
        return self._db._files.store(data, content_type)

    def get(self, id: str) -> bytes | None:
        """The bytes of a stored file, or None if there is no such file."""
        doc_id = _file_id(id, "get")
        files = self._db._files
        row = files._row(doc_id)
        return None if row is None else files.read(row)

    def get_metadata(self, id: str) -> dict | None:
        """`{_id, _creation_time, sha256, size, content_type}` of a stored file, or None."""
        row = self._db._files._row(_file_id(id, "get_metadata"))
        return None if row is None else _metadata(row)

    def get_url(self, id: str) -> str | None:
        """A `file://` URL of the stored file (durable databases), or None."""
        doc_id = _file_id(id, "get_url")
        files = self._db._files
        return None if files._row(doc_id) is None else files.url(doc_id)

    def delete(self, id: str) -> None:
        """Delete a stored file (its row at once, its bytes once that is durable)."""
        doc_id = _file_id(id, "delete")

        def delete(txn: WriteTransaction) -> None:
            if txn._system_update(doc_id, None) is None:
                raise DocumentNotFoundError(f"storage.delete: no stored file with id {id!r}")

        system_mutation(self._db, "storage.delete", delete)


__all__ = ["ActionStorage", "FileImport", "FileStorage", "MutationStorage", "QueryStorage"]
