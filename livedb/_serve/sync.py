"""One WebSocket connection speaking Convex's sync protocol.

Per connection: one ordered outbox (a single writer task sends every frame, so a
MutationResponse always precedes the Transition that resolves it), one mutation worker
(a connection's mutations run one after another), actions run concurrently, and one
transition task that sends a Transition whenever something changed:

- the query set or the identity changed (ModifyQuerySet, Authenticate): applied in a
  worker thread, then every new or re-run result is sent;
- a commit changed a result of this connection (the LiveSet's change callback);
- a mutation or action response went out: a Transition always follows it (empty if
  nothing changed), because the client resolves a mutation only on a Transition whose
  timestamp covers its commit.

Every Transition reads all of the connection's results at one commit (`LiveSet.read`),
and its `startVersion` is exactly the previous `endVersion`. While a mutation of this
connection has committed but its response is not yet queued, no Transition at or past
its commit is sent (the client would show the write twice under an optimistic update).

The protocol is not versioned; this follows the `convex` npm client (1.48) and accepts
any `/api/<version>/sync`. A server-side problem never becomes a `FatalError` (which
would make the client give up for good): a function's failure is reported on that
function, a broken client message closes the socket (the client reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .._errors import AuthError, ValidationError
from .._identity import UserIdentity
from . import backend
from .hub import PAGINATION_ARG, FunctionError, Hub, failure, pagination_opts
from .registry import Entry
from .wire import WireError, decode_u64, dumps, encode_u64, loads, to_json

log = logging.getLogger("livedb.serve")

@dataclass(frozen=True)
class _Close:
    """Outbox item: close the socket once everything before it is sent."""

    code: int = 1000
    reason: str = ""


class ProtocolError(Exception):
    """The client broke the protocol; the socket is closed with this reason."""


@dataclass
class _Query:
    """A query of the connection's query set, as the client added it."""

    query_id: int
    path: str
    args: Any
    entry: Entry | None = None
    kwargs: dict[str, Any] | None = None
    """The args the live query runs with (paginated: pinned to `journal`)."""
    journal: str | None = None
    """A paginated query's end cursor: its page keeps this boundary, across reconnects."""
    error: Exception | None = None
    paginated: bool = False
    sent: tuple[Any, ...] | None = None


@dataclass
class _Pending:
    """Query-set and identity changes received but not yet applied."""

    query_set: int = 0
    modifications: list[dict[str, Any]] = field(default_factory=list)
    identity_version: int | None = None
    identity: UserIdentity | None = None


