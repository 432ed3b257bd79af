"""Multi-thread tests: no lost updates, serializable transfers, snapshot reads that
never block writers."""

from __future__ import annotations

import random
import threading
import time

import pytest
from threadkit import run_threads

import livedb
from livedb import AppError, define_schema, define_table, mutation, query, v

pytestmark = pytest.mark.usefixtures("frequent_thread_switches")

SCHEMA = define_schema({
    "counters": define_table({"n": v.int64()}),
    "accounts": define_table({"owner": v.string(), "balance": v.int64()})
    .index("by_owner", ["owner"]),
    "items": define_table({"k": v.int64(), "gen": v.int64(), "tag": v.string()})
    .index("by_k", ["k"]),
})


# -- lost updates ------------------------------------------------------------------------

@mutation(args={"id": v.id("counters")})
def increment(ctx, id):
    doc = ctx.db.get(id)
    ctx.db.patch(id, {"n": doc["n"] + 1})
    return doc["n"] + 1


def test_concurrent_increments_lose_nothing():
    db = livedb.Database(SCHEMA)
    counter = db.mutation(lambda ctx: ctx.db.insert("counters", {"n": 0}))
    seen: list[list[int]] = [[] for _ in range(8)]

    def worker(i: int):
        def run():
            for _ in range(500):
                seen[i].append(db.mutation(increment, {"id": counter}))

        return run

    run_threads([worker(i) for i in range(8)])
    db._check()
    assert db.query(lambda ctx: ctx.db.get(counter))["n"] == 4000
    # every increment observed a distinct value: the mutations were serialized
    everything = sorted(x for s in seen for x in s)
    assert everything == list(range(1, 4001))
    for s in seen:  # within one thread, commits are observed in order
        assert s == sorted(s)


# -- bank transfers ------------------------------------------------------------------------

N_ACCOUNTS = 12
START_BALANCE = 100
TOTAL = N_ACCOUNTS * START_BALANCE


@mutation(args={"src": v.id("accounts"), "dst": v.id("accounts"), "amount": v.int64()})
def transfer(ctx, src, dst, amount):
    a = ctx.db.get(src)
    b = ctx.db.get(dst)
    # debit first, then refuse: the refusal must undo the debit already written
    ctx.db.patch(src, {"balance": a["balance"] - amount})
    if a["balance"] - amount < 0:
        raise AppError({"code": "insufficient", "balance": a["balance"]})
    ctx.db.patch(dst, {"balance": b["balance"] + amount})


@query
def balances(ctx):
    return [d["balance"] for d in ctx.db.query("accounts").collect()]


@query
def balances_by_index(ctx):
    return [d["balance"] for d in ctx.db.query("accounts").with_index("by_owner")
            .order("desc")]


def test_bank_transfers_keep_total_constant():
    db = livedb.Database(SCHEMA)
    ids = db.mutation(lambda ctx: [
        ctx.db.insert("accounts", {"owner": f"o{i:02d}", "balance": START_BALANCE})
        for i in range(N_ACCOUNTS)])
    writers_done = threading.Event()
    committed = [0] * 4
    refused = [0] * 4
    reads = [0] * 3

    def writer(w: int):
        def run():
            rng = random.Random(w)
            for _ in range(400):
                src, dst = rng.sample(ids, 2)
                amount = rng.randint(1, 80)
                try:
                    db.mutation(transfer, {"src": src, "dst": dst, "amount": amount})
                    committed[w] += 1
                except AppError as e:
                    assert e.data["code"] == "insufficient"
                    assert e.data["balance"] < amount
                    refused[w] += 1

        return run

    def reader(r: int):
        def run():
            fn = balances if r % 2 == 0 else balances_by_index
            while True:
                done = writers_done.is_set()
                got = db.query(fn)
                assert len(got) == N_ACCOUNTS
                assert sum(got) == TOTAL, got
                assert min(got) >= 0, got
                reads[r] += 1
                if done:
                    return

        return run

    def writers():
        try:
            run_threads([writer(w) for w in range(4)])
        finally:
            writers_done.set()

    run_threads([writers] + [reader(r) for r in range(3)])
    db._check()
    final = db.query(balances)
    assert sum(final) == TOTAL
    assert min(final) >= 0
    assert sum(committed) + sum(refused) == 1600
    assert sum(committed) > 100 and sum(refused) > 10, (committed, refused)
    assert all(n > 1 for n in reads), reads


# -- long readers see one snapshot and do not block writers ----------------------------------

