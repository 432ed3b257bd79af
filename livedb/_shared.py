"""A database shared between processes: the engine's log applied to the in-memory replica,
and mutations committed with optimistic concurrency on their read sets.

Each process keeps the whole database in memory, as a single-process database does, and
treats the shared engine's commit log as the truth (see _engines/__init__.py). Two
things change:

- Applying. The engine's signal thread (SQLite's poller, PostgreSQL's listener) reads
  the entries after the replica's newest commit, turns each into a `Commit` (the index
  keys it removed and added are computed from the replica's versions: the log holds
  documents, never keys, so processes may even differ in their indexes) and applies it
  under the writer lock at the log's commit number, then tells the commit listeners
  (live queries, the scheduler, file storage) exactly as for a local commit.
- Committing. A mutation runs at the replica's newest commit (its base) recording what
  it read: index ranges and ids. The engine appends its writes in one transaction under
  the log's lock; if other processes committed since the base, their entries are checked
  first against the read set (a key of theirs inside a range read, an id read or
  written, a creation time handed out twice, any write to a table whose search index
  was read). No overlap: the commit goes on top of them (a rebase; the mutation's result
  and writes are as valid as at its base). Overlap: nothing is written, the entries are
  applied, and the mutation runs again at the new base, up to `MAX_ATTEMPTS` times,
  after which `ConflictError` is raised. Commits are serializable in log order.

Queries read the replica: they see other processes' commits within the change signal's
latency (milliseconds), never a partial commit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from itertools import chain
from threading import get_ident
from typing import Any, TypeVar, cast

from ._engines import Commit, Conflict, LogEntry, LogGap, SharedEngine
from ._errors import ConflictError, LiveDBError
from ._kernel import Kernel, State
from ._store import Changes, Write
from ._transaction import WriteTransaction
from ._values import decode

log = logging.getLogger("livedb")

T = TypeVar("T")
W = TypeVar("W", bound=WriteTransaction)

MAX_ATTEMPTS = 25
"""Runs of one mutation before `ConflictError` (each after others wrote what it read)."""
BACKOFF = 0.0005
"""Seconds of the first random pause between two runs; it doubles per attempt, to 50 ms."""


class SharedKernel:
    """The shared side of one kernel: the applier thread and the optimistic commit."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.engine = cast(SharedEngine, kernel.engine)
        self._stop = False
        self._failing = 0
        self.applied_remote = 0
        """Commits of other processes applied here (for tests and benchmarks)."""
        self.conflicts = 0
        """Runs of mutations lost to a conflict (for tests and benchmarks)."""

    # -- the applier ---------------------------------------------------------------------

    def start(self) -> None:
        """Start following the log (after the kernel loaded the engine's documents)."""
        self.engine.watch(self.wake)

    def wake(self) -> None:
        """Other processes may have committed: read the log and apply it. Called by the
        engine's signal thread (its poller or listener), which applies the entries itself:
        one thread hop less per commit than handing them to a thread of our own."""
        if self._stop:
            return
        try:
            self.catch_up()
            self._failing = 0
        except LiveDBError as e:
            if self.kernel.state is State.CLOSED:
                return
            self._failing += 1
            if self._failing == 1:
                log.warning("livedb: cannot follow the commit log of %s (%s); retrying",
                            self.engine.location, e)
            time.sleep(min(0.05 * self._failing, 1.0))
        except Exception:
            log.exception("livedb: applying the commit log of %s failed",
                          self.engine.location)
            time.sleep(0.1)

    def catch_up(self) -> int:
        """Apply every log entry this replica lacks; the newest commit number applied.

        The log is read before the writer lock is taken (a round trip to PostgreSQL), so
        local mutations go on meanwhile; entries they already applied are skipped."""
        kernel = self.kernel
        try:
            entries: list[LogEntry] | None = self.engine.since(kernel.store.applied)
        except LogGap:
            entries = None
        with kernel._write_lock:
            if kernel.state is State.CLOSED:
                return kernel.store.applied
            if entries is None:
                done = self._catch_up_locked()
            else:
                applied = kernel.store.applied
                fresh = [e for e in entries if e.n > applied]
                done = self._apply(self._convert(fresh, {})) if fresh else []
            applied = kernel.store.applied
        self._settle(done)
        return applied

    def _catch_up_locked(self) -> list[int]:
        store = self.kernel.store
        try:
            entries = self.engine.since(store.applied)
        except LogGap:
            return self._reload_locked()
        if not entries:
            return []
        return self._apply(self._convert(entries, {}))

    def _reload_locked(self) -> list[int]:
        """The log lost entries this replica needs (it fell far behind): load every
        document again and apply the difference as one commit."""
        kernel = self.kernel
        store = kernel.store
        found: dict[str, tuple[bytes, float]] = {}
        for batch in self.engine.load():
            for doc_id, _table, creation_time, blob in batch:
                found[doc_id] = (blob, creation_time)
        head = self.engine.head()
        if head <= store.applied:
            return []
        writes: list[Write] = []
        for doc_id in list(store.docs):
            if doc_id not in found and store.newest(doc_id) is not None:
                writes.append((doc_id, None, 0.0))
        for doc_id, (blob, creation_time) in found.items():
            if store.newest(doc_id) != blob:
                writes.append((doc_id, blob, creation_time))
        log.warning("livedb: this process fell behind the commit log of %s; reloaded it "
                    "(%d documents changed)", self.engine.location, len(writes))
        entry = LogEntry(head, writes, self.engine.last_time())
        return self._apply(self._convert([entry], {}))

    def _convert(self, entries: list[LogEntry], overlay: dict[str, bytes | None]
                 ) -> list[Commit]:
        """The commits of log entries, their index changes computed against the replica
        (and `overlay`: documents written by entries converted before, not applied yet)."""
        kernel = self.kernel
        catalog = kernel.catalog
        store = kernel.store
        commits = []
        for entry in entries:
            changes: Changes = {}
            for doc_id, blob, creation_time in entry.writes:
                table = doc_id[:doc_id.index(":")]
                info = catalog.tables.get(table) or catalog.stored(table, strict_ok=True)
                assert info is not None
                old = overlay[doc_id] if doc_id in overlay else store.newest(doc_id)
                overlay[doc_id] = blob
                if old is None and blob is None:
                    continue
                old_keys = new_keys = None
                if old is not None:
                    old_doc = decode(old)
                    old_keys = info.keys(old_doc, doc_id, old_doc["_creation_time"])
                if blob is not None:
                    new_keys = info.keys(decode(blob), doc_id, creation_time)
                for position, name in enumerate(info.index_ids):
                    old_key = None if old_keys is None else old_keys[position]
                    new_key = None if new_keys is None else new_keys[position]
                    change = changes.get(name)
                    if change is None:
                        change = changes[name] = ([], [], [])
                    if old_key is not None and old_key == new_key:
                        change[2].append(old_key)
                        continue
                    if old_key is not None:
                        change[0].append(old_key)
                    if new_key is not None:
                        change[1].append(new_key)
            system = any(w[0][0] == "_" for w in entry.writes)
            commits.append(Commit(entry.n, entry.writes, changes, entry.last_time, system))
        return commits

    def _apply(self, commits: list[Commit]) -> list[int]:
        """Apply commits (in log order, the writer lock held) and make them visible."""
        kernel = self.kernel
        store = kernel.store
        catalog = kernel.catalog
        done = []
        for commit in commits:
            if commit.ts <= store.applied:
                continue
            store.commit(commit.writes, commit.changes, publish=False, at=commit.ts)
            catalog.saw_creation_time(commit.last_time)
            commit.durable = True
            kernel._make_visible(commit)
            commit.visible = True
            done.append(commit.ts)
        self.applied_remote += len(done)
        return done

    def _settle(self, done: list[int]) -> None:
        """Tell the listeners, outside every lock, that these commits are visible."""
        listeners = self.kernel._settling
        for ts in done:
            for listener in listeners:
                listener.settled(ts)

    # -- committing ----------------------------------------------------------------------

    def write(self, body: Callable[[W], T], make: Callable[..., W],
              on_commit: Callable[[int], Any] | None, extra: tuple[Any, ...] = ()
              ) -> tuple[T, int]:
        """`Kernel.write` on a shared engine: run, check against the log, commit or retry.

        Raises:
            ConflictError: other processes kept writing what the mutation read, for
                `MAX_ATTEMPTS` runs.
            LiveDBError: the database is closed, or the engine could not commit
                (`WriteError`).
        """
        kernel = self.kernel
        me = get_ident()
        if kernel._writer == me:
            raise LiveDBError("a mutation cannot run another mutation (use ctx.db directly, "
                              "or run both from an action)")
        engine = self.engine
        catalog = kernel.catalog
        attempt = 0
        while True:
            done: list[int] = []
            conflict = False
            try:
                with kernel._write_lock:
                    if kernel.state is State.CLOSED:
                        raise LiveDBError("the database is closed")
                    store = kernel.store
                    base = store.applied
                    kernel._writer = me
                    try:
                        txn = make(store, catalog, base, True, kernel.search_indexes,
                                   *extra)
                        result = body(txn)
                        writes, changes = txn.commit_changes()
                    finally:
                        kernel._writer = None
                    if not writes:
                        return result, 0
                    check = _Check(self, txn, writes)
                    try:
                        ts, _between = engine.commit(base, writes, catalog.last_time, check)
                    except Conflict:
                        conflict = True
                        self.conflicts += 1
                        done += self._apply(check.commits)
                    except LogGap:  # this replica fell behind the pruned log: reload
                        conflict = True
                        done += self._reload_locked()
                    else:
                        done += self._apply(check.commits)
                        if store.applied < ts - 1:  # the engine judged the rest itself
                            rest = [e for e in engine.since(store.applied) if e.n < ts]
                            done += self._apply(self._convert(rest, {}))
                        store.commit(writes, changes, publish=False, at=ts)
                        commit = Commit(ts, writes, changes, catalog.last_time,
                                        txn.system_written, durable=True)
                        if on_commit is not None:
                            on_commit(ts)
                        kernel._make_visible(commit)
                        commit.visible = True
                        done.append(ts)
                        return result, ts
            finally:
                self._settle(done)
            if conflict:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise ConflictError(f"the mutation conflicted with commits of other "
                                        f"processes {attempt} times in a row (they kept "
                                        "writing what it read); try again later")
                time.sleep(random.uniform(0, min(BACKOFF * 2 ** attempt, 0.05)))

    def stop(self) -> None:
        """Stop following the log (the kernel is closing; the engine's close then stops
        its signal thread)."""
        self._stop = True


