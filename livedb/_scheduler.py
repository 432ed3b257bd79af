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

import heapq
import logging
import math
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ._crons import (
    CronJob,
    Crons,
    check_delay,
    check_timestamp,
    lookup,
    schedulable,
)
from ._engines import Commit, WriteError
from ._errors import LiveDBError, ValidationError
from ._functions import ACTION, MUTATION, Function, MutationCtx, Runner, check_args
from ._ids import Id, parse_id
from ._kernel import Kernel, State
from ._query import Writer
from ._validators import Mismatch, check_any
from ._values import decode, type_name

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
RECHECK = 1.0
"""Shared databases: seconds before a call claimed by another live process is looked at
again (it may have finished, or its process may have died)."""
OPEN_WAIT = 30.0
"""Shared databases: how long opening waits for another process opening the scheduler."""
_OPEN_KEY = "livedb:opening-the-scheduler"
_DIED = ("the process running this action died; it was not retried (scheduled actions run "
         "at most once)")
_MAX_ERROR = 4000
_FINISHED = ("success", "failed", "canceled")

T = TypeVar("T")


def _call_id(id: Any, op: str) -> str:
    parsed = parse_id(id)
    if parsed is None or parsed[0] != TABLE:
        raise ValidationError(f"{op}: {id!r} is not an id of {TABLE}")
    return parsed[1]


# -- writing rows --------------------------------------------------------------------------


def _insert_call(txn: Writer, fn: Any, args: Mapping[str, Any] | None,
                 when: float, cron: dict[str, Any] | None = None) -> Id:
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
    return txn.system_insert(TABLE, row)


def _cancel(txn: Writer, doc_id: str, now: float) -> None:
    """Cancel a pending or running call; a finished or deleted one is left as it is."""
    row = txn.system.get(doc_id)
    if row is not None and row["state"]["kind"] in ("pending", "in_progress"):
        txn.system_update(doc_id, {"state": {"kind": "canceled"}, "completed_time": now})