class SyncConnection:
    """The protocol state machine of one socket (see the module docstring)."""

    def __init__(self, hub: Hub, ws: Any) -> None:
        self.hub = hub
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.session_id: str | None = None
        self.received_query_set = 0
        self.received_identity = 0
        self.identity: UserIdentity | None = None
        self.pending = _Pending()
        self.sent_version = (0, 0, 0)
        """(querySet, ts, identity) of the last Transition sent: the next one's start."""
        self.applied_query_set = 0
        self.applied_identity = 0
        self.applied_identity_value: UserIdentity | None = None
        self.queries: dict[int, _Query] = {}
        self.removed: list[int] = []
        self.outbox: deque[Any] = deque()
        self.outbox_waiter: asyncio.Future[None] | None = None
        self.dirty = False
        """Something may have changed since the last Transition was built."""
        self.building = False
        """A transition task is running (it loops while `dirty`)."""
        self.force = False
        self.committing: int | None = None
        """Set (from the mutation's thread) to a mutation's commit ts until its response
        is queued."""
        self.mutations: asyncio.Queue[tuple[int, Any, Any, UserIdentity | None]] = (
            asyncio.Queue())
        self.live = backend.LiveSet(hub.db, self._changed)
        self.last_sent = time.monotonic()
        self.closing = False
        self.tasks: list[asyncio.Task[Any]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until it closes."""
        writer = asyncio.create_task(self._writer())
        self.tasks = [asyncio.create_task(self._mutation_worker()),
                      asyncio.create_task(self._pinger())]
        try:
            await self._receive()
        except ProtocolError as e:
            log.warning("livedb serve: closing a connection: %s", e)
            self._close_after_sending(1008, str(e)[:120])
        finally:
            self.closing = True
            for task in self.tasks:
                task.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                self._put(_Close())
                await asyncio.wait_for(writer, timeout=5)
            writer.cancel()
            await self.loop.run_in_executor(self.hub.pool, self.live.close)

    def _close_after_sending(self, code: int, reason: str) -> None:
        self.closing = True
        self._put(_Close(code, reason))

    def _send(self, message: dict[str, Any]) -> None:
        self._put(message)

    def _put(self, item: Any) -> None:
        self.outbox.append(item)
        waiter = self.outbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _writer(self) -> None:
        ws = self.ws
        outbox = self.outbox
        while True:
            if not outbox:
                self.outbox_waiter = self.loop.create_future()
                await self.outbox_waiter
                continue
            item = outbox.popleft()
            if isinstance(item, _Close):
                code, reason = item.code, item.reason
                if not ws.closed:
                    await ws.close(code=code, message=reason.encode())
                return
            if ws.closed:
                continue
            try:
                await ws.send_str(dumps(item))
            except (ConnectionError, RuntimeError):
                return
            self.last_sent = time.monotonic()

    async def _pinger(self) -> None:
        interval = self.hub.ping_interval
        while True:
            idle = time.monotonic() - self.last_sent
            if idle >= interval:
                self._send({"type": "Ping"})
                self.last_sent = time.monotonic()
                idle = 0.0
            await asyncio.sleep(interval - idle)

    def _changed(self) -> None:
        """A result may have changed (called from any thread)."""
        self.hub.wake(self._schedule)

    # -- receiving -------------------------------------------------------------------------

    async def _receive(self) -> None:
        first = True
        async for frame in self.ws:
            if frame.type.name != "TEXT":
                if frame.type.name in ("CLOSE", "CLOSING", "CLOSED", "ERROR"):
                    return
                raise ProtocolError(f"expected JSON text frames, got {frame.type.name}")
            try:
                message = loads(frame.data)
            except WireError as e:
                raise ProtocolError(str(e)) from None
            if not isinstance(message, dict):
                raise ProtocolError("a message is a JSON object")
            kind = message.get("type")
            if first and kind != "Connect":
                raise ProtocolError(f"the first message must be Connect, got {kind!r}")
            first = False
            if kind == "Connect":
                self._on_connect(message)
            elif kind == "ModifyQuerySet":
                self._on_modify(message)
            elif kind == "Mutation":
                self._on_mutation(message)
            elif kind == "Action":
                self._on_action(message)
            elif kind == "Authenticate":
                if not await self._on_authenticate(message):
                    return
            elif kind == "Event":
                continue
            else:
                log.info("livedb serve: ignoring a %r message", kind)
            if self.closing:
                return

    def _on_connect(self, message: dict[str, Any]) -> None:
        session = message.get("sessionId")
        if not isinstance(session, str) or not session:
            raise ProtocolError("Connect needs a sessionId string")
        self.session_id = session
        observed = message.get("maxObservedTimestamp")
        if observed is not None:
            try:
                seen = decode_u64(observed)
            except WireError as e:
                raise ProtocolError(f"Connect.maxObservedTimestamp: {e}") from None
            latest = backend.latest_ts(self.hub.db)
            if seen > latest:
                log.info("livedb serve: a client has seen ts %d, newer than this server's "
                         "%d (was the database replaced?)", seen, latest)

    def _on_modify(self, message: dict[str, Any]) -> None:
        new: Any  # an int, checked below
        base, new = message.get("baseVersion"), message.get("newVersion")
        modifications = message.get("modifications")
        if base != self.received_query_set:
            raise ProtocolError(f"ModifyQuerySet baseVersion {base!r} does not match the "
                                f"query set version {self.received_query_set}")
        if new.__class__ is not int or new <= base or not isinstance(modifications, list):
            raise ProtocolError("ModifyQuerySet needs newVersion > baseVersion and a list of "
                                "modifications")
        for change in modifications:
            if not isinstance(change, dict) or change.get("queryId").__class__ is not int:
                raise ProtocolError("a query set modification needs an int queryId")
            if change.get("type") not in ("Add", "Remove"):
                raise ProtocolError(f"unknown query set modification {change.get('type')!r}")
            if change.get("componentPath") is not None:
                raise ProtocolError("components (componentPath) are not supported")
        self.received_query_set = new
        self.pending.query_set = new
        self.pending.modifications.extend(modifications)
        self._schedule()

    async def _on_authenticate(self, message: dict[str, Any]) -> bool:
        base = message.get("baseVersion")
        if base != self.received_identity:
            raise ProtocolError(f"Authenticate baseVersion {base!r} does not match the "
                                f"identity version {self.received_identity}")
        token_type = message.get("tokenType")
        identity: UserIdentity | None = None
        try:
            if token_type == "User":
                identity = await self.loop.run_in_executor(
                    self.hub.pool, self.hub.identify, message.get("value"))
            elif token_type == "Admin":
                raise AuthError("admin tokens are not supported by livedb serve")
            elif token_type != "None":
                raise ProtocolError(f"unknown Authenticate tokenType {token_type!r}")
        except AuthError as e:
            self._send({"type": "AuthError", "error": str(e),
                        "baseVersion": self.received_identity, "authUpdateAttempted": True})
            self._close_after_sending(1000, "AuthError")
            return False
        self.received_identity += 1
        self.identity = identity
        self.pending.identity_version = self.received_identity
        self.pending.identity = identity
        self._schedule()
        return True

    def _on_mutation(self, message: dict[str, Any]) -> None:
        request: Any = message.get("requestId")
        if request.__class__ is not int:
            raise ProtocolError("Mutation needs an int requestId")
        self.mutations.put_nowait((request, message.get("udfPath"), message, self.identity))

    def _on_action(self, message: dict[str, Any]) -> None:
        request: Any = message.get("requestId")
        if request.__class__ is not int:
            raise ProtocolError("Action needs an int requestId")
        task = asyncio.create_task(self._run_action(request, message, self.identity))
        self.tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[Any]) -> None:
        if task in self.tasks:
            self.tasks.remove(task)

    # -- mutations and actions ---------------------------------------------------------------

    async def _mutation_worker(self) -> None:
        hub = self.hub
        while True:
            request, path, message, identity = await self.mutations.get()
            response: dict[str, Any]
            try:
                if message.get("componentPath") is not None:
                    raise FunctionError("components (componentPath) are not supported")
                entry = hub.find(path, "mutation")
                args = hub.args(message.get("args"))
                outcome, ts = await self.loop.run_in_executor(
                    hub.pool, self._mutate, entry, args, identity, request)
                response = {"type": "MutationResponse", "requestId": request, "success": True,
                            "result": _raw(outcome), "ts": encode_u64(ts), "logLines": []}
            except Exception as e:  # noqa: BLE001 - reported to the client
                response = _failed("MutationResponse", request, e)
            self.committing = None
            self._send(response)
            self.force = True
            self._schedule()

    def _mutate(self, entry: Entry, args: dict[str, Any], identity: UserIdentity | None,
                request: int) -> tuple[Any, int]:
        key = None if self.session_id is None else (self.session_id, request)
        return backend.mutate(self.hub.db, entry.function, args, identity, key,
                              encode=_encode_text, on_commit=self._on_commit)

    def _on_commit(self, ts: int) -> None:
        self.committing = ts

    async def _run_action(self, request: int, message: dict[str, Any],
                          identity: UserIdentity | None) -> None:
        hub = self.hub
        try:
            if message.get("componentPath") is not None:
                raise FunctionError("components (componentPath) are not supported")
            entry = hub.find(message.get("udfPath"), "action")
            args = hub.args(message.get("args"))
            result = await self.loop.run_in_executor(
                hub.actions, lambda: hub.db.action(entry.function, args, identity=identity))
            response = {"type": "ActionResponse", "requestId": request, "success": True,
                        "result": _raw(_encode_text(result)), "logLines": []}
        except Exception as e:  # noqa: BLE001 - reported to the client
            response = _failed("ActionResponse", request, e)
        if not self.closing:
            self._send(response)
            self.force = True
            self._schedule()

    # -- transitions -------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Send a Transition if anything changed (on the loop). Usually done at once, in
        this call; applying query-set changes, or a commit still being processed, moves
        the work to a task (and a thread)."""
        self.dirty = True
        if self.building or self.closing:
            return
        while self.dirty:
            if self.pending.modifications or self.pending.identity_version is not None:
                break
            snapshot = self.live.read(block=False)
            if snapshot is None:
                break
            self.dirty = False
            self._emit(snapshot)
        else:
            return
        self.building = True
        task = asyncio.create_task(self._transitions())
        self.tasks.append(task)
        task.add_done_callback(self._forget_task)

    async def _transitions(self) -> None:
        try:
            while self.dirty and not self.closing:
                self.dirty = False
                pending = self.pending
                if pending.modifications or pending.identity_version is not None:
                    self.pending = _Pending(query_set=pending.query_set)
                    await self.loop.run_in_executor(self.hub.pool, self._apply, pending)
                snapshot = self.live.read(block=False)
                if snapshot is None:
                    snapshot = await self.loop.run_in_executor(self.hub.pool, self.live.read)
                if snapshot is not None:
                    self._emit(snapshot)
        finally:
            self.building = False

    def _emit(self, snapshot: backend.Snapshot) -> None:
        """Send the Transition from the last one sent to `snapshot`, if there is news."""
        committing = self.committing
        if committing is not None and snapshot.ts >= committing:
            return
        modifications: list[dict[str, Any]] = [
            {"type": "QueryRemoved", "queryId": query_id} for query_id in self.removed]
        self.removed = []
        for query_id, query in self.queries.items():
            result = snapshot.results.get(query_id)
            if result is None or result.token == query.sent:
                continue
            query.sent = result.token
            modifications.append(self._modification(query, result))
        end = (self.applied_query_set, snapshot.ts, self.applied_identity)
        start = self.sent_version
        if not (modifications or self.force or end[0] != start[0] or end[2] != start[2]):
            return
        self.force = False
        self.sent_version = end
        self._send({"type": "Transition", "startVersion": _version(start),
                    "endVersion": _version(end), "modifications": modifications})

    def _modification(self, query: _Query, result: backend.Result) -> dict[str, Any]:
        if result.ok:
            try:
                value = self.hub.encode_result(result.token, result.value)
            except WireError as e:
                return _query_failed(query, FunctionError(f"{query.path}: the result cannot "
                                                          f"be sent: {e}"))
            return {"type": "QueryUpdated", "queryId": query.query_id, "value": value,
                    "logLines": [], "journal": query.journal}
        return _query_failed(query, result.value)

    def _apply(self, pending: _Pending) -> None:
        """Apply query-set and identity changes to the live set (in a worker thread)."""
        rerun = pending.identity_version is not None
        if rerun:
            self.applied_identity = pending.identity_version  # type: ignore[assignment]
        identity = pending.identity if rerun else self.applied_identity_value
        self.applied_identity_value = identity
        added: set[int] = set()
        for change in pending.modifications:
            query_id = change["queryId"]
            if change["type"] == "Remove":
                if self.queries.pop(query_id, None) is not None:
                    self.live.remove(query_id)
                self.removed.append(query_id)
                continue
            query = _Query(query_id, str(change.get("udfPath")), change.get("args"),
                           journal=change.get("journal"))
            self._prepare(query, identity)
            self.queries[query_id] = query
            if query_id in self.removed:
                self.removed.remove(query_id)
            added.add(query_id)
            self._watch(query, identity)
        if rerun:
            for query in self.queries.values():
                if query.query_id not in added:
                    query.sent = None
                    self._watch(query, identity)
        self.applied_query_set = pending.query_set or self.applied_query_set

    def _prepare(self, query: _Query, identity: UserIdentity | None) -> None:
        """Resolve a new query's function and args; pin a paginated query's end."""
        hub = self.hub
        try:
            if not isinstance(query.journal, (str, type(None))):
                raise FunctionError("a query journal is a string or null")
            query.entry = hub.find(query.path, "query")
            raw = query.args
            opts = None
            if (isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], dict)
                    and PAGINATION_ARG in raw[0]):
                opts = raw[0][PAGINATION_ARG]
                raw = [{k: v for k, v in raw[0].items() if k != PAGINATION_ARG}]
            kwargs = hub.args(raw)
            if opts is not None:
                query.paginated = True
                pinned = pagination_opts(opts, query.journal)
                if "end_cursor" not in pinned:
                    first, _ts = backend.query(hub.db, query.entry.function,
                                               {**kwargs, "pagination_opts": pinned}, identity)
                    end = getattr(first, "continue_cursor", None)
                    if isinstance(end, str):
                        pinned["end_cursor"] = end
                query.journal = pinned.get("end_cursor")
                kwargs["pagination_opts"] = pinned
            query.kwargs = kwargs
        except Exception as e:  # noqa: BLE001 - reported as the query's failure
            query.error = e

    def _watch(self, query: _Query, identity: UserIdentity | None) -> None:
        if query.error is not None or query.entry is None:
            self.live.fail(query.query_id, query.error or FunctionError("no function"))
        else:
            self.live.add(query.query_id, query.entry.function, query.kwargs, identity)


