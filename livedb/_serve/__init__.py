"""`livedb serve`: Convex's clients (ConvexClient, ConvexReactClient, ConvexHttpClient)
against a livedb database, over Convex's WebSocket sync protocol and HTTP API.

Needs the optional `serve` extra (aiohttp): `pip install 'livedb[serve]'`. Importing
livedb does not import it; `serve()` does, on first call.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._database import Database
    from ..auth import PasswordAuth
    from .server import Server


def serve(db: Database, package: Any, *, host: str = "127.0.0.1", port: int = 3210,
          auth: PasswordAuth | None = None, token_ttl: float = 3600.0,
          allowed_origins: str | Iterable[str] = "*", sign_up: bool = True,
          ping_interval: float = 15.0) -> Server:
    """Serve `package`'s functions on `db` to Convex clients, from a background thread.

    It speaks Convex's WebSocket sync protocol and HTTP API, so the unmodified `convex`
    npm package (`ConvexClient`, `ConvexHttpClient`, React's `useQuery`,
    `useMutation`, `usePaginatedQuery`, optimistic updates) works against it, beside
    the application's own in-process use of `db`. `package` plays the part of a Convex
    project's `convex/` folder: every `@query`, `@mutation` and `@action` in its modules
    is served under its Convex path (`package/messages.py`'s `list` is
    `"messages:list"`, `package/chat/rooms.py`'s `get` is `"chat/rooms:get"`). Values
    map as Convex maps them: an `int` is a JS bigint, a `float` a number, `bytes` an
    ArrayBuffer, and documents show `_creationTime` in milliseconds. A client's
    `setAuth` token is a `PasswordAuth` session token. Needs the `serve` extra
    (aiohttp): `pip install 'livedb[serve]'`. `python -m livedb serve PACKAGE` does the
    same from a shell.

    Args:
        db: The open database to serve.
        package: A module, a dotted module name, or a directory.
        host: The address to listen on (default: this machine only).
        port: The port; 0 picks a free one (see `Server.port`).
        auth: The `PasswordAuth` behind the sign-in endpoints and session tokens
            (default: the one set up on `db`, else a new one).
        token_ttl: The lifetime in seconds (>= 10) of the JWTs `/api/auth/token` hands
            out for a session token (clients refresh them before they expire).
        allowed_origins: The browser origins allowed to call the server (CORS and
            WebSocket): `"*"` for any, an origin, or a list of origins.
        sign_up: False turns `/api/auth/sign_up` off.
        ping_interval: Seconds of silence after which a connection gets a `Ping`.

    Returns:
        The running `Server`: `.url`, `.host`, `.port`, `.close()`; a context manager.
        Closing it does not close the database.

    Raises:
        LiveDBError: aiohttp is missing, the package cannot be imported, or the port
            cannot be bound.
        ValueError: A bad `port`, `token_ttl` or `ping_interval`.
        TypeError: A bad `allowed_origins`.

    Examples:
        >>> import json, urllib.request
        >>> from pathlib import Path
        >>> import livedb
        >>> Path("chat").mkdir()
        >>> _ = Path("chat/messages.py").write_text(
        ...     "from livedb import query\\n\\n"
        ...     "@query\\n"
        ...     "def bodies(ctx):\\n"
        ...     "    return [m['body'] for m in ctx.db.query('messages').collect()]\\n")
        >>> db = livedb.Database()
        >>> _ = db.mutation(lambda ctx: ctx.db.insert("messages", {"body": "hello"}))
        >>> with livedb.serve(db, "chat", port=0) as server:
        ...     request = urllib.request.Request(
        ...         server.url + "/api/query", headers={"Content-Type": "application/json"},
        ...         data=json.dumps({"path": "messages:bodies", "args": {}}).encode())
        ...     json.load(urllib.request.urlopen(request))["value"]
        ['hello']
        >>> db.close()
    """
    origins = (allowed_origins,) if isinstance(allowed_origins, str) else tuple(
        allowed_origins)
    if not all(isinstance(o, str) for o in origins):
        raise TypeError("serve: allowed_origins is '*', an origin or a list of origins")
    if port.__class__ is not int or not 0 <= port <= 65535:
        raise ValueError(f"serve: port must be an int in 0..65535, got {port!r}")
    if not (isinstance(token_ttl, (int, float)) and token_ttl >= 10):
        raise ValueError(f"serve: token_ttl must be at least 10 seconds, got {token_ttl!r}")
    if not (isinstance(ping_interval, (int, float)) and ping_interval > 0):
        raise ValueError(f"serve: ping_interval must be > 0 seconds, got {ping_interval!r}")
    server = importlib.import_module("livedb._serve.server")
    running: Server = server.start(db, package, host=host, port=port, auth=auth,
                        token_ttl=float(token_ttl), ping_interval=float(ping_interval),
                        allowed_origins=origins, sign_up=sign_up)
    return running


__all__ = ["serve"]
