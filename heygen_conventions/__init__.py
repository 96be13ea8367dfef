"""Conventions for FastAPI services, importable instead of re-typed.

The public API is everything in ``__all__``; modules whose names start with
an underscore are private.
"""

from heygen_conventions._handlers import ErrorFormat, error_response, install_exception_handlers
from heygen_conventions._version import __version__
from heygen_conventions.auth import (
    JWTAuth,
    TokenClaims,
    create_access_token,
    create_refresh_token,
    ensure_owner_or_admin,
    get_auth,
    get_current_user,
    get_optional_user,
    get_token_claims,
    install_auth,
    require_admin_role,
    require_roles,
    require_scopes,
)
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
    "JWTAuth",
    "MemoryCache",
    "NotFoundError",
    "PaginatedResponse",
    "PermissionDeniedError",
    "PubSubBackend",
    "RateLimitedError",
    "RedisCache",
    "ServiceUnavailableError",
    "Settings",
    "TokenClaims",
    "Violation",
    "__version__",
    "assert_follows_conventions",
    "cache_from_settings",
    "cache_stats",
    "check_app",
    "create_access_token",
    "create_refresh_token",
    "ensure_owner_or_admin",
    "error_response",
    "get_auth",
    "get_cache",
    "get_current_user",
    "get_optional_user",
    "get_token_claims",
    "ignore_conventions",
    "install_auth",
    "install_cache",
    "install_exception_handlers",
    "require_admin_role",
    "require_roles",
    "require_scopes",
    "total_pages",
]
