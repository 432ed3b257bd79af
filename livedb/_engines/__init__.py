"""Storage engines: where commits become durable, behind one interface.

A `StorageEngine` owns the persistent side of a database: locking it against other
openers, loading what it holds, and making batches of commits durable. It never sees
the in-memory store: the kernel (see _kernel.py) feeds it `Commit` records and builds
the store from the rows `load` yields.

Today's engines: `MemoryEngine` (nothing is kept) and `SqliteEngine` (one SQLite file,
one process at a time). The interface is shaped for a shared engine too: a commit log
that several processes apply to their in-memory replicas, with optimistic concurrency
on read sets. Its contract, for a future implementation:

- `shared` is True; the file or server may have commits made by other processes.
- `load()` yields every stored document at one consistent point and `head()` is that
  point's commit number; `since(number)` returns the log entries after `number`, in
  order (the kernel applies them to its replica before each mutation commits).
- `write([commit])` writes one commit in one engine transaction that first checks the
  log's head equals the commit's base: if another process committed since, it raises
  `Conflict` with the entries in between (the kernel applies them, checks them against
  the mutation's read set, and retries or rebases).
- `watch(wake)` calls `wake()` (from any thread) when other processes commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .._errors import LiveDBError
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
