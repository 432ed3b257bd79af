"""The shared SQLite engine: one SQLite file used by several processes of one machine.

The file is the exclusive engine's (sqlite.py: `documents`, `meta`, WAL mode) plus the
tables of `SHARED_TABLES`: `log(n, at, data)`, the commit log (`data` is an encoded
`LogEntry`, `n` strictly increasing with no gaps), `head(n, last_time)`, its newest
commit, and `claims(key, owner, at)`, the scheduled calls being run and by whom.

A commit is one immediate transaction (SQLite's single write lock, held across the
processes): it reads the head, hands the entries after the committer's base to its
check, appends the entry, applies its writes to `documents` and moves the head, so a
new process loads `documents` at a head and follows the log from there. A process
killed mid-commit leaves nothing of it (SQLite's recovery); the write lock dies with it.

Other processes' commits are noticed by polling `PRAGMA data_version` on a connection
of its own every `POLL` seconds: a cheap read of the WAL index in shared memory that
changes whenever another connection commits. The poller then wakes the kernel, which
reads the new entries.

Shared openers take a shared lock on `<path>.lock`, exclusive ones an exclusive lock, so
they exclude each other. Each opener also holds a POSIX lock on one byte of
`<path>.owners`, at an offset that is its owner number: the OS drops it when the process
dies, which is how another process tells that a claim's owner is gone. The descriptor
of the owners file is opened once per process and never closed (closing any descriptor
of a file drops all of the process's POSIX locks on it).
"""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from .._errors import CorruptionError, LiveDBError
from .._store import Write
from .._values import decode
from . import (
    CommitCheck,
    Conflict,
    LogEntry,
    LogGap,
    StoredRow,
    WriteError,
    decode_entry,
    encode_entry,
)
from .sqlite import (
    _LOAD_BATCH,
    _TABLES,
    APPLICATION_ID,
    FORMAT_VERSION,
    SHARED_TABLES,
    FileLock,
    _claim,
    _create_private,
    _error_name,
    _fsync_dir,
    _identity,
    _open_error,
    _stat,
    unclaim_shared,
)

fcntl: Any
try:
    import fcntl as _fcntl

    fcntl = _fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

POLL = 0.001
"""Seconds between two looks at `PRAGMA data_version` (about 2 us each)."""
WAKE_ANYWAY = 1.0
"""The poller wakes the kernel at least this often, signal or not."""
BUSY_TIMEOUT = 30.0
"""Seconds a commit waits for SQLite's write lock held by another process."""
LOG_KEEP = 10_000
"""Log entries always kept (older ones go once they are `LOG_AGE` seconds old too)."""
LOG_AGE = 600.0
PRUNE_EVERY = 1000
"""Commits between two prunings of the log by one process."""

_owners_lock = threading.Lock()
_owner_fds: dict[str, int] = {}
"""Per owners file (by real path), this process's descriptor of it (never closed)."""
_my_owners: set[tuple[str, int]] = set()
"""(owners file, owner number) of the shared openers alive in this process."""


def _owners_fd(path: str) -> int:
    with _owners_lock:
        fd = _owner_fds.get(path)
        if fd is None:
            try:
                fd = _create_private(path)
            except FileExistsError:
                fd = os.open(path, os.O_RDWR)
            _owner_fds[path] = fd
        return fd


def take_owner_number(path: str) -> int:
    """A number no live opener of the database holds, locked for this opener."""
    fd = _owners_fd(path)
    while True:
        number = random.randrange(1, 1 << 40)
        with _owners_lock:
            if (path, number) in _my_owners:
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, number)
            except OSError:
                continue
            _my_owners.add((path, number))
            return number


def drop_owner_number(path: str, number: int) -> None:
    fd = _owners_fd(path)
    with _owners_lock:
        if (path, number) in _my_owners:
            _my_owners.discard((path, number))
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, number)


def owner_alive(path: str, number: int) -> bool:
    """Whether the opener holding `number` is still open (in this or another process)."""
    fd = _owners_fd(path)
    with _owners_lock:
        if (path, number) in _my_owners:
            return True
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, number)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, number)
        return False


