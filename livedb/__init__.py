"""livedb: an embedded, in-process, reactive document database for Python."""

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
from .functions import action, mutation, query
from .ids import Id
from .query import PaginationResult
from .scheduler import Crons
from .schema import define_schema, define_table
from .transaction import DELETE_FIELD
from .validators import v

__all__ = [
    "DELETE_FIELD",
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
    "PaginationResult",
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
__version__ = "0.1.0"
