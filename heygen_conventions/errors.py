"""The library's error hierarchy.

Services and repositories raise these; the handlers installed by
:func:`heygen_conventions.install_exception_handlers` turn them into responses.
Nothing here imports a web framework.

    AppError                      500  internal_error
     ├── BadRequestError          400  bad_request
     ├── AuthenticationError      401  not_authenticated   (WWW-Authenticate: Bearer)
     ├── PermissionDeniedError    403  permission_denied
     ├── NotFoundError            404  not_found
     ├── ConflictError            409  conflict
     ├── InvalidInputError        422  invalid_input
     ├── RateLimitedError         429  rate_limited        (Retry-After when known)
     └── ServiceUnavailableError  503  service_unavailable (Retry-After when known)
          └── CacheUnavailableError 503  cache_unavailable

Applications subclass them for domain errors, overriding ``code`` and the
default message::

    class VideoNotFoundError(NotFoundError):
        code = "video_not_found"
        default_message = "Video not found"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from heygen_conventions.responses import ErrorDetail

__all__ = [
    "AppError",
    "AuthenticationError",
    "BadRequestError",
    "CacheUnavailableError",
    "ConflictError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
]


class AppError(Exception):
    """Base of every error the library and its applications raise on purpose.

    Its ``message`` is shown to the client, so it must not carry internals.

    Args:
        message: Client-facing text; ``default_message`` when omitted.
        code: Overrides the class's stable ``code``.
        details: Finer-grained problems (e.g. one per invalid field).
        headers: Extra response headers.
    """

    status_code: ClassVar[int] = 500
    code: str = "internal_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Sequence[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        if code is not None:
            self.code = code
        self.details: list[ErrorDetail] = list(details or ())
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class BadRequestError(AppError):
    """Raised when a request is malformed beyond field validation (e.g. a tampered cursor)."""

    status_code = 400
    code = "bad_request"
    default_message = "Bad request"


class AuthenticationError(AppError):
    """Raised when credentials are missing, invalid, expired or revoked."""

    status_code = 401
    code = "not_authenticated"
    default_message = "Not authenticated"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Sequence[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
        www_authenticate: str = "Bearer",
    ) -> None:
        merged = {"WWW-Authenticate": www_authenticate, **(headers or {})}
        super().__init__(message, code=code, details=details, headers=merged)


class PermissionDeniedError(AppError):
    """Raised when an authenticated caller lacks the role, scope or ownership needed."""

    status_code = 403
    code = "permission_denied"
    default_message = "Permission denied"


class NotFoundError(AppError):
    """Raised when the requested resource does not exist (or is hidden from the caller)."""

    status_code = 404
    code = "not_found"
    default_message = "Not found"


class ConflictError(AppError):
    """Raised when a write conflicts with current state: duplicate key, stale version."""

    status_code = 409
    code = "conflict"
    default_message = "Conflict with the current state of the resource"


class InvalidInputError(AppError):
    """Raised when input is well-formed but breaks a rule the schema cannot express."""

    status_code = 422
    code = "invalid_input"
    default_message = "Invalid input"


class _RetryableError(AppError):
    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Sequence[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after}")
        self.retry_after = retry_after
        merged = dict(headers or {})
        if retry_after is not None:
            merged["Retry-After"] = str(retry_after)
        super().__init__(message, code=code, details=details, headers=merged)


class RateLimitedError(_RetryableError):
    """Raised when a caller exceeds a rate limit; ``retry_after`` is in seconds."""

    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests"


class ServiceUnavailableError(_RetryableError):
    """Raised when a dependency (database, upstream) is down; ``retry_after`` in seconds."""

    status_code = 503
    code = "service_unavailable"
    default_message = "Service temporarily unavailable"


class CacheUnavailableError(ServiceUnavailableError):
    """Raised by a cache backend that cannot answer: down, timing out, circuit open, bad reply.

    The service mixin catches it and answers from the loader (fail-open);
    code that calls a backend directly decides whether to fail open or closed.
    """

    code = "cache_unavailable"
    default_message = "Cache temporarily unavailable"
