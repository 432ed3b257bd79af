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
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .functions import QueryCtx, check_result
from .query import PaginationResult
from .transaction import Transaction
from .values import encode, encode_key

if TYPE_CHECKING:
    from .auth import UserIdentity
    from .database import Database
    from .functions import Auth, Function

log = logging.getLogger("livedb")

Dispatch = Callable[[Callable[[], None]], Any]


def fingerprint(result: Any) -> bytes:
    """A result encoded for comparison: kinds count (`1`, `1.0` and `True` differ) and a
    NaN equals itself."""
    if result.__class__ is PaginationResult:
        return encode((result.page, result.is_done, result.continue_cursor, 1))
    return encode(result)


def same_result(a: Any, b: Any) -> bool:
    """Whether two results are the same value (see `fingerprint`)."""
    return a is b or fingerprint(a) == fingerprint(b)


class LiveQuery:
    """One shared execution of a query (function, args, identity) and its subscribers."""

    __slots__ = ("key", "spec", "kwargs", "auth", "state", "encoded", "ranges", "ids",
                 "subscribers")

    def __init__(self, key: tuple, spec: Function, kwargs: dict, auth: Auth) -> None:
        self.key = key
        self.spec = spec
        self.kwargs = kwargs
        self.auth = auth
        self.state: tuple[int, Any, BaseException | None, int] = (0, None, None, 0)
        """(version, result, error, commit ts), replaced whole so readers see it whole."""
        self.encoded = b""
        """`fingerprint` of the current result, to tell a changed result from an equal one."""
        self.ranges: list[tuple[tuple, tuple, tuple]] = []
        self.ids: set[str] = set()
        self.subscribers: list[Subscription] = []


class Subscriber:
    """What subscriptions share: delivery through a dispatch, coalesced per subscriber
    (the thunk reads the newest state when it runs), never older than what was delivered."""

    def __init__(self, dispatch: Dispatch | None) -> None:
        self._dispatch = dispatch
        self._delivered = 0
        self._pending = False
        self._lock = threading.Lock()
        self.active = True

    def unsubscribe(self) -> None:
        """Stop receiving updates."""
        if self.active:
            self.active = False
            self._remove()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def _notify(self) -> None:
        dispatch = self._dispatch
        if dispatch is None:
            self._deliver_now()
            return
        with self._lock:
            if self._pending:
                return
            self._pending = True
        try:
            dispatch(self._deliver_pending)
        except Exception:
            self._pending = False
            log.exception("livedb: the dispatch function raised; an update was not delivered")

    def _deliver_pending(self) -> None:
        with self._lock:
            self._pending = False
        self._deliver()

    def _newer(self, version: int) -> bool:
        """Claim delivery of `version` unless this subscriber has seen it or a newer one."""
        with self._lock:
            if version <= self._delivered:
                return False
            self._delivered = version
            return True

    def _deliver_now(self) -> None:
        self._deliver()

    def _deliver(self) -> None:
        raise NotImplementedError

    def _remove(self) -> None:
        raise NotImplementedError


