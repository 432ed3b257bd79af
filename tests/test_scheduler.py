"""Scheduled functions: states, transactional scheduling, exactly-once, restarts, the runner."""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import livedb
from livedb import AppError, Database, LiveDBError, ValidationError, action, mutation, query, v
from livedb import _crons as crons_module
from livedb import _scheduler as scheduler_module
from livedb._database import kernel_of
from livedb._engines.sqlite import SqliteEngine

# -- functions the tests schedule (module level: scheduled calls are found by name) ----------

EVENTS: dict[str, threading.Event] = {}


@mutation(args={"tag": v.string()})
def record(ctx, tag):
    ctx.db.insert("log", {"tag": tag})


@mutation(args={"tag": v.string()})
def record_then_fail(ctx, tag):
    ctx.db.insert("log", {"tag": tag})
    raise AppError({"why": "no"})


@mutation(args={"seconds": v.float64(), "tag": v.string()})
def schedule_record(ctx, seconds, tag):
    return ctx.scheduler.run_after(seconds, record, {"tag": tag})


@mutation(args={"tag": v.string()})
def schedule_then_fail(ctx, tag):
    ctx.scheduler.run_after(0, record, {"tag": tag})
    raise RuntimeError("rolled back")


@mutation
def whoami(ctx):
    identity = ctx.auth.get_user_identity()
    ctx.db.insert("log", {"tag": "identity", "who": None if identity is None else identity.subject})


@action(args={"tag": v.string()})
def act(ctx, tag):
    mine = [r for r in ctx.run_query(calls) if r["args"] == {"tag": tag}]
    ctx.run_mutation(record, {"tag": f"{tag}:{mine[0]['state']['kind']}"})
    return tag


@action(args={"tag": v.string()})
def act_and_fail(ctx, tag):
    ctx.run_mutation(record, {"tag": tag})
    raise ValueError(f"action {tag} failed")


@action(args={"tag": v.string()})
def act_waiting(ctx, tag):
    EVENTS[tag + ":started"].set()
    assert EVENTS[tag].wait(10)
    ctx.run_mutation(record, {"tag": tag})


@mutation(args={"tag": v.string()})
def record_waiting(ctx, tag):
    EVENTS[tag + ":started"].set()
    assert EVENTS[tag].wait(10)
    ctx.db.insert("log", {"tag": tag})


@action(args={"tag": v.string()})
def schedule_from_action_then_fail(ctx, tag):
    ctx.scheduler.run_after(5, record, {"tag": tag})
    raise RuntimeError("the action fails, the schedule stays")


@mutation(args={"tag": v.string()})
def chain(ctx, tag):
    ctx.db.insert("log", {"tag": tag})
    if len(tag) < 4:
        ctx.scheduler.run_after(0, chain, {"tag": tag + "+"})


@mutation(args={"items": v.array(v.int64())})
def keep_items(ctx, items):
    pass


@mutation
def forever(ctx):
    ctx.scheduler.run_after(0, forever, {})


@mutation
def cancel_myself(ctx):
    for row in ctx.db.system.query("_scheduled_functions").collect():
        if row["name"].endswith(":cancel_myself"):
            ctx.scheduler.cancel(row["_id"])
    ctx.db.insert("log", {"tag": "cancel_myself"})


@query
def calls(ctx):
    return ctx.db.system.query("_scheduled_functions").collect()


@query
def tags(ctx):
    return [doc["tag"] for doc in ctx.db.query("log").collect()]


@query
def some_query(ctx):
    return 1


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def manual_db(**options) -> tuple[Database, Clock]:
    clock = Clock()
    return Database(clock=clock, **options), clock


def row(db: Database, call_id: str) -> dict:
    return db.query(lambda ctx: ctx.db.system.get(call_id))


# -- scheduling from mutations and actions --------------------------------------------------


