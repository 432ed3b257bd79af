"""A sorted index over encoded keys that readers scan while the writer changes it.

The index holds a *superset* of the keys visible to any open snapshot: a commit adds
the keys of its new document versions at once, but keys that stopped being current are
removed only when no snapshot can need them (the store collects them). A scan therefore
checks each key against the document version its snapshot sees, which it fetches anyway.

Layout (after sortedcontainers' SortedList): a list of sorted chunks and the list of
their maximums, so lookups are two `bisect` calls in C. Chunks are never changed in
place, except that a key above every other key is appended to the last chunk (readers
only ever take slices of chunks, bounded when taken, so an append cannot reach them);
otherwise the writer copies a chunk, changes the copy and stores it with one list item
assignment. Lists of chunks only ever change by item assignment; a split or a rebuild
builds new lists and swaps the `root` reference, so a scan that took the old root goes
on over a frozen, consistent structure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import chain

LOAD = 256
"""Chunks split at twice this length; a single-key change copies one chunk."""


class SortedIndex:
    """Sorted unique keys (tuples) with lock-free range scans and single-writer updates."""

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root: tuple[list[list], list] = ([], [])

    def __len__(self) -> int:
        return sum(len(c) for c in self.root[0])

    def __iter__(self) -> Iterator[tuple]:
        return iter([k for chunk in self.root[0] for k in chunk[:]])

    def __contains__(self, key: object) -> bool:
        chunks, maxes = self.root
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        return j < len(chunk) and chunk[j] == key

    def irange(self, start: tuple, end: tuple, reverse: bool = False) -> Iterator[tuple]:
        """Keys `k` with `start <= k < end`, ascending or (with `reverse`) descending."""
        return chain.from_iterable(self.slices(start, end, reverse))

    def slices(self, start: tuple, end: tuple, reverse: bool = False) -> Iterator[list]:
        """`irange` as a series of lists (chunk slices), for tight loops in the caller."""
        chunks, maxes = self.root
        n = len(chunks)
        if not n:
            return
        if not reverse:
            i = bisect_left(maxes, start)
            if i == n:
                return
            chunk = chunks[i]
            lo = bisect_left(chunk, start)
            while True:
                hi = len(chunk)
                if hi and chunk[hi - 1] < end:
                    yield chunk[lo:hi]
                else:
                    yield chunk[lo:bisect_left(chunk, end)]
                    return
                i += 1
                if i == n:
                    return
                chunk = chunks[i]
                lo = bisect_left(chunk, start) if chunk and chunk[0] < start else 0
        else:
            i = bisect_left(maxes, end)
            if i == n:
                i -= 1
            while i >= 0:
                chunk = chunks[i]
                hi = bisect_left(chunk, end)
                if chunk and chunk[0] >= start:
                    yield chunk[hi - 1::-1] if hi else []
                else:
                    lo = bisect_left(chunk, start)
                    yield chunk[hi - 1:lo - 1 if lo else None:-1] if hi > lo else []
                    return
                i -= 1

    # -- writer side (the caller serializes these) ------------------------------------

    def add(self, key: tuple) -> None:
        """Insert `key` unless present."""
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
        chunk = chunk[:]
        chunk.insert(j, key)
        if len(chunk) > 2 * LOAD:
            half = len(chunk) >> 1
            left, right = chunk[:half], chunk[half:]
            self.root = (chunks[:i] + [left, right] + chunks[i + 1:],
                         maxes[:i] + [left[-1], right[-1]] + maxes[i + 1:])
            return
        chunks[i] = chunk
        maxes[i] = chunk[-1]

    def discard(self, key: tuple) -> None:
        """Remove `key` if present."""
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
        chunk = chunk[:j] + chunk[j + 1:]
        chunks[i] = chunk
        maxes[i] = chunk[-1]

    def update(self, removed: Iterable[tuple], added: Iterable[tuple]) -> None:
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
        keys = list(chain.from_iterable(self.root[0]))
        if removed:
            gone = set(removed)
            keys = [k for k in keys if k not in gone]
        if added:
            keys.extend(added)
            keys.sort()
            keys = [k for i, k in enumerate(keys) if not i or k != keys[i - 1]]
        chunks = [keys[i:i + LOAD] for i in range(0, len(keys), LOAD)]
        self.root = (chunks, [c[-1] for c in chunks])


EMPTY = SortedIndex()
