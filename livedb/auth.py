"""Identities (who calls a function: `ctx.auth.get_user_identity()`) and `PasswordAuth`."""

from __future__ import annotations

import hashlib
import hmac
import math
import numbers
import os
import secrets
import statistics
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._catalog import register_well_known_table
from ._database import Database, kernel_of, set_token_resolver
from ._errors import AuthError, SchemaError, ValidationError
from ._functions import mutation, query
from ._identity import UserIdentity
from ._ids import Id
from ._schema import TableDefinition, define_table
from ._validators import v
from ._values import type_name

# -- PasswordAuth ------------------------------------------------------------------------

USERS = "auth_users"
ACCOUNTS = "auth_accounts"
SESSIONS = "auth_sessions"
RATE_LIMITS = "auth_rate_limits"
AUTH_TABLE_NAMES = frozenset((USERS, ACCOUNTS, SESSIONS, RATE_LIMITS))
"""Tables every database knows, strict schema or not, with `auth_tables()`' definitions
unless its schema declares them."""

_WRONG = "invalid email or password"
_LOCKED = "too many failed sign-in attempts; try again later"
_BAD_TOKEN = "invalid or expired session token"
_MAX_PASSWORD = 1024
"""Longest password accepted at sign-up (characters); longer guesses are cut to it."""
_MAX_ATTEMPTS = 1000
"""Highest `max_failed_attempts` (a rate-limit record keeps one time per attempt)."""
_SWEEP = 2
"""Stale rate-limit records deleted by each sign-in attempt: more than it may create."""
_TIMING_SAMPLES = 5
_RATE_KEY_DOMAIN = b"livedb.auth rate limit\x00"
_BY_PARAMS = "by_password_params"


def auth_tables() -> dict[str, TableDefinition]:
    """The tables `PasswordAuth` keeps: users, accounts, sessions and sign-in rate limits.

    `auth_users` (`email`), `auth_accounts` (the password hash of each user),
    `auth_sessions` (token hashes and expiry times) and `auth_rate_limits`. Every
    database knows them, whatever its schema (they appear once first used). To declare
    them in a schema (e.g. to add optional profile fields to users), spread these
    definitions into it. Your functions may read `auth_users`; leave the other tables to
    `PasswordAuth`.

    An account's optional `failed_attempts` and `locked_until` are no longer written (the
    counts live in `auth_rate_limits`); they stay declared so that accounts written by
    earlier versions still validate.

    Returns:
        A dict of table name to `define_table(...)` definition.

    Examples:
        >>> from livedb import Database, define_schema, define_table, v
        >>> from livedb.auth import auth_tables
        >>> schema = define_schema({**auth_tables(),
        ...                         "messages": define_table({"body": v.string()})})
        >>> sorted(auth_tables())
        ['auth_accounts', 'auth_rate_limits', 'auth_sessions', 'auth_users']
    """
    password = v.object({"algorithm": v.literal("scrypt"), "n": v.int64(), "r": v.int64(),
                         "p": v.int64(), "salt": v.bytes(), "hash": v.bytes()})
    return {
        USERS: define_table({"email": v.string()}).index("by_email", ["email"]),
        ACCOUNTS: define_table({"user_id": v.id(USERS), "email": v.string(),
                                "password": password,
                                "failed_attempts": v.optional(v.int64()),
                                "locked_until": v.optional(v.float64())})
            .index("by_email", ["email"]).index("by_user", ["user_id"])
            .index(_BY_PARAMS, ["password.n", "password.r", "password.p"]),
        SESSIONS: define_table({"user_id": v.id(USERS), "token_hash": v.bytes(),
                                "expires_at": v.float64()})
            .index("by_token_hash", ["token_hash"]).index("by_user", ["user_id"])
            .index("by_expires_at", ["expires_at"]),
        RATE_LIMITS: define_table({"key": v.bytes(), "pending": v.array(v.float64()),
                                   "failures": v.array(v.float64()),
                                   "updated_at": v.float64()})
            .index("by_key", ["key"]).index("by_updated_at", ["updated_at"]),
    }


_NEEDED_INDEXES = {USERS: (), ACCOUNTS: ("by_email", "by_user", _BY_PARAMS),
                   SESSIONS: ("by_token_hash", "by_user", "by_expires_at"),
                   RATE_LIMITS: ("by_key", "by_updated_at")}