class MutationScheduler:
    """`ctx.scheduler` in a mutation: what it schedules or cancels commits with the
    mutation, or not at all if the mutation raises.

    Every scheduled call is a document of the system table `_scheduled_functions`, read
    with `ctx.db.system`: `name` (the function's `"module:qualname"`), `args`,
    `scheduled_time`, `completed_time` and `state` (`{"kind": "pending"}`, then
    `"in_progress"` for an action, then `"success"`, `"failed"` with an `"error"`, or
    `"canceled"`). Scheduled mutations run exactly once, scheduled actions at most once;
    both run with no identity. With a `path`, pending calls survive a restart.
    Finished calls are deleted after 7 days.
    """

    __slots__ = ("_txn",)

    def __init__(self, txn: MutationCtx) -> None:
        self._txn = txn

    def run_after(self, seconds: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` `seconds` from now, once this mutation commits.

        Args:
            seconds: The delay, a finite number >= 0 (0: as soon as possible).
            fn: A `@mutation` or `@action` defined at module level (a call is stored by the
                function's `"module:qualname"` name and looked up again when it runs).
            args: The arguments, as one dict, validated now; they are stored, so the limits
                of stored values apply.

        Returns:
            The call's id in `_scheduled_functions` (for `cancel` and `ctx.db.system.get`).

        Raises:
            ValidationError: A bad delay; `fn` is a query, a lambda, a nested or
                undecorated function, or cannot be found again by its name; bad arguments.
                (For a bad delay or function, the error is also a `ValueError`.)

        Examples:
            >>> from livedb import Database, mutation, v
            >>> @mutation(args={"text": v.string()})
            ... def remind(ctx, text):
            ...     ctx.db.insert("reminders", {"text": text})
            >>> @mutation
            ... def plan(ctx):
            ...     return ctx.scheduler.run_after(3600, remind, {"text": "stretch"})
            >>> now = [1000.0]
            >>> db = Database(clock=lambda: now[0])
            >>> call_id = db.mutation(plan)
            >>> db.query(lambda ctx: ctx.db.system.get(call_id)["state"])
            {'kind': 'pending'}
            >>> now[0] += 3600
            >>> db.run_scheduled()
            1
            >>> db.query(lambda ctx: ctx.db.system.get(call_id)["state"])
            {'kind': 'success'}
            >>> db.close()
        """
        delay = check_delay(seconds)
        return _insert_call(self._txn, fn, args, self._txn.catalog.now() + delay)

    def run_at(self, timestamp: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` at `timestamp`, once this mutation commits.

        Args:
            timestamp: When, in seconds since the epoch on the database clock (or a
                timezone-aware `datetime`). A time in the past means as soon as possible.
            fn: A `@mutation` or `@action` defined at module level.
            args: The arguments, as one dict, validated now and stored.

        Returns:
            The call's id in `_scheduled_functions`.

        Raises:
            ValidationError: A non-finite timestamp or a naive `datetime`; `fn` cannot be
                scheduled; bad arguments. (For a bad time or function, the error is also a
                `ValueError`.)

        Examples:
            >>> from datetime import datetime, timezone
            >>> from livedb import Database, mutation
            >>> @mutation
            ... def happy_new_year(ctx):
            ...     ctx.db.insert("greetings", {"text": "Happy new year"})
            >>> db = Database()
            >>> call_id = db.mutation(lambda ctx: ctx.scheduler.run_at(
            ...     datetime(2100, 1, 1, tzinfo=timezone.utc), happy_new_year))
            >>> db.query(lambda ctx: ctx.db.system.get(call_id)["scheduled_time"])
            4102444800.0
            >>> db.close()
        """
        return _insert_call(self._txn, fn, args, check_timestamp(timestamp))

    def cancel(self, id: str) -> None:
        """Cancel a scheduled call, once this mutation commits.

        A pending call will not run; its state becomes `"canceled"`. An action already
        running is marked canceled but runs to its end. A call that has finished (or was
        deleted after 7 days) is left as it is.

        Args:
            id: The call's id, as `run_after` or `run_at` returned it.

        Raises:
            ValidationError: `id` is not an id of `_scheduled_functions`.

        Examples:
            >>> from livedb import Database, mutation
            >>> @mutation
            ... def remind(ctx):
            ...     ctx.db.insert("reminders", {})
            >>> db = Database()
            >>> call_id = db.mutation(lambda ctx: ctx.scheduler.run_after(60, remind))
            >>> db.mutation(lambda ctx: ctx.scheduler.cancel(call_id))
            >>> db.query(lambda ctx: ctx.db.system.get(call_id)["state"])
            {'kind': 'canceled'}
            >>> db.close()
        """
        _cancel(self._txn, _call_id(id, "cancel"), self._txn.catalog.now())


class ActionScheduler:
    """`ctx.scheduler` in an action: each call commits at once, in a transaction of its
    own (an action is not a transaction). The calls and their rows in
    `_scheduled_functions` are those of `MutationScheduler`."""

    __slots__ = ("_kernel",)

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def run_after(self, seconds: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` `seconds` from now; scheduled at once (committed when this returns).

        Args:
            seconds: The delay, a finite number >= 0.
            fn: A `@mutation` or `@action` defined at module level.
            args: The arguments, as one dict, validated now and stored.

        Returns:
            The call's id in `_scheduled_functions`.

        Raises:
            ValidationError: A bad delay; `fn` cannot be scheduled; bad arguments. (For a bad
                delay or function, the error is also a `ValueError`.)
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database, action, mutation
            >>> @mutation
            ... def retry_later(ctx):
            ...     ctx.db.insert("attempts", {})
            >>> @action
            ... def try_fetch(ctx):
            ...     return ctx.scheduler.run_after(30, retry_later)
            >>> db = Database()
            >>> db.action(try_fetch).table
            '_scheduled_functions'
            >>> db.close()
        """
        delay = check_delay(seconds)
        schedulable(fn)
        return self._kernel.write_system("scheduler.run_after", lambda txn: _insert_call(
            txn, fn, args, self._kernel.catalog.now() + delay))

    def run_at(self, timestamp: float, fn: Any, args: Mapping[str, Any] | None = None) -> Id:
        """Run `fn(args)` at `timestamp`; scheduled at once (committed when this returns).

        Args:
            timestamp: When, in seconds since the epoch on the database clock (or a
                timezone-aware `datetime`). A time in the past means as soon as possible.
            fn: A `@mutation` or `@action` defined at module level.
            args: The arguments, as one dict, validated now and stored.

        Returns:
            The call's id in `_scheduled_functions`.

        Raises:
            ValidationError: A non-finite timestamp or a naive `datetime`; `fn` cannot be
                scheduled; bad arguments. (For a bad time or function, the error is also a
                `ValueError`.)
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database, mutation
            >>> @mutation
            ... def wake_up(ctx):
            ...     ctx.db.insert("alarms", {})
            >>> db = Database()
            >>> call_id = db.action(lambda ctx: ctx.scheduler.run_at(4102444800, wake_up))
            >>> db.query(lambda ctx: ctx.db.system.get(call_id)["name"]).endswith(":wake_up")
            True
            >>> db.close()
        """
        when = check_timestamp(timestamp)
        schedulable(fn)
        return self._kernel.write_system("scheduler.run_at",
                               lambda txn: _insert_call(txn, fn, args, when))

    def cancel(self, id: str) -> None:
        """Cancel a scheduled call at once (committed when this returns).

        A pending call will not run; an action already running runs to its end; a finished
        call is left as it is.

        Args:
            id: The call's id, as `run_after` or `run_at` returned it.

        Raises:
            ValidationError: `id` is not an id of `_scheduled_functions`.
            LiveDBError: The database is closed.

        Examples:
            >>> from livedb import Database, mutation
            >>> @mutation
            ... def remind(ctx):
            ...     ctx.db.insert("reminders", {})
            >>> db = Database()
            >>> call_id = db.action(lambda ctx: ctx.scheduler.run_after(60, remind))
            >>> db.action(lambda ctx: ctx.scheduler.cancel(call_id))
            >>> db.query(lambda ctx: ctx.db.system.get(call_id)["state"]["kind"])
            'canceled'
            >>> db.close()
        """
        doc_id = _call_id(id, "cancel")
        self._kernel.write_system("scheduler.cancel",
                        lambda txn: _cancel(txn, doc_id, self._kernel.catalog.now()))


# -- the scheduler of one database ---------------------------------------------------------


class _Skip(Exception):
    """Abandons a run whose row stopped being pending while the function ran."""


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


class Scheduler:
    """Runs the due calls of one database and keeps its crons scheduled."""

    system_only = True
    """Hears only of commits that wrote a system table (see _kernel.CommitListener)."""
    settles = False

    def __init__(self, kernel: Kernel, runner: Runner, crons: Crons | None,
                 manual: bool, passive: bool = False) -> None:
        if crons is not None and not isinstance(crons, Crons):
            raise TypeError(f"Database(crons=...): expected livedb.Crons(), got "
                            f"{type_name(crons)}")
        self._kernel = kernel
        self._calls = runner
        """Runs the scheduled functions (the database's call path)."""
        kernel.catalog.add_system_table(TABLE)
        self._jobs = {} if crons is None else dict(crons.jobs)
        self._manual = manual or passive
        self._passive = passive
        """A tool's database (export, import): nothing runs, nothing is recovered."""
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        """Waited on under `_mutex` (taken directly where nobody waits: a C-level lock)."""
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

    @property
    def _closed(self) -> bool:
        return self._kernel.state is State.CLOSED

    # -- opening -------------------------------------------------------------------

    def open(self) -> None:
        """Fail actions cut short by the last close, bring the crons up to date, and queue."""
        if self._passive:
            return
        kernel = self._kernel
        if kernel.shared is not None:
            self._open_shared()
            return
        txn = kernel.reader()
        try:
            rows = txn.system.query(TABLE).collect()
        finally:
            txn.close()
        with self._mutex:
            for row in rows:
                self._track(row)
        if rows or self._jobs:
            kernel.write_system("opening the scheduler",
                         lambda txn: self._recover(txn, rows))

    def _open_shared(self) -> None:
        """`open` on a shared database: one process at a time (a claim), at the newest
        commit, fails only the actions whose process died, and leaves the crons of jobs
        it does not know (given no `crons`) to the processes that run them."""
        kernel = self._kernel
        engine: Any = kernel.engine
        deadline = kernel.catalog.now() + OPEN_WAIT
        while not engine.claim(_OPEN_KEY):
            if kernel.catalog.now() > deadline:
                raise LiveDBError("opening the scheduler: another process kept opening it for "
                                  f"{OPEN_WAIT:g} s")
            threading.Event().wait(0.01)
        try:
            kernel.shared.catch_up()
            txn = kernel.reader()
            try:
                rows = txn.system.query(TABLE).collect()
            finally:
                txn.close()
            dead = [row["_id"] for row in rows if row["state"]["kind"] == "in_progress"
                    and engine.claim(str(row["_id"]))]
            try:
                kernel.write_system("opening the scheduler",
                                    lambda txn: self._recover(txn, rows, set(dead)))
            finally:
                for doc_id in dead:
                    engine.unclaim(str(doc_id))
        finally:
            engine.unclaim(_OPEN_KEY)
        with self._cond:
            for row in rows:
                self._track(row)

    def _recover(self, txn: Writer, rows: list[dict[str, Any]],
                 dead: set[Any] | None = None) -> None:
        """Fail the actions cut short (with `dead`, only those: their process died), and
        schedule each cron job's next run (cancelling runs of changed or removed jobs)."""
        now = self._kernel.catalog.now()
        shared = dead is not None
        for row in rows:
            if shared and row["_id"] not in dead:  # type: ignore[operator]
                continue
            if row["state"]["kind"] == "in_progress" and shared:
                current = txn.system.get(row["_id"])
                if current is not None and current["state"]["kind"] == "in_progress":
                    txn.system_update(row["_id"], {"state": {"kind": "failed", "error": _DIED},
                                                    "completed_time": now})
                row["state"] = {"kind": "failed"}
            elif row["state"]["kind"] == "in_progress":
                error = ("the database closed while this action ran; it was not retried "
                         "(scheduled actions run at most once)")
                txn.system_update(row["_id"], {"state": {"kind": "failed", "error": error},
                                                "completed_time": now})
                row["state"] = {"kind": "failed"}
        by_job: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            cron = row.get("cron")
            if cron is not None:
                by_job.setdefault(cron["name"], []).append(row)
        kept = set()
        if shared and not self._jobs:
            return
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
    def _same(job: CronJob, row: dict[str, Any]) -> bool:
        return (row["name"] == job.fn.name and row["args"] == job.args  # type: ignore[no-any-return]
                and row["cron"]["schedule"] == job.schedule)

    @staticmethod
    def _insert_run(txn: Writer, job: CronJob, when: float) -> Id:
        return _insert_call(txn, job.fn, job.args, when,
                            {"name": job.name, "schedule": job.schedule})

    # -- following commits -----------------------------------------------------------

    def committed(self, commit: Commit) -> None:
        """Queue the pending and finished rows a commit wrote (called in commit order)."""
        prefix = TABLE + ":"
        with self._mutex:
            earliest = self._wake_at
            for doc_id, blob, _creation_time in commit.writes:
                if blob is not None and doc_id.startswith(prefix):
                    when = self._track(decode(blob))
                    if when is not None and when < earliest:
                        earliest = when
            if earliest < self._wake_at:
                self._cond.notify_all()

    def settled(self, ts: int) -> None:
        """Nothing to do in the committing thread."""

    def _track(self, row: dict[str, Any]) -> float | None:
        """Queue one row by its state; the time it becomes due or expires. Holds `_mutex`."""
        kind = row["state"]["kind"]
        doc_id = str(row["_id"])
        if kind == "pending":
            if doc_id in self._queued:
                return None
            self._queued.add(doc_id)
            when: float = row["scheduled_time"]
            heapq.heappush(self._due, (when, doc_id))
        elif kind in _FINISHED and row.get("completed_time") is not None:
            when = row["completed_time"] + RETENTION
            heapq.heappush(self._expiring, (when, doc_id))
        elif (kind == "in_progress" and self._kernel.shared is not None
              and doc_id not in self._running and doc_id not in self._queued):
            self._queued.add(doc_id)
            when = self._kernel.catalog.now() + RECHECK
            heapq.heappush(self._due, (when, doc_id))
        else:
            return None
        if not self._manual and self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._runner, name="livedb-scheduler",
                                            daemon=True)
            self._thread.start()
        return when

    def _take_due(self, now: float) -> tuple[list[str], list[str]]:
        """Pop and claim the calls due at `now` (in time order); pop the rows expired.

        Holds `_mutex`. A claimed call is in `_running` until `_release`: popping and
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
        with self._mutex:
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
        with self._mutex:
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
            if self._kernel.shared is not None:
                ran, retry_at = self._execute_shared(doc_id)
                if retry_at is not None:
                    return ran, retry_at
            else:
                ran = self._execute(doc_id)
        except WriteError as e:
            if self._closed:
                raise
            return False, self._retry_time(doc_id, e)
        with self._mutex:
            self._failed_writes.pop(doc_id, None)
        return ran, None

    def _retry_time(self, doc_id: str, error: WriteError) -> float | None:
        """When to try again a call whose commit failed with `error`; None for never."""
        with self._mutex:
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
        return self._kernel.catalog.now() + delay

    # -- running -----------------------------------------------------------------------

    def run_due(self) -> int:
        """Run every due call in this thread, including ones they make due; how many ran.

        Due calls another thread is running already (the runner's pool, another
        `run_scheduled`) are waited for, then what they made due is run too.
        """
        if self._kernel.writing:
            raise LiveDBError("run_scheduled cannot be called from inside a mutation")
        ran = 0
        rounds = 0
        worker = getattr(self._local, "worker", False)
        while True:
            now = self._kernel.catalog.now()
            with self._mutex:
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
            with self._mutex:
                elsewhere = [i for i, when in self._running.items() if when <= now]
                if not elsewhere:
                    return ran
                while any(i in self._running for i in elsewhere):
                    self._cond.wait()

    def _runner(self) -> None:
        """The background thread: sleep until the next due time, hand due calls to the pool."""
        cond = self._cond
        while True:
            with self._mutex:
                while True:
                    if self._stopping:
                        return
                    try:
                        now = self._kernel.catalog.now()
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
            if not self._closed:
                log.exception("livedb: running scheduled call %s failed", doc_id)
        finally:
            self._release(doc_id, retry_at)

    def _execute_shared(self, doc_id: str) -> tuple[bool, float | None]:
        """Run one call on a shared database if this process claims it; whether it ran,
        and when to look again at a call another live process holds.

        An action found `in_progress` whose claim can be taken was cut short by the death
        of the process running it: it is marked failed, never run again."""
        row = self._row(doc_id)
        if row is None or row["state"]["kind"] not in ("pending", "in_progress"):
            return False, None
        engine: Any = self._kernel.engine
        if doc_id not in self._unfinished and not engine.claim(doc_id):
            return False, self._kernel.catalog.now() + RECHECK
        try:
            row = self._row(doc_id)
            if row is None:
                return False, None
            if row["state"]["kind"] == "in_progress" and doc_id not in self._unfinished:
                return self._finish(row, "in_progress", {"kind": "failed", "error": _DIED}), None
            if row["state"]["kind"] == "pending":
                fn = lookup(row["name"])
                if fn is None or fn.kind not in (MUTATION, ACTION):
                    log.warning("livedb: scheduled call %s: cannot import %s in this process; "
                                "left for the other processes", doc_id, row["name"])
                    return False, self._kernel.catalog.now() + RECHECK * 10
            return self._execute(doc_id), None
        finally:
            engine.unclaim(doc_id)

    def _row(self, doc_id: str) -> dict[str, Any] | None:
        txn = self._kernel.reader()
        try:
            row: dict[str, Any] | None = txn.system.get(doc_id)
            return row
        finally:
            txn.close()

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
        txn = self._kernel.reader()
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

    def _run_mutation(self, row: dict[str, Any], fn: Function[Any]) -> bool:
        """Run a scheduled mutation; its row turns `success` in the same transaction.

        Whether the row is still pending is judged at the transaction's snapshot, not
        through its own writes: a mutation that cancels its own row still runs once.
        """
        doc_id = row["_id"]

        def succeed(txn: Writer) -> None:
            blob = txn.store.read(str(doc_id), txn.ts)
            if blob is None or decode(blob)["state"]["kind"] != "pending":
                raise _Skip
            now = self._kernel.catalog.now()
            txn.system_update(doc_id, {"state": {"kind": "success"}, "completed_time": now})
            self._schedule_next(txn, row, now)

        try:
            self._calls.mutation(fn, row["args"], None, before_commit=succeed)
        except _Skip:
            return False
        except WriteError:
            raise
        except Exception as e:
            if self._closed:
                raise
            log.warning("livedb: scheduled mutation %s failed: %s", row["name"], _describe(e))
            return self._finish(row, "pending", {"kind": "failed", "error": _describe(e)})
        return True

    def _run_action(self, row: dict[str, Any], fn: Function[Any]) -> bool:
        """Run a scheduled action after marking it `in_progress` in a commit of its own."""
        if not self._finish(row, "pending", {"kind": "in_progress"}, final=False):
            return False
        try:
            self._calls.action(fn, row["args"], None)
            state: dict[str, Any] = {"kind": "success"}
        except Exception as e:
            if self._closed:
                raise
            log.warning("livedb: scheduled action %s failed: %s", row["name"], _describe(e))
            state = {"kind": "failed", "error": _describe(e)}
        try:
            self._finish(row, "in_progress", state)
        except WriteError:
            self._unfinished[str(row["_id"])] = (row, state)
            raise
        return True

    def _finish(self, row: dict[str, Any], expected: str, state: dict[str, Any],
                final: bool = True) -> bool:
        """Move a row from state `expected` to `state`; False if it had moved on already."""
        doc_id = row["_id"]

        def change(txn: Writer) -> bool:
            current = txn.system.get(doc_id)
            if current is None or current["state"]["kind"] != expected:
                return False
            fields: dict[str, Any] = {"state": state}
            if final:
                fields["completed_time"] = now = self._kernel.catalog.now()
                self._schedule_next(txn, row, now)
            txn.system_update(doc_id, fields)
            return True

        return self._kernel.write_system("the scheduler", change)

    def _schedule_next(self, txn: Writer, row: dict[str, Any], now: float) -> None:
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
        def delete(txn: Writer) -> None:
            now = self._kernel.catalog.now()
            for doc_id in doc_ids:
                row = txn.system.get(doc_id)
                if (row is not None and row["state"]["kind"] in _FINISHED
                        and row["completed_time"] + RETENTION <= now):
                    txn.system_update(doc_id, None)

        try:
            self._kernel.write_system("the scheduler", delete)
        except WriteError as e:
            if self._closed:
                raise
            if not e.retryable:
                log.error("livedb: deleting old scheduled-function rows failed (%s); they "
                          "are deleted once the database is opened again", e)
                return
            log.warning("livedb: deleting old scheduled-function rows failed (%s); trying "
                        "again in %g s", e, RETRY_MAX)
            later = self._kernel.catalog.now() + RETRY_MAX
            with self._mutex:
                for doc_id in doc_ids:
                    heapq.heappush(self._expiring, (later, doc_id))
                self._cond.notify_all()

    # -- closing -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the runner and wait for the calls running now (unless called from one)."""
        with self._mutex:
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