def test_run_after_writes_a_pending_row_and_runs_it_once_when_due():
    db, clock = manual_db()
    call_id = db.mutation(schedule_record, {"seconds": 30, "tag": "a"})
    assert call_id.table == "_scheduled_functions"
    pending = row(db, call_id)
    assert pending["name"] == "test_scheduler:record"
    assert pending["args"] == {"tag": "a"}
    assert pending["scheduled_time"] == clock.now + 30
    assert pending["completed_time"] is None
    assert pending["state"] == {"kind": "pending"}

    clock.now += 29.9
    assert db.run_scheduled() == 0
    assert db.query(tags) == []
    clock.now += 0.1
    assert db.run_scheduled() == 1
    assert db.query(tags) == ["a"]
    done = row(db, call_id)
    assert done["state"] == {"kind": "success"}
    assert done["completed_time"] == clock.now
    for _ in range(5):
        clock.now += 100
        assert db.run_scheduled() == 0
    assert db.query(tags) == ["a"]


def test_a_raising_mutation_schedules_nothing():
    db, clock = manual_db()
    with pytest.raises(RuntimeError, match="rolled back"):
        db.mutation(schedule_then_fail, {"tag": "never"})
    assert db.query(calls) == []
    clock.now += 10
    assert db.run_scheduled() == 0
    assert db.query(tags) == []


def test_scheduling_from_an_action_commits_at_once():
    db, clock = manual_db()
    with pytest.raises(RuntimeError):
        db.action(schedule_from_action_then_fail, {"tag": "kept"})
    [pending] = db.query(calls)
    assert pending["state"] == {"kind": "pending"}
    assert pending["scheduled_time"] == clock.now + 5
    clock.now += 5
    assert db.run_scheduled() == 1
    assert db.query(tags) == ["kept"]


def test_run_at_in_the_past_is_due_at_once_and_order_follows_scheduled_time():
    db, clock = manual_db()
    db.mutation(lambda ctx: ctx.scheduler.run_at(clock.now + 2, record, {"tag": "later"}))
    db.mutation(lambda ctx: ctx.scheduler.run_at(clock.now + 1, record, {"tag": "sooner"}))
    db.mutation(lambda ctx: ctx.scheduler.run_at(clock.now - 100, record, {"tag": "past"}))
    assert db.run_scheduled() == 1
    clock.now += 5
    assert db.run_scheduled() == 2
    assert db.query(tags) == ["past", "sooner", "later"]


def test_a_failing_scheduled_mutation_rolls_back_and_records_its_error():
    db, clock = manual_db()
    call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, record_then_fail, {"tag": "x"}))
    assert db.run_scheduled() == 1
    assert db.query(tags) == []
    failed = row(db, call_id)
    assert failed["state"]["kind"] == "failed"
    assert "AppError" in failed["state"]["error"] and "no" in failed["state"]["error"]
    assert failed["completed_time"] == clock.now
    assert db.run_scheduled() == 0


def test_scheduled_actions_go_through_in_progress_to_success_or_failed():
    db, clock = manual_db()
    ok = db.mutation(lambda ctx: ctx.scheduler.run_after(1, act, {"tag": "ok"}))
    bad = db.mutation(lambda ctx: ctx.scheduler.run_after(1, act_and_fail, {"tag": "bad"}))
    clock.now += 1
    assert db.run_scheduled() == 2
    assert db.query(tags) == ["ok:in_progress", "bad"]
    assert row(db, ok)["state"] == {"kind": "success"}
    failed = row(db, bad)["state"]
    assert failed["kind"] == "failed"
    assert failed["error"] == "ValueError: action bad failed"
    assert row(db, bad)["completed_time"] == clock.now


def test_scheduled_calls_run_with_no_identity():
    db, _clock = manual_db()
    ada = livedb.UserIdentity("ada")
    db.mutation(lambda ctx: ctx.scheduler.run_after(0, whoami, {}), identity=ada)
    db.run_scheduled()
    assert db.query(lambda ctx: ctx.db.query("log").collect())[0]["who"] is None


def test_a_chain_of_zero_delay_calls_runs_within_one_run_scheduled():
    db, _clock = manual_db()
    db.mutation(lambda ctx: ctx.scheduler.run_after(0, chain, {"tag": "c"}))
    assert db.run_scheduled() == 4
    assert db.query(tags) == ["c", "c+", "c++", "c+++"]


