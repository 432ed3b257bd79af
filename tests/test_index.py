"""The internal sorted index (`livedb._index.SortedIndex`) against a plain sorted-list model.

An internal unit test: the index is the structure every query scans, so it is checked
directly: random changes against a model, range scans with every kind of bound, chunk
splits, the bulk rebuild path, and that writers never change a chunk a scan may hold.
"""

from __future__ import annotations

import itertools
import random
import threading
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedb import _index as index_module
from livedb._index import SortedIndex

KEYS = st.integers(min_value=0, max_value=400).map(lambda n: (n, "k"))
OPERATION = st.one_of(
    st.tuples(st.just("add"), KEYS),
    st.tuples(st.just("discard"), KEYS),
    st.tuples(st.just("update"), st.lists(KEYS, max_size=80), st.lists(KEYS, max_size=80)),
)
BOUND = st.integers(min_value=-5, max_value=405).flatmap(
    lambda n: st.sampled_from([(n,), (n, "k"), (n, "k", 0), (n, "z")]))


def check_invariants(idx, model, load):
    """The chunked layout is well formed and holds exactly the model's keys."""
    chunks, maxes = idx.root
    assert len(chunks) == len(maxes)
    flat = []
    for chunk, top in zip(chunks, maxes, strict=True):
        assert chunk, "no empty chunks"
        assert chunk[-1] == top
        assert len(chunk) <= 2 * load
        flat.extend(chunk)
    assert flat == sorted(model)
    assert len(set(flat)) == len(flat)
    assert list(idx) == flat
    assert len(idx) == len(model)


def model_range(model, start, end, reverse):
    keys = [k for k in sorted(model) if start <= k < end]
    return keys[::-1] if reverse else keys


def apply(idx, model, op):
    if op[0] == "add":
        idx.add(op[1])
        model.add(op[1])
    elif op[0] == "discard":
        idx.discard(op[1])
        model.discard(op[1])
    else:
        _, removed, added = op
        idx.update(removed, added)
        model.difference_update(removed)
        model.update(added)


@pytest.mark.parametrize("load", [2, 16, None])
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(OPERATION, max_size=40), probes=st.lists(KEYS, max_size=10),
       bounds=st.lists(st.tuples(BOUND, BOUND, st.booleans()), max_size=10))
def test_random_changes_match_a_sorted_list(load, ops, probes, bounds):
    with pytest.MonkeyPatch.context() as mp:
        if load is not None:
            mp.setattr(index_module, "LOAD", load)
        effective = index_module.LOAD
        idx = SortedIndex()
        model: set = set()
        for op in ops:
            apply(idx, model, op)
            check_invariants(idx, model, effective)
        for key in probes:
            assert (key in idx) == (key in model)
        for start, end, reverse in bounds:
            assert list(idx.irange(start, end, reverse)) == model_range(model, start, end,
                                                                        reverse)


@pytest.mark.parametrize("load", [3, None])
@settings(max_examples=80, deadline=None)
@given(keys=st.sets(st.integers(0, 2000), max_size=300),
       bounds=st.lists(st.tuples(st.integers(-10, 2010), st.integers(-10, 2010)), max_size=20))
def test_irange_with_bounds_in_both_directions(load, keys, bounds):
    with pytest.MonkeyPatch.context() as mp:
        if load is not None:
            mp.setattr(index_module, "LOAD", load)
        idx = SortedIndex()
        idx.update((), [(k,) for k in keys])
        model = {(k,) for k in keys}
        for lo, hi in bounds:
            for start, end in (((lo,), (hi,)), ((lo, 0), (hi, 0)), ((), (hi,)), ((lo,), (99999,))):
                for reverse in (False, True):
                    assert list(idx.irange(start, end, reverse)) == \
                        model_range(model, start, end, reverse)


def test_irange_edges():
    idx = SortedIndex()
    assert list(idx.irange((0,), (10,))) == []
    assert list(idx.irange((0,), (10,), True)) == []
    for k in range(10):
        idx.add((k,))
    assert list(idx.irange((3,), (6,))) == [(3,), (4,), (5,)]  # start inclusive, end exclusive
    assert list(idx.irange((3,), (6,), True)) == [(5,), (4,), (3,)]
    assert list(idx.irange((3, 0), (6,))) == [(4,), (5,)]  # just above (3,)
    assert list(idx.irange((3,), (5, 0))) == [(3,), (4,), (5,)]  # just above (5,)
    assert list(idx.irange((5,), (5,))) == []
    assert list(idx.irange((6,), (3,))) == []
    assert list(idx.irange((6,), (3,), True)) == []
    assert list(idx.irange((), (100,))) == [(k,) for k in range(10)]
    assert list(idx.irange((-1,), (0,))) == []
    assert list(idx.irange((10,), (100,), True)) == []


