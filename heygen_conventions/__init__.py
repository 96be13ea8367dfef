"""Conventions for FastAPI services, importable instead of re-typed.

The public API is everything in ``__all__``; modules whose names start with
an underscore are private.
"""

from heygen_conventions._handlers import ErrorFormat, error_response, install_exception_handlers
from heygen_conventions._sql_errors import translate_db_errors
from heygen_conventions._version import __version__
from heygen_conventions.db import (
    Base,
    Database,
    DBSession,
    TimestampMixin,
    UTCDateTime,
    UUIDPrimaryKeyMixin,
    VersionMixin,
    after_commit,
    get_db_session,
    install_database,
    uuid7,
)
from heygen_conventions.errors import (
    AppError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
)
from heygen_conventions.pagination import CountStrategy, PageParams, SortOrder
from heygen_conventions.repository import BaseRepository, UpsertResult
from heygen_conventions.responses import (
    APIResponse,
    CursorPage,
    ErrorDetail,
    PaginatedResponse,
    total_pages,
)
from heygen_conventions.settings import Settings

__all__ = [
    "APIResponse",
    "AppError",
    "AuthenticationError",
    "BadRequestError",
    "Base",
    "BaseRepository",
    "ConflictError",
    "CountStrategy",
    "CursorPage",
    "DBSession",
    "Database",
    "ErrorDetail",
    "ErrorFormat",
    "InvalidInputError",
    "NotFoundError",
    "PageParams",
    "PaginatedResponse",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "Settings",
    "SortOrder",
    "TimestampMixin",
    "UTCDateTime",
    "UUIDPrimaryKeyMixin",
    "UpsertResult",
    "VersionMixin",
    "__version__",
    "after_commit",
    "error_response",
    "get_db_session",
    "install_database",
    "install_exception_handlers",
    "total_pages",
    "translate_db_errors",
    "uuid7",
]
