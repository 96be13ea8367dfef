"""Conventions for FastAPI services, importable instead of re-typed.

The public API is everything in ``__all__``; modules whose names start with
an underscore are private.
"""

from heygen_conventions._handlers import ErrorFormat, error_response, install_exception_handlers
from heygen_conventions._version import __version__
from heygen_conventions.cache import (
    CacheBackend,
    CachedServiceMixin,
    CircuitBreaker,
    MemoryCache,
    PubSubBackend,
    RedisCache,
    cache_from_settings,
    cache_stats,
    get_cache,
    install_cache,
)
from heygen_conventions.errors import (
    AppError,
    AuthenticationError,
    BadRequestError,
    CacheUnavailableError,
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
    "CacheBackend",
    "CacheUnavailableError",
    "CachedServiceMixin",
    "CircuitBreaker",
    "ConflictError",
    "CursorPage",
    "ErrorDetail",
    "ErrorFormat",
    "InvalidInputError",
    "MemoryCache",
    "NotFoundError",
    "PaginatedResponse",
    "PermissionDeniedError",
    "PubSubBackend",
    "RateLimitedError",
    "RedisCache",
    "ServiceUnavailableError",
    "Settings",
    "__version__",
    "cache_from_settings",
    "cache_stats",
    "error_response",
    "get_cache",
    "install_cache",
    "install_exception_handlers",
    "total_pages",
]
