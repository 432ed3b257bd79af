"""One database shared by real processes, on SQLite (`shared=True`) and on PostgreSQL.

Every test runs on both engines, with worker processes from tests/sharedkit.py: bank
transfers from several processes and threads (serializable, nothing lost), live queries
re-run in another process exactly when a commit writes into what they read, kill -9 in
the middle of commits, and the scheduler run by several processes at once.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from typing import Any

import pytest
import sharedkit
from sharedkit import SCHEMA, spawn

from livedb import Database, DatabaseLockedError, LiveDBError
from livedb._database import reactive_of, shared_of


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
    """How to open the shared database: `Database(SCHEMA, **target)`."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "shared.livedb"), "shared": True}
    return {"url": request.getfixturevalue("postgres_url")}


def _lines(proc: Any, timeout: float = 60.0) -> list[str]:
    """The worker's output lines once it ended (closing its stdin ends the waiting roles)."""
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.stdin = None
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return out.splitlines()


def _expect(proc: Any, prefix: str) -> str:
    line = proc.stdout.readline()
    assert line.startswith(prefix), (line, proc.stderr.read() if not line else "")
    return line.strip()


def test_bank_transfers_from_three_processes_are_serializable(target):
    accounts = 6
    with Database(SCHEMA, **target) as db:
        ids = db.mutation(sharedkit.open_accounts, {"n": accounts, "balance": 1000})
        expected = accounts * 1000
        workers = [spawn("bank", target=target, accounts=ids, threads=4, transfers=25,
                         seed=seed, expected=expected) for seed in range(3)]
        checked = 0
        while any(w.poll() is None for w in workers):
            assert db.query(sharedkit.total) == expected
            checked += 1
            time.sleep(0.005)
        outputs = [_lines(w) for w in workers]
        acked = [line.split()[1] for out in outputs for line in out if line.startswith("ack")]
        assert all("done" in out for out in outputs)
        assert not [line for out in outputs for line in out if line.startswith("bad")]
        assert len(acked) == 3 * 4 * 25
        shared_of(db).catch_up()
        tags = Counter(t["tag"] for t in db.query(lambda ctx: ctx.db.query("transfers")
                                                   .collect()))
        assert set(acked) <= set(tags), "an acknowledged transfer is missing"
        assert max(tags.values()) == 1
        assert len(tags) == len(acked)
        assert db.query(sharedkit.total) == expected
        moved = sum(t["amount"] for t in db.query(lambda ctx: ctx.db.query("transfers")
                                                   .collect()))
        assert moved > 0 and checked > 0
    # a fresh process loads the same state
    with Database(SCHEMA, **target) as again:
        assert again.query(sharedkit.total) == expected
        assert len(again.query(lambda ctx: ctx.db.query("transfers").collect())) == len(acked)


def test_a_live_query_in_another_process_reruns_once_per_commit_into_its_read_set(target):
    with Database(SCHEMA, **target) as db:
        db.mutation(lambda ctx: ctx.db.insert("notes", {"topic": "other", "body": "0"}))
        watcher = spawn("live", target=target, topic="watched")
        try:
            assert _expect(watcher, "run") == "run 1 0"
            assert _expect(watcher, "ready") == "ready"
            runs = 1
            for i in range(5):
                # unrelated writes: other topics, and changes to a note of another topic
                for j in range(3):
                    db.mutation(lambda ctx, j=j: ctx.db.insert(
                        "notes", {"topic": f"other{j}", "body": "x"}))
                db.mutation(lambda ctx, i=i: ctx.db.insert("notes",
                                                           {"topic": "watched", "body": str(i)}))
                runs += 1
                # the unrelated commits came first in the log: had they re-run the query,
                # the count would be higher
                assert _expect(watcher, "run") == f"run {runs} {i + 1}"
            started = time.perf_counter()
            note = db.mutation(lambda ctx: ctx.db.insert("notes", {"topic": "watched",
                                                                   "body": "last"}))
            runs += 1
            assert _expect(watcher, "run") == f"run {runs} 6"
            latency = time.perf_counter() - started
            db.mutation(lambda ctx: ctx.db.patch(note, {"body": "changed"}))
            runs += 1
            assert _expect(watcher, "run") == f"run {runs} 6"
            assert latency < 1.0
        finally:
            out = _lines(watcher)
        assert out == ["done"], out