for _name in AUTH_TABLE_NAMES:
    register_well_known_table(_name, lambda name=_name: auth_tables()[name])  # type: ignore[misc]


@dataclass(frozen=True)
class Session:
    """A signed-in session, as `sign_up`, `sign_in` and `change_password` return it.

    Its `repr` hides the token, so logging a session does not leak it.

    Attributes:
        token: The secret to hand to the client (`db.client(token=...)`, a cookie, a
            Convex client's `setAuth`). livedb stores only its hash.
        user_id: The user's id in `auth_users`.
        expires_at: When the session expires, in seconds since the epoch on the
            database clock.
    """

    token: str
    user_id: Id
    expires_at: float = 0.0

    def __repr__(self) -> str:
        return f"Session(token=<hidden>, user_id={self.user_id!r}, expires_at={self.expires_at})"


def _utf8(text: str, what: str) -> bytes:
    """`text` in UTF-8; a `ValidationError` naming `what` if it holds a lone surrogate.

    The message shows the surrogate and its position only, never the (secret) text."""
    try:
        return text.encode()
    except UnicodeEncodeError as e:
        raise ValidationError(f"{what}: not valid Unicode: a lone surrogate "
                              f"U+{ord(text[e.start]):04X} at index {e.start}") from None


def token_hash(token: str) -> bytes:
    """The SHA-256 of a session token: what is stored of it."""
    return hashlib.sha256(_utf8(token, "token")).digest()


def _new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def _account(ctx: Any, email: str) -> dict[str, Any] | None:
    account: dict[str, Any] | None = (
        ctx.db.query(ACCOUNTS).with_index("by_email", lambda q: q.eq("email", email)).first())
    return account


def _rate_limit(ctx: Any, key: bytes) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        ctx.db.query(RATE_LIMITS).with_index("by_key", lambda q: q.eq("key", key)).first())
    return row


def _first_by_params(ctx: Any, range: Callable[[Any], Any]) -> dict[str, Any] | None:
    account: dict[str, Any] | None = ctx.db.query(ACCOUNTS).with_index(_BY_PARAMS, range).first()
    return account


def _stored_parameters(ctx: Any) -> list[list[int]]:
    """Every distinct (n, r, p) of the stored password hashes, by a skip scan of the
    accounts' `by_password_params` index: a few index seeks per distinct triple."""
    found: list[list[int]] = []
    doc = ctx.db.query(ACCOUNTS).with_index(_BY_PARAMS).first()
    while doc is not None:
        record = doc["password"]
        n, r, p = record["n"], record["r"], record["p"]
        found.append([n, r, p])
        doc = _next_by_params(ctx, n, r, p)
    return found


def _next_by_params(ctx: Any, n: int, r: int, p: int) -> dict[str, Any] | None:
    """The first account whose (n, r, p) comes after the given one in index order."""

    def same_r(q: Any) -> Any:
        return q.eq("password.n", n).eq("password.r", r).gt("password.p", p)

    def same_n(q: Any) -> Any:
        return q.eq("password.n", n).gt("password.r", r)

    def after(q: Any) -> Any:
        return q.gt("password.n", n)

    return (_first_by_params(ctx, same_r) or _first_by_params(ctx, same_n)
            or _first_by_params(ctx, after))


def _settle(ctx: Any, key: bytes, at: float, now: float, window: float, failed: bool) -> None:
    """End the password check reserved at `at` for `key`.

    A failure keeps its place (as a failure) until `window` seconds after `at`; a success
    clears the finished failures, while the checks of others still in flight keep theirs.
    """
    row = _rate_limit(ctx, key)
    if row is None:
        return
    since = now - window
    pending = list(row["pending"])
    if at in pending:
        pending.remove(at)
    pending = [t for t in pending if t > since]
    failures = [t for t in row["failures"] if t > since] if failed else []
    if failed and at > since:
        failures.append(at)
    if pending or failures:
        ctx.db.patch(row["_id"], {"pending": pending, "failures": failures,
                                  "updated_at": max(now, row["updated_at"])})
    else:
        ctx.db.delete(row["_id"])


