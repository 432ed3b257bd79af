"""Scheduled functions and crons: `ctx.scheduler`, the runner, `Crons` and cron expressions.

Every scheduled call is a row of the system table `_scheduled_functions`, written through
ordinary transactions: scheduling from a mutation commits with it (or not at all), the
table is durable with a `path` and reactive like any other. The row names the function by
its stable `"module:qualname"`; it is looked up again when the call runs.

State changes carry the guarantees. A scheduled mutation runs as one transaction that
also marks its row `success`, so it commits exactly once: after a crash either both are
on disk or neither is, and the row is still `pending`. A scheduled action is marked
`in_progress` in a commit of its own before it starts, so it runs at most once: one
found `in_progress` when the database opens was cut short and is marked `failed`.

The `Scheduler` of a database keeps a heap of pending calls (fed by every commit that
writes the table) and a heap of finished rows to delete after `RETENTION`. With a real
clock a runner thread sleeps until the earliest of them, hands due calls to a small
pool, and is woken when an earlier call is committed; with a manual clock nothing runs
until `db.run_scheduled()`. A cron job is a pending row carrying its job name: the next
run is inserted when the previous one finishes, so runs never overlap, and it is placed
after the current time, so overdue runs collapse into one.

A call whose commit could not be written (the disk is full) changed nothing: it goes back
in the queue and is tried again after a delay that doubles from `RETRY_FIRST` up to
`RETRY_MAX`, until space returns. One whose write failed in a way that will not go away
while the database stays open (the file's state became uncertain, or it cannot be
written at all) is not tried again: it stays pending, and runs once the database is
opened again. An action that ran but whose final state could not be written is not run
again: only its state is written, when space returns.
"""

from __future__ import annotations

import calendar
import heapq
import importlib
import logging
import math
import sys
import threading
import warnings
from bisect import bisect_left
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import LiveDBError, ValidationError
from ._functions import ACTION, MUTATION, Function, check_args, mutation
from ._ids import Id, parse_id
from ._persistence import WriteError
from ._transaction import Transaction, WriteTransaction
from ._validators import Mismatch, check_any
from ._values import decode, type_name

if TYPE_CHECKING:
    from ._database import Database

log = logging.getLogger("livedb")

TABLE = "_scheduled_functions"
RETENTION = 7 * 24 * 3600.0
"""How long finished rows (success, failed, canceled) are kept, in seconds."""
WORKERS = 4
"""Threads running due calls, so one slow action does not hold up the rest."""
MAX_SLEEP = 60.0
"""The runner re-reads the clock at least this often (seconds), in case the wall clock jumps."""
MAX_ROUNDS = 10_000
"""`run_scheduled` gives up when calls keep becoming due for this many rounds."""
RETRY_FIRST = 0.05
"""Seconds before a call whose commit could not be written (a full disk) is tried again."""
RETRY_MAX = 5.0
"""The longest wait between two tries of such a call: the delay doubles up to this."""
_MAX_ERROR = 4000
_FINISHED = ("success", "failed", "canceled")

T = TypeVar("T")


class ScheduleError(ValidationError, ValueError):
    """A bad schedule: a delay, time, function, cron expression or cron job definition.

    Both a `ValidationError` (livedb rejects bad input with a `LiveDBError`) and a
    `ValueError` (as `Crons` promises for duplicate names).
    """


# -- internal mutations ------------------------------------------------------------------


@mutation
def _system_write(ctx: Any) -> None:
    """The empty mutation whose transaction livedb's own system writes ride on."""


def system_mutation(db: Database, what: str, body: Callable[[WriteTransaction], T]) -> T:
    """Run `body(txn)` in a transaction of its own and commit it; return its result."""
    if getattr(db._local, "writing", False):
        raise LiveDBError(f"{what} cannot be called from inside a mutation (it commits on "
                          "its own); call it from an action or outside functions")
    box: list[T] = []
    db._mutation(_system_write, None, None, None, before_commit=lambda txn: box.append(body(txn)))
    return box[0]


def _now(db: Database) -> float:
    now = db._clock()
    if now.__class__ is not float:
        if not isinstance(now, (int, float)) or isinstance(now, bool):
            raise LiveDBError(f"the database clock returned {now!r}, not a number")
        now = float(now)
    return now


# -- resolving functions by name ---------------------------------------------------------

_resolved: dict[str, Function] = {}


