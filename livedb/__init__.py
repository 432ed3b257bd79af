"""livedb: an embedded, in-process, reactive document database for Python."""

from importlib import metadata as _metadata

from ._serve import serve
from .auth import UserIdentity
from .database import Database
from .errors import (
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
from .functions import ActionCtx, MutationCtx, QueryCtx, action, mutation, query
from .ids import Id
from .query import PaginationResult
from .scheduler import Crons
from .schema import define_schema, define_table
from .transaction import DELETE_FIELD
from .validators import v

__all__ = [
    "DELETE_FIELD",
    "ActionCtx",
    "AppError",
    "AuthError",
    "ConflictError",
    "CorruptionError",
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
