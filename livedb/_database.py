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
    (`subscribe`, `watch`, `client`) re-run only when a commit writes into what they
    read. One `Database` is safe to use from many threads at once: every method may be
    called from any thread. Open one `Database` per file and share it; a second one on
    the same `path` raises `DatabaseLockedError`.

    Documents handed to you (query results, subscription results) are plain dicts and
    lists, your own copies: changing them never changes stored data. Use the database
    as a context manager, or call `close()`, to stop its threads and release the file.

    Args:
        schema: The tables, validators and indexes (`define_schema(...)`). None accepts
            any table name and any storable value, with only the built-in indexes.
        path: A file to keep the database in, created if missing (with mode 0600; stored
            files go in the folder `<path>.files/`). None keeps everything in memory, gone
            at `close()`.
        clock: A function returning the time in seconds since the epoch (default
            `time.time`). It stamps `_creation_time` and drives the scheduler and
            session expiry. With a clock given no background scheduler thread runs:
            call `run_scheduled()` to run due calls (deterministic tests).
        dispatch: How callbacks of live queries reach your thread: a function given a
            zero-argument function, which it must run later on the right thread and
            return at once (e.g. `loop.call_soon_threadsafe`, or a dispatcher from
            `livedb.ui`). Through a dispatch, updates still waiting are coalesced: a
            callback always gets the newest result. Default: callbacks run in the
            committing thread right after the commit, outside every lock.
        durability: `"full"` (the default: every commit is synced to disk before
            `mutation` returns) or `"normal"` (syncs batched: a power loss may lose the
            last moments of commits, but never corrupts the file). Ignored in memory.
        crons: Recurring jobs (`livedb.Crons()`), scheduled when the database opens.
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
        DatabaseLockedError: Another `Database`, in this or another process, has `path`
            open (an exclusive opener and a shared one exclude each other too).
        CorruptionError: The file at `path` is damaged, or is not a livedb file.
        SchemaError: Documents already stored do not match `schema` (the message names
            the first ones and their paths).
        TypeError: `schema`, `clock`, `dispatch`, `crons`, `shared` or `url` is of the
            wrong kind.
        ValueError: `durability` is neither `"full"` nor `"normal"`; `shared=True`
            without a `path`; both `path` and `url`; a `url` that is not PostgreSQL's.
        LiveDBError: With `url`, the server cannot be reached (the message names it).

    Examples:
        >>> from livedb import Database, define_schema, define_table, mutation, query, v
        >>> schema = define_schema({"notes": define_table({"text": v.string()})})
        >>> @mutation(args={"text": v.string()})
        ... def add(ctx, text):
        ...     return ctx.db.insert("notes", {"text": text})
        >>> @query
        ... def texts(ctx):
        ...     return [note["text"] for note in ctx.db.query("notes").collect()]
        >>> with Database(schema, path="notes.livedb") as db:
        ...     note_id = db.mutation(add, {"text": "hello"})
        >>> with Database(schema, path="notes.livedb") as db:
        ...     db.query(texts)
        ['hello']

        Several processes of one machine each open the file with `shared=True` (here
        two openers in one process stand for them):

        >>> web = Database(schema, path="shared.livedb", shared=True)
        >>> worker = Database(schema, path="shared.livedb", shared=True)
        >>> _ = worker.mutation(add, {"text": "from the worker"})
        >>> import time
        >>> while not web.query(texts):
        ...     time.sleep(0.001)
        >>> web.query(texts)
        ['from the worker']
        >>> web.close(); worker.close()
    """

    def __init__(self, schema: Schema | None = None, *, path: str | os.PathLike[str] | None
                 = None, clock: Callable[[], float] | None = None,
                 dispatch: Dispatch | None = None, durability: str = "full",
                 crons: Crons | None = None, shared: bool = False,
                 url: str | None = None) -> None:
        """Open the database: create or load `path` (or connect to `url`), check its
        documents against `schema` (building any index the schema adds), fail actions a
        crash cut short, and start the scheduler."""
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

        A query sees one consistent snapshot: every commit before it started, none after.
        It never waits for a running mutation. Call it from any thread.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`: an ad-hoc query, handy in a
                REPL (its arguments are not validated).
            args: The arguments, as one dict (validated against the function's `args=`).
                None means no arguments.
            identity: Who calls (what `ctx.auth.get_user_identity()` returns), or None.

        Returns:
            The function's result: plain dicts, lists and values, your own copy.

        Raises:
            ValidationError: Bad arguments, an unknown table or index, or a result that is
                not a storable value (or fails `returns=`).
            LiveDBError: The database is closed.
            AppError: The function raised it (any other exception propagates as itself).
            TypeError: `fn` is a mutation or an action, or not callable.

        Examples:
            >>> from livedb import Database, query, v
            >>> @query(args={"prefix": v.string()})
            ... def names(ctx, prefix):
            ...     return [user["name"] for user in ctx.db.query("users").collect()
            ...             if user["name"].startswith(prefix)]
            >>> db = Database()
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("users", {"name": "Ada"}))
            >>> db.query(names, {"prefix": "A"})
            ['Ada']
            >>> db.query(lambda ctx: len(ctx.db.query("users").collect()))
            1
            >>> db.close()
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

        Mutations run one at a time, so a mutation never sees another one half done and never
        loses an update. If the function raises, nothing it wrote (or scheduled) commits. This
        returns once the commit is on disk (synced, with `durability="full"`) and visible to
        queries, and, with the default dispatch, once the callbacks of the live queries it
        changed were made (in this thread, unless another thread is making callbacks right
        now: that thread makes them next).

        Args:
            fn: A `@mutation` function, or any callable `fn(ctx)` (an ad-hoc mutation).
            args: The arguments, as one dict (validated against the function's `args=`).
            identity: Who calls, or None.

        Returns:
            The function's result.

        Raises:
            ValidationError: Bad arguments, a write that does not fit the schema or the value
                limits, or a bad result (nothing is written).
            DocumentNotFoundError: A patch, replace or delete of a missing document.
            AppError: The function raised it (any other exception propagates as itself).
            LiveDBError: The database is closed, the commit could not be written (a full
                disk, a read-only file), or this is called inside a mutation.
            TypeError: `fn` is a query or an action, or not callable.

        Examples:
            >>> from livedb import Database, mutation, v
            >>> @mutation(args={"name": v.string()})
            ... def add_user(ctx, name):
            ...     return ctx.db.insert("users", {"name": name})
            >>> db = Database()
            >>> db.mutation(add_user, {"name": "Ada"}).table
            'users'
            >>> def add_then_fail(ctx):
            ...     ctx.db.insert("users", {"name": "Bob"})
            ...     raise RuntimeError("changed my mind")
            >>> db.mutation(add_then_fail)
            Traceback (most recent call last):
            RuntimeError: changed my mind
            >>> db.query(lambda ctx: [user["name"] for user in ctx.db.query("users").collect()])
            ['Ada']
            >>> db.close()
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
        """Run an action and return its result.

        An action may do I/O (call a web API, read files) and reads and writes the database
        through `ctx.run_query` and `ctx.run_mutation`, each its own transaction, carrying
        this call's identity. An action is not a transaction: what its mutations committed
        stays committed if it raises later. An `async def` action runs to its end before
        this returns (in a thread of its own if an event loop runs in this one).

        Args:
            fn: An `@action` function, or any callable `fn(ctx)` (an ad-hoc action).
            args: The arguments, as one dict (validated against the function's `args=`).
            identity: Who calls, or None.

        Returns:
            The function's result.

        Raises:
            ValidationError: Bad arguments, or a result that is not a storable value.
            AppError: The function raised it (any other exception propagates as itself).
            LiveDBError: The database is closed.
            TypeError: `fn` is a query or a mutation, or not callable.

        Examples:
            >>> from pathlib import Path
            >>> from livedb import Database, action, mutation, v
            >>> @mutation(args={"text": v.string()})
            ... def save(ctx, text):
            ...     return ctx.db.insert("pages", {"text": text})
            >>> @action(args={"path": v.string()})
            ... def import_page(ctx, path):
            ...     return ctx.run_mutation(save, {"text": Path(path).read_text()})
            >>> _ = Path("page.txt").write_text("hello")
            >>> db = Database()
            >>> db.action(import_page, {"path": "page.txt"}).table
            'pages'
            >>> db.close()
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

        The query re-runs only when a commit writes into what it read (the index ranges it
        scanned, the documents it fetched): a `take(20)` is not woken by writes past its
        20th row. Identical live queries (same function, args and identity) share one
        execution; each subscriber gets its own copy of the result. Every subscription
        updated by one commit sees that same commit, and updates arrive in commit order.

        Callbacks run through the database's `dispatch` (default: in the committing thread,
        right after the commit), outside every lock of livedb: a callback may call livedb
        (even block on another thread's mutation) without stalling anyone. A callback that
        raises is logged and affects neither the commit nor other subscribers.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments (copied: changing your dict later changes nothing), or None.
            on_update: Called with each new result.
            on_error: Called with the exception when a re-run raises (without it, the error
                is logged to the `"livedb"` logger). A first run that raises raises from
                `subscribe` itself.
            identity: Who calls, or None.

        Returns:
            A `Subscription`: `.result`, `.active`, `.unsubscribe()`; a context manager. It
            holds `on_update` and `on_error` (and what they reference) until it is
            unsubscribed or the database closes.

        Raises:
            ValidationError: Bad arguments.
            LiveDBError: The database is closed.
            TypeError: `on_update` or `on_error` is not callable, or `fn` is not a query.

        Examples:
            >>> from livedb import Database, query
            >>> @query
            ... def count(ctx):
            ...     return len(ctx.db.query("notes").collect())
            >>> db = Database()
            >>> with db.subscribe(count, None, print) as subscription:
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            0
            1
            >>> subscription.active
            False
            >>> db.close()
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
        """An async iterator of a query's results: the first, then each change.

        The asyncio counterpart of `subscribe`: iterate it in a coroutine. Results that
        arrive while you are busy coalesce to the newest. The iterator ends when the
        database closes; `await iterator.aclose()`, or dropping the iterator, stops
        watching. A re-run that raises raises from the iteration.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments (copied), or None.
            identity: Who calls, or None.

        Returns:
            An async iterator of results.

        Raises:
            ValidationError: Bad arguments.
            LiveDBError: The database is closed.

        Examples:
            >>> import asyncio
            >>> from livedb import Database
            >>> db = Database()
            >>> async def first_two():
            ...     seen = []
            ...     async for count in db.watch(lambda ctx: len(ctx.db.query("notes").collect())):
            ...         seen.append(count)
            ...         if len(seen) == 2:
            ...             return seen
            ...         db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> asyncio.run(first_two())
            [0, 1]
            >>> db.close()
        """
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        auth = auth_for(identity)
        self._kernel.check_open()
        return self._reactive.watch(spec, kwargs, auth, identity)

    def client(self, identity: UserIdentity | None = None, token: str | None = None) -> Client:
        """A client for a UI: one identity for all its calls, its own live queries,
        mutations queued in order (returning futures), optimistic updates, and live
        paginated views.

        Args:
            identity: Who the client acts as, or None.
            token: Instead of `identity`, a `livedb.auth.PasswordAuth` session token standing
                for its identity. It is checked on every call: after sign-out or expiry, the
                client's calls raise `AuthError`.

        Returns:
            A `Client`; a context manager (leaving it closes the client).

        Raises:
            AuthError: `token` is not a live session token.
            LiveDBError: `token` given but no `PasswordAuth` is set up on this database, or
                the database is closed.
            TypeError: Both `identity` and `token` given, or `identity` is not a
                `UserIdentity`.

        Examples:
            >>> from livedb import Database, UserIdentity
            >>> db = Database()
            >>> with db.client(identity=UserIdentity("ada")) as client:
            ...     client.query(lambda ctx: ctx.auth.get_user_identity().subject)
            'ada'
            >>> db.close()
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
        """Run every due scheduled call (and cron run) now, in this thread.

        Calls that become due meanwhile run too. With a manual `clock` this is the only way
        scheduled calls run (deterministic tests); otherwise a background thread runs them
        as they fall due, and this merely runs them sooner.

        Returns:
            How many calls ran.

        Raises:
            LiveDBError: The database is closed, or this is called inside a mutation.

        Examples:
            >>> from livedb import Database, mutation
            >>> @mutation
            ... def ping(ctx):
            ...     ctx.db.insert("pings", {})
            >>> now = [1000.0]
            >>> db = Database(clock=lambda: now[0])
            >>> _ = db.mutation(lambda ctx: ctx.scheduler.run_after(60, ping))
            >>> db.run_scheduled()
            0
            >>> now[0] += 60
            >>> db.run_scheduled()
            1
            >>> db.close()
        """
        self._kernel.check_open()
        return self._scheduler.run_due()

    def store_file(self, data: Any, content_type: str | None = None) -> Id:
        """Store a file from outside functions (a script, an upload handler).

        The bytes are streamed in chunks and hashed; the file's row in the `_storage` system
        table commits once its bytes are safely stored. In functions, actions use
        `ctx.storage.store` instead.

        Args:
            data: `bytes` (or another bytes-like object), or a binary file object to read.
            content_type: A MIME type to keep with the file (e.g. `"image/png"`), or None.

        Returns:
            The new file's id in the `_storage` system table: pass it to
            `ctx.storage.get_url`, `get_metadata`, `get` and `delete`, or keep it in a
            document field validated by `v.id("_storage")`.

        Raises:
            ValidationError: A `content_type` that is not a str of valid Unicode.
            TypeError: `data` is neither bytes nor a binary file object.
            LiveDBError: The database is closed, or the bytes could not be written.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> file_id = db.store_file(b"hello", content_type="text/plain")
            >>> db.query(lambda ctx: ctx.storage.get_metadata(file_id)["size"])
            5
            >>> db.close()
        """
        self._kernel.check_open()
        return self._files.store(data, content_type)

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring (they cost a pass over the documents: not for hot paths).

        Returns:
            A dict: `documents` (live documents, system tables included), `versions` (kept
            document versions, old ones included, until no snapshot needs them),
            `snapshots` (open read snapshots), `commit_ts` (the number of the newest
            commit), `live_queries` and `subscriptions` (shared live queries and their
            subscribers), `reruns` (live-query re-runs so far), `search_entries` and
            `vector_rows` (with search or vector indexes only), and `tables` (the user
            tables that exist).

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> stats = db.stats()
            >>> stats["documents"], stats["tables"]
            (1, ['notes'])
            >>> db.close()
        """
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
        finish; every client's queued mutations still run (each future gets its result or
        its error, never silently dropped); scheduled calls running now finish; then every
        subscription ends (`.active` is false) and every `watch` iterator stops. Leaving a
        `with Database(...)` block calls it.

        Examples:
            >>> from livedb import Database, LiveDBError
            >>> db = Database()
            >>> db.close()
            >>> db.close()
            >>> try:
            ...     db.query(lambda ctx: None)
            ... except LiveDBError as e:
            ...     print(e)
            the database is closed
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