def lookup(name: str) -> Function | None:
    """The registered function named `"module:qualname"`, importing its module, or None."""
    found = _resolved.get(name)
    if found is not None:
        return found
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname or "<" in qualname:
        return None
    try:
        obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001 - any failure to import means "not found"
        return None
    if obj.__class__ is not Function:
        return None
    _resolved[name] = obj
    return obj


def schedulable(fn: Any) -> Function:
    """`fn` if it can be scheduled (a mutation or action found again by its name), else raise."""
    if fn.__class__ is not Function:
        name = getattr(fn, "__qualname__", None)
        what = ("a lambda" if name == "<lambda>" else f"plain function {name}" if name
                else repr(fn)[:80])
        raise ScheduleError(f"cannot schedule {what}: only functions decorated with @mutation "
                            "or @action, defined at module level, can be scheduled (a call "
                            "is stored by the function's name and looked up when it runs)")
    if fn.kind not in (MUTATION, ACTION):
        raise ScheduleError(f"cannot schedule {fn.name}: it is a {fn.kind}; only mutations "
                            "and actions can be scheduled")
    if fn.__dict__.get("adhoc") or "<" in fn.name:
        raise ScheduleError(f"cannot schedule {fn.name}: a lambda or a function defined inside "
                            "another function cannot be found again by name when the call "
                            "runs; define it at module level")
    if _resolved.get(fn.name) is fn:
        return fn
    if fn.name.startswith("__main__:"):
        warnings.warn(f"scheduling {fn.name}, a function of the script being run: its name "
                      "resolves only while this same script is the entry point (another "
                      "process, or the app started another way, will fail to find it); "
                      "define scheduled functions in an importable module", stacklevel=3)
    found = lookup(fn.name)
    if found is not fn:
        why = ("its name leads to a different function (was it redefined?)" if found
               else "nothing by that name can be imported")
        raise ScheduleError(f"cannot schedule {fn.name}: {why}; scheduled functions must be "
                            "reachable as module:qualname")
    return fn


