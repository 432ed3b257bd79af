"""The MVCC document store: versions per document, snapshots, commits and collection.

A snapshot is a commit timestamp. `docs` maps every document id to its newest version:
the msgpack blob itself when no snapshot can see an older one (as after opening), or
`(commit ts, blob)` (`blob` None for a delete) while one may. Older versions a snapshot
may still need are in `history`, oldest first. Indexes (see _index.py) hold a superset
of the keys any open snapshot can see; versions do not keep their keys. A key that a
commit removed from a document waits in its index's `stale` count until collection,
so a reader checks a key against the document it points at only when the key is stale
or the document changed after the reader's snapshot (`key_visible`): the common case
costs one dict lookup.

Commits are serialized by the caller (the kernel's writer). Reads and snapshots are safe
from any thread and never wait: the writer only ever replaces `docs` items whole,
appends to `history` lists (collection replaces a list with a shorter copy), and
changes indexes under their sequence locks.

Index keys are tuples ending with the creation time and the id, except those of the
`by_id` index (position 0 of every table), which are the id strings themselves.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ._index import EMPTY, SortedIndex
from ._values import decode

IndexName = tuple[str, str]
"""(table, index name)."""
Version = bytes | tuple[int, bytes | None]
KeyFn = Callable[[dict[str, Any]], Any]
Write = tuple[str, bytes | None, float]
"""(document id, its new blob or None for a delete, its creation time)."""
IndexChange = tuple[list[Any], list[Any], list[Any]]
"""Per index: the keys a commit removed, added, and rewrote (unchanged keys of documents
written in place: the index keeps them, but a reader of that range read the document)."""
Changes = dict[IndexName, IndexChange]


COLLECT_BATCH = 64
"""Collection runs once this many written documents or removed keys wait for it."""


def _version_ts(version: tuple[int, bytes | None]) -> int:
    return version[0]


class StoreListener(Protocol):
    """Something kept in step with the store's commits (full-text and vector indexes).

    Called by the writer, in commit order, with no reader waiting on it."""

    def applied(self, ts: int, writes: list[Write], changes: Changes) -> None:
        """Commit `ts` was applied; it may add entries to `changes` (read sets of live
        queries match them)."""

    def collected(self, horizon: int) -> None:
        """No snapshot older than `horizon` remains: drop what only those could see."""

    def rolled_back(self, after: int, doc_ids: Iterable[str]) -> None:
        """Commits after `after` that wrote `doc_ids` were undone."""


class Store:
    """Documents and indexes under multi-version concurrency control."""

    def __init__(self) -> None:
        self.ts = 0
        """The newest published commit: what new read snapshots see."""
        self.applied = 0
        """The newest applied commit: what the (single) writer sees; >= `ts`."""
        self.docs: dict[str, Version] = {}
        self.history: dict[str, list[tuple[int, bytes | None]]] = {}
        self.indexes: dict[IndexName, SortedIndex] = {}
        self.stale: dict[IndexName, dict[Any, int]] = {}
        """Per index, keys commits removed that are still in the index (with how many
        removals wait for collection)."""
        self.key_fns: dict[IndexName, KeyFn] = {}
        self.listeners: list[StoreListener] = []
        self.epoch = 0
        """Odd while collection removes stale keys. A scan that found a key not stale
        re-checks its chunk if the epoch moved meanwhile: the key may have been stale
        (invisible to it) and collected since it was sliced."""
        self._active: list[int] = []
        self._old: deque[tuple[Any, ...]] = deque()
        """Collection work in commit order: `(ts, doc id)` for each document written,
        `(ts, doc id, index, key)` for each key removed."""
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------

    def define_index(self, name: IndexName, key_fn: KeyFn) -> None:
        """Declare an index and how a document's key in it is computed (for the checks of
        stale keys and of keys of documents changed after a snapshot)."""
        self.key_fns[name] = key_fn
        self.stale.setdefault(name, {})
        self.indexes.setdefault(name, SortedIndex())

    def load(self, doc_id: str, blob: bytes) -> None:
        """Add a document while opening (no snapshot exists yet); index it with `fill`."""
        self.docs[doc_id] = blob

    def fill(self, name: IndexName, keys: list[Any]) -> None:
        """Set an index's keys while opening (in any order)."""
        keys.sort()
        index = self.indexes[name] = SortedIndex()
        index.replace(keys)

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> int:
        """Register a snapshot of the newest published commit; `release` it when done.

        Lock-free: a commit may publish between reading `ts` and registering it, and a
        collection could then have passed our timestamp, so we retry until registering
        happened with no commit in between.
        """
        active = self._active
        while True:
            ts = self.ts
            active.append(ts)
            if self.ts == ts:
                return ts
            active.remove(ts)

    def pin(self, ts: int) -> None:
        """Register a snapshot at `ts`; the caller knows `ts` is not collected yet."""
        self._active.append(ts)

    def release(self, ts: int) -> None:
        self._active.remove(ts)

    def move(self, old: int, new: int) -> None:
        """Register a snapshot at `new` in place of one at `old` (`new` not collected)."""
        active = self._active
        active.append(new)
        active.remove(old)

    # -- reading --------------------------------------------------------------------------

    def index(self, name: IndexName) -> SortedIndex:
        return self.indexes.get(name, EMPTY)

    def read(self, doc_id: str, ts: int) -> bytes | None:
        """The blob of `doc_id` visible at `ts`, or None (absent or deleted)."""
        version = self.docs.get(doc_id)
        if version is None or version.__class__ is bytes:
            return version  # pyright: ignore[reportReturnType]
        if version[0] <= ts:
            return version[1]  # type: ignore[return-value]
        return self.older(doc_id, ts)

    def older(self, doc_id: str, ts: int) -> bytes | None:
        """The blob of the newest version of `doc_id` in `history` visible at `ts` (the
        newest version is not visible there), or None."""
        older = self.history.get(doc_id)
        if older:
            i = bisect_right(older, ts, key=_version_ts)
            if i:
                return older[i - 1][1]
        return None

    def newest(self, doc_id: str) -> bytes | None:
        """The blob of the newest applied version of `doc_id` (what the writer sees)."""
        version = self.docs.get(doc_id)
        if version is None or version.__class__ is bytes:
            return version  # pyright: ignore[reportReturnType]
        return version[1]  # type: ignore[return-value]

    def key_visible(self, name: IndexName, key: Any, doc_id: str, ts: int,
                    strict: bool = False) -> bytes | None:
        """The blob behind index key `key` if the version of `doc_id` visible at `ts` has
        that key, else None: the slow path of a scan (see the module docstring). With
        `strict` the key is always checked against the document (during a collection)."""
        version = self.docs.get(doc_id)
        if version is None:
            return None
        if version.__class__ is bytes:
            blob: bytes | None = version  # pyright: ignore[reportAssignmentType]
        elif version[0] <= ts:
            blob = version[1]  # type: ignore[assignment]
        else:
            blob = self.older(doc_id, ts)
            if blob is None:
                return None
            return blob if self.key_fns[name](decode(blob)) == key else None
        if blob is None:
            return None
        stale = self.stale.get(name)
        if (strict or (stale and key in stale)) and self.key_fns[name](decode(blob)) != key:
            return None
        return blob

    def kept_blobs(self, doc_id: str) -> list[bytes]:
        """The blobs of every version of `doc_id` the store still keeps."""
        blobs = [v[1] for v in self.history.get(doc_id, ()) if v[1] is not None]
        version = self.docs.get(doc_id)
        if version.__class__ is bytes:
            blobs.append(version)  # pyright: ignore[reportArgumentType]
        elif version is not None and version[1] is not None:
            blobs.append(version[1])  # type: ignore[arg-type]
        return blobs

    # -- committing -----------------------------------------------------------------------

    def commit(self, writes: list[Write], changes: Changes, publish: bool = True,
               at: int | None = None) -> int:
        """Apply one transaction's final writes at the next timestamp (or at `at`, a
        commit number of a shared engine's log), and publish it unless `publish` is
        False (durable commits are published once they are on disk, in order)."""
        with self._lock:
            ts = self.applied + 1 if at is None else at
            for listener in self.listeners:
                listener.applied(ts, writes, changes)
            docs = self.docs
            history = self.history
            old = self._old
            for doc_id, blob, _creation_time in writes:
                previous = docs.get(doc_id)
                if previous is not None:
                    if previous.__class__ is bytes:
                        previous = (0, previous)
                    older = history.get(doc_id)
                    if older is None:
                        history[doc_id] = [previous]  # type: ignore[list-item]
                    else:
                        older.append(previous)  # type: ignore[arg-type]
                elif blob is None:
                    continue
                docs[doc_id] = (ts, blob)
                old.append((ts, doc_id))
            indexes = self.indexes
            for name, (removed, added, _rewritten) in changes.items():
                index = indexes.get(name)
                if index is None:
                    continue
                if len(added) == 1:
                    index.add(added[0])
                elif added:
                    index.update((), added)
                if removed:
                    stale = self.stale[name]
                    for key in removed:
                        stale[key] = stale.get(key, 0) + 1
                        old.append((ts, key if key.__class__ is str else key[-1], name, key))
            self.applied = ts
        if publish:
            self.publish(ts)
            self.tidy()
        return ts

    def publish(self, ts: int) -> None:
        """Make commits up to `ts` visible to new snapshots (called in commit order; the
        caller then calls `tidy`)."""
        if ts > self.ts:
            self.ts = ts

    def tidy(self, force: bool = False) -> None:
        """Collect if enough work waits (`COLLECT_BATCH` entries, or any with `force`) and
        no commit is being applied: a collection per commit would cost more than the
        memory it frees a few commits earlier."""
        old = self._old
        if (old and (force or len(old) >= COLLECT_BATCH)
                and old[0][0] <= min(self._active, default=self.ts)
                and self._lock.acquire(blocking=False)):
            try:
                self.collect()
            finally:
                self._lock.release()

    def collect(self) -> None:
        """Drop versions and index keys that no open or future snapshot can see."""
        horizon = min(self._active, default=self.ts)
        old = self._old
        self.epoch += 1
        try:
            while old and old[0][0] <= horizon:
                entry = old.popleft()
                doc_id = entry[1]
                if len(entry) == 2:
                    self._settle(doc_id, horizon)
                else:
                    self._drop_key(entry[2], entry[3], doc_id)
        finally:
            self.epoch += 1
        for listener in self.listeners:
            listener.collected(horizon)

    def _settle(self, doc_id: str, horizon: int) -> None:
        """Keep only the versions of `doc_id` a snapshot at or after `horizon` can see, and
        the newest as a bare blob (or nothing, if deleted) once every snapshot sees it."""
        version = self.docs.get(doc_id)
        if version is None or version.__class__ is bytes:
            return
        current_ts = version[0]
        older = self.history.get(doc_id)
        if older:
            if current_ts <= horizon:
                del self.history[doc_id]
                older = None
            else:
                i = bisect_right(older, horizon, key=_version_ts)
                if i > 1:
                    self.history[doc_id] = older = older[i - 1:]
        if not older and current_ts <= horizon:
            blob: bytes | None = version[1]  # type: ignore[assignment]
            if blob is None:
                del self.docs[doc_id]
            else:
                self.docs[doc_id] = blob

    def _drop_key(self, name: IndexName, key: Any, doc_id: str) -> None:
        """A removal of `key` reached the horizon: remove it from its index unless a
        version the store keeps still has it (the document changed back)."""
        stale = self.stale.get(name)
        if stale is None:
            return
        count = stale.get(key, 0) - 1
        if count > 0:
            stale[key] = count
            return
        stale.pop(key, None)
        key_fn = self.key_fns[name]
        for blob in self.kept_blobs(doc_id):
            if key_fn(decode(blob)) == key:
                return
        self.indexes[name].discard(key)

    def rollback(self, after: int, doc_ids: Iterable[str],
                 changes: Iterable[Changes]) -> None:
        """Undo the applied but unpublished commits later than `after` (a failed write).

        `doc_ids` are every document those commits wrote, `changes` their index changes.
        Versions older than an unpublished commit are never collected (collection stops
        at the published timestamp), so each one is still in `history`.
        """
        with self._lock:
            docs, history = self.docs, self.history
            doc_ids = list(doc_ids)
            for doc_id in doc_ids:
                older = history.get(doc_id, [])
                keep = [v for v in older if v[0] <= after]
                version = docs.get(doc_id)
                if version is not None and version.__class__ is not bytes and (
                        version[0] > after):
                    if keep:
                        docs[doc_id] = keep.pop()
                    else:
                        del docs[doc_id]
                if keep:
                    history[doc_id] = keep
                else:
                    history.pop(doc_id, None)
            for change in changes:
                for name, (removed, added, _rewritten) in change.items():
                    index = self.indexes.get(name)
                    if index is None:
                        continue
                    stale = self.stale[name]
                    for key in removed:
                        count = stale.get(key, 0) - 1
                        if count > 0:
                            stale[key] = count
                        else:
                            stale.pop(key, None)
                    for key in added:
                        doc_id = key if key.__class__ is str else key[-1]
                        key_fn = self.key_fns[name]
                        if not any(key_fn(decode(b)) == key for b in self.kept_blobs(doc_id)):
                            index.discard(key)
            old = self._old
            while old and old[-1][0] > after:
                old.pop()
            self.applied = after
            for listener in self.listeners:
                listener.rolled_back(after, doc_ids)

    # -- invariants and statistics --------------------------------------------------------

    def _check(self) -> None:
        """Assert the store's invariants (for tests): every version visible at the newest
        commit has its keys in the indexes; stale keys are in their indexes; history is
        in commit order and older than the newest version; nothing is from the future."""
        docs, history = self.docs, self.history
        for doc_id, older in history.items():
            version = docs.get(doc_id)
            assert version is not None, f"history without a document: {doc_id}"
            assert older, f"empty history kept for {doc_id}"
            stamps = [v[0] for v in older]
            assert stamps == sorted(stamps), f"history out of order for {doc_id}"
            if version.__class__ is not bytes:
                assert stamps[-1] <= version[0], f"history newer than {doc_id}"
        for doc_id, version in docs.items():
            if version.__class__ is not bytes:
                assert version[0] <= self.applied, f"a version from the future: {doc_id}"
        for name, index in self.indexes.items():
            index._check()
            table = name[0]
            key_fn = self.key_fns.get(name)
            for key in self.stale.get(name, {}):
                assert key in index, f"a stale key missing from {name}: {key!r}"
            if key_fn is None:
                continue
            prefix = table + ":"
            for doc_id, version in docs.items():
                if not doc_id.startswith(prefix):
                    continue
                blob = version if version.__class__ is bytes else version[1]
                if blob is not None:
                    key = key_fn(decode(blob))  # type: ignore[arg-type]
                    assert key in index, f"{doc_id} lacks its key in {name}"

    def stats(self) -> dict[str, Any]:
        live = sum(1 for v in self.docs.values()
                   if v.__class__ is bytes or v[1] is not None)
        return {
            "documents": live,
            "versions": len(self.docs) + sum(len(h) for h in self.history.values()),
            "snapshots": len(self._active),
            "commit_ts": self.ts,
        }
