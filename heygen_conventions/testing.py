"""Helpers for application test suites.

Plain functions and context managers, usable from any test runner; the
pytest fixtures built on them live in :mod:`heygen_conventions.pytest_plugin`
(``pytest_plugins = ["heygen_conventions.pytest_plugin"]``)::

    async def test_get_video(video_app):
        async with app_client(video_app) as client:
            token = make_token(video_app, "user-1")
            response = await client.get("/api/v1/videos/x", headers=auth_headers(token))
        assert_error(response, status=422, code="validation_error")
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import MetaData, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import Receive, Scope, Send

from heygen_conventions.auth import STATE_KEY as _AUTH_STATE_KEY
from heygen_conventions.auth import JWTAuth
from heygen_conventions.db import Database
from heygen_conventions.logging import _capture_events
from heygen_conventions.responses import CursorPage, PaginatedResponse

__all__ = [
    "ResponseLike",
    "app_client",
    "assert_error",
    "assert_ok",
    "auth_headers",
    "capture_logs",
    "isolated_database",
    "make_token",
    "override_users",
]


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Collect the log events emitted inside the block, as the pipeline produced them.

    Each event is a dict taken just before rendering: request context merged
    in, secrets already masked, ``level``, ``logger`` and ``timestamp`` set.
    Lines from :func:`get_logger` and from standard-library loggers are both
    captured, from every thread. With :func:`configure_logging` already
    called, events below its level are not captured and lines are still
    written; otherwise the block runs with a temporary DEBUG pipeline that
    writes nothing::

        with capture_logs() as logs:
            client.get("/videos/1")
        assert logs[-1]["status_code"] == 200
    """
    with _capture_events() as events:
        yield events


