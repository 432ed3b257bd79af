"""File storage: blobs beside the database, their metadata in the system table `_storage`.

A stored file is a row `{sha256, size, content_type}` in `_storage` plus its bytes: in a
dict for an in-memory database, or with a `path` a file in the folder `<path>.files/`
(mode 0700, files 0600, whatever the umask) named `<id>-<sha256>`, after the row's id and
its bytes' hash. A name therefore always stands for the same bytes: a placed file is
never overwritten, and an import that gives an existing id other bytes places them
under a new name beside the old ones. Data is streamed in chunks (hashed and written as
it arrives), so a large file never sits in memory whole.

Rows and bytes stay consistent through crashes and failures. Storing (and importing)
writes the bytes under a temporary name and syncs them, then, inside the transaction
that inserts the row and before it commits, renames them into place and syncs the
folder: a committed row always has its file. Bytes that a commit stops referencing (a
deleted file, the old bytes of a file an import replaced) are removed once that commit
is durable and no reader that may still need them is running: an export or a `get`
pins the files while it reads, and removals wait for the last pin. What a crash can
leave behind is a file no row references; opening the database sweeps those away, and
only those: names livedb never makes are left alone, and a folder that is a symbolic
link is refused rather than followed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ._engines import Commit
from ._errors import CorruptionError, DocumentNotFoundError, LiveDBError, ValidationError
from ._ids import Id, parse_id
from ._kernel import Kernel, State
from ._query import Reader, Writer
from ._transaction import Transaction
from ._values import decode, type_name

log = logging.getLogger("livedb")

TABLE = "_storage"
CHUNK = 1 << 20
"""Bytes read, hashed and written at a time."""
_TEMP = ".tmp-"
_NAME = re.compile(r"([0-9A-Za-z]{8,40})-([0-9a-f]{64})\Z")
"""The name of a stored file's bytes: its id (without the table) and their sha256."""
_OLD_NAME = re.compile(r"[0-9A-Za-z]{8,40}\Z")
"""How earlier versions named a stored file's bytes: its id alone (renamed at open)."""
FILE_MODE = 0o600
FOLDER_MODE = 0o700
SHARED_GRACE = 60.0
"""Shared databases: seconds the bytes of a deleted file are kept (another process may be
reading them, at a snapshot from before the delete)."""
SHARED_LEFTOVER_AGE = 3600.0
"""Shared databases: a file no row references is swept at open only once it is this old
(another process may be committing its row right now)."""
EXPORT_ROWS = "_storage/documents.jsonl"
EXPORT_FILES = "_storage/files/"


def _file_id(id: Any, op: str) -> str:
    parsed = parse_id(id)
    if parsed is None or parsed[0] != TABLE:
        raise ValidationError(f"storage.{op}: {id!r} is not a storage id (an id of {TABLE})")
    return parsed[1]


def blob_name(doc_id: str, sha256: str) -> str:
    """The name of the bytes of stored file `doc_id` whose sha256 is `sha256`."""
    return f"{doc_id.partition(':')[2]}-{sha256}"


def check_content_type(content_type: Any, op: str) -> None:
    """Raise `ValidationError` unless `content_type` is None or a str valid as UTF-8."""
    if content_type is None:
        return
    if not isinstance(content_type, str):
        raise ValidationError(f"{op}: content_type must be a str or None, got "
                              f"{type_name(content_type)}")
    try:
        content_type.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(f"{op}: content_type is not valid Unicode (a lone surrogate "
                              f"{content_type[e.start]!r} at index {e.start})") from None


def _chunks(data: Any) -> Iterator[bytes | bytearray | memoryview]:
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


def _age(entry: os.DirEntry[str]) -> float:
    """Seconds since `entry` was last modified (0 if that cannot be told)."""
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {"_id": row["_id"], "_creation_time": row["_creation_time"],
            "sha256": row["sha256"], "size": row["size"], "content_type": row["content_type"]}


def _io_error(doing: str, path: str, error: OSError) -> LiveDBError:
    """The `LiveDBError` for an OS error met on the stored files' folder or a file in it."""
    found = LiveDBError(f"storage: cannot {doing} {path}: {error.strerror or error}")
    found.__cause__ = error
    return found


