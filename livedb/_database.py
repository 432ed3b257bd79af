"""`Database`: wires schema, store, transactions and functions together.

Concurrency design: mutations run one at a time under a single writer lock (they are
in-memory Python code, so under the GIL optimistic concurrency would buy no parallelism
and would cost read-set validation and retries). Serializability is then immediate:
each mutation sees every earlier commit and nothing later. Readers never take that lock:
a query works on an immutable snapshot `State` and never waits for a writer.
"""

from __future__ import annotations

import asyncio
import enum
import math
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import LiveDBError, ValidationError
from ._functions import (
    ACTION,
    MUTATION,
    NO_AUTH,
    QUERY,
    ActionCtx,
    Auth,
    MutationCtx,
    QueryCtx,
    check_args,
    check_result,
    resolve,
)
from ._ids import Id, valid_table_name
from ._persistence import Persistence
from ._reactive import Reactive, Subscription
from ._scheduler import Scheduler
from ._schema import Schema, TableInfo
from ._search import Indexes
from ._storage import FileStorage
from ._store import Store
from ._transaction import Transaction, WriteTransaction, next_after
from ._values import type_name
from .auth import AUTH_TABLE_NAMES, UserIdentity, auth_tables

if TYPE_CHECKING:
    from ._client import Client

SYSTEM_TABLES = ("_scheduled_functions", "_storage", "_session_requests")
"""Tables only livedb writes; `_session_requests` records mutations served over the
Convex sync protocol (livedb._serve.backend)."""
TokenResolver = Callable[[Any], tuple[UserIdentity, Callable[[], None]]]
"""Turns a session token into its identity and a check of its session (see `client`)."""


