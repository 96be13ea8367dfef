"""Structured logging: one pipeline for structlog and the standard library.

:func:`configure_logging` sends every line, whether it comes from
:func:`get_logger` (structlog) or from ``logging.getLogger()`` (uvicorn,
SQLAlchemy, this library, the application), through the same processors: the
request context is merged in, ``extra=`` fields become keys, secrets are
masked, exceptions become structured tracebacks without frame locals, and the
line is rendered as JSON (orjson) or as readable console output.

:class:`RequestContextMiddleware` gives each request an id, binds it with the
method, path and client into the context of every line logged while the
request runs, echoes it in a response header and writes one access line when
the request ends. It must wrap the error handlers so that their 500s carry
the header too::

    app = FastAPI()
    install_exception_handlers(app)                # inner
    app.add_middleware(RequestContextMiddleware)   # outer: added last
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, cast

import structlog

from heygen_conventions._context import (
    DEFAULT_REQUEST_ID_HEADER,
    FAILURE_STATE_KEY,
    REQUEST_ID_HEADER_STATE_KEY,
    REQUEST_ID_STATE_KEY,
    end_request_context,
    enter_request_context,
    get_request_context,
    mark_logged,
    new_request_id_pair,
    safe_request_id,
    take_request_id,
    was_logged,
)
from heygen_conventions._log_pipeline import (
    CAPTURES,
    HANDLER_MARK,
    LEVEL_NAMES,
    CurrentStandardError,
    Output,
    Pipeline,
    StreamLogger,
    wrapper_class,
)
from heygen_conventions._redact import DEFAULT_REDACTED_KEYS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from structlog.typing import FilteringBoundLogger, Processor

    from heygen_conventions.settings import Settings

__all__ = [
    "DEFAULT_REDACTED_KEYS",
    "UVICORN_LOG_CONFIG",
    "RequestContextMiddleware",
    "configure_logging",
    "configure_logging_from_settings",
    "get_logger",
    "uvicorn_log_config",
]

_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
_UVICORN_ACCESS = "uvicorn.access"
# aiosqlite's debug lines repr every call it hands its thread: each statement
# with its bound parameters (passwords, tokens), which SQLAlchemy's
# hide_parameters does not reach. DEBUG is for the application's own lines, so
# this logger is held at INFO, unless its level was set by someone else (that
# choice is kept). SQLAlchemy's loggers need nothing: it sets its own to WARNING.
_PARAMETER_LOGGERS = ("aiosqlite",)
# The level configure_logging() gave each of them, to tell it from a level set by the user.
_HELD_LEVELS: dict[str, int] = {}
# Where RequestContextMiddleware logs an exception the application lets out,
# like the error handlers do.
_ERRORS_LOGGER = logging.getLogger("heygen_conventions.errors")
# What FastAPI's max_body_size (Starlette's RequestBodyLimitMiddleware) raises
# through the app once it has answered 413 itself; no public name (FastAPI
# looks it up the same way).
try:
    from starlette.middleware import body_limit as _body_limit
except ImportError:  # pragma: no cover - Starlette before its body limit
    _BODY_LIMIT_ANSWERED: Any = ()
else:
    _BODY_LIMIT_ANSWERED = getattr(_body_limit, "_RequestBodyLimitResponseSent", ())


def _level_number(level: int | str) -> int:
    if isinstance(level, str):
        number = logging.getLevelNamesMapping().get(level.strip().upper())
    else:
        number = level
    if number not in (logging.NOTSET, *LEVEL_NAMES):
        raise ValueError(f"level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
    return number


# Until configure_logging() runs, get_logger() lines take this pipeline to
# standard error: the same processors (secrets masked) and nothing installed.
_DEFAULT_OUTPUT = Output(CurrentStandardError())
_DEFAULT = Pipeline(
    output=_DEFAULT_OUTPUT,
    level=logging.INFO,
    json=not _DEFAULT_OUTPUT.isatty,
    service=None,
    redact=DEFAULT_REDACTED_KEYS,
    processors=(),
)
# Every bound logger holds these two objects, and configuration changes them
# in place: a logger bound at import time follows a later configure_logging().
# The list holds one processor, the pipeline's whole chain: replacing it is one
# step, so a line another thread is processing meanwhile runs through one
# chain from start to end, never through part of each (its redactor skipped).
_SINK = StreamLogger(_DEFAULT)
_PROCESSORS: list[Processor] = [_DEFAULT.process]
_STATE: Pipeline | None = None


def configure_logging(
    *,
    level: int | str = "INFO",
    json: bool | None = None,
    service: str | None = None,
    redact: Iterable[str] = DEFAULT_REDACTED_KEYS,
    processors: Sequence[Processor] = (),
    stream: IO[str] | IO[bytes] | None = None,
    uvicorn_access: bool = False,
) -> None:
    """Send every log line, structlog's and the standard library's, through one pipeline.

    Safe to call again (tests, ``--reload``, each worker): the previous
    configuration is replaced, one handler stays on the root logger. A plain
    ``StreamHandler`` on the root logger writing to standard output or error
    (what ``logging.basicConfig()`` installs) is removed: it would print
    every line a second time, unredacted. Other root handlers (pytest's, a
    file, an error tracker's) are left alone; uvicorn's own handlers are
    removed so its records reach this pipeline instead.

    Args:
        level: Minimum level for both structlog and the root logger.
        json: ``True`` for JSON lines, ``False`` for console output, ``None``
            for JSON unless the stream is a terminal.
        service: Added to every line as ``service``.
        redact: Names of keys whose values are masked, matched word by word
            whatever the spelling (see :data:`DEFAULT_REDACTED_KEYS`);
            passing a list replaces the default, so extend it rather than
            shorten it: ``[*DEFAULT_REDACTED_KEYS, "ssn"]``.
        processors: Extra structlog processors, run after the context is
            merged and before redaction and rendering (raise
            ``structlog.DropEvent`` in one to drop a line).
        stream: Where lines go; standard error by default.
        uvicorn_access: Keep uvicorn's own access line. Off by default:
            :class:`RequestContextMiddleware` writes a richer one.

    At ``DEBUG`` the ``aiosqlite`` logger stays at ``INFO``: its debug lines
    carry every statement's parameters. Set that logger's level yourself
    (``logging.getLogger("aiosqlite").setLevel(logging.DEBUG)``) to see them.
    """
    number = _level_number(level)
    output = Output(sys.stderr if stream is None else stream)
    _install(
        Pipeline(
            output=output,
            level=number,
            json=(not output.isatty) if json is None else json,
            service=service,
            redact=redact,
            processors=processors,
        ),
        uvicorn_access=uvicorn_access,
    )


def _install(pipeline: Pipeline, *, uvicorn_access: bool) -> None:
    global _STATE
    _PROCESSORS[:] = [pipeline.process]
    _SINK.retarget(pipeline)
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=wrapper_class(pipeline.level),
        context_class=dict,
        logger_factory=lambda *args: _SINK,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, HANDLER_MARK, False) or _console_copy(handler):
            root.removeHandler(handler)
    root.addHandler(pipeline.handler)
    root.setLevel(pipeline.level)
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger(_UVICORN_ACCESS)
    access.handlers.clear()
    # uvicorn skips its access line entirely when the logger has no handler.
    access.propagate = uvicorn_access
    for name in _PARAMETER_LOGGERS:
        held = logging.getLogger(name)
        if held.level in (logging.NOTSET, _HELD_LEVELS.get(name)):
            # Never below the pipeline's level: a logger's own level overrides the root's.
            _HELD_LEVELS[name] = max(logging.INFO, pipeline.level)
            held.setLevel(_HELD_LEVELS[name])
    _STATE = pipeline
    _rebuild_loggers()


def _console_copy(handler: logging.Handler) -> bool:
    """Whether ``handler`` is ``logging.basicConfig()``'s kind: console lines of its own."""
    if type(handler) is not logging.StreamHandler:  # FileHandler, pytest's handlers...
        return False
    stream = handler.stream
    return any(
        stream is console and console is not None
        for console in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    )


def configure_logging_from_settings(settings: Settings, **overrides: Any) -> None:
    """:func:`configure_logging` with ``log_level``, ``log_format`` and ``app_name``."""
    options: dict[str, Any] = {
        "level": settings.log_level,
        "json": {"json": True, "console": False}.get(settings.log_format),
        "service": settings.app_name,
    }
    options.update(overrides)
    configure_logging(**options)


def uvicorn_log_config(
    *,
    level: int | str = "INFO",
    json: bool | None = None,
    service: str | None = None,
    uvicorn_access: bool = False,
) -> dict[str, Any]:
    """A ``log_config`` for ``uvicorn.run`` formatting uvicorn's own lines like the app's.

    ``uvicorn.run("app:app", log_config=uvicorn_log_config(service="videos"))``
    runs :func:`configure_logging` before uvicorn logs anything.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            # Unused, but uvicorn writes use_colors into them when asked to.
            "default": {"()": "uvicorn.logging.DefaultFormatter"},
            "access": {"()": "uvicorn.logging.AccessFormatter"},
        },
        "handlers": {
            "heygen_conventions": {
                "()": f"{__name__}._handler_from_dict_config",
                "log_level": level,
                "json": json,
                "service": service,
                "uvicorn_access": uvicorn_access,
            }
        },
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in _UVICORN_LOGGERS},
            _UVICORN_ACCESS: {"handlers": [], "propagate": uvicorn_access},
        },
    }


#: :func:`uvicorn_log_config` with its defaults:
#: ``uvicorn.run(app, log_config=UVICORN_LOG_CONFIG)``.
UVICORN_LOG_CONFIG: dict[str, Any] = uvicorn_log_config()


def _handler_from_dict_config(
    *, log_level: int | str, json: bool | None, service: str | None, uvicorn_access: bool
) -> logging.Handler:
    configure_logging(level=log_level, json=json, service=service, uvicorn_access=uvicorn_access)
    assert _STATE is not None
    return _STATE.handler


# --- get_logger -------------------------------------------------------------------

_LOGGER_ATTRIBUTES = (
    *LEVEL_NAMES.values(),
    *(f"a{name}" for name in LEVEL_NAMES.values()),
    "exception",
    "aexception",
    "fatal",
    "afatal",
    "warn",
    "awarn",
    "msg",
    "amsg",
    "log",
    "alog",
    "bind",
    "unbind",
    "try_unbind",
    "new",
    "is_enabled_for",
    "get_effective_level",
)


class _Logger:
    """What :func:`get_logger` returns.

    structlog's lazy proxy pays a failed attribute lookup and a bind on every
    call (about a microsecond even for a filtered-out debug line); this
    object holds the bound logger's methods as plain attributes instead and
    rebuilds them whenever :func:`configure_logging` runs.
    """

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._rebuild()

    def _rebuild(self) -> None:
        initial = {"logger": self._name} if self._name else {}
        bound = structlog.wrap_logger(
            _SINK,
            processors=_PROCESSORS,
            wrapper_class=wrapper_class((_STATE or _DEFAULT).level),
            context_class=dict,
        ).bind(**initial)
        self._bound = bound
        for attribute in _LOGGER_ATTRIBUTES:
            method = getattr(bound, attribute, None)
            if method is not None:
                setattr(self, attribute, method)
            else:
                self.__dict__.pop(attribute, None)

    def __getattr__(self, name: str) -> Any:
        if name == "_bound":
            raise AttributeError(name)
        return getattr(self._bound, name)

    def __repr__(self) -> str:
        return f"<heygen_conventions logger {self._name!r}>"


_LOGGERS: dict[str | None, _Logger] = {}
_LOGGERS_LOCK = threading.Lock()


def _loggers_lock_after_fork() -> None:
    # Another thread of the parent may have held it (get_logger with a new
    # name, configure_logging): in the child it would stay held for good.
    global _LOGGERS_LOCK
    _LOGGERS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_loggers_lock_after_fork)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A structlog logger writing through the configured pipeline.

    ``name`` (the calling module's ``__name__`` when omitted) is logged as
    ``logger``. Safe to call at import time, before :func:`configure_logging`.
    """
    if name is None:
        name = sys._getframe(1).f_globals.get("__name__")
    logger = _LOGGERS.get(name)
    if logger is None:
        with _LOGGERS_LOCK:
            logger = _LOGGERS.get(name)
            if logger is None:
                logger = _LOGGERS[name] = _Logger(name)
    return cast("FilteringBoundLogger", logger)


def _rebuild_loggers() -> None:
    wrapper_class((_STATE or _DEFAULT).level)
    with _LOGGERS_LOCK:
        for logger in list(_LOGGERS.values()):
            logger._rebuild()


# --- capturing (heygen_conventions.testing.capture_logs) --------------------------


def _snapshot() -> Callable[[], None]:
    """Remember the logging configuration; the returned function restores it."""
    root = logging.getLogger()
    root_level = root.level
    previous = _STATE
    loggers = {
        name: (list(lg.handlers), lg.propagate)
        for name in (*_UVICORN_LOGGERS, _UVICORN_ACCESS)
        for lg in [logging.getLogger(name)]
    }
    levels = {name: logging.getLogger(name).level for name in _PARAMETER_LOGGERS}
    held_levels = dict(_HELD_LEVELS)
    config = structlog.get_config()
    ours = config["processors"] is _PROCESSORS
    config["processors"] = list(config["processors"])

    def restore() -> None:
        global _STATE
        for handler in list(root.handlers):
            if getattr(handler, HANDLER_MARK, False):
                root.removeHandler(handler)
        if previous is not None:
            root.addHandler(previous.handler)
        root.setLevel(root_level)
        for name, (handlers, propagate) in loggers.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.propagate = propagate
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        _HELD_LEVELS.clear()
        _HELD_LEVELS.update(held_levels)
        active = previous or _DEFAULT
        _PROCESSORS[:] = [active.process]
        _SINK.retarget(active)
        if ours:
            config["processors"] = _PROCESSORS
        structlog.configure(**config)
        _STATE = previous
        _rebuild_loggers()

    return restore


def _unconfigure() -> None:
    """Back to the state of a process that never called configure_logging (tests)."""
    global _STATE
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, HANDLER_MARK, False):
            root.removeHandler(handler)
    for name, level in list(_HELD_LEVELS.items()):
        held = logging.getLogger(name)
        if held.level == level:
            held.setLevel(logging.NOTSET)
        del _HELD_LEVELS[name]
    _STATE = None
    _PROCESSORS[:] = [_DEFAULT.process]
    _SINK.retarget(_DEFAULT)
    structlog.reset_defaults()
    _rebuild_loggers()


