"""What `livedb serve` needs of a database beyond the public API: the only module of
`livedb._serve` that touches livedb's internals.

Every other module of the package goes through these functions and the public `livedb`
API, so that a new storage kernel only has to re-implement this file. Each function's
docstring is its contract.

Protocol timestamps. The sync protocol carries commit timestamps as u64s that a client
compares across reconnects, so they must never go backwards, across server restarts too.
livedb's own commit counter starts again at 0 whenever a database is opened, so a served
database gets an offset when serving starts: protocol ts = `base + kernel ts`, with
`base = max(time.time_ns(), newest recorded protocol ts + 1)`. The newest recorded
protocol ts is the newest row of the system table `_session_requests` (see `mutate`),
which a durable database keeps, so a client's completed mutation (whose ts it waits to
see in a Transition) is always older than anything a restarted server reports. Other
commits' timestamps are not recorded; `time_ns()` alone keeps them ordered across a
restart, since a run makes fewer commits than it lasts nanoseconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._database import Database, kernel_of, reactive_of, runner_of, token_resolver
from .._errors import LiveDBError, ValidationError
from .._functions import (
    MUTATION,
    QUERY,
    Function,
    MutationCtx,
    QueryCtx,
    auth_for,
    check_args,
    check_result,
    is_adhoc,
    resolve,
)
from .._identity import UserIdentity
from .._reactive import Subscription
from .._values import decode
from ..auth import SESSIONS, PasswordAuth, token_hash

log = logging.getLogger("livedb.serve")

SESSION_REQUESTS = "_session_requests"
"""`(session id, request id)` -> outcome of a mutation sent over the sync protocol."""

REQUEST_RETENTION = 7 * 24 * 3600.0
"""How long (database clock seconds) a mutation's recorded outcome is kept for replay."""


class _Served:
    """What serving keeps per database: the protocol timestamp base and query_ts pins."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.pins: dict[int, int] = {}


_SERVED: weakref.WeakKeyDictionary[Database, _Served] = weakref.WeakKeyDictionary()
_SERVED_LOCK = threading.Lock()


def attach(db: Database) -> None:
    """Prepare `db` for serving (idempotent): fix its protocol timestamp base and drop
    recorded mutation outcomes older than `REQUEST_RETENTION` (the newest is kept).

    Raises `LiveDBError` if the database is closed."""
    with _SERVED_LOCK:
        if db in _SERVED:
            return
        kernel = kernel_of(db)
        kernel.check_open()
        kernel.catalog.add_system_table(SESSION_REQUESTS)
        _prune(db)
        newest = _newest_row(db)
        recorded = newest["ts"] if newest is not None else 0
        _SERVED[db] = _Served(max(time.time_ns(), recorded + 1))


def _state(db: Database) -> _Served:
    served = _SERVED.get(db)
    if served is None:
        attach(db)
        served = _SERVED[db]
    return served


def latest_ts(db: Database) -> int:
    """The protocol timestamp of the newest commit a new query would see."""
    return _state(db).base + kernel_of(db).store.ts


def now(db: Database) -> float:
    """The database clock (seconds since the epoch): what session expiry is judged by."""
    return kernel_of(db).catalog.now()


def function_kind(fn: Any) -> str | None:
    """"query", "mutation" or "action" for a function made by those decorators, else None."""
    return fn.kind if isinstance(fn, Function) and not is_adhoc(fn) else None


# -- one-shot queries -------------------------------------------------------------------


def query(db: Database, fn: Any, args: dict[str, Any] | None, identity: UserIdentity | None,
          at: int | None = None) -> tuple[Any, int]:
    """Run query `fn` once; returns `(result, protocol ts it was read at)`.

    `at=None` reads the newest snapshot; `at` may also be a timestamp `pin_snapshot`
    returned and has not released yet (else `ValidationError`). Raises what the query
    raises, `ValidationError` for bad args, `TypeError` if `fn` is not a query."""
    served = _state(db)
    spec = resolve(fn, QUERY)
    kwargs = check_args(spec, args)
    auth = auth_for(identity)
    kernel = kernel_of(db)
    kernel.check_open()
    store = kernel.store
    ts = None
    if at is not None:
        with served.lock:
            if served.pins.get(at - served.base, 0) > 0:
                ts = at - served.base
                store.pin(ts)
        if ts is None and at != latest_ts(db):
            raise ValidationError(f"the timestamp {at} is not available any more (a "
                                  "query_ts timestamp is kept for a short while)")
    if ts is None:
        ts = store.snapshot()
    ctx = QueryCtx(store, kernel.catalog, ts, False, kernel.search_indexes, auth,
                   runner_of(db).services)
    try:
        result = spec.handler(ctx, **kwargs)
    finally:
        store.release(ts)
    return check_result(spec, result, ctx.trusted), served.base + ts


def pin_snapshot(db: Database) -> int:
    """Keep the newest snapshot readable by `query(..., at=ts)`; returns its protocol ts.

    Every pin must be released by `release_snapshot(db, ts)` (old versions stay in memory
    while it is pinned)."""
    served = _state(db)
    kernel_of(db).check_open()
    kernel = kernel_of(db).store.snapshot()
    with served.lock:
        served.pins[kernel] = served.pins.get(kernel, 0) + 1
    return served.base + kernel


def release_snapshot(db: Database, ts: int) -> None:
    """Undo one `pin_snapshot` that returned `ts`."""
    served = _state(db)
    kernel = ts - served.base
    with served.lock:
        count = served.pins.get(kernel, 0)
        if not count:
            return
        if count == 1:
            del served.pins[kernel]
        else:
            served.pins[kernel] = count - 1
    kernel_of(db).store.release(kernel)


# -- mutations, exactly once --------------------------------------------------------------


class _Replay(Exception):
    """A twin of this request committed first: roll back and answer with its outcome."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row


