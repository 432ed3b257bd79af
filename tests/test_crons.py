"""Crons: definitions, 5-field cron expressions, runs across simulated days, restarts."""

from __future__ import annotations

import calendar
import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedb import AppError, Crons, Database, ValidationError, action, mutation, query, v
from livedb._crons import CronExpression


@mutation(args={"tag": v.string()})
def tick(ctx, tag):
    ctx.db.insert("log", {"tag": tag})


@mutation(args={"tag": v.string()})
def tick_and_fail(ctx, tag):
    ctx.db.insert("log", {"tag": tag})
    raise AppError("cron failure")


GATE = threading.Event()
STARTED = threading.Semaphore(0)
RUNNING = [0, 0]  # now, most at once


@action(args={"tag": v.string()})
def slow_tick(ctx, tag):
    RUNNING[0] += 1
    RUNNING[1] = max(RUNNING)
    STARTED.release()
    assert GATE.wait(10)
    RUNNING[0] -= 1
    ctx.run_mutation(tick, {"tag": tag})


@query
def log_times(ctx):
    return [[doc["tag"], round(doc["_creation_time"], 3)] for doc in ctx.db.query("log").collect()]


@query
def cron_rows(ctx):
    return [row for row in ctx.db.system.query("_scheduled_functions").collect()
            if "cron" in row]


@query
def a_query(ctx):
    return None


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def simulate(db: Database, clock: Clock, until: float, step: float) -> None:
    while clock.now < until:
        clock.now = min(clock.now + step, until)
        db.run_scheduled()


def run_days(db: Database) -> list[datetime]:
    return [utc(t) for _tag, t in db.query(log_times)]


def ran_at(db: Database, job: str) -> list[datetime]:
    """When the finished runs of a cron job were due."""
    return [utc(r["scheduled_time"]) for r in db.query(cron_rows)
            if r["cron"]["name"] == job and r["state"]["kind"] != "pending"]


def pending_times(db: Database) -> list[datetime]:
    return [utc(r["scheduled_time"]) for r in db.query(cron_rows)
            if r["state"]["kind"] == "pending"]


# -- cron expressions ------------------------------------------------------------------------


def test_fields_accept_numbers_ranges_steps_lists_and_names():
    e = CronExpression("*/15 0-6/2 1,15 jan-mar,DEC mon-fri")
    assert e.minutes == [0, 15, 30, 45]
    assert e.hours == [0, 2, 4, 6]
    assert e.days == {1, 15}
    assert e.months == {1, 2, 3, 12}
    assert e.weekdays == {1, 2, 3, 4, 5}
    assert CronExpression("5/20 * * * *").minutes == [5, 25, 45]
    assert CronExpression("10-30/10,59 * * * *").minutes == [10, 20, 30, 59]
    assert CronExpression("0 0 * * 7").weekdays == {0}
    assert CronExpression("0 0 * * 0-7").weekdays == set(range(7))
    assert CronExpression("0 0 * * sun,sat").weekdays == {0, 6}
    assert CronExpression("  0   12 * * *  ").hours == [12]
    assert CronExpression("@daily").minutes == [0] and CronExpression("@daily").hours == [0]
    assert CronExpression("@hourly").hours == list(range(24))
    assert CronExpression("@weekly").weekdays == {0}
    assert CronExpression("@monthly").days == {1}
    assert CronExpression("@yearly").months == {1}


