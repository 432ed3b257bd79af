"""Naming scheduled functions, and `Crons`: recurring jobs and cron expressions.

A scheduled call is stored by its function's stable name, `"module:qualname"`, and looked
up again by that name when it runs (`lookup`), so only `@mutation` and `@action`
functions defined at module level can be scheduled (`schedulable` says so at once).
Cron expressions are parsed here; running the jobs is the scheduler's (_scheduler.py).
"""

from __future__ import annotations

import calendar
import importlib
import math
import sys
import warnings
from bisect import bisect_left
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ._errors import ValidationError
from ._functions import ACTION, MUTATION, Function, check_args, is_adhoc
from ._values import type_name


class ScheduleError(ValidationError, ValueError):
    """A bad schedule: a delay, time, function, cron expression or cron job definition.

    Both a `ValidationError` (livedb rejects bad input with a `LiveDBError`) and a
    `ValueError` (as `Crons` promises for duplicate names).
    """


# -- resolving functions by name ---------------------------------------------------------

_resolved: dict[str, Function[Any]] = {}


def lookup(name: str) -> Function[Any] | None:
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
    if not isinstance(obj, Function):
        return None
    _resolved[name] = obj
    return obj


def schedulable(fn: Any) -> Function[Any]:
    """`fn` if it can be scheduled (a mutation or action found again by its name), else raise."""
    if not isinstance(fn, Function):
        name = getattr(fn, "__qualname__", None)
        what = ("a lambda" if name == "<lambda>" else f"plain function {name}" if name
                else repr(fn)[:80])
        raise ScheduleError(f"cannot schedule {what}: only functions decorated with @mutation "
                            "or @action, defined at module level, can be scheduled (a call "
                            "is stored by the function's name and looked up when it runs)")
    if fn.kind not in (MUTATION, ACTION):
        raise ScheduleError(f"cannot schedule {fn.name}: it is a {fn.kind}; only mutations "
                            "and actions can be scheduled")
    if is_adhoc(fn) or "<" in fn.name:
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


