"""Conventions for FastAPI services, importable instead of re-typed.

The public API is everything in ``__all__``; modules whose names start with
an underscore are private.
"""

from heygen_conventions._handlers import ErrorFormat, error_response, install_exception_handlers
from heygen_conventions._version import __version__
from heygen_conventions.checks import (
    Violation,
    assert_follows_conventions,
    check_app,
    ignore_conventions,
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
    "ConflictError",
    "CursorPage",
    "ErrorDetail",
    "ErrorFormat",
    "InvalidInputError",
    "NotFoundError",
    "PaginatedResponse",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "Settings",
    "Violation",
    "__version__",
    "assert_follows_conventions",
    "check_app",
    "error_response",
    "ignore_conventions",
    "install_exception_handlers",
    "total_pages",
]
