"""The kernel: one writer, commits, durability, visibility in commit order, lifecycle.

Everything that changes a database goes through `Kernel.write`: the body runs in a
write transaction under the single writer lock (mutations are in-memory Python, so
under the GIL optimistic concurrency between threads would buy no parallelism and would
cost read-set validation and retries; one writer makes each mutation serializable by
construction). Its writes are applied to the store at once (visible to the next writer
only), handed to the storage engine, and become visible to readers once durable.

Group commit: a committing thread leaves the writer lock before it waits for its commit
to be durable. The first waiting thread that finds no write under way writes every
commit handed over so far as one batch (one sync); threads that commit meanwhile share
the next one. Durable commits are then made visible strictly in commit order by one
thread at a time, which tells the commit listeners. An uncontended commit does all of
this in its own thread with no waiting. A commit of an in-memory database is visible
before its writer lets go of the lock.

Features (live queries, the scheduler, file storage) plug in as `CommitListener`s: the
kernel names none of them. A failed write rolls the store back to the last durable
commit, and every commit applied after the failed ones fails too (they may have read
them).
"""

from __future__ import annotations

import enum
import gc
import logging
import threading
from collections import deque
from collections.abc import Callable
from threading import get_ident
from typing import Any, Protocol, TypeVar, overload

from ._catalog import Catalog, TableInfo
from ._engines import Commit, StorageEngine, WriteError
from ._errors import CorruptionError, LiveDBError, SchemaError
from ._query import Reader, Writer
from ._searchindex import Indexes
from ._store import Store
from ._transaction import Transaction, WriteTransaction
from ._validators import Mismatch
from ._values import decode_many

log = logging.getLogger("livedb")

T = TypeVar("T")
R = TypeVar("R", bound=Transaction)
W = TypeVar("W", bound=WriteTransaction)

_SCHEMA_ERRORS_SHOWN = 5


class State(enum.Enum):
    """A database's lifecycle: open; closing (new calls are refused while clients and
    scheduled calls drain); closed."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class CommitListener(Protocol):
    """A feature kept in step with commits (live queries, the scheduler, file storage).

    Registered with `Kernel.listen`. A listener that keeps only system tables in step
    (`system_only`) hears only of commits that wrote one, and one with nothing to do in
    the committing thread (`settles` false) is not called there: a commit of user
    documents costs such features nothing."""

    system_only: bool
    settles: bool

    def committed(self, commit: Commit) -> None:
        """Commit `commit.ts` is now visible to readers. Called in commit order by one
        thread at a time, before the next commit becomes visible; it must not wait for
        anything another thread's commit might need (it may hold the writer lock)."""

    def settled(self, ts: int) -> None:
        """Called in the thread that made commit `ts` once it is visible, outside every
        lock of the kernel (live queries deliver their callbacks here)."""