class _Check:
    """Judges the entries a commit would go on top of against the mutation's reads."""

    __slots__ = ("shared", "txn", "ids", "times", "ranges", "searched", "commits", "overlay",
                 "only_ids")

    def __init__(self, shared: SharedKernel, txn: WriteTransaction, writes: list[Write]
                 ) -> None:
        self.shared = shared
        self.txn = txn
        read_ids = txn.read_ids or set()
        self.ids = set(read_ids)
        self.ids.update(w[0] for w in writes)
        originals = txn.originals
        self.times = {w[2] for w in writes if w[1] is not None
                      and originals.get(w[0], 0) is None}
        """Creation times this mutation handed out: another commit's must differ."""
        self.ranges: dict[Any, list[tuple[Any, Any]]] = {}
        self.searched: set[str] = set()
        for name, start, end in txn.read_ranges or ():
            if name[1].startswith("search:"):
                self.searched.add(name[0])
            else:
                self.ranges.setdefault(name, []).append((start, end))
        self.commits: list[Commit] = []
        self.overlay: dict[str, bytes | None] = {}
        self.only_ids = not self.ranges and not self.searched

    def __call__(self, entries: list[LogEntry]) -> bool:
        """True when none of `entries` wrote into what the mutation read."""
        commits = self.shared._convert(entries, self.overlay)
        self.commits += commits
        ids, times, searched, ranges = self.ids, self.times, self.searched, self.ranges
        for commit in commits:
            for doc_id, _blob, creation_time in commit.writes:
                if doc_id in ids or creation_time in times:
                    return False
                if searched and doc_id[:doc_id.index(":")] in searched:
                    return False
            if not ranges:
                continue
            for name, (removed, added, rewritten) in commit.changes.items():
                read = ranges.get(name)
                if read is None:
                    continue
                for key in chain(removed, added, rewritten):
                    for start, end in read:
                        if (start is None or start <= key) and (end is None or key < end):
                            return False
        return True
