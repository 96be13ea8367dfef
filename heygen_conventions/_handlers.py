"""Translate every error into one response shape: the envelope or RFC 9457 problem+json."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, Literal

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heygen_conventions import errors
from heygen_conventions._context import (
    DEFAULT_REQUEST_ID_HEADER,
    REQUEST_ID_HEADER_STATE_KEY,
    request_id_from_scope,
)
from heygen_conventions.errors import AppError
from heygen_conventions.responses import ErrorDetail, ErrorResponse

__all__ = ["ErrorFormat", "error_response", "error_responses", "install_exception_handlers"]

ErrorFormat = Literal["envelope", "problem"]

logger = logging.getLogger("heygen_conventions.errors")

_INSTALLED_FLAG = "heygen_error_format"
_GENERIC_500 = "Internal server error"
_VALIDATION_MESSAGE = "Request validation failed"
_EXAMPLE_REQUEST_ID = "0b5f3c5e-6a3e-4c2b-9d1e-5f1a2b3c4d5e"
_NO_BODY_STATUSES = frozenset({204, 304})


_CODES_BY_STATUS = {
    cls.status_code: cls.code
    for cls in (
        AppError,
        errors.BadRequestError,
        errors.AuthenticationError,
        errors.PermissionDeniedError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.InvalidInputError,
        errors.RateLimitedError,
        errors.ServiceUnavailableError,
    )
}


def _code_for_status(status_code: int) -> str:
    """The code the library's error of that status carries, so HTTPExceptions match them."""
    code = _CODES_BY_STATUS.get(status_code)
    if code is not None:
        return code
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        return "http_error"
    return "_".join(phrase.lower().replace("-", " ").split())


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def error_response(
    scope: Scope,
    *,
    status_code: int,
    code: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
    format: ErrorFormat = "envelope",
) -> Response:
    """Build the error response every handler answers with.

    The envelope's ``metadata`` carries ``request_id`` and the error's own
    ``code`` as ``error_code`` (problem+json has them as members); the
    request id also goes out as the ``X-Request-ID`` header, so it is there
    even where no request-context middleware wraps the handlers. HEAD
    requests and 204/304 statuses get the headers but no body.
    """
    request_id = request_id_from_scope(scope)
    header = scope["state"].get(REQUEST_ID_HEADER_STATE_KEY, DEFAULT_REQUEST_ID_HEADER)
    headers = {header: request_id, **(headers or {})}
    if scope.get("method") == "HEAD" or status_code in _NO_BODY_STATUSES:
        return Response(status_code=status_code, headers=headers)
    errors = (
        [d.model_dump() for d in details]
        if details
        else [{"code": code, "message": message, "field": None}]
    )
    body: dict[str, Any]
    if format == "problem":
        body = {
            "type": "about:blank",
            "title": _phrase(status_code),
            "status": status_code,
            "detail": message,
            "instance": scope.get("path"),
            "code": code,
            "errors": errors,
            "request_id": request_id,
        }
        media_type = "application/problem+json"
    else:
        body = {
            "success": False,
            "message": message,
            "data": None,
            "errors": errors,
            "metadata": {"request_id": request_id, "error_code": code},
        }
        media_type = "application/json"
    return Response(
        content=orjson.dumps(body), status_code=status_code, headers=headers, media_type=media_type
    )


def app_error_response(
    scope: Scope, exc: AppError, *, format: ErrorFormat = "envelope"
) -> Response:
    """The response for an :class:`AppError`: its status, code, message, details and headers."""
    return error_response(
        scope,
        status_code=exc.status_code,
        code=exc.code,
        message=exc.message,
        details=exc.details,
        headers=exc.headers,
        format=format,
    )


def error_responses(
    errors: Mapping[int, str | ErrorDetail], *, format: ErrorFormat = "envelope"
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting error statuses in the shape the handlers answer.

    Each status gets a description, the error model and an example body::

        @router.get(
            "/videos/{video_id}",
            responses=error_responses({401: "Not authenticated", 404: "Video not found"}),
        )

    Documenting 422 this way also replaces FastAPI's default
    ``HTTPValidationError`` schema, which does not describe what the handlers
    send. 401 entries document the ``WWW-Authenticate`` header.

    Args:
        errors: Status to the message of the example; an :class:`ErrorDetail`
            sets the error's ``code`` (and ``field``) too. Otherwise the code
            is the library's for that status (``not_found`` for 404). For 422
            with an :class:`ErrorDetail`, the example is a request validation
            failure listing that field.
        format: The format given to :func:`install_exception_handlers`.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    for status_code, error in errors.items():
        if isinstance(error, ErrorDetail):
            detail = error
            message = _VALIDATION_MESSAGE if status_code == 422 else error.message
        else:
            message = error
            detail = ErrorDetail(code=_code_for_status(status_code), message=message)
        errors_list = [detail.model_dump()]
        validation = status_code == 422 and isinstance(error, ErrorDetail)
        top_code = "validation_error" if validation else detail.code
        entry: dict[str, Any]
        if format == "problem":
            example: dict[str, Any] = {
                "type": "about:blank",
                "title": _phrase(status_code),
                "status": status_code,
                "detail": message,
                "instance": "/api/v1/...",
                "code": detail.code,
                "errors": errors_list,
                "request_id": _EXAMPLE_REQUEST_ID,
            }
            entry = {
                "description": message,
                "content": {"application/problem+json": {"example": example}},
            }
        else:
            example = {
                "success": False,
                "message": message,
                "data": None,
                "errors": errors_list,
                "metadata": {"request_id": _EXAMPLE_REQUEST_ID, "error_code": top_code},
            }
            entry = {
                "model": ErrorResponse,
                "description": message,
                "content": {"application/json": {"example": example}},
            }
        if status_code == 401:
            entry["headers"] = {
                "WWW-Authenticate": {
                    "description": "The scheme to authenticate with: `Bearer` (with "
                    '`error="invalid_token"` when the token sent was refused).',
                    "schema": {"type": "string"},
                }
            }
        documented[status_code] = entry
    return documented


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str | None:
    """Every method the app routes at this path, for a 405's ``Allow``.

    Starlette answers 405 from the first route whose path matches, so its
    ``Allow`` names only that route's methods: ``GET /videos`` and ``POST
    /videos`` declared as two routes would answer ``Allow: GET``. Each method
    is tried against the app's routes (included routers too); mounted apps
    answer their own 405s and are left out.
    """
    routes = [route for route in getattr(request.app, "routes", ()) if not isinstance(route, Mount)]
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed) if allowed else None