def test_run_scheduled_stops_a_function_that_reschedules_itself_forever(monkeypatch):
    monkeypatch.setattr(scheduler_module, "MAX_ROUNDS", 20)
    db, _clock = manual_db()
    db.mutation(lambda ctx: ctx.scheduler.run_after(0, forever, {}))
    with pytest.raises(LiveDBError, match="kept becoming due"):
        db.run_scheduled()
    [pending] = [r for r in db.query(calls) if r["state"]["kind"] == "pending"]
    monkeypatch.setattr(scheduler_module, "MAX_ROUNDS", 1)
    with pytest.raises(LiveDBError, match="kept becoming due"):
        db.run_scheduled()
    assert [r["_id"] for r in db.query(calls) if r["state"]["kind"] == "pending"] != [
        pending["_id"]]


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_before_the_run_from_a_mutation_and_from_an_action():
    db, clock = manual_db()
    first = db.mutation(schedule_record, {"seconds": 10, "tag": "one"})
    second = db.mutation(schedule_record, {"seconds": 10, "tag": "two"})
    db.mutation(lambda ctx: ctx.scheduler.cancel(first))
    db.action(lambda ctx: ctx.scheduler.cancel(second))
    for call_id in (first, second):
        assert row(db, call_id)["state"] == {"kind": "canceled"}
        assert row(db, call_id)["completed_time"] == clock.now
    clock.now += 60
    assert db.run_scheduled() == 0
    assert db.query(tags) == []


def test_cancel_is_transactional_and_leaves_finished_calls_alone():
    db, clock = manual_db()
    call_id = db.mutation(schedule_record, {"seconds": 0, "tag": "t"})

    def cancel_then_fail(ctx):
        ctx.scheduler.cancel(call_id)
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        db.mutation(cancel_then_fail)
    assert row(db, call_id)["state"] == {"kind": "pending"}
    db.run_scheduled()
    db.mutation(lambda ctx: ctx.scheduler.cancel(call_id))
    assert row(db, call_id)["state"] == {"kind": "success"}
    with pytest.raises(ValidationError, match="_scheduled_functions"):
        db.mutation(lambda ctx: ctx.scheduler.cancel("not an id"))


def test_cancel_during_a_running_action_keeps_it_canceled():
    db, _clock = manual_db()
    EVENTS["slow"], EVENTS["slow:started"] = threading.Event(), threading.Event()
    call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, act_waiting, {"tag": "slow"}))
    runner = threading.Thread(target=db.run_scheduled)
    runner.start()
    assert EVENTS["slow:started"].wait(10)
    assert row(db, call_id)["state"] == {"kind": "in_progress"}
    db.mutation(lambda ctx: ctx.scheduler.cancel(call_id))
    assert row(db, call_id)["state"] == {"kind": "canceled"}
    EVENTS["slow"].set()
    runner.join(10)
    assert db.query(tags) == ["slow"]
    assert row(db, call_id)["state"] == {"kind": "canceled"}


def test_cancel_during_a_running_mutation_waits_and_changes_nothing():
    db, _clock = manual_db()
    EVENTS["m"], EVENTS["m:started"] = threading.Event(), threading.Event()
    call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, record_waiting, {"tag": "m"}))
    runner = threading.Thread(target=db.run_scheduled)
    runner.start()
    assert EVENTS["m:started"].wait(10)
    canceller = threading.Thread(target=db.mutation,
                                 args=(lambda ctx: ctx.scheduler.cancel(call_id),))
    canceller.start()
    time.sleep(0.05)
    assert canceller.is_alive()
    EVENTS["m"].set()
    runner.join(10)
    canceller.join(10)
    assert db.query(tags) == ["m"]
    assert row(db, call_id)["state"] == {"kind": "success"}


def test_a_scheduled_mutation_cancelling_its_own_row_still_runs_once():
    db, _clock = manual_db()
    call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, cancel_myself, {}))
    assert db.run_scheduled() == 1
    assert db.run_scheduled() == 0
    assert db.query(tags) == ["cancel_myself"]
    assert row(db, call_id)["state"] == {"kind": "success"}


# -- what cannot be scheduled -----------------------------------------------------------


def test_functions_that_could_not_be_found_again_are_refused_when_scheduled():
    db, _clock = manual_db()

    @mutation
    def closure(ctx):
        pass

    def plain(ctx):
        pass

    for fn, message in ((closure, "inside another function"), (lambda ctx: None, "lambda"),
                        (plain, "plain function .*plain: only"), (some_query, "it is a query"),
                        (None, "cannot schedule None")):
        with pytest.raises(ValidationError, match=message):
            db.mutation(lambda ctx, fn=fn: ctx.scheduler.run_after(0, fn, {}))
        with pytest.raises(ValueError, match=message):
            db.action(lambda ctx, fn=fn: ctx.scheduler.run_after(0, fn, {}))
    assert db.query(calls) == []


