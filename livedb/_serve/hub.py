"""What every connection of one server shares: the database, the served functions, the
worker threads, argument and error mapping, and encoded results."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from .._database import Database
from .._errors import AppError, AuthError, LiveDBError, ValidationError
from .._identity import UserIdentity
from . import backend, tokens
from .registry import Entry, Package
from .wire import WireError, encoded, from_json, to_json

log = logging.getLogger("livedb.serve")

PAGINATION_ARG = "paginationOpts"
"""Convex's pagination argument; a served query receives it as `pagination_opts`."""


class FunctionError(LiveDBError):
    """A call that cannot run: an unknown path, a function of another kind, bad args."""


@dataclass(frozen=True)
class Failure:
    """A function failure as the protocol reports it."""

    message: str
    data: Any = None
    """The wire-encoded `errorData` (an `AppError`'s data), or `None` when there is none."""
    has_data: bool = False


def failure(error: BaseException) -> Failure:
    """How a client sees `error`: `AppError(data)` becomes a `ConvexError` with `.data`."""
    if isinstance(error, AppError):
        try:
            data = to_json(error.data)
        except WireError as e:
            return Failure(f"AppError: its data cannot be sent to a Convex client ({e})")
        text = error.data if isinstance(error.data, str) else _short_json(data)
        return Failure(f"ConvexError: {text}", data, True)
    if isinstance(error, FunctionError):
        return Failure(str(error))
    return Failure(f"{type(error).__name__}: {error}")


def _short_json(data: Any) -> str:
    text = json.dumps(data)
    return text if len(text) <= 500 else text[:497] + "..."


def pagination_opts(opts: Any, end_cursor: str | None = None) -> dict[str, Any]:
    """Convex's `paginationOpts` (`numItems`, `cursor`, `endCursor`, `id`, ...) as livedb's
    `pagination_opts` (`num_items`, `cursor`, `end_cursor`). `end_cursor` (a journal) is
    used when the options carry none. Raises `FunctionError` for malformed options."""
    if not isinstance(opts, dict):
        raise FunctionError(f"{PAGINATION_ARG}: expected an object, got {opts!r}")
    count: Any = opts.get("numItems")
    if (count.__class__ not in (int, float) or not math.isfinite(count) or count != int(count)
            or count < 1):
        raise FunctionError(f"{PAGINATION_ARG}.numItems: expected a whole number >= 1, got "
                            f"{count!r}")
    cursor = opts.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise FunctionError(f"{PAGINATION_ARG}.cursor: expected a string or null")
    end = opts.get("endCursor")
    if end is not None and not isinstance(end, str):
        raise FunctionError(f"{PAGINATION_ARG}.endCursor: expected a string or null")
    out: dict[str, Any] = {"num_items": int(count), "cursor": cursor}
    end = end if end is not None else end_cursor
    if end is not None:
        out["end_cursor"] = end
    return out


class Hub:
    """One server's shared state. Thread-safe where noted; otherwise used on its loop."""

    def __init__(self, db: Database, package: Package, *, token_ttl: float,
                 ping_interval: float, sign_up: bool, auth: Any = None) -> None:
        self.db = db
        self.package = package
        self.token_ttl = token_ttl
        self.ping_interval = ping_interval
        self.sign_up = sign_up
        self._auth = auth
        self._auth_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="livedb-serve")
        """Queries, mutations and query-set changes (short, database-bound work)."""
        self.actions = ThreadPoolExecutor(max_workers=16, thread_name_prefix="livedb-action")
        """Actions, which may wait on the network for long."""
        self._encoded: dict[int, tuple[Any, Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop (set once it runs)."""
        self._woken: list[Callable[[], None]] = []
        self._wake_lock = threading.Lock()
        self._wake_pending = False

    def close(self) -> None:
        """Stop the worker threads (running calls finish)."""
        self.pool.shutdown(wait=True)
        self.actions.shutdown(wait=True)

    def wake(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop, from any thread. The wake-ups of one commit (one
        per connection whose results changed) cross to the loop in one hop, not one each."""
        with self._wake_lock:
            self._woken.append(callback)
            if self._wake_pending:
                return
            self._wake_pending = True
        loop = self.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._set_woken)
        except RuntimeError:
            pass

    def _set_woken(self) -> None:
        with self._wake_lock:
            woken, self._woken = self._woken, []
            self._wake_pending = False
        for callback in woken:
            try:
                callback()
            except Exception:
                log.exception("livedb serve: a connection failed to update")

    # -- calls ---------------------------------------------------------------------------

    def find(self, path: Any, kind: str) -> Entry:
        """The served function at `path` of this kind; `FunctionError` otherwise."""
        entry = self.package.find(path)
        if entry is None:
            raise FunctionError(f"Could not find public function for '{path}'")
        if entry.kind != kind:
            raise FunctionError(f"'{path}' is a {entry.kind}, not a {kind}")
        return entry

    @staticmethod
    def args(raw: Any, wrapped: bool = True) -> dict[str, Any]:
        """Decode a call's args: `[obj]` on the sync protocol (or `obj` when not `wrapped`).

        Convex's `paginationOpts` becomes livedb's `pagination_opts`."""
        if wrapped:
            if not isinstance(raw, list) or len(raw) != 1:
                raise FunctionError("args: expected a list holding one object")
            raw = raw[0]
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise FunctionError(f"args: expected an object, got {type(raw).__name__}")
        try:
            args: dict[str, Any] = from_json(raw)
        except WireError as e:
            raise FunctionError(f"args: {e}") from None
        if PAGINATION_ARG in args:
            args["pagination_opts"] = pagination_opts(args.pop(PAGINATION_ARG))
        return args

    @property
    def auth(self) -> Any:
        """The `PasswordAuth` behind sign-in and session tokens, set up on first use."""
        with self._auth_lock:
            if self._auth is None:
                self._auth = backend.password_auth(self.db)
            return self._auth

    def identify(self, token: Any) -> UserIdentity:
        """The identity of a client token (a livedb JWT or a session token); `AuthError`."""
        return tokens.identify(self.db, token, lambda: self.auth)

    def mint(self, session_token: Any) -> tuple[str, int]:
        """A short JWT for a session token (see tokens.mint); `AuthError`."""
        return tokens.mint(self.db, session_token, self.token_ttl)

    # -- results -------------------------------------------------------------------------

    def encode_result(self, token: tuple[Any, ...], value: Any) -> msgspec.Raw:
        """A live query's result encoded once for every connection showing it (`token`
        identifies the result). Raises `WireError` if the client cannot accept it."""
        key = id(token[0])
        cached = self._encoded.get(key)
        if cached is not None and cached[0] == token:
            outcome = cached[1]
        else:
            try:
                outcome = encoded(value)
            except WireError as e:
                outcome = e
            if len(self._encoded) >= 4096:
                for stale in list(self._encoded)[:1024]:
                    del self._encoded[stale]
            self._encoded[key] = (token, outcome)
        if isinstance(outcome, WireError):
            raise outcome
        raw: msgspec.Raw = outcome
        return raw

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Submit `fn(*args)` to the short-work pool (returns a concurrent Future)."""
        return self.pool.submit(fn, *args)


__all__ = ["AuthError", "Failure", "FunctionError", "Hub", "ValidationError", "failure",
           "pagination_opts"]
