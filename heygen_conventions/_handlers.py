"""Translate every error into one response shape: the envelope or RFC 9457 problem+json."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, Literal

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heygen_conventions import errors
from heygen_conventions._check_routes import RouteInspector, _walk_routes
from heygen_conventions._context import (
    DEFAULT_REQUEST_ID_HEADER,
    FAILURE_STATE_KEY,
    REQUEST_ID_HEADER_STATE_KEY,
    mark_logged,
    request_id_from_scope,
    was_logged,
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

    The automatic 422 of a route with inputs is documented by
    :func:`install_exception_handlers` already; a 422 entry here gives the
    route its own example. 401 entries document the ``WWW-Authenticate``
    header.

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


def _field(error: Mapping[str, Any]) -> str | None:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        # FastAPI puts the character offset of the syntax error after "body"; it is no field.
        loc = loc[:1]
    return _location(loc) or None


class ProblemDetails(BaseModel):
    """An RFC 9457 problem+json error body, as OpenAPI documents it."""

    type: str = Field(default="about:blank", description="Problem type URI; `about:blank` here.")
    title: str = Field(..., description="The status's reason phrase.")
    status: int = Field(..., description="The HTTP status code.")
    detail: str = Field(..., description="Human-readable summary of what went wrong.")
    instance: str | None = Field(default=None, description="The request path.")
    code: str = Field(..., description="Stable machine-readable error code.")
    errors: list[ErrorDetail] = Field(..., description="One entry per problem found.")
    request_id: str = Field(..., description="To quote when reporting the error.")


_REF_PREFIX = "#/components/schemas/"
_VALIDATION_ERROR_REF = _REF_PREFIX + "HTTPValidationError"
_DOCUMENTED_MODELS = {
    model.__name__: model for model in (ErrorDetail, ErrorResponse, ProblemDetails)
}


def _without_nulls(value: Any) -> Any:
    # FastAPI leaves null members out of the document it generates; do the same.
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _component(document: dict[str, Any], model: type[BaseModel]) -> str:
    """A ``$ref`` to ``model`` in ``document``, adding its schema (and its fields' models)."""
    _, top = models_json_schema([(model, "serialization")], ref_template=_REF_PREFIX + "{model}")
    definitions: dict[str, Any] = _without_nulls(top["$defs"])
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    name = model.__name__

    def fastapi_name(key: str) -> str:
        return f"{_DOCUMENTED_MODELS[key].__module__}__{key}".replace(".", "__")

    while clashing := {
        key
        for key, schema in definitions.items()
        if key in _DOCUMENTED_MODELS
        # Another model of that name is documented (FastAPI may have named ours long already).
        and (schemas.get(key, schema) != schema or fastapi_name(key) in schemas)
    }:
        # Take the long name FastAPI gives then.
        text = orjson.dumps(definitions).decode()
        long_names = {key: fastapi_name(key) for key in clashing}
        for key, long_name in long_names.items():
            text = text.replace(f'"{_REF_PREFIX}{key}"', f'"{_REF_PREFIX}{long_name}"')
        definitions = {long_names.get(key, key): v for key, v in orjson.loads(text).items()}
        name = long_names.get(name, name)
    for key, schema in definitions.items():
        schemas.setdefault(key, schema)
    return _REF_PREFIX + name


def _is_fastapi_validation_body(response: Any) -> bool:
    content = response.get("content") if isinstance(response, dict) else None
    return isinstance(content, dict) and any(
        isinstance(body, dict) and body.get("schema") == {"$ref": _VALIDATION_ERROR_REF}
        for body in content.values()
    )


def _refs(value: Any, skipped: tuple[Any, ...]) -> Iterator[str]:
    """Every ``$ref`` in ``value``, except inside the objects in ``skipped``."""
    if any(value is skip for skip in skipped):
        return
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            yield ref
        for item in value.values():
            yield from _refs(item, skipped)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item, skipped)


def _error_content(document: dict[str, Any], format: ErrorFormat) -> Callable[[], dict[str, Any]]:
    """Makes a response's ``content`` naming the error body the handlers send.

    The body's schema is added to ``document`` once; each call makes a new
    dict, so no two operations share one.
    """
    if format == "problem":
        media_type, ref = "application/problem+json", _component(document, ProblemDetails)
    else:
        media_type, ref = "application/json", _component(document, ErrorResponse)
    return lambda: {media_type: {"schema": {"$ref": ref}}}


def _document_validation_errors(document: dict[str, Any], format: ErrorFormat) -> None:
    """Replace FastAPI's automatic 422 (``HTTPValidationError``) with the body the handler sends."""
    operations = [
        operation
        for path_item in (document.get("paths") or {}).values()
        for operation in path_item.values()
        if isinstance(operation, dict)
        and _is_fastapi_validation_body((operation.get("responses") or {}).get("422"))
    ]
    if not operations:
        return
    content = _error_content(document, format)
    for operation in operations:
        operation["responses"]["422"] = {"description": _VALIDATION_MESSAGE, "content": content()}
    # FastAPI's two schemas go too, unless something else (a webhook) still names them.
    schemas = document["components"]["schemas"]
    fastapi_schemas = (schemas.get("HTTPValidationError"), schemas.get("ValidationError"))
    named = set(_refs(document, fastapi_schemas))
    if _VALIDATION_ERROR_REF not in named:
        schemas.pop("HTTPValidationError", None)
        if _REF_PREFIX + "ValidationError" not in named:
            schemas.pop("ValidationError", None)