def _row_id(request_key: tuple[str, int]) -> str:
    session, request = request_key
    digest = hashlib.sha1(f"{session}\0{request}".encode()).hexdigest()
    return f"{SESSION_REQUESTS}:{digest}"


def mutate(db: Database, fn: Any, args: dict[str, Any] | None, identity: UserIdentity | None,
           request_key: tuple[str, int] | None = None, *,
           encode: Callable[[Any], Any] | None = None,
           on_commit: Callable[[int], None] | None = None) -> tuple[Any, int]:
    """Run mutation `fn`; returns `(outcome, protocol ts)`: the result (or `encode(result)`
    when `encode` is given) and the commit's timestamp (the newest one if it wrote nothing).

    `encode` runs inside the transaction: if it raises, the mutation rolls back and the
    error propagates. With `request_key=(session id, request id)` the outcome (the encoded
    result, which must then be a storable value, and the ts) is recorded in the system
    table `_session_requests` in the same transaction as the mutation's writes; a later
    call with the same key, in this process or after a restart, returns the recorded
    outcome without running anything. A failed mutation records nothing, so its re-send
    runs again. `on_commit(ts)` is told the timestamp before the commit becomes visible to
    any query or subscription. On return, every live query shows the commit.

    Raises what the mutation raises, `ValidationError` for bad args, `TypeError` if `fn`
    is not a mutation, `LiveDBError` if the database is closed."""
    served = _state(db)
    spec = resolve(fn, MUTATION)
    kwargs = check_args(spec, args)
    row_id = None
    if request_key is not None:
        row_id = _row_id(request_key)
        row = _read_row(db, row_id)
        if row is not None:
            return _replayed(db, served, row)
    box: dict[str, Any] = {}

    kernel = kernel_of(db)

    def body(ctx: MutationCtx) -> Any:
        result = check_result(spec, spec.handler(ctx, **kwargs), ctx.trusted)
        outcome = result if encode is None else encode(result)
        box["outcome"] = outcome
        if row_id is None:
            return result
        blob = ctx.blob(row_id)
        if blob is not None:
            raise _Replay(decode(blob))
        ts = served.base + kernel.store.applied + 1
        box["predicted"] = ts
        ctx.system_insert(SESSION_REQUESTS, {
            "session": request_key[0], "request": request_key[1],  # type: ignore[index]
            "ts": ts, "value": outcome}, row_id, kernel.catalog.next_creation_time())
        return result

    def committed(kernel_ts: int) -> None:
        ts = served.base + kernel_ts
        box["ts"] = ts
        if "predicted" in box and box["predicted"] != ts:
            log.error("livedb serve: mutation recorded ts %d but committed at %d",
                      box["predicted"], ts)
        if on_commit is not None:
            on_commit(ts)

    auth = auth_for(identity)
    services = runner_of(db).services

    def make(store: Any, catalog: Any, ts: int, record: bool, search: Any) -> MutationCtx:
        return MutationCtx(store, catalog, ts, record, search, auth, services)

    if kernel.writing:
        raise LiveDBError(f"{spec.name}: a mutation cannot run inside a mutation")
    try:
        kernel.write(body, make, committed)
    except _Replay as replay:
        return _replayed(db, served, replay.row)
    return box["outcome"], box.get("ts") or latest_ts(db)


