"""`Database`: the facade users hold, wiring the kernel, its engine and its features.

It builds the catalog, the storage engine and the kernel, plugs the features in as
commit listeners (live queries, the scheduler, file storage), provides what contexts
reach beyond the database (`Services`), and checks that it is open before each call.
The call path itself is the `Runner`'s (_functions.py).

Modules beside this one (livedb.auth, livedb.export, livedb._serve) reach the kernel and
the features through the functions at the end of this module, never through private
attributes.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar, overload

from ._catalog import Catalog
from ._client import Client
from ._crons import Crons
from ._engines import StorageEngine
from ._engines.memory import MemoryEngine
from ._engines.postgres import PostgresEngine
from ._engines.shared_sqlite import SharedSqliteEngine
from ._engines.sqlite import SqliteEngine
from ._errors import LiveDBError, ValidationError
from ._functions import (
    QUERY,
    ActionCtx,
    ActionFunction,
    MutationCtx,
    MutationFunction,
    QueryCtx,
    QueryFunction,
    Runner,
    auth_for,
    check_args,
    resolve,
)
from ._identity import UserIdentity
from ._ids import Id
from ._kernel import Kernel, State
from ._reactive import Dispatch, Reactive, Subscription
from ._scheduler import ActionScheduler, MutationScheduler, Scheduler
from ._schema import Schema
from ._search import vector_search
from ._shared import SharedKernel
from ._storage import ActionStorage, FileStorage, MutationStorage, QueryStorage
from ._values import type_name

R = TypeVar("R")

_tool: contextvars.ContextVar[bool] = contextvars.ContextVar("livedb_tool", default=False)
"""Set while a tool (export, import) opens a database: its scheduler stays passive."""

TokenResolver = Callable[[Any], tuple[UserIdentity, Callable[[], None]]]
"""Turns a session token into its identity and a check of its session (see `client`)."""


class _Services:
    """What contexts reach beyond the database: storage, scheduler, nested calls."""

    __slots__ = ("kernel", "runner", "files", "scheduler")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.runner: Runner
        self.files: FileStorage
        self.scheduler: Scheduler

    def query_storage(self, ctx: QueryCtx) -> QueryStorage:
        return QueryStorage(ctx, self.files)

    def mutation_storage(self, ctx: MutationCtx) -> MutationStorage:
        return MutationStorage(ctx, self.files)

    def mutation_scheduler(self, ctx: MutationCtx) -> MutationScheduler:
        return MutationScheduler(ctx)

    def action_storage(self) -> ActionStorage:
        return ActionStorage(self.files)

    def action_scheduler(self) -> ActionScheduler:
        return ActionScheduler(self.kernel)

    def vector_search(self, table: str, index: str, vector: Any, limit: int,
                      filter: Any) -> list[dict[str, Any]]:
        kernel = self.kernel
        kernel.check_open()
        indexes = kernel.search_indexes
        found = None if indexes is None else indexes.vector.get((table, index))
        if found is None:
            info = kernel.catalog.for_read(table, "vector_search")
            known = ", ".join(info.definition.vector_indexes) if info.definition else ""
            raise ValidationError(f"vector_search: table {table!r} has no vector index "
                                  f"{index!r} (vector indexes: {known or 'none'})")
        return vector_search(found, kernel.store, vector, limit, filter)

    def run_query(self, fn: Any, args: Mapping[str, Any] | None,
                  identity: UserIdentity | None) -> Any:
        return self.runner.query(fn, args, identity)

    def run_mutation(self, fn: Any, args: Mapping[str, Any] | None,
                     identity: UserIdentity | None) -> Any:
        return self.runner.mutation(fn, args, identity)[0]

    def run_action(self, fn: Any, args: Mapping[str, Any] | None,
                   identity: UserIdentity | None) -> Any:
        return self.runner.action(fn, args, identity)


class Database:
    """An embedded, reactive document database: in memory, or durable in one file.

    Queries read one consistent snapshot and never wait for writers; mutations run one
    at a time as serializable transactions, each durable on return; live queries
    (`subscribe`, `watch`, `client`) re-run only when a commit writes into what they read.
    Every method may be called from any thread.

    Args:
        schema: The tables, validators and indexes (`define_schema(...)`); None accepts
            any table name and any storable value.
        path: A file to keep the database in (created if missing); None keeps it in
            memory only.
        clock: A function returning the time in seconds since the epoch (default
            `time.time`). It stamps `_creation_time` and drives the scheduler; with a
            manual clock no background scheduler thread runs (use `run_scheduled`).
        dispatch: How callbacks of live queries reach your thread: a function given a
            zero-argument function to call later (e.g. `loop.call_soon_threadsafe`, or a
            dispatcher from `livedb.ui`). Default: called in the committing thread.
        durability: "full" (every commit synced to disk) or "normal" (syncs batched: a
            power loss may lose the last moments, never corrupt).
        crons: Recurring jobs (`livedb.Crons()`).
        shared: With `path`, let every process of this machine that opens the file with
            `shared=True` use it at once: each sees the others' commits (live queries
            included, within milliseconds), mutations stay serializable across them (a
            conflict is retried; `ConflictError` when retries run out), and a scheduled
            call runs once across all of them. See the scaling guide.
        url: A PostgreSQL database to keep the database in, shared by every process (on
            any machine) that opens it: `"postgresql://user:password@host:5432/dbname"`.
            Stored files live there too. Needs `pip install "livedb[postgres]"`
            (psycopg 3). Not with `path`.

    Raises:
        DatabaseLockedError: another `Database` has `path` open (an exclusive opener and
            a shared one exclude each other too).
        CorruptionError: the file is damaged.
        SchemaError: stored documents do not match `schema` (the message names them).

    Example:
        ```python
        with Database(schema, path="app.livedb") as db:
            db.mutation(send, {"channel": "general", "body": "hello"})
            print(db.query(latest, {"channel": "general"}))

        # several processes of one machine, each opening it so:
        db = Database(schema, path="app.livedb", shared=True)
        # several machines:
        db = Database(schema, url="postgresql://app:secret@db.internal:5432/app")
        ```
    """

    def __init__(self, schema: Schema | None = None, *, path: str | os.PathLike[str] | None
                 = None, clock: Callable[[], float] | None = None,
                 dispatch: Dispatch | None = None, durability: str = "full",
                 crons: Crons | None = None, shared: bool = False,
                 url: str | None = None) -> None:
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
        if not isinstance(shared, bool):
            raise TypeError(f"Database(shared=...): expected True or False, got "
                            f"{type_name(shared)}")
        if url is not None:
            if not isinstance(url, str):
                raise TypeError(f"Database(url=...): expected a str like "
                                f"'postgresql://user:pw@host:5432/dbname', got {type_name(url)}")
            if path is not None:
                raise ValueError("Database(path=..., url=...): pass one of them (a file, or "
                                 "a PostgreSQL URL)")
            if not url.startswith(("postgresql://", "postgres://")):
                raise ValueError(f"Database(url=...): expected a PostgreSQL URL starting with "
                                 f"'postgresql://', got {url.split('://')[0]!r}://...")
        elif shared and path is None:
            raise ValueError("Database(shared=True) needs a path (the file the processes "
                             "share); for several machines pass url='postgresql://...'")
        self._dispatch = dispatch
        self._clients: weakref.WeakSet[Client] = weakref.WeakSet()
        self._token_resolver: TokenResolver | None = None
        self._closing = threading.Lock()
        catalog = Catalog(schema, clock or time.time)
        location = None if path is None else os.fspath(path)
        engine: StorageEngine
        if url is not None:
            engine = PostgresEngine(url, durability)
        elif location is None:
            engine = MemoryEngine()
        elif shared:
            engine = SharedSqliteEngine(location, durability)
        else:
            engine = SqliteEngine(location, durability)
        kernel = self._kernel = Kernel(catalog, engine)
        services = self._services = _Services(kernel)
        runner = self._runner = services.runner = Runner(kernel, services)
        try:
            files = self._files = services.files = FileStorage(kernel, location)
            scheduler = self._scheduler = services.scheduler = Scheduler(
                kernel, runner, crons, manual=clock is not None, passive=_tool.get())
            kernel.load()
            if engine.shared:
                kernel.shared = SharedKernel(kernel)
            self._reactive = Reactive(kernel, services)
            for listener in (scheduler, files, self._reactive):
                kernel.listen(listener)
            if kernel.shared is not None:
                kernel.shared.start()
            files.open()
            scheduler.open()
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Undo a failed open: stop what started and release the storage."""
        kernel = self._kernel
        kernel.begin_closing()
        scheduler = getattr(self, "_scheduler", None)
        if scheduler is not None:
            scheduler.stop()
        kernel.close()

    # -- calls -----------------------------------------------------------------------------

    @overload
    def query(self, fn: QueryFunction[R], args: Mapping[str, Any] | None = None, *,
              identity: UserIdentity | None = None) -> R: ...
    @overload
    def query(self, fn: Callable[[QueryCtx], R], args: Mapping[str, Any] | None = None, *,
              identity: UserIdentity | None = None) -> R: ...
    def query(self, fn: Any, args: Mapping[str, Any] | None = None, *,  # noqa: E301
              identity: UserIdentity | None = None) -> Any:
        """Run a query at the newest snapshot and return its result.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)` (an ad-hoc query).
            args: The arguments, as one dict (validated against the function's `args`).
            identity: Who calls (`ctx.auth.get_user_identity()`), or None.

        Returns:
            The function's result: plain dicts and values, yours to change.

        Raises:
            ValidationError: bad arguments, or a result that is not a storable value.
            LiveDBError: the database is closed.
            AppError: the function raised it (any other exception propagates as itself).

        Example:
            ```python
            messages = db.query(latest, {"channel": "general"})
            ```
        """
        if self._kernel.state is not State.OPEN:
            raise LiveDBError("the database is closed")
        return self._runner.query(fn, args, identity)

    @overload
    def mutation(self, fn: MutationFunction[R], args: Mapping[str, Any] | None = None, *,
                 identity: UserIdentity | None = None) -> R: ...
    @overload
    def mutation(self, fn: Callable[[MutationCtx], R], args: Mapping[str, Any] | None = None,
                 *, identity: UserIdentity | None = None) -> R: ...
    def mutation(self, fn: Any, args: Mapping[str, Any] | None = None, *,  # noqa: E301
                 identity: UserIdentity | None = None) -> Any:
        """Run a mutation as one serializable transaction: all its writes commit, or none.

        Returns once the commit is durable and visible to queries (and, with the default
        dispatch, once its live queries' callbacks were made in this thread, unless
        another thread is making callbacks right now: that thread makes them next).

        Args:
            fn: A `@mutation` function, or any callable `fn(ctx)`.
            args: The arguments, as one dict.
            identity: Who calls, or None.

        Returns:
            The function's result.

        Raises:
            ValidationError: bad arguments, a write that does not fit the schema, or a
                result that is not a storable value (nothing is written).
            DocumentNotFoundError: a patch, replace or delete of a missing document.
            LiveDBError: the database is closed, or the commit could not be written.

        Example:
            ```python
            message_id = db.mutation(send, {"channel": "general", "body": "hi"})
            ```
        """
        if self._kernel.state is not State.OPEN:
            raise LiveDBError("the database is closed")
        return self._runner.mutation(fn, args, identity)[0]

    @overload
    def action(self, fn: ActionFunction[R], args: Mapping[str, Any] | None = None, *,
               identity: UserIdentity | None = None) -> R: ...
    @overload
    def action(self, fn: Callable[[ActionCtx], R], args: Mapping[str, Any] | None = None, *,
               identity: UserIdentity | None = None) -> R: ...
    def action(self, fn: Any, args: Mapping[str, Any] | None = None, *,  # noqa: E301
               identity: UserIdentity | None = None) -> Any:
        """Run an action: a function that may do I/O and call queries and mutations
        (each its own transaction, with this call's identity). An `async def` action
        runs to its end before this returns.

        Raises:
            ValidationError: bad arguments or result.
            LiveDBError: the database is closed.
        """
        if self._kernel.state is not State.OPEN:
            raise LiveDBError("the database is closed")
        return self._runner.action(fn, args, identity)

    @overload
    def subscribe(self, fn: QueryFunction[R], args: Mapping[str, Any] | None,
                  on_update: Callable[[R], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None,
                  identity: UserIdentity | None = None) -> Subscription: ...
    @overload
    def subscribe(self, fn: Callable[[QueryCtx], R], args: Mapping[str, Any] | None,
                  on_update: Callable[[R], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None,
                  identity: UserIdentity | None = None) -> Subscription: ...
    def subscribe(self, fn: Any, args: Mapping[str, Any] | None,  # noqa: E301
                  on_update: Callable[[Any], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None,
                  identity: UserIdentity | None = None) -> Subscription:
        """Run a query now, call `on_update` with its result, and again after each commit
        that changes it (and only then).

        The query re-runs only when a commit writes into what it read (the index ranges
        it scanned, the documents it fetched). Identical live queries (same function,
        args and identity) share one execution; each subscriber gets its own copy of the
        result. Callbacks are made in commit order, outside every lock of livedb, through
        the database's `dispatch`.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments (copied: changing your dict later changes nothing).
            on_update: Called with each new result.
            on_error: Called with the exception when a re-run raises (without it, the
                error is logged); a first run that raises raises from `subscribe`.
            identity: Who calls, or None.

        Returns:
            A `Subscription`: `.result`, `.active`, `.unsubscribe()`; a context manager.

        Example:
            ```python
            with db.subscribe(latest, {"channel": "general"}, print):
                db.mutation(send, {"channel": "general", "body": "hi"})   # prints
            ```
        """
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = auth_for(identity)
        if not callable(on_update):
            raise TypeError(f"subscribe: on_update must be callable, got {type_name(on_update)}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"subscribe: on_error must be callable, got {type_name(on_error)}")
        self._kernel.check_open()
        return self._reactive.subscribe(spec, kwargs, auth, identity, on_update, on_error,
                                        self._dispatch)

    @overload
    def watch(self, fn: QueryFunction[R], args: Mapping[str, Any] | None = None, *,
              identity: UserIdentity | None = None) -> AsyncIterator[R]: ...
    @overload
    def watch(self, fn: Callable[[QueryCtx], R], args: Mapping[str, Any] | None = None, *,
              identity: UserIdentity | None = None) -> AsyncIterator[R]: ...
    def watch(self, fn: Any, args: Mapping[str, Any] | None = None, *,  # noqa: E301
              identity: UserIdentity | None = None) -> AsyncIterator[Any]:
        """An async iterator of a query's results: the first, then each change (pending
        changes coalesce to the newest). It ends when the database closes.

        Example:
            ```python
            async for messages in db.watch(latest, {"channel": "general"}):
                render(messages)
            ```
        """
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = auth_for(identity)
        self._kernel.check_open()
        return self._reactive.watch(spec, kwargs, auth, identity)

    def client(self, identity: UserIdentity | None = None, token: str | None = None) -> Client:
        """A client for a UI: its own live queries, mutations queued in order (returning
        futures), optimistic updates, and live paginated views.

        Args:
            identity: Who the client acts as, or None.
            token: A `livedb.auth.PasswordAuth` session token standing for its identity
                (checked on every call: after sign-out or expiry, calls raise `AuthError`).

        Raises:
            AuthError: `token` is not a live session token.
            LiveDBError: `token` given but no `PasswordAuth` is set up, or the database is
                closed.
        """
        self._kernel.check_open()
        token_check = None
        if token is not None:
            if identity is not None:
                raise TypeError("client: pass identity or token, not both")
            resolver = self._token_resolver
            if resolver is None:
                raise LiveDBError("client(token=...): no PasswordAuth is set up on this "
                                  "database")
            identity, token_check = resolver(token)
        auth_for(identity)
        client = Client(self._runner, self._reactive, identity, token_check, self._dispatch)
        self._clients.add(client)
        return client

    def run_scheduled(self) -> int:
        """Run every due scheduled call now, in this thread; returns how many ran.

        With a manual `clock` this is the only way calls run (deterministic tests);
        otherwise the background runner would run them soon anyway.

        Raises:
            LiveDBError: the database is closed, or this is called inside a mutation.
        """
        self._kernel.check_open()
        return self._scheduler.run_due()

    def store_file(self, data: Any, content_type: str | None = None) -> Id:
        """Store bytes or a binary file object (streamed in chunks) outside functions.

        Returns:
            The new file's id in the `_storage` system table.

        Raises:
            ValidationError: a bad `content_type`.
            TypeError: `data` is neither bytes nor a binary file object.
        """
        self._kernel.check_open()
        return self._files.store(data, content_type)

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring: documents, versions kept, open snapshots, live queries,
        subscriptions, re-runs, search entries, and the user tables."""
        kernel = self._kernel
        kernel.store.tidy(force=True)
        stats = kernel.store.stats()
        stats.update(self._reactive.stats())
        if kernel.search_indexes is not None:
            stats.update(kernel.search_indexes.stats())
        stats["tables"] = kernel.catalog.user_tables()
        return stats

    def _check(self) -> None:
        """Assert every internal invariant (for tests, between calls): the store and its
        indexes, the search indexes, and the live-query registry."""
        self._kernel._check()
        self._reactive._check()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; idempotent, and safe from any thread.

        New calls then raise `LiveDBError("the database is closed")`. Running mutations
        finish; every client's queued mutations still run (each future gets its result
        or its error); scheduled calls running now finish; then every subscription ends
        (`.active` is false) and every `watch` iterator stops.
        """
        kernel = self._kernel
        with self._closing:
            if not kernel.begin_closing():
                return
            try:
                for client in list(self._clients):
                    client.close()
                self._scheduler.stop()
            finally:
                kernel.close()
                self._reactive.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- for the modules beside this one (livedb.auth, livedb.export, livedb._serve) -------------


def set_token_resolver(db: Database, resolver: TokenResolver) -> None:
    """Let `db.client(token=...)` resolve session tokens with `resolver(token)`, which
    returns the token's identity and a check the client runs before each call. The newest
    registration wins (`PasswordAuth` registers itself)."""
    db._token_resolver = resolver


def token_resolver(db: Database) -> TokenResolver | None:
    """The resolver `set_token_resolver` registered on `db`, if any."""
    return db._token_resolver


def kernel_of(db: Database) -> Kernel:
    """The kernel of `db` (its store, catalog, engine and writer)."""
    return db._kernel


def runner_of(db: Database) -> Runner:
    """The runner of `db`'s functions (calls made while the database drains go here)."""
    return db._runner


def reactive_of(db: Database) -> Reactive:
    """`db`'s live queries."""
    return db._reactive


def files_of(db: Database) -> FileStorage:
    """`db`'s stored files."""
    return db._files


def open_for_tool(schema: Schema | None = None, *, path: str | None = None,
                  url: str | None = None, shared: bool = False) -> Database:
    """Open a database for a tool (export, import) rather than an app: its scheduler runs
    nothing, and on a shared database it leaves the app's scheduled calls and crons
    exactly as they are."""
    token = _tool.set(True)
    try:
        return Database(schema, path=path, url=url, shared=shared)
    finally:
        _tool.reset(token)


def shared_of(db: Database) -> SharedKernel | None:
    """The shared side of `db`'s kernel (None unless it is shared)."""
    return db._kernel.shared  # type: ignore[no-any-return]