def _delay(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ScheduleError(f"run_after: seconds must be a number, got {type_name(seconds)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ScheduleError(f"run_after: seconds must be a finite number >= 0, got {seconds!r}")
    return float(seconds)


def _timestamp(timestamp: Any) -> float:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ScheduleError("run_at: a datetime must be timezone-aware (e.g. tzinfo=UTC)")
        return timestamp.timestamp()
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise ScheduleError(f"run_at: timestamp must be seconds since the epoch, got "
                            f"{type_name(timestamp)}")
    if not math.isfinite(timestamp):
        raise ScheduleError(f"run_at: timestamp must be finite, got {timestamp!r}")
    return float(timestamp)


def _call_id(id: Any, op: str) -> str:
    parsed = parse_id(id)
    if parsed is None or parsed[0] != TABLE:
        raise ValidationError(f"{op}: {id!r} is not an id of {TABLE}")
    return parsed[1]


# -- writing rows --------------------------------------------------------------------------


def _insert_call(txn: WriteTransaction, fn: Any, args: Mapping[str, Any] | None,
                 when: float, cron: dict | None = None) -> Id:
    spec = schedulable(fn)
    kwargs = check_args(spec, args)
    try:
        check_any(kwargs, 2)
    except Mismatch as e:
        raise ValidationError(f"{spec.name}: the args of a scheduled call are stored, so the "
                              f"limits of stored values apply: {e.render('args')}") from None
    row = {"name": spec.name, "args": kwargs, "scheduled_time": when, "completed_time": None,
           "state": {"kind": "pending"}}
    if cron is not None:
        row["cron"] = cron
    return txn._system_insert(TABLE, row)


def _cancel(txn: WriteTransaction, doc_id: str, now: float) -> None:
    """Cancel a pending or running call; a finished or deleted one is left as it is."""
    row = txn.system.get(doc_id)
    if row is not None and row["state"]["kind"] in ("pending", "in_progress"):
        txn._system_update(doc_id, {"state": {"kind": "canceled"}, "completed_time": now})


class MutationScheduler:
    """`ctx.scheduler` in a mutation: what it schedules or cancels commits with the mutation."""

    __slots__ = ("_txn",)

    def __init__(self, txn: WriteTransaction) -> None:
        self._txn = txn

    def run_after(self, seconds: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` `seconds` from now (once this mutation commits); its row id."""
        delay = _delay(seconds)
        return _insert_call(self._txn, fn, args, _now(self._txn._db) + delay)

    def run_at(self, timestamp: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` at `timestamp` (seconds since the epoch; a past time means now)."""
        return _insert_call(self._txn, fn, args, _timestamp(timestamp))

    def cancel(self, id: str) -> None:
        """Cancel a scheduled call that has not finished; a running action runs on."""
        _cancel(self._txn, _call_id(id, "cancel"), _now(self._txn._db))


class ActionScheduler:
    """`ctx.scheduler` in an action: each call commits at once, in a transaction of its own."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    def run_after(self, seconds: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` `seconds` from now; its row id."""
        delay = _delay(seconds)
        schedulable(fn)
        return system_mutation(self._db, "scheduler.run_after", lambda txn: _insert_call(
            txn, fn, args, _now(self._db) + delay))

    def run_at(self, timestamp: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` at `timestamp` (seconds since the epoch; a past time means now)."""
        when = _timestamp(timestamp)
        schedulable(fn)
        return system_mutation(self._db, "scheduler.run_at",
                               lambda txn: _insert_call(txn, fn, args, when))

    def cancel(self, id: str) -> None:
        """Cancel a scheduled call that has not finished; a running action runs on."""
        doc_id = _call_id(id, "cancel")
        system_mutation(self._db, "scheduler.cancel",
                        lambda txn: _cancel(txn, doc_id, _now(self._db)))


# -- cron expressions ----------------------------------------------------------------------

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SEARCH_YEARS = 10


class CronExpression:
    """A 5-field cron expression in UTC: `minute hour day-of-month month day-of-week`.

    Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a
    comma-separated list of those; months and weekdays may be named (`jan`, `mon`); a
    weekday is 0-7 with both 0 and 7 Sunday. As in Vixie cron, when both day fields are
    restricted a day matching either one matches. `@hourly`, `@daily`, `@weekly`,
    `@monthly` and `@yearly` are shorthands.
    """

    __slots__ = ("text", "minutes", "hours", "days", "months", "weekdays", "_any_day",
                 "_any_weekday")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ScheduleError(f"a cron expression is a str, got {type_name(text)}")
        self.text = text
        fields = _MACROS.get(text.strip().lower(), text).split()
        if len(fields) != 5:
            raise ScheduleError(f"cron expression {text!r}: expected 5 fields (minute hour "
                                f"day-of-month month day-of-week), got {len(fields)}")
        parsed = [_parse_field(text, i, field) for i, field in enumerate(fields)]
        self.minutes, self.hours, days, months, weekdays = (sorted(p) for p in parsed)
        self.days = frozenset(days)
        self.months = frozenset(months)
        self.weekdays = frozenset(d % 7 for d in weekdays)
        self._any_day = fields[2].startswith("*")
        self._any_weekday = fields[4].startswith("*")
        if self._any_weekday:
            longest = max(_MAX_DAYS[m - 1] for m in self.months)
            if min(self.days) > longest:
                raise ScheduleError(f"cron expression {text!r} never matches: no month it "
                                    f"allows has a day {min(self.days)}")

    def __repr__(self) -> str:
        return f"CronExpression({self.text!r})"

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self._any_day:
            return in_week
        if self._any_weekday:
            return in_month
        return in_month or in_week

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after `t` (seconds since the epoch)."""
        moment = datetime.fromtimestamp(math.floor(t / 60) * 60 + 60, UTC)
        limit = moment.year + _SEARCH_YEARS
        minutes, hours = self.minutes, self.hours
        while moment.year <= limit:
            if moment.month not in self.months:
                year, month = divmod(moment.year * 12 + moment.month, 12)
                moment = datetime(year, month + 1, 1, tzinfo=UTC)
                continue
            if not self._day_matches(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            i = bisect_left(hours, moment.hour)
            if i == len(hours):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if hours[i] != moment.hour:
                moment = moment.replace(hour=hours[i], minute=0)
            j = bisect_left(minutes, moment.minute)
            if j == len(minutes):
                moment = (moment + timedelta(hours=1)).replace(minute=0)
                continue
            return moment.replace(minute=minutes[j]).timestamp()
        raise ScheduleError(f"cron expression {self.text!r} matches no time within "
                            f"{_SEARCH_YEARS} years")


def _parse_field(text: str, index: int, field: str) -> set[int]:
    name, low, high = _FIELDS[index]

    def fail(problem: str) -> ScheduleError:
        return ScheduleError(f"cron expression {text!r}: {name} field {field!r}: {problem}")

    def number(token: str) -> int:
        names = _MONTH_NAMES if index == 3 else _DAY_NAMES if index == 4 else None
        if names is not None and token.lower() in names:
            return names[token.lower()]
        if not token.isascii() or not token.isdigit():
            allowed = (" or a name like 'jan'" if index == 3
                       else " or a name like 'mon'" if index == 4 else "")
            raise fail(f"{token!r} is not a number{allowed}")
        value = int(token)
        if not low <= value <= high:
            raise fail(f"{value} is out of range {low}-{high}")
        return value

    values: set[int] = set()
    for part in field.split(","):
        if not part:
            raise fail("empty item in a list")
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isascii() or not step_text.isdigit() or int(step_text) == 0:
                raise fail(f"step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise fail(f"range {body!r} runs backwards")
        else:
            start = number(body)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return values


# -- crons -----------------------------------------------------------------------------------

_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


class CronJob:
    """One job of `Crons`: a name, a schedulable function, its args and a schedule."""

    __slots__ = ("name", "fn", "args", "schedule", "interval", "expression")

    def __init__(self, name: str, fn: Function, args: dict, interval: float | None,
                 expression: CronExpression | None) -> None:
        self.name = name
        self.fn = fn
        self.args = args
        self.interval = interval
        self.expression = expression
        self.schedule = (f"every {interval!r} s" if expression is None
                         else expression.text)
        """The schedule as text: stored with each run, so a changed schedule is noticed."""

    def first_time(self, now: float) -> float:
        """When a new job first runs: an interval job at once, a cron job at its next match."""
        return now if self.expression is None else self.expression.next_after(now)

    def next_time(self, previous: float, now: float) -> float:
        """The run after the one scheduled at `previous`, later than `now` (missed ones skipped)."""
        if self.expression is not None:
            return self.expression.next_after(max(previous, now))
        interval = self.interval
        assert interval is not None
        following = previous + interval
        if following <= now:
            following = previous + (math.floor((now - previous) / interval) + 1) * interval
            while following <= now:
                following += interval
        return following


class Crons:
    """Recurring jobs, given to `Database(..., crons=crons)`. All times are UTC.

    ```python
    crons = livedb.Crons()
    crons.interval("clear presence", clear_presence, {}, seconds=30)
    crons.daily("send digest", send_digest, {}, hour_utc=17, minute_utc=30)
    crons.cron("payment reminder", "0 16 1 * *", remind, {"email": "a@b.c"})
    ```
    An interval job first runs when the database opens, then every interval; the others
    run at the times their schedule matches. Runs of one job never overlap, and runs
    missed (the database was closed, or a run took long) collapse into one.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, CronJob] = {}

    def interval(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
                 seconds: float = 0, minutes: float = 0, hours: float = 0) -> None:
        """Run `fn(args)` every `seconds` + `minutes` + `hours`, starting when the db opens."""
        total = 0.0
        for unit, value, scale in (("seconds", seconds, 1), ("minutes", minutes, 60),
                                   ("hours", hours, 3600)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScheduleError(f"cron {name!r}: {unit} must be a number, got "
                                    f"{type_name(value)}")
            if not math.isfinite(value) or value < 0:
                raise ScheduleError(f"cron {name!r}: {unit} must be a finite number >= 0, "
                                    f"got {value!r}")
            total += value * scale
        if total <= 0:
            raise ScheduleError(f"cron {name!r}: give a positive interval as seconds=, "
                                "minutes= or hours=")
        self._add(name, fn, args, total, None)

    def cron(self, name: str, schedule: str, fn: Any,
             args: Mapping[str, Any] | None = None) -> None:
        """Run `fn(args)` at the times a 5-field cron expression (UTC) matches."""
        self._add(name, fn, args, None, CronExpression(schedule))

    def hourly(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
               minute_utc: int = 0) -> None:
        """Run `fn(args)` every hour at `minute_utc`."""
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} * * * *"))

    def daily(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
              hour_utc: int = 0, minute_utc: int = 0) -> None:
        """Run `fn(args)` every day at `hour_utc:minute_utc`."""
        hour = _clock_part(name, "hour_utc", hour_utc, 0, 23)
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} {hour} * * *"))

    def weekly(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
               day_of_week: str, hour_utc: int = 0, minute_utc: int = 0) -> None:
        """Run `fn(args)` every week on `day_of_week` ("monday"...) at `hour_utc:minute_utc`."""
        if not isinstance(day_of_week, str) or day_of_week.lower() not in _WEEKDAYS:
            raise ScheduleError(f"cron {name!r}: day_of_week must be one of "
                                f"{', '.join(_WEEKDAYS)}, got {day_of_week!r}")
        weekday = _WEEKDAYS.index(day_of_week.lower())
        hour = _clock_part(name, "hour_utc", hour_utc, 0, 23)
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} {hour} * * {weekday}"))

    def monthly(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
                day: int, hour_utc: int = 0, minute_utc: int = 0) -> None:
        """Run `fn(args)` every month on `day` (1-31; months without that day are skipped)."""
        day = _clock_part(name, "day", day, 1, 31)
        hour = _clock_part(name, "hour_utc", hour_utc, 0, 23)
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} {hour} {day} * *"))

    def _add(self, name: str, fn: Any, args: Mapping[str, Any] | None,
             interval: float | None, expression: CronExpression | None) -> None:
        if not isinstance(name, str) or not name:
            raise ScheduleError(f"a cron job name is a non-empty str, got {name!r}")
        if name in self.jobs:
            raise ScheduleError(f"cron job {name!r} is defined twice; names must be unique")
        spec = schedulable(fn)
        self.jobs[name] = CronJob(name, spec, check_args(spec, args), interval, expression)

    def __repr__(self) -> str:
        return f"Crons({', '.join(map(repr, self.jobs))})"


def _clock_part(name: str, what: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScheduleError(f"cron {name!r}: {what} must be a whole number {low}-{high}, "
                            f"got {value!r}")
    return value


# -- the scheduler of one database ---------------------------------------------------------


class _Skip(Exception):
    """Abandons a run whose row stopped being pending while the function ran."""


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


class Scheduler:
    """Runs the due calls of one database and keeps its crons scheduled."""

    def __init__(self, db: Database, crons: Crons | None, manual: bool) -> None:
        if crons is not None and not isinstance(crons, Crons):
            raise TypeError(f"Database(crons=...): expected livedb.Crons(), got "
                            f"{type_name(crons)}")
        self._db = db
        self._jobs = {} if crons is None else dict(crons.jobs)
        self._manual = manual
        self._cond = threading.Condition(threading.Lock())
        self._due: list[tuple[float, str]] = []
        self._queued: set[str] = set()
        self._expiring: list[tuple[float, str]] = []
        self._running: dict[str, float] = {}
        """Calls being run now (by any thread), with the time they were due."""
        self._failed_writes: dict[str, int] = {}
        """Calls whose commit could not be written, with how many tries in a row failed."""
        self._unfinished: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        """Actions that ran but whose final state could not be written: (row, state)."""
        self._wake_at = math.inf
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()

    # -- opening -------------------------------------------------------------------

    def open(self) -> None:
        """Fail actions cut short by the last close, bring the crons up to date, and queue."""
        db = self._db
        txn = Transaction(db)
        try:
            rows = txn.system.query(TABLE).collect()
        finally:
            txn.close()
        with self._cond:
            for row in rows:
                self._track(row)
        if rows or self._jobs:
            system_mutation(db, "opening the scheduler", lambda txn: self._recover(txn, rows))

    def _recover(self, txn: WriteTransaction, rows: list[dict]) -> None:
        now = _now(self._db)
        for row in rows:
            if row["state"]["kind"] == "in_progress":
                error = ("the database closed while this action ran; it was not retried "
                         "(scheduled actions run at most once)")
                txn._system_update(row["_id"], {"state": {"kind": "failed", "error": error},
                                                "completed_time": now})
                row["state"] = {"kind": "failed"}
        by_job: dict[str, list[dict]] = {}
        for row in rows:
            cron = row.get("cron")
            if cron is not None:
                by_job.setdefault(cron["name"], []).append(row)
        kept = set()
        for name, job_rows in by_job.items():
            job = self._jobs.get(name)
            for row in job_rows:
                if row["state"]["kind"] != "pending":
                    continue
                if job is not None and name not in kept and self._same(job, row):
                    kept.add(name)
                else:
                    _cancel(txn, row["_id"], now)
        for name, job in self._jobs.items():
            if name in kept:
                continue
            earlier = [r["scheduled_time"] for r in by_job.get(name, ()) if self._same(job, r)]
            when = job.next_time(max(earlier), now) if earlier else job.first_time(now)
            self._insert_run(txn, job, when)

    @staticmethod
    def _same(job: CronJob, row: dict) -> bool:
        return (row["name"] == job.fn.name and row["args"] == job.args
                and row["cron"]["schedule"] == job.schedule)

    @staticmethod
    def _insert_run(txn: WriteTransaction, job: CronJob, when: float) -> Id:
        return _insert_call(txn, job.fn, job.args, when,
                            {"name": job.name, "schedule": job.schedule})

    # -- following commits -----------------------------------------------------------

    def committed(self, docs: list) -> None:
        """Queue the pending and finished rows a commit wrote (called in commit order)."""
        prefix = TABLE + ":"
        with self._cond:
            earliest = self._wake_at
            for doc_id, blob, _keys in docs:
                if blob is not None and doc_id.startswith(prefix):
                    when = self._track(decode(blob))
                    if when is not None and when < earliest:
                        earliest = when
            if earliest < self._wake_at:
                self._cond.notify_all()

    def _track(self, row: dict) -> float | None:
        """Queue one row by its state; the time it becomes due or expires. Holds `_cond`."""
        kind = row["state"]["kind"]
        doc_id = str(row["_id"])
        if kind == "pending":
            if doc_id in self._queued:
                return None
            self._queued.add(doc_id)
            when = row["scheduled_time"]
            heapq.heappush(self._due, (when, doc_id))
        elif kind in _FINISHED and row.get("completed_time") is not None:
            when = row["completed_time"] + RETENTION
            heapq.heappush(self._expiring, (when, doc_id))
        else:
            return None
        if not self._manual and self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._runner, name="livedb-scheduler",
                                            daemon=True)
            self._thread.start()
        return when

    def _take_due(self, now: float) -> tuple[list[str], list[str]]:
        """Pop and claim the calls due at `now` (in time order); pop the rows expired.

        Holds `_cond`. A claimed call is in `_running` until `_release`: popping and
        claiming at once means a due call is always either queued or running.
        """
        due = []
        while self._due and self._due[0][0] <= now:
            when, doc_id = heapq.heappop(self._due)
            self._queued.discard(doc_id)
            if doc_id not in self._running:
                self._running[doc_id] = when
                due.append(doc_id)
        expired = []
        while self._expiring and self._expiring[0][0] <= now:
            expired.append(heapq.heappop(self._expiring)[1])
        return due, expired

    def _requeue(self, doc_ids: list[str]) -> None:
        """Give claimed calls that were not run back to the queue."""
        with self._cond:
            for doc_id in doc_ids:
                when = self._running.pop(doc_id)
                if doc_id not in self._queued:
                    self._queued.add(doc_id)
                    heapq.heappush(self._due, (when, doc_id))
            self._cond.notify_all()

    def _release(self, doc_id: str, retry_at: float | None = None) -> None:
        """Unclaim a call; with `retry_at`, queue it again to be tried at that time.

        Both happen at once, so no other thread can claim the call in between.
        """
        with self._cond:
            self._running.pop(doc_id, None)
            if retry_at is not None and doc_id not in self._queued:
                self._queued.add(doc_id)
                heapq.heappush(self._due, (retry_at, doc_id))
            self._cond.notify_all()

    def _attempt(self, doc_id: str) -> tuple[bool, float | None]:
        """Run one claimed call: whether it ran, and when to try again if it could not commit.

        A failed write changed nothing (the row is still pending, or an action's row
        still `in_progress` with its final state kept in `_unfinished`), so trying again
        keeps scheduled mutations exactly once and actions at most once.
        """
        try:
            ran = self._execute(doc_id)
        except WriteError as e:
            if self._db._closed:
                raise
            return False, self._retry_time(doc_id, e)
        with self._cond:
            self._failed_writes.pop(doc_id, None)
        return ran, None

    def _retry_time(self, doc_id: str, error: WriteError) -> float | None:
        """When to try again a call whose commit failed with `error`; None for never."""
        with self._cond:
            if not error.retryable:
                self._failed_writes.pop(doc_id, None)
                self._unfinished.pop(doc_id, None)
                failures = 0
            else:
                failures = self._failed_writes[doc_id] = self._failed_writes.get(doc_id, 0) + 1
        if not failures:
            log.error("livedb: scheduled call %s could not commit (%s); it is not tried again "
                      "while the database stays open, and runs when it is opened again",
                      doc_id, error)
            return None
        delay = min(RETRY_FIRST * 2.0 ** min(failures - 1, 32), RETRY_MAX)
        log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                "livedb: scheduled call %s could not commit (%s); trying again in %g s "
                "(failure %d)", doc_id, error, delay, failures)
        return _now(self._db) + delay

    # -- running -----------------------------------------------------------------------

    def run_due(self) -> int:
        """Run every due call in this thread, including ones they make due; how many ran.

        Due calls another thread is running already (the runner's pool, another
        `run_scheduled`) are waited for, then what they made due is run too.
        """
        if getattr(self._db._local, "writing", False):
            raise LiveDBError("run_scheduled cannot be called from inside a mutation")
        ran = 0
        rounds = 0
        worker = getattr(self._local, "worker", False)
        while True:
            now = _now(self._db)
            with self._cond:
                due, expired = self._take_due(now)
            if due or expired:
                rounds += 1
                if rounds > MAX_ROUNDS:
                    self._requeue(due)
                    raise LiveDBError(f"run_scheduled: calls kept becoming due for {MAX_ROUNDS} "
                                      "rounds (does a function schedule itself with no delay?)")
                for i, doc_id in enumerate(due):
                    retry_at = None
                    try:
                        done, retry_at = self._attempt(doc_id)
                        ran += done
                    except BaseException:
                        self._requeue(due[i + 1:])
                        raise
                    finally:
                        self._release(doc_id, retry_at)
                if expired:
                    self._collect(expired)
                continue
            if worker:
                return ran
            with self._cond:
                elsewhere = [i for i, when in self._running.items() if when <= now]
                if not elsewhere:
                    return ran
                while any(i in self._running for i in elsewhere):
                    self._cond.wait()

    def _runner(self) -> None:
        """The background thread: sleep until the next due time, hand due calls to the pool."""
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._stopping:
                        return
                    try:
                        now = _now(self._db)
                    except LiveDBError:
                        log.exception("livedb: the scheduler cannot read the clock")
                        now = -math.inf
                    due, expired = self._take_due(now)
                    if due or expired:
                        self._wake_at = -math.inf
                        break
                    first = min(self._due[0][0] if self._due else math.inf,
                                self._expiring[0][0] if self._expiring else math.inf)
                    self._wake_at = first
                    cond.wait(None if first == math.inf else min(first - now, MAX_SLEEP))
            for i, doc_id in enumerate(due):
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(WORKERS, "livedb-scheduled")
                try:
                    self._pool.submit(self._work, doc_id)
                except RuntimeError:
                    for unrun in due[i:]:
                        self._release(unrun)
                    return
            if expired:
                try:
                    self._collect(expired)
                except Exception:
                    log.exception("livedb: deleting old scheduled-function rows failed")

    def _work(self, doc_id: str) -> None:
        self._local.worker = True
        retry_at = None
        try:
            retry_at = self._attempt(doc_id)[1]
        except Exception:
            if not self._db._closed:
                log.exception("livedb: running scheduled call %s failed", doc_id)
        finally:
            self._release(doc_id, retry_at)

    def _execute(self, doc_id: str) -> bool:
        """Run one call if it is still pending; whether it ran.

        An action that ran but whose final state could not be written is not run again:
        only its state is written now.
        """
        unfinished = self._unfinished.get(doc_id)
        if unfinished is not None:
            ran_row, state = unfinished
            self._finish(ran_row, "in_progress", state)
            del self._unfinished[doc_id]
            return True
        db = self._db
        txn = Transaction(db)
        try:
            row = txn.system.get(doc_id)
        finally:
            txn.close()
        if row is None or row["state"]["kind"] != "pending":
            return False
        fn = lookup(row["name"])
        if fn is None or fn.kind not in (MUTATION, ACTION):
            error = (f"cannot find {row['name']}: no mutation or action of that name can be "
                     "imported")
            log.error("livedb: scheduled call %s failed: %s", doc_id, error)
            return self._finish(row, "pending", {"kind": "failed", "error": error})
        if fn.kind == MUTATION:
            return self._run_mutation(row, fn)
        return self._run_action(row, fn)

    def _run_mutation(self, row: dict, fn: Function) -> bool:
        """Run a scheduled mutation; its row turns `success` in the same transaction.

        Whether the row is still pending is judged at the transaction's snapshot, not
        through its own writes: a mutation that cancels its own row still runs once.
        """
        doc_id = row["_id"]

        def succeed(txn: WriteTransaction) -> None:
            version = txn._store.read(str(doc_id), txn._ts)
            if version is None or version[1] is None:
                raise _Skip
            if decode(version[1])["state"]["kind"] != "pending":
                raise _Skip
            now = _now(self._db)
            txn._system_update(doc_id, {"state": {"kind": "success"}, "completed_time": now})
            self._schedule_next(txn, row, now)

        try:
            self._db._mutation(fn, row["args"], None, None, before_commit=succeed)
        except _Skip:
            return False
        except WriteError:
            raise
        except Exception as e:
            if self._db._closed:
                raise
            log.warning("livedb: scheduled mutation %s failed: %s", row["name"], _describe(e))
            return self._finish(row, "pending", {"kind": "failed", "error": _describe(e)})
        return True

    def _run_action(self, row: dict, fn: Function) -> bool:
        """Run a scheduled action after marking it `in_progress` in a commit of its own."""
        if not self._finish(row, "pending", {"kind": "in_progress"}, final=False):
            return False
        try:
            self._db.action(fn, row["args"])
            state: dict = {"kind": "success"}
        except Exception as e:
            if self._db._closed:
                raise
            log.warning("livedb: scheduled action %s failed: %s", row["name"], _describe(e))
            state = {"kind": "failed", "error": _describe(e)}
        try:
            self._finish(row, "in_progress", state)
        except WriteError:
            self._unfinished[str(row["_id"])] = (row, state)
            raise
        return True

    def _finish(self, row: dict, expected: str, state: dict, final: bool = True) -> bool:
        """Move a row from state `expected` to `state`; False if it had moved on already."""
        doc_id = row["_id"]

        def change(txn: WriteTransaction) -> bool:
            current = txn.system.get(doc_id)
            if current is None or current["state"]["kind"] != expected:
                return False
            fields: dict[str, Any] = {"state": state}
            if final:
                fields["completed_time"] = now = _now(self._db)
                self._schedule_next(txn, row, now)
            txn._system_update(doc_id, fields)
            return True

        return system_mutation(self._db, "the scheduler", change)

    def _schedule_next(self, txn: WriteTransaction, row: dict, now: float) -> None:
        """After a cron job's run, schedule its next one (unless the job changed meanwhile)."""
        cron = row.get("cron")
        if cron is None:
            return
        job = self._jobs.get(cron["name"])
        if job is not None and self._same(job, row):
            self._insert_run(txn, job, job.next_time(row["scheduled_time"], now))

    def _collect(self, doc_ids: list[str]) -> None:
        """Delete finished rows older than `RETENTION`.

        If the deletion cannot be written because the disk is full, it is tried again
        `RETRY_MAX` seconds later (after other write failures: once the database reopens).
        """
        def delete(txn: WriteTransaction) -> None:
            now = _now(self._db)
            for doc_id in doc_ids:
                row = txn.system.get(doc_id)
                if (row is not None and row["state"]["kind"] in _FINISHED
                        and row["completed_time"] + RETENTION <= now):
                    txn._system_update(doc_id, None)

        try:
            system_mutation(self._db, "the scheduler", delete)
        except WriteError as e:
            if self._db._closed:
                raise
            if not e.retryable:
                log.error("livedb: deleting old scheduled-function rows failed (%s); they "
                          "are deleted once the database is opened again", e)
                return
            log.warning("livedb: deleting old scheduled-function rows failed (%s); trying "
                        "again in %g s", e, RETRY_MAX)
            later = _now(self._db) + RETRY_MAX
            with self._cond:
                for doc_id in doc_ids:
                    heapq.heappush(self._expiring, (later, doc_id))
                self._cond.notify_all()

    # -- closing -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the runner and wait for the calls running now (unless called from one)."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        inside = getattr(self._local, "worker", False)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=not inside, cancel_futures=True)


__all__ = ["Crons", "CronExpression", "ActionScheduler", "MutationScheduler", "Scheduler",
           "ScheduleError"]