def test_kill_9_of_writers_mid_commit_loses_no_acknowledged_commit(target):
    rng = random.Random(14)
    acknowledged: set[tuple[int, int]] = set()
    rounds = 20
    with Database(SCHEMA, **target) as db:
        for round_ in range(rounds):
            child = spawn("writer", target=target, round=round_)
            assert _expect(child, "ready") == "ready"
            time.sleep(rng.uniform(0.02, 0.15))
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate(timeout=30)
            assert child.returncode == -signal.SIGKILL, err
            acknowledged |= {(int(r), int(n)) for _w, r, n in
                             (line.split() for line in out.splitlines()
                              if line.startswith("ack"))}
            # the others go on: this process commits between kills
            db.mutation(sharedkit.put_item, {"round": 1000 + round_, "n": 0})
        # a statement the server was running when its client died may still commit (it was
        # never acknowledged): let it land before comparing with a fresh load
        time.sleep(0.5)
        shared_of(db).catch_up()
        items = db.query(lambda ctx: ctx.db.query("items").collect())
    sizes = Counter((i["round"], i["n"]) for i in items)
    assert acknowledged, "no writer committed before it was killed"
    missing = acknowledged - set(sizes)
    assert not missing, f"acknowledged commits lost: {sorted(missing)[:5]}"
    assert set(sizes.values()) == {3}, "a commit was half applied"
    assert all(i["pad"] == "x" * 2000 for i in items)
    with Database(SCHEMA, **target) as again:
        assert len(again.query(lambda ctx: ctx.db.query("items").collect())) == len(items)


def _scheduled(db: Database) -> list[dict]:
    return db.query(lambda ctx: ctx.db.system.query("_scheduled_functions").collect())


def test_three_scheduler_processes_run_each_call_exactly_once(target):
    with Database(SCHEMA, **target, clock=time.time) as db:  # runs nothing itself
        workers = [spawn("scheduler", target=target) for _ in range(3)]
        try:
            for w in workers:
                assert _expect(w, "ready") == "ready"
            db.mutation(sharedkit.schedule_many, {"n": 300})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = db.query(lambda ctx: len(ctx.db.query("runs").collect()))
                if done >= 300:
                    break
                time.sleep(0.05)
            time.sleep(1.2)  # a few more cron ticks while all three run
        finally:
            outs = [_lines(w) for w in workers]
        assert outs == [["done"]] * 3
        shared_of(db).catch_up()
        runs = Counter(r["key"] for r in db.query(lambda ctx: ctx.db.query("runs").collect()))
        assert sorted(runs) == list(range(300)) and set(runs.values()) == {1}
        rows = _scheduled(db)
        calls = [r for r in rows if "cron" not in r]
        assert len(calls) == 300
        assert {r["state"]["kind"] for r in calls} == {"success"}
        ticks = [r for r in rows if "cron" in r]
        due = Counter(r["scheduled_time"] for r in ticks)
        assert max(due.values()) == 1, "a cron fired twice for one due time"
        fired = [r for r in ticks if r["state"]["kind"] == "success"]
        assert len(fired) >= 2
        assert len(db.query(lambda ctx: ctx.db.query("ticks").collect())) == len(fired)
        assert len([r for r in ticks if r["state"]["kind"] == "pending"]) <= 1


def test_a_call_claimed_by_a_killed_process_is_recovered(target):
    with Database(SCHEMA, **target, clock=time.time) as db:  # runs nothing itself
        first = spawn("scheduler", target=target, crons=False)
        assert _expect(first, "ready") == "ready"
        hung = db.mutation(sharedkit.schedule_hang)
        assert _expect(first, "hanging") == "hanging"
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        shared_of(db).catch_up()
        assert db.query(lambda ctx: ctx.db.system.get(hung))["state"]["kind"] == "in_progress"
        second = spawn("scheduler", target=target, crons=False)
        try:
            assert _expect(second, "ready") == "ready"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                state = db.query(lambda ctx: ctx.db.system.get(hung))["state"]
                if state["kind"] != "in_progress":
                    break
                time.sleep(0.05)
        finally:
            out = _lines(second)
        assert out == ["done"]
        assert state["kind"] == "failed" and "died" in state["error"]


def test_exclusive_and_shared_openers_exclude_each_other(tmp_path):
    path = str(tmp_path / "x.livedb")
    with Database(SCHEMA, path=path, shared=True):
        with pytest.raises(DatabaseLockedError, match="shared=True"):
            Database(SCHEMA, path=path)
        with Database(SCHEMA, path=path, shared=True):
            pass
    with Database(SCHEMA, path=path):
        with pytest.raises(DatabaseLockedError, match="without shared=True|another Database"):
            Database(SCHEMA, path=path, shared=True)
    # and across processes
    with Database(SCHEMA, path=path):
        child = spawn("live", target={"path": path, "shared": True}, topic="t")
        out, err = child.communicate(timeout=30)
        assert child.returncode != 0 and "DatabaseLockedError" in err


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="needs a path"):
        Database(SCHEMA, shared=True)
    with pytest.raises(ValueError, match="postgresql://"):
        Database(SCHEMA, url="mysql://x")
    with pytest.raises(ValueError, match="one of them"):
        Database(SCHEMA, path="x", url="postgresql://x")
    with pytest.raises(TypeError, match="shared"):
        Database(SCHEMA, path="x", shared="yes")  # type: ignore[arg-type]