def test_add_is_idempotent_and_discard_of_missing_is_a_no_op():
    idx = SortedIndex()
    for key in [(1,), (2,), (1,), (3,), (2,)]:
        idx.add(key)
    assert list(idx) == [(1,), (2,), (3,)]
    idx.discard((5,))
    idx.discard((0,))
    idx.discard((2, 0))
    assert list(idx) == [(1,), (2,), (3,)]
    idx.discard((2,))
    idx.discard((2,))
    assert list(idx) == [(1,), (3,)]
    for key in [(1,), (3,)]:
        idx.discard(key)
    assert list(idx) == [] and len(idx) == 0
    assert (1,) not in idx
    idx.add((7,))
    assert list(idx) == [(7,)]


def test_chunk_splits_beyond_twice_load():
    load = index_module.LOAD
    total = 2 * load * 3 + 17
    rng = random.Random(7)
    keys = [(rng.random(), i) for i in range(total)]
    idx = SortedIndex()
    model: set = set()
    for n, key in enumerate(keys):
        idx.add(key)
        model.add(key)
        if n in (2 * load, 2 * load + 1, total - 1):
            check_invariants(idx, model, load)
    chunks, _ = idx.root
    assert len(chunks) >= 3
    assert max(len(c) for c in chunks) <= 2 * load
    # ascending inserts (the common case: _creation_time, counters) split too
    seq = SortedIndex()
    for i in range(2 * load * 2 + 1):
        seq.add((i,))
    check_invariants(seq, {(i,) for i in range(2 * load * 2 + 1)}, load)
    assert len(seq.root[0]) >= 2
    # and descending inserts
    desc = SortedIndex()
    for i in reversed(range(2 * load * 2 + 1)):
        desc.add((i,))
    check_invariants(desc, {(i,) for i in range(2 * load * 2 + 1)}, load)


def test_discarding_every_key_of_a_chunk_removes_the_chunk():
    load = index_module.LOAD
    idx = SortedIndex()
    n = 2 * load * 3
    for i in range(n):
        idx.add((i,))
    model = {(i,) for i in range(n)}
    first_chunk = list(idx.root[0][0])
    for key in first_chunk:
        idx.discard(key)
        model.discard(key)
    check_invariants(idx, model, load)
    for i in range(n):
        idx.discard((i,))
    assert idx.root == ([], []) or (idx.root[0] == [] and idx.root[1] == [])
    assert list(idx.irange((), (n + 1,))) == []


@pytest.mark.parametrize("existing", [0, 10, 500, 5000])
@pytest.mark.parametrize("removed_share", [0.0, 0.5, 1.0])
def test_bulk_update_rebuild_path(existing, removed_share):
    """Many changes at once (beyond the key-by-key threshold) give the same result."""
    load = index_module.LOAD
    rng = random.Random(existing)
    keys = [(i * 2,) for i in range(existing)]
    idx = SortedIndex()
    idx.update((), keys)
    model = set(keys)
    check_invariants(idx, model, load)
    removed = rng.sample(keys, int(existing * removed_share))
    added = [(rng.randrange(0, 4 * existing + 10) * 2 + 1,) for _ in range(max(100, existing))]
    added += added[:5] + [keys[0]] if keys else []  # duplicates and an already present key
    idx.update(removed, added)
    model.difference_update(removed)
    model.update(added)
    check_invariants(idx, model, load)
    for reverse in (False, True):
        assert list(idx.irange((), (10 ** 9,), reverse)) == model_range(model, (), (10 ** 9,),
                                                                        reverse)


def test_update_removes_before_it_adds():
    idx = SortedIndex()
    idx.update((), [(i,) for i in range(10)])
    idx.update([(3,), (4,)], [(4,), (20,)])
    assert list(idx) == [(i,) for i in range(10) if i != 3] + [(20,)]
    many_removed = [(i,) for i in range(10)]
    idx.update(many_removed + [(99,)] * 40, [(5,)] + [(i + 100,) for i in range(40)])
    assert list(idx) == [(5,), (20,)] + [(i + 100,) for i in range(40)]


def test_update_with_nothing_changes_nothing():
    idx = SortedIndex()
    idx.update((), [(1,), (2,)])
    root = idx.root
    idx.update((), ())
    assert idx.root is root
    assert list(idx) == [(1,), (2,)]


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("load", [2, 8, None])
def test_readers_never_miss_or_repeat_a_key_while_a_thread_writes_in_place(load):
    """Scans from several threads, while a writer thread inserts and deletes other keys in
    place (the sequence lock's case) and splits chunks: every key present throughout is
    yielded exactly once, in order."""
    with pytest.MonkeyPatch.context() as mp:
        if load is not None:
            mp.setattr(index_module, "LOAD", load)
        stable = [(i * 2,) for i in range(300)]
        idx = SortedIndex(stable)
        stop = threading.Event()
        problems: list[str] = []

        def writer():
            rng = random.Random(5)
            while not stop.is_set():
                key = (rng.randrange(600) * 2 + 1,)
                if rng.random() < 0.6:
                    idx.add(key)
                else:
                    idx.discard(key)

        def reader(reverse):
            for _ in range(150):
                got = [k for k in idx.irange((0,), (600,), reverse) if k[0] % 2 == 0]
                want = stable[::-1] if reverse else stable
                if got != want:
                    problems.append(f"reverse={reverse}: {len(got)} keys, not {len(want)}")
                    return

        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader, args=(r,)) for r in (False, True, False)]
        for thread in threads:
            thread.start()
        for thread in threads[1:]:
            thread.join(60)
        stop.set()
        threads[0].join(10)
        assert problems == []
        idx._check()