@pytest.mark.parametrize(("expression", "start", "expected"), [
    ("*/15 * * * *", at(2024, 3, 8, 10, 7, 30), at(2024, 3, 8, 10, 15)),
    ("*/15 * * * *", at(2024, 3, 8, 10, 15), at(2024, 3, 8, 10, 30)),
    ("*/15 * * * *", at(2024, 3, 8, 23, 59), at(2024, 3, 9, 0, 0)),
    ("0 9 * * 1-5", at(2024, 3, 8, 10, 0), at(2024, 3, 11, 9, 0)),
    ("0 9 * * mon-fri", at(2024, 3, 11, 8, 59, 59) + 0.5, at(2024, 3, 11, 9, 0)),
    ("0 0 29 2 *", at(2024, 3, 1), at(2028, 2, 29)),
    ("0 0 13 * 5", at(2024, 9, 1), at(2024, 9, 6)),
    ("0 0 13 * 5", at(2024, 9, 7), at(2024, 9, 13)),
    ("0 0 31 * *", at(2024, 4, 1), at(2024, 5, 31)),
    ("59 23 31 12 *", at(2024, 12, 31, 23, 59), at(2025, 12, 31, 23, 59)),
    ("30 2 1 jan *", at(2024, 1, 1, 2, 30, 1), at(2025, 1, 1, 2, 30)),
    ("0 12 * * 0", at(2024, 3, 9, 12, 0), at(2024, 3, 10, 12, 0)),
    ("*/10 22-23 * * *", at(2024, 3, 9, 23, 55), at(2024, 3, 10, 22, 0)),
])
def test_next_after(expression, start, expected):
    assert utc(CronExpression(expression).next_after(start)) == utc(expected)


@pytest.mark.parametrize(("expression", "message"), [
    ("* * * *", "expected 5 fields .* got 4"),
    ("* * * * * *", "expected 5 fields .* got 6"),
    ("", "expected 5 fields .* got 0"),
    ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
    ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
    ("* * 0 * *", "day of month field '0': 0 is out of range 1-31"),
    ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
    ("* * * * 8", "day of week field '8': 8 is out of range 0-7"),
    ("5-3 * * * *", "range '5-3' runs backwards"),
    ("*/0 * * * *", "step '0' must be a whole number >= 1"),
    ("*/x * * * *", "step 'x' must be a whole number >= 1"),
    ("1,,2 * * * *", "empty item in a list"),
    ("a * * * *", "'a' is not a number"),
    ("* * * foo *", "'foo' is not a number or a name like 'jan'"),
    ("* * * * funday", "'funday' is not a number or a name like 'mon'"),
    ("-1 * * * *", "'' is not a number"),
    ("١ * * * *", "is not a number"),
    ("0 0 30 2 *", "never matches: no month it allows has a day 30"),
    ("0 0 31 4,6,9,11 *", "never matches"),
    ("@fortnightly", "expected 5 fields"),
])
def test_bad_expressions_are_refused_with_a_clear_error(expression, message):
    with pytest.raises(ValueError, match=message):
        CronExpression(expression)


def test_a_non_string_expression_is_refused():
    with pytest.raises(ValidationError, match="a cron expression is a str"):
        CronExpression(5)  # type: ignore[arg-type]


def test_day_of_month_with_a_restricted_weekday_is_not_refused_as_impossible():
    e = CronExpression("0 0 30 2 1")
    assert utc(e.next_after(at(2024, 2, 1))) == utc(at(2024, 2, 5))


def _brute_next(e: CronExpression, t: float) -> float:
    """An independent search: day by day, then every hour and minute of a matching day."""
    day = utc(t).replace(hour=0, minute=0, second=0, microsecond=0)
    any_day = e._any_day
    any_weekday = e._any_weekday
    for _ in range(366 * 12):
        weekday = (day.weekday() + 1) % 7
        in_month, in_week = day.day in e.days, weekday in e.weekdays
        matches = (in_week if any_day else in_month if any_weekday
                   else in_month or in_week)
        if day.month in e.months and matches:
            for hour in e.hours:
                for minute in e.minutes:
                    moment = day.replace(hour=hour, minute=minute).timestamp()
                    if moment > t:
                        return moment
        day += timedelta(days=1)
    raise AssertionError("no match")


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    single = number.map(str)
    span = st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}")
    step = st.tuples(st.sampled_from(["*", None]), st.integers(1, high - low + 1), span).map(
        lambda x: f"{x[0] or x[2]}/{x[1]}")
    items = st.lists(st.one_of(single, span, step), min_size=1, max_size=3).map(",".join)
    return st.one_of(st.just("*"), items)