def test_bad_delays_times_and_args_are_refused():
    db, _clock = manual_db()
    for seconds in (-1, math.nan, math.inf, "5", True, None):
        with pytest.raises(ValidationError, match="run_after: seconds"):
            db.mutation(lambda ctx, s=seconds: ctx.scheduler.run_after(s, record, {"tag": "x"}))
    for timestamp in (math.inf, "soon", False):
        with pytest.raises(ValidationError, match="run_at"):
            db.mutation(lambda ctx, t=timestamp: ctx.scheduler.run_at(t, record, {"tag": "x"}))
    with pytest.raises(ValidationError, match="tag"):
        db.mutation(lambda ctx: ctx.scheduler.run_after(0, record, {"tag": 5}))
    assert db.query(calls) == []


def test_user_code_cannot_write_the_system_table():
    db, _clock = manual_db()
    call_id = db.mutation(schedule_record, {"seconds": 0, "tag": "x"})
    with pytest.raises(ValidationError, match="system table"):
        db.mutation(lambda ctx: ctx.db.insert("_scheduled_functions", {"name": "x"}))
    with pytest.raises(ValidationError, match="system table"):
        db.mutation(lambda ctx: ctx.db.patch(call_id, {"state": {"kind": "success"}}))
    with pytest.raises(ValidationError, match="system table"):
        db.mutation(lambda ctx: ctx.db.delete(call_id))


# -- reactivity and retention -----------------------------------------------------------


def test_the_system_table_is_reactive():
    db, clock = manual_db()
    seen = []
    sub = db.subscribe(calls, {}, lambda rows: seen.append([r["state"]["kind"] for r in rows]))
    db.mutation(schedule_record, {"seconds": 1, "tag": "r"})
    db.mutation(record, {"tag": "unrelated"})
    clock.now += 1
    db.run_scheduled()
    sub.unsubscribe()
    assert seen == [[], ["pending"], ["success"]]


def test_finished_rows_are_kept_for_seven_days():
    db, clock = manual_db()
    done = db.mutation(schedule_record, {"seconds": 0, "tag": "a"})
    canceled = db.mutation(schedule_record, {"seconds": 60, "tag": "b"})
    db.mutation(lambda ctx: ctx.scheduler.cancel(canceled))
    db.run_scheduled()
    clock.now += 7 * 86400 - 1
    db.run_scheduled()
    assert row(db, done) is not None and row(db, canceled) is not None
    clock.now += 1
    db.run_scheduled()
    assert row(db, done) is None and row(db, canceled) is None
    assert db.query(tags) == ["a"]


# -- exactly once ----------------------------------------------------------------------------


def test_each_mutation_runs_exactly_once_under_repeated_and_concurrent_run_scheduled():
    db, clock = manual_db()
    for i in range(40):
        db.mutation(schedule_record, {"seconds": i % 7, "tag": str(i)})
    for _ in range(8):
        threads = [threading.Thread(target=db.run_scheduled) for _ in range(4)]
        for t in threads:
            t.start()
        db.run_scheduled()
        for t in threads:
            t.join()
        clock.now += 1
    assert sorted(db.query(tags), key=int) == [str(i) for i in range(40)]
    assert {r["state"]["kind"] for r in db.query(calls)} == {"success"}


def test_pending_calls_survive_a_restart_and_run_once(tmp_path):
    path = str(tmp_path / "app.livedb")
    clock = Clock()
    with Database(path=path, clock=clock) as db:
        call_id = db.mutation(schedule_record, {"seconds": 100, "tag": "durable"})
    clock.now += 100
    with Database(path=path, clock=clock) as db:
        assert row(db, call_id)["state"] == {"kind": "pending"}
        assert db.run_scheduled() == 1
        assert db.run_scheduled() == 0
    with Database(path=path, clock=clock) as db:
        assert db.run_scheduled() == 0
        assert db.query(tags) == ["durable"]
        assert row(db, call_id)["state"] == {"kind": "success"}