@asynccontextmanager
async def app_client(
    app: FastAPI, *, base_url: str = "http://testserver", headers: Mapping[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` calling ``app`` in-process, inside the app's lifespan.

    Runs in the caller's event loop, so it works with asyncpg connections
    (which belong to the loop that opened them) where Starlette's
    ``TestClient``, running the app in a loop of its own, does not.
    """
    async with app.router.lifespan_context(app) as state:
        # What the lifespan yields reaches each request's ``request.state``, a
        # shallow copy per request, as ASGI servers (and ``TestClient``) do.
        lifespan_state = dict(state or {})

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                scope = {**scope, "state": {**lifespan_state, **scope.get("state", {})}}
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers
        ) as client:
            yield client


def _auth_of(app: FastAPI) -> JWTAuth:
    auth = getattr(app.state, _AUTH_STATE_KEY, None)
    if not isinstance(auth, JWTAuth):
        raise RuntimeError("auth is not installed on this app: call setup_app(..., user_loader=)")
    return auth


def _subject_of(user: object) -> str:
    if isinstance(user, str):
        return user
    if isinstance(user, Mapping):
        return str(user["id"])
    return str(getattr(user, "id", user))


def make_token(
    app: FastAPI,
    user: object,
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    refresh: bool = False,
    **options: Any,
) -> str:
    """A token the app accepts for ``user`` (an object with ``id``, a mapping, or a subject).

    Signed with the app's own keys and rules, so it goes through the same
    verification as a real client's. ``options`` go to
    :meth:`JWTAuth.create_access_token` (``expires_in``, ``extra_claims``).

    ``roles`` only go into the token's claims: authorization reads the roles
    of the user the loader returns, so make a test user an admin through
    that user (:func:`override_users` with a user whose ``roles`` hold it).
    """
    auth = _auth_of(app)
    create = auth.create_refresh_token if refresh else auth.create_access_token
    return create(_subject_of(user), roles=roles, scopes=scopes, **options)


def auth_headers(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``."""
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def override_users(app: FastAPI, users: Iterable[object] | Mapping[str, object]) -> Iterator[None]:
    """Authenticate as these users without a user table: the loader is replaced meanwhile.

    ``users`` maps subjects to user objects, or lists objects with an ``id``
    (or mappings with ``"id"``). A subject not among them is an unknown user
    (401), as with a real loader.
    """
    by_subject = (
        {str(k): v for k, v in users.items()}
        if isinstance(users, Mapping)
        else {_subject_of(u): u for u in users}
    )

    async def load(subject: str) -> object | None:
        return by_subject.get(subject)

    auth: JWTAuth = _auth_of(app)
    previous: Callable[..., Any] = auth.user_loader
    auth.user_loader = load
    try:
        yield
    finally:
        auth.user_loader = previous


@asynccontextmanager
async def isolated_database(
    url: str | None = None, *, metadata: MetaData | None = None, **options: Any
) -> AsyncIterator[Database]:
    """A database of its own for one test, removed afterwards.

    Without ``url``: a fresh SQLite file. With a PostgreSQL ``url``: a fresh
    schema (``test_<hex>``) that the database's connections use as their
    ``search_path``, dropped afterwards. ``metadata``'s tables are created;
    ``options`` go to :class:`Database`.
    """
    options.setdefault("cursor_secret", secrets.token_bytes(32))
    if url is None or make_url(url).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="heygen-test-") as directory:
            db = Database(url or f"sqlite+aiosqlite:///{Path(directory) / 'test.db'}", **options)
            try:
                if metadata is not None:
                    await db.create_all(metadata)
                yield db
            finally:
                await db.dispose()
        return
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connect_args = dict(options.pop("connect_args", {}))
        server_settings = {**connect_args.get("server_settings", {}), "search_path": schema}
        connect_args["server_settings"] = server_settings
        db = Database(url, connect_args=connect_args, **options)
        try:
            if metadata is not None:
                await db.create_all(metadata)
            yield db
        finally:
            await db.dispose()
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await admin.dispose()


class ResponseLike(Protocol):
    """What the assertions read of a response.

    ``httpx.Response`` (from :func:`app_client`) and the responses of
    Starlette's ``TestClient`` (``httpx2.Response``) both qualify.
    """

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def assert_error(
    response: ResponseLike,
    *,
    status: int,
    code: str | None = None,
    field: str | None = None,
) -> dict[str, Any]:
    """Assert ``response`` is the library's error body with this status (and code, field).

    Works for the envelope and for problem+json. ``code`` matches the
    error's own code (``metadata.error_code``, or the problem's ``code``,
    e.g. ``"validation_error"``) or the code of any listed error. Returns the
    parsed body; a failure message carries the whole response body.
    """
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text}"
    )
    body: dict[str, Any] = response.json()
    errors: list[dict[str, Any]] = list(body.get("errors") or [])
    codes = {str(e.get("code")) for e in errors}
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        codes.add(str(body.get("code")))
    else:
        assert body.get("success") is False, f"not an error envelope: {response.text}"
        assert body.get("data") is None, f"an error envelope carries no data: {response.text}"
        codes.add(str((body.get("metadata") or {}).get("error_code")))
    if code is not None:
        assert code in codes, f"expected code {code!r}, got {sorted(codes)}: {body}"
    if field is not None:
        fields = [e.get("field") for e in errors]
        assert field in fields, f"expected an error on {field!r}, got {fields}: {body}"
    return body


def _required_fields(*models: type[BaseModel]) -> list[frozenset[str]]:
    return [
        frozenset(name for name, field in model.model_fields.items() if field.is_required())
        for model in models
    ]


# What a page always carries: PaginatedResponse's and CursorPage's required fields.
_PAGE_SHAPES = _required_fields(PaginatedResponse, CursorPage)


def _is_page(body: object) -> bool:
    return (
        isinstance(body, dict)
        and "success" not in body
        and isinstance(body.get("data"), list)
        and any(shape <= body.keys() for shape in _PAGE_SHAPES)
    )


def assert_ok(response: ResponseLike, *, status: int = 200) -> Any:
    """Assert ``response`` is a success with this status; returns its ``data``.

    A success is an :class:`APIResponse` envelope with ``success`` true, or a
    page (:class:`PaginatedResponse`, :class:`CursorPage`), which has no
    ``success`` member. For a page, ``data`` is its items; the page's other
    fields are in ``response.json()``.
    """
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text}"
    )
    body = response.json()
    if _is_page(body):
        return body.get("data")
    envelope = isinstance(body, dict) and body.get("success") is True
    assert envelope, f"not a success envelope nor a page: {response.text}"
    return body.get("data")
