"""The exception hierarchy: every error livedb raises on bad input is a `LiveDBError`.

Catch `LiveDBError` to handle anything livedb refuses; catch a subclass to handle one
kind of failure. An exception raised by your own handler (other than `AppError`)
reaches the caller as itself, not wrapped.
"""

from __future__ import annotations

from typing import Any


class LiveDBError(Exception):
    """Base class of every livedb error.

    Raised as itself when no subclass fits, for example by any call on a closed
    database (``"the database is closed"``), by `.unique()` when more than one document
    matches, by `db.mutation` called inside a mutation, or when the disk is full or the
    file read-only.

    Examples:
        >>> from livedb import Database, LiveDBError
        >>> db = Database()
        >>> db.close()
        >>> try:
        ...     db.query(lambda ctx: None)
        ... except LiveDBError as e:
        ...     print(e)
        the database is closed
    """


class ValidationError(LiveDBError):
    """A value, argument, id, query or cursor did not fit what was expected.

    Raised for a document or argument that fails its validator or a value limit, an
    unknown table or index, a malformed index range, a cursor of another query, a
    return value that fails `returns=`, or a bad schedule. The message names where and
    what, e.g. ``messages.body: expected string, got int``. A mutation that raises it
    commits nothing.

    Examples:
        >>> from livedb import ValidationError, v
        >>> try:
        ...     v.object({"body": v.string()}).validate({"body": 1}, path="messages")
        ... except ValidationError as e:
        ...     print(e)
        messages.body: expected string, got int
    """


class SchemaError(LiveDBError):
    """A schema is malformed, or stored data does not match the schema given.

    Raised when the schema is built, by `define_table`, `.index()`, `.search_index()`,
    `.vector_index()` and `define_schema`, for bad names or fields; and by
    `Database(schema, path=...)` when documents already in the file do not pass the
    schema (the message names the first bad documents and paths). To repair such data,
    open with `define_schema(..., schema_validation=False)` and fix the documents with
    mutations.

    Examples:
        >>> from livedb import SchemaError, define_table, v
        >>> try:
        ...     define_table({"_secret": v.string()})
        ... except SchemaError as e:
        ...     print(e)
        define_table: field '_secret' must not start with '_' or '$' (reserved for system fields)
    """


class DocumentNotFoundError(LiveDBError):
    """A patch, replace or delete named a document that does not exist (or no longer does).

    Examples:
        >>> from livedb import Database, DocumentNotFoundError
        >>> db = Database()
        >>> doc_id = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        >>> db.mutation(lambda ctx: ctx.db.delete(doc_id))
        >>> try:
        ...     db.mutation(lambda ctx: ctx.db.delete(doc_id))
        ... except DocumentNotFoundError:
        ...     print("already gone")
        already gone
    """


class ConflictError(LiveDBError):
    """A mutation kept conflicting with concurrent commits until its retries ran out.

    Nothing of that mutation committed; retry later. Conflicting mutations are retried
    automatically, so this is raised only when retries run out. The mutations of one
    `Database` run one at a time (a single writer), so they never conflict with each
    other: a program with one `Database` per file does not see this error.
    """


class AppError(LiveDBError):
    """Raised by a handler to send `data` (any storable value) back to its caller.

    The caller receives this same `AppError`, with the same `data`. Raising it in a
    mutation rolls the mutation back, like any exception.

    Args:
        data: Any storable value: a message, a code, a dict of details.

    Examples:
        >>> from livedb import AppError, Database, mutation
        >>> @mutation
        ... def withdraw(ctx):
        ...     raise AppError({"code": "insufficient_funds", "balance": 3})
        >>> try:
        ...     Database().mutation(withdraw)
        ... except AppError as e:
        ...     print(e.data["code"])
        insufficient_funds
    """

    def __init__(self, data: Any = None) -> None:
        super().__init__(data)
        self.data = data
        """The value the handler raised."""

    def __repr__(self) -> str:
        return f"AppError({self.data!r})"


class AuthError(LiveDBError):
    """Credentials or a session token were not accepted.

    Raised by `PasswordAuth.sign_in` and `change_password` for a wrong email or password
    (one message for both, after the same time, so callers cannot tell which was wrong)
    and for an email locked after too many failed attempts; by `sign_up` for an email
    that already has an account; and by `PasswordAuth.identity`, `db.client(token=...)`
    and that client's calls once its session is signed out or expired.

    Examples:
        >>> from livedb import AuthError, Database
        >>> from livedb.auth import PasswordAuth
        >>> db = Database()
        >>> auth = PasswordAuth(db)
        >>> _ = auth.sign_up("ada@example.com", "correct horse")
        >>> try:
        ...     auth.sign_in("ada@example.com", "wrong horse")
        ... except AuthError as e:
        ...     print(e)
        invalid email or password
        >>> db.close()
    """


class DatabaseLockedError(LiveDBError):
    """Another `Database`, in this or another process, has the same path open.

    A database file has one `Database` at a time: open it once per process and share that
    object between threads. The lock is an OS file lock beside the database file,
    released when the other database closes or its process dies.

    Examples:
        >>> from livedb import Database, DatabaseLockedError
        >>> first = Database(path="app.livedb")
        >>> try:
        ...     Database(path="app.livedb")
        ... except DatabaseLockedError as e:
        ...     print(e)
        app.livedb is already open in another Database (this process); close that one first
        >>> first.close()
    """


class CorruptionError(LiveDBError):
    """A database file or a stored file is damaged or truncated, or is not a livedb
    file: its contents cannot be trusted, so livedb refuses to serve them rather than
    return wrong data. Restore from a backup (see `livedb.export`).

    Examples:
        >>> from pathlib import Path
        >>> from livedb import CorruptionError, Database
        >>> _ = Path("notes.livedb").write_text("not a database")
        >>> try:
        ...     Database(path="notes.livedb")
        ... except CorruptionError as e:
        ...     print(e)
        notes.livedb is damaged and cannot be trusted (...); restore it from a backup or an export
    """