def check_delay(seconds: Any) -> float:
    """`seconds` of `run_after` as a float: a finite number >= 0 (else `ScheduleError`)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ScheduleError(f"run_after: seconds must be a number, got {type_name(seconds)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ScheduleError(f"run_after: seconds must be a finite number >= 0, got {seconds!r}")
    return float(seconds)


def check_timestamp(timestamp: Any) -> float:
    """`timestamp` of `run_at` as seconds since the epoch (a number or an aware datetime)."""
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

    def __init__(self, name: str, fn: Function[Any], args: dict[str, Any], interval: float | None,
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
    """Recurring jobs: build one, add jobs, and pass it as `Database(..., crons=crons)`.

    Each job runs a `@mutation` or `@action` defined at module level, with fixed
    arguments, on a schedule. All times are UTC. An `interval` job first runs when the
    database opens, then every interval; the others run at the times their schedule
    matches. Runs of one job never overlap (the next run is scheduled when the previous
    one finishes), and runs missed while the database was closed, or while a run took
    long, collapse into one. Each run is an ordinary scheduled call (a row of
    `_scheduled_functions`). Jobs are matched by their unique names when the database
    opens: a job no longer given stops, and one whose schedule changed is rescheduled.

    Examples:
        >>> from livedb import Crons, Database, mutation
        >>> @mutation
        ... def clear_presence(ctx):
        ...     for row in ctx.db.query("presence").collect():
        ...         ctx.db.delete(row["_id"])
        >>> crons = Crons()
        >>> crons.interval("clear presence", clear_presence, seconds=30)
        >>> now = [1000.0]
        >>> db = Database(clock=lambda: now[0], crons=crons)
        >>> _ = db.mutation(lambda ctx: ctx.db.insert("presence", {"user": "ada"}))
        >>> db.run_scheduled()
        1
        >>> db.query(lambda ctx: ctx.db.query("presence").collect())
        []
        >>> db.close()
    """

    def __init__(self) -> None:
        """An empty set of jobs: add them with `interval`, `cron`, `hourly`, `daily`,
        `weekly` and `monthly`."""
        self.jobs: dict[str, CronJob] = {}

    def interval(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
                 seconds: float = 0, minutes: float = 0, hours: float = 0) -> None:
        """Run `fn(args)` every `seconds` + `minutes` + `hours`.

        The first run is when the database opens; each next one an interval after the
        previous run was due (missed ones skipped).

        Args:
            name: The job's name, unique among the jobs.
            fn: A `@mutation` or `@action` defined at module level.
            args: Its arguments, as one dict (validated now), or None.
            seconds: Part of the interval; a finite number >= 0.
            minutes: Part of the interval.
            hours: Part of the interval. Their sum must be positive.

        Raises:
            ValueError: A duplicate name, a bad or zero interval, or a function that cannot
                be scheduled (the error is also a `livedb.ValidationError`).
            ValidationError: Bad arguments.

        Examples:
            >>> from livedb import Crons, mutation
            >>> @mutation
            ... def clear_presence(ctx):
            ...     pass
            >>> crons = Crons()
            >>> crons.interval("clear presence", clear_presence, minutes=1, seconds=30)
            >>> crons
            Crons('clear presence')
        """
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
        """Run `fn(args)` at the times a cron expression matches (in UTC).

        The expression has five fields, `minute hour day-of-month month day-of-week`. Each
        is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a
        comma-separated list of those; months and weekdays may be named (`jan`, `mon`); a
        weekday is 0-7, both 0 and 7 meaning Sunday. When both day fields are restricted, a
        day matching either one matches (as in Vixie cron). `@hourly`, `@daily`, `@weekly`,
        `@monthly` and `@yearly` are shorthands.

        Args:
            name: The job's name, unique among the jobs.
            schedule: The cron expression, e.g. `"*/5 * * * *"` (every five minutes).
            fn: A `@mutation` or `@action` defined at module level.
            args: Its arguments, as one dict (validated now), or None.

        Raises:
            ValueError: A duplicate name, a malformed expression, or a function that cannot
                be scheduled (the error is also a `livedb.ValidationError`).
            ValidationError: Bad arguments.

        Examples:
            >>> from livedb import Crons, mutation, v
            >>> @mutation(args={"email": v.string()})
            ... def remind(ctx, email):
            ...     pass
            >>> crons = Crons()
            >>> crons.cron("payment reminder", "0 16 1 * *", remind, {"email": "ada@example.com"})
            >>> try:
            ...     crons.cron("typo", "0 25 * * *", remind, {"email": "ada@example.com"})
            ... except ValueError as e:
            ...     print(e)
            cron expression '0 25 * * *': hour field '25': 25 is out of range 0-23
        """
        self._add(name, fn, args, None, CronExpression(schedule))

    def hourly(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
               minute_utc: int = 0) -> None:
        """Run `fn(args)` every hour at minute `minute_utc`.

        Args:
            name: The job's name, unique among the jobs.
            fn: A `@mutation` or `@action` defined at module level.
            args: Its arguments, as one dict (validated now), or None.
            minute_utc: The minute of the hour, 0-59.

        Raises:
            ValueError: A duplicate name, a minute out of range, or a function that cannot be
                scheduled (the error is also a `livedb.ValidationError`).
            ValidationError: Bad arguments.

        Examples:
            >>> from livedb import Crons, mutation
            >>> @mutation
            ... def rotate_logs(ctx):
            ...     pass
            >>> Crons().hourly("rotate logs", rotate_logs, minute_utc=15)
        """
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} * * * *"))

    def daily(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
              hour_utc: int = 0, minute_utc: int = 0) -> None:
        """Run `fn(args)` every day at `hour_utc:minute_utc`.

        Args:
            name: The job's name, unique among the jobs.
            fn: A `@mutation` or `@action` defined at module level.
            args: Its arguments, as one dict (validated now), or None.
            hour_utc: The hour, 0-23 (UTC).
            minute_utc: The minute, 0-59.

        Raises:
            ValueError: A duplicate name, a time out of range, or a function that cannot be
                scheduled (the error is also a `livedb.ValidationError`).
            ValidationError: Bad arguments.

        Examples:
            >>> from livedb import Crons, mutation
            >>> @mutation
            ... def send_digest(ctx):
            ...     pass
            >>> crons = Crons()
            >>> crons.daily("send digest", send_digest, hour_utc=17, minute_utc=30)
            >>> try:
            ...     crons.daily("send digest", send_digest)
            ... except ValueError as e:
            ...     print(e)
            cron job 'send digest' is defined twice; names must be unique
        """
        hour = _clock_part(name, "hour_utc", hour_utc, 0, 23)
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} {hour} * * *"))

    def weekly(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
               day_of_week: str, hour_utc: int = 0, minute_utc: int = 0) -> None:
        """Run `fn(args)` every week on `day_of_week` at `hour_utc:minute_utc`.

        Args:
            name: The job's name, unique among the jobs.
            fn: A `@mutation` or `@action` defined at module level.
            args: Its arguments, as one dict (validated now), or None.
            day_of_week: `"monday"` ... `"sunday"` (any case).
            hour_utc: The hour, 0-23 (UTC).
            minute_utc: The minute, 0-59.

        Raises:
            ValueError: A duplicate name, an unknown day, a time out of range, or a function
                that cannot be scheduled (the error is also a `livedb.ValidationError`).
            ValidationError: Bad arguments.

        Examples:
            >>> from livedb import Crons, mutation
            >>> @mutation
            ... def weekly_report(ctx):
            ...     pass
            >>> Crons().weekly("report", weekly_report, day_of_week="friday", hour_utc=9)
        """
        if not isinstance(day_of_week, str) or day_of_week.lower() not in _WEEKDAYS:
            raise ScheduleError(f"cron {name!r}: day_of_week must be one of "
                                f"{', '.join(_WEEKDAYS)}, got {day_of_week!r}")
        weekday = _WEEKDAYS.index(day_of_week.lower())
        hour = _clock_part(name, "hour_utc", hour_utc, 0, 23)
        minute = _clock_part(name, "minute_utc", minute_utc, 0, 59)
        self._add(name, fn, args, None, CronExpression(f"{minute} {hour} * * {weekday}"))

    def monthly(self, name: str, fn: Any, args: Mapping[str, Any] | None = None, *,
                day: int, hour_utc: int = 0, minute_utc: int = 0) -> None:
        """Run `fn(args)` every month on `day` at `hour_utc:minute_utc`.

        Months without that day are skipped (`day=31` runs seven times a year).

        Args:
            name: The job's name, unique among the jobs.
            fn: A `@mutation` or `@action` defined at module level.
            args: Its arguments, as one dict (validated now), or None.
            day: The day of the month, 1-31.
            hour_utc: The hour, 0-23 (UTC).
            minute_utc: The minute, 0-59.

        Raises:
            ValueError: A duplicate name, a day or time out of range, or a function that
                cannot be scheduled (the error is also a `livedb.ValidationError`).
            ValidationError: Bad arguments.

        Examples:
            >>> from livedb import Crons, mutation
            >>> @mutation
            ... def send_invoices(ctx):
            ...     pass
            >>> Crons().monthly("invoices", send_invoices, day=1, hour_utc=6)
        """
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
