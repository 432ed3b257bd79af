"""A persistent sorted list of index keys.

`KeyList` is never changed in place: `with_changes` returns a new list that shares every
untouched chunk with the old one. A reader holding a `KeyList` therefore sees one fixed
version, whatever writers do meanwhile; versions no reader holds any more are freed by
reference counting. The shape follows sortedcontainers' SortedList (a list of sorted
chunks and the list of their maximums) so both lookups are `bisect` calls in C.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from itertools import chain

LOAD = 512
"""Chunks are split at twice this length; a single-key change copies about this much."""


class KeyList:
    """An immutable sorted sequence of unique keys (tuples) with range iteration."""

    __slots__ = ("chunks", "maxes", "size")

    def __init__(self, chunks: list[list] | None = None, maxes: list | None = None,
                 size: int = 0) -> None:
        self.chunks: list[list] = chunks if chunks is not None else []
        self.maxes: list = maxes if maxes is not None else []
        self.size = size

    @classmethod
    def from_sorted(cls, keys: list) -> KeyList:
        chunks = [keys[i:i + LOAD] for i in range(0, len(keys), LOAD)]
        return cls(chunks, [c[-1] for c in chunks], len(keys))

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator:
        return chain.from_iterable(self.chunks)

    def __contains__(self, key: object) -> bool:
        maxes = self.maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        chunk = self.chunks[i]
        j = bisect_left(chunk, key)
        return chunk[j] == key

    def irange(self, start: tuple, end: tuple, reverse: bool = False) -> Iterator[tuple]:
        """Keys `k` with `start <= k < end`, ascending or (with `reverse`) descending."""
        maxes = self.maxes
        chunks = self.chunks
        n = len(maxes)
        if not reverse:
            i = bisect_left(maxes, start)
            if i == n:
                return
            lo = bisect_left(chunks[i], start)
            while i < n:
                chunk = chunks[i]
                if maxes[i] < end:
                    yield from chunk[lo:] if lo else chunk
                else:
                    yield from chunk[lo:bisect_left(chunk, end)]
                    return
                lo = 0
                i += 1
        else:
            i = bisect_left(maxes, end)
            if i == n:
                i -= 1
                if i < 0:
                    return
                hi = len(chunks[i])
            else:
                hi = bisect_left(chunks[i], end)
            while i >= 0:
                chunk = chunks[i]
                if chunk[0] >= start:
                    yield from reversed(chunk[:hi])
                else:
                    lo = bisect_left(chunk, start)
                    yield from reversed(chunk[lo:hi])
                    return
                i -= 1
                if i >= 0:
                    hi = len(chunks[i])

    def with_changes(self, removed: Iterable[tuple], added: Iterable[tuple]) -> KeyList:
        """A new KeyList without `removed` (which must be present) and with `added`."""
        removed = list(removed)
        added = list(added)
        changes = len(removed) + len(added)
        if not changes:
            return self
        if changes > 64 and changes * 8 > self.size:
            return self._rebuilt(removed, added)
        chunks = list(self.chunks)
        maxes = list(self.maxes)
        copied: set[int] = set()
        for key in removed:
            i = bisect_left(maxes, key)
            if i == len(maxes):
                raise KeyError(key)
            chunk = chunks[i]
            if i not in copied:
                chunk = chunks[i] = list(chunk)
                copied.add(i)
            j = bisect_left(chunk, key)
            if j == len(chunk) or chunk[j] != key:
                raise KeyError(key)
            del chunk[j]
            if not chunk:
                del chunks[i]
                del maxes[i]
                copied = {c - (c > i) for c in copied if c != i}
            elif j == len(chunk):
                maxes[i] = chunk[-1]
        for key in added:
            if not chunks:
                chunks.append([key])
                maxes.append(key)
                copied.add(0)
                continue
            i = bisect_left(maxes, key)
            if i == len(maxes):
                i -= 1
            chunk = chunks[i]
            if i not in copied:
                chunk = chunks[i] = list(chunk)
                copied.add(i)
            insort(chunk, key)
            maxes[i] = chunk[-1]
            if len(chunk) > 2 * LOAD:
                half = len(chunk) >> 1
                chunks[i:i + 1] = [chunk[:half], chunk[half:]]
                maxes[i:i + 1] = [chunk[half - 1], chunk[-1]]
                copied = {c + (c > i) for c in copied}
                copied.add(i + 1)
        return KeyList(chunks, maxes, self.size - len(removed) + len(added))

    def _rebuilt(self, removed: list, added: list) -> KeyList:
        if removed:
            gone = set(removed)
            keys = [k for k in chain.from_iterable(self.chunks) if k not in gone]
            if len(keys) != self.size - len(gone):
                raise KeyError("removed keys are not all present")
        else:
            keys = list(chain.from_iterable(self.chunks))
        keys.extend(added)
        keys.sort()
        return KeyList.from_sorted(keys)


EMPTY = KeyList()
