"""The exception hierarchy: every error livedb raises on bad input is a `LiveDBError`."""

from __future__ import annotations

from typing import Any


class LiveDBError(Exception):
    """Base class of every livedb error."""


class ValidationError(LiveDBError):
    """A value, argument, id, query or cursor did not fit what was expected."""


class SchemaError(LiveDBError):
    """A schema is malformed, or stored data does not match the schema given."""


class DocumentNotFoundError(LiveDBError):
    """A patch, replace or delete named a document that does not exist."""


class ConflictError(LiveDBError):
    """A mutation kept conflicting with concurrent commits until its retries ran out."""


class AppError(LiveDBError):
    """Raised by a handler to send `data` (any storable value) back to its caller."""

    def __init__(self, data: Any = None) -> None:
        super().__init__(data)
        self.data = data

    def __repr__(self) -> str:
        return f"AppError({self.data!r})"


class AuthError(LiveDBError):
    """Credentials or a session token were not accepted."""


class DatabaseLockedError(LiveDBError):
    """Another `Database`, in this or another process, has the same path open."""


class CorruptionError(LiveDBError):
    """A database file is damaged or truncated; its contents cannot be trusted."""