class _Staged:
    """Bytes being written under a temporary name (or into memory), hashed and counted.

    `limit` (None for no limit) is the size the bytes were declared to have: going past
    it raises `ValidationError` at once, before more is written.
    """

    __slots__ = ("_storage", "fd", "temp", "parts", "digest", "size", "limit", "what")

    def __init__(self, storage: FileStorage, limit: int | None = None, what: str = "") -> None:
        self._storage = storage
        self.digest = hashlib.sha256()
        self.size = 0
        self.limit = limit
        self.what = what
        self.parts: list[bytes] | None = None
        self.fd: int | None = None
        self.temp: str | None = None
        if storage.folder is None:
            self.parts = []
            return
        folder = storage._make_folder()
        try:
            self.fd, self.temp = tempfile.mkstemp(prefix=_TEMP, dir=folder)
            os.fchmod(self.fd, FILE_MODE)
        except OSError as e:
            self.discard()
            raise _io_error("create a file in", folder, e) from None

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Hash, count and write one chunk; past the declared size, `ValidationError`."""
        size = self.size + len(chunk)
        if self.limit is not None and size > self.limit:
            raise ValidationError(f"import: {self.what} holds more than the {self.limit} bytes "
                                  f"its row in {EXPORT_ROWS} declares")
        self.digest.update(chunk)
        self.size = size
        if self.parts is not None:
            self.parts.append(bytes(chunk))
            return
        fd = self.fd
        assert fd is not None
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            raise _io_error("write to", self._storage.folder or "", e) from None

    def finish(self) -> str | bytes:
        """Sync and close the bytes; their temporary path (or, in memory, the bytes)."""
        if self.parts is not None:
            blob = b"".join(self.parts)
            self.parts = []
            return blob
        fd, self.fd = self.fd, None
        assert fd is not None
        try:
            os.fsync(fd)
        except OSError as e:
            raise _io_error("write to", self._storage.folder or "", e) from None
        finally:
            os.close(fd)
        assert self.temp is not None
        return self.temp

    def discard(self) -> None:
        """Close and remove the temporary file (after a failure)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.temp is not None:
            try:
                os.remove(self.temp)
            except OSError:
                pass
            self.temp = None


class _EngineBlobs:
    """The bytes of stored files kept by the engine (PostgreSQL), used like a dict."""

    def __init__(self, files: Any) -> None:
        self._files = files

    def __setitem__(self, name: str, blob: bytes) -> None:
        self._files.put(name, iter((blob,)))

    def get(self, name: str) -> bytes | None:
        found: bytes | None = self._files.get(name)
        return found

    def pop(self, name: str, default: Any = None) -> Any:
        self._files.remove([name])
        return default


