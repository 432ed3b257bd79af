"""The MVCC document store: versions per document, snapshots, commits and collection.

A `State` is one committed version of the whole database: its commit timestamp and one
immutable `KeyList` per index. Committing builds a new State from the old one and swaps
a single reference, so a reader that took a State keeps a consistent view without locks.
Documents are kept as `id -> (ts, blob, keys)` for the newest version plus a short
history of older versions for readers whose snapshot predates the newest commit;
versions that no registered snapshot can see are collected after each commit.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from .index import EMPTY, KeyList

Version = tuple  # (commit_ts, blob or None when deleted, index keys or None)
IndexKey = tuple  # (table, index name)


class State:
    """The committed database as of `ts`: an immutable KeyList per index."""

    __slots__ = ("ts", "indexes")

    def __init__(self, ts: int, indexes: dict[IndexKey, KeyList]) -> None:
        self.ts = ts
        self.indexes = indexes

    def index(self, key: IndexKey) -> KeyList:
        return self.indexes.get(key, EMPTY)


class Snapshot:
    """A registered read view; closing it lets the store collect what only it could see."""

    __slots__ = ("state", "ts", "_store", "_open")

    def __init__(self, store: Store, state: State) -> None:
        self.state = state
        self.ts = state.ts
        self._store = store
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._store._release(self.ts)


class Store:
    """Documents and indexes under multi-version concurrency control."""

    def __init__(self) -> None:
        self.state = State(0, {})
        self.docs: dict[str, Version] = {}
        self.history: dict[str, tuple[Version, ...]] = {}
        self._garbage: deque[tuple[int, str]] = deque()
        self._active: dict[int, int] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """Register and return a view of the newest committed state."""
        with self._lock:
            state = self.state
            ts = state.ts
            active = self._active
            active[ts] = active.get(ts, 0) + 1
        return Snapshot(self, state)

    def _release(self, ts: int) -> None:
        with self._lock:
            active = self._active
            n = active[ts] - 1
            if n:
                active[ts] = n
            else:
                del active[ts]

    def read(self, doc_id: str, ts: int) -> Version | None:
        """The version of `doc_id` visible at `ts`, or None (absent or deleted)."""
        version = self.docs.get(doc_id)
        if version is None:
            return None
        if version[0] > ts:
            for old in reversed(self.history.get(doc_id, ())):
                if old[0] <= ts:
                    return old if old[1] is not None else None
            return None
        return version if version[1] is not None else None

    def commit(self, docs: Iterable[tuple[str, bytes | None, tuple | None]],
               index_changes: dict[IndexKey, tuple[list, list]]) -> State:
        """Apply one transaction's final writes at the next timestamp and publish it.

        The caller serializes commits. `docs` gives each written id with its new blob and
        index keys (None, None for a delete); `index_changes` the keys removed and added.
        """
        old_state = self.state
        ts = old_state.ts + 1
        indexes = dict(old_state.indexes)
        for key, (removed, added) in index_changes.items():
            if removed or added:
                indexes[key] = indexes.get(key, EMPTY).with_changes(removed, added)
        live = self.docs
        history = self.history
        garbage = self._garbage
        for doc_id, blob, keys in docs:
            previous = live.get(doc_id)
            if previous is not None:
                history[doc_id] = history.get(doc_id, ()) + (previous,)
                garbage.append((ts, doc_id))
            if blob is None:
                if previous is None:
                    continue
                live[doc_id] = (ts, None, None)
                garbage.append((ts, doc_id))
            else:
                live[doc_id] = (ts, blob, keys)
        new_state = State(ts, indexes)
        with self._lock:
            self.state = new_state
        if garbage:
            self.collect()
        return new_state

    def collect(self) -> None:
        """Drop versions that no registered or future snapshot can see."""
        with self._lock:
            active = self._active
            horizon = min(active) if active else self.state.ts
        garbage = self._garbage
        live = self.docs
        history = self.history
        while garbage and garbage[0][0] <= horizon:
            ts, doc_id = garbage.popleft()
            old = history.get(doc_id)
            if old:
                if len(old) == 1:
                    del history[doc_id]
                else:
                    history[doc_id] = old[1:]
                continue
            version = live.get(doc_id)
            if version is not None and version[1] is None and version[0] <= horizon:
                del live[doc_id]

    def stats(self) -> dict[str, Any]:
        live = sum(1 for v in self.docs.values() if v[1] is not None)
        return {
            "documents": live,
            "versions": len(self.docs) + sum(len(h) for h in self.history.values()),
            "snapshots": sum(self._active.values()),
            "commit_ts": self.state.ts,
        }