@mutation
def _begin_attempt(ctx: Any, key: bytes, email: str | None, now: float, limit: int,
                   window: float) -> dict[str, Any]:
    """Reserve one of the `limit` password checks `key` may have in any `window` seconds.

    Checks in flight count like failed ones, and the reservation commits before the
    password is hashed: however many sign-ins run at once, at most `limit` checks run or
    fail per window. Returns `{"locked": True}` when none is left; else the account of
    `email` (None if there is none) and every (n, r, p) of the stored password hashes.
    Also deletes a few records whose every attempt is older than the window.
    """
    since = now - window
    row = _rate_limit(ctx, key)
    pending = [] if row is None else [t for t in row["pending"] if t > since]
    failures = [] if row is None else [t for t in row["failures"] if t > since]
    if len(pending) + len(failures) >= limit:
        return {"locked": True}
    pending.append(now)
    if row is None:
        ctx.db.insert(RATE_LIMITS, {"key": key, "pending": pending, "failures": failures,
                                    "updated_at": now})
    else:
        ctx.db.patch(row["_id"], {"pending": pending, "failures": failures,
                                  "updated_at": max(now, row["updated_at"])})
    for stale in (ctx.db.query(RATE_LIMITS)
                  .with_index("by_updated_at", lambda q: q.lte("updated_at", since))
                  .take(_SWEEP)):
        ctx.db.delete(stale["_id"])
    account = None if email is None else _account(ctx, email)
    return {"locked": False,
            "account": None if account is None else {"_id": account["_id"],
                                                     "password": account["password"]},
            "parameters": _stored_parameters(ctx)}


@mutation
def _record_failure(ctx: Any, key: bytes, at: float, now: float, window: float) -> None:
    _settle(ctx, key, at, now, window, True)


@query
def _find_session(ctx: Any, token_hash: bytes) -> dict[str, Any] | None:
    session = (ctx.db.query(SESSIONS)
               .with_index("by_token_hash", lambda q: q.eq("token_hash", token_hash)).first())
    if session is None:
        return None
    user = ctx.db.get(session["user_id"])
    if user is None:
        return None
    return {"user_id": session["user_id"], "email": user["email"],
            "token_hash": session["token_hash"], "expires_at": session["expires_at"]}


@mutation
def _create_account(ctx: Any, email: str, password: dict[str, Any], token_hash: bytes,
                    expires_at: float) -> Id | None:
    if _account(ctx, email) is not None:
        return None
    user_id: Id = ctx.db.insert(USERS, {"email": email})
    ctx.db.insert(ACCOUNTS, {"user_id": user_id, "email": email, "password": password})
    ctx.db.insert(SESSIONS, {"user_id": user_id, "token_hash": token_hash,
                             "expires_at": expires_at})
    return user_id


@mutation
def _open_session(ctx: Any, account_id: Id, checked_hash: bytes, key: bytes, at: float,
                  now: float, window: float, token_hash: bytes, expires_at: float,
                  password: dict[str, Any] | None, revoke: bool) -> Id | None:
    """Record a successful sign-in, unless the account was deleted or its password changed
    since it was checked (`checked_hash`): then None, and the check counts as failed."""
    account = ctx.db.get(account_id)
    if account is None or account["password"]["hash"] != checked_hash:
        _settle(ctx, key, at, now, window, True)
        return None
    _settle(ctx, key, at, now, window, False)
    user_id: Id = account["user_id"]
    if password is not None:
        ctx.db.patch(account_id, {"password": password})
    if revoke:
        for session in (ctx.db.query(SESSIONS)
                        .with_index("by_user", lambda q: q.eq("user_id", user_id)).collect()):
            ctx.db.delete(session["_id"])
    ctx.db.insert(SESSIONS, {"user_id": user_id, "token_hash": token_hash,
                             "expires_at": expires_at})
    return user_id


@mutation
def _close_session(ctx: Any, token_hash: bytes) -> bool:
    session = (ctx.db.query(SESSIONS)
               .with_index("by_token_hash", lambda q: q.eq("token_hash", token_hash)).first())
    if session is None:
        return False
    ctx.db.delete(session["_id"])
    return True


@mutation
def _close_expired(ctx: Any, now: float, limit: int) -> int:
    expired = (ctx.db.query(SESSIONS)
               .with_index("by_expires_at", lambda q: q.lte("expires_at", now)).take(limit))
    for session in expired:
        ctx.db.delete(session["_id"])
    return len(expired)


Params = tuple[int, int, int]


@dataclass(frozen=True)
class _Checked:
    """A password found right: for whom, against which hash, and its reservation."""

    account_id: Id
    checked_hash: bytes
    key: bytes
    at: float
    rehashed: dict[str, Any] | None