class FileStorage:
    """The stored files of one database: in memory, in `<path>.files/` (with a path), or
    in the engine (PostgreSQL)."""

    system_only = True
    """Hears only of commits that wrote a system table (see _kernel.CommitListener)."""
    settles = False

    def __init__(self, kernel: Kernel, path: str | None) -> None:
        self._kernel = kernel
        self.kernel = kernel
        kernel.catalog.add_system_table(TABLE)
        self.folder = None if path is None else os.path.abspath(path) + ".files"
        engine_files = getattr(kernel.engine, "files", None)
        self._blobs: Any = {} if engine_files is None else _EngineBlobs(engine_files)
        """In memory (or in the engine): the bytes of each stored file, by name."""
        self._shared = kernel.engine.shared
        self._lock = threading.Lock()
        """Held while a name is placed or removed, and around the fields below."""
        self._generation = 0
        self._pins: dict[int, int] = {}
        """Active pins per generation: a pin belongs to the generation current when it began."""
        self._doomed: list[tuple[int, set[str]]] = []
        """Names to remove once every pin of their generation or an earlier one is released.
        Placing a name again takes it off (the request was for bytes since replaced)."""
        self._claimed: dict[str, int] = {}
        """Names placed by imports whose transaction has not ended yet: never removed."""
        self._deleting: dict[str, str] = {}
        """Row id -> name of the bytes, for rows a transaction deletes (removed on commit)."""

    # -- the folder --------------------------------------------------------------------------

    def open(self) -> None:
        """Check the folder and sweep it of what a crash left behind.

        Removes temporary files and stored files that no row references, and renames the
        files that an earlier version named after their id alone; any other name is left
        alone. A folder that cannot be read is logged and left for later: the database
        opens, and using a stored file raises `LiveDBError`. A folder that is a symbolic
        link raises `LiveDBError` here.
        """
        folder = self.folder
        if folder is None:
            return
        self._check_not_a_link()
        try:
            with os.scandir(folder) as listing:
                entries = [e for e in listing if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("livedb: cannot read the stored files' folder %s (%s); stored files "
                        "cannot be used until it is readable", folder, e.strerror or e)
            return
        txn = self._kernel.reader()
        renamed = False
        try:
            for entry in entries:
                name = entry.name
                if name.startswith(_TEMP):
                    self._remove_leftover(name)
                    continue
                if self._shared and _age(entry) < SHARED_LEFTOVER_AGE:
                    continue
                found = _NAME.match(name)
                if found is not None:
                    row = self._row_in(txn, found[1])
                    if row is None or row.get("sha256") != found[2]:
                        self._remove_leftover(name)
                    continue
                row = None if _OLD_NAME.match(name) is None else self._row_in(txn, name)
                if row is None:
                    continue
                target = os.path.join(folder, blob_name(str(row["_id"]), row["sha256"]))
                try:
                    if os.path.exists(target):
                        os.remove(entry.path)
                    else:
                        os.rename(entry.path, target)
                        renamed = True
                except OSError as e:
                    log.warning("livedb: cannot rename stored file %s: %s", name, e)
            if renamed:
                _fsync_dir(folder)
        finally:
            txn.close()

    def _check_not_a_link(self) -> None:
        folder = self.folder
        assert folder is not None
        if os.path.islink(folder):
            raise LiveDBError(f"{folder} is a symbolic link: livedb removes leftover files in "
                              "its stored files' folder and will not follow a link out of it; "
                              "make it a real folder (a mount point works for another disk)")

    @staticmethod
    def _row_in(txn: Transaction, key: str) -> dict[str, Any] | None:
        blob = txn.blob(f"{TABLE}:{key}")
        return None if blob is None else decode(blob)

    def _remove_leftover(self, name: str) -> None:
        assert self.folder is not None
        try:
            os.remove(os.path.join(self.folder, name))
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("livedb: cannot remove leftover file %s: %s", name, e)

    def _make_folder(self) -> str:
        folder = self.folder
        assert folder is not None
        self._check_not_a_link()
        if os.path.isdir(folder):
            return folder
        try:
            os.mkdir(folder, FOLDER_MODE)
            os.chmod(folder, FOLDER_MODE)
            _fsync_dir(os.path.dirname(folder))
        except FileExistsError:
            if not os.path.isdir(folder):
                raise LiveDBError(f"storage: {folder} exists but is not a folder; livedb keeps "
                                  "stored files there") from None
        except OSError as e:
            raise _io_error("create the stored files' folder", folder, e) from None
        return folder

    def _path(self, name: str) -> str:
        assert self.folder is not None
        return os.path.join(self.folder, name)

    # -- storing -------------------------------------------------------------------------

    def store(self, data: Any, content_type: str | None = None) -> Id:
        """Store `data` (bytes or a binary file object) as a new file; its `_storage` id."""
        check_content_type(content_type, "storage.store")
        if self._kernel.state is State.CLOSED:
            raise LiveDBError("the database is closed")
        staged = _Staged(self)
        placed: list[str] = []
        try:
            for chunk in _chunks(data):
                staged.write(chunk)
            source = staged.finish()
            sha256 = staged.digest.hexdigest()
            fields = {"sha256": sha256, "size": staged.size, "content_type": content_type}
            current = [source]
            """Where the bytes are: a shared database may run the insert again after a
            conflict, with a new id, so the bytes move on from where the last run put them."""

            def insert(txn: Writer) -> Id:
                doc_id = txn.system_insert(TABLE, fields)
                name = blob_name(doc_id, sha256)
                self._place(name, current[0])
                if isinstance(current[0], str):
                    current[0] = self._path(name)
                staged.temp = None
                placed.append(name)
                return doc_id

            stored = self._kernel.write_system("storage.store", insert)
            if len(placed) > 1:
                with self._lock:
                    self._remove_unneeded(placed[:-1])
            return stored
        except BaseException:
            staged.discard()
            if placed and not self._commit_uncertain():
                with self._lock:
                    self._remove_unneeded(placed)
            raise

    def _place(self, name: str, source: str | bytes, sync: bool = True) -> None:
        """Move staged bytes (a temporary path, or bytes in memory) into place as `name`;
        with `sync`, make the move durable (else the caller syncs the folder once)."""
        if isinstance(source, bytes):
            self._blobs[name] = source
            return
        folder = self.folder
        assert folder is not None
        try:
            os.replace(source, os.path.join(folder, name))
            if sync:
                _fsync_dir(folder)
        except OSError as e:
            raise _io_error("write to", folder, e) from None

    def _commit_uncertain(self) -> bool:
        """Whether a failed commit may have reached the disk all the same (an I/O error while
        syncing): its files are then kept, for the sweep at the next open to decide."""
        return self._kernel.uncertain

    # -- reading -------------------------------------------------------------------------

    def read(self, row: dict[str, Any]) -> bytes | None:
        """The bytes of the file `row` describes, checked against its size and sha256."""
        doc_id = str(row["_id"])
        name = blob_name(doc_id, row["sha256"])
        if self.folder is None:
            blob = self._blobs.get(name)
        else:
            path = self._path(name)
            try:
                with open(path, "rb") as f:
                    blob = f.read()
            except FileNotFoundError:
                blob = None
            except OSError as e:
                raise _io_error(f"read stored file {doc_id} at", path, e) from None
        if blob is None:
            if self._shared and not self._kernel.writing:
                self._kernel.shared.catch_up()  # the row may be gone in a newer commit
            if self.row(doc_id) is None:
                return None
            raise CorruptionError(f"stored file {doc_id} is missing although its _storage "
                                  "row exists")
        if len(blob) != row["size"] or hashlib.sha256(blob).hexdigest() != row["sha256"]:
            raise CorruptionError(f"stored file {doc_id} is damaged: its size or sha256 does "
                                  "not match what was stored")
        found: bytes = blob
        return found

    def open_blob(self, row: dict[str, Any]) -> IO[bytes] | None:
        """A binary stream of the bytes of the file `row` describes, or None if they are gone."""
        name = blob_name(str(row["_id"]), row["sha256"])
        if self.folder is None:
            blob = self._blobs.get(name)
            return None if blob is None else io.BytesIO(blob)
        path = self._path(name)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _io_error(f"read stored file {row['_id']} at", path, e) from None

    def url(self, row: dict[str, Any]) -> str | None:
        """A `file://` URL of the file `row` describes (durable databases), else None."""
        if self.folder is None:
            return None
        return Path(self._path(blob_name(str(row["_id"]), row["sha256"]))).as_uri()

    def row(self, doc_id: str) -> dict[str, Any] | None:
        """A `_storage` row at the newest snapshot, or None."""
        txn = self._kernel.reader()
        try:
            row: dict[str, Any] | None = txn.system.get(doc_id)
            return row
        finally:
            txn.close()

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep every stored file's bytes while the block runs (an export, a `get`).

        Pin before taking the snapshot the block reads: a commit published before the pin
        is in that snapshot, and the removals of a commit published after it wait until
        the block ends.
        """
        with self._lock:
            generation = self._generation
            self._pins[generation] = self._pins.get(generation, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._pins[generation] - 1
                if left:
                    self._pins[generation] = left
                else:
                    del self._pins[generation]
                doomed = self._doomed
                oldest = min(self._pins, default=self._generation)
                while doomed and doomed[0][0] < oldest:
                    self._remove_unneeded(doomed.pop(0)[1])

    # -- removing ------------------------------------------------------------------------

    def deleting(self, doc_id: str, row: dict[str, Any]) -> None:
        """Note that a transaction deletes the row of `doc_id` (its bytes go if it commits)."""
        self._deleting[doc_id] = blob_name(doc_id, row["sha256"])

    def committed(self, commit: Commit) -> None:
        """Remove the bytes of files whose rows a commit (now durable) deleted."""
        prefix = TABLE + ":"
        deleting = self._deleting
        if not deleting:
            return
        names = [deleting.pop(doc_id) for doc_id, blob, _ct in commit.writes
                 if blob is None and doc_id in deleting and doc_id.startswith(prefix)]
        if names and self._shared:
            later = threading.Timer(SHARED_GRACE, self._discard_later, [names])
            later.daemon = True
            later.start()
        elif names:
            self.discard(names)

    def _discard_later(self, names: list[str]) -> None:
        try:
            self.discard(names)
        except Exception:  # noqa: BLE001 - the next open's sweep removes them
            log.warning("livedb: removing the bytes of deleted stored files failed",
                        exc_info=True)

    def settled(self, ts: int) -> None:
        """Nothing to do in the committing thread."""

    def discard(self, names: Iterable[str]) -> None:
        """Remove these names' bytes: now, or once the pins already taken (readers that may
        still need them) are released; later pins do not delay them.

        A name that is needed now (`_needed`) is not removed: a later commit refers to the
        same bytes again, so the request is stale."""
        with self._lock:
            unneeded = {name for name in names if not self._needed(name)}
            if not unneeded:
                return
            if self._pins:
                self._doomed.append((self._generation, unneeded))
                self._generation += 1
            else:
                self._remove_unneeded(unneeded)

    def _needed(self, name: str) -> bool:
        """Whether `name` is claimed by an import or is the newest row's bytes (lock held)."""
        if name in self._claimed:
            return True
        key, _, sha256 = name.partition("-")
        blob = self._kernel.store.newest(f"{TABLE}:{key}")
        return blob is not None and decode(blob).get("sha256") == sha256

    def _remove_unneeded(self, names: Iterable[str]) -> None:
        for name in names:
            if self._needed(name):
                continue
            if self.folder is None:
                self._blobs.pop(name, None)
                continue
            try:
                os.remove(self._path(name))
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("livedb: cannot remove stored file %s (removed at the next "
                            "open): %s", name, e)

    # -- export and import ---------------------------------------------------------------

    def export_to(self, txn: Reader, archive: zipfile.ZipFile) -> int:
        """Write the rows visible to `txn` and their bytes into an export; how many.

        The caller pins the files before taking `txn`'s snapshot. Bytes that are missing or
        do not match their row raise `CorruptionError`: an export never leaves one out.
        """
        rows = txn.system.query(TABLE).collect()
        for row in rows:
            self._export_bytes(row, archive)
        if rows:
            with archive.open(EXPORT_ROWS, "w") as out:
                for row in rows:
                    line = json.dumps({**_metadata(row), "_id": str(row["_id"])},
                                      ensure_ascii=False, separators=(",", ":"))
                    out.write(line.encode() + b"\n")
        return len(rows)

    def _export_bytes(self, row: dict[str, Any], archive: zipfile.ZipFile) -> None:
        doc_id = str(row["_id"])
        source = self.open_blob(row)
        if source is None:
            raise CorruptionError(f"export: stored file {doc_id} is missing although its "
                                  "_storage row exists")
        digest = hashlib.sha256()
        size = 0
        with source, archive.open(EXPORT_FILES + doc_id.partition(":")[2], "w",
                                  force_zip64=True) as out:
            while True:
                try:
                    chunk = source.read(CHUNK)
                except OSError as e:
                    raise _io_error(f"read stored file {doc_id} in", self.folder or "",
                                    e) from None
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if size != row["size"] or digest.hexdigest() != row["sha256"]:
            raise CorruptionError(f"export: stored file {doc_id} is damaged: its size or "
                                  "sha256 does not match what was stored")

    def importer(self) -> FileImport:
        """A `FileImport` for one import into this database."""
        return FileImport(self)


