"""Request-scoped facts shared by the middleware, the error handlers and the logs."""

from __future__ import annotations

import re
import uuid
from typing import Any

#: Key under ``scope["state"]`` (``request.state.request_id``) holding the request id.
REQUEST_ID_STATE_KEY = "request_id"
DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"

# An incoming id is trusted only when it cannot smuggle anything into a log
# line or a header: no whitespace, no control bytes, bounded length.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


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
    wanted = header.lower().encode("latin-1")
    found: str | None = None
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            found = safe_request_id(value)
            break
    request_id = found or new_request_id()
    state[REQUEST_ID_STATE_KEY] = request_id
    return request_id
