"""livedb: an embedded, in-process, reactive document database for Python."""

from importlib import metadata as _metadata

from . import auth  # noqa: F401 - registers PasswordAuth's tables for every database
from ._client import Client
from ._crons import Crons
from ._database import Database
from ._errors import (
    AppError,
    AuthError,
    ConflictError,
    CorruptionError,
    DatabaseLockedError,
    DocumentNotFoundError,
    LiveDBError,
    SchemaError,
    ValidationError,
)
from ._functions import ActionCtx, MutationCtx, QueryCtx, action, mutation, query
from ._identity import UserIdentity
from ._ids import Id
from ._reactive import Subscription
from ._results import PaginationResult
from ._schema import define_schema, define_table
from ._serve import serve
from ._transaction import DELETE_FIELD
from ._validators import v

__all__ = [
    "DELETE_FIELD",
    "ActionCtx",
    "AppError",
    "AuthError",
    "ConflictError",
    "CorruptionError",
    "Client",
    "Crons",
    "Database",
    "DatabaseLockedError",
    "DocumentNotFoundError",
    "Id",
    "LiveDBError",
    "MutationCtx",
    "PaginationResult",
    "QueryCtx",
    "SchemaError",
    "Subscription",
    "UserIdentity",
    "ValidationError",
    "action",
    "define_schema",
    "define_table",
    "mutation",
    "query",
    "serve",
    "v",
]
try:
    __version__: str = _metadata.version("livedb")
    """The installed distribution's version, e.g. ``"0.1.0"``."""
except _metadata.PackageNotFoundError:
    __version__ = "0+unknown"
