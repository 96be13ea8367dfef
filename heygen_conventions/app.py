"""``setup_app``: every part of the library wired onto an application in one call.

Each part stays usable alone (``configure_logging``,
``install_exception_handlers``, ``install_database``, ``install_cache``,
``install_auth``, ``RequestContextMiddleware``); this function only calls
them in the order that makes them work together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp

from heygen_conventions._context import DEFAULT_REQUEST_ID_HEADER, REQUEST_ID_OPTIONS_APP_KEY
from heygen_conventions._handlers import ErrorFormat, SwallowAnswered, install_exception_handlers
from heygen_conventions._lifespan import check_at_startup
from heygen_conventions.auth import JWTAuth, UserLoader, check_auth_installed, install_auth
from heygen_conventions.cache import CacheBackend, cache_from_settings, install_cache
from heygen_conventions.db import Database, install_database
from heygen_conventions.logging import RequestContextMiddleware, configure_logging_from_settings
from heygen_conventions.settings import Settings

__all__ = ["AppComponents", "get_components", "setup_app"]

_STATE_KEY = "heygen_components"


@dataclass(frozen=True)
class AppComponents:
    """What :func:`setup_app` installed, for scripts, workers and tests."""

    settings: Settings
    database: Database
    cache: CacheBackend
    auth: JWTAuth | None


def setup_app(
    app: FastAPI,
    settings: Settings | None = None,
    *,
    user_loader: UserLoader | None = None,
    error_format: ErrorFormat = "envelope",
    database: Database | None = None,
    cache: CacheBackend | None = None,
    configure_logs: bool = True,
    request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
    trust_request_id: bool = True,
    token_url: str | None = None,
    scopes: Mapping[str, str] | None = None,
) -> AppComponents:
    """Install logging, request context, error handlers, database, cache and auth on ``app``.

    The order matters and is fixed here: logging is configured first; the
    request-context middleware wraps the whole middleware stack (the error
    handlers, and middleware the application adds later), so every response,
    500s included, carries the request id and gets one access line; the
    database and cache are registered with the app's lifespan (disposed and
    closed after the app's own lifespan ends, which is kept); auth last,
    keeping revocations in that cache when it is shared (Redis), else in its
    own in-process store.

    Args:
        app: The application; call before it starts serving.
        settings: Configuration; ``Settings()`` (read from the environment)
            when omitted.
        user_loader: ``async (subject) -> user | None`` turning a token's
            subject into the application's user. Without it no auth is
            installed and ``get_current_user`` refuses to run.
        error_format: ``"envelope"`` or ``"problem"`` (RFC 9457).
        database: Use this instead of ``Database.from_settings(settings)``.
        cache: Use this instead of the Redis or in-process cache the
            settings select.
        configure_logs: False leaves logging to the application. Until it
            calls :func:`configure_logging`, the library's structured lines
            (``get_logger()`` and the access line) still go to standard error
            as JSON, outside the application's handlers; only records of the
            standard library's loggers take the application's setup.
        request_id_header: Header carrying the request id in and out.
        trust_request_id: False always generates a fresh id.
        token_url: Publish an OAuth2 password flow posting to this URL in
            the OpenAPI document (the docs' Authorize button logs in).
        scopes: Scope descriptions for that flow.

    Returns:
        The installed parts, also kept on ``app.state.heygen_components``.

    Raises:
        RuntimeError: ``setup_app`` (or one of the ``install_*`` functions it
            calls) already ran on ``app``.
        ValueError: Unsafe auth settings (short secret, mixed algorithms, ...).
    """
    if getattr(app.state, _STATE_KEY, None) is not None:
        raise RuntimeError("setup_app() was already called on this app; call it once, at startup")
    settings = settings if settings is not None else Settings()
    if configure_logs:
        configure_logging_from_settings(settings)
    install_exception_handlers(app, format=error_format)
    database = database if database is not None else Database.from_settings(settings)
    install_database(app, database)
    cache = cache if cache is not None else cache_from_settings(settings)
    install_cache(app, cache)
    auth = None
    if user_loader is not None:
        auth = install_auth(
            app, user_loader=user_loader, settings=settings, token_url=token_url, scopes=scopes
        )
    _wrap_with_request_context(app, request_id_header, trust_request_id)
    # For the error handlers answering a request no request-context middleware has seen.
    setattr(app.state, REQUEST_ID_OPTIONS_APP_KEY, (request_id_header, trust_request_id))
    check_at_startup(app, check_auth_installed)
    components = AppComponents(settings=settings, database=database, cache=cache, auth=auth)
    setattr(app.state, _STATE_KEY, components)
    return components


def _wrap_with_request_context(app: FastAPI, header: str, trust_incoming: bool) -> None:
    """Put :class:`RequestContextMiddleware` outside the whole middleware stack.

    Added with ``add_middleware`` it would sit inside every middleware the
    application adds after ``setup_app`` (and inside Starlette's server-error
    middleware): a request one of them answers or fails would get no access
    line, or one with the status the inner app sent rather than the client's.
    """
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return RequestContextMiddleware(
            SwallowAnswered(build()), header=header, trust_incoming=trust_incoming
        )

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


def get_components(app: FastAPI) -> AppComponents:
    """The parts :func:`setup_app` installed on ``app``.

    Raises:
        RuntimeError: ``setup_app`` was not called on ``app``.
    """
    components = getattr(app.state, _STATE_KEY, None)
    if not isinstance(components, AppComponents):
        raise RuntimeError("setup_app() was not called on this app")
    return components
