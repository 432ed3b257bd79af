"""Crash tests: a child process commits multi-document mutations from two threads and
prints each one `db.mutation` acknowledged; we SIGKILL it at random moments, round after
round on the same file, reopen, and check that every acknowledged commit is there and
that no mutation is ever half-applied."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from livedb import Database, define_schema, define_table, v

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = define_schema({
    "groups": define_table({"round": v.int64(), "n": v.int64(), "size": v.int64()}),
    "items": define_table({"round": v.int64(), "n": v.int64(), "k": v.int64(),
                           "pad": v.string()}).index("by_group", ["round", "n"]),
    "counters": define_table({"groups": v.int64(), "items": v.int64()}),
    "scratch": define_table({"round": v.int64(), "n": v.int64()}),
    "pruned": define_table({"round": v.int64(), "n": v.int64()}),
})
KEEP = 40
"""Groups kept: each commit beyond them deletes the oldest group (and records it)."""

CHILD = """
    import random, sys, threading
    sys.path.insert(0, sys.argv[4])
    from livedb import Database, mutation
    from test_crash import KEEP, PAD, SCHEMA

    path, round_, durability = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    db = Database(SCHEMA, path=path, durability=durability)
    counter = db.mutation(lambda ctx: (ctx.db.query("counters").first() or {}).get("_id")
                          or ctx.db.insert("counters", {"groups": 0, "items": 0}))
    out = threading.Lock()

    @mutation
    def commit_group(ctx, round, n, size):
        for k in range(size):
            ctx.db.insert("items", {"round": round, "n": n, "k": k, "pad": PAD})
        ctx.db.insert("groups", {"round": round, "n": n, "size": size})
        total = ctx.db.get(counter)
        groups, items = total["groups"] + 1, total["items"] + size
        if groups > KEEP:
            oldest = ctx.db.query("groups").first()
            key = (oldest["round"], oldest["n"])
            for item in ctx.db.query("items").with_index(
                    "by_group", lambda q: q.eq("round", key[0]).eq("n", key[1])):
                ctx.db.delete(item["_id"])
            ctx.db.delete(oldest["_id"])
            ctx.db.insert("pruned", {"round": key[0], "n": key[1]})
            groups, items = groups - 1, items - oldest["size"]
        ctx.db.patch(counter, {"groups": groups, "items": items})
        for old in ctx.db.query("scratch").collect():
            ctx.db.delete(old["_id"])
        ctx.db.insert("scratch", {"round": round, "n": n})

    def writer(thread):
        rng = random.Random()
        for i in range(1_000_000):
            n = thread * 1_000_000 + i
            size = rng.choice([1, 2, 3, 8, 30, 30, 400])
            db.mutation(commit_group, {"round": round_, "n": n, "size": size})
            with out:
                print(f"ack {round_} {n}", flush=True)

    with out:
        print("ready", flush=True)
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""

PAD = "p" * 40


def _all(db: Database, table: str) -> list[dict]:
    """Every document of `table`, page by page (a query result is limited to 1 MiB)."""
    docs: list[dict] = []
    cursor = None
    while True:
        page = db.query(lambda ctx, c=cursor: ctx.db.query(table).paginate(2000, c))
        docs.extend(page.page)
        if page.is_done:
            return docs
        cursor = page.continue_cursor


def _check(path: str, acknowledged: set[tuple[int, int]]) -> int:
    """Open after a crash; assert the invariants; return the number of groups committed."""
    with Database(SCHEMA, path=path) as db:
        groups, items, counters, scratch, pruned = (
            _all(db, t) for t in ("groups", "items", "counters", "scratch", "pruned"))
    present = {(g["round"], g["n"]) for g in groups}
    gone = {(p["round"], p["n"]) for p in pruned}
    missing = acknowledged - present - gone
    assert not missing, f"acknowledged commits lost: {sorted(missing)[:5]}"
    assert len(present) == len(groups), "a group was committed twice"
    assert not present & gone, "a pruned group is still there"
    assert len(groups) <= KEEP
    sizes: dict[tuple[int, int], int] = {}
    for item in items:
        assert item["pad"] == PAD
        key = (item["round"], item["n"])
        sizes[key] = sizes.get(key, 0) + 1
    for group in groups:
        key = (group["round"], group["n"])
        assert sizes.pop(key, 0) == group["size"], f"group {key} is half-applied"
    assert not sizes, f"items without their group: {sorted(sizes)[:5]}"
    if groups:
        (counter,) = counters
        assert (counter["groups"], counter["items"]) == (len(groups), len(items))
        newest = max(groups, key=lambda g: g["_creation_time"])
        assert [(s["round"], s["n"]) for s in scratch] == [(newest["round"], newest["n"])]
    else:
        assert not scratch and all(c["groups"] == 0 for c in counters)
    return len(present | gone)


def test_sigkill_at_random_moments_never_loses_or_splits_a_commit(tmp_path):
    path = str(tmp_path / "crash.livedb")
    rng = random.Random(20240607)
    acknowledged: set[tuple[int, int]] = set()
    code = textwrap.dedent(CHILD)
    rounds = 20
    acked_rounds = 0
    deadline = time.monotonic() + 20
    for round_ in range(rounds):
        durability = "full" if round_ % 2 == 0 else "normal"
        child = subprocess.Popen(
            [sys.executable, "-c", code, path, str(round_), durability,
             str(Path(__file__).parent)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        if round_ % 4 == 3:
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            assert child.stdout.readline() == "ready\n", child.stderr.read()
            time.sleep(rng.uniform(0.05, 0.5))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err
        acks = {(int(r), int(n)) for word, r, n in
                (line.split() for line in out.splitlines() if line.startswith("ack"))}
        acked_rounds += bool(acks)
        acknowledged |= acks
        present = _check(path, acknowledged)
        assert present >= len(acknowledged)
        if time.monotonic() > deadline:
            break
    assert acked_rounds >= 3, "the child hardly ever got to commit before it was killed"
    assert len(acknowledged) >= 30