CRASHY = '''
import os
import livedb
from livedb import action, mutation, v

@mutation(args={"tag": v.string()})
def write_then_die(ctx, tag):
    ctx.db.insert("log", {"tag": tag})
    if os.environ.get("DIE"):
        os._exit(3)

@action(args={"tag": v.string()})
def act_then_die(ctx, tag):
    ctx.run_mutation(write_then_die, {"tag": tag})
'''

CHILD = '''
import sys
sys.path.insert(0, {folder!r})
import livedb, {module}
db = livedb.Database(path={path!r}, clock=lambda: 1000.0)
db.mutation(lambda ctx: ctx.scheduler.run_after(0, {module}.{fn}, {{"tag": "crash"}}))
db.run_scheduled()
'''


def _crash_child(tmp_path, monkeypatch, module: str, fn: str) -> str:
    (tmp_path / f"{module}.py").write_text(CRASHY)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = str(tmp_path / "crash.livedb")
    script = CHILD.format(folder=str(tmp_path), module=module, path=path, fn=fn)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], timeout=60,
                          env={"DIE": "1", "PATH": "", "PYTHONPATH": ":".join(sys.path)},
                          capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    return path


def test_a_mutation_cut_short_by_a_crash_runs_again_exactly_once(tmp_path, monkeypatch):
    path = _crash_child(tmp_path, monkeypatch, "crashy_mutation", "write_then_die")
    with Database(path=path, clock=lambda: 1000.0) as db:
        [pending] = db.query(calls)
        assert pending["state"] == {"kind": "pending"}
        assert db.query(tags) == []
        assert db.run_scheduled() == 1
        assert db.query(tags) == ["crash"]
        assert db.query(calls)[0]["state"] == {"kind": "success"}


def test_an_action_cut_short_by_a_crash_is_marked_failed_not_retried(tmp_path, monkeypatch):
    path = _crash_child(tmp_path, monkeypatch, "crashy_action", "act_then_die")
    with Database(path=path, clock=lambda: 1000.0) as db:
        [failed] = db.query(calls)
        assert failed["state"]["kind"] == "failed"
        assert "at most once" in failed["state"]["error"]
        assert failed["completed_time"] == 1000.0
        assert db.run_scheduled() == 0
        assert db.query(tags) == []


def test_a_function_that_is_gone_after_a_restart_is_marked_failed(tmp_path, monkeypatch,
                                                                 caplog):
    (tmp_path / "vanishing.py").write_text(CRASHY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import vanishing

    path = str(tmp_path / "gone.livedb")
    with Database(path=path, clock=lambda: 1000.0) as db:
        db.mutation(lambda ctx: ctx.scheduler.run_after(0, vanishing.write_then_die, {"tag": "x"}))
    (tmp_path / "vanishing.py").unlink()
    monkeypatch.delitem(sys.modules, "vanishing")
    monkeypatch.setattr(crons_module, "_resolved", {})
    with Database(path=path, clock=lambda: 1000.0) as db, caplog.at_level(logging.ERROR,
                                                                          "livedb"):
        assert db.run_scheduled() == 1
        [failed] = db.query(calls)
        assert failed["state"]["kind"] == "failed"
        assert "cannot find vanishing:write_then_die" in failed["state"]["error"]
    assert any("cannot find vanishing:write_then_die" in r.getMessage()
               for r in caplog.records), "a call that cannot run is logged, not only recorded"


def test_scheduling_a_function_of_the_running_script_warns(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import warnings\n"
        "from livedb import Database, mutation\n"
        "@mutation\n"
        "def later(ctx):\n"
        "    pass\n"
        "db = Database(clock=lambda: 0.0)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    db.mutation(lambda ctx: ctx.scheduler.run_after(0, later))\n"
        "print([str(w.message) for w in caught])\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "__main__:later" in out and "entry point" in out


def test_scheduled_args_must_fit_the_limits_of_stored_values():
    db, _clock = manual_db()
    with pytest.raises(ValidationError, match="stored.*8192"):
        db.mutation(lambda ctx: ctx.scheduler.run_after(0, keep_items, {"items": [0] * 9000}))
    assert db.query(lambda ctx: len(ctx.db.system.query("_scheduled_functions").collect())) == 0
    assert db.mutation(keep_items, {"items": [0] * 9000}) is None, "a direct call is not stored"
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.scheduler.run_after(0, record, {"tag": "x" * (2 << 20)}))
    assert db.query(calls) == []


# -- the background runner -------------------------------------------------------------------


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("livedb-schedul")]