@contextmanager
def _capture_events() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    restore = None
    if _STATE is None:
        restore = _snapshot()
        pipeline = Pipeline(
            output=Output(None),
            level=logging.DEBUG,
            json=True,
            service=None,
            redact=DEFAULT_REDACTED_KEYS,
            processors=(),
        )
        _install(pipeline, uvicorn_access=False)
    CAPTURES.append(events)
    try:
        yield events
    finally:
        for index, active in enumerate(CAPTURES):
            if active is events:
                del CAPTURES[index]
                break
        if restore is not None:
            restore()


# --- the middleware ---------------------------------------------------------------


class RequestContextMiddleware:
    """Request id, request context in every log line, and one access line per request.

    Pure ASGI. Per HTTP or WebSocket connection: take the id from the
    ``header`` when ``trust_incoming`` and it is safe (at most 128 of
    ``[A-Za-z0-9._-]``; anything else is replaced by a new id and never
    logged), else make one; store it in ``request.state.request_id`` (where
    the error handlers read it); bind ``request_id``, ``method``, ``path`` and
    ``client`` for every line logged during the request (values bound later
    with :func:`bind_request_context`, such as ``user_id``, join them); echo
    the id on the response; log ``request finished`` with ``status_code`` and
    ``duration_ms`` (until the response's last byte was handed to the server;
    background tasks run after that and are not counted), plus ``error``,
    the type of an exception the application let out (a response it cut
    short keeps the status it started with: what the client was sent); then
    clear the context.

    Add it after :func:`install_exception_handlers` so it wraps them and
    their 500 responses carry the header. The query string is never logged:
    it often carries tokens.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = DEFAULT_REQUEST_ID_HEADER,
        trust_incoming: bool = True,
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.header = header
        self.trust_incoming = trust_incoming
        self.access_log = access_log
        self._header_key = header.lower().encode("latin-1")
        self._custom_header = header != DEFAULT_REQUEST_ID_HEADER
        # The last connection's address and its text: a connection's requests
        # share the server's one tuple, so most requests format nothing.
        self._client: tuple[object, str | None] = ((), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        elif REQUEST_ID_STATE_KEY in state and get_request_context():
            # An outer RequestContextMiddleware already handles this request.
            await self.app(scope, receive, send)
            return
        request_id = None
        header_key = self._header_key
        size = len(header_key)
        if self.trust_incoming:
            for name, value in scope.get("headers") or ():
                # Servers lower-case header names; the length rules out most at once.
                if len(name) == size and name.lower() == header_key:
                    request_id = safe_request_id(value)
                    break
        made_here = request_id is None
        if request_id is None:
            try:
                request_id, raw_id = take_request_id()
            except IndexError:
                request_id, raw_id = new_request_id_pair()
        else:
            raw_id = request_id.encode("ascii")
        state[REQUEST_ID_STATE_KEY] = request_id
        if self._custom_header:  # the error handlers assume the default when unset
            state[REQUEST_ID_HEADER_STATE_KEY] = self.header
        client = scope.get("client")
        known = self._client
        if known[0] is client:
            address = known[1]
        else:
            address = f"{client[0]}:{client[1]}" if client else None
            self._client = (client, address)
        context = {
            "request_id": request_id,
            "method": scope.get("method", "WEBSOCKET"),
            "path": scope.get("path"),
            "client": address,
        }
        token = enter_request_context(context)
        header = (header_key, raw_id)
        status_code: int | None = None
        finished: float | None = None  # when the last byte of the response was handed on

        # A plain function handing back send's own awaitable: no coroutine of
        # its own to create and drive for every message.
        def send_with_request_id(message: Message) -> Awaitable[None]:
            nonlocal status_code, finished
            message_type = message["type"]
            if message_type == "http.response.body":
                if not message.get("more_body", False):
                    finished = time.perf_counter()
            elif (
                message_type == "http.response.start"
                or message_type == "websocket.accept"
                # A WebSocket refused with an HTTP response (the denial extension).
                or message_type == "websocket.http.response.start"
            ):
                if message_type == "http.response.start":
                    status_code = message["status"]
                sent = message.get("headers") or ()
                if type(sent) is not list and type(sent) is not tuple:
                    sent = list(sent)  # any iterable of pairs: read it once only
                for name, _ in sent:
                    if len(name) == size and name.lower() == header_key:
                        # The app set one: ours replaces it.
                        sent = [h for h in sent if h[0].lower() != header_key]
                        break
                message["headers"] = [*sent, header]
            return send(message)

        error: str | None = None
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        except BaseException as exc:
            if isinstance(exc, _BODY_LIMIT_ANSWERED):
                # Starlette's body limit sent its own 413 and unwinds with this
                # signal to its middleware outside: an answer, not a failure.
                raise
            error = type(exc).__name__
            if not isinstance(exc, Exception):  # cancelled: the client went away
                raise
            if status_code is None:
                status_code = 500
            if _STATE is not None and not was_logged(exc, state):
                # Logged here, with the request context, rather than by the
                # server once the context is gone; the pipeline drops the
                # server's copy. Without the pipeline the server's is the only one.
                _ERRORS_LOGGER.error("Unhandled exception", exc_info=exc)
                mark_logged(exc, state)
            raise
        finally:
            try:
                if self.access_log and kind == "http":
                    if error is None:  # answered by the error handlers with a 500
                        error = state.get(FAILURE_STATE_KEY)
                    # The context as it is now: values bound during the request
                    # (user_id, even from a threadpool) are in this same dict.
                    _SINK.pipeline.access_line(
                        context,
                        status_code,
                        # Until the response was complete: background tasks run
                        # after it. Whole microseconds.
                        math.floor(((finished or time.perf_counter()) - started) * 1_000_000.0),
                        error,
                        request_id,
                        made_here,
                    )
            finally:
                end_request_context(token)
