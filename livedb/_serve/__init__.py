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
    """Serve `package`'s functions on `db` to Convex clients; returns the running `Server`.

    `package` plays the part of a Convex project's `convex/` folder: a module, a dotted
    module name or a directory. Every `@query`, `@mutation` and `@action` in its modules is
    served under its Convex path (`package/messages.py`'s `list` is `"messages:list"`,
    `package/chat/rooms.py`'s `get` is `"chat/rooms:get"`). The server runs in a
    background thread beside the application's own use of `db`; `port=0` picks a free
    port (see `Server.port`, `Server.url`). `Server.close()` stops it (the database stays
    open).

    `auth`: the `PasswordAuth` behind the sign-in endpoints and session tokens (default:
    the one set up on `db`, else a new one). `token_ttl`: lifetime in seconds of the JWTs
    `/api/auth/token` hands out for a session token (clients refresh them before they
    expire). `allowed_origins`: the browser origins allowed to call the server (CORS and
    WebSocket), `"*"` for any. `sign_up=False` turns `/api/auth/sign_up` off.
    `ping_interval`: seconds of silence after which a connection gets a `Ping`.

    Raises `LiveDBError` when aiohttp is missing, the package cannot be imported, or the
    port cannot be bound.
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
