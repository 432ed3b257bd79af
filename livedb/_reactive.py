"""Live queries: subscriptions re-run only when a commit writes into what they read.

Each live query keeps the read set of its last run: index ranges and ids. Ranges are
filed by (index, equality prefix): a range whose bounds share their first `n` key
elements can only contain keys starting with those `n` elements, so a written key finds
its candidates with one dict lookup per prefix length in use on that index. The cost of
a commit therefore grows with the live queries it may affect, not with all of them.

Commits are processed strictly in commit order by one thread at a time (the
"processor": the committing thread, or whichever thread waits for a commit first).
Each affected live query is re-run at exactly that commit's snapshot, compared with its
last result, and its subscribers are told only of a change.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from operator import itemgetter
from typing import Any, Self

from ._engines import Commit
from ._errors import LiveDBError
from ._functions import Auth, Function, QueryCtx, Services, check_result
from ._identity import UserIdentity
from ._kernel import Kernel
from ._results import args_key, copy_of, fingerprint
from ._store import Changes, IndexName
from ._transaction import ReadRange
from ._values import encode

log = logging.getLogger("livedb")

_first = itemgetter(0)

Dispatch = Callable[[Callable[[], None]], Any]


class Entry:
    """One result (or error) of a live query, as a subscriber will be handed it."""

    __slots__ = ("version", "encoded", "error", "ts", "fresh")

    def __init__(self, version: int, encoded: bytes, error: BaseException | None, ts: int,
                 fresh: list[Any]) -> None:
        self.version = version
        self.encoded = encoded
        self.error = error
        self.ts = ts
        self.fresh = fresh
        """The handler's own result object while nobody has been handed it (the first
        subscriber to take it saves a copy; every other one gets `copy_of(encoded)`)."""

    def value(self) -> Any:
        try:
            return self.fresh.pop()
        except IndexError:
            return copy_of(self.encoded)


class LiveQuery:
    """One shared execution of a query (function, args, identity) and its subscribers."""

    __slots__ = ("key", "spec", "kwargs", "auth", "state", "ranges", "ids", "subscribers")

    def __init__(self, key: tuple[Any, ...], spec: Function[Any], kwargs: dict[str, Any],
                 auth: Auth) -> None:
        self.key = key
        self.spec = spec
        self.kwargs = kwargs
        self.auth = auth
        self.state = Entry(0, b"", None, 0, [])
        """The current result, replaced whole (under the processor role) on a change."""
        self.ranges: list[tuple[IndexName, Any, Any, Any]] = []
        self.ids: set[str] = set()
        self.subscribers: list[Subscription] = []


class Deliveries:
    """Callbacks made in the order they were queued, by one thread at a time.

    Whichever thread runs the queue while nobody else does delivers everything queued,
    its own and other threads' alike; a thread finding someone at it returns at once and
    leaves its callbacks to that thread. So nobody ever waits for a callback, and a
    callback may block on anything (another thread's mutation, a subscribe, a future)
    while later callbacks simply queue behind it.
    """

    __slots__ = ("_lock", "_queue", "_running")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], Any]] = deque()
        self._running = False

    def put(self, thunk: Callable[[], Any]) -> None:
        with self._lock:
            self._queue.append(thunk)

    def run(self) -> None:
        """Make the queued callbacks, unless another thread is making them."""
        lock = self._lock
        with lock:
            if self._running or not self._queue:
                return
            self._running = True
        try:
            while True:
                with lock:
                    if not self._queue:
                        self._running = False
                        return
                    thunk = self._queue.popleft()
                try:
                    thunk()
                except Exception:
                    log.exception("livedb: a callback raised")
        except BaseException:
            with lock:
                self._running = False
            raise

    def call_soon(self, thunk: Callable[[], Any]) -> None:
        """Queue `thunk` and run the queue, or, if another thread is running it, call
        `thunk` at once rather than behind callbacks that may be waiting for it."""
        with self._lock:
            busy = self._running
            if not busy:
                self._queue.append(thunk)
        if busy:
            thunk()
        else:
            self.run()


class Subscriber:
    """What database and client subscriptions share: `active`, `unsubscribe()`, a context
    manager, and delivery through a dispatch (one coalescing thunk at a time: updates
    still waiting collapse to the newest, and a subscriber never gets a result older
    than one it had)."""

    def __init__(self, dispatch: Dispatch | None) -> None:
        self._dispatch = dispatch
        self._lock = threading.Lock()
        self._latest: Any = None
        self._pending = False
        self._delivered = 0
        self.active = True
        """True while updates are delivered; False once unsubscribed, or once the
        database (or the client) is closed."""

    def unsubscribe(self) -> None:
        """Stop receiving updates; idempotent, and safe from any thread (a callback too).

        No callback starts after it returns, even one already handed to the dispatch, and
        the subscription lets go of its callbacks. Leaving a `with` block of the
        subscription calls it.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> seen = []
            >>> subscription = db.subscribe(lambda ctx: len(ctx.db.query("notes").collect()),
            ...                             None, seen.append)
            >>> subscription.unsubscribe()
            >>> _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
            >>> seen, subscription.active
            ([0], False)
            >>> db.close()
        """
        if self.active:
            self.active = False
            self._remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def _dispatch_latest(self, entry: Any) -> None:
        """Hand `entry` (or a newer one, if it comes first) to the dispatch."""
        with self._lock:
            self._latest = entry
            if self._pending:
                return
            self._pending = True
        try:
            self._dispatch(self._run_dispatched)  # type: ignore[misc]
        except Exception:
            with self._lock:
                self._pending = False
            log.exception("livedb: the dispatch function raised; an update was not delivered")

    def _run_dispatched(self) -> None:
        with self._lock:
            self._pending = False
            entry, self._latest = self._latest, None
            if entry is None or entry.version <= self._delivered:
                return
            self._delivered = entry.version
        if self.active:
            self._call(entry)

    def _call(self, entry: Any) -> None:
        raise NotImplementedError

    def _remove(self) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        """The database closed: stop for good, without telling the registry."""
        self.active = False


class Subscription(Subscriber):
    """A live query's subscriber, as `db.subscribe(...)` returns it.

    It is a context manager: leaving the `with` block unsubscribes. It holds its
    callbacks strongly (a bound method keeps its object alive) until it is unsubscribed
    or the database closes; `livedb.ui.tie` ends it together with a widget.

    Attributes:
        active: True while updates are delivered; False once unsubscribed, or once the
            database is closed.

    Examples:
        >>> from livedb import Database
        >>> db = Database()
        >>> with db.subscribe(lambda ctx: ctx.db.query("notes").collect(), None,
        ...                   lambda notes: None) as subscription:
        ...     _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        ...     [note["text"] for note in subscription.result], subscription.active
        (['hi'], True)
        >>> subscription.active
        False
        >>> db.close()
    """

    def __init__(self, reactive: Reactive, live: LiveQuery, on_update: Callable[..., Any],
                 on_error: Callable[..., Any] | None, dispatch: Dispatch | None,
                 with_ts: bool = False, on_end: Callable[[], Any] | None = None) -> None:
        super().__init__(dispatch)
        self._reactive = reactive
        self._with_ts = with_ts
        self._live = live
        self._on_update: Callable[..., Any] | None = on_update
        self._on_error: Callable[..., Any] | None = on_error
        self._on_end = on_end

    @property
    def result(self) -> Any:
        """The query's newest result, as of the last commit processed: your own copy.

        Through a `dispatch` it may be newer than the last result `on_update` got (that
        update is on its way). None if the last run raised.
        """
        state = self._live.state
        return None if state.error is not None or not state.encoded else copy_of(
            state.encoded)

    @property
    def live_key(self) -> object:
        """An opaque key of the shared live query this subscription watches: equal for
        subscriptions of the same function, args and identity, which share one execution."""
        return self._live

    def _remove(self) -> None:
        self._reactive._remove(self)
        self._release()

    def _release(self) -> None:
        """Let go of the callbacks (and whatever they keep alive): no call follows."""
        self._on_update = None
        self._on_error = None

    def _end(self) -> None:
        super()._end()
        self._release()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            try:
                on_end()
            except Exception:
                log.exception("livedb: ending a subscription of %s failed",
                              self._live.spec.name)

    def __repr__(self) -> str:
        state = "active" if self.active else "closed"
        return f"<Subscription {self._live.spec.name} {state}>"

    def _post(self, deliveries: Deliveries, entry: Entry) -> None:
        """Queue the delivery of `entry` (called in commit order, by the processor)."""
        if self._dispatch is None:
            deliveries.put(lambda: self._call(entry) if self.active else None)
        else:
            deliveries.put(lambda: self._dispatch_latest(entry))

    def _call(self, entry: Entry) -> None:
        error = entry.error
        if error is None:
            target = self._on_update
            if target is None:
                return
            payload = entry.value()
        else:
            target = self._on_error
            payload = error
            if target is None:
                if self.active:
                    log.error("livedb: live query %s raised: %r", self._live.spec.name,
                              error, exc_info=error)
                return
        try:
            if self._with_ts:
                target(payload, entry.ts)
            else:
                target(payload)
        except Exception:
            log.exception("livedb: a subscription callback of %s raised", self._live.spec.name)


def _identity_key(identity: UserIdentity | None) -> Any:
    """A hashable stand-in for an identity (its claims may hold lists or dicts)."""
    if identity is None:
        return None
    try:
        return encode(identity)
    except TypeError:
        return repr(identity)


class _IndexWatch:
    """The ranges read on one index, filed by their equality prefix."""

    __slots__ = ("lengths", "buckets")

    def __init__(self) -> None:
        self.lengths: dict[int, int] = {}
        self.buckets: dict[Any, dict[LiveQuery, list[tuple[Any, Any]]]] = {}

    def add(self, prefix: Any, live: LiveQuery, start: Any, end: Any) -> None:
        bucket = self.buckets.get(prefix)
        if bucket is None:
            bucket = self.buckets[prefix] = {}
            n = len(prefix)
            self.lengths[n] = self.lengths.get(n, 0) + 1
        bucket.setdefault(live, []).append((start, end))

    def remove(self, prefix: Any, live: LiveQuery) -> None:
        bucket = self.buckets.get(prefix)
        if bucket is None or bucket.pop(live, None) is None or bucket:
            return
        del self.buckets[prefix]
        n = len(prefix)
        left = self.lengths[n] - 1
        if left:
            self.lengths[n] = left
        else:
            del self.lengths[n]

    def match(self, key: Any, found: set[LiveQuery]) -> None:
        buckets = self.buckets
        for n in self.lengths:
            bucket = buckets.get(key[:n])
            if bucket is None:
                continue
            for live, ranges in bucket.items():
                if live in found:
                    continue
                for start, end in ranges:
                    if start <= key < end:
                        found.add(live)
                        break


def _prefix(start: Any, end: Any) -> Any:
    n = 0
    for a, b in zip(start, end, strict=False):
        if a != b:
            break
        n += 1
    return start[:n]


class _Commit:
    """A published commit waiting to be processed, then what it must deliver."""

    __slots__ = ("ts", "changes", "ids", "done")

    def __init__(self, ts: int, changes: Changes, ids: list[str]) -> None:
        self.ts = ts
        self.changes = changes
        self.ids = ids
        self.done = False


class Reactive:
    """The subscriptions of one database and the in-order processing of its commits.

    Commits are processed strictly in commit order by one thread at a time (the
    "processor": whichever committing or subscribing thread gets there first). The
    processor only re-runs queries and queues their new results for delivery; it calls
    nobody back. Callbacks are made afterwards, in commit order, outside every lock and
    role, by whichever thread runs `deliveries` (see `Deliveries`).
    """

    system_only = False
    """Hears of every commit (live queries may read any table)."""
    settles = True

    def __init__(self, kernel: Kernel, services: Services) -> None:
        self._kernel = kernel
        self._services = services
        self._store = kernel.store
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        """Waited on under `_mutex` (taken directly where nobody waits: a C-level lock)."""
        self._queue: deque[_Commit] = deque()
        self._waiting: dict[int, _Commit] = {}
        """Processed or queued commits whose committer has not settled them yet."""
        self.deliveries = Deliveries()
        self._busy: int | None = None
        self._done = self._store.ts
        """The newest commit processed: live query results are as of this snapshot."""
        self._store.pin(self._done)
        self._live: dict[tuple[Any, ...], LiveQuery] = {}
        self._by_id: dict[str, set[LiveQuery]] = {}
        self._by_index: dict[IndexName, _IndexWatch] = {}
        self._closed = False
        self.reruns = 0
        """Live query executions after their first (for tests and benchmarks)."""

    # -- commits ---------------------------------------------------------------------

    def committed(self, commit: Commit) -> None:
        """A commit became visible (called in commit order, before the next one is
        published, so no collection can pass its timestamp unpinned): queue it.

        When nothing is queued or being processed, nobody changes the registry (that
        takes the processor role), so a commit that touches no live query's read set is
        recognised here and just advances the processed snapshot: unrelated commits cost
        a few dict lookups, however many live queries there are."""
        ts = commit.ts
        store = self._store
        writes = commit.writes
        with self._mutex:
            if self._busy is None and not self._queue and not (
                    self._live and self._matches(map(_first, writes), commit.changes)):
                store.move(self._done, ts)
                self._done = ts
                return
            store.pin(ts)
            queued = _Commit(ts, commit.changes, [w[0] for w in writes])
            self._queue.append(queued)
            self._waiting[ts] = queued

    def settled(self, ts: int) -> None:
        """In the committing thread, once commit `ts` is visible: deliver its updates.

        A commit that no live query had to look at was never queued (`committed` ran
        earlier in this very thread), so it costs one dict lookup here."""
        if ts in self._waiting:
            self.settle(ts)

    def settle(self, ts: int) -> None:
        """Return once commit `ts` has been processed and its updates delivered — by this
        thread, or by a thread delivering callbacks right now (never waited for)."""
        with self._mutex:
            commit = self._waiting.pop(ts, None)
        if commit is None:
            return
        if not commit.done and self._become_processor(commit):
            self._drain()
        self.deliveries.run()

    def _become_processor(self, commit: _Commit | None = None) -> bool:
        """Take the processor role, waiting for the current processor (it runs only query
        handlers, never callbacks). False when this thread is the processor already, or
        when `commit` got processed meanwhile."""
        me = threading.get_ident()
        with self._mutex:
            if self._busy == me:
                return False
            while self._busy is not None:
                if commit is not None and commit.done:
                    return False
                self._cond.wait()
            if commit is not None and commit.done:
                return False
            self._busy = me
        return True

    def _drain(self) -> None:
        """Process every queued commit, then give up the processor role."""
        mutex, cond = self._mutex, self._cond
        try:
            while True:
                with mutex:
                    if not self._queue:
                        break
                    commit = self._queue.popleft()
                self._process(commit)
                with mutex:
                    commit.done = True
                    cond.notify_all()
        finally:
            with mutex:
                self._busy = None
                cond.notify_all()

    def _matches(self, ids: Iterable[str], changes: Changes,
                 found: set[LiveQuery] | None = None) -> bool:
        """Whether a commit that wrote `ids` with these index `changes` meets any live
        query's read set; the live queries it meets are added to `found` (else the first
        one answers)."""
        by_id = self._by_id
        for doc_id in ids:
            watchers = by_id.get(doc_id)
            if watchers:
                if found is None:
                    return True
                found.update(watchers)
        by_index = self._by_index
        seen: set[LiveQuery] = set() if found is None else found
        for index, (removed, added, rewritten) in changes.items():
            watch = by_index.get(index)
            if watch is None:
                continue
            for keys in (removed, added, rewritten):
                for key in keys:
                    watch.match(key, seen)
                    if found is None and seen:
                        return True
        return bool(seen)

    def _process(self, commit: _Commit) -> None:
        found: set[LiveQuery] = set()
        self._matches(commit.ids, commit.changes, found)
        deliveries = self.deliveries
        for live in found:
            if self._rerun(live, commit.ts):
                entry = live.state
                for subscriber in live.subscribers:
                    subscriber._post(deliveries, entry)
        store = self._store
        store.release(self._done)
        self._done = commit.ts
        store.tidy()

    # -- live queries ----------------------------------------------------------------

    def subscribe(self, spec: Function[Any], kwargs: dict[str, Any], auth: Auth,
                  identity: UserIdentity | None, on_update: Callable[..., Any],
                  on_error: Callable[..., Any] | None,
                  dispatch: Dispatch | None, with_ts: bool = False,
                  on_end: Callable[[], Any] | None = None) -> Subscription:
        """Run the query (or join its live twin) and register for its updates.

        `kwargs` is copied. With `with_ts`, callbacks also get the commit timestamp the
        result is valid at; `on_end` is called if the database closes the subscription."""
        encoded_args = fingerprint(kwargs)
        key = (spec, args_key(kwargs), _identity_key(identity))
        nested = not self._become_processor()
        try:
            subscription = self._register(key, spec, encoded_args, auth, on_update, on_error,
                                          dispatch, with_ts, on_end)
        finally:
            if not nested:
                self._drain()
            self.deliveries.run()
        return subscription

    def _register(self, key: tuple[Any, ...], spec: Function[Any], encoded_args: bytes, auth: Auth,
                  on_update: Callable[..., Any], on_error: Callable[..., Any] | None,
                  dispatch: Dispatch | None, with_ts: bool,
                  on_end: Callable[[], Any] | None) -> Subscription:
        """`subscribe`'s work under the processor role: find or start the live query and
        push its current result to a new subscription."""
        if self._closed:
            raise LiveDBError("the database is closed")
        live = self._live.get(key)
        if live is None:
            live = LiveQuery(key, spec, copy_of(encoded_args), auth)
            self._rerun(live, self._done)
            self._live[key] = live
        entry = live.state
        if entry.error is not None and on_error is None:
            if not live.subscribers:
                self._forget(live)
            raise entry.error
        subscription = Subscription(self, live, on_update, on_error, dispatch, with_ts,
                                    on_end)
        live.subscribers.append(subscription)
        subscription._post(self.deliveries, entry)
        return subscription

    def _rerun(self, live: LiveQuery, ts: int) -> bool:
        """Run `live` at snapshot `ts`, re-file its read set; True if its result changed."""
        kernel = self._kernel
        store = self._store
        store.pin(ts)
        ctx = QueryCtx(store, kernel.catalog, ts, True, kernel.search_indexes, live.auth,
                       self._services)
        error: BaseException | None = None
        result: Any = None
        try:
            result = live.spec.handler(ctx, **live.kwargs)
            result = check_result(live.spec, result, ctx.trusted)
            encoded = fingerprint(result)
        except Exception as e:  # noqa: BLE001 - delivered to on_error
            error = e
            encoded = b""
        finally:
            store.release(ts)
        old = live.state
        version = old.version
        if version:
            self.reruns += 1
            if self._live.get(live.key) is not live:
                return False
        self._file(live, ctx.read_ranges or [], ctx.read_ids or set())
        if version and error is None and old.error is None and encoded == old.encoded:
            old.ts = ts
            return False
        live.state = Entry(version + 1, encoded, error, ts, [] if error else [result])
        return True

    def _file(self, live: LiveQuery, ranges: list[ReadRange], ids: set[str]) -> None:
        self._unfile(live)
        by_id = self._by_id
        for doc_id in ids:
            watchers = by_id.get(doc_id)
            if watchers is None:
                watchers = by_id[doc_id] = set()
            watchers.add(live)
        by_index = self._by_index
        filed = []
        for index, start, end in ranges:
            if not start < end:
                continue
            watch = by_index.get(index)
            if watch is None:
                watch = by_index[index] = _IndexWatch()
            prefix = _prefix(start, end)
            watch.add(prefix, live, start, end)
            filed.append((index, prefix, start, end))
        live.ranges = filed
        live.ids = ids

    def _unfile(self, live: LiveQuery) -> None:
        by_id = self._by_id
        for doc_id in live.ids:
            watchers = by_id.get(doc_id)
            if watchers is not None:
                watchers.discard(live)
                if not watchers:
                    del by_id[doc_id]
        by_index = self._by_index
        for index, prefix, _start, _end in live.ranges:
            watch = by_index.get(index)
            if watch is not None:
                watch.remove(prefix, live)
                if not watch.buckets:
                    del by_index[index]
        live.ranges = []
        live.ids = set()

    def _remove(self, subscription: Subscription) -> None:
        nested = not self._become_processor()
        try:
            live = subscription._live
            if subscription in live.subscribers:
                live.subscribers.remove(subscription)
            if not live.subscribers:
                self._forget(live)
        finally:
            if not nested:
                self._drain()
            self.deliveries.run()

    def _forget(self, live: LiveQuery) -> None:
        if self._live.get(live.key) is live:
            del self._live[live.key]
        self._unfile(live)

    def close(self) -> None:
        """End every subscription (`.active` false, `on_end` called) for good."""
        nested = not self._become_processor()
        try:
            self._closed = True
            ended = [s for live in self._live.values() for s in live.subscribers]
            for live in list(self._live.values()):
                self._forget(live)
                live.subscribers = []
            self._queue.clear()
            self._waiting.clear()
        finally:
            if not nested:
                with self._mutex:
                    self._busy = None
                    self._cond.notify_all()
        for subscription in ended:
            subscription._end()

    def current(self, subscriptions: list[Subscription], block: bool = True
                ) -> tuple[int, list[Entry]] | None:
        """The current state of each subscription's live query, all valid at one commit,
        and that commit's timestamp (`Entry.value()` gives a result's copy). With
        `block=False`, None instead of waiting while a commit is being processed."""
        with self._mutex:
            if self._busy is None:
                return self._done, [s._live.state for s in subscriptions]
        if not block:
            return None
        nested = not self._become_processor()
        try:
            return self._done, [s._live.state for s in subscriptions]
        finally:
            if not nested:
                self._drain()
            self.deliveries.run()

    def _check(self) -> None:
        """Assert the registry's invariants (for tests, with no commit being processed):
        every live query has subscribers that point back at it and is filed exactly
        under the ids and index ranges it read last, and nothing else is filed."""
        with self._mutex:
            assert self._busy is None, "a commit is being processed"
            assert self._done <= self._store.ts, "processed a commit not yet visible"
            live_queries = list(self._live.values())
        by_id: dict[str, set[LiveQuery]] = {}
        by_index: dict[IndexName, dict[Any, dict[LiveQuery, list[tuple[Any, Any]]]]] = {}
        for live in live_queries:
            assert self._live[live.key] is live
            assert live.state.version >= 1, "a live query that never ran"
            assert live.subscribers, "a live query nobody subscribes to"
            for subscription in live.subscribers:
                assert subscription._live is live and subscription.active
            for doc_id in live.ids:
                by_id.setdefault(doc_id, set()).add(live)
            for index, prefix, start, end in live.ranges:
                assert start < end and prefix == _prefix(start, end)
                ranges = by_index.setdefault(index, {}).setdefault(prefix, {})
                ranges.setdefault(live, []).append((start, end))
        assert self._by_id == by_id, "ids filed that no live query read (or missing)"
        assert set(self._by_index) == set(by_index), "index watches out of step"
        for index, watch in self._by_index.items():
            assert watch.buckets == by_index[index], f"ranges filed wrongly on {index}"
            lengths: dict[int, int] = {}
            for prefix in watch.buckets:
                lengths[len(prefix)] = lengths.get(len(prefix), 0) + 1
            assert watch.lengths == lengths, f"prefix lengths out of step on {index}"

    def stats(self) -> dict[str, int]:
        return {"live_queries": len(self._live),
                "subscriptions": sum(len(q.subscribers) for q in self._live.values()),
                "reruns": self.reruns}

    # -- asyncio ---------------------------------------------------------------------

    def watch(self, spec: Function[Any], kwargs: dict[str, Any], auth: Auth,
              identity: UserIdentity | None) -> AsyncIterator[Any]:
        return _Watch(self, spec, fingerprint(kwargs), auth, identity)


class _Watch:
    """`db.watch(...)`: an async iterator of a query's results (newest first, coalesced).

    It ends (StopAsyncIteration) when the database closes."""

    def __init__(self, reactive: Reactive, spec: Function[Any], encoded_args: bytes, auth: Auth,
                 identity: UserIdentity | None) -> None:
        self._args = (reactive, spec, encoded_args, auth, identity)
        self._subscription: Subscription | None = None
        self._event: asyncio.Event | None = None
        self._latest: tuple[bool, Any] | None = None
        self._ended = False

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Any:
        if self._subscription is None:
            loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            reactive, spec, encoded_args, auth, identity = self._args
            fresh = self._event

            def ended() -> None:
                self._ended = True
                try:
                    loop.call_soon_threadsafe(fresh.set)
                except RuntimeError:
                    pass

            self._subscription = reactive.subscribe(
                spec, copy_of(encoded_args), auth, identity, self._put_result,
                self._put_error, loop.call_soon_threadsafe, on_end=ended)
        event = self._event
        assert event is not None
        while self._latest is None:
            if self._ended or not self._subscription.active:
                raise StopAsyncIteration
            await event.wait()
            event.clear()
        ok, value = self._latest
        self._latest = None
        if not ok:
            raise value
        return value

    def _put_result(self, result: Any) -> None:
        self._latest = (True, result)
        assert self._event is not None
        self._event.set()

    def _put_error(self, error: BaseException) -> None:
        self._latest = (False, error)
        assert self._event is not None
        self._event.set()

    async def aclose(self) -> None:
        """Stop watching."""
        if self._subscription is not None:
            self._subscription.unsubscribe()

    def __del__(self) -> None:
        if self._subscription is not None and self._subscription.active:
            self._subscription.unsubscribe()