class FileImport:
    """The stored files an import brings, from the archive to the commit (or to nothing).

    `stage` copies one file's bytes out of the archive under a temporary name, checked
    against the size and sha256 its row declares as they stream (before the import's
    mutation, so the writer lock is not held while they are copied); `supersede` deletes
    an existing row in the import's transaction; `place` moves every staged file into
    place inside that transaction; `finish` then removes the bytes the commit superseded
    or, if it did not commit, everything placed for it. The files' old bytes stay until the
    commit is durable, so a failed import changes no stored file.
    """

    def __init__(self, storage: FileStorage) -> None:
        self._storage = storage
        self._staged: list[tuple[str, _Staged, str | bytes]] = []
        self._placed: list[str] = []
        self._superseded: set[str] = set()

    def stage(self, doc_id: str, fields: dict[str, Any], chunks: Iterable[bytes],
              what: str) -> None:
        """Copy one file's bytes (`what` names them in errors), checked against `fields`."""
        staged = _Staged(self._storage, fields["size"], what)
        try:
            for chunk in chunks:
                staged.write(chunk)
            source = staged.finish()
        except BaseException:
            staged.discard()
            raise
        self._staged.append((blob_name(doc_id, fields["sha256"]), staged, source))
        if staged.size != fields["size"] or staged.digest.hexdigest() != fields["sha256"]:
            raise ValidationError(f"import: {what} does not match its size and sha256 in "
                                  f"{EXPORT_ROWS}")

    def supersede(self, txn: Writer, row: dict[str, Any]) -> None:
        """Delete an existing file's row in the import's transaction (mode "replace")."""
        txn.system_update(row["_id"], None)
        self._superseded.add(blob_name(str(row["_id"]), row["sha256"]))

    def place(self) -> None:
        """Move the staged files into place (in the import's transaction, before commit)."""
        storage = self._storage
        with storage._lock:
            while self._staged:
                name, staged, source = self._staged[-1]
                storage._claimed[name] = storage._claimed.get(name, 0) + 1
                for _generation, doomed in storage._doomed:
                    doomed.discard(name)
                self._placed.append(name)
                storage._place(name, source, sync=False)
                staged.temp = None
                self._staged.pop()
            if self._placed and storage.folder is not None:
                try:
                    _fsync_dir(storage.folder)
                except OSError as e:
                    raise _io_error("write to", storage.folder, e) from None

    def finish(self, committed: bool) -> None:
        """After the import's mutation: drop what it superseded, or, if it failed, what it
        placed (unless the commit may have reached the disk; the next open decides)."""
        storage = self._storage
        for _name, staged, _source in self._staged:
            staged.discard()
        self._staged.clear()
        with storage._lock:
            for name in self._placed:
                left = storage._claimed[name] - 1
                if left:
                    storage._claimed[name] = left
                else:
                    del storage._claimed[name]
        if committed:
            storage.discard(self._superseded)
        elif not storage._commit_uncertain():
            storage.discard(self._placed)
        self._placed.clear()
        self._superseded.clear()