_ENCODED_TS: dict[int, str] = {}


def _version(version: tuple[int, int, int]) -> dict[str, Any]:
    ts = version[1]
    text = _ENCODED_TS.get(ts)
    if text is None:
        if len(_ENCODED_TS) > 1024:
            _ENCODED_TS.clear()
        text = _ENCODED_TS[ts] = encode_u64(ts)
    return {"querySet": version[0], "ts": text, "identity": version[2]}


def _encode_text(value: Any) -> str:
    """A result as JSON text in the client's encoding (stored for replays as is)."""
    return dumps(to_json(value))


def _raw(text: str) -> msgspec.Raw:
    return msgspec.Raw(text.encode())


def _failed(kind: str, request: int, error: BaseException) -> dict[str, Any]:
    found = failure(error)
    response = {"type": kind, "requestId": request, "success": False,
                "result": found.message, "logLines": []}
    if found.has_data:
        response["errorData"] = found.data
    return response


def _query_failed(query: _Query, error: BaseException) -> dict[str, Any]:
    found = failure(error)
    message = found.message
    if query.paginated and isinstance(error, ValidationError) and "cursor" in str(error):
        message = f"InvalidCursor: {message}"
    response = {"type": "QueryFailed", "queryId": query.query_id, "errorMessage": message,
                "logLines": [], "journal": query.journal}
    if found.has_data:
        response["errorData"] = found.data
    return response