class PasswordAuth:
    """Email and password accounts with session tokens, kept in the database itself.

    `sign_up` and `sign_in` return a `Session` whose `token` stands for the user:
    `db.client(token=...)` (or `identity(token)`) turns it into a `UserIdentity` whose
    `subject` is the user's id in `auth_users`, and checks the session before each call.
    Sessions expire after `session_ttl` seconds; `sign_out` ends one at once.

    Passwords are stored only as salted scrypt hashes (memory-hard), session tokens only
    as SHA-256 hashes; secrets are compared in constant time. Wrong credentials raise
    `AuthError` with one message whether the email exists or not, after the same time.
    Within any `lockout_seconds`, at most `max_failed_attempts` password checks of one
    email are running or have failed (concurrent sign-ins included); further attempts
    raise the lock-out `AuthError` without checking the password. A successful sign-in
    clears the finished failures. The counts live in the database, so they survive a
    restart. Times come from the database clock. Its methods may be called from any
    thread; they block while hashing (a fraction of a second), so call them off a UI
    thread.

    Emails are trimmed and lower-cased. The tables are those of `auth_tables()`; every
    database knows them, so no schema change is needed.

    Args:
        db: The database to keep accounts and sessions in. The newest `PasswordAuth` of a
            database is the one `db.client(token=...)` uses.
        session_ttl: How long a session lasts, in seconds (default 30 days).
        max_failed_attempts: Password checks allowed per email within
            `lockout_seconds` (default 5).
        lockout_seconds: The window of the lock-out, in seconds (default 15 minutes).
        min_password_length: The shortest password `sign_up` and `change_password`
            accept (default 8 characters; at most 1024).
        scrypt_n: scrypt's cost parameter, a power of 2 (default 2**15).
        scrypt_r: scrypt's block size (default 8).
        scrypt_p: scrypt's parallelism (default 3). Stored hashes with other parameters
            keep working and are upgraded at the next sign-in.

    Raises:
        ValueError: A bad setting (the message names it).
        SchemaError: The schema declares an auth table without the indexes it needs.

    Examples:
        >>> from livedb import Database
        >>> from livedb.auth import PasswordAuth
        >>> db = Database()
        >>> auth = PasswordAuth(db)
        >>> session = auth.sign_up("ada@example.com", "correct horse")
        >>> with db.client(token=session.token) as client:
        ...     client.query(lambda ctx: ctx.auth.get_user_identity().email)
        'ada@example.com'
        >>> db.close()
    """

    def __init__(self, db: Database, *, session_ttl: float = 30 * 24 * 3600.0,
                 max_failed_attempts: int = 5, lockout_seconds: float = 900.0,
                 min_password_length: int = 8, scrypt_n: int = 2 ** 15, scrypt_r: int = 8,
                 scrypt_p: int = 3) -> None:
        """Set up password accounts on `db`, creating the auth tables on first use."""
        self._session_ttl = _seconds("session_ttl", session_ttl, positive=True)
        self._window = _seconds("lockout_seconds", lockout_seconds, positive=False)
        self._max_failed = _whole("max_failed_attempts", max_failed_attempts, 1, _MAX_ATTEMPTS)
        self._min_length = _whole("min_password_length", min_password_length, 1,
                                  _MAX_PASSWORD)
        n = _whole("scrypt_n", scrypt_n, 2, 2 ** 24)
        if n & (n - 1):
            raise ValueError(f"PasswordAuth: scrypt_n must be a power of 2, got {n}")
        self._params: Params = (n, _whole("scrypt_r", scrypt_r, 1, 1024),
                                _whole("scrypt_p", scrypt_p, 1, 1024))
        self._db = db
        self._costs: dict[Params, deque[float]] = {}
        self._costs_lock = threading.Lock()
        self._register_tables()
        self._dummy_salt = os.urandom(16)
        self._dummy_hash = self._timed_hash(b"not a password", self._dummy_salt, self._params,
                                            record=False)
        set_token_resolver(db, self._client_session)

    def _register_tables(self) -> None:
        catalog = kernel_of(self._db).catalog
        for name in auth_tables():
            info = catalog.for_read(name, "PasswordAuth")
            missing = [n for n in _NEEDED_INDEXES[name] if n not in info.positions]
            if missing:
                raise SchemaError(f"PasswordAuth: table {name!r} lacks the indexes "
                                  f"{missing}; declare it with livedb.auth.auth_tables()")

    # -- hashing ---------------------------------------------------------------------------

    def _timed_hash(self, secret: bytes, salt: bytes, params: Params, *,
                    record: bool = True) -> bytes:
        """scrypt of `secret`; with `record`, its duration joins the recent samples of
        `params` (the first hash of a size is slower: its memory is new to the process)."""
        n, r, p = params
        start = time.perf_counter()
        digest = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=32,
                                maxmem=256 * n * r * p + (1 << 20))
        elapsed = time.perf_counter() - start
        if not record:
            return digest
        with self._costs_lock:
            samples = self._costs.get(params)
            if samples is None:
                samples = self._costs[params] = deque(maxlen=_TIMING_SAMPLES)
            samples.append(elapsed)
        return digest

    def _cost(self, params: Params) -> float:
        """How long a hash with `params` takes here: the median of the recent ones, made
        up to three now if fewer ran (once per process and parameters)."""
        with self._costs_lock:
            samples = list(self._costs.get(params, ()))
        if len(samples) < 3:
            if not samples:
                self._timed_hash(b"not a password", self._dummy_salt, params, record=False)
            for _ in range(3 - len(samples)):
                self._timed_hash(b"not a password", self._dummy_salt, params)
            with self._costs_lock:
                samples = list(self._costs[params])
        return statistics.median(samples)

    def _password_record(self, secret: bytes) -> dict[str, Any]:
        n, r, p = self._params
        salt = os.urandom(16)
        return {"algorithm": "scrypt", "n": n, "r": r, "p": p, "salt": salt,
                "hash": self._timed_hash(secret, salt, self._params)}

    def _now(self) -> float:
        return kernel_of(self._db).catalog.now()

    def _new_password(self, password: Any) -> bytes:
        secret = _secret(password)
        if len(password) < self._min_length:
            raise ValidationError(f"password: at least {self._min_length} characters are "
                                  "required")
        if len(password) > _MAX_PASSWORD:
            raise ValidationError(f"password: at most {_MAX_PASSWORD} characters")
        return secret

    # -- public API ------------------------------------------------------------------------

    def sign_up(self, email: str, password: str) -> Session:
        """Create an account (and its user in `auth_users`) and sign it in.

        Args:
            email: The account's email address (trimmed and lower-cased).
            password: At least `min_password_length` characters.

        Returns:
            A new `Session` for the user.

        Raises:
            AuthError: The email already has an account.
            ValidationError: A malformed email or password (not a str, a lone surrogate, too
                short or longer than 1024 characters).

        Examples:
            >>> from livedb import Database
            >>> from livedb.auth import PasswordAuth
            >>> db = Database()
            >>> auth = PasswordAuth(db)
            >>> session = auth.sign_up("Ada@Example.com ", "correct horse")
            >>> db.query(lambda ctx: ctx.db.get(session.user_id)["email"])
            'ada@example.com'
            >>> db.close()
        """
        address = _normalize_email(email)
        if address is None:
            raise ValidationError(f"email: {email!r} is not an email address")
        record = self._password_record(self._new_password(password))
        token, token_hash = _new_token()
        expires_at = self._now() + self._session_ttl
        user_id = self._db.mutation(_create_account, {
            "email": address, "password": record, "token_hash": token_hash,
            "expires_at": expires_at})
        if user_id is None:
            raise AuthError("an account with this email already exists")
        return Session(token, Id(user_id), expires_at)

    def sign_in(self, email: str, password: str) -> Session:
        """Check the password and open a new session for the account.

        Args:
            email: The account's email address.
            password: Its password.

        Returns:
            A new `Session`; the account's other sessions stay open.

        Raises:
            AuthError: Wrong email or password (one message for both), or too many failed
                attempts for this email (the lock-out).
            ValidationError: `email` or `password` is not a str of valid Unicode.

        Examples:
            >>> from livedb import Database
            >>> from livedb.auth import PasswordAuth
            >>> db = Database()
            >>> auth = PasswordAuth(db)
            >>> user_id = auth.sign_up("ada@example.com", "correct horse").user_id
            >>> auth.sign_in("ada@example.com", "correct horse").user_id == user_id
            True
            >>> db.close()
        """
        checked = self._verify(email, password)
        return self._open(checked, checked.rehashed, revoke=False)

    def change_password(self, email: str, old_password: str, new_password: str) -> Session:
        """Set a new password; the old one must be right.

        Every session of the user is signed out, and a new one is returned.

        Args:
            email: The account's email address.
            old_password: Its current password.
            new_password: The new one, at least `min_password_length` characters.

        Returns:
            A new `Session` (the only one left).

        Raises:
            AuthError: Wrong email or old password, or the email is locked out.
            ValidationError: A malformed new password, or arguments that are not strs.

        Examples:
            >>> from livedb import Database
            >>> from livedb.auth import PasswordAuth
            >>> db = Database()
            >>> auth = PasswordAuth(db)
            >>> old = auth.sign_up("ada@example.com", "correct horse")
            >>> new = auth.change_password("ada@example.com", "correct horse", "battery staple")
            >>> auth.sign_out(old.token), auth.sign_out(new.token)
            (False, True)
            >>> db.close()
        """
        secret = self._new_password(new_password)
        checked = self._verify(email, old_password)
        return self._open(checked, self._password_record(secret), revoke=True)

    def sign_out(self, token: str) -> bool:
        """End the session of `token`: clients made from it are refused from their next call.

        Args:
            token: A session token.

        Returns:
            True if a session ended; False if there was none (signed out already, expired
            and deleted, or never issued).

        Raises:
            ValidationError: `token` is not valid Unicode.

        Examples:
            >>> from livedb import Database
            >>> from livedb.auth import PasswordAuth
            >>> db = Database()
            >>> auth = PasswordAuth(db)
            >>> session = auth.sign_up("ada@example.com", "correct horse")
            >>> auth.sign_out(session.token), auth.sign_out(session.token)
            (True, False)
            >>> db.close()
        """
        if not isinstance(token, str):
            return False
        return bool(self._db.mutation(_close_session, {"token_hash": token_hash(token)}))

    def identity(self, token: str) -> UserIdentity:
        """The identity a live session token stands for.

        Use it to check a token a request carries, then pass the identity as `identity=`;
        `db.client(token=...)` does this for you (and re-checks on every call).

        Args:
            token: A session token.

        Returns:
            A `UserIdentity` with `subject` the user's id (as a str), `issuer` `"livedb"`
            and `email` the account's email.

        Raises:
            AuthError: The token is not one of a live session (signed out, expired, or never
                issued).
            ValidationError: `token` is not valid Unicode.

        Examples:
            >>> from livedb import Database
            >>> from livedb.auth import PasswordAuth
            >>> db = Database()
            >>> auth = PasswordAuth(db)
            >>> session = auth.sign_up("ada@example.com", "correct horse")
            >>> identity = auth.identity(session.token)
            >>> identity.subject == session.user_id, identity.email
            (True, 'ada@example.com')
            >>> db.close()
        """
        session = self._live_session(token)
        return UserIdentity(subject=str(session["user_id"]), issuer="livedb",
                            email=session["email"])

    def delete_expired_sessions(self) -> int:
        """Delete every expired session from `auth_sessions`.

        Expired sessions are refused anyway; this only reclaims their space (call it now
        and then, e.g. from a daily cron or a script).

        Returns:
            How many sessions were deleted.

        Examples:
            >>> from livedb import Database
            >>> from livedb.auth import PasswordAuth
            >>> now = [1000.0]
            >>> db = Database(clock=lambda: now[0])
            >>> auth = PasswordAuth(db, session_ttl=60)
            >>> _ = auth.sign_up("ada@example.com", "correct horse")
            >>> now[0] += 61
            >>> auth.delete_expired_sessions()
            1
            >>> db.close()
        """
        now = self._now()
        total = 0
        while True:
            count: int = self._db.mutation(_close_expired, {"now": now, "limit": 1000})
            total += count
            if count < 1000:
                return total

    # -- internals -------------------------------------------------------------------------

    def _live_session(self, token: Any) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise AuthError(_BAD_TOKEN)
        return self._session_of(token_hash(token))

    def _session_of(self, token_hash: bytes) -> dict[str, Any]:
        session: dict[str, Any] | None = self._db.query(_find_session,
                                                        {"token_hash": token_hash})
        if (session is None or not hmac.compare_digest(session["token_hash"], token_hash)
                or session["expires_at"] <= self._now()):
            raise AuthError(_BAD_TOKEN)
        return session

    def _client_session(self, token: Any) -> tuple[UserIdentity, Callable[[], None]]:
        """For `db.client(token=...)`: the token's identity, and a check the client runs
        before each call, raising `AuthError` once the session is signed out, revoked or
        expired (one indexed lookup and a look at the database clock)."""
        identity = self.identity(token)
        digest = token_hash(token)

        def check() -> None:
            self._session_of(digest)

        return identity, check

    def _verify(self, email: Any, password: Any) -> _Checked:
        """Check `password` for `email` within the rate limit; raise `AuthError` if locked
        or wrong. Known and unknown emails take the same path and the same time."""
        address, key = _rate_key(email)
        secret = _secret(password)
        at = self._now()
        begun = self._db.mutation(_begin_attempt, {
            "key": key, "email": address, "now": at, "limit": self._max_failed,
            "window": self._window})
        if begun["locked"]:
            raise AuthError(_LOCKED)
        used = {(n, r, p) for n, r, p in begun["parameters"]} | {self._params}
        heaviest = max(used, key=lambda t: (t[0] * t[1] * t[2], t[0] * t[1], t))
        duration = self._cost(heaviest) if len(used) > 1 else 0.0
        start = time.perf_counter()
        account = begun["account"]
        stored = None if account is None else account["password"]
        if stored is None:
            attempt = self._timed_hash(secret, self._dummy_salt, heaviest)
            hmac.compare_digest(attempt, self._dummy_hash)
            right = False
            params = heaviest
        else:
            params = (stored["n"], stored["r"], stored["p"])
            attempt = self._timed_hash(secret, stored["salt"], params)
            right = hmac.compare_digest(attempt, stored["hash"])
            if params != heaviest:
                left = duration - (time.perf_counter() - start)
                if left > 0:
                    time.sleep(left)
        if not right or account is None or stored is None:
            self._db.mutation(_record_failure, {"key": key, "at": at, "now": self._now(),
                                                "window": self._window})
            raise AuthError(_WRONG)
        rehashed = None if params == self._params else self._password_record(secret)
        return _Checked(account["_id"], stored["hash"], key, at, rehashed)

    def _open(self, checked: _Checked, password: dict[str, Any] | None, revoke: bool) -> Session:
        token, token_hash = _new_token()
        now = self._now()
        expires_at = now + self._session_ttl
        user_id = self._db.mutation(_open_session, {
            "account_id": checked.account_id, "checked_hash": checked.checked_hash,
            "key": checked.key, "at": checked.at, "now": now, "window": self._window,
            "token_hash": token_hash, "expires_at": expires_at, "password": password,
            "revoke": revoke})
        if user_id is None:
            raise AuthError(_WRONG)
        return Session(token, Id(user_id), expires_at)