# -- ctx.storage ------------------------------------------------------------------------------


class QueryStorage:
    """`ctx.storage` in a query: `get_metadata` and `get_url`, read at the query's
    snapshot (a live query re-runs when the file's row changes).

    Stored files are bytes kept beside the database (in memory, or with a `path` in the
    folder `<path>.files/`), each with a row in the system table `_storage`. Files are
    stored from actions (`ctx.storage.store`) or from outside functions
    (`db.store_file`); their bytes are read in actions (`ctx.storage.get`).
    """

    __slots__ = ("_txn", "_files")

    def __init__(self, txn: Reader | Writer, files: FileStorage) -> None:
        self._txn = txn
        self._files = files

    def get_metadata(self, id: str) -> dict[str, Any] | None:
        """What is known of a stored file, or None if there is no such file.

        Args:
            id: The file's id in `_storage`.

        Returns:
            `{"_id", "_creation_time", "sha256" (hex str), "size" (bytes), "content_type"
            (str or None)}`, or None.

        Raises:
            ValidationError: `id` is not an id of `_storage`.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello", content_type="text/plain")
            >>> meta = db.query(lambda ctx: ctx.storage.get_metadata(file_id))
            >>> meta["size"], meta["content_type"], meta["sha256"][:12]
            (5, 'text/plain', '2cf24dba5fb0')
            >>> db.close()
        """
        row = self._txn.system.get(_file_id(id, "get_metadata"))
        return None if row is None else _metadata(row)

    def get_url(self, id: str) -> str | None:
        """A `file://` URL of a stored file's bytes, for a durable database.

        The file behind the URL is livedb's own: read it, do not change or move it. It
        stays valid until the stored file is deleted.

        Args:
            id: The file's id in `_storage`.

        Returns:
            The URL; None if there is no such file, or the database is in memory (which has
            no files to point at).

        Raises:
            ValidationError: `id` is not an id of `_storage`.

        Examples:
            >>> from livedb import Database
            >>> with Database(path="files.livedb") as db:
            ...     file_id = db.store_file(b"hello")
            ...     db.query(lambda ctx: ctx.storage.get_url(file_id)).startswith("file://")
            True
        """
        row = self._txn.system.get(_file_id(id, "get_url"))
        return None if row is None else self._files.url(row)

    def store(self, data: Any, content_type: str | None = None) -> Id:
        """Not in queries and mutations: raises `LiveDBError`. Store files from an action
        (`ctx.storage.store`) or outside functions (`db.store_file`)."""
        raise LiveDBError("storage.store is available in actions only (or db.store_file "
                          "outside functions)")

    def get(self, id: str) -> bytes | None:
        """Not in queries and mutations: raises `LiveDBError`. Read a file's bytes in an
        action (`ctx.storage.get`); here, use `get_metadata` and `get_url`."""
        raise LiveDBError("storage.get is available in actions only; queries and mutations "
                          "may read get_metadata and get_url")


