"""Conventions for FastAPI services, importable instead of re-typed.

The public API is everything in ``__all__``; modules whose names start with
an underscore are private.
"""

from heygen_conventions._context import bind_request_context, get_request_context
from heygen_conventions._handlers import ErrorFormat, error_response, install_exception_handlers
from heygen_conventions._version import __version__
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
from heygen_conventions.logging import (
    RequestContextMiddleware,
    configure_logging,
    configure_logging_from_settings,
    get_logger,
    uvicorn_log_config,
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
    "RequestContextMiddleware",
    "ServiceUnavailableError",
    "Settings",
    "__version__",
    "bind_request_context",
    "configure_logging",
    "configure_logging_from_settings",
    "error_response",
    "get_logger",
    "get_request_context",
    "install_exception_handlers",
    "total_pages",
    "uvicorn_log_config",
]