def _auth_statuses(app: FastAPI) -> dict[tuple[str, str], tuple[bool, bool]]:
    """(path, METHOD) -> whether the route can answer 401, and 403, for its auth.

    Read from the routes as the convention checker reads them. 401: a
    security scheme that refuses by itself (not ``auto_error=False``) or code
    that raises a 401; the library's bearer scheme counts, as an invalid
    token is refused even for ``get_optional_user``. 403: scopes asked for,
    or a dependency or the endpoint raising a 403 (``require_roles``).
    """
    inspector = RouteInspector()
    found: dict[tuple[str, str], tuple[bool, bool]] = {}
    for index, (prefix, route, _) in enumerate(_walk_routes(app.routes, "", {})):
        if prefix:  # a mounted application documents its own routes
            continue
        facts = inspector.route(index, prefix, route)
        for method in route.methods:
            found[(route.path_format, method)] = (facts.answers_401, facts.answers_403)
    return found


def _document_security_errors(
    document: dict[str, Any],
    format: ErrorFormat,
    auth: Mapping[tuple[str, str], tuple[bool, bool]],
) -> None:
    """Document the 401 and 403 that protected operations answer for their auth.

    An operation is protected when its ``security`` names a scheme (a
    dependency such as ``get_current_user``); ``auth`` tells, from the
    routes, which of them can answer 401 (a missing or invalid token) and
    403 (a role or scope missing). What a route documents itself is left as
    it is.
    """
    wanted: list[tuple[dict[str, Any], str, str]] = []
    for path, path_item in (document.get("paths") or {}).items():
        for method, operation in path_item.items():
            if not isinstance(operation, dict):
                continue
            requirements = [r for r in operation.get("security") or () if isinstance(r, dict) and r]
            if not requirements:
                continue
            answers_401, answers_403 = auth.get((path, method.upper()), (True, False))
            responses = operation.setdefault("responses", {})
            documented = {str(key) for key in responses}
            if answers_401 and not {"401", "4XX", "default"} & documented:
                wanted.append((responses, "401", "Not authenticated"))
            scoped = any(scopes for r in requirements for scopes in r.values())
            if (scoped or answers_403) and not {"403", "4XX", "default"} & documented:
                wanted.append((responses, "403", "Permission denied"))
    if not wanted:
        return
    content = _error_content(document, format)
    for responses, status, description in wanted:
        responses[status] = {"description": description, "content": content()}


_ENVELOPE_KEYS = frozenset({"success", "message", "errors", "metadata"})
_PROBLEM_KEYS = frozenset({"type", "title", "status", "detail", "code", "errors", "request_id"})


