"""Old versions are collected: a hot document patched 100,000 times leaves memory flat,
and a snapshot held open keeps exactly what it can see until it ends."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import livedb
from livedb import define_schema, define_table, mutation, v

SCHEMA = define_schema({
    "items": define_table({"n": v.int64(), "tag": v.string()}).index("by_n", ["n"]),
})


@mutation(args={"id": v.id("items"), "n": v.int64()})
def set_n(ctx, id, n):
    ctx.db.patch(id, {"n": n})


def _get(db: livedb.Database, doc_id: str) -> dict | None:
    return db.query(lambda ctx: ctx.db.get(doc_id))


def test_100k_patches_of_one_document_leave_memory_flat():
    db = livedb.Database(SCHEMA)
    doc_id = db.mutation(lambda ctx: ctx.db.insert("items", {"n": 0, "tag": "hot"}))
    # warm up caches (function resolution, validators, interned strings)
    for n in range(1, 1001):
        db.mutation(set_n, {"id": doc_id, "n": n})
    gc.collect()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for n in range(1001, 101_001):
            db.mutation(set_n, {"id": doc_id, "n": n})
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = current - baseline
    assert growth < 2 * 1024 * 1024, f"memory grew by {growth} bytes over 100k patches"
    stats = db.stats()
    assert stats["documents"] == 1
    assert stats["versions"] == 1
    doc = _get(db, doc_id)
    assert doc["n"] == 101_000
    by_n = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_n", lambda q: q.eq("n", 101_000)).collect())
    assert by_n == [doc]


def test_deleted_documents_are_collected():
    db = livedb.Database(SCHEMA)
    for _ in range(50):
        ids = db.mutation(lambda ctx: [ctx.db.insert("items", {"n": i, "tag": "t"})
                                       for i in range(20)])
        db.mutation(lambda ctx, ids=ids: [ctx.db.delete(i) for i in ids])
    stats = db.stats()
    assert stats["documents"] == 0
    assert stats["versions"] == 0


def test_open_snapshot_keeps_its_versions_until_it_ends():
    db = livedb.Database(SCHEMA)
    doc_id = db.mutation(lambda ctx: ctx.db.insert("items", {"n": 0, "tag": "held"}))
    other = db.mutation(lambda ctx: ctx.db.insert("items", {"n": -1, "tag": "gone"}))
    original = _get(db, doc_id)
    original_other = _get(db, other)
    idle_snapshots = db.stats()["snapshots"]  # internal pins the database keeps anyway
    started = threading.Event()
    release = threading.Event()
    out: dict = {}

    def hold(doc):
        if not started.is_set():
            started.set()
            out["released"] = release.wait(10)
        return True

    def reader_fn(ctx):
        first = ctx.db.query("items").filter(hold).collect()
        # after the writer's commits, the snapshot still reads its own versions
        again = ctx.db.get(doc_id)
        gone = ctx.db.get(other)
        by_n = ctx.db.query("items").with_index("by_n").collect()
        return [first, again, gone, by_n]

    def reader():
        out["result"] = db.query(reader_fn)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        for n in range(1, 2001):
            db.mutation(set_n, {"id": doc_id, "n": n})
        db.mutation(lambda ctx: ctx.db.delete(other))
        # the reader's versions are kept while it is open: more than one per live doc
        held = db.stats()
        assert held["snapshots"] == idle_snapshots + 1
        assert held["versions"] >= 2
        assert _get(db, doc_id)["n"] == 2000
        assert _get(db, other) is None
    finally:
        release.set()
        thread.join(10)
    assert out.get("released") is True
    first, again, gone, by_n = out["result"]
    assert first == [original, original_other]
    assert again == original
    assert gone == original_other
    assert by_n == [original_other, original]

    # once the snapshot has ended, the next commit collects everything it pinned
    assert db.stats()["snapshots"] == idle_snapshots
    db.mutation(set_n, {"id": doc_id, "n": 2001})
    stats = db.stats()
    assert stats["documents"] == 1
    assert stats["versions"] == 1
    assert _get(db, doc_id)["n"] == 2001


def test_collection_never_takes_a_version_an_open_snapshot_reads():
    """Many overlapping snapshots while one document is patched as fast as possible: each
    query reads the same version (and finds it through the index) from start to end."""
    db = livedb.Database(SCHEMA)
    doc_id = db.mutation(lambda ctx: ctx.db.insert("items", {"n": 0, "tag": "hot"}))
    idle_snapshots = db.stats()["snapshots"]  # internal pins the database keeps anyway
    stop = threading.Event()
    errors: list[BaseException] = []
    checks = [0]

    def reader_fn(ctx):
        first = ctx.db.get(doc_id)
        for _ in range(3):
            threading.Event().wait(0.0005)
            assert ctx.db.get(doc_id) == first
            found = ctx.db.query("items").with_index(
                "by_n", lambda q: q.eq("n", first["n"])).collect()
            assert found == [first]
            assert ctx.db.query("items").with_index("by_n").order("desc").collect() == [first]
        return first["n"]

    def reader():
        try:
            last = -1
            while not stop.is_set():
                n = db.query(reader_fn)
                assert n >= last  # snapshots never go backwards
                last = n
                checks[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    n = 0
    deadline = time.monotonic() + 10
    try:
        while (n < 2000 or checks[0] < 30) and time.monotonic() < deadline:
            if stop.is_set():
                break
            n += 1
            db.mutation(set_n, {"id": doc_id, "n": n})
            if n % 20 == 0:
                time.sleep(0.0001)  # pace the writer a little so the readers get turns
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    if errors:
        raise errors[0]
    assert checks[0] >= 30
    db.mutation(set_n, {"id": doc_id, "n": -1})
    stats = db.stats()
    assert stats["snapshots"] == idle_snapshots
    assert stats["versions"] == 1


def test_old_snapshot_scan_cost_is_not_quadratic_in_newer_versions():
    """A scan at an old snapshot skips the index keys of newer versions; that must not cost
    a walk through the document's whole history per key (8,000 newer versions of one
    document: linear work is a few milliseconds, a history walk per key takes seconds)."""
    db = livedb.Database(SCHEMA)
    doc_id = db.mutation(lambda ctx: ctx.db.insert("items", {"n": 0, "tag": "hot"}))
    original = _get(db, doc_id)
    started = threading.Event()
    release = threading.Event()
    out: dict = {}

    def old_reader(ctx):
        started.set()
        out["released"] = release.wait(10)
        t0 = time.perf_counter()
        docs = ctx.db.query("items").with_index("by_n").collect()
        out["seconds"] = time.perf_counter() - t0
        return docs

    def run():
        out["docs"] = db.query(old_reader)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        for n in range(1, 8001):
            db.mutation(set_n, {"id": doc_id, "n": n})
    finally:
        release.set()
        thread.join(30)
    assert out["released"] is True
    assert out["docs"] == [original]
    assert out["seconds"] < 0.25, f"old-snapshot scan of one document took {out['seconds']:.2f} s"