def _create_shared(path: str) -> None:
    """Create an empty livedb file at `path`, unless another process just did."""
    staging = f"{path}.new-{os.getpid()}-{random.getrandbits(32):08x}"
    try:
        os.close(_create_private(staging))
        conn = sqlite3.connect(staging, isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            conn.execute("BEGIN")
            for statement in (*_TABLES.values(), *SHARED_TABLES.values()):
                conn.execute(statement)
            conn.execute("INSERT INTO head VALUES (1, 0, 0.0)")
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(staging, path)
            _fsync_dir(path)
        except FileExistsError:
            pass
    except (OSError, sqlite3.Error) as e:
        raise LiveDBError(f"cannot create {path}: {e}") from None
    finally:
        for leftover in (staging, staging + "-wal", staging + "-shm", staging + "-journal"):
            try:
                os.remove(leftover)
            except OSError:
                pass


class SharedSqliteEngine:
    """One SQLite file shared by the processes of one machine (see the module docstring)."""

    durable = True
    shared = True
    files = None

    def __init__(self, path: str, durability: str) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise LiveDBError("shared=True needs POSIX file locks (Linux, macOS)")
        self.path = path
        self.location = path
        self.durability = durability
        self._lock = threading.RLock()
        """Guards the main connection (commits, reads of the log, claims)."""
        self._closed = False
        self._head = 0
        self._last_time = 0.0
        self._commits = 0
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._key: tuple[int, int] | None = None
        real = os.path.realpath(path)
        self._file_lock = FileLock(real)
        self._owners_path = real + ".owners"
        self.owner = 0
        self._file_lock.acquire(path, shared=True)
        try:
            self._conn = self._open()
            self.owner = take_owner_number(self._owners_path)
        except BaseException:
            self._release()
            raise

    # -- opening ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self.path
        found = _stat(path)
        if found is None:
            _create_shared(path)
            found = _stat(path)
            if found is None:
                raise LiveDBError(f"cannot open {path}: it was deleted while being opened")
        if stat.S_ISDIR(found.st_mode):
            raise LiveDBError(f"cannot open {path}: it is a directory")
        if not os.access(path, os.R_OK | os.W_OK):
            raise LiveDBError(f"cannot open {path} for writing: a durable database needs "
                              "a writable file")
        self._key = _claim(found, path, shared=True)
        if found.st_size == 0:
            raise CorruptionError(f"{path} is empty (0 bytes) but livedb never leaves an "
                                  "empty file: it was truncated; restore it from a backup "
                                  "or delete it to start a new database")
        conn = self._connect()
        now = _stat(path)
        if now is None or _identity(now) != self._key:
            conn.close()
            raise LiveDBError(f"cannot open {path}: it was replaced while being opened; "
                              "try again")
        return conn

    def _connect(self, check: bool = True) -> sqlite3.Connection:
        path = self.path
        conn = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT)
            synchronous = "FULL" if self.durability == "full" else "NORMAL"
            conn.execute(f"PRAGMA synchronous={synchronous}")
            if not check:
                return conn
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise CorruptionError(f"{path} is an SQLite database but not a livedb file "
                                      f"(application_id {app_id:#x})")
            if version != FORMAT_VERSION:
                newer = " (written by a newer livedb)" if version > FORMAT_VERSION else ""
                raise LiveDBError(f"{path} has file format version {version}{newer}; this "
                                  f"livedb reads version {FORMAT_VERSION} only")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise LiveDBError(f"cannot open {path}: SQLite refused WAL mode ({mode})")
            found = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            missing = [name for name in SHARED_TABLES if name not in found]
            for name, sql in (*_TABLES.items(), *SHARED_TABLES.items()):
                if name in found and found.pop(name) != sql:
                    raise CorruptionError(f"{path} is damaged: its table {name!r} is not "
                                          "livedb's")
            if found or len(missing) not in (0, len(SHARED_TABLES)):
                raise CorruptionError(f"{path} is damaged: its tables are not livedb's")
            if missing:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    have = {r[0] for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'")}
                    if "head" not in have:
                        for sql in SHARED_TABLES.values():
                            conn.execute(sql)
                        conn.execute("INSERT INTO head VALUES (1, 0, 0.0)")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise CorruptionError(f"{path} is damaged and cannot be trusted (SQLite "
                                      f"reports: {'; '.join(problems)}); restore it from a "
                                      "backup or an export")
        except BaseException as e:
            if conn is not None:
                conn.close()
            if isinstance(e, (sqlite3.Error, UnicodeDecodeError)):
                raise _open_error(path, e) from None
            raise
        return conn

    def load(self) -> Iterator[list[StoredRow]]:
        """Every document at one point (one read transaction); `head()` is that point."""
        path = self.path
        crc32 = zlib.crc32
        conn = self._connect(check=False)
        try:
            conn.execute("BEGIN")
            meta_time = 0.0
            for key, crc, value in conn.execute("SELECT key, crc, value FROM meta"):
                if key == "last_creation_time" and crc32(value) == crc:
                    meta_time = decode(value)
            head, last_time = conn.execute("SELECT n, last_time FROM head").fetchone()
            self._head = head
            self._last_time = max(float(last_time), float(meta_time))
            cursor = conn.execute("SELECT id, tbl, creation_time, crc, data FROM documents")
            while True:
                rows = cursor.fetchmany(_LOAD_BATCH)
                if not rows:
                    break
                batch: list[StoredRow] = []
                for doc_id, table, creation_time, crc, blob in rows:
                    if blob.__class__ is not bytes or crc32(blob) != crc:
                        raise CorruptionError(f"{path} is damaged: document {doc_id!r} fails "
                                              "its checksum; restore the file from a backup "
                                              "or an export")
                    batch.append((doc_id, table, creation_time, blob))
                yield batch
            conn.execute("COMMIT")
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise _open_error(path, e) from None
        finally:
            conn.close()

    def head(self) -> int:
        return self._head

    def last_time(self) -> float:
        return self._last_time

    # -- the log -----------------------------------------------------------------------

    def since(self, n: int) -> list[LogEntry]:
        """The log entries after commit `n`, in order."""
        with self._lock:
            self._check_open()
            try:
                return self._since(n)
            except sqlite3.Error as e:
                raise LiveDBError(f"cannot read the commit log of {self.path}: {e}") from None

    def _since(self, n: int) -> list[LogEntry]:
        """The entries after `n` and the head, read in one statement (one snapshot)."""
        rows = self._conn.execute("SELECT h.n, l.n, l.data FROM head h LEFT JOIN log l "
                                  "ON l.n > ? ORDER BY l.n", (n,)).fetchall()
        head = rows[0][0] if rows else n
        entries = [decode_entry(m, data, self.path) for _h, m, data in rows if m is not None]
        if head > n and (not entries or entries[0].n != n + 1):
            raise LogGap(f"the commit log of {self.path} no longer holds commit {n + 1}")
        return entries

    def commit(self, base: int, writes: list[Write], last_time: float,
               check: CommitCheck) -> tuple[int, list[LogEntry]]:
        """Append one commit on top of `base` or of the entries since, if `check` allows."""
        with self._lock:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise WriteError(f"could not write to {self.path}: {e}; the mutation was not "
                                 "committed", retryable=_error_name(e).startswith(
                                     "SQLITE_BUSY")) from None
            try:
                head, stored_time = conn.execute("SELECT n, last_time FROM head").fetchone()
                between: list[LogEntry] = []
                if head != base:
                    between = self._since(base)
                    if not check(between):
                        conn.execute("ROLLBACK")
                        raise Conflict(between)
                n = head + 1
                self._write(conn, n, writes, last_time, stored_time)
                conn.execute("COMMIT")
            except (Conflict, LogGap):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            except BaseException as e:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(e, (LiveDBError, sqlite3.Error)):
                    raise WriteError(f"could not write to {self.path}: {e}; the mutation was "
                                     "not committed (commits acknowledged before it are safe "
                                     "on disk)", retryable=_error_name(e).startswith(
                                         ("SQLITE_FULL", "SQLITE_BUSY"))) from None
                raise
            self._commits += 1
            if self._commits % PRUNE_EVERY == 0:
                self._prune(n)
            return n, between

    def _write(self, conn: sqlite3.Connection, n: int, writes: list[Write], last_time: float,
               stored_time: float) -> None:
        crc32 = zlib.crc32
        conn.execute("INSERT INTO log VALUES (?, ?, ?)",
                     (n, time.time(), encode_entry(writes, last_time)))
        upserts = []
        deletes = []
        for doc_id, blob, creation_time in writes:
            if blob is None:
                deletes.append((doc_id,))
            else:
                upserts.append((doc_id, doc_id[:doc_id.index(":")], creation_time,
                                crc32(blob), blob))
        if upserts:
            conn.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                             upserts)
        if deletes:
            conn.executemany("DELETE FROM documents WHERE id = ?", deletes)
        conn.execute("UPDATE head SET n = ?, last_time = ?", (n, max(last_time, stored_time)))

    def _prune(self, head: int) -> None:
        """Drop log entries both `LOG_KEEP` commits and `LOG_AGE` seconds old."""
        try:
            self._conn.execute("DELETE FROM log WHERE n <= ? AND at < ?",
                               (head - LOG_KEEP, time.time() - LOG_AGE))
        except sqlite3.Error:
            pass

    # -- the change signal -------------------------------------------------------------

    def watch(self, wake: Callable[[], None]) -> None:
        """Poll `PRAGMA data_version` in a thread and call `wake()` when it changes."""
        conn = self._connect(check=False)
        thread = threading.Thread(target=self._poll, args=(conn, wake),
                                  name="livedb-shared-poll", daemon=True)
        self._poller = thread
        thread.start()

    def _poll(self, conn: sqlite3.Connection, wake: Callable[[], None]) -> None:
        stop = self._stop
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            last = time.monotonic()
            while not stop.wait(POLL):
                try:
                    now_version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    now_version = None
                now = time.monotonic()
                if now_version != version or now - last >= WAKE_ANYWAY:
                    version = now_version
                    last = now
                    wake()
        finally:
            conn.close()

    # -- claims of scheduled calls -----------------------------------------------------

    def claim(self, key: str) -> bool:
        """Take `key` for this opener unless a live opener holds it."""
        with self._lock:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT owner FROM claims WHERE key = ?",
                                       (key,)).fetchone()
                    if row is not None and row[0] != self.owner and owner_alive(
                            self._owners_path, row[0]):
                        conn.execute("ROLLBACK")
                        return False
                    conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                                 (key, self.owner, time.time()))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise LiveDBError(f"could not claim a scheduled call in {self.path}: "
                                  f"{e}") from None
            finally:
                self._synchronous()
            return True

    def _synchronous(self) -> None:
        """Back to the durability of commits (claims need not be synced: a claim lost to a
        power cut is a call some process runs again, once)."""
        try:
            self._conn.execute("PRAGMA synchronous=" + (
                "FULL" if self.durability == "full" else "NORMAL"))
        except sqlite3.Error:
            pass

    def unclaim(self, key: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?",
                                   (key, self.owner))
            except sqlite3.Error as e:
                raise LiveDBError(f"could not release a scheduled call in {self.path}: "
                                  f"{e}") from None

    def write(self, batch: list[Any]) -> None:
        """Not used: the kernel commits to a shared engine with `commit`."""
        raise LiveDBError("a shared engine commits with commit(), not write()")

    # -- closing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LiveDBError(f"{self.path} is closed")

    def close(self) -> None:
        """Stop polling, close the connection, release the locks (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join()
        try:
            self._conn.close()
        except sqlite3.Error as e:
            raise LiveDBError(f"could not close {self.path}: {e}") from None
        finally:
            self._release()

    def _release(self) -> None:
        if self.owner:
            drop_owner_number(self._owners_path, self.owner)
            self.owner = 0
        if self._key is not None:
            unclaim_shared(self._key)
            self._key = None
        self._file_lock.release()