def test_two_databases_in_one_process_share_and_conflicts_retry(target):
    with Database(SCHEMA, **target) as a, Database(SCHEMA, **target) as b:
        (acc,) = a.mutation(sharedkit.open_accounts, {"n": 1, "balance": 0})
        shared_of(b).catch_up()

        def bump(ctx):
            doc = ctx.db.get(acc)
            ctx.db.patch(acc, {"balance": doc["balance"] + 1})

        # b runs at a stale base: a's commit wrote what b read, so b runs again
        a.mutation(bump)
        b.mutation(bump)
        assert a.query(lambda ctx: ctx.db.get(acc))["balance"] in (1, 2)
        shared_of(a).catch_up()
        assert a.query(lambda ctx: ctx.db.get(acc))["balance"] == 2
        assert reactive_of(a) is not None


@pytest.fixture
def own_postgres() -> Any:
    """A PostgreSQL server of this test's own (it is stopped and restarted)."""
    import shutil

    pgkit = pytest.importorskip("pgkit")
    if pgkit.binaries() is None:
        pytest.skip("needs PostgreSQL: no initdb/pg_ctl found (Debian: apt-get install "
                    "postgresql; .ci/run installs it)")
    folder = pgkit.make_folder()
    url = pgkit.start(folder)
    try:
        yield pgkit, folder, url
    finally:
        pgkit.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_restarted_under_load(own_postgres):
    pgkit, folder, url = own_postgres
    target = {"url": url}
    with Database(SCHEMA, **target, clock=time.time) as db:
        ids = db.mutation(sharedkit.open_accounts, {"n": 5, "balance": 100})
        workers = [spawn("bank", target=target, accounts=ids, threads=2, transfers=100_000,
                         seed=seed, expected=500, seconds=6.0) for seed in range(2)]
        time.sleep(1.5)
        pgkit.stop(folder)
        # while it is down: a clear error, and the replica still answers queries
        with pytest.raises(LiveDBError, match="PostgreSQL at .* unreachable"):
            db.mutation(sharedkit.open_accounts, {"n": 1, "balance": 0})
        assert db.query(sharedkit.total) == 500
        time.sleep(1.0)
        pgkit.restart(folder)
        outputs = [_lines(w) for w in workers]
        acked = {line.split()[1] for out in outputs for line in out if line.startswith("ack")}
        errors = [line for out in outputs for line in out if line.startswith("error")]
        assert errors and all("PostgreSQL at" in e for e in errors), errors[:3]
        assert not [line for out in outputs for line in out if line.startswith("bad")]
        deadline = time.monotonic() + 10
        while True:  # this process reconnects by itself
            try:
                shared_of(db).catch_up()
                break
            except LiveDBError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        tags = Counter(t["tag"] for t in db.query(lambda ctx: ctx.db.query("transfers")
                                                   .collect()))
        assert acked <= set(tags), "an acknowledged transfer was lost"
        for out in outputs:  # every worker went on after its last error
            last = max(i for i, line in enumerate(out) if line.startswith("error"))
            assert any(line.startswith("ack") for line in out[last:]), out[last:][:5]
        assert db.query(sharedkit.total) == 500
        db.mutation(sharedkit.open_accounts, {"n": 1, "balance": 0})


def test_export_and_import_cli_on_a_shared_database_in_use(target, tmp_path):
    import subprocess
    import sys
    import zipfile

    location = target.get("url") or target["path"]
    archive = str(tmp_path / "backup.zip")
    with Database(SCHEMA, **target) as db:
        db.mutation(sharedkit.open_accounts, {"n": 3, "balance": 7})
        stored = db.store_file(b"some bytes")
        done = subprocess.run([sys.executable, "-m", "livedb", "export", location, archive],
                              capture_output=True, text=True, cwd=sharedkit.ROOT)
        assert done.returncode == 0, done.stderr
        assert "4 documents" in done.stdout and "password" not in done.stdout
        with zipfile.ZipFile(archive) as z:
            assert any(name.startswith("accounts") for name in z.namelist())
        db.mutation(lambda ctx: [ctx.db.delete(a["_id"])
                                 for a in ctx.db.query("accounts").collect()])
        done = subprocess.run([sys.executable, "-m", "livedb", "import", location, archive,
                               "--replace"], capture_output=True, text=True,
                              cwd=sharedkit.ROOT)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        while db.query(sharedkit.total) != 21:  # the import's commit reaches this process
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert db.query(lambda ctx: ctx.storage.get_metadata(stored))["size"] == 10