def test_the_background_runner_runs_due_calls_and_stops_on_close():
    before = len(_runner_threads())
    db = Database()
    assert len(_runner_threads()) == before
    started = time.time()
    db.mutation(schedule_record, {"seconds": 0.1, "tag": "bg"})
    _wait_for(lambda: db.query(tags) == ["bg"])
    assert time.time() - started >= 0.1
    assert len(_runner_threads()) > before
    db.close()
    assert len(_runner_threads()) == before
    with pytest.raises(LiveDBError, match="closed"):
        db.run_scheduled()


def test_the_runner_is_woken_by_an_earlier_call():
    with Database() as db:
        db.mutation(schedule_record, {"seconds": 3600, "tag": "late"})
        time.sleep(0.05)
        db.mutation(schedule_record, {"seconds": 0.05, "tag": "early"})
        _wait_for(lambda: db.query(tags) == ["early"], timeout=5)


def test_a_slow_action_does_not_hold_up_other_calls():
    EVENTS["bg-slow"], EVENTS["bg-slow:started"] = threading.Event(), threading.Event()
    with Database() as db:
        db.mutation(lambda ctx: ctx.scheduler.run_after(0, act_waiting, {"tag": "bg-slow"}))
        assert EVENTS["bg-slow:started"].wait(10)
        db.mutation(schedule_record, {"seconds": 0, "tag": "quick"})
        _wait_for(lambda: db.query(tags) == ["quick"])
        EVENTS["bg-slow"].set()
        _wait_for(lambda: db.query(tags) == ["quick", "bg-slow"])


def test_close_waits_for_a_running_call(tmp_path):
    EVENTS["closing"], EVENTS["closing:started"] = threading.Event(), threading.Event()
    path = str(tmp_path / "closing.livedb")
    db = Database(path=path)
    call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, act_waiting, {"tag": "closing"}))
    assert EVENTS["closing:started"].wait(10)
    threading.Timer(0.1, EVENTS["closing"].set).start()
    db.close()
    with Database(path=path, clock=lambda: time.time() + 3600) as db:
        assert db.query(tags) == ["closing"]
        assert row(db, call_id)["state"] == {"kind": "success"}


def test_run_scheduled_with_a_running_runner_returns_once_due_calls_are_done():
    with Database() as db:
        for i in range(30):
            db.mutation(schedule_record, {"seconds": 0, "tag": str(i)})
            db.run_scheduled()
            assert db.query(tags)[-1] == str(i)
        assert len(db.query(tags)) == 30


def test_run_scheduled_inside_a_mutation_is_refused():
    db, _clock = manual_db()
    with pytest.raises(LiveDBError, match="inside a mutation"):
        db.mutation(lambda ctx: db.run_scheduled())


# -- a full disk ---------------------------------------------------------------------------


class SmallDisk:
    """A folder whose disk can be filled up and emptied again, for real.

    It is a small tmpfs of its own when this process may mount one (root on Linux): a
    filler file then takes every free block, and SQLite's writes fail with ENOSPC. Where
    it may not, SQLite itself holds each database to its current number of pages
    (`max_page_count`), which fails a write that needs a new page with the same
    SQLITE_FULL: the tests then make sure their failing writes need new pages.
    """

    def __init__(self, folder: Path, mounted: bool) -> None:
        self.folder = folder
        self.mounted = mounted
        self._filler = folder / "filler"
        self._full: list[sqlite3.Connection] = []

    def fill(self, db: Database) -> None:
        if not self.mounted:
            conn = kernel_of(db).engine._conn
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages}")
            self._full.append(conn)
            return
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        assert e.errno == errno.ENOSPC, e
                        break
        finally:
            os.close(fd)

    def make_room(self) -> None:
        if self.mounted:
            self._filler.unlink()
        for conn in self._full:
            conn.execute("PRAGMA max_page_count=1073741823")
        self._full.clear()


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = False
    if sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount"):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                               str(folder)], capture_output=True, timeout=30)
        mounted = done.returncode == 0
    try:
        yield SmallDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)


PAD = "p" * 100_000
"""Big enough to need new pages however a database's free space lies."""


@mutation(args={"tag": v.string()})
def record_big(ctx, tag):
    ctx.db.insert("log", {"tag": tag, "pad": PAD})


