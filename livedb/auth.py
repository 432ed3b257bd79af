"""Identities (who calls a function: `ctx.auth.get_user_identity()`) and `PasswordAuth`."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AuthError, SchemaError, ValidationError
from .functions import mutation, query
from .ids import Id
from .schema import TableDefinition, TableInfo, define_table
from .validators import v

if TYPE_CHECKING:
    from .database import Database


@dataclass(frozen=True)
class UserIdentity:
    """An authenticated caller. `token_identifier` defaults to ``"issuer|subject"``."""

    subject: str
    issuer: str = "livedb"
    token_identifier: str = ""
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    nickname: str | None = None
    preferred_username: str | None = None
    profile_url: str | None = None
    picture_url: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    gender: str | None = None
    birthday: str | None = None
    timezone: str | None = None
    language: str | None = None
    phone_number: str | None = None
    phone_number_verified: bool | None = None
    address: str | None = None
    updated_at: str | None = None
    custom_claims: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise TypeError(f"UserIdentity.subject must be a non-empty str, got "
                            f"{self.subject!r}")
        if not isinstance(self.issuer, str) or not self.issuer:
            raise TypeError(f"UserIdentity.issuer must be a non-empty str, got {self.issuer!r}")
        if not self.token_identifier:
            object.__setattr__(self, "token_identifier", f"{self.issuer}|{self.subject}")
        elif not isinstance(self.token_identifier, str):
            raise TypeError("UserIdentity.token_identifier must be a str")


# -- PasswordAuth ------------------------------------------------------------------------

USERS = "auth_users"
ACCOUNTS = "auth_accounts"
SESSIONS = "auth_sessions"
AUTH_TABLE_NAMES = frozenset((USERS, ACCOUNTS, SESSIONS))
"""Tables every database knows, strict schema or not, with `auth_tables()`' definitions
unless its schema declares them."""

_WRONG = "invalid email or password"
_LOCKED = "too many failed sign-in attempts; try again later"
_BAD_TOKEN = "invalid or expired session token"
_MAX_UNKNOWN = 10_000
"""How many unknown emails' failed attempts are remembered (oldest forgotten first)."""


def auth_tables() -> dict[str, TableDefinition]:
    """The tables `PasswordAuth` keeps: users, accounts and sessions.

    Every database knows them, whatever its schema (they appear once first used). To
    declare them in a schema (e.g. to add optional profile fields to users), spread these
    definitions into it: `define_schema({**auth_tables(), "messages": ...})`.
    """
    password = v.object({"algorithm": v.literal("scrypt"), "n": v.int64(), "r": v.int64(),
                         "p": v.int64(), "salt": v.bytes(), "hash": v.bytes()})
    return {
        USERS: define_table({"email": v.string()}).index("by_email", ["email"]),
        ACCOUNTS: define_table({"user_id": v.id(USERS), "email": v.string(),
                                "password": password, "failed_attempts": v.int64(),
                                "locked_until": v.float64()})
            .index("by_email", ["email"]).index("by_user", ["user_id"]),
        SESSIONS: define_table({"user_id": v.id(USERS), "token_hash": v.bytes(),
                                "expires_at": v.float64()})
            .index("by_token_hash", ["token_hash"]).index("by_user", ["user_id"])
            .index("by_expires_at", ["expires_at"]),
    }


_NEEDED_INDEXES = {USERS: (), ACCOUNTS: ("by_email", "by_user"),
                   SESSIONS: ("by_token_hash", "by_user", "by_expires_at")}


@dataclass(frozen=True)
class Session:
    """A signed-in session: the token to hand to the client, and whose it is."""

    token: str
    user_id: Id
    expires_at: float = 0.0

    def __repr__(self) -> str:
        return f"Session(token=<hidden>, user_id={self.user_id!r}, expires_at={self.expires_at})"


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, _token_hash(token)


def _account(ctx: Any, email: str) -> dict | None:
    return (ctx.db.query(ACCOUNTS).with_index("by_email", lambda q: q.eq("email", email))
            .first())


@query
def _find_account(ctx: Any, email: str) -> dict | None:
    account = _account(ctx, email)
    if account is None:
        return None
    return {"_id": account["_id"], "password": account["password"],
            "locked_until": account["locked_until"]}


@query
def _find_session(ctx: Any, token_hash: bytes) -> dict | None:
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
def _create_account(ctx: Any, email: str, password: dict, token_hash: bytes,
                    expires_at: float) -> Id | None:
    if _account(ctx, email) is not None:
        return None
    user_id = ctx.db.insert(USERS, {"email": email})
    ctx.db.insert(ACCOUNTS, {"user_id": user_id, "email": email, "password": password,
                             "failed_attempts": 0, "locked_until": 0.0})
    ctx.db.insert(SESSIONS, {"user_id": user_id, "token_hash": token_hash,
                             "expires_at": expires_at})
    return user_id


