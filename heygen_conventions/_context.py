"""Request-scoped facts shared by the middleware, the error handlers and the logs."""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from random import getrandbits
from typing import Any

#: Key under ``scope["state"]`` (``request.state.request_id``) holding the request id.
REQUEST_ID_STATE_KEY = "request_id"
DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"
#: Key under ``scope["state"]`` naming the header the request id travels in.
REQUEST_ID_HEADER_STATE_KEY = "request_id_header"
#: Attribute of ``app.state`` holding ``setup_app``'s ``(header, trust_incoming)``, for
#: the error handlers answering a request no RequestContextMiddleware has seen.
REQUEST_ID_OPTIONS_APP_KEY = "heygen_request_id_options"
#: Key under ``scope["state"]`` naming the type of an exception answered with a 500.
FAILURE_STATE_KEY = "heygen_failure"

# An incoming id is trusted only when it cannot smuggle anything into a log
# line or a header: no whitespace, no control bytes, bounded length.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


# Version 4 and the RFC 4122 variant in a 128-bit integer.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    """A random UUID4 as 32 hex digits, like ``uuid.uuid4().hex`` at a sixth of the cost.

    A request id is a correlation key, not a secret (a client may choose its
    own), so it comes from :mod:`random` rather than a system call to
    ``os.urandom`` on every request. ``random`` reseeds in a forked child, so
    workers never share a sequence.
    """
    return "%032x" % (getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


def safe_request_id(raw: bytes | str | None) -> str | None:
    """``raw`` as a str when it is a safe request id, else None (never the raw value)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError:
            return None
    if _SAFE_REQUEST_ID.fullmatch(raw) is None:
        return None
    return raw.decode("ascii")


def request_id_from_scope(scope: Any, header: str = DEFAULT_REQUEST_ID_HEADER) -> str:
    """The request's id: set by the middleware, else a safe incoming header, else new.

    The id found or made is stored in the scope's state so every later reader
    (handlers, logs, the response header) agrees on it.
    """
    state = scope.setdefault("state", {})
    existing = state.get(REQUEST_ID_STATE_KEY)
    if existing:
        return str(existing)
    trust = True
    # No middleware ran (the request failed outside it): the app's own settings
    # still decide which header, if any, an id may come from.
    options = getattr(getattr(scope.get("app"), "state", None), REQUEST_ID_OPTIONS_APP_KEY, None)
    if options is not None:
        header, trust = options
        state.setdefault(REQUEST_ID_HEADER_STATE_KEY, header)
    wanted = header.lower().encode("latin-1")
    found: str | None = None
    for name, value in scope.get("headers", ()) if trust else ():
        if name.lower() == wanted:
            found = safe_request_id(value)
            break
    request_id = found or new_request_id()
    state[REQUEST_ID_STATE_KEY] = request_id
    return request_id


# The per-request context is one dict shared by reference: a value bound in a
# threadpool dependency (which runs in a copy of the context) mutates the same
# dict, so it still reaches the access log line written by the middleware.
_REQUEST_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar(
    "heygen_request_context", default=None
)


def start_request_context(**values: Any) -> Token[dict[str, Any] | None]:
    """Begin a fresh request context; pass the token to :func:`end_request_context`."""
    return _REQUEST_CONTEXT.set(dict(values))


def enter_request_context(context: dict[str, Any]) -> Token[dict[str, Any] | None]:
    """Make ``context`` itself (not a copy) the current request's context."""
    return _REQUEST_CONTEXT.set(context)


def end_request_context(token: Token[dict[str, Any] | None]) -> None:
    _REQUEST_CONTEXT.reset(token)


def bind_request_context(**values: Any) -> None:
    """Add facts (e.g. ``user_id``) to the current request's log context.

    Works from async code and from sync dependencies run in a threadpool; a
    no-op outside a request.
    """
    context = _REQUEST_CONTEXT.get()
    if context is not None:
        context.update(values)


def get_request_context() -> dict[str, Any]:
    """The current request's context (empty outside a request). Do not mutate."""
    return _REQUEST_CONTEXT.get() or {}


# Set on an exception once the library has logged its traceback: the server
# logs whatever the application lets out ("Exception in ASGI application")
# after the request context is gone, and that second copy is dropped. The mark
# names the request (its ``scope["state"]``) that logged it: one exception
# instance can fail several requests (callers sharing a single-flight future,
# a module-level instance), and each of them logs its own traceback.
_LOGGED = "__heygen_conventions_logged__"


def mark_logged(exc: BaseException, request: object = None) -> None:
    """Mark ``exc`` as logged, by the request whose ``scope["state"]`` is ``request``."""
    mark = True if request is None else request
    try:
        setattr(exc, _LOGGED, mark)
    except Exception:
        try:
            # A frozen dataclass exception refuses setattr but not the base one.
            object.__setattr__(exc, _LOGGED, mark)
        except Exception:  # pragma: no cover - an exception refusing attributes is logged twice
            return


def was_logged(exc: BaseException | None, request: object = None) -> bool:
    """Whether ``exc`` was logged: by that request, or (``request`` None) by any."""
    try:
        if exc is None:
            return False
        mark = getattr(exc, _LOGGED, None)
        if mark is None:
            return False
        return request is None or mark is request
    except Exception:
        return False