def _location(loc: Iterable[int | str]) -> str:
    return ".".join(str(part) for part in loc)


class _UnhandledErrorMiddleware:
    """Answers an unexpected exception with the generic 500 body and logs it once.

    Starlette's own server-error middleware re-raises after answering, so the
    server logs the traceback a second time; this one does not.
    """

    def __init__(self, app: ASGIApp, *, format: ErrorFormat) -> None:
        self.app = app
        self.format = format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            if started:
                # Too late for a 500: let the server abort the connection (and log it).
                raise
            _log_unhandled(scope)
            response = error_response(
                scope,
                status_code=500,
                code="internal_error",
                message=_GENERIC_500,
                format=self.format,
            )
            await response(scope, receive, send)


def _log_unhandled(scope: Scope) -> None:
    logger.error(
        "Unhandled exception",
        exc_info=True,
        extra={
            "method": scope.get("method"),
            "path": scope.get("path"),
            "request_id": request_id_from_scope(scope),
        },
    )


def install_exception_handlers(app: FastAPI, *, format: ErrorFormat = "envelope") -> None:
    """Make every error answer in one shape.

    Covers :class:`AppError` and its subclasses, request validation (422, one
    :class:`ErrorDetail` per field, submitted values never echoed), Starlette
    and FastAPI ``HTTPException`` (router 404 and 405 included, headers such
    as ``Allow`` kept) and any unexpected exception (500 with a generic
    message; the traceback goes to the ``heygen_conventions.errors`` logger,
    once).

    Args:
        app: The application.
        format: ``"envelope"`` for :class:`APIResponse`-shaped bodies or
            ``"problem"`` for RFC 9457 ``application/problem+json``.

    Raises:
        RuntimeError: The handlers are already installed on ``app``.
    """
    if format not in ("envelope", "problem"):
        raise ValueError(f"format must be 'envelope' or 'problem', got {format!r}")
    if getattr(app.state, _INSTALLED_FLAG, None) is not None:
        raise RuntimeError("install_exception_handlers() was already called on this app")
    setattr(app.state, _INSTALLED_FLAG, format)

    async def handle_app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        level = logging.ERROR if exc.status_code >= 500 else logging.INFO
        logger.log(
            level,
            "Request failed: %s",
            exc.code,
            extra={
                "status_code": exc.status_code,
                "error_code": exc.code,
                "error_type": type(exc).__name__,
                "cause_type": type(exc.__cause__).__name__ if exc.__cause__ else None,
            },
        )
        return app_error_response(request.scope, exc, format=format)

    async def handle_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            ErrorDetail(
                code=str(err.get("type", "invalid")),
                message=str(err.get("msg", "")),
                field=_location(err.get("loc", ())) or None,
            )
            for err in exc.errors()
        ]
        logger.info(
            "Request validation failed",
            extra={"status_code": 422, "fields": [d.field for d in details]},
        )
        return error_response(
            request.scope,
            status_code=422,
            code="validation_error",
            message="Request validation failed",
            details=details,
            format=format,
        )

    async def handle_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status_code = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else _phrase(status_code)
        level = logging.ERROR if status_code >= 500 else logging.INFO
        logger.log(level, "HTTP error %d", status_code, extra={"status_code": status_code})
        headers = dict(exc.headers or {})
        if status_code == 405 and "Allow" in headers:
            headers["Allow"] = _allowed_methods(request) or headers["Allow"]
        return error_response(
            request.scope,
            status_code=status_code,
            code=_code_for_status(status_code),
            message=message,
            headers=headers,
            format=format,
        )

    async def handle_unexpected(request: Request, exc: Exception) -> Response:
        # Reached only for exceptions raised outside the guard middleware
        # (e.g. by middleware added before it); Starlette re-raises afterwards.
        _log_unhandled(request.scope)
        return error_response(
            request.scope,
            status_code=500,
            code="internal_error",
            message=_GENERIC_500,
            format=format,
        )

    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
    app.add_middleware(_UnhandledErrorMiddleware, format=format)