def _seconds(name: str, value: Any, *, positive: bool) -> float:
    """A finite number of seconds (> 0, or >= 0), else a `ValueError` naming `name`."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0 or (positive and value == 0)):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"PasswordAuth: {name} must be a finite number of seconds {bound}, "
                         f"got {value!r}")
    return float(value)


def _whole(name: str, value: Any, low: int, high: int) -> int:
    """An int in [low, high], else a `ValueError` naming `name`."""
    if value.__class__ is not int or not low <= value <= high:
        raise ValueError(f"PasswordAuth: {name} must be an int from {low} to {high}, got "
                         f"{value!r}")
    return value


def _secret(password: Any) -> bytes:
    """What is hashed of a password: its first 1024 characters, NFKC-normalized, UTF-8."""
    if not isinstance(password, str):
        raise ValidationError(f"password: expected a str, got {type_name(password)}")
    _utf8(password, "password")
    return unicodedata.normalize("NFKC", password[:_MAX_PASSWORD]).encode()


def _normalize_email(email: Any) -> str | None:
    """`email` trimmed and lower-cased, or None if it does not look like an address."""
    if not isinstance(email, str):
        raise ValidationError(f"email: expected a str, got {type_name(email)}")
    _utf8(email, "email")
    address = email.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > 254 or any(c.isspace()
                                                                       for c in address):
        return None
    return address


def _rate_key(email: Any) -> tuple[str | None, bytes]:
    """The normalized address (None if malformed) and the key of its sign-in rate limit: a
    hash, so that an unknown email is never stored in clear."""
    address = _normalize_email(email)
    basis = address if address is not None else email.strip().lower()
    return address, hashlib.sha256(_RATE_KEY_DOMAIN + basis.encode()).digest()