class MutationStorage(QueryStorage):
    """`ctx.storage` in a mutation: `get_metadata` and `get_url` as in a query (seeing
    the mutation's own deletions), and `delete`, which commits with the mutation."""

    __slots__ = ()

    def delete(self, id: str) -> None:
        """Delete a stored file, with this mutation.

        Its row goes when the mutation commits (nothing happens if it raises); its bytes are
        removed once that commit is durable and no reader still needs them.

        Args:
            id: The file's id in `_storage`.

        Raises:
            DocumentNotFoundError: There is no such file (deleted already?).
            ValidationError: `id` is not an id of `_storage`.

        Examples:
            >>> from livedb import Database, mutation, v
            >>> @mutation(args={"avatar": v.id("_storage")})
            ... def remove_avatar(ctx, avatar):
            ...     ctx.storage.delete(avatar)
            >>> db = Database()
            >>> avatar = db.store_file(b"<png bytes>", content_type="image/png")
            >>> db.mutation(remove_avatar, {"avatar": avatar})
            >>> db.query(lambda ctx: ctx.storage.get_metadata(avatar)) is None
            True
            >>> db.close()
        """
        doc_id = _file_id(id, "delete")
        txn: Writer = self._txn  # type: ignore[assignment]
        row = txn.system_update(doc_id, None)
        if row is None:
            raise DocumentNotFoundError(f"storage.delete: no stored file with id {id!r}")
        self._files.deleting(doc_id, row)