@settings(max_examples=300, deadline=None)
@given(minute=_field(0, 59), hour=_field(0, 23), day=_field(1, 28), month=_field(1, 12),
       weekday=_field(0, 7), start=st.floats(at(1990, 1, 1), at(2090, 1, 1)))
def test_next_after_agrees_with_a_brute_force_search(minute, hour, day, month, weekday, start):
    e = CronExpression(f"{minute} {hour} {day} {month} {weekday}")
    found = e.next_after(start)
    assert found == _brute_next(e, start)
    assert found > start and found % 60 == 0


# -- defining crons -----------------------------------------------------------------------


def test_cron_definitions_are_checked_when_made():
    crons = Crons()
    crons.interval("every minute", tick, {"tag": "i"}, minutes=1)
    with pytest.raises(ValueError, match="'every minute' is defined twice"):
        crons.daily("every minute", tick, {"tag": "d"})
    bad = [
        (lambda: crons.interval("i0", tick, {"tag": "x"}), "positive interval"),
        (lambda: crons.interval("i1", tick, {"tag": "x"}, seconds=-5), "seconds must be a"),
        (lambda: crons.interval("i2", tick, {"tag": "x"}, hours=math.nan), "hours must be a"),
        (lambda: crons.interval("i3", tick, {"tag": "x"}, minutes=True), "minutes must be a"),
        (lambda: crons.hourly("h", tick, {"tag": "x"}, minute_utc=60), "minute_utc must be"),
        (lambda: crons.daily("d", tick, {"tag": "x"}, hour_utc=24), "hour_utc must be"),
        (lambda: crons.daily("d", tick, {"tag": "x"}, minute_utc=1.5), "minute_utc must be"),
        (lambda: crons.weekly("w", tick, {"tag": "x"}, day_of_week="funday"), "day_of_week"),
        (lambda: crons.monthly("m", tick, {"tag": "x"}, day=0), "day must be a whole number"),
        (lambda: crons.monthly("m", tick, {"tag": "x"}, day=32), "day must be a whole number"),
        (lambda: crons.cron("c", "* * *", tick, {"tag": "x"}), "expected 5 fields"),
        (lambda: crons.cron("c", "* * * * *", lambda ctx: None), "lambda"),
        (lambda: crons.cron("c", "* * * * *", a_query), "it is a query"),
        (lambda: crons.cron("", "* * * * *", tick, {"tag": "x"}), "non-empty str"),
    ]
    for define, message in bad:
        with pytest.raises(ValueError, match=message):
            define()
    with pytest.raises(ValidationError, match="tag"):
        crons.hourly("args", tick, {"tag": 1})
    assert list(crons.jobs) == ["every minute"]
    with pytest.raises(TypeError, match="livedb.Crons"):
        Database(crons={"a": tick})


# -- running crons on a manual clock -------------------------------------------------------


def test_a_daily_cron_runs_once_a_day_at_its_time_over_ten_days():
    crons = Crons()
    crons.daily("digest", tick, {"tag": "digest"}, hour_utc=9, minute_utc=30)
    clock = Clock(at(2024, 1, 1))
    db = Database(clock=clock, crons=crons)
    assert pending_times(db) == [datetime(2024, 1, 1, 9, 30, tzinfo=UTC)]
    simulate(db, clock, at(2024, 1, 11), step=1800)
    assert run_days(db) == [datetime(2024, 1, d, 9, 30, tzinfo=UTC) for d in range(1, 11)]
    assert pending_times(db) == [datetime(2024, 1, 11, 9, 30, tzinfo=UTC)]
    [row] = [r for r in db.query(cron_rows) if r["state"]["kind"] == "pending"]
    assert row["cron"] == {"name": "digest", "schedule": "30 9 * * *"}
    assert row["name"] == "test_crons:tick" and row["args"] == {"tag": "digest"}