@pytest.mark.parametrize("load", [2, 8, None])
@settings(max_examples=40, deadline=None)
@given(initial=st.sets(KEYS, max_size=150), ops=st.lists(OPERATION, min_size=1, max_size=25),
       reverse=st.booleans(), consumed=st.integers(0, 200), start=BOUND, end=BOUND)
def test_scan_started_before_writes_stays_consistent(load, initial, ops, reverse, consumed,
                                                     start, end):
    """A scan that runs while the writer changes the index yields sorted, unique keys, and
    every key in its range that stays present throughout is yielded exactly once."""
    with pytest.MonkeyPatch.context() as mp:
        if load is not None:
            mp.setattr(index_module, "LOAD", load)
        idx = SortedIndex()
        idx.update((), sorted(initial))
        model = set(initial)
        scan = idx.irange(start, end, reverse)
        out = []
        for key in scan:
            out.append(key)
            if len(out) >= consumed:
                break
        throughout = set(model)
        for op in ops:
            apply(idx, model, op)
            throughout &= model
        out.extend(scan)
        assert out == sorted(out, reverse=reverse)
        assert len(set(out)) == len(out)
        assert all(start <= k < end for k in out)
        assert {k for k in throughout if start <= k < end} <= set(out)
        assert set(out) <= set(initial) | model | {
            k for op in ops for k in ([op[1]] if op[0] == "add" else
                                      op[2] if op[0] == "update" else [])}


@pytest.mark.parametrize("load", [2, 8])
@settings(max_examples=60, deadline=None)
@given(initial=st.sets(KEYS, min_size=1, max_size=150),
       ops=st.lists(OPERATION, min_size=1, max_size=25), reverse=st.booleans(),
       parts=st.integers(0, 20), start=BOUND, end=BOUND)
def test_a_chunk_sliced_after_removals_lacks_them(load, initial, ops, reverse, parts, start,
                                                   end):
    """A scan paused between two chunks while keys are added (splitting chunks, swapping
    the root) and removed slices every later chunk from the index as it is then: no key
    removed before a chunk is sliced comes out of it. (The store relies on this: a key
    collected before a chunk is sliced is not checked again.)"""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(index_module, "LOAD", load)
        idx = SortedIndex()
        idx.update((), sorted(initial))
        model = set(initial)
        scan = idx.slices(start, end, reverse)
        before = [key for part in itertools.islice(scan, parts) for key in part]
        for op in ops:
            apply(idx, model, op)
        after = [key for part in scan for key in part]
        assert set(after) <= model, sorted(set(after) - model)
        out = before + after
        assert out == sorted(out, reverse=reverse) and len(set(out)) == len(out)
        assert {k for k in model & set(initial) if start <= k < end} <= set(out)


def test_a_scan_does_not_slice_a_chunk_from_before_a_split(monkeypatch):
    """A split swaps the root and keeps the old chunk list unchanged; a scan that kept
    the old root would go on to yield a key removed from the new chunks since."""
    monkeypatch.setattr(index_module, "LOAD", 2)
    idx = SortedIndex(range(0, 20, 2))
    scan = idx.slices(None, None)
    assert next(scan) == [0, 2]
    for key in (11, 13, 12.5):
        idx.add(key)
    idx.discard(14)
    assert [k for part in scan for k in part] == [4, 6, 8, 10, 11, 12, 12.5, 13, 16, 18]
    reverse = idx.slices(None, None, reverse=True)
    assert next(reverse) == [18, 16]
    for key in (1, 3, 2.5):
        idx.add(key)
    idx.discard(4)
    assert [k for part in reverse for k in part] == [13, 12.5, 12, 11, 10, 8, 6, 3, 2.5, 2,
                                                     1, 0]


def test_realistic_index_keys():
    """Keys shaped like livedb's: (encoded field, (8, creation_time, id))."""
    idx = SortedIndex()
    model = []
    rng = random.Random(3)
    for i in range(3000):
        field = rng.choice([(1,), (2, 0, rng.randint(0, 50)), (4, rng.choice("abc")),
                            (2, 0, rng.random()), (3, rng.random() < 0.5)])
        key = (field, (8, 1000.0 + i, f"t:{i:08x}"))
        idx.add(key)
        model.append(key)
    model.sort()
    assert list(idx) == model
    lo = bisect_left(model, ((2, 0, 10),))
    hi = bisect_left(model, ((2, 0, 20),))
    assert list(idx.irange(((2, 0, 10),), ((2, 0, 20),))) == model[lo:hi]
    assert list(idx.irange(((2, 0, 10),), ((2, 0, 20),), True)) == model[lo:hi][::-1]