class ActionStorage:
    """`ctx.storage` in an action: `store`, `get`, `get_metadata`, `get_url` and
    `delete`, each at once (an action is not a transaction).

    Examples:
        >>> from livedb import Database, action, v
        >>> @action(args={"text": v.string()})
        ... def save_text(ctx, text):
        ...     file_id = ctx.storage.store(text.encode(), content_type="text/plain")
        ...     return ctx.storage.get(file_id).decode()
        >>> db = Database()
        >>> db.action(save_text, {"text": "hello"})
        'hello'
        >>> db.close()
    """

    __slots__ = ("_files",)

    def __init__(self, files: FileStorage) -> None:
        self._files = files

    def store(self, data: Any, content_type: str | None = None) -> Id:
        """Store a file: bytes, or a binary file object read in chunks.

        The bytes are hashed and written as they arrive (a large file never sits in memory
        whole); the file's row in `_storage` commits once they are safely stored.

        Args:
            data: `bytes` (or another bytes-like object), or a binary file object (`open(...,
                "rb")`, `io.BytesIO`, an HTTP response).
            content_type: A MIME type to keep with the file (e.g. `"image/png"`), or None.

        Returns:
            The new file's id in `_storage`: keep it in a document (`v.id("_storage")`).

        Raises:
            ValidationError: A `content_type` that is not a str of valid Unicode.
            TypeError: `data` is neither bytes nor a binary file object.
            LiveDBError: The database is closed, or the bytes could not be written.

        Examples:
            >>> import io
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.action(lambda ctx: ctx.storage.store(io.BytesIO(b"a,b\\n1,2\\n"),
            ...                                                   content_type="text/csv"))
            >>> file_id.table
            '_storage'
            >>> db.close()
        """
        return self._files.store(data, content_type)

    def get(self, id: str) -> bytes | None:
        """The bytes of a stored file, or None if there is no such file.

        Args:
            id: The file's id in `_storage`.

        Returns:
            The whole file as `bytes`, checked against its recorded size and sha256.

        Raises:
            ValidationError: `id` is not an id of `_storage`.
            CorruptionError: The stored bytes are missing or damaged.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello")
            >>> db.action(lambda ctx: ctx.storage.get(file_id))
            b'hello'
            >>> db.close()
        """
        doc_id = _file_id(id, "get")
        files = self._files
        with files.pinned():
            row = files.row(doc_id)
            return None if row is None else files.read(row)

    def get_metadata(self, id: str) -> dict[str, Any] | None:
        """What is known of a stored file, or None if there is no such file.

        Args:
            id: The file's id in `_storage`.

        Returns:
            `{"_id", "_creation_time", "sha256" (hex str), "size" (bytes), "content_type"
            (str or None)}`, or None.

        Raises:
            ValidationError: `id` is not an id of `_storage`.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello", content_type="text/plain")
            >>> db.action(lambda ctx: ctx.storage.get_metadata(file_id)["content_type"])
            'text/plain'
            >>> db.close()
        """
        row = self._files.row(_file_id(id, "get_metadata"))
        return None if row is None else _metadata(row)

    def get_url(self, id: str) -> str | None:
        """A `file://` URL of a stored file's bytes, for a durable database.

        Read the file behind it, do not change or move it; it stays valid until the stored
        file is deleted.

        Args:
            id: The file's id in `_storage`.

        Returns:
            The URL; None if there is no such file, or the database is in memory.

        Raises:
            ValidationError: `id` is not an id of `_storage`.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello")
            >>> db.action(lambda ctx: ctx.storage.get_url(file_id)) is None
            True
            >>> db.close()
        """
        files = self._files
        row = files.row(_file_id(id, "get_url"))
        return None if row is None else files.url(row)

    def delete(self, id: str) -> None:
        """Delete a stored file at once.

        Its row is deleted in a commit of its own; its bytes are removed once that commit is
        durable and no reader still needs them.

        Args:
            id: The file's id in `_storage`.

        Raises:
            DocumentNotFoundError: There is no such file.
            ValidationError: `id` is not an id of `_storage`.
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello")
            >>> db.action(lambda ctx: ctx.storage.delete(file_id))
            >>> db.action(lambda ctx: ctx.storage.get(file_id)) is None
            True
            >>> db.close()
        """
        doc_id = _file_id(id, "delete")

        files = self._files

        def delete(txn: Writer) -> None:
            row = txn.system_update(doc_id, None)
            if row is None:
                raise DocumentNotFoundError(f"storage.delete: no stored file with id {id!r}")
            files.deleting(doc_id, row)

        files.kernel.write_system("storage.delete", delete)