def test_interval_crons_run_at_open_then_every_interval():
    crons = Crons()
    crons.interval("poll", tick, {"tag": "poll"}, minutes=20)
    start = at(2024, 5, 1, 8, 7)
    clock = Clock(start)
    db = Database(clock=clock, crons=crons)
    assert db.run_scheduled() == 1
    simulate(db, clock, start + 3600, step=60)
    assert [t for _tag, t in db.query(log_times)] == [start, start + 1200, start + 2400,
                                                      start + 3600]


def test_hourly_weekly_and_monthly_crons_over_seventy_days():
    crons = Crons()
    crons.hourly("hourly", tick, {"tag": "hourly"}, minute_utc=15)
    crons.weekly("weekly", tick, {"tag": "weekly"}, day_of_week="monday", hour_utc=8)
    crons.monthly("monthly", tick, {"tag": "monthly"}, day=31, hour_utc=23, minute_utc=59)
    clock = Clock(at(2024, 1, 1))
    db = Database(clock=clock, crons=crons)
    simulate(db, clock, at(2024, 2, 2), step=900)
    assert ran_at(db, "monthly") == [datetime(2024, 1, 31, 23, 59, tzinfo=UTC)]
    simulate(db, clock, at(2024, 3, 11), step=900)
    runs = db.query(log_times)
    hourly = [utc(t) for tag, t in runs if tag == "hourly"]
    assert len(hourly) == 70 * 24
    assert all(moment.minute == 15 for moment in hourly)
    weekly = [utc(t) for tag, t in runs if tag == "weekly"]
    assert weekly == [datetime(2024, 1, 1, 8, tzinfo=UTC) + timedelta(weeks=w) for w in range(10)]
    assert [tag for tag, _t in runs].count("monthly") == 1
    assert calendar.monthrange(2024, 2)[1] == 29
    simulate(db, clock, at(2024, 4, 1), step=3600)
    assert ran_at(db, "monthly") == [datetime(2024, 3, 31, 23, 59, tzinfo=UTC)]
    assert [tag for tag, _t in db.query(log_times)].count("monthly") == 2


def test_overdue_runs_collapse_into_one():
    crons = Crons()
    crons.cron("quarter", "*/15 * * * *", tick, {"tag": "q"})
    crons.interval("ten", tick, {"tag": "ten"}, seconds=600)
    start = at(2024, 6, 1, 12, 0)
    clock = Clock(start)
    db = Database(clock=clock, crons=crons)
    assert db.run_scheduled() == 1
    clock.now = start + 5 * 3600 + 60
    assert db.run_scheduled() == 2
    assert [tag for tag, _t in db.query(log_times)] == ["ten", "ten", "q"]
    assert sorted(pending_times(db)) == [datetime(2024, 6, 1, 17, 10, tzinfo=UTC),
                                         datetime(2024, 6, 1, 17, 15, tzinfo=UTC)]


def test_runs_of_one_cron_never_overlap():
    GATE.clear()
    RUNNING[:] = [0, 0]
    crons = Crons()
    crons.interval("slow", slow_tick, {"tag": "slow"}, minutes=1)
    clock = Clock(at(2024, 1, 1))
    db = Database(clock=clock, crons=crons)
    first = threading.Thread(target=db.run_scheduled)
    first.start()
    assert STARTED.acquire(timeout=10)
    clock.now += 5 * 60
    assert pending_times(db) == []
    second = threading.Thread(target=db.run_scheduled)
    second.start()
    second.join(0.1)
    assert second.is_alive() and RUNNING == [1, 1]
    GATE.set()
    first.join(10)
    second.join(10)
    assert RUNNING == [0, 1]
    assert [tag for tag, _t in db.query(log_times)] == ["slow"]
    assert pending_times(db) == [utc(at(2024, 1, 1, 0, 6))]
    clock.now += 60
    assert db.run_scheduled() == 1
    assert STARTED.acquire(timeout=1)
    assert [tag for tag, _t in db.query(log_times)] == ["slow", "slow"]