class State(enum.Enum):
    """A database's lifecycle: open, closing (draining clients and scheduled calls; new
    calls are refused), closed."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Database:
    """An embedded reactive document database, in memory or (with `path`) on disk."""

    def __init__(self, schema: Schema | None = None, *, path: str | None = None,
                 clock: Callable[[], float] | None = None,
                 dispatch: Callable[[Callable[[], None]], Any] | None = None,
                 durability: str = "full", crons: Any = None) -> None:
        if schema is not None and not isinstance(schema, Schema):
            raise TypeError(f"Database(schema): expected define_schema(...), got "
                            f"{type_name(schema)}")
        if clock is not None and not callable(clock):
            raise TypeError("Database(clock=...): expected a callable returning seconds")
        if dispatch is not None and not callable(dispatch):
            raise TypeError("Database(dispatch=...): expected a callable taking a function")
        if durability not in ("full", "normal"):
            raise ValueError(f"Database(durability=...): expected 'full' or 'normal', got "
                             f"{durability!r}")
        self._schema = schema
        self._clock = clock or time.time
        self._dispatch = dispatch
        self._durability = durability
        self._store = Store()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._last_time = 0.0
        self._state = State.OPEN
        self._state_lock = threading.Lock()
        self._clients: weakref.WeakSet[Client] = weakref.WeakSet()
        self._token_resolver: TokenResolver | None = None
        self._scheduler = Scheduler(self, crons, manual=clock is not None)
        self._files = FileStorage(self, None if path is None else os.fspath(path))
        validate = schema is None or schema.schema_validation
        self._tables: dict[str, TableInfo] = {}
        if schema is not None:
            for name, definition in schema.tables.items():
                self._tables[name] = TableInfo(name, definition, validate)
        for name in SYSTEM_TABLES:
            self._tables[name] = TableInfo(name, None, False)
        self._persist: Persistence | None = None
        if path is not None:
            stored_auth = _known_auth_tables(self._tables)
            self._persist = Persistence(os.fspath(path), durability, self._store, self._tables,
                                        self._write_lock, self._make_visible)
            self._last_time = self._persist.load(schema)
            _forget_empty_auth_tables(self._tables, self._store, stored_auth)
        self._search: Indexes | None = Indexes.build(self._store, self._tables)
        self._store.search = self._search
        self._reactive = Reactive(self)
        try:
            self._files.open()
            self._scheduler.open()
        except BaseException:
            self.close()
            raise

    # -- public API --------------------------------------------------------------

    def query(self, fn: Any, args: Mapping[str, Any] | None = None, *,
              identity: UserIdentity | None = None) -> Any:
        """Run a query at the newest snapshot and return its result."""
        self._check_open()
        return self._query(fn, args, identity)

    def _query(self, fn: Any, args: Mapping[str, Any] | None,
               identity: UserIdentity | None) -> Any:
        """`query` for calls made while the database drains (actions, clients)."""
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = _auth(identity)
        if self._closed:
            raise LiveDBError("the database is closed")
        txn = Transaction(self)
        try:
            result = spec.handler(QueryCtx(txn, auth, None), **kwargs)
        finally:
            txn.close()
        return check_result(spec, result, txn.trusted)

    def mutation(self, fn: Any, args: Mapping[str, Any] | None = None, *,
                 identity: UserIdentity | None = None) -> Any:
        """Run a mutation as one serializable transaction; all its writes or none commit."""
        self._check_open()
        return self._mutation(fn, args, identity, None)

    def _mutation(self, fn: Any, args: Mapping[str, Any] | None,
                  identity: UserIdentity | None,
                  on_commit: Callable[[int], None] | None, *,
                  before_commit: Callable[[WriteTransaction], Any] | None = None) -> Any:
        """`mutation`, telling `on_commit` the commit timestamp before anyone sees it.

        `before_commit(txn)` runs after the handler, in its transaction: livedb's own
        writes that must commit with it (a scheduled call's state, a stored file's row)."""
        spec = resolve(fn, MUTATION)
        kwargs = check_args(spec, args)
        auth = _auth(identity)
        local = self._local
        if getattr(local, "writing", False):
            raise LiveDBError(f"{spec.name}: db.mutation cannot be called from inside a "
                              "mutation (use ctx.db directly, or run both from an action)")
        with self._write_lock:
            if self._closed:
                raise LiveDBError("the database is closed")
            local.writing = True
            txn = WriteTransaction(self)
            ts = 0
            ticket = None
            try:
                result = spec.handler(MutationCtx(txn, auth, None, None), **kwargs)
                result = check_result(spec, result, txn.trusted)
                if before_commit is not None:
                    before_commit(txn)
                docs, changes = txn.commit_changes()
                txn.close()
                persist = self._persist
                if docs:
                    ts = self._store.commit(docs, changes, publish=False)
                    if on_commit is not None:
                        on_commit(ts)
                    if persist is None:
                        self._make_visible(ts, changes, docs)
                    else:
                        ticket = persist.enqueue(ts, docs, changes, self._last_time)
                elif persist is not None:
                    ticket = persist.barrier()
            finally:
                txn.close()
                local.writing = False
        if ticket is not None:
            self._persist.wait(ticket)  # type: ignore[union-attr]
        if ts:
            self._reactive.settle(ts)
        return result

    def _make_visible(self, ts: int, changes: dict, docs: list) -> None:
        """Publish commit `ts` (durable databases: once it is on disk), in commit order.

        Queries see it first, then live queries are told: a callback never gets a result
        that a `db.query` could not yet see."""
        store = self._store
        store.publish(ts)
        if ("_scheduled_functions", "by_id") in changes:
            self._scheduler.committed(docs)
        if ("_storage", "by_id") in changes:
            self._files.committed(docs)
        self._reactive.committed(ts, changes, docs)
        store.tidy()

    def subscribe(self, fn: Any, args: Mapping[str, Any] | None,
                  on_update: Callable[[Any], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None,
                  identity: UserIdentity | None = None) -> Subscription:
        """Run a query now, call `on_update` with its result, and again on every change."""
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = _auth(identity)
        if not callable(on_update):
            raise TypeError(f"subscribe: on_update must be callable, got {type_name(on_update)}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"subscribe: on_error must be callable, got {type_name(on_error)}")
        self._check_open()
        return self._reactive.subscribe(spec, kwargs, auth, identity, on_update, on_error,
                                        self._dispatch)

    def watch(self, fn: Any, args: Mapping[str, Any] | None = None, *,
              identity: UserIdentity | None = None) -> AsyncIterator[Any]:
        """An async iterator of the query's results: the first, then each change."""
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = _auth(identity)
        self._check_open()
        return self._reactive.watch(spec, kwargs, auth, identity)

    @property
    def _closed(self) -> bool:
        return self._state is State.CLOSED

    def _check_open(self) -> None:
        """Refuse a new call once `close` has begun."""
        if self._state is not State.OPEN:
            raise LiveDBError("the database is closed")

    def action(self, fn: Any, args: Mapping[str, Any] | None = None, *,
               identity: UserIdentity | None = None) -> Any:
        """Run an action (may do I/O; its queries and mutations are separate transactions)."""
        self._check_open()
        return self._action(fn, args, identity)

    def _action(self, fn: Any, args: Mapping[str, Any] | None,
                identity: UserIdentity | None) -> Any:
        """`action` for calls made while the database drains (actions, scheduled calls)."""
        spec = resolve(fn, ACTION)
        kwargs = check_args(spec, args)
        _auth(identity)
        if self._closed:
            raise LiveDBError("the database is closed")
        ctx = ActionCtx(self, identity, None, None)
        if spec.is_async:
            result = _run_coroutine(spec.handler(ctx, **kwargs))
        else:
            result = spec.handler(ctx, **kwargs)
            if asyncio.iscoroutine(result):
                result = _run_coroutine(result)
        return check_result(spec, result)

    def client(self, identity: UserIdentity | None = None, token: str | None = None) -> Client:
        """A client for a UI: its own subscriptions, ordered mutations, optimistic updates."""
        from ._client import Client

        self._check_open()
        token_check = None
        if token is not None:
            if identity is not None:
                raise TypeError("client: pass identity or token, not both")
            resolver = self._token_resolver
            if resolver is None:
                raise LiveDBError("client(token=...): no PasswordAuth is set up on this "
                                  "database")
            identity, token_check = resolver(token)
        _auth(identity)
        client = Client(self, identity, token_check)
        self._clients.add(client)
        return client

    def _set_token_resolver(self, resolver: TokenResolver) -> None:
        """Let `client(token=...)` resolve session tokens with `resolver(token)`.

        It returns the token's identity and a check the client runs before each call
        (raising `AuthError` once the session has ended). `PasswordAuth` registers itself
        here; the newest registration wins."""
        self._token_resolver = resolver

    def close(self) -> None:
        """Close the database; idempotent. New calls then raise `LiveDBError`.

        Running mutations finish; every client's queued mutations still run (each future
        gets its result or its error); scheduled calls running now finish; then every
        subscription ends (`.active` false) and every `watch` iterator stops.
        """
        with self._state_lock:
            if self._state is not State.OPEN:
                return
            self._state = State.CLOSING
        try:
            for client in list(self._clients):
                client.close()
            self._scheduler.stop()
        finally:
            with self._write_lock:
                self._state = State.CLOSED
            self._reactive.close()
            if self._persist is not None:
                self._persist.close()

    # -- scheduled functions and file storage ----------------------------------------

    def run_scheduled(self) -> int:
        """Run every due scheduled call now, in this thread; returns how many ran.

        With a manual `clock` this is the only way calls run (deterministic tests);
        otherwise the background runner would run them soon anyway."""
        self._check_open()
        return self._scheduler.run_due()

    def store_file(self, data: Any, content_type: str | None = None) -> Id:
        """Store bytes or a binary file object (streamed in chunks); the `_storage` id."""
        self._check_open()
        return self._files.store(data, content_type)

    # -- end of scheduled functions and file storage -----------------------------------

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring: documents, versions kept, open snapshots, tables."""
        stats = self._store.stats()
        stats.update(self._reactive.stats())
        if self._search is not None:
            stats.update(self._search.stats())
        stats["tables"] = sorted(n for n in self._tables if not n.startswith("_"))
        return stats

    # -- internals used by transactions --------------------------------------------

    def _table_for_read(self, table: Any, op: str) -> TableInfo:
        info = self._tables.get(table)
        if info is not None:
            return info
        return self._unknown_table(table, op)

    def _table_for_write(self, table: Any) -> TableInfo:
        if table in SYSTEM_TABLES:
            raise ValidationError(f"insert: {table!r} is a read-only system table")
        info = self._tables.get(table)
        return info if info is not None else self._unknown_table(table, "insert")

    def _unknown_table(self, table: Any, op: str) -> TableInfo:
        if not isinstance(table, str):
            raise ValidationError(f"{op}: a table name is a str, got {type_name(table)}")
        if not valid_table_name(table):
            raise ValidationError(f"{op}: {table!r} is not a valid table name (letters, "
                                  "digits and '_', starting with a letter)")
        if table in AUTH_TABLE_NAMES:
            return self._tables.setdefault(table, TableInfo(table, auth_tables()[table], True))
        schema = self._schema
        if schema is not None and schema.strict_table_names:
            known = ", ".join(sorted(schema.tables)) or "none"
            raise ValidationError(f"{op}: table {table!r} is not in the schema (tables: "
                                  f"{known})")
        return self._tables.setdefault(table, TableInfo(table, None, False))

    def _next_creation_time(self) -> float:
        now = self._clock()
        if now.__class__ is not float:
            if not isinstance(now, (int, float)) or isinstance(now, bool):
                raise LiveDBError(f"the database clock returned {now!r}, not a number")
            now = float(now)
        if not math.isfinite(now):
            raise LiveDBError(f"the database clock returned {now!r}")
        self._last_time = t = next_after(self._last_time, now)
        return t

    def _vector_search(self, table: str, index: str, vector: Any, limit: int,
                       filter: Any) -> list[dict]:
        """`ctx.vector_search`: the documents nearest `vector` by cosine similarity."""
        self._check_open()
        found = None if self._search is None else self._search.vector.get((table, index))
        if found is None:
            info = self._table_for_read(table, "vector_search")
            known = ", ".join(info.definition.vector_indexes) if info.definition else ""
            raise ValidationError(f"vector_search: table {table!r} has no vector index "
                                  f"{index!r} (vector indexes: {known or 'none'})")
        return found.search(self._store, vector, limit, filter)


# -- PasswordAuth's tables (livedb.auth) -------------------------------------------------


def _known_auth_tables(tables: dict[str, TableInfo]) -> dict[str, TableInfo]:
    """Register PasswordAuth's tables before a load, so that a strict schema accepts them."""
    added = {}
    for name, definition in auth_tables().items():
        if name not in tables:
            tables[name] = added[name] = TableInfo(name, definition, True)
    return added


def _forget_empty_auth_tables(tables: dict[str, TableInfo], store: Store,
                              added: dict[str, TableInfo]) -> None:
    """Unregister the tables `_known_auth_tables` added that the file did not hold."""
    for name, info in added.items():
        if tables.get(name) is info and (name, "by_id") not in store.indexes:
            del tables[name]


# -- end of PasswordAuth's tables ------------------------------------------------------


def _auth(identity: UserIdentity | None) -> Auth:
    if identity is None:
        return NO_AUTH
    if not isinstance(identity, UserIdentity):
        raise TypeError(f"identity must be a livedb.UserIdentity or None, got "
                        f"{type_name(identity)}")
    return Auth(identity)


def _run_coroutine(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=run, name="livedb-action")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
