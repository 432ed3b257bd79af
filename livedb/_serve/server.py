"""The HTTP and WebSocket server (aiohttp): one port for Convex's sync protocol, its HTTP
API and CORS, run on an event loop in a background thread.

aiohttp rather than Starlette with uvicorn: one dependency serves both HTTP (with request
bodies, which ConvexHttpClient needs) and WebSockets on one port, and its client is what
the protocol tests use, so the optional extra adds one package, not three.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

import msgspec

from .._database import Database
from .._errors import AuthError, LiveDBError, ValidationError
from . import backend
from .hub import FunctionError, Hub, failure
from .registry import Package, load
from .sync import SyncConnection
from .wire import WireError, decode_u64, dumps, encode_u64, to_json

try:
    from aiohttp import web
except ImportError:
    if TYPE_CHECKING:  # type checkers see aiohttp installed; start() checks for None
        raise
    web = None

log = logging.getLogger("livedb.serve")

STATUS_FUNCTION_FAILED = 560
"""Convex's status for "the function ran and failed" (ConvexHttpClient reads the body)."""
QUERY_TS_SECONDS = 30.0
"""How long a timestamp from /api/query_ts can be read at (/api/query_at_ts)."""
MAX_MESSAGE_BYTES = 64 << 20


class Server:
    """A running `livedb.serve(...)`; a context manager (leaving the block closes it).

    Closing the server does not close the database.

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the one picked, if `serve` was given `port=0`).
    """

    def __init__(self, hub: Hub, host: str, port: int, allowed_origins: tuple[str, ...]
                 ) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self._allowed = allowed_origins
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._sockets: set[Any] = set()
        self._runner: Any = None
        self._pins: dict[int, asyncio.TimerHandle] = {}
        """query_ts timestamps still readable, with the timer that releases each."""
        self._thread = threading.Thread(target=self._main, name="livedb-serve", daemon=True)
        self._closed = False

    @property
    def url(self) -> str:
        """The address to give `new ConvexClient(url)`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<livedb Server {self.url} {'closed' if self._closed else 'running'}>"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self.hub.close()
            raise self._error

    def close(self) -> None:
        """Close every connection (clients will reconnect to a new server), stop serving,
        and wait for running calls. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        self._thread.join()
        self.hub.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or `timeout` seconds pass (False)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._open())
            except BaseException as e:  # noqa: BLE001 - re-raised in start()
                self._error = e
                return
            finally:
                self._started.set()
            assert self._stop is not None
            loop.run_until_complete(self._stop.wait())
            loop.run_until_complete(self._shutdown())
        finally:
            loop.close()

    async def _open(self) -> None:
        self._stop = asyncio.Event()
        self.hub.loop = asyncio.get_running_loop()
        @web.middleware
        async def cors(request: Any, handler: Any) -> Any:
            return await self._cors(request, handler)

        app = web.Application(middlewares=[cors], client_max_size=MAX_MESSAGE_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/{version}/sync", self._sync)
        for name in ("query", "mutation", "action", "function", "query_ts", "query_at_ts"):
            app.router.add_post(f"/api/{name}", getattr(self, f"_http_{name}"))
        for name in ("sign_up", "sign_in", "sign_out", "token"):
            app.router.add_post(f"/api/auth/{name}", getattr(self, f"_auth_{name}"))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise LiveDBError(f"serve: cannot listen on {self.host}:{self.port}: "
                              f"{e.strerror or e}") from None
        for address in runner.addresses:
            if isinstance(address, tuple):
                self.port = address[1]
                break

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"the server is shutting down")
        await self._runner.cleanup()
        for ts in list(self._pins):
            self._unpin(ts)

    # -- middleware ----------------------------------------------------------------------------

    def _origin_allowed(self, origin: str | None) -> bool:
        return origin is None or "*" in self._allowed or origin in self._allowed

    async def _cors(self, request: Any, handler: Any) -> Any:
        origin = request.headers.get("Origin")
        allow = origin is not None and self._origin_allowed(origin)
        if request.method == "OPTIONS":
            response = web.Response(status=204)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as e:
                if allow:
                    self._allow(request, origin, e.headers)  # pyright: ignore[reportArgumentType]
                raise
        if allow:  # (origin is not None)
            self._allow(request, origin, response.headers)  # pyright: ignore[reportArgumentType]
        return response

    def _allow(self, request: Any, origin: str, headers: Any) -> None:
        headers["Access-Control-Allow-Origin"] = "*" if "*" in self._allowed else origin
        headers["Vary"] = "Origin"
        headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        headers["Access-Control-Allow-Headers"] = (
            request.headers.get("Access-Control-Request-Headers")
            or "Content-Type, Authorization, Convex-Client")
        headers["Access-Control-Max-Age"] = "86400"

    # -- WebSocket -----------------------------------------------------------------------------

    async def _index(self, request: Any) -> Any:
        return web.json_response({"livedb": "serve", "package": self.hub.package.name,
                                  "functions": sorted(self.hub.package.functions)})

    async def _sync(self, request: Any) -> Any:
        if not self._origin_allowed(request.headers.get("Origin")):
            return web.Response(status=403, text="origin not allowed")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, compress=False,
                                   autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await SyncConnection(self.hub, ws).run()
        except Exception:
            log.exception("livedb serve: a connection failed")
        finally:
            self._sockets.discard(ws)
            if not ws.closed:
                await ws.close(code=1011, message=b"InternalServerError")
        return ws

    # -- HTTP API ------------------------------------------------------------------------------

    async def _body(self, request: Any) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            raise web.HTTPBadRequest(text="the request body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the request body is a JSON object")
        return body

    async def _identity(self, request: Any) -> Any:
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            raise _unauthenticated("only 'Authorization: Bearer <token>' is supported")
        try:
            return await self._in_pool(self.hub.identify, token.strip())
        except AuthError as e:
            raise _unauthenticated(str(e)) from None

    async def _in_pool(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.hub.pool, fn, *args)

    async def _call(self, request: Any, kind: str | None, at: bool = False) -> Any:
        body = await self._body(request)
        identity = await self._identity(request)
        if body.get("format", "convex_encoded_json") != "convex_encoded_json":
            raise web.HTTPBadRequest(text="only format 'convex_encoded_json' is supported")
        hub = self.hub
        db = hub.db
        try:
            if body.get("componentPath") is not None:
                raise FunctionError("components (componentPath) are not supported")
            path = body.get("path")
            if kind is None:
                entry = hub.package.find(path)
                if entry is None:
                    raise FunctionError(f"Could not find public function for '{path}'")
            else:
                entry = hub.find(path, kind)
            raw = body.get("args", {})
            args = hub.args(raw, wrapped=isinstance(raw, list))
            fn = entry.function
            if entry.kind == "query":
                ts = decode_u64(body.get("ts")) if at else None
                result, _ts = await self._in_pool(backend.query, db, fn, args, identity, ts)
                text = dumps(to_json(result))
            elif entry.kind == "mutation":
                text, _ts = await self._in_pool(
                    lambda: backend.mutate(db, fn, args, identity, encode=_text))
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    hub.actions, lambda: db.action(fn, args, identity=identity))
                text = dumps(to_json(result))
        except Exception as e:  # noqa: BLE001 - reported to the client
            found = failure(e)
            reply: dict[str, Any] = {"status": "error", "errorMessage": found.message,
                                     "logLines": []}
            if found.has_data:
                reply["errorData"] = found.data
            return _json(reply, STATUS_FUNCTION_FAILED)
        return web.Response(
            body=b'{"status":"success","value":' + text.encode() + b',"logLines":[]}',
            content_type="application/json")

    async def _http_query(self, request: Any) -> Any:
        return await self._call(request, "query")

    async def _http_mutation(self, request: Any) -> Any:
        return await self._call(request, "mutation")

    async def _http_action(self, request: Any) -> Any:
        return await self._call(request, "action")

    async def _http_function(self, request: Any) -> Any:
        return await self._call(request, None)

    async def _http_query_at_ts(self, request: Any) -> Any:
        return await self._call(request, "query", at=True)

    async def _http_query_ts(self, request: Any) -> Any:
        ts = await self._in_pool(backend.pin_snapshot, self.hub.db)
        timer = self._pins.get(ts)
        if timer is not None:
            timer.cancel()
            backend.release_snapshot(self.hub.db, ts)
        self._pins[ts] = asyncio.get_running_loop().call_later(QUERY_TS_SECONDS,
                                                                self._unpin, ts)
        return _json({"ts": encode_u64(ts)})

    def _unpin(self, ts: int) -> None:
        timer = self._pins.pop(ts, None)
        if timer is not None:
            timer.cancel()
            backend.release_snapshot(self.hub.db, ts)

    # -- sign-in endpoints ---------------------------------------------------------------------

    async def _auth_call(self, request: Any, fn: Any) -> Any:
        body = await self._body(request)
        try:
            return _json(await self._in_pool(fn, body))
        except AuthError as e:
            return _json({"error": str(e)}, 401)
        except (ValidationError, WireError) as e:
            return _json({"error": str(e)}, 400)

    def _session_reply(self, session: Any) -> dict[str, Any]:
        jwt, expires = self.hub.mint(session.token)
        return {"token": session.token, "userId": str(session.user_id),
                "expiresAt": session.expires_at, "jwt": jwt, "jwtExpiresAt": expires}

    async def _auth_sign_up(self, request: Any) -> Any:
        if not self.hub.sign_up:
            return _json({"error": "sign-up is turned off on this server"}, 403)
        return await self._auth_call(request, lambda body: self._session_reply(
            self.hub.auth.sign_up(_field(body, "email"), _field(body, "password"))))

    async def _auth_sign_in(self, request: Any) -> Any:
        return await self._auth_call(request, lambda body: self._session_reply(
            self.hub.auth.sign_in(_field(body, "email"), _field(body, "password"))))

    async def _auth_sign_out(self, request: Any) -> Any:
        return await self._auth_call(request, lambda body: {
            "signedOut": self.hub.auth.sign_out(_field(body, "token"))})

    async def _auth_token(self, request: Any) -> Any:
        def token(body: dict[str, Any]) -> dict[str, Any]:
            jwt, expires = self.hub.mint(_field(body, "token"))
            return {"jwt": jwt, "expiresAt": expires}

        return await self._auth_call(request, token)


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValidationError(f"{name}: expected a string")
    return value


def _text(value: Any) -> str:
    return dumps(to_json(value))


def _json(data: Any, status: int = 200) -> Any:
    return web.Response(body=msgspec.json.encode(data), status=status,
                        content_type="application/json")


def _unauthenticated(message: str) -> Any:
    return web.HTTPUnauthorized(
        text=msgspec.json.encode({"code": "Unauthenticated", "message": message}).decode(),
        content_type="application/json")


def start(db: Database, package: Any, *, host: str, port: int, auth: Any, token_ttl: float,
          ping_interval: float, allowed_origins: tuple[str, ...], sign_up: bool) -> Server:
    """Serve `package`'s functions on `db` (see `livedb.serve`)."""
    if web is None:
        raise LiveDBError("livedb serve needs aiohttp: pip install 'livedb[serve]'")
    if not isinstance(db, Database):
        raise TypeError(f"serve: expected a livedb.Database, got {type(db).__name__}")
    found = package if isinstance(package, Package) else load(package)
    backend.attach(db)
    hub = Hub(db, found, token_ttl=token_ttl, ping_interval=ping_interval, sign_up=sign_up,
              auth=auth)
    server = Server(hub, host, port, allowed_origins)
    server.start()
    return server