@mutation
def _record_failure(ctx: Any, account_id: Id, now: float, limit: int, lockout: float) -> None:
    account = ctx.db.get(account_id)
    if account is None:
        return
    failed = account["failed_attempts"] + 1
    if failed >= limit:
        ctx.db.patch(account_id, {"failed_attempts": 0, "locked_until": now + lockout})
    else:
        ctx.db.patch(account_id, {"failed_attempts": failed})


@mutation
def _open_session(ctx: Any, account_id: Id, now: float, token_hash: bytes, expires_at: float,
                  password: dict | None, revoke: bool) -> Id | None:
    """Record a successful sign-in; None if the account was locked or deleted meanwhile."""
    account = ctx.db.get(account_id)
    if account is None or account["locked_until"] > now:
        return None
    user_id = account["user_id"]
    fields: dict[str, Any] = {"failed_attempts": 0}
    if password is not None:
        fields["password"] = password
    ctx.db.patch(account_id, fields)
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


class PasswordAuth:
    """Email and password accounts with session tokens, kept in the database itself.

    Passwords are stored only as salted scrypt hashes (memory-hard), session tokens only as
    SHA-256 hashes; secrets are compared in constant time. Wrong credentials raise
    `AuthError` with one message whether the email exists or not, and after
    `max_failed_attempts` failures in a row an email is locked for `lockout_seconds` (the
    same for unknown emails, so a lockout does not reveal that an account exists).
    Times come from the database clock. Installs itself as `db.client(token=...)`'s resolver.
    """

    def __init__(self, db: Database, *, session_ttl: float = 30 * 24 * 3600.0,
                 max_failed_attempts: int = 5, lockout_seconds: float = 900.0,
                 min_password_length: int = 8, scrypt_n: int = 2 ** 15, scrypt_r: int = 8,
                 scrypt_p: int = 3) -> None:
        if not (isinstance(session_ttl, (int, float)) and session_ttl > 0):
            raise ValueError(f"PasswordAuth: session_ttl must be > 0 seconds, got "
                             f"{session_ttl!r}")
        if max_failed_attempts.__class__ is not int or max_failed_attempts < 1:
            raise ValueError("PasswordAuth: max_failed_attempts must be an int >= 1")
        if not (isinstance(lockout_seconds, (int, float)) and lockout_seconds >= 0):
            raise ValueError("PasswordAuth: lockout_seconds must be >= 0")
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_r < 1 or scrypt_p < 1:
            raise ValueError("PasswordAuth: scrypt_n must be a power of 2, scrypt_r and "
                             "scrypt_p >= 1")
        self._db = db
        self._session_ttl = float(session_ttl)
        self._max_failed = max_failed_attempts
        self._lockout = float(lockout_seconds)
        self._min_length = min_password_length
        self._params = (scrypt_n, scrypt_r, scrypt_p)
        self._unknown: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._unknown_lock = threading.Lock()
        self._register_tables()
        self._dummy_salt = os.urandom(16)
        self._dummy_hash = self._hash("not a password", self._dummy_salt, *self._params)
        db._token_identity = self.identity  # type: ignore[attr-defined]

    def _register_tables(self) -> None:
        tables = self._db._tables
        for name, definition in auth_tables().items():
            info = tables.get(name)
            if info is None:
                tables.setdefault(name, TableInfo(name, definition, True))
                continue
            missing = [n for n in _NEEDED_INDEXES[name] if n not in info.positions]
            if missing:
                raise SchemaError(f"PasswordAuth: table {name!r} lacks the indexes "
                                  f"{missing}; declare it with livedb.auth.auth_tables()")

    # -- hashing ---------------------------------------------------------------------------

    @staticmethod
    def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        secret = unicodedata.normalize("NFKC", password).encode()
        return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=32,
                              maxmem=256 * n * r * p + (1 << 20))

    def _password_record(self, password: str) -> dict:
        n, r, p = self._params
        salt = os.urandom(16)
        return {"algorithm": "scrypt", "n": n, "r": r, "p": p, "salt": salt,
                "hash": self._hash(password, salt, n, r, p)}

    def _now(self) -> float:
        return float(self._db._clock())

    def _check_new_password(self, password: Any) -> None:
        if not isinstance(password, str):
            raise ValidationError(f"password: expected a str, got {type(password).__name__}")
        if len(password) < self._min_length:
            raise ValidationError(f"password: at least {self._min_length} characters are "
                                  "required")
        if len(password) > 1024:
            raise ValidationError("password: at most 1024 characters")

    # -- public API ------------------------------------------------------------------------

    def sign_up(self, email: str, password: str) -> Session:
        """Create an account (and its user) and sign it in.

        Raises `AuthError` if the email already has an account, `ValidationError` for a
        malformed email or a password shorter than `min_password_length`."""
        address = _normalize_email(email)
        if address is None:
            raise ValidationError(f"email: {email!r} is not an email address")
        self._check_new_password(password)
        record = self._password_record(password)
        token, token_hash = _new_token()
        expires_at = self._now() + self._session_ttl
        user_id = self._db.mutation(_create_account, {
            "email": address, "password": record, "token_hash": token_hash,
            "expires_at": expires_at})
        if user_id is None:
            raise AuthError("an account with this email already exists")
        return Session(token, Id(user_id), expires_at)

    def sign_in(self, email: str, password: str) -> Session:
        """A new session for the account, if the password is right (else `AuthError`)."""
        account_id, now, rehashed = self._verify(email, password)
        return self._open(account_id, now, rehashed, revoke=False)

    def change_password(self, email: str, old_password: str, new_password: str) -> Session:
        """Set a new password (the old one must be right); every other session of the
        user is signed out and a new session is returned."""
        self._check_new_password(new_password)
        account_id, now, _rehashed = self._verify(email, old_password)
        return self._open(account_id, now, self._password_record(new_password), revoke=True)

    def sign_out(self, token: str) -> bool:
        """End the session of `token`; False if there was none."""
        if not isinstance(token, str):
            return False
        return bool(self._db.mutation(_close_session, {"token_hash": _token_hash(token)}))

    def identity(self, token: str) -> UserIdentity:
        """The identity a live session token stands for; `AuthError` if it is not one."""
        if not isinstance(token, str) or not token:
            raise AuthError(_BAD_TOKEN)
        token_hash = _token_hash(token)
        session = self._db.query(_find_session, {"token_hash": token_hash})
        if session is None:
            raise AuthError(_BAD_TOKEN)
        if (not hmac.compare_digest(session["token_hash"], token_hash)
                or session["expires_at"] <= self._now()):
            raise AuthError(_BAD_TOKEN)
        user_id = str(session["user_id"])
        return UserIdentity(subject=user_id, issuer="livedb", email=session["email"])

    def delete_expired_sessions(self) -> int:
        """Delete every expired session (they are refused anyway); returns how many."""
        now = self._now()
        total = 0
        while True:
            count = self._db.mutation(_close_expired, {"now": now, "limit": 1000})
            total += count
            if count < 1000:
                return total

    # -- internals -------------------------------------------------------------------------

    def _verify(self, email: Any, password: Any) -> tuple[Id, float, dict | None]:
        """The account id, the time and (if the hash parameters changed since) a new
        password record, if `password` is right; else record the failure and raise."""
        if not isinstance(email, str) or not isinstance(password, str):
            raise ValidationError("sign-in: email and password must be str")
        now = self._now()
        address = _normalize_email(email)
        account = None if address is None else self._db.query(_find_account,
                                                              {"email": address})
        if account is None:
            key = address or email
            self._check_unknown_lock(key, now)
            attempt = self._hash(password[:1024], self._dummy_salt, *self._params)
            hmac.compare_digest(attempt, self._dummy_hash)
            self._unknown_failed(key, now)
            raise AuthError(_WRONG)
        if account["locked_until"] > now:
            raise AuthError(_LOCKED)
        stored = account["password"]
        attempt = self._hash(password[:1024], stored["salt"], stored["n"], stored["r"],
                             stored["p"])
        if not hmac.compare_digest(attempt, stored["hash"]):
            self._db.mutation(_record_failure, {"account_id": account["_id"], "now": now,
                                                "limit": self._max_failed,
                                                "lockout": self._lockout})
            raise AuthError(_WRONG)
        rehashed = None
        if (stored["n"], stored["r"], stored["p"]) != self._params:
            rehashed = self._password_record(password)
        return account["_id"], now, rehashed

    def _open(self, account_id: Id, now: float, password: dict | None, revoke: bool) -> Session:
        token, token_hash = _new_token()
        expires_at = now + self._session_ttl
        user_id = self._db.mutation(_open_session, {
            "account_id": account_id, "now": now, "token_hash": token_hash,
            "expires_at": expires_at, "password": password, "revoke": revoke})
        if user_id is None:
            raise AuthError(_LOCKED)
        return Session(token, Id(user_id), expires_at)

    def _check_unknown_lock(self, key: str, now: float) -> None:
        with self._unknown_lock:
            found = self._unknown.get(key)
        if found is not None and found[1] > now:
            raise AuthError(_LOCKED)

    def _unknown_failed(self, key: str, now: float) -> None:
        """Count failures for emails without an account exactly as for accounts."""
        with self._unknown_lock:
            failed, locked_until = self._unknown.pop(key, (0, 0.0))
            failed += 1
            if failed >= self._max_failed:
                failed, locked_until = 0, now + self._lockout
            self._unknown[key] = (failed, locked_until)
            while len(self._unknown) > _MAX_UNKNOWN:
                self._unknown.popitem(last=False)


def _normalize_email(email: Any) -> str | None:
    """`email` trimmed and lower-cased, or None if it does not look like an address."""
    if not isinstance(email, str):
        raise ValidationError(f"email: expected a str, got {type(email).__name__}")
    address = email.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > 254 or any(c.isspace()
                                                                       for c in address):
        return None
    return address
