"""Storage engines: where commits become durable, behind one interface.

A `StorageEngine` owns the persistent side of a database: locking it against other
openers, loading what it holds, and making batches of commits durable. It never sees
the in-memory store: the kernel (see _kernel.py) feeds it `Commit` records and builds
the store from the rows `load` yields.

Engines: `MemoryEngine` (nothing is kept), `SqliteEngine` (one SQLite file, one process
at a time), and the shared engines `SharedSqliteEngine` (one SQLite file, the processes
of one machine) and `PostgresEngine` (a PostgreSQL database, processes on several
machines). A shared engine is a `SharedEngine`: the engine's commit log is the truth,
and every process applies it, in order, to its in-memory replica (_replica.py).

- `shared` is True; other processes commit to the same storage.
- `load()` yields every stored document at one consistent point, and `head()` is that
  point's commit number (read it after `load`).
- `since(n)` returns the log entries after commit `n`, in order; `LogGap` if the log no
  longer holds all of them (entries are pruned once they are old), after which the
  caller reloads (`load` again) instead.
- `commit(base, writes, last_time, check)` makes one commit durable in one engine
  transaction holding the log's write lock. When other processes committed since
  `base`, the entries in between are handed to `check` first: if it returns True
  (nothing the mutation read was written) the commit goes on top of them, else
  `Conflict` is raised with them and nothing is written. It returns the commit's number
  and the entries it went on top of (the caller applies those first). This is what the
  first proposal ("raise on any commit in between") taught: a rebase inside the lock
  saves a round trip and a re-execution per commit that merely raced with an unrelated
  one, which under several busy processes is most of them.
- `watch(wake)` calls `wake()` (from a thread of its own) whenever other processes may
  have committed: `PRAGMA data_version` polling on SQLite, `LISTEN/NOTIFY` on
  PostgreSQL, and a periodic wake in any case (a missed signal delays, never loses).
- `claim(key)` / `unclaim(key)`: a scheduled call is run by whoever claims it, in an
  engine transaction (SQLite: an immediate transaction; PostgreSQL: row locks, `FOR
  UPDATE SKIP LOCKED`). A claim whose owner is gone (its process died) can be taken.
- `files` is None or a `FileStore` holding stored files' bytes in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import msgspec

from .._errors import CorruptionError, LiveDBError
from .._store import Changes, Write

StoredRow = tuple[str, str, float, bytes]
"""A document as an engine stores it: (id, table, creation time, msgpack blob)."""


class WriteError(LiveDBError):
    """A commit could not be made durable; nothing of it was kept.

    `retryable` is true when the failure may go away by itself (the disk was full) and
    the database is still usable, so running the same mutation again later may succeed.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(eq=False, slots=True)
class Commit:
    """One commit on its way from the writer to the engine and then to readers."""

    ts: int
    writes: list[Write]
    changes: Changes
    last_time: float
    """The newest creation time handed out when this commit was made."""
    system: bool = False
    """Whether it wrote a system table (only such commits reach listeners that watch
    system tables alone)."""
    durable: bool = False
    visible: bool = False
    error: BaseException | None = None


class StorageEngine(Protocol):
    """Where a database's commits become durable (see the module docstring)."""

    location: str
    """How to name the storage in messages (a path, a URL, or "memory")."""
    durable: bool
    """Whether commits survive the process (False: `write` is never called)."""
    shared: bool
    """Whether other processes may commit to the same storage."""

    def load(self) -> Iterator[list[StoredRow]]:
        """Every stored document, in batches, at one consistent point."""
        ...

    def last_time(self) -> float:
        """The newest creation time ever handed out, as stored (after `load`)."""
        ...

    def write(self, batch: list[Commit]) -> None:
        """Make consecutive commits durable as one unit, or raise `WriteError` (nothing of
        the batch kept) or another exception (the storage's state is then uncertain)."""
        ...

    def close(self) -> None:
        """Release the storage (idempotent); nothing is written after this."""
        ...


@dataclass(slots=True)
class LogEntry:
    """One commit of a shared engine's log, as the engine hands it back."""

    n: int
    """The commit number (strictly increasing, no gaps)."""
    writes: list[Write]
    last_time: float
    """The newest creation time handed out by the process that made it."""


class Conflict(Exception):
    """A shared commit was refused: entries it did not see wrote into its read set."""

    def __init__(self, entries: list[LogEntry]) -> None:
        super().__init__(f"{len(entries)} commit(s) wrote into what the mutation read")
        self.entries = entries


class LogGap(LiveDBError):
    """The log no longer holds every entry after the asked commit (they were pruned)."""


class FileStore(Protocol):
    """Stored files' bytes kept by an engine (PostgreSQL), by name (see _storage.py)."""

    def put(self, name: str, chunks: Iterator[bytes]) -> int:
        """Store bytes under `name` (replacing none: a name always means the same bytes)."""
        ...

    def get(self, name: str) -> bytes | None:
        ...

    def remove(self, names: list[str]) -> None:
        ...

    def names(self) -> list[str]:
        ...


class CommitCheck(Protocol):
    """What a shared commit is judged by: called with the entries it would go on top of,
    True when none wrote into what the mutation read (converting them on the way)."""

    ids: set[str]
    """The ids the mutation read or wrote."""
    times: set[float]
    """The creation times it handed out."""
    only_ids: bool
    """Whether `ids` and `times` are all it read (no index range): then the engine may
    judge the entries itself (PostgreSQL does, on the server)."""

    def __call__(self, entries: list[LogEntry]) -> bool:
        ...


class SharedEngine(StorageEngine, Protocol):
    """A storage engine that several processes commit to (see the module docstring)."""

    files: FileStore | None

    def head(self) -> int:
        ...

    def since(self, n: int) -> list[LogEntry]:
        ...

    def commit(self, base: int, writes: list[Write], last_time: float,
               check: CommitCheck) -> tuple[int, list[LogEntry]]:
        ...

    def watch(self, wake: Callable[[], None]) -> None:
        ...

    def claim(self, key: str) -> bool:
        ...

    def unclaim(self, key: str) -> None:
        ...


_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder()


def encode_entry(writes: list[Write], last_time: float) -> bytes:
    """A log entry's stored form: msgpack `[last_time, [[id, blob or None, time], ...]]`."""
    return _entry_encoder.encode([last_time, writes])


def decode_entry(n: int, data: bytes, where: str) -> LogEntry:
    """The `LogEntry` stored as `data`; `CorruptionError` naming `where` if it is not one."""
    try:
        last_time, raw = _entry_decoder.decode(data)
        writes: list[Write] = []
        for doc_id, blob, creation_time in raw:
            if (doc_id.__class__ is not str or (blob is not None and blob.__class__ is not bytes)
                    or creation_time.__class__ is not float):
                raise ValueError
            writes.append((doc_id, blob, creation_time))
        if last_time.__class__ is not float:
            raise ValueError
    except (msgspec.DecodeError, ValueError, TypeError):
        raise CorruptionError(f"{where} is damaged: its commit log entry {n} does not "
                              "decode") from None
    return LogEntry(n, writes, last_time)
