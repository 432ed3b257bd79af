"""The client layer for UIs: an identity, ordered mutations, optimistic updates, live pages.

A client keeps, per query it watches, the newest server result and the commit it is
valid at. What its subscribers see is that result with the optimistic updates of its
pending mutations applied in submission order. A pending mutation's update stops being
applied to a query as soon as the query's server result is valid at (or after) the
mutation's commit — in the same update that shows the committed result — and everywhere
once the mutation has finished (or failed: a rollback).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, overload

from ._errors import LiveDBError, ValidationError
from ._functions import (
    MUTATION,
    QUERY,
    Auth,
    Function,
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
from ._reactive import Deliveries, Dispatch, Reactive, Subscriber, Subscription
from ._results import args_key, copy_of, copy_value, fingerprint, same_result
from ._values import type_name

log = logging.getLogger("livedb")

R = TypeVar("R")


class _Pending:
    __slots__ = ("id", "update", "args", "commit_ts")

    def __init__(self, pending_id: int, update: Callable[..., Any] | None,
                 args: dict[str, Any]) -> None:
        self.id = pending_id
        self.update = update
        self.args = args
        self.commit_ts: int | None = None


class _ClientQuery:
    """One query the client watches: its server result, its view, its subscribers."""

    __slots__ = ("key", "spec", "kwargs", "server", "server_ts", "error", "shown_error",
                 "view", "version", "subscribers", "source")

    def __init__(self, key: tuple[Any, ...], spec: Function[Any],
                 kwargs: dict[str, Any]) -> None:
        self.key = key
        self.spec = spec
        self.kwargs = kwargs
        self.server: Any = None
        self.server_ts = 0
        self.error: BaseException | None = None
        self.shown_error: BaseException | None = None
        self.view: Any = None
        self.version = 0
        self.subscribers: list[ClientSubscription] = []
        self.source: Subscription | None = None


class OptimisticStore:
    """What an optimistic update `update(store, args)` is given: the client's local view
    of the queries it watches (see `Client.mutation`).

    Examples:
        >>> from livedb import Database, mutation, query
        >>> @query
        ... def counter(ctx):
        ...     row = ctx.db.query("counters").first()
        ...     return 0 if row is None else row["value"]
        >>> @mutation
        ... def increment(ctx):
        ...     row = ctx.db.query("counters").first()
        ...     if row is None:
        ...         ctx.db.insert("counters", {"value": 1})
        ...     else:
        ...         ctx.db.patch(row["_id"], {"value": row["value"] + 1})
        >>> def plus_one(store, args):
        ...     value = store.get_query(counter)
        ...     if value is not None:
        ...         store.set_query(counter, None, value + 1)
        >>> db = Database()
        >>> client = db.client()
        >>> shown = []
        >>> subscription = client.subscribe(counter, None, shown.append)
        >>> client.mutation(increment, optimistic_update=plus_one).result(timeout=5)
        >>> shown
        [0, 1]
        >>> db.close()
    """

    __slots__ = ("_client", "_values", "_allowed")

    def __init__(self, client: Client, values: dict[tuple[Any, ...], Any],
                 allowed: Callable[[tuple[Any, ...]], bool]) -> None:
        self._client = client
        self._values = values
        self._allowed = allowed

    def get_query(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:
        """The local value of a query the client watches: your own copy, free to change.

        Args:
            fn: The query function, as the client's subscription passed it.
            args: Its arguments (equal to the subscription's), or None.

        Returns:
            The current local value (the server's result with earlier optimistic updates
            applied), or None if the client does not watch that query with those args.
        """
        key = self._client._key(fn, args)
        return copy_value(self._values[key]) if key in self._values else None

    def set_query(self, fn: Any, args: Mapping[str, Any] | None, value: Any) -> None:
        """Set the local value of a watched query, until the mutation is settled.

        The client's subscribers of that query see `value` at once. Setting a query the
        client does not watch does nothing.

        Args:
            fn: The query function.
            args: Its arguments (equal to the subscription's), or None.
            value: The value to show, as the query would return it.
        """
        key = self._client._key(fn, args)
        if key in self._values and self._allowed(key):
            self._values[key] = value


class ClientSubscription(Subscriber):
    """A client's subscription, as `client.subscribe(...)` returns it: like a
    `Subscription`, with the client's local view (optimistic updates applied) as its
    result. A context manager: leaving the `with` block unsubscribes.

    Attributes:
        active: True while updates are delivered; False once unsubscribed, or once the
            client or the database is closed.
    """

    def __init__(self, client: Client, query: _ClientQuery, on_update: Callable[[Any], Any],
                 on_error: Callable[[BaseException], Any] | None) -> None:
        super().__init__(client._dispatch)
        self._client = client
        self._query = query
        self._on_update = on_update
        self._on_error = on_error

    @property
    def result(self) -> Any:
        """The client's local view of the query (the server's result with optimistic
        updates applied): your own copy."""
        return copy_value(self._query.view)

    def _remove(self) -> None:
        self._client._drop(self)

    def _notify(self) -> None:
        """Deliver the newest view: through the client's serial queue (default dispatch:
        a client's callbacks keep their order, whichever thread produced them), or one
        coalescing thunk at a time through the dispatch."""
        if self._dispatch is None:
            deliveries = self._client._deliveries
            deliveries.put(self._deliver)
            deliveries.run()
            return
        with self._lock:
            if self._pending:
                return
            self._pending = True
        try:
            self._dispatch(self._run_dispatched)
        except Exception:
            with self._lock:
                self._pending = False
            log.exception("livedb: the dispatch function raised; an update was not delivered")

    def _run_dispatched(self) -> None:
        with self._lock:
            self._pending = False
        self._deliver()

    def _deliver(self) -> None:
        if not self.active:
            return
        query = self._query
        with self._client._lock:
            version, view, error = query.version, query.view, query.error
        with self._lock:
            if version <= self._delivered:
                return
            self._delivered = version
        try:
            if error is not None:
                if self._on_error is not None:
                    self._on_error(error)
                else:
                    log.error("livedb: client query %s raised: %r", query.spec.name, error)
            else:
                self._on_update(copy_value(view))
        except Exception:
            log.exception("livedb: a client subscription callback of %s raised",
                          query.spec.name)


class Client:
    """A UI's connection to the database, as `db.client(...)` returns it: livedb's
    counterpart of Convex's `ConvexReactClient`.

    Every call of a client runs with its one identity. Its subscriptions show the
    client's local view: the server's result with the optimistic updates of its pending
    mutations applied. Its mutations are queued and run in submission order on the
    client's own worker thread, so the UI thread never waits for a commit. Its methods
    may be called from any thread; callbacks and futures are delivered through the
    database's `dispatch`. It is a context manager: leaving the `with` block closes it.

    Attributes:
        identity: The `UserIdentity` the client's calls run with, or None (see
            `set_identity`).

    Examples:
        >>> from livedb import Database, UserIdentity, mutation, query, v
        >>> @query
        ... def my_notes(ctx):
        ...     me = ctx.auth.get_user_identity().subject
        ...     return [n["text"] for n in ctx.db.query("notes").collect() if n["owner"] == me]
        >>> @mutation(args={"text": v.string()})
        ... def add_note(ctx, text):
        ...     owner = ctx.auth.get_user_identity().subject
        ...     return ctx.db.insert("notes", {"owner": owner, "text": text})
        >>> db = Database()
        >>> with db.client(identity=UserIdentity("ada")) as client:
        ...     with client.subscribe(my_notes, None, print):
        ...         _ = client.mutation(add_note, {"text": "hi"}).result(timeout=5)
        []
        ['hi']
        >>> db.close()
    """

    def __init__(self, runner: Runner, reactive: Reactive, identity: UserIdentity | None,
                 token_check: Callable[[], None] | None = None,
                 dispatch: Dispatch | None = None) -> None:
        self._runner = runner
        self._reactive = reactive
        self.identity = identity
        self._token_check = token_check
        self._auth: Auth = auth_for(identity)
        self._dispatch = dispatch
        self._lock = threading.RLock()
        self._queries: dict[tuple[Any, ...], _ClientQuery] = {}
        self._pending: list[_Pending] = []
        self._ids = itertools.count(1)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livedb-client")
        self._closed = False
        self._deliveries = Deliveries()
        """The client's callbacks in order (default dispatch), whichever thread made them."""

    def _check_token(self) -> None:
        """A client made from a session token: `AuthError` once that session has ended."""
        check = self._token_check
        if check is not None:
            check()

    # -- reading -----------------------------------------------------------------------

    @overload
    def query(self, fn: QueryFunction[R], args: Mapping[str, Any] | None = None) -> R: ...
    @overload
    def query(self, fn: Callable[[QueryCtx], R], args: Mapping[str, Any] | None = None) -> R: ...
    def query(self, fn: Any, args: Mapping[str, Any] | None = None) -> Any:  # noqa: E301
        """Run a query once with the client's identity (like `db.query`).

        It reads the database's newest snapshot; the client's optimistic updates do not
        apply (they apply to its subscriptions).

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments, as one dict, or None.

        Returns:
            The query's result (your own copy).

        Raises:
            ValidationError: Bad arguments or result.
            AuthError: The client's session token was signed out or expired.
            LiveDBError: The client or the database is closed.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> client = db.client()
            >>> client.query(lambda ctx: ctx.db.query("notes").collect())
            []
            >>> db.close()
        """
        self._check_open()
        self._check_token()
        return self._runner.query(fn, args, self.identity)

    @overload
    def watch(self, fn: QueryFunction[R], args: Mapping[str, Any] | None = None
              ) -> AsyncIterator[R]: ...
    @overload
    def watch(self, fn: Callable[[QueryCtx], R], args: Mapping[str, Any] | None = None
              ) -> AsyncIterator[R]: ...
    def watch(self, fn: Any, args: Mapping[str, Any] | None = None  # noqa: E301
              ) -> AsyncIterator[Any]:
        """An async iterator of a query's results, with the client's identity (like
        `db.watch`: server results, without the optimistic layer).

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments (copied), or None.

        Returns:
            An async iterator of results; it ends when the database closes.

        Raises:
            ValidationError: Bad arguments.
            AuthError: The client's session token was signed out or expired.
            LiveDBError: The client or the database is closed.

        Examples:
            >>> import asyncio
            >>> from livedb import Database, UserIdentity
            >>> db = Database()
            >>> client = db.client(identity=UserIdentity("ada"))
            >>> async def first():
            ...     async for me in client.watch(lambda ctx: ctx.auth.get_user_identity().subject):
            ...         return me
            >>> asyncio.run(first())
            'ada'
            >>> db.close()
        """
        self._check_open()
        self._check_token()
        spec = resolve(fn, QUERY)
        return self._reactive.watch(spec, check_args(spec, args), self._auth, self.identity)

    @overload
    def subscribe(self, fn: QueryFunction[R], args: Mapping[str, Any] | None,
                  on_update: Callable[[R], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None
                  ) -> ClientSubscription: ...
    @overload
    def subscribe(self, fn: Callable[[QueryCtx], R], args: Mapping[str, Any] | None,
                  on_update: Callable[[R], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None
                  ) -> ClientSubscription: ...
    def subscribe(self, fn: Any, args: Mapping[str, Any] | None,  # noqa: E301
                  on_update: Callable[[Any], Any], *,
                  on_error: Callable[[BaseException], Any] | None = None
                  ) -> ClientSubscription:
        """Watch a query with the client's identity: `on_update` gets the client's local
        view of its result now, and again on every change.

        The local view is the server's result with the optimistic updates of the client's
        pending mutations applied, so it changes when a commit changes the result, and also
        at once when an optimistic update changes it. Subscriptions of one client to the
        same query and args share one live query. Callbacks of one client arrive in order,
        through the database's `dispatch`.

        Args:
            fn: A `@query` function, or any callable `fn(ctx)`.
            args: The arguments (copied), or None.
            on_update: Called with each new local view (your own copy).
            on_error: Called with the exception when a re-run raises (without it, the error
                is logged). A first run that raises raises from `subscribe` unless
                `on_error` is given.

        Returns:
            A subscription: `.result` (the local view), `.active`, `.unsubscribe()`; a
            context manager.

        Raises:
            ValidationError: Bad arguments.
            AuthError: The client's session token was signed out or expired.
            LiveDBError: The client or the database is closed.
            TypeError: `on_update` is not callable.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> client = db.client()
            >>> count = lambda ctx: len(ctx.db.query("notes").collect())
            >>> with client.subscribe(count, None, print) as subscription:
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            0
            1
            >>> db.close()
        """
        if not callable(on_update):
            raise TypeError(f"subscribe: on_update must be callable, got {type_name(on_update)}")
        self._check_open()
        self._check_token()
        spec = resolve(fn, QUERY)
        kwargs = check_args(spec, args)
        kwargs = copy_of(fingerprint(kwargs))
        key = (spec, args_key(kwargs))
        with self._lock:
            query = self._queries.get(key)
            fresh = query is None
            if query is None:
                query = self._queries[key] = _ClientQuery(key, spec, kwargs)
            subscription = ClientSubscription(self, query, on_update, on_error)
            if not fresh:
                query.subscribers.append(subscription)
        if fresh:
            try:
                query.source = self._reactive.subscribe(
                    spec, kwargs, self._auth, self.identity,
                    lambda result, ts: self._server_update(query, result, None, ts),
                    lambda error, ts: self._server_update(query, None, error, ts),
                    None, with_ts=True)
            except BaseException:
                with self._lock:
                    del self._queries[key]
                raise
            with self._lock:
                query.subscribers.append(subscription)
            if query.error is not None and on_error is None:
                error = query.error
                subscription.active = False
                self._drop(subscription)
                raise error
        subscription._notify()
        return subscription

    def _key(self, fn: Any, args: Mapping[str, Any] | None) -> tuple[Any, ...]:
        spec = resolve(fn, QUERY)
        return (spec, args_key(check_args(spec, args)))

    # -- the optimistic layer ------------------------------------------------------------

    def _server_update(self, query: _ClientQuery, result: Any, error: BaseException | None,
                       ts: int) -> None:
        with self._lock:
            query.server, query.error, query.server_ts = result, error, ts
            if any(p.update is not None for p in self._pending):
                changed = self._recompute()
            else:
                query.view = None if error is not None else result
                query.shown_error = error
                query.version += 1
                changed = list(query.subscribers)
        for subscriber in changed:
            subscriber._notify()

    def _recompute(self) -> list[ClientSubscription]:
        """Rebuild every view from server results and pending updates (lock held)."""
        queries = self._queries
        values = {key: q.server for key, q in queries.items() if q.error is None}
        for pending in self._pending:
            if pending.update is None:
                continue
            commit_ts = pending.commit_ts

            def allowed(key: tuple[Any, ...], commit_ts: int | None = commit_ts) -> bool:
                return commit_ts is None or queries[key].server_ts < commit_ts

            try:
                pending.update(OptimisticStore(self, values, allowed), copy_value(pending.args))
            except Exception:
                log.exception("livedb: an optimistic update raised; it is ignored")
        changed: list[ClientSubscription] = []
        for key, query in queries.items():
            if query.error is not None:
                if query.version and query.shown_error is query.error:
                    continue
                query.view = None
            else:
                view = values[key]
                if (query.version and query.shown_error is None
                        and same_result(view, query.view)):
                    continue
                query.view = view
            query.shown_error = query.error
            query.version += 1
            changed.extend(query.subscribers)
        return changed

    @overload
    def mutation(self, fn: MutationFunction[R], args: Mapping[str, Any] | None = None,
                 optimistic_update: Callable[[OptimisticStore, dict[str, Any]], Any] | None = None
                 ) -> Future[R]: ...
    @overload
    def mutation(self, fn: Callable[[MutationCtx], R], args: Mapping[str, Any] | None = None,
                 optimistic_update: Callable[[OptimisticStore, dict[str, Any]], Any] | None = None
                 ) -> Future[R]: ...
    def mutation(self, fn: Any, args: Mapping[str, Any] | None = None,  # noqa: E301
                 optimistic_update: Callable[[OptimisticStore, dict[str, Any]], Any] | None = None
                 ) -> Future[Any]:
        """Queue a mutation and return a `concurrent.futures.Future` of its result at once.

        The client's mutations run one after another, in submission order, on the client's
        worker thread, with the client's identity. The future resolves (through the
        database's `dispatch`) only once the client's subscriptions already show the
        mutation's writes, so a UI reacting to it never shows a stale list. Never block the
        UI thread on `future.result()`; use `future.add_done_callback`.

        `optimistic_update(store, args)` runs now, before this returns: through
        `store.get_query(fn, args)` and `store.set_query(fn, args, value)` it changes the
        client's local view of queries it watches, and the client's subscribers see the
        change at once. While the mutation is pending, the update is re-applied on top of
        every newer server result; it is dropped in the same update that shows the committed
        result (no flicker), or rolled back if the mutation fails. An update that raises is
        logged and ignored.

        Args:
            fn: A `@mutation` function, or any callable `fn(ctx)`.
            args: The arguments (validated now and copied), or None.
            optimistic_update: None, or a function `update(store, args)` given an
                `OptimisticStore` and a copy of the arguments.

        Returns:
            A `Future`: its result is the mutation's result, or its exception the mutation's
            error (including `AuthError` once a session token expired).

        Raises:
            ValidationError: Bad arguments.
            AuthError: The client's session token was signed out or expired.
            LiveDBError: The client or the database is closed.
            TypeError: `optimistic_update` is not callable, or `fn` is not a mutation.

        Examples:
            >>> from livedb import Database, mutation, query, v
            >>> @query
            ... def texts(ctx):
            ...     return [n["text"] for n in ctx.db.query("notes").collect()]
            >>> @mutation(args={"text": v.string()})
            ... def add(ctx, text):
            ...     return ctx.db.insert("notes", {"text": text})
            >>> def show_at_once(store, args):
            ...     shown = store.get_query(texts)
            ...     if shown is not None:
            ...         store.set_query(texts, None, [*shown, args["text"] + " (sending)"])
            >>> db = Database()
            >>> client = db.client()
            >>> shown = []
            >>> subscription = client.subscribe(texts, None, shown.append)
            >>> future = client.mutation(add, {"text": "hi"}, optimistic_update=show_at_once)
            >>> shown[:2]
            [[], ['hi (sending)']]
            >>> future.result(timeout=5).table
            'notes'
            >>> shown[-1]
            ['hi']
            >>> db.close()
        """
        self._check_open()
        self._check_token()
        if optimistic_update is not None and not callable(optimistic_update):
            raise TypeError("mutation: optimistic_update must be callable")
        spec = resolve(fn, MUTATION)
        copied: dict[str, Any] = copy_of(fingerprint(check_args(spec, args)))
        pending = _Pending(next(self._ids), optimistic_update, copied)
        future: Future[Any] = Future()
        with self._lock:
            self._check_open()
            self._pending.append(pending)
            changed = self._recompute() if optimistic_update is not None else []
        for subscriber in changed:
            subscriber._notify()
        try:
            self._worker.submit(self._run_mutation, spec, copied, pending, future,
                                self.identity, self._token_check)
        except RuntimeError:
            with self._lock:
                self._pending.remove(pending)
                changed = self._recompute()
            for subscriber in changed:
                subscriber._notify()
            raise LiveDBError("the client is closed") from None
        return future

    def _run_mutation(self, fn: Any, args: Mapping[str, Any] | None, pending: _Pending,
                      future: Future[Any], identity: UserIdentity | None = None,
                      token_check: Callable[[], None] | None = None) -> None:
        def on_commit(ts: int) -> None:
            pending.commit_ts = ts

        outcome: tuple[bool, Any]
        try:
            if token_check is not None:
                token_check()
            outcome = (True, self._runner.mutation(fn, args, identity,
                                                   on_commit=on_commit)[0])
        except BaseException as e:  # noqa: BLE001 - handed to the future
            outcome = (False, e)
        with self._lock:
            self._pending.remove(pending)
            changed = self._recompute()
        for subscriber in changed:
            subscriber._notify()

        def settle() -> None:
            if outcome[0]:
                future.set_result(outcome[1])
            else:
                future.set_exception(outcome[1])

        if self._dispatch is None:
            self._deliveries.call_soon(settle)
        else:
            self._dispatch(settle)

    # -- identity ----------------------------------------------------------------------

    def set_identity(self, identity: UserIdentity | None) -> None:
        """Act as `identity` from now on (None: signed out).

        Every subscription of the client re-runs with the new identity, and mutations
        submitted from now on carry it (those already queued keep theirs). A client made from
        a session token stops checking that session.

        Args:
            identity: A `UserIdentity`, or None.

        Raises:
            LiveDBError: The client or the database is closed.
            TypeError: `identity` is neither a `UserIdentity` nor None.

        Examples:
            >>> from livedb import Database, UserIdentity
            >>> db = Database()
            >>> client = db.client()
            >>> seen = []
            >>> whoami = lambda ctx: getattr(ctx.auth.get_user_identity(), "subject", None)
            >>> with client.subscribe(whoami, None, seen.append):
            ...     client.set_identity(UserIdentity("ada"))
            >>> seen
            [None, 'ada']
            >>> db.close()
        """
        self._check_open()
        auth = auth_for(identity)
        with self._lock:
            self.identity, self._auth = identity, auth
            self._token_check = None
            queries = list(self._queries.values())
        for query in queries:
            old = query.source
            if old is not None:
                old.unsubscribe()
            query.source = self._reactive.subscribe(
                query.spec, query.kwargs, auth, identity,
                lambda result, ts, query=query: self._server_update(query, result, None, ts),
                lambda error, ts, query=query: self._server_update(query, None, error, ts),
                None, with_ts=True)
            with self._lock:
                dropped = self._queries.get(query.key) is not query
            if dropped:
                query.source.unsubscribe()

    # -- pagination --------------------------------------------------------------------

    def paginated(self, fn: Any, args: Mapping[str, Any] | None, initial_num_items: int, *,
                  on_update: Callable[[PaginatedView], Any] | None = None) -> PaginatedView:
        """A live paginated view of a query: a growing list of pages, like Convex's
        `usePaginatedQuery`.

        `fn` is a query that takes a `pagination_opts` argument and returns
        `....paginate(pagination_opts)`; the view passes `args` plus `pagination_opts` to
        each page. Every page but the last keeps its boundaries while documents come and go
        (a document inserted at the top grows the first page instead of pushing every page's
        last row onto the next one).

        Args:
            fn: The `@query` function.
            args: Its other arguments, or None.
            initial_num_items: How many documents the first page holds, an int >= 1.
            on_update: Called with the view whenever its results or status change.

        Returns:
            A `PaginatedView`: `.results`, `.status`, `.load_more(n)`, `.page_args`,
            `.close()`.

        Raises:
            LiveDBError: The client or the database is closed.
            ValidationError: Bad arguments, or `initial_num_items` is not an int >= 1.

        Examples:
            >>> from livedb import Database, query, v
            >>> pagination_opts = v.object({"num_items": v.int64(),
            ...                             "cursor": v.union(v.string(), v.null()),
            ...                             "end_cursor": v.optional(v.string())})
            >>> @query(args={"pagination_opts": pagination_opts})
            ... def numbers(ctx, pagination_opts):
            ...     return ctx.db.query("numbers").paginate(pagination_opts)
            >>> db = Database()
            >>> for n in range(5):
            ...     _ = db.mutation(lambda ctx: ctx.db.insert("numbers", {"n": n}))
            >>> view = db.client().paginated(numbers, None, 2)
            >>> [d["n"] for d in view.results], view.status
            ([0, 1], 'can_load_more')
            >>> view.load_more(10)
            True
            >>> [d["n"] for d in view.results], view.status
            ([0, 1, 2, 3, 4], 'exhausted')
            >>> db.close()
        """
        return PaginatedView(self, fn, args, initial_num_items, on_update)

    # -- lifecycle ---------------------------------------------------------------------

    def _drop(self, subscription: ClientSubscription) -> None:
        query = subscription._query
        with self._lock:
            if subscription in query.subscribers:
                query.subscribers.remove(subscription)
            if query.subscribers or self._queries.get(query.key) is not query:
                return
            del self._queries[query.key]
        if query.source is not None:
            query.source.unsubscribe()

    def _check_open(self) -> None:
        if self._closed:
            raise LiveDBError("the client is closed")
        self._runner.kernel.check_open()

    def close(self) -> None:
        """Wait for the client's queued mutations, then end every subscription of the
        client; idempotent.

        Every mutation queued before `close` still runs (its future gets its result or its
        error). New calls then raise `LiveDBError("the client is closed")`. Closing the
        database closes its clients; leaving a `with` block of the client calls it.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> client = db.client()
            >>> future = client.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> client.close()
            >>> future.done()
            True
            >>> db.close()
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._worker.shutdown(wait=True)
        with self._lock:
            queries = list(self._queries.values())
        for query in queries:
            for subscriber in list(query.subscribers):
                subscriber.unsubscribe()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PaginatedView:
    """A live, growing list of pages, as `client.paginated(...)` returns it.

    Every page but the last is pinned between two cursors, so page boundaries stay where
    they are while documents come and go; the last page follows its query to the end of
    the range. Read `results` and `status` at any time (from any thread), or pass
    `on_update` to `client.paginated` to hear of changes.
    """

    def __init__(self, client: Client, fn: Any, args: Mapping[str, Any] | None,
                 initial_num_items: int,
                 on_update: Callable[[PaginatedView], Any] | None) -> None:
        if initial_num_items.__class__ is not int or initial_num_items < 1:
            raise ValidationError(f"paginated: initial_num_items must be an int >= 1, got "
                              f"{initial_num_items!r}")
        self._client = client
        self._fn = fn
        self._args = dict(args or {})
        self._on_update = on_update
        self._lock = threading.RLock()
        self._pages: list[dict[str, Any]] = []
        self._add_page(None, initial_num_items)

    def _page_args(self, page: dict[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_items": page["num_items"], "cursor": page["cursor"]}
        if page["end_cursor"] is not None:
            opts["end_cursor"] = page["end_cursor"]
        return {**self._args, "pagination_opts": opts}

    def _add_page(self, cursor: str | None, num_items: int) -> None:
        page: dict[str, Any] = {"cursor": cursor, "num_items": num_items, "end_cursor": None,
                                "result": None, "subscription": None, "token": None}
        with self._lock:
            self._pages.append(page)
        self._subscribe(page)

    def _subscribe(self, page: dict[str, Any]) -> None:
        """(Re)subscribe a page; its first result pins its end, so its boundary stays put."""
        token = object()
        page["token"] = token

        def update(result: Any) -> None:
            if page["token"] is not token:
                return
            with self._lock:
                page["result"] = result
                pin = page["end_cursor"] is None
                if pin:
                    page["end_cursor"] = result.continue_cursor
            if pin:
                self._subscribe(page)
                return
            if self._on_update is not None:
                try:
                    self._on_update(self)
                except Exception:
                    log.exception("livedb: a paginated view callback raised")

        subscription = self._client.subscribe(self._fn, self._page_args(page), update)
        if page["token"] is token or page["subscription"] is None:
            old, page["subscription"] = page["subscription"], subscription
            if old is not None:
                old.unsubscribe()
        if page["token"] is not token:
            subscription.unsubscribe()

    @property
    def results(self) -> list[dict[str, Any]]:
        """Every document of the loaded pages, in order (a new list each time)."""
        with self._lock:
            out: list[dict[str, Any]] = []
            for page in self._pages:
                if page["result"] is not None:
                    out.extend(page["result"].page)
            return out

    @property
    def status(self) -> str:
        """`"loading_more"` (a page has no result yet), `"can_load_more"` (more documents
        follow the last page) or `"exhausted"` (the last page reached the end)."""
        with self._lock:
            if any(page["result"] is None for page in self._pages):
                return "loading_more"
            return "exhausted" if self._pages[-1]["result"].is_done else "can_load_more"

    @property
    def page_args(self) -> list[dict[str, Any]]:
        """The args each loaded page's query runs with, in order: what an optimistic update
        passes to `store.get_query` / `store.set_query` to change a page (e.g. the first)."""
        with self._lock:
            return [self._page_args(page) for page in self._pages]

    def load_more(self, num_items: int) -> bool:
        """Add a page of up to `num_items` documents after the last one.

        Args:
            num_items: How many documents the new page holds, an int >= 1.

        Returns:
            True if a page was added; False if there is nothing more, or the last page has
            no result yet (`status` is not `"can_load_more"`).

        Raises:
            ValidationError: `num_items` is not an int >= 1 (as for `paginate`).
        """
        if num_items.__class__ is not int or num_items < 1:
            raise ValidationError(f"load_more: num_items must be an int >= 1, got "
                                  f"{num_items!r}")
        with self._lock:
            last = self._pages[-1]
            result, end = last["result"], last["end_cursor"]
            if result is None or end is None or result.is_done:
                return False
        self._add_page(end, num_items)
        return True

    def close(self) -> None:
        """End the view's subscriptions: it stops changing. Closing the client or the
        database ends them too."""
        with self._lock:
            pages = list(self._pages)
        for page in pages:
            if page["subscription"] is not None:
                page["subscription"].unsubscribe()