class Kernel:
    """The store, its writer, its engine and its listeners."""

    def __init__(self, catalog: Catalog, engine: StorageEngine) -> None:
        self.catalog = catalog
        self.engine = engine
        self.store = Store()
        self.state = State.OPEN
        self._listeners: list[CommitListener] = []
        """Told of every commit."""
        self._system_listeners: list[CommitListener] = []
        """Told only of commits that wrote a system table."""
        self._settling: list[CommitListener] = []
        self.search_indexes: Indexes | None = None
        self._write_lock = threading.Lock()
        self._writer: int | None = None
        """The thread running a write now (the holder of the writer lock), if any."""
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._waiters = 0
        self._pending: list[Commit] = []
        """Applied commits not handed to the engine yet."""
        self._to_publish: deque[Commit] = deque()
        """Durable commits not visible yet, in commit order."""
        self._last: Commit | None = None
        """The newest applied commit (until it is visible): what a read-only mutation that
        saw it waits for."""
        self._flushing = False
        self._publishing = False
        self.shared: Any = None
        """With a shared engine, the `_shared.SharedKernel` that commits and applies the
        log (set by the facade): `write` hands every mutation to it."""
        for info in catalog.tables.values():
            self._define(info)
        catalog.on_new_table = self._define

    def listen(self, listener: CommitListener) -> None:
        """Keep `listener` in step with every later commit (see `CommitListener`)."""
        (self._system_listeners if listener.system_only else self._listeners).append(listener)
        if listener.settles:
            self._settling.append(listener)

    def _define(self, info: TableInfo) -> None:
        for name, key_fn in zip(info.index_ids, info.key_fns, strict=True):
            self.store.define_index(name, key_fn)

    # -- opening -------------------------------------------------------------------------

    def load(self) -> None:
        """Load every stored document into the store and build its indexes; check the
        documents against the schema (`SchemaError` naming the first bad ones).

        The collector is off while the documents are built and the result is frozen
        (`gc.freeze`), so later collections do not walk what was loaded."""
        catalog = self.catalog
        store = self.store
        added = catalog.well_known()
        keys: dict[str, list[list[Any]]] = {}
        unknown: dict[str, list[Any]] = {}
        bad: list[str] = []
        bad_count = 0
        last_time = 0.0
        location = self.engine.location
        enabled = gc.isenabled()
        gc.disable()
        try:
            for batch in self.engine.load():
                docs = decode_many([row[3] for row in batch])
                for (doc_id, table, creation_time, blob), doc in zip(batch, docs,
                                                                      strict=True):
                    if (doc.__class__ is not dict or doc.pop("_id", None) != doc_id
                            or doc.pop("_creation_time", None) != creation_time):
                        raise CorruptionError(f"{location} is damaged: the row of document "
                                              f"{doc_id!r} does not match its contents")
                    info = catalog.stored(table)
                    if info is None:
                        found = unknown.setdefault(table, [0, doc_id])
                        found[0] += 1
                        continue
                    if info.check is not None:
                        try:
                            info.check(doc, 1)
                        except Mismatch as e:
                            bad_count += 1
                            if len(bad) < _SCHEMA_ERRORS_SHOWN:
                                bad.append(f"document {doc_id!r}: {e.render(table)}")
                    store.load(doc_id, blob)
                    per_index = keys.get(table)
                    if per_index is None:
                        per_index = keys[table] = [[] for _ in info.index_ids]
                    for position, key in enumerate(info.keys(doc, doc_id, creation_time)):
                        per_index[position].append(key)
                    if creation_time > last_time:
                        last_time = creation_time
            if unknown or bad:
                raise SchemaError(_schema_report(location, unknown, bad, bad_count))
            for table, per_index in keys.items():
                for name, index_keys in zip(catalog.tables[table].index_ids, per_index,
                                            strict=True):
                    store.fill(name, index_keys)
            for table in added:
                if table not in keys:
                    catalog.forget(table)
            catalog.last_time = max(last_time, self.engine.last_time())
            if self.engine.shared:
                store.ts = store.applied = self.engine.head()  # type: ignore[attr-defined]
            self.search_indexes = Indexes.build(store, catalog.definitions())
        finally:
            if enabled:
                gc.enable()
        gc.freeze()

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> int:
        """Register a snapshot of the newest visible commit (release it with `release`)."""
        return self.store.snapshot()

    def release(self, ts: int) -> None:
        self.store.release(ts)

    @overload
    def reader(self, *, record: bool = False, at: int | None = None) -> Reader: ...
    @overload
    def reader(self, cls: type[R], record: bool = False, at: int | None = None) -> R: ...
    def reader(self, cls: type[Transaction] = Reader, record: bool = False,  # noqa: E301
               at: int | None = None) -> Transaction:
        """A read transaction of class `cls` at the newest snapshot (or at `at`, a commit
        the caller keeps from being collected); `close` it when done."""
        store = self.store
        if at is None:
            ts = store.snapshot()
        else:
            store.pin(at)
            ts = at
        return cls(store, self.catalog, ts, record, self.search_indexes)

    # -- writing ---------------------------------------------------------------------------

    @property
    def writing(self) -> bool:
        """Whether the calling thread is inside a write (a mutation) right now."""
        return self._writer == get_ident()

    def write(self, body: Callable[[W], T], make: Callable[..., W] = Writer,  # type: ignore[assignment]
              on_commit: Callable[[int], Any] | None = None, record: bool = False,
              extra: tuple[Any, ...] = ()) -> tuple[T, int]:
        """Run `body(txn)` in a write transaction made by `make` (called like `Writer`, then
        with `extra`) and commit its writes.

        Returns `(body's result, commit ts)` once the commit is durable and visible (ts 0
        when nothing was written; it then waits for any commit it may have read to be
        visible). `on_commit(ts)` is told the timestamp before anyone can see the commit.

        The transaction reads the newest applied commit without registering a snapshot:
        collection never drops what the newest versions hold, and a scan that meets a
        collection re-checks its chunk (see _transaction.Transaction._visible).
        If `body` raises, nothing is written and the error propagates.

        Raises:
            LiveDBError: the database is closed, this thread is already in a write, or
                the commit could not be made durable (`WriteError`).
        """
        if self.shared is not None:
            return self.shared.write(body, make, on_commit, extra)  # type: ignore[no-any-return]
        me = get_ident()
        if self._writer == me:
            raise LiveDBError("a mutation cannot run another mutation (use ctx.db directly, "
                              "or run both from an action)")
        store = self.store
        engine = self.engine
        with self._write_lock:
            if self.state is State.CLOSED:
                raise LiveDBError("the database is closed")
            self._writer = me
            try:
                txn = make(store, self.catalog, store.applied, record, self.search_indexes,
                           *extra)
                result = body(txn)
                writes, changes = txn.commit_changes()
                if not writes:
                    waiting = self._last if engine.durable else None
                    ts = 0
                else:
                    ts = store.commit(writes, changes, publish=False)
                    commit = Commit(ts, writes, changes, self.catalog.last_time,
                                    txn.system_written)
                    if on_commit is not None:
                        on_commit(ts)
                    if engine.durable:
                        with self._mutex:
                            self._pending.append(commit)
                            self._last = commit
                        waiting = commit
                    else:
                        self._make_visible(commit)
                        waiting = None
            finally:
                self._writer = None
        if waiting is not None:
            self._wait(waiting)
        if ts:
            for listener in self._settling:
                listener.settled(ts)
        return result, ts

    def write_system(self, what: str, body: Callable[[Writer], T]) -> T:
        """Run livedb's own writes `body(txn)` in a transaction of their own and commit
        them; `what` names the caller in the error raised from inside a mutation."""
        if self.writing:
            raise LiveDBError(f"{what} cannot be called from inside a mutation (it commits on "
                              "its own); call it from an action or outside functions")
        return self.write(body)[0]

    @property
    def uncertain(self) -> bool:
        """Whether a failed write may have reached the storage all the same (an I/O error
        while syncing): the engine then refuses writes until the database is reopened."""
        return bool(getattr(self.engine, "broken", False))

    def _wait(self, commit: Commit) -> None:
        """Return once `commit` is durable and visible; raise its `WriteError` if it failed.

        While it waits, the thread takes on whichever role is free and needed: writing
        the pending commits, or making durable ones visible."""
        mutex = self._mutex
        while True:
            with mutex:
                while True:
                    if commit.error is not None:
                        raise _copy_error(commit.error)
                    if commit.visible:
                        return
                    if commit.durable:
                        if not self._publishing:
                            self._publishing = True
                            batch = None
                            break
                    elif not self._flushing:
                        self._flushing = True
                        batch, self._pending = self._pending, []
                        break
                    self._waiters += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._waiters -= 1
            if batch is None:
                self._publish()
            elif batch:
                self._flush(batch)
            else:
                with mutex:
                    self._flushing = False
                    self._notify()

    def _flush(self, batch: list[Commit]) -> None:
        try:
            self.engine.write(batch)
        except BaseException as e:
            self._fail(batch, e)
            if not isinstance(e, Exception):
                raise
            return
        with self._mutex:
            for commit in batch:
                commit.durable = True
            self._to_publish.extend(batch)
            self._flushing = False
            publish = not self._publishing
            self._publishing = True
            self._notify()
        if publish:
            self._publish()

    def _fail(self, batch: list[Commit], error: BaseException) -> None:
        """Undo a batch that did not become durable, and every commit applied after it."""
        with self._write_lock:
            with self._mutex:
                failed = batch + self._pending
                self._pending = []
                self._last = None
            doc_ids = {w[0] for commit in failed for w in commit.writes}
            self.store.rollback(batch[0].ts - 1, doc_ids, [c.changes for c in failed])
        if not isinstance(error, WriteError):
            error = WriteError(f"could not write to {self.engine.location}: {error}")
        with self._mutex:
            for commit in failed:
                commit.error = error
            self._flushing = False
            self._notify()

    def _publish(self) -> None:
        """Make durable commits visible in commit order, until none is left (the caller
        has taken the publishing role; this gives it back)."""
        mutex = self._mutex
        batch: list[Commit] = []
        try:
            while True:
                with mutex:
                    for commit in batch:
                        commit.visible = True
                    if self._last is not None and self._last.visible:
                        self._last = None
                    if not self._to_publish:
                        self._publishing = False
                        self._notify()
                        return
                    batch = list(self._to_publish)
                    self._to_publish.clear()
                    self._notify()
                for commit in batch:
                    self._make_visible(commit)
        except BaseException:
            with mutex:
                for commit in batch:
                    commit.visible = True
                self._publishing = False
                self._notify()
            raise

    def _make_visible(self, commit: Commit) -> None:
        """The one point where a commit becomes visible: to readers, then to listeners."""
        store = self.store
        store.publish(commit.ts)
        for listener in (self._listeners + self._system_listeners if commit.system
                         else self._listeners):
            try:
                listener.committed(commit)
            except Exception:
                log.exception("livedb: a commit listener failed on commit %d", commit.ts)
        store.tidy()

    def _notify(self) -> None:
        """Wake the waiting threads, if any (the caller holds the mutex)."""
        if self._waiters:
            self._cond.notify_all()

    # -- closing ---------------------------------------------------------------------------

    def begin_closing(self) -> bool:
        """Refuse new calls from now on; False if closing had begun already."""
        with self._mutex:
            if self.state is not State.OPEN:
                return False
            self.state = State.CLOSING
            return True

    def close(self) -> None:
        """Wait for the running write, write what is pending, and close the engine."""
        with self._write_lock:
            self.state = State.CLOSED
            last = self._last
        if last is not None:
            try:
                self._wait(last)
            except LiveDBError:
                pass
        with self._mutex:
            while self._flushing or self._publishing:
                self._waiters += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiters -= 1
        if self.shared is not None:
            self.shared.stop()
        self.engine.close()

    def _check(self) -> None:
        """Assert the invariants of the store and of the search indexes (for tests, with
        no commit under way)."""
        with self._write_lock:
            self.store._check()
            if self.search_indexes is not None:
                self.search_indexes._check()

    def check_open(self) -> None:
        """Raise `LiveDBError` if closing has begun (new calls are refused)."""
        if self.state is not State.OPEN:
            raise LiveDBError("the database is closed")


def _copy_error(error: BaseException) -> BaseException:
    """A fresh exception per waiting thread, so their tracebacks do not mix."""
    fresh: BaseException
    if isinstance(error, WriteError):
        fresh = WriteError(str(error), error.retryable)
    elif isinstance(error, LiveDBError):
        fresh = LiveDBError(*error.args)
    else:
        fresh = error
    fresh.__cause__ = error.__cause__
    return fresh


def _schema_report(location: str, unknown: dict[str, list[Any]], bad: list[str],
                   bad_count: int) -> str:
    lines = [f"{location} does not match the schema given:"]
    for table, (count, doc_id) in sorted(unknown.items()):
        lines.append(f"  table {table!r} holds {count} document(s) (e.g. {doc_id!r}) but is "
                     "not in the schema")
    if bad:
        more = f" (showing the first {len(bad)})" if bad_count > len(bad) else ""
        lines.append(f"  {bad_count} document(s) fail their table's validator{more}:")
        lines.extend(f"    {line}" for line in bad)
    lines.append("Change the schema to accept the data, or open with "
                 "define_schema(..., schema_validation=False) to fix the data in mutations.")
    return "\n".join(lines)
