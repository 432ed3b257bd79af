"""The MVCC document store: versions per document, snapshots, commits and collection.

A snapshot is a commit timestamp. Documents are kept as `id -> (ts, blob, keys)` for the
newest version plus a short history of older versions for snapshots that predate it.
Indexes (see index.py) hold a superset of the keys any open snapshot can see; a reader
keeps an index key only if the document version its snapshot sees still has that key.
Versions and index keys that no open snapshot can see are collected after each commit.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from typing import Any

from ._index import EMPTY, SortedIndex

Version = tuple  # (commit_ts, blob or None when deleted, index keys or None)


def _commit_ts(version: Version) -> int:
    return version[0]


IndexName = tuple  # (table, index name)
IndexChanges = dict  # IndexName -> (position, removed keys, added keys)


class Store:
    """Documents and indexes under multi-version concurrency control.

    Commits are serialized by the caller; reads and snapshots are safe from any thread.
    `publish` may run in another thread than `commit` (durable stores publish once a
    commit is on disk): `_lock` keeps collection and rollback off a commit in progress.
    """

    def __init__(self) -> None:
        self.ts = 0
        """The newest published commit: what new read snapshots see."""
        self.applied = 0
        """The newest applied commit: what the (single) writer sees; >= `ts`."""
        self.docs: dict[str, Version] = {}
        self.history: dict[str, list[Version]] = {}
        """Older versions per document, oldest first. A list only ever grows at its end in
        place; collection replaces it with a shorter copy, so readers never see a shift."""
        self.indexes: dict[IndexName, SortedIndex] = {}
        self._active: list[int] = []
        self._old_versions: deque[tuple[int, str]] = deque()
        self._old_keys: deque[tuple[int, IndexName, int, tuple, str]] = deque()
        self._lock = threading.Lock()
        self.search: Any = None
        """Full-text and vector indexes (search.Indexes) told of every commit, or None."""

    def writer_snapshot(self) -> int:
        """Register a snapshot of the newest applied commit, for the writer (serialized)."""
        ts = self.applied
        self._active.append(ts)
        return ts

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

    def index(self, name: IndexName) -> SortedIndex:
        return self.indexes.get(name, EMPTY)

    def read(self, doc_id: str, ts: int) -> Version | None:
        """The version of `doc_id` visible at `ts`, or None (absent or deleted)."""
        version = self.docs.get(doc_id)
        if version is None:
            return None
        if version[0] > ts:
            older = self.history.get(doc_id)
            if older:
                i = bisect_right(older, ts, key=_commit_ts)
                if i:
                    old = older[i - 1]
                    return old if old[1] is not None else None
            return None
        return version if version[1] is not None else None

    def keyed_blob(self, key: tuple, position: int, ts: int) -> bytes | None:
        """The blob of the document an index `key` points at, if the version visible at
        `ts` still has that key at `position` (indexes hold a superset; see index.py)."""
        version = self.read(key[-1][2], ts)
        if version is None:
            return None
        mine = version[2][position]
        return version[1] if mine is key or mine == key else None

    def commit(self, docs: Iterable[tuple[str, bytes | None, tuple | None]],
               changes: IndexChanges, publish: bool = True) -> int:
        """Apply one transaction's final writes at the next timestamp (and publish it).

        With `publish=False` the commit is visible to the writer only, until `publish`
        is called with its timestamp (durable stores publish once the commit is on disk).

        `docs` gives each written id with its new blob and index keys (None, None for a
        delete); `changes` the index keys each index lost and gained.
        """
        with self._lock:
            ts = self._apply(docs, changes)
        if publish:
            self.publish(ts)
        return ts

    def _apply(self, docs: Iterable[tuple[str, bytes | None, tuple | None]],
               changes: IndexChanges) -> int:
        ts = self.applied + 1
        if self.search is not None:
            docs = list(docs)
            self.search.apply(ts, docs, changes)
        live = self.docs
        history = self.history
        old_versions = self._old_versions
        for doc_id, blob, keys in docs:
            previous = live.get(doc_id)
            if previous is not None:
                older = history.get(doc_id)
                if older is None:
                    history[doc_id] = [previous]
                else:
                    older.append(previous)
                old_versions.append((ts, doc_id))
            if blob is None:
                if previous is not None:
                    live[doc_id] = (ts, None, None)
                    old_versions.append((ts, doc_id))
            else:
                live[doc_id] = (ts, blob, keys)
        indexes = self.indexes
        old_keys = self._old_keys
        for name, (position, removed, added, _rewritten) in changes.items():
            if not (added or removed):
                continue
            index = indexes.get(name)
            if index is None:
                index = indexes[name] = SortedIndex()
            if len(added) == 1:
                index.add(added[0])
            elif added:
                index.update((), added)
            for key in removed:
                old_keys.append((ts, name, position, key, key[-1][2]))
        self.applied = ts
        return ts

    def publish(self, ts: int) -> None:
        """Make commits up to `ts` visible to new snapshots (called in commit order).

        Collection is skipped while a commit is being applied; the next publish does it.
        """
        if ts > self.ts:
            self.ts = ts
        self.tidy()

    def tidy(self) -> None:
        """Collect if there is anything to collect and no commit is being applied."""
        if (self._old_versions or self._old_keys) and self._lock.acquire(blocking=False):
            try:
                self.collect()
            finally:
                self._lock.release()

    def rollback(self, after: int, written: dict[str, list[IndexName]]) -> None:
        """Undo the applied but unpublished commits later than `after` (a failed disk write).

        `written` maps every document those commits wrote to its table's index names, in
        key position order. Versions older than an unpublished commit are never collected
        (collection stops at the published timestamp), so each one is still in `history`.
        """
        with self._lock:
            live = self.docs
            history = self.history
            stale: dict[IndexName, list] = {}
            for doc_id, names in written.items():
                version = live.get(doc_id)
                older = list(history.get(doc_id, ()))
                dropped = []
                while version is not None and version[0] > after:
                    if version[2] is not None:
                        dropped.append(version[2])
                    version, older = (older[-1], older[:-1]) if older else (None, [])
                if older:
                    history[doc_id] = older
                else:
                    history.pop(doc_id, None)
                if version is None:
                    live.pop(doc_id, None)
                else:
                    live[doc_id] = version
                for keys in dropped:
                    for position, key in enumerate(keys):
                        if not self._key_in_use(doc_id, position, key):
                            stale.setdefault(names[position], []).append(key)
            for name, keys in stale.items():
                index = self.indexes.get(name)
                if index is not None:
                    index.update(keys, ())
            old_versions, old_keys = self._old_versions, self._old_keys
            while old_versions and old_versions[-1][0] > after:
                old_versions.pop()
            while old_keys and old_keys[-1][0] > after:
                old_keys.pop()
            if self.search is not None:
                self.search.rollback(written, after)

    def collect(self) -> None:
        """Drop versions and index keys that no open or future snapshot can see."""
        active = self._active
        horizon = min(active, default=self.ts)
        old_versions = self._old_versions
        live = self.docs
        history = self.history
        dropped: dict[str, int] = {}
        while old_versions and old_versions[0][0] <= horizon:
            _ts, doc_id = old_versions.popleft()
            older = history.get(doc_id)
            if older and dropped.get(doc_id, 0) < len(older):
                dropped[doc_id] = dropped.get(doc_id, 0) + 1
                continue
            version = live.get(doc_id)
            if version is not None and version[1] is None and version[0] <= horizon:
                del live[doc_id]
        for doc_id, count in dropped.items():
            older = history[doc_id]
            if count >= len(older):
                del history[doc_id]
            else:
                history[doc_id] = older[count:]
        if self.search is not None:
            self.search.collect(horizon)
        old_keys = self._old_keys
        if not old_keys or old_keys[0][0] > horizon:
            return
        gone: dict[IndexName, list] = {}
        while old_keys and old_keys[0][0] <= horizon:
            _ts, name, position, key, doc_id = old_keys.popleft()
            if not self._key_in_use(doc_id, position, key):
                gone.setdefault(name, []).append(key)
        for name, keys in gone.items():
            index = self.indexes.get(name)
            if index is not None:
                index.update(keys, ())

    def _key_in_use(self, doc_id: str, position: int, key: tuple) -> bool:
        version = self.docs.get(doc_id)
        if version is not None and version[2] is not None and version[2][position] == key:
            return True
        for old in self.history.get(doc_id, ()):
            if old[2] is not None and old[2][position] == key:
                return True
        return False

    def stats(self) -> dict[str, Any]:
        live = sum(1 for v in self.docs.values() if v[1] is not None)
        return {
            "documents": live,
            "versions": len(self.docs) + sum(len(h) for h in self.history.values()),
            "snapshots": len(self._active),
            "commit_ts": self.ts,
        }
