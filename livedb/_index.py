"""A sorted index of keys that readers scan while the one writer changes it.

The index holds a *superset* of the keys visible to any open snapshot: a commit adds
the keys of its new document versions at once, but keys that stopped being current are
removed only when no snapshot can need them (see _store.py). A scan therefore checks
each key against the document version its snapshot sees.

Layout (after sortedcontainers' SortedList): `root` is a list of sorted chunks and the
list of their maximums, so a lookup is two `bisect` calls in C. The writer changes a
chunk in place (an insert or a delete is one memmove) inside a sequence lock: `version`
is odd while a chunk is being changed, and a reader that sliced a chunk while the
version moved slices it again. Appending a key above every other key moves nothing, so
it needs no lock. A split, or a chunk emptied, builds new lists and swaps `root`; a
scan reads `root` again before each chunk and, if it was swapped, finds its place anew
from the last key it yielded. So every chunk a scan slices is current when sliced: a
key removed before then is not in it (the store's epoch tells a scan about removals
after, see _store.py). Keys added after a scan started are of commits its snapshot
cannot see, so missing them is harmless; what a scan must never do is miss or repeat a
key that was there when it started, and the sequence lock and the re-seek guarantee it.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

LOAD = 256
"""Chunks split at twice this length."""

Chunk = list[Any]


class SortedIndex:
    """Sorted unique keys (tuples, or plain strings) with lock-free reads."""

    __slots__ = ("root", "version")

    def __init__(self, keys: Iterable[Any] = ()) -> None:
        self.root: tuple[list[Chunk], list[Any]] = ([], [])
        self.version = 0
        """Even when no chunk is being changed in place; odd while one is."""
        initial = sorted(set(keys))
        if initial:
            self.replace(initial)

    def __len__(self) -> int:
        return sum(len(c) for c in self.root[0])

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self.slices(None, None))

    def __contains__(self, key: object) -> bool:
        for part in self.slices(key, None):
            return bool(part) and part[0] == key
        return False

    # -- reading ----------------------------------------------------------------------

    def irange(self, start: Any, end: Any, reverse: bool = False) -> Iterator[Any]:
        """The keys `k` with `start <= k < end` (None: unbounded), one at a time."""
        return chain.from_iterable(self.slices(start, end, reverse))

    def slices(self, start: Any, end: Any, reverse: bool = False) -> Iterator[Chunk]:
        """The keys `k` with `start <= k < end` (None: unbounded), as a series of lists
        (copies of chunk slices), ascending or, with `reverse`, descending.

        Between two lists the writer may change the index: a later list holds only keys
        past the last one yielded, so the keys come out in order, each once."""
        root = None
        i = 0
        chunks: list[Chunk] = []
        if not reverse:
            last = None
            while True:
                if self.root is not root:
                    root = self.root
                    chunks, maxes = root
                    if last is not None:
                        i = bisect_right(maxes, last)
                    else:
                        i = 0 if start is None else bisect_left(maxes, start)
                if i >= len(chunks):
                    return
                part, _lo, cut = self._slice(chunks[i], start, end, last, None)
                if part:
                    last = part[-1]
                    yield part
                if cut:
                    return
                i += 1
        else:
            first = None
            while True:
                if self.root is not root:
                    root = self.root
                    chunks, maxes = root
                    bound = end if first is None else first
                    i = len(maxes) - 1 if bound is None else min(bisect_left(maxes, bound),
                                                                   len(maxes) - 1)
                if i < 0:
                    return
                part, lo, _cut = self._slice(chunks[i], start, end, None, first)
                if part:
                    first = part[0]
                    part.reverse()
                    yield part
                if lo:
                    return
                i -= 1

    def _slice(self, chunk: Chunk, start: Any, end: Any, after: Any, before: Any
               ) -> tuple[Chunk, int, bool]:
        """`chunk[start <= k < end]`, and past `after` / before `before` (keys a scan has
        yielded already), taken under the sequence lock; where it starts in the chunk
        (> 0: keys below the range are here, so earlier chunks are out of range), and
        whether `end` cut it (later chunks are out of range)."""
        while True:
            version = self.version
            if version & 1:
                time.sleep(0)
                continue
            if after is not None:
                lo = bisect_right(chunk, after)
            elif start is None or not chunk or chunk[0] >= start:
                lo = 0
            else:
                lo = bisect_left(chunk, start)
            hi = len(chunk)
            cut = False
            if end is not None and hi and not chunk[hi - 1] < end:
                hi = bisect_left(chunk, end)
                cut = True
            if before is not None:
                hi = min(hi, bisect_left(chunk, before))
            part = chunk[lo:hi]
            if self.version == version:
                return part, lo, cut

    # -- writing (the caller serializes these) ---------------------------------------------

    def add(self, key: Any) -> None:
        """Insert `key` unless it is present."""
        chunks, maxes = self.root
        if not chunks:
            self.root = ([[key]], [key])
            return
        if key > maxes[-1]:
            last = chunks[-1]
            if len(last) < 2 * LOAD:
                last.append(key)
                maxes[-1] = key
            else:
                self.root = (chunks + [[key]], maxes + [key])
            return
        i = bisect_left(maxes, key)
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        if j < len(chunk) and chunk[j] == key:
            return
        if len(chunk) < 2 * LOAD:
            self.version += 1
            chunk.insert(j, key)
            self.version += 1
            return
        grown = chunk[:]
        grown.insert(j, key)
        half = len(grown) >> 1
        left, right = grown[:half], grown[half:]
        self.root = (chunks[:i] + [left, right] + chunks[i + 1:],
                     maxes[:i] + [left[-1], right[-1]] + maxes[i + 1:])

    def discard(self, key: Any) -> None:
        """Remove `key` if it is present."""
        chunks, maxes = self.root
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            return
        if len(chunk) == 1:
            self.root = (chunks[:i] + chunks[i + 1:], maxes[:i] + maxes[i + 1:])
            return
        self.version += 1
        del chunk[j]
        maxes[i] = chunk[-1]
        self.version += 1

    def update(self, removed: Iterable[Any], added: Iterable[Any]) -> None:
        """Remove and add many keys: key by key when few, by rebuilding when many."""
        removed = list(removed)
        added = list(added)
        changes = len(removed) + len(added)
        if changes <= 32 or changes * 16 < len(self):
            for key in removed:
                self.discard(key)
            for key in added:
                self.add(key)
            return
        keys: list[Any] = list(chain.from_iterable(self.root[0]))
        if removed:
            gone = set(removed)
            keys = [k for k in keys if k not in gone]
        if added:
            keys.extend(added)
            keys.sort()
            keys = [k for i, k in enumerate(keys) if not i or k != keys[i - 1]]
        self.replace(keys)

    def replace(self, keys: list[Any]) -> None:
        """Replace every key with `keys`, which must be sorted and unique (as when opening:
        one pass, no comparisons)."""
        chunks = [keys[i:i + LOAD] for i in range(0, len(keys), LOAD)]
        self.root = (chunks, [c[-1] for c in chunks])

    def _check(self) -> None:
        """Assert the invariants: chunks non-empty, at most 2 * LOAD long, sorted within and
        across, `maxes` their last keys, the sequence lock released."""
        chunks, maxes = self.root
        assert self.version % 2 == 0, "the sequence lock is held"
        assert len(chunks) == len(maxes)
        previous = None
        for chunk, biggest in zip(chunks, maxes, strict=True):
            assert chunk, "an empty chunk"
            assert len(chunk) <= 2 * LOAD, "an overgrown chunk"
            assert chunk[-1] == biggest, "maxes out of date"
            for key in chunk:
                assert previous is None or previous < key, "keys out of order or repeated"
                previous = key


EMPTY = SortedIndex()
"""The index of a table or index nothing was ever written to."""
