"""Request logging and error handling at their edges: outer middleware, body limits, hang-ups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.middleware.base import BaseHTTPMiddleware

from heygen_conventions import (
    AuthenticationError,
    RequestContextMiddleware,
    Settings,
    install_exception_handlers,
    setup_app,
)
from tests.fixtures.logging import LogOutput
from tests.test_logging_middleware import FailingOuterMiddleware as FailingBefore


class FailingAfter(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Any:
        await call_next(request)
        raise RuntimeError("audit sink down")


class Refusing(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Any:
        return JSONResponse({"detail": "no"}, status_code=401)


@pytest.mark.parametrize(
    ("middleware", "status", "error"),
    [
        (FailingBefore, 500, "RuntimeError"),
        (FailingAfter, 500, "RuntimeError"),
        (Refusing, 401, None),
    ],
)
def test_a_middleware_added_after_setup_app_still_gets_one_true_access_line(
    log_output: LogOutput, middleware: Any, status: int, error: str | None
) -> None:
    app = FastAPI()
    setup_app(app, Settings(), configure_logs=False)

    @app.get("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(middleware)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/items", headers={"X-Request-ID": "req-outer"})
    assert response.status_code == status
    assert response.headers.get("x-request-id") == "req-outer"
    access = log_output.find(event="request finished")
    assert [(line["request_id"], line["status_code"], line.get("error")) for line in access] == [
        ("req-outer", status, error)
    ], log_output.text
    tracebacks = [line for line in log_output.lines() if "exception" in line]
    assert len(tracebacks) == (1 if error else 0), log_output.text


class Body(BaseModel):
    name: str


def body_limited_app(*, with_setup_app: bool) -> FastAPI:
    app = FastAPI(max_body_size=10)
    if with_setup_app:
        setup_app(app, Settings(), configure_logs=False)
    else:
        install_exception_handlers(app)

    @app.post("/items")
    async def create(body: Body) -> dict[str, bool]:
        return {"ok": True}

    if not with_setup_app:
        app.add_middleware(RequestContextMiddleware)
    return app


@pytest.mark.parametrize("with_setup_app", [False, True])
def test_a_body_over_fastapis_limit_is_a_413_not_an_unhandled_exception(
    log_output: LogOutput, with_setup_app: bool
) -> None:
    app = body_limited_app(with_setup_app=with_setup_app)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/items", json={"name": "x" * 50}, headers={"X-Request-ID": "req-big"}
        )
    assert response.status_code == 413
    assert not log_output.find(event="Unhandled exception"), log_output.text
    access = log_output.one(event="request finished")
    assert (access["request_id"], access["status_code"], access.get("error")) == (
        "req-big",
        413,
        None,
    )
    if with_setup_app:
        assert response.headers.get("x-request-id") == "req-big"


async def test_a_client_hanging_up_mid_body_is_no_500_and_no_traceback(
    log_output: LogOutput,
) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.add_middleware(RequestContextMiddleware)
    messages = iter(
        [
            {"type": "http.request", "body": b"abc", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", b"100"), (b"x-request-id", b"req-gone")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    assert not [line for line in log_output.lines() if "exception" in line], log_output.text
    access = log_output.one(event="request finished")
    assert access["request_id"] == "req-gone"
    assert 400 <= access["status_code"] < 500, access


class Login(BaseModel):
    password: int
    token: int


def test_the_validation_line_names_every_failing_field(log_output: LogOutput) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/login")
    async def login(body: Login) -> None:
        return None

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).post("/login", json={"password": "hunter2", "token": "t0k3n"})
    assert response.status_code == 422
    assert "hunter2" not in log_output.text
    assert "t0k3n" not in log_output.text
    line = log_output.one(event="Request validation failed")
    assert line["fields"] == "body.password, body.token"


@dataclass(frozen=True)
class FrozenError(Exception):
    reason: str


def test_an_exception_refusing_attributes_is_still_logged_once(log_output: LogOutput) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            yield b"a"
            raise FrozenError("late")

        return StreamingResponse(chunks())

    app.add_middleware(RequestContextMiddleware)
    TestClient(app, raise_server_exceptions=False).get("/stream")
    assert len(log_output.find(event="Unhandled exception")) == 1, log_output.text


class RaisingAuth(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Any:
        if request.url.path == "/app-error":
            raise AuthenticationError("bad token")
        if request.url.path == "/http-exception":
            raise HTTPException(403, "blocked", headers={"X-Blocked-By": "ip"})
        return await call_next(request)


@pytest.mark.parametrize("added", ["before setup_app", "after setup_app"])
@pytest.mark.parametrize(
    ("path", "status", "header"),
    [("/app-error", 401, "www-authenticate"), ("/http-exception", 403, "x-blocked-by")],
)
def test_errors_a_middleware_raises_answer_their_own_status(
    log_output: LogOutput, added: str, path: str, status: int, header: str
) -> None:
    app = FastAPI()
    if added == "before setup_app":
        app.add_middleware(RaisingAuth)
    setup_app(app, Settings(), configure_logs=False)
    if added == "after setup_app":
        app.add_middleware(RaisingAuth)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(path, headers={"X-Request-ID": "req-mw"})
    assert response.status_code == status, response.text
    assert header in response.headers
    assert response.json()["metadata"]["request_id"] == response.headers["x-request-id"]
    assert not [line for line in log_output.lines() if "exception" in line], log_output.text
    assert log_output.one(event="request finished")["status_code"] == status