def test_a_failing_cron_keeps_its_schedule():
    crons = Crons()
    crons.hourly("flaky", tick_and_fail, {"tag": "f"})
    clock = Clock(at(2024, 1, 1, 0, 30))
    db = Database(clock=clock, crons=crons)
    simulate(db, clock, at(2024, 1, 1, 3, 30), step=600)
    rows = db.query(cron_rows)
    assert [r["state"]["kind"] for r in rows] == ["failed", "failed", "failed", "pending"]
    assert "cron failure" in rows[0]["state"]["error"]
    assert db.query(log_times) == []


def test_a_cron_action_runs_too():
    GATE.set()
    crons = Crons()
    crons.daily("nightly", slow_tick, {"tag": "nightly"}, hour_utc=2)
    clock = Clock(at(2024, 1, 1))
    db = Database(clock=clock, crons=crons)
    simulate(db, clock, at(2024, 1, 3), step=3600)
    assert run_days(db) == [datetime(2024, 1, d, 2, tzinfo=UTC) for d in (1, 2)]
    assert [r["state"]["kind"] for r in db.query(cron_rows)] == ["success", "success", "pending"]


# -- restarts -----------------------------------------------------------------------------------


def _daily() -> Crons:
    crons = Crons()
    crons.daily("midnight", tick, {"tag": "midnight"})
    crons.interval("hourly interval", tick, {"tag": "interval"}, hours=1)
    return crons


def test_cron_state_survives_restarts(tmp_path):
    path = str(tmp_path / "crons.livedb")
    clock = Clock(at(2024, 1, 1, 12, 0))
    with Database(path=path, clock=clock, crons=_daily()) as db:
        assert db.run_scheduled() == 1
        before = {r["_id"]: r for r in db.query(cron_rows)}
    clock.now = at(2024, 1, 1, 12, 30)
    with Database(path=path, clock=clock, crons=_daily()) as db:
        assert db.run_scheduled() == 0
        assert {r["_id"]: r for r in db.query(cron_rows)} == before
    clock.now = at(2024, 1, 4, 5, 0)
    with Database(path=path, clock=clock, crons=_daily()) as db:
        assert db.run_scheduled() == 2
        assert sorted(pending_times(db)) == [datetime(2024, 1, 4, 6, tzinfo=UTC),
                                             datetime(2024, 1, 5, tzinfo=UTC)]
        assert [tag for tag, _t in db.query(log_times)] == ["interval", "interval", "midnight"]


def test_changed_and_removed_crons_are_rescheduled_on_open(tmp_path):
    path = str(tmp_path / "crons.livedb")
    clock = Clock(at(2024, 1, 1, 12, 0))
    with Database(path=path, clock=clock, crons=_daily()) as db:
        db.run_scheduled()
    changed = Crons()
    changed.daily("midnight", tick, {"tag": "midnight"}, hour_utc=18)
    with Database(path=path, clock=clock, crons=changed) as db:
        rows = db.query(cron_rows)
        states = {(r["cron"]["name"], r["cron"]["schedule"], r["state"]["kind"]) for r in rows}
        assert states == {("midnight", "0 0 * * *", "canceled"),
                          ("midnight", "0 18 * * *", "pending"),
                          ("hourly interval", "every 3600.0 s", "success"),
                          ("hourly interval", "every 3600.0 s", "canceled")}
        assert pending_times(db) == [datetime(2024, 1, 1, 18, tzinfo=UTC)]
    with Database(path=path, clock=clock) as db:
        assert pending_times(db) == []
        assert db.run_scheduled() == 0
