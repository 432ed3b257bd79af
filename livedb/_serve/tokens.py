"""Auth tokens for Convex clients: `PasswordAuth` sessions wrapped in short HS256 JWTs.

The Convex client decodes its token to schedule a refresh (`iat`, `exp`) and logs an
error for a token that is not a JWT. So a session token (long-lived, the app keeps it)
is exchanged for a short JWT: `{"iss": "livedb", "sub": user id, "sid": session id,
"iat", "exp", "jti"}`, signed with HMAC-SHA256 under a key derived from the session's
stored token hash. Only the server (which stores that hash) and a holder of the session
token can make one; it stops working when the session ends (signed out, expired), and
needs no secret kept anywhere else, so JWTs stay valid across a server restart.
A client may also pass the session token itself; it works, but the client cannot
schedule refreshes for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from .._database import Database
from .._errors import AuthError
from .._identity import UserIdentity
from . import backend

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
_BAD = "invalid or expired session token"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(token_hash: bytes) -> bytes:
    return hashlib.sha256(b"livedb serve jwt\0" + token_hash).digest()


def mint(db: Database, session_token: Any, ttl: float) -> tuple[str, int]:
    """A JWT for a live session token, valid `ttl` seconds: `(jwt, exp)`.

    Raises `AuthError` if the session token is not a live session's."""
    if not isinstance(session_token, str) or not session_token:
        raise AuthError(_BAD)
    session_id = backend.session_of_token(db, session_token)
    found = None if session_id is None else backend.session_identity(db, session_id)
    if found is None:
        raise AuthError(_BAD)
    identity, token_hash = found
    issued = int(time.time())
    expires = issued + max(3, int(ttl))
    claims = {"iss": "livedb", "sub": identity.subject, "sid": session_id, "iat": issued,
              "exp": expires, "jti": secrets.token_urlsafe(8)}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_HEADER}.{payload}"
    signature = hmac.new(_key(token_hash), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}", expires


def identify(db: Database, token: Any, auth: Callable[[], Any]) -> UserIdentity:
    """The identity a client's token stands for: a JWT from `mint`, or a session token of
    the `PasswordAuth` that `auth()` returns.

    Raises `AuthError` (saying why) if it stands for none."""
    if not isinstance(token, str) or not token:
        raise AuthError(_BAD)
    if token.count(".") != 2:
        identity: UserIdentity = auth().identity(token)
        return identity
    header, payload, signature = token.split(".")
    try:
        claims = json.loads(_unb64url(payload))
        algorithm = json.loads(_unb64url(header)).get("alg")
        mac = _unb64url(signature)
    except (ValueError, AttributeError):
        raise AuthError("the token is not a well-formed JWT") from None
    if algorithm != "HS256" or not isinstance(claims, dict):
        raise AuthError("the token is not a livedb JWT (HS256)")
    session_id, expires = claims.get("sid"), claims.get("exp")
    if not isinstance(session_id, str) or not isinstance(expires, (int, float)):
        raise AuthError("the token is not a livedb JWT (no sid or exp)")
    if expires <= time.time():
        raise AuthError("the token has expired")
    found = backend.session_identity(db, session_id)
    if found is None:
        raise AuthError("the token's session has ended (signed out or expired)")
    identity, token_hash = found
    expected = hmac.new(_key(token_hash), f"{header}.{payload}".encode(),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AuthError("the token's signature does not match")
    return identity