def _restore_example_nulls(document: dict[str, Any]) -> None:
    """Put back the nulls FastAPI drops from the error examples (``exclude_none``).

    The handlers always send ``data: null`` and each error's ``field``; the
    examples :func:`error_responses` writes have them, the document lost them.
    """
    for path_item in (document.get("paths") or {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for response in (operation.get("responses") or {}).values():
                content = response.get("content") if isinstance(response, dict) else None
                for body in (content or {}).values():
                    example = body.get("example") if isinstance(body, dict) else None
                    if not isinstance(example, dict) or not isinstance(example.get("errors"), list):
                        continue
                    if example.keys() >= _ENVELOPE_KEYS and example["success"] is False:
                        example.setdefault("data", None)
                    elif not example.keys() >= _PROBLEM_KEYS:
                        continue
                    for error in example["errors"]:
                        if isinstance(error, dict) and {"code", "message"} <= error.keys():
                            error.setdefault("field", None)


def _wrap_openapi(app: FastAPI, format: ErrorFormat) -> None:
    generate = app.openapi
    documented: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        # The wrapped function caches (FastAPI's regenerates when routes are added):
        # rewrite each document it generates once, and keep it where FastAPI does.
        nonlocal documented
        document = generate()
        if document is not documented:
            _document_validation_errors(document, format)
            _document_security_errors(document, format, _auth_statuses(app))
            _restore_example_nulls(document)
            documented = app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class _UnhandledErrorMiddleware:
    """Answers an unexpected exception with the generic 500 body and logs it once.

    Starlette's own server-error middleware re-raises after answering, so the
    server logs the traceback a second time; this one does not.
    """

    def __init__(
        self, app: ASGIApp, *, format: ErrorFormat, handlers: Mapping[type, _Handler] | None = None
    ) -> None:
        self.app = app
        self.format = format
        self.handlers = handlers or {}

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
        except Exception as exc:
            if started:
                # Too late for a 500: let the server abort the connection. The
                # traceback is logged once, by RequestContextMiddleware while the
                # request context is still bound, or by Starlette's handler.
                raise
            handler = _handler_for(self.handlers, exc)
            if handler is not None:
                # An AppError or HTTPException from a middleware: ExceptionMiddleware,
                # inside every middleware, never saw it.
                await (await handler(Request(scope, receive), exc))(scope, receive, send)
                return
            _log_unhandled(scope, exc)
            # For the access line: the request failed though nothing reaches the server.
            scope.setdefault("state", {})[FAILURE_STATE_KEY] = type(exc).__name__
            response = error_response(
                scope,
                status_code=500,
                code="internal_error",
                message=_GENERIC_500,
                format=self.format,
            )
            await response(scope, receive, send)


_Handler = Callable[[Request, Exception], Awaitable[Response]]
_ANSWERED_STATE_KEY = "heygen_answered"


class SwallowAnswered:
    """Wraps a whole stack: drops the re-raise of an exception a handler answered.

    Starlette's server-error middleware re-raises whatever reached it, even
    an ``AppError`` ``handle_unexpected`` answered 401: the server would then
    see a failure (and the access line an error) for a request answered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app  # walkable, as middleware are (``.app``)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if scope.get("state", {}).get(_ANSWERED_STATE_KEY) is not exc:
                raise


def _handler_for(handlers: Mapping[type, _Handler], exc: Exception) -> _Handler | None:
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return handler
    return None


def _log_unhandled(scope: Scope, exc: Exception) -> None:
    state = scope.setdefault("state", {})
    if was_logged(exc, state):  # by RequestContextMiddleware, inside this one
        return
    logger.error(
        "Unhandled exception",
        exc_info=exc,
        extra={
            "method": scope.get("method"),
            "path": scope.get("path"),
            "request_id": request_id_from_scope(scope),
        },
    )
    mark_logged(exc, state)


def install_exception_handlers(app: FastAPI, *, format: ErrorFormat = "envelope") -> None:
    """Make every error answer in one shape.

    Covers :class:`AppError` and its subclasses, request validation (422, one
    :class:`ErrorDetail` per field, submitted values never echoed), Starlette
    and FastAPI ``HTTPException`` (router 404 and 405 included, headers such
    as ``Allow`` kept) and any unexpected exception (500 with a generic
    message; the traceback goes to the ``heygen_conventions.errors`` logger,
    once).

    The OpenAPI document says so too: the 422 FastAPI adds to every route
    with inputs names this body (``ErrorResponse``, or ``ProblemDetails``
    for problem+json) instead of FastAPI's ``HTTPValidationError``, and
    every protected route (a security dependency such as
    ``get_current_user``) documents its 401, plus its 403 when it asks for
    scopes or a role, unless it documents them itself. The app's ``openapi``
    method is wrapped, so a customised one set before this call is kept; one
    set afterwards should call the one it replaces.

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
                field=_field(err),
            )
            for err in exc.errors()
        ]
        logger.info(
            "Request validation failed",
            # One string: a list of two names starting with a secret one
            # (["body.password", "body.token"]) reads as a (name, value) pair
            # to the redactor, which would mask the second name.
            extra={"status_code": 422, "fields": ", ".join(d.field or "" for d in details)},
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

    async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
        # The client hung up while sending its body (``await request.body()``
        # in a route): no server failure and nobody left to read an answer.
        # FastAPI answers the same failure while parsing a body parameter 400.
        logger.info("Client disconnected", extra={"status_code": 400})
        return error_response(
            request.scope,
            status_code=400,
            code=_code_for_status(400),
            message="Client disconnected",
            format=format,
        )

    async def handle_unexpected(request: Request, exc: Exception) -> Response:
        # Reached only for exceptions raised outside the guard middleware
        # (e.g. by middleware added after it); Starlette re-raises afterwards.
        handler = _handler_for(known, exc)
        if handler is not None:
            # Answered, and logged as its kind is: the server is not to log it again.
            state = request.scope.setdefault("state", {})
            mark_logged(exc, state)
            # Starlette's server-error middleware re-raises it after this answer.
            state[_ANSWERED_STATE_KEY] = exc
            return await handler(request, exc)
        _log_unhandled(request.scope, exc)
        return error_response(
            request.scope,
            status_code=500,
            code="internal_error",
            message=_GENERIC_500,
            format=format,
        )

    known: dict[type, _Handler] = {
        AppError: handle_app_error,
        RequestValidationError: handle_validation_error,
        StarletteHTTPException: handle_http_exception,
        ClientDisconnect: handle_client_disconnect,
    }
    _wrap_openapi(app, format)
    for error_type, handler in known.items():
        app.add_exception_handler(error_type, handler)
    app.add_exception_handler(Exception, handle_unexpected)
    app.add_middleware(_UnhandledErrorMiddleware, format=format, handlers=known)