def _replayed(db: Database, served: _Served, row: dict[str, Any]) -> tuple[Any, int]:
    """A recorded outcome, once every live query shows its commit (if it is this run's)."""
    ts = row["ts"]
    kernel = ts - served.base
    if kernel > 0:
        deadline = time.monotonic() + 30.0
        while kernel_of(db).store.ts < kernel and time.monotonic() < deadline:
            time.sleep(0.001)
        reactive_of(db).settle(kernel)
    return row["value"], ts


def _read_row(db: Database, row_id: str) -> dict[str, Any] | None:
    txn = kernel_of(db).reader()
    try:
        blob = txn.blob(row_id)
    finally:
        txn.close()
    return None if blob is None else decode(blob)


def _newest_row(db: Database) -> dict[str, Any] | None:
    txn = kernel_of(db).reader()
    try:
        newest: dict[str, Any] | None = (
            txn.system.query(SESSION_REQUESTS).order("desc").first())
    finally:
        txn.close()
    return newest


def _prune(db: Database) -> None:
    """Delete recorded outcomes older than `REQUEST_RETENTION`, keeping the newest."""
    cutoff = now(db) - REQUEST_RETENTION

    def delete_old(txn: Any) -> None:
        newest = txn.system.query(SESSION_REQUESTS).order("desc").first()
        old = (txn.system.query(SESSION_REQUESTS)
               .with_index("by_creation_time", lambda q: q.lt("_creation_time", cutoff))
               .take(1000))
        for row in old:
            if newest is None or row["_id"] != newest["_id"]:
                txn.system_update(row["_id"], None)
        box["more"] = len(old) == 1000

    box = {"more": True}
    while box["more"]:
        kernel_of(db).write(delete_old)


# -- live queries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One live query's current outcome. `token` changes exactly when it does."""

    token: tuple[Any, ...]
    ok: bool
    value: Any
    """The result if `ok`, else the exception the query raised."""


@dataclass(frozen=True)
class Snapshot:
    """The results of a `LiveSet`, every one valid at the commit `ts` (protocol ts)."""

    ts: int
    results: dict[int, Result]