def _state(db: livedb.Database) -> list[dict]:
    return db.query(lambda ctx: ctx.db.query("items").collect())


def test_long_reader_sees_one_snapshot_and_never_blocks_the_writer():
    db = livedb.Database(SCHEMA)
    ids = db.mutation(lambda ctx: [
        ctx.db.insert("items", {"k": k, "gen": 0, "tag": "orig"}) for k in range(20)])
    before = _state(db)
    started = threading.Event()
    release = threading.Event()
    reader_done = threading.Event()
    out: dict = {}

    def slow(doc):
        if not started.is_set():
            started.set()
            out["released"] = release.wait(10)
        else:
            time.sleep(0.001)
        return True

    def reader_fn(ctx):
        scanned = [doc for doc in ctx.db.query("items").filter(slow)]
        # further reads in the same query stay at the same snapshot
        by_index = ctx.db.query("items").with_index("by_k").collect()
        gets = [ctx.db.get(i) for i in ids]
        return [scanned, by_index, gets]

    def reader():
        try:
            out["result"] = db.query(reader_fn)
        finally:
            reader_done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert started.wait(5)

    # the writer commits while the reader is parked inside its query
    t0 = time.monotonic()
    new_ids = []
    for k in range(20, 30):
        new_ids.append(db.mutation(
            lambda ctx, k=k: ctx.db.insert("items", {"k": k, "gen": 1, "tag": "new"})))
    for i in ids[:10]:
        db.mutation(lambda ctx, i=i: ctx.db.patch(i, {"gen": 1, "tag": "patched"}))
    for i in ids[10:15]:
        db.mutation(lambda ctx, i=i: ctx.db.delete(i))
    db.mutation(lambda ctx: [ctx.db.replace(i, {"k": -1, "gen": 2, "tag": "replaced"})
                             for i in ids[15:]])
    writer_seconds = time.monotonic() - t0
    assert not reader_done.is_set(), "the reader finished before the writer: not a real test"
    after = _state(db)
    assert len(after) == 25
    release.set()
    thread.join(10)
    assert reader_done.is_set()
    assert out.get("released") is True
    assert writer_seconds < 5.0
    scanned, by_index, gets = out["result"]
    assert scanned == before
    assert by_index == sorted(before, key=lambda d: d["k"])
    assert gets == before
    # and the writes are all there afterwards
    assert _state(db) == after
    assert {d["_id"] for d in after} == set(ids[:10] + ids[15:] + new_ids)
    db._check()


@mutation(args={"gen": v.int64()})
def bump_all(ctx, gen):
    for doc in ctx.db.query("items").collect():
        ctx.db.patch(doc["_id"], {"gen": gen})


def test_slow_readers_never_see_a_torn_commit():
    """Every mutation sets `gen` on all documents: a scan, however slow and however many
    commits land during it, sees one value of `gen` throughout."""
    db = livedb.Database(SCHEMA)
    db.mutation(lambda ctx: [ctx.db.insert("items", {"k": k, "gen": 0, "tag": "x"})
                             for k in range(30)])
    stop = threading.Event()
    seen_gens: list[set[int]] = [set() for _ in range(3)]

    def writer():
        gen = 0
        while not stop.is_set() and gen < 5000:
            gen += 1
            db.mutation(bump_all, {"gen": gen})

    def reader(r: int):
        def run():
            def slow(doc):
                time.sleep(0.0002)
                return True

            for _ in range(8):
                for order in ("asc", "desc"):
                    docs = db.query(lambda ctx, order=order: ctx.db.query("items")
                                    .with_index("by_k").order(order).filter(slow).collect())
                    gens = {d["gen"] for d in docs}
                    assert len(docs) == 30
                    assert len(gens) == 1, gens
                    seen_gens[r] |= gens

        return run

    def readers():
        try:
            run_threads([reader(r) for r in range(3)])
        finally:
            stop.set()

    run_threads([writer, readers])
    db._check()
    # the writer was making progress while the readers scanned
    assert len(set().union(*seen_gens)) > 3, seen_gens


# -- index scans under concurrent index changes ------------------------------------------

SCAN_SCHEMA = define_schema({
    "meta": define_table({"seq": v.int64()}),
    "rows": define_table({"k": v.int64(), "w": v.int64()}).index("by_k", ["k"]),
})


