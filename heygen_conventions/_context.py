"""Request-scoped facts shared by the middleware, the error handlers and the logs."""

from __future__ import annotations

import binascii
import os
import re
import struct
from contextvars import ContextVar, Token
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


# New ids are made in batches of 64: one os.urandom call, one hexlify and one
# unpack serve 64 requests, where formatting a random number for each request
# costs over three times as much. Each id is kept as text (for the logs and
# ``request.state``) and as bytes (for the response header), so no request
# decodes its own.
_BATCH = 64
_SPLIT_BATCH = struct.Struct("32s" * _BATCH).unpack
# Byte 6 carries the UUID version (4) in its high nibble, byte 8 the RFC 4122
# variant (0b10) in its two high bits.
_VERSION_4 = bytes(byte & 0x0F | 0x40 for byte in range(256))
_RFC_4122 = bytes(byte & 0x3F | 0x80 for byte in range(256))
_unused_ids: list[tuple[str, bytes]] = []
#: Pops an unused id as ``(text, ASCII bytes)``, or raises IndexError when none
#: is left: the cheapest way in for the middleware, which then calls
#: :func:`new_request_id_pair`.
take_request_id = _unused_ids.pop


def _make_request_ids() -> None:
    data = bytearray(os.urandom(16 * _BATCH))
    data[6::16] = data[6::16].translate(_VERSION_4)
    data[8::16] = data[8::16].translate(_RFC_4122)
    raw_ids = _SPLIT_BATCH(binascii.hexlify(data))
    _unused_ids.extend(zip(map(bytes.decode, raw_ids), raw_ids, strict=True))


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    # A forked worker must not hand out the ids its parent still holds.
    os.register_at_fork(after_in_child=_unused_ids.clear)


def new_request_id_pair() -> tuple[str, bytes]:
    """A random UUID4 as 32 hex digits, as text and as ASCII bytes.

    From ``os.urandom``, as ``uuid.uuid4`` is, but made 64 at a time. Safe to
    call from any thread: each id is handed out once.
    """
    while True:
        try:
            return _unused_ids.pop()
        except IndexError:  # none left (another thread may take the new ones first)
            _make_request_ids()


def new_request_id() -> str:
    """A random UUID4 as 32 hex digits, like ``uuid.uuid4().hex``."""
    return new_request_id_pair()[0]


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


# The variable's own methods, not functions around them: the middleware calls
# both on every request. ``enter_request_context(context)`` makes ``context``
# itself (not a copy) the current request's context and returns the token
# that ``end_request_context(token)`` takes.
enter_request_context = _REQUEST_CONTEXT.set
end_request_context = _REQUEST_CONTEXT.reset


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
