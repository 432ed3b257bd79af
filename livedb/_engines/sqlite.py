"""The SQLite engine: a durable database in one SQLite file, opened by one process.

The file is SQLite in WAL mode: SQLite is the log, and its recovery is the recovery. It
holds `documents(id, tbl, creation_time, crc, data)` (`data` is the msgpack blob the
store keeps, `crc` its CRC-32, since SQLite has no page checksums) and `meta(key, crc,
value)` (msgpack values, checksummed too); `PRAGMA application_id` marks it as livedb's
and `PRAGMA user_version` records the format version. Indexes are not stored: opening
loads every document and rebuilds the indexes of the schema given, so an index added to
the schema is backfilled and a removed one is dropped, with no migration.

`write` makes a batch of commits durable as one SQLite transaction with one sync (the
kernel batches the commits that wait for a sync together: group commit).

One `Database` at a time may have a file open. Within a process, open files are known by
their identity (device and inode), claimed before anything opens the file, so a second
opener is refused whatever name it uses (a symlink, a hard link, a renamed file) without
touching the file: closing any descriptor of a file drops every POSIX lock this process
holds on it, SQLite's included, so livedb never closes one while the file is open here.
Between processes, SQLite's exclusive lock on the file (held from open to close) refuses
every other opener, and `<path>.lock` names the process holding it for the error message.
Files livedb creates (the database, its WAL, the lock file) are readable by their owner
only, whatever the umask.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sqlite3
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from .._errors import CorruptionError, DatabaseLockedError, LiveDBError
from .._store import Write
from .._values import decode, encode
from . import Commit, StoredRow, WriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

log = logging.getLogger("livedb")

FORMAT_VERSION = 1
"""The file format this livedb writes and reads (`PRAGMA user_version`)."""

APPLICATION_ID = 0x6C766462
"""`PRAGMA application_id` of livedb files: "lvdb"."""

_CORRUPT_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_NOT_WRITTEN_CODES = ("SQLITE_FULL", "SQLITE_READONLY")
"""Errors after which SQLite guarantees the transaction was rolled back, not written."""
_RETRYABLE_CODES = ("SQLITE_FULL",)
"""Write errors that may go away by themselves (space is freed), so a retry may succeed."""
_BUSY_TIMEOUT = 1.0
"""Seconds an opener waits for SQLite's lock on the file before it is refused: long enough
for another program's passing look, short of the 5 s default (the holder keeps it until
it closes, so waiting longer seldom helps)."""
FILE_MODE = 0o600
"""The mode of every file livedb creates: they hold password and token hashes."""

_TABLES = {
    "documents": "CREATE TABLE documents (id TEXT PRIMARY KEY, tbl TEXT NOT NULL, "
                 "creation_time REAL NOT NULL, crc INTEGER NOT NULL, data BLOB NOT NULL) "
                 "WITHOUT ROWID",
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, crc INTEGER NOT NULL, "
            "value BLOB NOT NULL) WITHOUT ROWID",
}
SHARED_TABLES = {
    "log": "CREATE TABLE log (n INTEGER PRIMARY KEY, at REAL NOT NULL, data BLOB NOT NULL)",
    "head": "CREATE TABLE head (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL, "
            "last_time REAL NOT NULL)",
    "claims": "CREATE TABLE claims (key TEXT PRIMARY KEY, owner INTEGER NOT NULL, "
              "at REAL NOT NULL) WITHOUT ROWID",
}
"""The tables a file opened with `shared=True` also holds (see shared_sqlite.py): an
exclusive opener accepts and ignores them (no shared opener can be using them then)."""
_LAST_TIME = "last_creation_time"
_SET_META = "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)"
_LOAD_BATCH = 4096
"""Rows decoded at a time while opening."""
_ROWS_PER_STATEMENT = 1000
"""Rows per multi-row statement (5,000 parameters, below SQLite's limit of 32,766)."""

class _Claim:
    """A database file open in this process: who opened it, and descriptors to close later.

    `parked` holds descriptors of the file that livedb opened by accident (the name
    changed hands while another `Database` was opening it): they are closed only once
    the owner has closed the file, since closing them earlier would drop its locks.
    """

    __slots__ = ("path", "parked", "shared")

    def __init__(self, path: str, shared: bool = False) -> None:
        self.path = path
        self.parked: list[int] = []
        self.shared = 1 if shared else 0
        """How many shared openers (`shared=True`) hold it; 0 for an exclusive one."""


_claims: dict[tuple[int, int], _Claim] = {}
"""The database files open in this process, by (device, inode)."""
_claims_lock = threading.Lock()


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _claim(st: os.stat_result, path: str, shared: bool = False) -> tuple[int, int]:
    """Record that `path` (whose stat is `st`) is being opened here; refuse a second opener
    (unless it and every opener before it are shared ones)."""
    key = _identity(st)
    with _claims_lock:
        held = _claims.get(key)
        if held is None:
            _claims[key] = _Claim(path, shared)
            return key
        if shared and held.shared:
            held.shared += 1
            return key
    also = "" if held.path == path else f", opened as {held.path}"
    if held.shared:
        raise DatabaseLockedError(f"{path} is already open with shared=True in another "
                                  f"Database (this process{also}); open it with shared=True "
                                  "too, or close that one first")
    raise DatabaseLockedError(f"{path} is already open in another Database (this process"
                              f"{also}); close that one first")


def unclaim_shared(key: tuple[int, int]) -> None:
    """A shared opener let go of the file (it never holds a descriptor of it)."""
    with _claims_lock:
        claim = _claims.get(key)
        if claim is None:
            return
        claim.shared -= 1
        if claim.shared > 0:
            return
        del _claims[key]
        for parked in claim.parked:
            try:
                os.close(parked)
            except OSError:
                pass


def _unclaim(key: tuple[int, int], fd: int | None) -> None:
    """Forget an open file once its connection is closed; close its remaining descriptors."""
    with _claims_lock:
        claim = _claims.pop(key, None)
        for parked in ([] if claim is None else claim.parked) + ([] if fd is None else [fd]):
            try:
                os.close(parked)
            except OSError:
                pass


def _discard(fd: int) -> None:
    """Close `fd`, unless its file is open in another `Database` here: then park it there."""
    with _claims_lock:
        try:
            claim = _claims.get(_identity(os.fstat(fd)))
        except OSError:
            claim = None
        if claim is not None:
            claim.parked.append(fd)
            return
        os.close(fd)


def _stat(path: str) -> os.stat_result | None:
    """`os.stat(path)` (through symlinks), or None when nothing is there."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LiveDBError(f"cannot open {path}: {e.strerror}") from None


def _create_private(path: str) -> int:
    """Create `path` exclusively, mode 0600 whatever the umask; its descriptor (read-write)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    if hasattr(os, "fchmod"):
        try:
            os.fchmod(fd, FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
    return fd


class FileLock:
    """An exclusive OS lock on `<path>.lock`, held while a `Database` has `path` open.

    The OS drops it when the process dies, so a crash never leaves a stale lock. The
    lock file holds the owner's process id, for the error message of the next opener.
    Callers resolve a symlinked path, so that every name of a file shares one lock.
    """

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        self._fd: int | None = None

    def acquire(self, db_path: str, shared: bool = False) -> None:
        """Take the lock (creating the lock file, mode 0600); raise if another holds it.

        With `shared`, the lock is a shared one: every shared opener holds it at once, and
        they exclude an exclusive opener (and it them). Raises `DatabaseLockedError` when
        another process (or another `Database` of this one) holds it in the other mode,
        and `LiveDBError` when the lock file cannot be opened.
        """
        try:
            fd = self._open()
        except PermissionError:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as e:
                raise LiveDBError(f"cannot open {db_path}: cannot create its lock file "
                                  f"{self.path} ({e.strerror})") from None
        except OSError as e:
            raise LiveDBError(f"cannot open {db_path}: cannot create its lock file "
                              f"{self.path} ({e.strerror})") from None
        if not _try_lock(fd, shared):
            holder = _read_pid(fd)
            by_shared = not shared and _try_lock(fd, True)
            if by_shared:
                _unlock(fd)
            os.close(fd)
            who = ("this process" if holder == os.getpid()
                   else f"process {holder}" if holder else "another process")
            if by_shared:
                raise DatabaseLockedError(f"{db_path} is open with shared=True in other "
                                          "processes; open it with shared=True too, or "
                                          "close them first")
            if shared:
                raise DatabaseLockedError(f"{db_path} is already open in another Database "
                                          f"without shared=True ({who}); close that one "
                                          "first")
            raise DatabaseLockedError(f"{db_path} is already open in another Database "
                                      f"({who}); close that one first")
        if shared:
            self._fd = fd
            return
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        self._fd = fd

    def _open(self) -> int:
        """The lock file's descriptor; a new lock file is created private (mode 0600)."""
        while True:
            try:
                return _create_private(self.path)
            except FileExistsError:
                pass
            try:
                return os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                continue

    def release(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            _unlock(fd)
            os.close(fd)


def _try_lock(fd: int, shared: bool = False) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # pyright: ignore[reportPossiblyUnboundVariable, reportAttributeAccessIssue]
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # pyright: ignore[reportPossiblyUnboundVariable, reportAttributeAccessIssue]


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _fsync_dir(path: str) -> None:
    """Make a new directory entry in `path`'s directory durable (POSIX only)."""
    if os.name != "posix":  # pragma: no cover - Windows
        return
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error_name(error: BaseException) -> str:
    return getattr(error, "sqlite_errorname", "") or ""


def _open_error(path: str, error: sqlite3.Error | UnicodeDecodeError) -> LiveDBError:
    """The livedb error for an error met while opening or reading the file.

    Text that is not UTF-8 can only come from damage: livedb writes only valid text.
    """
    text = str(error)
    if _error_name(error).startswith("SQLITE_BUSY"):
        return DatabaseLockedError(f"{path} is already open in another process or program "
                                   f"({error}); close that one first")
    if (isinstance(error, UnicodeDecodeError) or _error_name(error).startswith(_CORRUPT_CODES)
            or "malformed" in text or text.startswith("Could not decode to UTF-8")):
        return CorruptionError(f"{path} is damaged and cannot be trusted ({error}); restore "
                               "it from a backup or an export")
    return LiveDBError(f"cannot open {path}: {error}")




class SqliteEngine:
    """One SQLite file, held exclusively by this `Database` until `close`."""

    durable = True
    shared = False

    def __init__(self, path: str, durability: str) -> None:
        self.path = path
        self.location = path
        self.durability = durability
        self._broken: str | None = None
        self._stored_last_time = 0.0
        self._closed = False
        self._key: tuple[int, int] | None = None
        self._fd: int | None = None
        """A descriptor of the file, held open until the connection is closed (see `close`)."""
        self._file_lock = FileLock(os.path.realpath(path) if os.path.islink(path) else path)
        try:
            self._conn = self._open()
        except BaseException:
            self._file_lock.release()
            if self._key is not None:
                _unclaim(self._key, self._fd)
            raise

    # -- opening ---------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Claim the file, take the lock file, create the file if need be, and connect.

        The claim comes first, so that a second opener in this process is refused before
        it opens anything. The descriptor opened to check that the file is writable stays
        open until `close`: closing it would drop SQLite's locks on the file.
        """
        path = self.path
        found = _stat(path)
        if found is not None:
            self._claim_and_open(found)
        self._file_lock.acquire(path)
        if found is None:
            found = _stat(path)
            if found is None:
                _create(path)
                found = _stat(path)
            if found is None:
                raise LiveDBError(f"cannot open {path}: it was deleted while being opened")
            self._claim_and_open(found)
        return self._connect()

    def _claim_and_open(self, found: os.stat_result) -> None:
        """Claim the file `found` at the path, then open it read-write and check it."""
        path = self.path
        if stat.S_ISDIR(found.st_mode):
            raise LiveDBError(f"cannot open {path}: it is a directory")
        self._key = _claim(found, path)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as e:
            raise LiveDBError(f"cannot open {path} for writing ({e.strerror}): a durable "
                              "database needs a writable file") from None
        opened = os.fstat(fd)
        if _identity(opened) != self._key:
            _discard(fd)
            raise LiveDBError(f"cannot open {path}: it was replaced while being opened; "
                              "try again")
        self._fd = fd
        if opened.st_size == 0:
            raise CorruptionError(f"{path} is empty (0 bytes) but livedb never leaves an "
                                  "empty file: it was truncated; restore it from a backup "
                                  "or delete it to start a new database")

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        conn = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=_BUSY_TIMEOUT)
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise CorruptionError(f"{path} is an SQLite database but not a livedb file "
                                      f"(application_id {app_id:#x})")
            if version != FORMAT_VERSION:
                newer = " (written by a newer livedb)" if version > FORMAT_VERSION else ""
                raise LiveDBError(f"{path} has file format version {version}{newer}; this "
                                  f"livedb reads version {FORMAT_VERSION} only")
            found = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            for name, sql in SHARED_TABLES.items():
                if found.get(name) == sql:
                    del found[name]
            if found != _TABLES:
                raise CorruptionError(f"{path} is damaged: its tables are not livedb's "
                                      f"({', '.join(sorted(found)) or 'none'})")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise LiveDBError(f"cannot open {path}: SQLite refused WAL mode ({mode})")
            synchronous = "FULL" if self.durability == "full" else "NORMAL"
            conn.execute(f"PRAGMA synchronous={synchronous}")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise CorruptionError(f"{path} is damaged and cannot be trusted (SQLite "
                                      f"reports: {'; '.join(problems)}); restore it from a "
                                      "backup or an export")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            now = _stat(path)
            if now is None or _identity(now) != self._key:
                raise LiveDBError(f"cannot open {path}: it was replaced while being opened; "
                                  "try again")
        except BaseException as e:
            if conn is not None:
                conn.close()
            if isinstance(e, (sqlite3.Error, UnicodeDecodeError)):
                raise _open_error(path, e) from None
            raise
        return conn

    def load(self) -> Iterator[list[StoredRow]]:
        """Every document, in batches of checked rows (CRC-32 and row shape).

        Raises:
            CorruptionError: a row or the meta record is damaged.
        """
        path = self.path
        crc32 = zlib.crc32
        try:
            meta = self._read_meta()
            last_time = meta.get(_LAST_TIME, 0.0)
            if last_time.__class__ is not float or not math.isfinite(last_time):
                raise CorruptionError(f"{path} is damaged: its newest creation time reads "
                                      f"{last_time!r}")
            self._stored_last_time = last_time
            cursor = self._conn.execute(
                "SELECT id, tbl, creation_time, crc, data FROM documents")
            while True:
                rows = cursor.fetchmany(_LOAD_BATCH)
                if not rows:
                    return
                batch: list[StoredRow] = []
                for doc_id, table, creation_time, crc, blob in rows:
                    if blob.__class__ is not bytes or crc32(blob) != crc:
                        raise CorruptionError(f"{path} is damaged: document {doc_id!r} fails "
                                              "its checksum; restore the file from a backup "
                                              "or an export")
                    if (table.__class__ is not str or doc_id.__class__ is not str
                            or creation_time.__class__ is not float
                            or not doc_id.startswith(table + ":")):
                        raise CorruptionError(f"{path} is damaged: the row of document "
                                              f"{doc_id!r} does not match its contents")
                    batch.append((doc_id, table, creation_time, blob))
                yield batch
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise _open_error(path, e) from None

    def last_time(self) -> float:
        return self._stored_last_time

    def _read_meta(self) -> dict[str, Any]:
        meta = {}
        for key, crc, value in self._conn.execute("SELECT key, crc, value FROM meta"):
            if value.__class__ is not bytes or zlib.crc32(value) != crc:
                raise CorruptionError(f"{self.path} is damaged: its {key!r} record fails "
                                      "its checksum")
            try:
                meta[key] = decode(value)
            except msgspec.DecodeError:
                raise CorruptionError(f"{self.path} is damaged: its {key!r} record does not "
                                      "decode") from None
        return meta

    # -- committing ------------------------------------------------------------------

    def write(self, batch: list[Commit]) -> None:
        """Write a batch of commits as one SQLite transaction (one sync for them all).

        Rows go in as multi-row statements, and a batch that fits one statement runs it
        alone (a statement is atomic): few calls into SQLite, each of which must win the
        GIL back from the threads running mutations meanwhile. The newest creation time
        handed out is recorded only along with deletes: until a document is deleted, a
        stored row carries it.

        Raises:
            WriteError: nothing of the batch was written (`retryable` if the disk was
                full); after an error that leaves the file's state uncertain, every later
                write is refused until the database is reopened.
        """
        try:
            self._write(batch)
        except BaseException as e:
            raise self._failed(e) from e

    def _write(self, batch: list[Commit]) -> None:
        if self._broken is not None:
            raise LiveDBError(self._broken)
        if self._closed:
            raise LiveDBError(f"{self.path} is closed")
        if len(batch) == 1:
            final: Any = batch[0].writes
        else:
            latest: dict[str, Write] = {}
            for commit in batch:
                for entry in commit.writes:
                    latest[entry[0]] = entry
            final = latest.values()
        upserts: list[Any] = []
        deletes: list[Any] = []
        crc32 = zlib.crc32
        for doc_id, blob, creation_time in final:
            if blob is None:
                deletes.append(doc_id)
            else:
                upserts += (doc_id, doc_id[:doc_id.index(":")], creation_time, crc32(blob),
                            blob)
        statements = _chunked(_upsert_sql, upserts, 5) + _chunked(_delete_sql, deletes, 1)
        last_time = batch[-1].last_time
        record_time = bool(deletes) and last_time > self._stored_last_time
        if record_time:
            value = encode(last_time)
            statements.append((_SET_META, [_LAST_TIME, zlib.crc32(value), value]))
        conn = self._conn
        if len(statements) == 1:
            conn.execute(*statements[0])
        else:
            conn.execute("BEGIN")
            for statement in statements:
                conn.execute(*statement)
            conn.execute("COMMIT")
        if record_time:
            self._stored_last_time = last_time

    def _failed(self, error: BaseException) -> WriteError:
        """The `WriteError` for a failed write; marks the file broken if its state is now
        uncertain (an I/O error while syncing)."""
        conn = self._conn
        certain = isinstance(error, LiveDBError) or _error_name(error).startswith(
            _NOT_WRITTEN_CODES)
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
                certain = True
        except sqlite3.Error:
            certain = False
        if not certain and self._broken is None:
            self._broken = (f"a write to {self.path} failed ({error}) and the file's state is "
                            "uncertain; close the database and open it again")
        reason = str(error) if isinstance(error, LiveDBError) else (
            f"could not write to {self.path}: {error}")
        retryable = (certain and self._broken is None and not self._closed
                     and _error_name(error).startswith(_RETRYABLE_CODES))
        return WriteError(f"{reason}; the mutation was not committed (commits acknowledged "
                          "before it are safe on disk)", retryable)

    @property
    def broken(self) -> bool:
        """Whether a write left the file's state uncertain (then writes are refused)."""
        return self._broken is not None

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the file and release the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._conn.close()
        except sqlite3.Error as e:
            raise LiveDBError(f"could not close {self.path}: {e}") from None
        finally:
            if self._key is not None:
                _unclaim(self._key, self._fd)
            self._file_lock.release()


@functools.cache
def _upsert_sql(rows: int) -> str:
    return "INSERT OR REPLACE INTO documents VALUES " + ",".join(["(?,?,?,?,?)"] * rows)


@functools.cache
def _delete_sql(rows: int) -> str:
    return f"DELETE FROM documents WHERE id IN ({','.join(['?'] * rows)})"


def _chunked(sql: Callable[[int], str], values: list[Any],
             width: int) -> list[tuple[str, list[Any]]]:
    """Statements for `values` (`width` per row), at most `_ROWS_PER_STATEMENT` rows each."""
    step = _ROWS_PER_STATEMENT * width
    return [(sql(len(values[i:i + step]) // width), values[i:i + step])
            for i in range(0, len(values), step)]


def _create(path: str) -> None:
    """Create an empty livedb file at `path` atomically (a crash leaves none or a whole one).

    The file is private (mode 0600, whatever the umask); SQLite gives its WAL the same
    mode. A WAL found without its database is refused rather than replayed into the new
    file: it belongs to a database that was moved or deleted, and holds its last commits.
    """
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise LiveDBError(f"cannot create {path}: {wal} is there without its database (was "
                          f"{path} moved or deleted, maybe while open?); it holds that "
                          f"database's last commits: put the database file back at {path}, "
                          f"or delete {wal} to start a new database")
    staging = path + ".new"
    for leftover in (staging, staging + "-journal", staging + "-wal", staging + "-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    try:
        os.close(_create_private(staging))
        conn = sqlite3.connect(staging, isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            conn.execute("BEGIN")
            for statement in _TABLES.values():
                conn.execute(statement)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(staging, path)
        _fsync_dir(path)
    except (OSError, sqlite3.Error) as e:
        raise LiveDBError(f"cannot create {path}: {e}") from None