class Subscription(Subscriber):
    """A live query's subscriber: `.result`, `.unsubscribe()`, usable as a context manager."""

    def __init__(self, reactive: Reactive, live: LiveQuery, on_update: Callable[[Any], Any],
                 on_error: Callable[[BaseException], Any] | None,
                 dispatch: Dispatch | None, with_ts: bool = False) -> None:
        super().__init__(dispatch)
        self._reactive = reactive
        self._with_ts = with_ts
        self._live = live
        self._on_update = _weak(on_update)
        self._on_error = None if on_error is None else _weak(on_error)

    @property
    def result(self) -> Any:
        """The newest result of the query (as of the last commit processed)."""
        return self._live.state[1]

    def _remove(self) -> None:
        self._reactive._remove(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "closed"
        return f"<Subscription {self._live.spec.name} {state}>"

    def _deliver(self) -> None:
        """Call back with the newest state, if newer than what this subscriber last saw."""
        if not self.active:
            return
        version, result, error, ts = self._live.state
        if not self._newer(version):
            return
        callback = (self._on_update if error is None else self._on_error)
        target = callback() if callback is not None else None
        if target is None:
            if callback is not None:
                self.unsubscribe()
            elif error is not None:
                log.error("livedb: live query %s raised: %r", self._live.spec.name, error,
                          exc_info=error)
            return
        try:
            if self._with_ts:
                target(result if error is None else error, ts)
            else:
                target(result if error is None else error)
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


def _weak(fn: Callable) -> Callable[[], Callable | None]:
    """A getter for `fn`: weak for bound methods (so a dead widget is not kept alive)."""
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        try:
            return weakref.WeakMethod(fn)  # type: ignore[arg-type]
        except TypeError:
            pass
    return lambda: fn


class _IndexWatch:
    """The ranges read on one index, filed by their equality prefix."""

    __slots__ = ("lengths", "buckets")

    def __init__(self) -> None:
        self.lengths: dict[int, int] = {}
        self.buckets: dict[tuple, dict[LiveQuery, list[tuple[tuple, tuple]]]] = {}

    def add(self, prefix: tuple, live: LiveQuery, start: tuple, end: tuple) -> None:
        bucket = self.buckets.get(prefix)
        if bucket is None:
            bucket = self.buckets[prefix] = {}
            n = len(prefix)
            self.lengths[n] = self.lengths.get(n, 0) + 1
        bucket.setdefault(live, []).append((start, end))

    def remove(self, prefix: tuple, live: LiveQuery) -> None:
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

    def match(self, key: tuple, found: set[LiveQuery]) -> None:
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


def _prefix(start: tuple, end: tuple) -> tuple:
    n = 0
    for a, b in zip(start, end, strict=False):
        if a != b:
            break
        n += 1
    return start[:n]


class _Commit:
    __slots__ = ("ts", "changes", "ids")

    def __init__(self, ts: int, changes: dict, ids: list[str]) -> None:
        self.ts = ts
        self.changes = changes
        self.ids = ids


class Reactive:
    """The subscriptions of one database and the in-order processing of its commits."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._store = db._store
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Commit] = deque()
        self._busy: int | None = None
        self._done = self._store.ts
        """The newest commit processed: live query results are as of this snapshot."""
        self._store.pin(self._done)
        self._delivered = self._done
        """The newest commit whose callbacks have all been made (or dispatched)."""
        self._live: dict[tuple, LiveQuery] = {}
        self._by_id: dict[str, set[LiveQuery]] = {}
        self._by_index: dict[tuple, _IndexWatch] = {}
        self.reruns = 0
        """Live query executions after their first (for tests and benchmarks)."""

    # -- commits ---------------------------------------------------------------------

    def committed(self, ts: int, changes: dict, docs: list) -> None:
        """Called in commit order, right after `ts` is published, with its write set.

        Before the next commit is published, so no collection can pass `ts` unpinned."""
        store = self._store
        with self._cond:
            if not self._live and self._busy is None and not self._queue:
                store.release(self._done)
                store.pin(ts)
                self._done = self._delivered = ts
                return
            store.pin(ts)
            self._queue.append(_Commit(ts, changes, [d[0] for d in docs]))

    def settle(self, ts: int) -> None:
        """Return once commit `ts` has been processed and its callbacks delivered.

        Called from inside a callback (the processor's own thread), returns at once: the
        running processor will reach the commit after the current one.
        """
        if self._delivered >= ts:
            return
        if self._become_processor():
            self._drain()

    def _become_processor(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._busy == me:
                return False
            while self._busy is not None:
                self._cond.wait()
            self._busy = me
        return True

    def _drain(self) -> None:
        """Process every queued commit, then stop being the processor."""
        while True:
            with self._cond:
                if not self._queue:
                    self._busy = None
                    self._cond.notify_all()
                    return
                commit = self._queue.popleft()
            try:
                self._process(commit)
            except BaseException:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()
                raise

    def _process(self, commit: _Commit) -> None:
        found: set[LiveQuery] = set()
        by_id = self._by_id
        for doc_id in commit.ids:
            watchers = by_id.get(doc_id)
            if watchers:
                found.update(watchers)
        by_index = self._by_index
        for index, (_position, removed, added, rewritten) in commit.changes.items():
            watch = by_index.get(index)
            if watch is None:
                continue
            for keys in (removed, added, rewritten):
                for key in keys:
                    watch.match(key, found)
        changed = [live for live in found if self._rerun(live, commit.ts)]
        store = self._store
        store.release(self._done)
        self._done = commit.ts
        store.tidy()
        for live in changed:
            for subscriber in list(live.subscribers):
                subscriber._notify()
        self._delivered = commit.ts

    # -- live queries ----------------------------------------------------------------

    def subscribe(self, spec: Function, kwargs: dict, auth: Auth, identity: UserIdentity | None,
                  on_update: Callable[[Any], Any],
                  on_error: Callable[[BaseException], Any] | None,
                  dispatch: Dispatch | None, with_ts: bool = False) -> Subscription:
        """Run the query (or join its live twin) and register for its updates.

        With `with_ts`, callbacks also get the commit timestamp the result is valid at."""
        key = (spec, encode_key(kwargs), _identity_key(identity))
        nested = not self._become_processor()
        try:
            live = self._live.get(key)
            if live is None:
                live = LiveQuery(key, spec, kwargs, auth)
                self._rerun(live, self._done)
                self._live[key] = live
            error = live.state[2]
            if error is not None and on_error is None:
                if not live.subscribers:
                    self._forget(live)
                raise error
            subscription = Subscription(self, live, on_update, on_error, dispatch, with_ts)
            live.subscribers.append(subscription)
            subscription._notify()
        finally:
            if not nested:
                self._drain()
        return subscription

    def _rerun(self, live: LiveQuery, ts: int) -> bool:
        """Run `live` at snapshot `ts`, re-file its read set; True if its result changed."""
        txn = Transaction(self._db, at=ts)
        error: BaseException | None = None
        result: Any = None
        try:
            result = live.spec.handler(QueryCtx(txn, live.auth, None), **live.kwargs)
            result = check_result(live.spec, result, txn.trusted)
        except Exception as e:  # noqa: BLE001 - delivered to on_error
            error = e
        finally:
            txn.close()
        version, old_result, old_error, _ts = live.state
        if version:
            self.reruns += 1
            if self._live.get(live.key) is not live:
                return False
        self._file(live, txn.read_ranges, txn.read_ids)
        encoded = fingerprint(result) if error is None else b""
        if version and error is None and old_error is None and encoded == live.encoded:
            live.state = (version, old_result, None, ts)
            return False
        live.encoded = encoded
        live.state = (version + 1, result, error, ts)
        return True

    def _file(self, live: LiveQuery, ranges: list, ids: set[str]) -> None:
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

    def _forget(self, live: LiveQuery) -> None:
        if self._live.get(live.key) is live:
            del self._live[live.key]
        self._unfile(live)

    def stats(self) -> dict[str, int]:
        return {"live_queries": len(self._live),
                "subscriptions": sum(len(q.subscribers) for q in self._live.values()),
                "reruns": self.reruns}

    # -- asyncio ---------------------------------------------------------------------

    def watch(self, spec: Function, kwargs: dict, auth: Auth,
              identity: UserIdentity | None) -> AsyncIterator[Any]:
        return _Watch(self, spec, kwargs, auth, identity)


class _Watch:
    """`db.watch(...)`: an async iterator of a query's results (newest first, coalesced)."""

    def __init__(self, reactive: Reactive, spec: Function, kwargs: dict, auth: Auth,
                 identity: UserIdentity | None) -> None:
        self._args = (reactive, spec, kwargs, auth, identity)
        self._subscription: Subscription | None = None
        self._event: asyncio.Event | None = None
        self._latest: tuple[bool, Any] | None = None

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Any:
        if self._subscription is None:
            loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            reactive, spec, kwargs, auth, identity = self._args
            self._subscription = reactive.subscribe(
                spec, kwargs, auth, identity, self._put_result, self._put_error,
                loop.call_soon_threadsafe)
        elif not self._subscription.active:
            raise StopAsyncIteration
        assert self._event is not None
        await self._event.wait()
        self._event.clear()
        assert self._latest is not None
        ok, value = self._latest
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