ACTION_RUNS: list[str] = []
FILL_DURING_ACTION: list = []


@action(args={"tag": v.string()})
def fill_the_disk_then_fail(ctx, tag):
    ACTION_RUNS.append(tag)
    disk, db = FILL_DURING_ACTION
    disk.fill(db)
    raise ValueError(PAD[:3000])


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _write_failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "could not commit" in r.getMessage()]


def test_a_mutation_due_while_the_disk_is_full_is_retried_with_backoff_and_runs_once(
        small_disk, caplog):
    caplog.set_level(logging.DEBUG, logger="livedb")
    path = str(small_disk.folder / "app.livedb")
    clock = Clock()
    start = clock.now
    with Database(path=path, clock=clock) as db:
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, record_big, {"tag": "big"}))
        small_disk.fill(db)
        expected = []
        for at, delay in [(0, "0.05"), (0.04, None), (0.06, "0.1"), (0.15, None), (0.17, "0.2"),
                          (0.36, None)]:
            clock.now = start + at
            assert db.run_scheduled() == 0
            if delay is not None:
                expected.append(f"trying again in {delay} s")
            failures = _write_failures(caplog)
            assert len(failures) == len(expected)
            assert all(want in got for want, got in zip(expected, failures, strict=True))
            assert row(db, call_id)["state"] == {"kind": "pending"}
        for _ in range(8):
            clock.now += 10
            assert db.run_scheduled() == 0
        assert "trying again in 5 s" in _write_failures(caplog)[-1]
        assert "full" in _write_failures(caplog)[-1]
        assert db.query(tags) == []
        small_disk.make_room()
        clock.now += 5
        assert db.run_scheduled() == 1
        assert db.run_scheduled() == 0
        assert db.query(tags) == ["big"]
        assert row(db, call_id)["state"] == {"kind": "success"}
    with Database(path=path, clock=clock) as db:
        assert db.run_scheduled() == 0
        assert db.query(tags) == ["big"]
        assert row(db, call_id)["state"] == {"kind": "success"}


def test_the_runner_retries_a_call_that_could_not_commit_until_space_returns(
        small_disk, caplog):
    caplog.set_level(logging.DEBUG, logger="livedb")
    path = str(small_disk.folder / "app.livedb")
    with Database(path=path) as db:
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0.2, record_big,
                                                                  {"tag": "bg"}))
        small_disk.fill(db)
        _wait_for(lambda: len(_write_failures(caplog)) >= 4)
        times = [r.created for r in caplog.records if "could not commit" in r.getMessage()]
        for gap, delay in zip(_gaps(times), (0.05, 0.1, 0.2), strict=False):
            assert gap >= delay * 0.99, (gap, delay)
        assert row(db, call_id)["state"] == {"kind": "pending"}
        small_disk.make_room()
        _wait_for(lambda: row(db, call_id)["state"]["kind"] == "success")
        time.sleep(0.1)
        assert db.query(tags) == ["bg"]
    with Database(path=path) as db:
        assert db.query(tags) == ["bg"]


def test_an_action_whose_final_state_could_not_be_written_is_not_run_again(small_disk,
                                                                            caplog):
    caplog.set_level(logging.DEBUG, logger="livedb")
    path = str(small_disk.folder / "app.livedb")
    clock = Clock()
    ACTION_RUNS.clear()
    with Database(path=path, clock=clock) as db:
        FILL_DURING_ACTION[:] = [small_disk, db]
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(
            0, fill_the_disk_then_fail, {"tag": "once"}))
        assert db.run_scheduled() == 0
        assert ACTION_RUNS == ["once"]
        assert row(db, call_id)["state"] == {"kind": "in_progress"}
        assert "trying again in 0.05 s" in _write_failures(caplog)[0]
        clock.now += 0.06
        assert db.run_scheduled() == 0
        assert len(_write_failures(caplog)) == 2
        small_disk.make_room()
        clock.now += 0.2
        assert db.run_scheduled() == 1
        assert ACTION_RUNS == ["once"]
        state = row(db, call_id)["state"]
        assert state["kind"] == "failed" and state["error"].startswith("ValueError: ppp")
    with Database(path=path, clock=clock) as db:
        assert db.run_scheduled() == 0
        assert row(db, call_id)["state"]["kind"] == "failed"
    assert ACTION_RUNS == ["once"]