def test_index_scans_match_a_committed_state_while_keys_move():
    """One writer inserts, deletes and moves documents along an index (each mutation also
    bumps a sequence number); slow readers scan index ranges. Every scan must equal the
    writer's model at exactly the sequence number the same query read."""
    db = livedb.Database(SCAN_SCHEMA)
    meta = db.mutation(lambda ctx: ctx.db.insert("meta", {"seq": 0}))
    states: dict[int, dict[str, dict]] = {0: {}}
    stop = threading.Event()
    checked = [0]

    def writer():
        rng = random.Random(7)
        model: dict[str, dict] = {}
        for seq in range(1, 1200):
            if stop.is_set():
                break
            ops = []
            for _ in range(rng.randint(1, 4)):
                live = sorted(model)
                choice = rng.random()
                if choice < 0.4 or len(live) < 5:
                    ops.append(("insert", None, {"k": rng.randint(0, 40), "w": seq}))
                elif choice < 0.7:
                    ops.append(("patch", rng.choice(live), {"k": rng.randint(0, 40), "w": seq}))
                elif choice < 0.8:
                    ops.append(("replace", rng.choice(live), {"k": rng.randint(0, 40), "w": -seq}))
                else:
                    ops.append(("delete", rng.choice(live), None))
                if ops[-1][0] != "insert" and ops[-1][1] in model:
                    if ops[-1][0] == "delete":
                        del model[ops[-1][1]]
                    else:
                        model[ops[-1][1]] = {**model[ops[-1][1]], **ops[-1][2]}
                elif ops[-1][0] != "insert":
                    ops.pop()  # already deleted in this batch

            def apply(ctx, ops=ops, seq=seq):
                made = []
                for op, target, body in ops:
                    if op == "insert":
                        made.append(ctx.db.get(ctx.db.insert("rows", body)))
                    elif op == "patch":
                        ctx.db.patch(target, body)
                    elif op == "replace":
                        ctx.db.replace(target, body)
                    else:
                        ctx.db.delete(target)
                ctx.db.patch(meta, {"seq": seq})
                return made

            for doc in db.mutation(apply):
                model[doc["_id"]] = doc
            states[seq] = {i: dict(d) for i, d in model.items()}
            if seq % 50 == 0:
                time.sleep(0.001)  # let readers start scans at many different points
        stop.set()

    def reader(r: int):
        def run():
            rng = random.Random(100 + r)
            while not stop.is_set():
                lo, hi = sorted(rng.sample(range(-1, 42), 2))
                order = rng.choice(["asc", "desc"])
                shape = rng.choice(["all", "eq", "range", "gt"])
                limit = rng.choice([None, None, 3, 10])

                def rng_fn(q, shape=shape, lo=lo, hi=hi):
                    if shape == "eq":
                        return q.eq("k", lo)
                    if shape == "range":
                        return q.gte("k", lo).lt("k", hi)
                    if shape == "gt":
                        return q.gt("k", lo)
                    return q

                def slow(doc):
                    time.sleep(0)  # give the writer the GIL mid-scan
                    return True

                def fn(ctx, order=order, limit=limit, rng_fn=rng_fn):
                    seq = ctx.db.get(meta)["seq"]
                    q = ctx.db.query("rows").with_index("by_k", rng_fn).order(order)
                    q = q.filter(slow)
                    docs = q.collect() if limit is None else q.take(limit)
                    return {"seq": seq, "docs": docs}

                got = db.query(fn)
                deadline = time.monotonic() + 5
                while got["seq"] not in states:
                    assert time.monotonic() < deadline
                    time.sleep(0.0005)
                state = states[got["seq"]]

                def keep(d, shape=shape, lo=lo, hi=hi):
                    k = d["k"]
                    return {"all": True, "eq": k == lo, "range": lo <= k < hi,
                            "gt": k > lo}[shape]

                expected = sorted((d for d in state.values() if keep(d)),
                                  key=lambda d: (d["k"], d["_creation_time"]),
                                  reverse=order == "desc")
                if limit is not None:
                    expected = expected[:limit]
                assert got["docs"] == expected, (got["seq"], shape, lo, hi, order, limit)
                checked[0] += 1

        return run

    def timer():
        stop.wait(3.0)
        stop.set()

    run_threads([writer, timer] + [reader(r) for r in range(3)])
    db._check()
    assert checked[0] > 30, checked
    assert max(states) > 100
    final = db.query(lambda ctx: ctx.db.query("rows").with_index("by_k").collect())
    assert final == sorted(states[max(states)].values(),
                           key=lambda d: (d["k"], d["_creation_time"]))