class LiveSet:
    """The live queries of one connection, read together at one commit.

    `on_change()` is called (from any thread, with no lock held that `read` needs) after
    a commit changes a result, and once at each `add`: it only says "read again"."""

    def __init__(self, db: Database, on_change: Callable[[], None]) -> None:
        self._db = db
        self._served = _state(db)
        self._on_change = on_change
        self._subs: dict[int, Subscription] = {}
        self._failed: dict[int, Result] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add(self, query_id: int, fn: Any, args: dict[str, Any] | None,
            identity: UserIdentity | None) -> None:
        """Watch query `fn(args)` as `identity` under `query_id` (replacing what it was).

        Runs the query now (blocking). A query that cannot start (bad args, not a query,
        the database closed) is recorded as failed instead of raising."""
        self.remove(query_id)
        notify = self._notify
        try:
            spec = resolve(fn, QUERY)
            kwargs = check_args(spec, args)
            auth = auth_for(identity)
            kernel_of(self._db).check_open()
            sub = reactive_of(self._db).subscribe(spec, kwargs, auth, identity, notify, notify,
                                                  None, with_ts=True)
        except Exception as e:  # noqa: BLE001 - reported as this query's failure
            self.fail(query_id, e)
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._subs[query_id] = sub
        if closed:
            sub.unsubscribe()

    def fail(self, query_id: int, error: BaseException) -> None:
        """Report `query_id` as failed with `error` (a query that could not start)."""
        self.remove(query_id)
        with self._lock:
            self._failed[query_id] = Result((object(),), False, error)
        self._on_change()

    def _notify(self, *_: Any) -> None:
        self._on_change()

    def remove(self, query_id: int) -> None:
        """Stop watching `query_id` (no-op if unknown)."""
        with self._lock:
            sub = self._subs.pop(query_id, None)
            self._failed.pop(query_id, None)
        if sub is not None:
            sub.unsubscribe()

    def close(self) -> None:
        """Stop watching everything; later `add`s watch nothing."""
        with self._lock:
            self._closed = True
            subs = list(self._subs.values())
            self._subs.clear()
            self._failed.clear()
        for sub in subs:
            sub.unsubscribe()

    def read(self, block: bool = True) -> Snapshot | None:
        """Every watched query's result at one commit, the newest processed one.

        With `block=False`, returns None instead of waiting while a commit is being
        processed (then call again with `block=True` from a thread that may wait)."""
        with self._lock:
            watched = list(self._subs.items())
            failed = dict(self._failed)
        found = reactive_of(self._db).current([sub for _id, sub in watched], block)
        if found is None:
            return None
        kernel_ts, states = found
        results: dict[int, Result] = {}
        for (query_id, sub), state in zip(watched, states, strict=True):
            if state.error is None:
                results[query_id] = Result((sub.live_key, state.version), True,
                                           state.value())
            else:
                results[query_id] = Result((sub.live_key, state.version), False, state.error)
        results.update(failed)
        return Snapshot(self._served.base + kernel_ts, results)


# -- PasswordAuth sessions ---------------------------------------------------------------


def password_auth(db: Database) -> PasswordAuth:
    """The `PasswordAuth` set up on `db`, or a new one with default settings."""
    resolver = token_resolver(db)
    found = getattr(resolver, "__self__", None)
    if isinstance(found, PasswordAuth):
        return found
    return PasswordAuth(db)


def session_of_token(db: Database, token: str) -> str | None:
    """The session id of a live session token, or None."""
    digest = token_hash(token)

    def find(ctx: Any) -> Any:
        return (ctx.db.query(SESSIONS)
                .with_index("by_token_hash", lambda q: q.eq("token_hash", digest)).first())

    session = db.query(find)
    if session is None or session["expires_at"] <= now(db):
        return None
    return str(session["_id"])


def session_identity(db: Database, session_id: str) -> tuple[UserIdentity, bytes] | None:
    """`(identity, token hash)` of the live session with this id, or None (signed out,
    expired, or not a session id). The identity is the one `PasswordAuth.identity` gives
    for the session's token."""

    def find(ctx: Any) -> Any:
        found = ctx.db.normalize_id(SESSIONS, session_id)
        session = None if found is None else ctx.db.get(found)
        if session is None:
            return None
        user = ctx.db.get(session["user_id"])
        return None if user is None else [session, user]

    try:
        found = db.query(find)
    except LiveDBError:
        return None
    if found is None:
        return None
    session, user = found
    if session["expires_at"] <= now(db):
        return None
    identity = UserIdentity(subject=str(session["user_id"]), issuer="livedb",
                            email=user["email"])
    return identity, session["token_hash"]