@action(args={"tag": v.string()})
def note_run(ctx, tag):
    ACTION_RUNS.append(tag)


def test_an_action_due_while_the_disk_is_full_starts_once_space_returns(small_disk, caplog):
    """On a real full disk not even the row's small change to `in_progress` can be
    written, so the action does not start; it starts, once, when space returns."""
    path = str(small_disk.folder / "app.livedb")
    clock = Clock()
    ACTION_RUNS.clear()
    with Database(path=path, clock=clock) as db:
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, note_run, {"tag": "a"}))
        small_disk.fill(db)
        db.run_scheduled()
        if small_disk.mounted:
            assert ACTION_RUNS == []
            assert row(db, call_id)["state"] == {"kind": "pending"}
            assert "trying again in 0.05 s" in _write_failures(caplog)[0]
        small_disk.make_room()
        clock.now += 0.06
        db.run_scheduled()
        assert ACTION_RUNS == ["a"]
        assert row(db, call_id)["state"] == {"kind": "success"}
        clock.now += 10
        assert db.run_scheduled() == 0
    assert ACTION_RUNS == ["a"]


def test_old_rows_are_deleted_once_space_returns(small_disk):
    path = str(small_disk.folder / "app.livedb")
    clock = Clock()
    with Database(path=path, clock=clock) as db:
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, record, {"tag": "r"}))
        assert db.run_scheduled() == 1
        small_disk.fill(db)
        clock.now += scheduler_module.RETENTION
        assert db.run_scheduled() == 0
        if small_disk.mounted:
            assert row(db, call_id)["state"] == {"kind": "success"}
        small_disk.make_room()
        clock.now += scheduler_module.RETRY_MAX
        assert db.run_scheduled() == 0
        assert row(db, call_id) is None
    with Database(path=path, clock=clock) as db:
        assert row(db, call_id) is None


def _fail_the_next_write_uncertainly(monkeypatch) -> list[int]:
    """Make the next write fail as an I/O error while syncing would: the file's state is
    uncertain, so the database refuses every write until it is reopened."""
    original = SqliteEngine._write
    calls: list[int] = []

    def failing(persistence, batch):
        calls.append(len(batch))
        if len(calls) == 1:
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorname = "SQLITE_IOERR_FSYNC"
            raise error
        return original(persistence, batch)

    monkeypatch.setattr(SqliteEngine, "_write", failing)
    return calls


def test_a_call_whose_write_cannot_succeed_before_a_reopen_waits_for_it_without_spinning(
        tmp_path, monkeypatch, caplog):
    """After a write failure that leaves the file's state uncertain, every write is refused
    until the database is reopened: a due call is then tried once, stays pending (it
    never ran), is not tried again, and runs exactly once after the reopen."""
    path = str(tmp_path / "app.livedb")
    clock = Clock()
    with Database(path=path, clock=clock) as db:
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0, record, {"tag": "later"}))
        writes = _fail_the_next_write_uncertainly(monkeypatch)
        assert db.run_scheduled() == 0
        assert len(writes) == 1
        [error] = [r for r in caplog.records if "not tried again" in r.getMessage()]
        assert error.levelno == logging.ERROR and "disk I/O error" in error.getMessage()
        for _ in range(3):
            clock.now += 3600
            assert db.run_scheduled() == 0
        assert len(writes) == 1
        assert row(db, call_id)["state"] == {"kind": "pending"}
    monkeypatch.undo()
    with Database(path=path, clock=clock) as db:
        assert db.run_scheduled() == 1
        assert db.run_scheduled() == 0
        assert db.query(tags) == ["later"]
        assert row(db, call_id)["state"] == {"kind": "success"}


def test_the_runner_does_not_spin_on_a_write_that_cannot_succeed_before_a_reopen(
        tmp_path, monkeypatch):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(0.1, record, {"tag": "x"}))
        writes = _fail_the_next_write_uncertainly(monkeypatch)
        _wait_for(lambda: len(writes) == 1)
        time.sleep(0.5)
        assert len(writes) == 1
        assert row(db, call_id)["state"] == {"kind": "pending"}
    monkeypatch.undo()
    with Database(path=path) as db:
        _wait_for(lambda: row(db, call_id)["state"]["kind"] == "success")
        assert db.query(tags) == ["x"]
