"""RequestContextMiddleware: one id per request on the header, the error body and every line."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import structlog
from fastapi import BackgroundTasks, Depends, FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.responses import Response
from starlette.testclient import WebSocketDenialResponse

from heygen_conventions import (
    NotFoundError,
    RequestContextMiddleware,
    Settings,
    _log_pipeline,
    bind_request_context,
    get_logger,
    get_request_context,
    install_exception_handlers,
    setup_app,
)
from heygen_conventions._context import new_request_id
from heygen_conventions._log_pipeline import Pipeline, iso_timestamp
from heygen_conventions.logging import _SINK, DEFAULT_REDACTED_KEYS
from tests.fixtures.logging import LogOutput

NEW_ID = re.compile(r"^[0-9a-f]{32}$")
SECRET = "db password is hunter2"

log = get_logger("tests.routes")


def current_user_sync() -> str:
    # A sync dependency: FastAPI runs it in a threadpool.
    bind_request_context(user_id="u-42")
    logging.getLogger("tests.deps").info("user loaded")
    return "u-42"


def make_app(**middleware_options: Any) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/videos/{video_id}")
    async def get_video(video_id: str, user: str = Depends(current_user_sync)) -> dict[str, str]:
        log.info("loading video", video_id=video_id)
        logging.getLogger("tests.stdlib").info("stdlib line in the route")
        return {"id": video_id, "user": user}

    @app.get("/sync")
    def sync_route() -> dict[str, bool]:
        logging.getLogger("tests.stdlib").info("from a threadpool route")
        return {"ok": True}

    @app.get("/missing")
    async def missing() -> None:
        log.info("about to fail")
        raise NotFoundError("Video not found")

    @app.get("/boom")
    async def boom() -> None:
        log.info("about to crash")
        raise RuntimeError(SECRET)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks(), status_code=206)

    @app.get("/stream-boom")
    async def stream_boom(user: str = Depends(current_user_sync)) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            raise RuntimeError(SECRET)

        return StreamingResponse(chunks())

    app.add_middleware(RequestContextMiddleware, **middleware_options)
    return app


def request_lines(log_output: LogOutput, request_id: str) -> list[dict[str, Any]]:
    return [line for line in log_output.lines() if line.get("request_id") == request_id]


def test_duration_is_the_response_time_not_the_background_tasks(log_output: LogOutput) -> None:
    app = make_app()

    @app.get("/with-task")
    async def with_task(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(time.sleep, 0.3)  # runs after the response is complete
        return {"ok": True}

    with TestClient(app) as client:
        assert client.get("/with-task").status_code == 200
    access = log_output.one(event="request finished")
    assert access["duration_ms"] < 250, access


def test_access_line_has_the_request_facts(log_output: LogOutput) -> None:
    with TestClient(make_app()) as client:
        response = client.get("/videos/v1?token=query-secret")
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert NEW_ID.match(request_id)
    assert uuid.UUID(hex=request_id).version == 4
    access = log_output.one(event="request finished")
    assert access["logger"] == "heygen_conventions.access"
    assert access["request_id"] == request_id
    assert (access["method"], access["path"], access["status_code"]) == ("GET", "/videos/v1", 200)
    assert isinstance(access["duration_ms"], float)
    assert access["duration_ms"] >= 0
    assert access["client"].startswith("testclient:")
    assert access["user_id"] == "u-42"  # bound later, from a threadpool dependency
    assert "query-secret" not in log_output.text


def test_every_line_of_a_request_carries_its_id(log_output: LogOutput) -> None:
    with TestClient(make_app()) as client:
        response = client.get("/videos/v1", headers={"X-Request-ID": "req-abc.1_2"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-abc.1_2"
    events = {line["event"] for line in request_lines(log_output, "req-abc.1_2")}
    assert {
        "user loaded",  # stdlib, in the threadpool dependency
        "loading video",  # structlog, in the route
        "stdlib line in the route",
        "request finished",
    } <= events
    sync = TestClient(make_app()).get("/sync", headers={"X-Request-ID": "req-sync"})
    assert sync.status_code == 200, sync.text
    assert log_output.one(event="from a threadpool route")["request_id"] == "req-sync"


@pytest.mark.parametrize("format", ["envelope", "problem"])
def test_app_errors_carry_the_same_id_on_header_body_and_lines(
    log_output: LogOutput, format: str
) -> None:
    app = FastAPI()
    install_exception_handlers(app, format=format)  # type: ignore[arg-type]

    @app.get("/missing")
    async def missing() -> None:
        raise NotFoundError("Video not found")

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).get("/missing")
    assert response.status_code == 404, response.text
    request_id = response.headers["x-request-id"]
    body = response.json()
    body_id = body["metadata"]["request_id"] if format == "envelope" else body["request_id"]
    assert body_id == request_id
    handled = log_output.one(logger="heygen_conventions.errors")
    assert (handled["request_id"], handled["status_code"], handled["error_code"]) == (
        request_id,
        404,
        "not_found",
    )
    assert log_output.one(event="request finished")["status_code"] == 404


def test_unhandled_errors_answer_500_with_the_header_and_one_structured_traceback(
    log_output: LogOutput,
) -> None:
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert response.status_code == 500, response.text
    assert response.headers["x-request-id"] == "req-boom"
    assert response.json()["metadata"]["request_id"] == "req-boom"
    assert SECRET not in response.text
    tracebacks = [line for line in log_output.lines() if "exception" in line]
    assert len(tracebacks) == 1, log_output.text
    (line,) = tracebacks
    assert line["logger"] == "heygen_conventions.errors"
    assert line["level"] == "error"
    assert line["request_id"] == "req-boom"
    (stack,) = line["exception"]
    assert stack["exc_type"] == "RuntimeError"
    assert stack["frames"][-1]["name"] == "boom"
    access = log_output.one(event="request finished")
    assert (access["request_id"], access["status_code"]) == ("req-boom", 500)
    assert access["error"] == "RuntimeError"


def test_a_crash_after_the_response_started_is_logged_once_with_the_request_context(
    log_output: LogOutput,
) -> None:
    with pytest.raises(RuntimeError) as raised, TestClient(make_app()) as client:
        client.get("/stream-boom", headers={"X-Request-ID": "req-late"})
    # What uvicorn does with the exception the app let out: log it once more.
    logging.getLogger("uvicorn.error").error(
        "Exception in ASGI application\n", exc_info=raised.value
    )
    tracebacks = [line for line in log_output.lines() if "exception" in line]
    assert len(tracebacks) == 1, log_output.text
    (line,) = tracebacks
    assert (line["request_id"], line["user_id"], line["path"]) == (
        "req-late",
        "u-42",
        "/stream-boom",
    )
    assert line["client"].startswith("testclient:")
    assert line["exception"][0]["exc_type"] == "RuntimeError"
    access = log_output.one(event="request finished")
    # The status the client was sent, and the failure that cut the body short.
    assert (access["request_id"], access["status_code"]) == ("req-late", 200)
    assert access["error"] == "RuntimeError"


@pytest.mark.parametrize(
    "bad",
    [
        b"two\nlines",
        b"\x1b[31mred\x1b[0m",
        b"x" * 10_240,
        b"\xff\xfe\xfd",
        b"has space",
        b"",
        "caf\u00e9".encode(),
    ],
)
def test_unsafe_incoming_ids_are_replaced_and_never_logged(
    log_output: LogOutput, bad: bytes
) -> None:
    client = TestClient(make_app())
    response = client.get("/videos/v1", headers=[(b"x-request-id", bad)])
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert NEW_ID.match(request_id)
    lines = log_output.lines()
    assert lines
    assert all(line.get("request_id") in (None, request_id) for line in lines)
    if bad:
        assert bad.decode("latin-1") not in log_output.stream.getvalue().decode("latin-1")


def test_incoming_ids_can_be_ignored(log_output: LogOutput) -> None:
    response = TestClient(make_app(trust_incoming=False)).get(
        "/videos/v1", headers={"X-Request-ID": "req-from-client"}
    )
    assert NEW_ID.match(response.headers["x-request-id"])
    assert "req-from-client" not in log_output.text


def test_the_header_name_is_configurable(log_output: LogOutput) -> None:
    app = make_app(header="X-Correlation-ID")
    response = TestClient(app).get("/missing", headers={"X-Correlation-ID": "corr-1"})
    assert response.status_code == 404, response.text
    assert response.headers["x-correlation-id"] == "corr-1"
    assert "x-request-id" not in response.headers
    assert response.json()["metadata"]["request_id"] == "corr-1"
    assert log_output.one(event="request finished")["request_id"] == "corr-1"


def test_a_request_id_set_by_the_route_is_replaced_not_duplicated(log_output: LogOutput) -> None:
    app = FastAPI()

    @app.get("/")
    async def root() -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({}, headers={"X-Request-ID": "from-route"})

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).get("/", headers={"X-Request-ID": "req-1"})
    assert response.headers.get_list("x-request-id") == ["req-1"]


def test_streaming_responses_log_their_status(log_output: LogOutput) -> None:
    response = TestClient(make_app()).get("/stream")
    assert response.status_code == 206
    assert response.content == b"ab"
    access = log_output.one(event="request finished")
    assert access["status_code"] == 206
    assert "error" not in access


async def test_concurrent_requests_never_see_each_others_context(log_output: LogOutput) -> None:
    app = FastAPI()
    both_inside = asyncio.Barrier(2)

    @app.get("/who/{name}")
    async def who(name: str) -> dict[str, str]:
        bind_request_context(user_id=name)
        await both_inside.wait()  # both requests are in flight at this point
        log.info("inside", name=name)
        await asyncio.sleep(0)
        return {"context_user": get_request_context()["user_id"]}

    app.add_middleware(RequestContextMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first, second = await asyncio.gather(
            client.get("/who/alice", headers={"X-Request-ID": "req-alice"}),
            client.get("/who/bob", headers={"X-Request-ID": "req-bob"}),
        )
    assert first.json() == {"context_user": "alice"}
    assert second.json() == {"context_user": "bob"}
    for name in ("alice", "bob"):
        lines = request_lines(log_output, f"req-{name}")
        assert {line["event"] for line in lines} == {"inside", "request finished"}
        assert {line["user_id"] for line in lines} == {name}
        assert log_output.one(event="inside", name=name)["request_id"] == f"req-{name}"


async def test_the_context_is_cleared_after_each_request_on_the_same_task(
    log_output: LogOutput,
) -> None:
    app = FastAPI()

    @app.get("/login")
    async def login() -> None:
        bind_request_context(user_id="u-1")

    @app.get("/anonymous")
    async def anonymous() -> dict[str, Any]:
        return dict(get_request_context())

    app.add_middleware(RequestContextMiddleware)
    # ASGITransport runs the app in the caller's task: no task boundary resets anything.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/login")
        assert get_request_context() == {}
        second = await client.get("/anonymous")
    assert "user_id" not in second.json()
    assert second.json()["request_id"] == second.headers["x-request-id"]
    accesses = log_output.find(event="request finished")
    assert [line.get("user_id") for line in accesses] == ["u-1", None]


def test_added_twice_it_still_writes_one_access_line(log_output: LogOutput) -> None:
    app = make_app()
    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).get("/videos/v1", headers={"X-Request-ID": "req-twice"})
    assert response.headers.get_list("x-request-id") == ["req-twice"]
    assert len(log_output.find(event="request finished")) == 1


def test_access_line_can_be_turned_off(log_output: LogOutput) -> None:
    response = TestClient(make_app(access_log=False)).get("/videos/v1")
    assert response.status_code == 200, response.text
    assert not log_output.find(event="request finished")
    assert log_output.one(event="loading video")["request_id"] == response.headers["x-request-id"]


def test_without_error_handlers_a_crash_is_still_logged_as_500(log_output: LogOutput) -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    app.add_middleware(RequestContextMiddleware)
    with pytest.raises(RuntimeError, match="unhandled"):
        TestClient(app).get("/boom", headers={"X-Request-ID": "req-raw"})
    access = log_output.one(event="request finished")
    assert (access["request_id"], access["status_code"]) == ("req-raw", 500)
    assert get_request_context() == {}


def test_lifespan_passes_through_and_websockets_get_an_id(log_output: LogOutput) -> None:
    started: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        log.info("socket open")
        await websocket.send_json(dict(get_request_context()))
        await websocket.close()

    app.add_middleware(RequestContextMiddleware)
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers={"X-Request-ID": "req-ws"}) as socket,
    ):
        context = socket.receive_json()
    assert started == [True]
    assert context["request_id"] == "req-ws"
    assert context["path"] == "/ws"
    assert log_output.one(event="socket open")["request_id"] == "req-ws"
    assert not log_output.find(event="request finished")


def test_a_websocket_crash_is_logged_once_with_its_request_id(log_output: LogOutput) -> None:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        raise RuntimeError(SECRET)

    app.add_middleware(RequestContextMiddleware)
    with (
        pytest.raises(RuntimeError) as raised,
        TestClient(app).websocket_connect("/ws", headers={"X-Request-ID": "req-ws"}) as socket,
    ):
        socket.receive_text()
    logging.getLogger("uvicorn.error").error(
        "Exception in ASGI application\n", exc_info=raised.value
    )
    tracebacks = [line for line in log_output.lines() if "exception" in line]
    assert len(tracebacks) == 1, log_output.text
    assert (tracebacks[0]["request_id"], tracebacks[0]["path"]) == ("req-ws", "/ws")


def access_lines(log_output: LogOutput, **options: Any) -> list[dict[str, Any]]:
    """The access line of one request binding a secret and a plain value, without timings."""
    log_output.configure(level="DEBUG", **options)
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, bool]:
        bind_request_context(session_token="s3cr3t", note="Bearer abc.def", tries=2)
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).get("/items", headers={"X-Request-ID": "req-direct"})
    assert response.status_code == 200, response.text
    return [
        {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms")}
        for line in log_output.find(event="request finished")
    ]


def test_the_direct_access_line_is_the_line_the_chain_renders(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = access_lines(log_output, service="videos")
    assert direct == [
        {
            "request_id": "req-direct",
            "method": "GET",
            "path": "/items",
            "client": direct[0]["client"],
            "session_token": "[REDACTED]",
            "note": "Bearer [REDACTED]",
            "tries": 2,
            "logger": "heygen_conventions.access",
            "status_code": 200,
            "event": "request finished",
            "level": "info",
            "service": "videos",
        }
    ]
    original_init = Pipeline.__init__

    def chain_only(self: Pipeline, **kwargs: Any) -> None:
        original_init(self, **kwargs)
        self._direct_access = False

    monkeypatch.setattr(Pipeline, "__init__", chain_only)
    log_output.stream.seek(0)
    log_output.stream.truncate()
    chained = access_lines(log_output, service="videos")
    assert chained == direct
    assert [list(line) for line in chained] == [list(line) for line in direct]


def test_access_line_masks_every_spelling_of_a_secret_bound_to_the_request(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pw-7f2a"
    bound = {
        "accessToken": password,
        "X-Auth-Token": password,
        "apiKey": password,
        "session_id": password,
        "credentials": {"user": "bob", "password_hash": password},
        "upstream": f"redis://:{password}@cache:6379/0",
        "header": f"Authorization: Basic {password}",
        "reply": f"Set-Cookie: sid={password}; Path=/",
        "token_type": "bearer",
        "max_tokens": 4096,
    }

    def lines() -> list[dict[str, Any]]:
        log_output.configure(level="DEBUG")
        app = FastAPI()

        @app.get("/items")
        async def items() -> dict[str, bool]:
            bind_request_context(**bound)
            return {"ok": True}

        app.add_middleware(RequestContextMiddleware)
        assert TestClient(app).get("/items").status_code == 200
        return [
            {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms", "client")}
            for line in log_output.find(event="request finished")
        ]

    (direct,) = lines()
    assert password not in log_output.text
    assert {key: direct[key] for key in bound} == {
        "accessToken": "[REDACTED]",
        "X-Auth-Token": "[REDACTED]",
        "apiKey": "[REDACTED]",
        "session_id": "[REDACTED]",
        "credentials": "[REDACTED]",
        "upstream": "redis://:[REDACTED]@cache:6379/0",
        "header": "Authorization: Basic [REDACTED]",
        "reply": "Set-Cookie: [REDACTED]",
        "token_type": "bearer",
        "max_tokens": 4096,
    }
    original_init = Pipeline.__init__

    def chain_only(self: Pipeline, **kwargs: Any) -> None:
        original_init(self, **kwargs)
        self._direct_access = False

    monkeypatch.setattr(Pipeline, "__init__", chain_only)
    log_output.stream.seek(0)
    log_output.stream.truncate()
    chained = lines()
    assert password not in log_output.text
    assert chained == [{**direct, "request_id": chained[0]["request_id"]}]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"redact": [*DEFAULT_REDACTED_KEYS, "client"]}, {"client": "[REDACTED]"}),
        ({"redact": [*DEFAULT_REDACTED_KEYS, "event"]}, {"event": "[REDACTED]"}),
        ({"processors": [lambda _, __, event: {**event, "extra": 1}]}, {"extra": 1}),
    ],
)
def test_access_lines_keep_redaction_and_extra_processors(
    log_output: LogOutput, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    if expected.get("event") == "[REDACTED]":
        log_output.configure(level="DEBUG", **options)
        TestClient(make_app()).get("/sync")
        line = log_output.one(logger="heygen_conventions.access")
    else:
        (line,) = access_lines(log_output, **options)
    assert line["session_token" if "session_token" in line else "event"] == "[REDACTED]"
    assert {k: line[k] for k in expected} == expected


def test_a_processor_can_drop_the_access_line(log_output: LogOutput) -> None:
    def drop_access(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "request finished":
            raise structlog.DropEvent
        return event

    log_output.configure(level="DEBUG", processors=[drop_access])
    TestClient(make_app()).get("/videos/v1")
    assert log_output.find(event="loading video")
    assert not log_output.find(event="request finished")


def test_access_line_follows_level_console_and_structlog_context(log_output: LogOutput) -> None:
    log_output.configure(level="WARNING")
    TestClient(make_app()).get("/videos/v1")
    assert not log_output.text

    log_output.configure(level="INFO", json=False)
    TestClient(make_app()).get("/videos/v1", headers={"X-Request-ID": "req-console"})
    assert "request finished" in log_output.text
    assert "req-console" in log_output.text

    log_output.stream.seek(0)
    log_output.stream.truncate()
    log_output.configure(level="INFO")
    structlog.contextvars.bind_contextvars(tenant="t-1")
    try:
        TestClient(make_app()).get("/videos/v1")
    finally:
        structlog.contextvars.clear_contextvars()
    assert log_output.one(event="request finished")["tenant"] == "t-1"


@pytest.mark.parametrize(
    ("key", "bound", "logged"),
    [
        ("timestamp", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z"),  # kept
        # Not the middleware's own id any more: redacted like any other value.
        ("request_id", "Bearer abc.def.ghi", "Bearer [REDACTED]"),
    ],
)
def test_values_the_app_binds_over_the_middlewares_reach_the_access_line(
    log_output: LogOutput, key: str, bound: str, logged: str
) -> None:
    app = FastAPI()

    @app.get("/bound")
    async def rebinding() -> None:
        bind_request_context(**{key: bound})

    app.add_middleware(RequestContextMiddleware)
    TestClient(app).get("/bound")
    assert log_output.one(event="request finished")[key] == logged


@pytest.mark.parametrize("direct", [True, False])
def test_a_failing_access_line_is_reported_not_raised(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    pipeline = _SINK.pipeline
    monkeypatch.setattr(pipeline, "_direct_access", direct)
    monkeypatch.setattr(pipeline, "_template_access", False)  # it renders with orjson itself

    def broken(*args: Any) -> Any:
        raise ValueError("broken")

    monkeypatch.setattr(_log_pipeline, "dumps", broken)
    response = TestClient(make_app(access_log=True)).get("/missing")
    assert response.status_code == 404, response.text
    failure = log_output.find(event="Log call failed")[-1]
    assert (failure["failed_logger"], failure["error_type"]) == (
        "heygen_conventions.access",
        "ValueError",
    )


def test_the_access_line_names_the_failure_on_every_path(log_output: LogOutput) -> None:
    # A structlog context variable sends the line through the whole chain.
    structlog.contextvars.bind_contextvars(tenant="t-1")
    try:
        with TestClient(make_app(), raise_server_exceptions=False) as client:
            client.get("/boom")
    finally:
        structlog.contextvars.clear_contextvars()
    access = log_output.one(event="request finished")
    assert (access["tenant"], access["status_code"], access["error"]) == (
        "t-1",
        500,
        "RuntimeError",
    )


async def test_a_cancelled_request_is_named_and_still_cancelled(log_output: LogOutput) -> None:
    async def endless(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    app = RequestContextMiddleware(endless)
    scope = {"type": "http", "method": "GET", "path": "/slow", "headers": [], "client": None}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    access = log_output.one(event="request finished")
    assert (access["path"], access["status_code"], access["error"]) == (
        "/slow",
        None,
        "CancelledError",
    )
    assert not [line for line in log_output.lines() if "exception" in line]


def test_response_headers_given_as_any_iterable_are_all_kept(log_output: LogOutput) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = (
            (name, value) for name, value in [(b"content-type", b"text/plain"), (b"x-custom", b"1")]
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    response = TestClient(RequestContextMiddleware(app)).get("/", headers={"X-Request-ID": "req-g"})
    assert response.text == "ok"
    assert (response.headers["content-type"], response.headers["x-custom"]) == ("text/plain", "1")
    assert response.headers["x-request-id"] == "req-g"


def test_a_jwt_sent_as_the_request_id_is_masked_in_every_line(log_output: LogOutput) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"  # safe characters only
    response = TestClient(make_app()).get("/videos/v1", headers={"X-Request-ID": token})
    assert response.headers["x-request-id"] == token  # the client's own value, echoed
    assert token not in log_output.text
    assert log_output.one(event="request finished")["request_id"] == "[REDACTED]"
    assert log_output.one(event="loading video")["request_id"] == "[REDACTED]"


async def test_a_hostile_request_path_does_not_block_the_event_loop(log_output: LogOutput) -> None:
    # The path is in the context of every line of the request, scrubbed on
    # each: a hostile one must not hold the event loop (it did for seconds).
    app = FastAPI()
    install_exception_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        started = time.perf_counter()
        response = await client.get("/" + "eyJ-" * 16_000)
        elapsed = time.perf_counter() - started
    assert response.status_code == 404
    assert log_output.one(event="request finished")["status_code"] == 404
    assert elapsed < 1.0


async def test_a_failure_shared_by_concurrent_requests_is_logged_for_each_of_them(
    log_output: LogOutput,
) -> None:
    # Single flight (as the library's own cache read-through does): callers of
    # the same key await one future and all re-raise its one exception instance.
    app = FastAPI()
    install_exception_handlers(app)
    flight: asyncio.Future[Any] | None = None

    @app.get("/shared")
    async def shared() -> Any:
        nonlocal flight
        if flight is None:
            flight = asyncio.get_running_loop().create_future()
            await asyncio.sleep(0.01)  # the second request joins meanwhile
            flight.set_exception(RuntimeError("loader failed"))
        return await asyncio.shield(flight)

    app.add_middleware(RequestContextMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first, second = await asyncio.gather(
            client.get("/shared", headers={"X-Request-ID": "req-1"}),
            client.get("/shared", headers={"X-Request-ID": "req-2"}),
        )
    assert (first.status_code, second.status_code) == (500, 500)
    for request_id in ("req-1", "req-2"):
        access = log_output.one(event="request finished", request_id=request_id)
        assert access["error"] == "RuntimeError"
        # Each failed request has its traceback, under its own id.
        tracebacks = log_output.find(event="Unhandled exception", request_id=request_id)
        assert len(tracebacks) == 1, log_output.text
    # And uvicorn's copy of an exception that escaped is still dropped.
    logging.getLogger("uvicorn.error").error(
        "Exception in ASGI application\n", exc_info=flight.exception() if flight else None
    )
    assert len([line for line in log_output.lines() if "exception" in line]) == 2


def test_a_websocket_denial_response_carries_the_request_id(log_output: LogOutput) -> None:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.send_denial_response(Response("go away", status_code=403))

    app.add_middleware(RequestContextMiddleware)
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        TestClient(app).websocket_connect("/ws", headers={"X-Request-ID": "req-ws"}),
    ):
        pass
    assert denied.value.status_code == 403
    assert denied.value.headers.get("x-request-id") == "req-ws"


class FailingOuterMiddleware:
    """A middleware the application adds after setup_app that fails at once."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("rate limiter down")
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({"trust_request_id": False}, {"X-Request-ID": "client-chosen"}),
        ({"request_id_header": "X-Correlation-ID"}, {"X-Request-ID": "client-chosen"}),
    ],
)
def test_the_500_of_a_failure_outside_the_middleware_keeps_the_request_id_settings(
    log_output: LogOutput, options: dict[str, Any], sent: dict[str, str]
) -> None:
    app = FastAPI()
    setup_app(app, Settings(), configure_logs=False, **options)
    app.add_middleware(FailingOuterMiddleware)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/anything", headers=sent)
    assert response.status_code == 500
    header = options.get("request_id_header", "X-Request-ID")
    request_id = response.headers[header]
    assert request_id != "client-chosen"
    assert response.json()["metadata"]["request_id"] == request_id
    assert "client-chosen" not in log_output.text
    assert log_output.one(event="Unhandled exception")["request_id"] == request_id


def test_a_request_binding_nothing_logs_the_line_the_chain_renders(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The access line of a request that bound nothing more than the middleware
    # did is filled into a template; it must match what the processors render,
    # key order included, for plain values and for values holding secrets.
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl"

    def lines() -> list[dict[str, Any]]:
        log_output.stream.seek(0)
        log_output.stream.truncate()
        log_output.configure(level="DEBUG", service="videos")
        app = FastAPI()
        install_exception_handlers(app)

        @app.get("/items")
        async def items() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/reset/{token}")
        async def reset(token: str) -> dict[str, bool]:
            return {"ok": True}

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        app.add_middleware(RequestContextMiddleware)
        client = TestClient(app, raise_server_exceptions=False)
        for _ in range(3):  # then known to be clean, then with their JSON texts in the table
            assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
            assert client.get(f"/reset/{jwt}", headers={"X-Request-ID": "req-2"}).status_code == 200
            assert client.get("/items", headers={"X-Request-ID": jwt}).status_code == 200
            assert client.get("/boom", headers={"X-Request-ID": "req-3"}).status_code == 500
            assert client.get("/items").status_code == 200
        return [
            {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms")}
            | {"timestamp": type(line["timestamp"]), "duration_ms": type(line["duration_ms"])}
            for line in log_output.find(event="request finished")
        ]

    direct = lines()
    assert jwt not in log_output.text
    assert [(line["request_id"], line["path"]) for line in direct[:4]] == [
        ("req-1", "/items"),
        ("req-2", "/reset/[REDACTED]"),
        ("[REDACTED]", "/items"),
        ("req-3", "/boom"),
    ]
    assert direct[3]["error"] == "RuntimeError"
    assert direct[3]["status_code"] == 500
    assert NEW_ID.match(direct[4]["request_id"])
    assert direct[:4] == direct[5:9] == direct[10:14]
    assert all(line["service"] == "videos" for line in direct)
    original_init = Pipeline.__init__

    def chain_only(self: Pipeline, **kwargs: Any) -> None:
        original_init(self, **kwargs)
        self._direct_access = False
        self._template_access = False

    monkeypatch.setattr(Pipeline, "__init__", chain_only)
    chained = lines()
    assert jwt not in log_output.text
    for line in (*direct, *chained):
        if NEW_ID.match(line["request_id"]):
            line["request_id"] = "new"
    assert chained == direct
    assert [list(line) for line in chained] == [list(line) for line in direct]


@pytest.mark.parametrize("key", ["client", "path", "method", "request_id"])
def test_a_middleware_key_named_secret_is_masked_when_nothing_else_is_bound(
    log_output: LogOutput, key: str
) -> None:
    log_output.configure(level="DEBUG", redact=[*DEFAULT_REDACTED_KEYS, key])
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    client = TestClient(app)
    for _ in range(2):
        assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
    lines = log_output.find(event="request finished")
    assert [line[key] for line in lines] == ["[REDACTED]", "[REDACTED]"]


def test_a_middleware_key_the_application_bound_again_keeps_its_place_in_the_access_line(
    log_output: LogOutput,
) -> None:
    # The access line lists the context in its own order, whichever way it is
    # rendered: a key the application removed and bound again (here the path,
    # replaced by its route template) comes after the others on every request,
    # not only while its value is new to the redactor.
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, bool]:
        context = get_request_context()
        del context["path"]
        bind_request_context(path="/items/{item_id}")
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    client = TestClient(app)
    for _ in range(3):
        assert client.get("/items/1").status_code == 200
    orders = [
        list(line)[:4] for line in log_output.lines() if line.get("event") == "request finished"
    ]
    assert orders == [["request_id", "method", "client", "path"]] * 3


def test_an_error_access_line_lists_its_keys_in_one_order_on_every_path(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The direct path and the template put ``error`` before ``event``; the
    # processor chain (taken while structlog's contextvars hold a value, or
    # with processors of the application's) must not put it after.
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(RequestContextMiddleware)
    client = TestClient(app, raise_server_exceptions=False)
    for _ in range(2):  # the direct path or the template
        assert client.get("/boom", headers={"X-Request-ID": "req-1"}).status_code == 500
    monkeypatch.setattr(_SINK.pipeline, "_direct_access", False)  # the chain
    monkeypatch.setattr(_SINK.pipeline, "_template_access", False)
    assert client.get("/boom", headers={"X-Request-ID": "req-1"}).status_code == 500
    orders = [list(line) for line in log_output.find(event="request finished")]
    assert len(orders) == 3
    assert orders[1] == orders[0]
    assert orders[2] == orders[0]


@pytest.mark.parametrize("headers", [{"X-Request-ID": "req-1"}, {}])
def test_a_request_id_named_secret_is_masked_on_the_direct_path(
    log_output: LogOutput, headers: dict[str, str]
) -> None:
    log_output.configure(level="DEBUG", redact=[*DEFAULT_REDACTED_KEYS, "request_id"])
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).get("/items", headers=headers)
    assert response.status_code == 200
    assert log_output.one(event="request finished")["request_id"] == "[REDACTED]"
    assert response.headers["X-Request-ID"] not in log_output.text


async def test_each_request_logs_its_own_connections_client_address(
    log_output: LogOutput,
) -> None:
    # The address text is kept per connection (the server's one tuple): a request
    # on another connection, or with no client, must never show a stale one.
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    app = RequestContextMiddleware(ok)
    first, second = ("10.0.0.1", 1001), ("10.0.0.2", 1002)
    for client in (first, first, second, None, first, ("10.0.0.1", 1001)):
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": client}
        await app(scope, receive, send)
    addresses = [line["client"] for line in log_output.find(event="request finished")]
    assert addresses == [
        "10.0.0.1:1001",
        "10.0.0.1:1001",
        "10.0.0.2:1002",
        None,
        "10.0.0.1:1001",
        "10.0.0.1:1001",
    ]


ODD_TEXTS = [
    "/items",
    '/say/"hi"',
    "/back\\slash",
    "/ctl/\x01\x1f\x7f",
    "/caf\u00e9/\u65e5\u672c",
    "/emoji/\U0001f600",
    "/line\u2028sep",
    "/lone/\udc80",  # a surrogate: orjson refuses it, the line still goes out
    "",
]


@pytest.mark.parametrize(
    ("service", "now"),
    [
        (None, 1_767_225_600.25),
        ('videos "eu"', 1_767_225_600.25),
        # A second's first and last microsecond, and a time past its last whole one.
        (None, 1_767_225_600.0),
        (None, 1_767_225_599.999999),
        (None, 1_767_225_599.9999996),
    ],
)
def test_the_access_line_as_text_is_byte_for_byte_the_line_the_chain_renders(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, service: str | None, now: float
) -> None:
    # A request that bound nothing more than the middleware did gets its line
    # as one formatted string; every path must write the same bytes, whatever
    # the method, path, client, status, duration and time.
    monkeypatch.setattr(time, "time", lambda: now)
    log_output.configure(level="DEBUG", service=service)
    pipeline = _SINK.pipeline
    request_id = "0123456789abcdef0123456789abcdef"
    cases = [
        (method, path, client, status, duration_us)
        for method, path, client in [
            ("GET", "/items", "127.0.0.1:50000"),
            ("PATCH", "/items", None),
            ("GET", "/items", "[::1]:8080"),
            ('M"X', "/items", "client\\odd"),
            *(("GET", path, "127.0.0.1:1") for path in ODD_TEXTS),
        ]
        for status, duration_us in [
            (200, 0), (204, 1), (500, 999), (101, 1_000), (999, 999_999), (0, 120_500),
            (1000, 5), (-1, 5), (None, 5), (200, 1_000_000), (200, 4_000_000_123), (200, -3),
        ]
    ]  # fmt: skip

    def render(direct: bool, template: bool) -> list[bytes]:
        monkeypatch.setattr(pipeline, "_direct_access", direct)
        monkeypatch.setattr(pipeline, "_template_access", template)
        rendered = []
        for method, path, client, status, duration_us in cases:
            context = {"request_id": request_id, "method": method, "path": path, "client": client}
            for _ in range(3):  # then known to be clean, then with their JSON texts in the table
                log_output.stream.seek(0)
                log_output.stream.truncate()
                pipeline.access_line(context, status, duration_us, None, request_id, True)
            rendered.append(log_output.stream.getvalue())
        return rendered

    as_text = render(direct=True, template=True)
    assert len(pipeline._json_texts) > 1, "the text path was never taken"
    assert as_text == render(direct=True, template=False)
    assert as_text == render(direct=False, template=False)
    for line, (_, path, _, status, duration_us) in zip(as_text, cases, strict=True):
        parsed = orjson.loads(line)
        assert parsed["duration_ms"] == duration_us / 1000
        assert parsed["status_code"] == status
        assert parsed["timestamp"] == iso_timestamp(now)
        assert parsed["path"] == path.replace("\udc80", "\\udc80")
    assert (
        orjson.loads(as_text[0])["timestamp"]
        == {
            1_767_225_600.25: "2026-01-01T00:00:00.250000Z",
            1_767_225_600.0: "2026-01-01T00:00:00.000000Z",
            1_767_225_599.999999: "2025-12-31T23:59:59.999999Z",
            1_767_225_599.9999996: "2025-12-31T23:59:59.999999Z",
        }[now]
    )


def test_the_table_of_json_texts_stays_small(log_output: LogOutput) -> None:
    # Paths carrying ids are new on every request: the table of their JSON
    # text is cleared when it fills, and lines stay right after it was.
    pipeline = _SINK.pipeline
    for n in range(3000):
        context = {"request_id": "r", "method": "GET", "path": f"/v/{n}", "client": None}
        for _ in range(2):
            pipeline.access_line(context, 200, 1500, None, "r", False)
        assert len(pipeline._json_texts) <= 1025
    paths = [line["path"] for line in log_output.find(event="request finished")]
    assert paths == [f"/v/{n}" for n in range(3000) for _ in range(2)]
    assert log_output.find(event="request finished")[-1]["duration_ms"] == 1.5


def test_new_request_ids_are_random_uuid4s_never_handed_out_twice() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def work(n: int) -> None:
        for _ in range(2_000):
            made[n].append(new_request_id())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [request_id for batch in made for request_id in batch]
    assert len(set(ids)) == len(ids) == 16_000
    for request_id in ids[:500]:
        parsed = uuid.UUID(hex=request_id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == request_id
    # Every random bit varies: no byte of the 16 is stuck at one value.
    raw = [bytes.fromhex(request_id) for request_id in ids]
    assert all(len({value[i] for value in raw}) > 200 for i in range(16) if i not in (6, 8))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_forked_worker_never_hands_out_its_parent_s_request_ids() -> None:
    new_request_id()  # the parent holds a batch of unused ids
    made = []
    for _ in range(2):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(reader)
            os.write(writer, b"".join(new_request_id().encode() for _ in range(3)))
            os._exit(0)
        os.close(writer)
        data = b""
        while chunk := os.read(reader, 4096):
            data += chunk
        os.close(reader)
        os.waitpid(pid, 0)
        made += [data[i : i + 32].decode() for i in range(0, 96, 32)]
    parents = {new_request_id() for _ in range(200)}
    assert len(set(made)) == 6
    assert not parents & set(made)


def test_a_service_name_orjson_refuses_still_gets_the_chain_s_access_line(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An undecodable byte in the environment variable naming the service comes
    # in as a surrogate: configuring must not fail, and the access line as text
    # must carry the service as the chain writes it.
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    log_output.configure(level="DEBUG", service="videos-\udcff")
    pipeline = _SINK.pipeline
    request_id = "0123456789abcdef0123456789abcdef"
    context = {"request_id": request_id, "method": "GET", "path": "/items", "client": None}

    def render(direct: bool, template: bool) -> bytes:
        monkeypatch.setattr(pipeline, "_direct_access", direct)
        monkeypatch.setattr(pipeline, "_template_access", template)
        for _ in range(3):  # then known to be clean, then with their JSON texts in the table
            log_output.stream.seek(0)
            log_output.stream.truncate()
            pipeline.access_line(context, 200, 1500, None, request_id, True)
        return log_output.stream.getvalue()

    as_text = render(direct=True, template=True)
    assert len(pipeline._json_texts) > 1, "the text path was never taken"
    assert as_text == render(direct=True, template=False)
    assert as_text == render(direct=False, template=False)
    assert orjson.loads(as_text)["service"] == "videos-\\udcff"


def _written_access_line(
    log_output: LogOutput, context: dict[str, Any], request_id: str | None, *, made_here: bool
) -> bytes:
    """What the configured pipeline writes as the access line of ``context`` (200, 1.5 ms)."""
    log_output.stream.seek(0)
    log_output.stream.truncate()
    _SINK.pipeline.access_line(context, 200, 1500, None, request_id, made_here)
    return bytes(log_output.stream.getvalue())


def _listing_client() -> TestClient:
    """A client of an app whose one route logs ``listing``, behind the middleware."""
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, bool]:
        get_logger("app").info("listing")
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    return TestClient(app)


def test_a_structlog_key_bound_once_does_not_send_every_later_line_through_the_chain(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    # structlog keeps a variable for every key ever bound. Once cleared (or
    # bound in another context only) it adds nothing: the lines are the same
    # and the access line still takes its fast path. While it holds a value,
    # every line carries it.
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    client = _listing_client()
    structlog.contextvars.bind_contextvars(tenant="t-1")
    try:
        assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
    finally:
        structlog.contextvars.clear_contextvars()
    ours = ("listing", "request finished")
    lines = [line for line in log_output.lines() if line.get("event") in ours]
    assert [(line["event"], line.get("tenant")) for line in lines] == [
        ("listing", "t-1"),
        ("request finished", "t-1"),
    ]
    log_output.stream.seek(0)
    log_output.stream.truncate()

    pipeline = _SINK.pipeline
    for _ in range(3):
        assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
    assert "/items" in pipeline._json_texts, "the access line did not take its fast path"
    lines = [line for line in log_output.lines() if line.get("event") in ours]
    assert len(lines) == 6
    assert all("tenant" not in line for line in lines)
    access = [line for line in lines if line.get("event") == "request finished"]
    assert len(access) == 3
    for line in access:
        line.pop("duration_ms")
    assert access[2] == access[1] == access[0]
    assert list(access[2]) == list(access[0])

    # What the chain writes for the same request, byte for byte.
    context = {
        "request_id": "req-1",
        "method": "GET",
        "path": "/items",
        "client": "testclient:50000",
    }

    def render() -> bytes:
        return _written_access_line(log_output, context, "req-1", made_here=False)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rendered as a dict, not as the formatted string")

    # The formatted string renders no dict: with the renderers refusing, the
    # line is still written (the other paths would report a failed call).
    with monkeypatch.context() as patched:
        patched.setattr(_log_pipeline, "dumps", refuse)
        patched.setattr(_log_pipeline.orjson, "dumps", refuse)
        fast = render()
    assert orjson.loads(fast)["path"] == "/items"
    monkeypatch.setattr(pipeline, "_direct_access", False)
    monkeypatch.setattr(pipeline, "_template_access", False)
    assert render() == fast


@pytest.mark.parametrize(
    "bound",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
        'quoted "id"',
        "Bearer abc.def.ghi",
        "plain-id",
    ],
)
def test_a_request_id_the_application_binds_is_never_written_as_it_is(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    # The access line as one formatted string writes the middleware's own id
    # unescaped and unscrubbed. An id the application bound in its place is
    # masked and escaped as the chain does it, even when the method, path and
    # client already have their JSON texts in the table.
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    app = FastAPI()

    @app.get("/items")
    async def items(rebind: bool = False) -> dict[str, bool]:
        if rebind:
            bind_request_context(request_id=bound)
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    client = TestClient(app)
    pipeline = _SINK.pipeline
    for _ in range(3):  # known clean, then in the table
        assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
    assert "/items" in pipeline._json_texts, "the access line did not take its fast path"

    def render() -> str:
        log_output.stream.seek(0)
        log_output.stream.truncate()
        response = client.get("/items?rebind=true", headers={"X-Request-ID": "req-1"})
        assert response.status_code == 200
        line = log_output.one(event="request finished")
        assert line["request_id"] == pipeline.redactor.scrub(bound)
        return re.sub(r'"duration_ms":[0-9.]+', "", log_output.text)

    fast = render()
    monkeypatch.setattr(pipeline, "_direct_access", False)  # the chain
    monkeypatch.setattr(pipeline, "_template_access", False)
    assert render() == fast


@pytest.mark.parametrize("made_here", [False, True])
def test_an_access_line_without_a_request_id_says_null_on_every_path(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, made_here: bool
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    pipeline = _SINK.pipeline
    context = {"request_id": None, "method": "GET", "path": "/items", "client": None}

    warm = {**context, "request_id": "req-1"}
    for _ in range(3):  # the method, path and client known clean, then in the table
        pipeline.access_line(warm, 200, 1500, None, "req-1", False)
    assert "/items" in pipeline._json_texts, "the access line did not take its fast path"

    def render() -> bytes:
        return _written_access_line(log_output, context, None, made_here=made_here)

    fast = render()
    assert orjson.loads(fast)["request_id"] is None
    monkeypatch.setattr(pipeline, "_direct_access", False)  # the chain
    monkeypatch.setattr(pipeline, "_template_access", False)
    assert render() == fast


@pytest.mark.parametrize("value", [None, False, 0, ""])
def test_a_structlog_value_that_is_falsy_still_reaches_every_line(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, value: object
) -> None:
    # Only ``...`` means unbound: None, False, 0 and "" are values like any other.
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    client = _listing_client()
    for _ in range(3):  # the access line's table is warm before the key is bound
        assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
    log_output.stream.seek(0)
    log_output.stream.truncate()
    structlog.contextvars.bind_contextvars(tenant=value)
    try:
        assert client.get("/items", headers={"X-Request-ID": "req-1"}).status_code == 200
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [
        line for line in log_output.lines() if line.get("event") in ("listing", "request finished")
    ]
    assert [(line["event"], line.get("tenant", "absent")) for line in lines] == [
        ("listing", value),
        ("request finished", value),
    ]


def test_a_new_path_on_every_request_gets_the_formatted_line_and_secrets_do_not(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Paths that carry ids are new on every request. A clean one is written
    # as the formatted string at once, the bytes the chain writes; one that
    # holds a secret never is, and is masked.
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    pipeline = _SINK.pipeline
    request_id = new_request_id()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    cases = [
        (f"/videos/{uuid.uuid4()}", True),
        (f'/videos/{uuid.uuid4()}/"quoted"\\', True),
        (f"/reset/{jwt}", False),
        (f"/login?password=hunter2&n={uuid.uuid4()}", False),
        ("/" + "a" * 300, False),  # longer than the strings the table keeps
    ]

    def render(path: str) -> bytes:
        context = {"request_id": request_id, "method": "GET", "path": path, "client": None}
        return _written_access_line(log_output, context, request_id, made_here=True)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rendered as a dict, not as the formatted string")

    class Refusing(dict[str, Any]):
        copy = refuse

    for path, formatted in cases:
        with monkeypatch.context() as patched:
            if formatted:  # neither the template nor the chain
                patched.setattr(_log_pipeline, "dumps", refuse)
                patched.setattr(pipeline, "_access_template", Refusing())
            first = render(path)
        assert orjson.loads(first)["event"] == "request finished"
        assert (path in pipeline._json_texts) is formatted
        with monkeypatch.context() as patched:
            patched.setattr(pipeline, "_direct_access", False)
            patched.setattr(pipeline, "_template_access", False)
            assert render(path) == first
    assert jwt not in log_output.text
    assert "hunter2" not in log_output.text


@pytest.mark.parametrize(
    ("bound", "formatted"),
    [
        ({"user_id": "6f1c2b9e-9a34-4e55-8d7b-0c1e2f3a4b5c"}, True),
        ({"user_id": None}, True),
        ({"user_id": "u-1", "tenant": "t-1", 'ké"y\n': "ü\u2028"}, True),
        ({"user_id": 42, "admin": True, "beta": False}, True),
        ({"low": -(2**63), "high": 2**64 - 1}, True),
        ({"user_id": 2**64}, False),  # more than orjson writes as a number
        ({"user_id": -(2**63) - 1}, False),
        ({"ratio": 0.5}, False),  # not a str, int or bool: the chain's way
        ({"user_id": b"u-1"}, False),
        ({"user_id": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}, False),
        ({"user_id": "Bearer abc.def"}, False),
        ({"token": "plain"}, False),  # a secret key: masked
        ({"password": None}, False),
        ({"timestamp": "2020-01-01T00:00:00Z"}, False),
        ({"status_code": "bound"}, False),
        ({"service": "other"}, False),  # a static field
        ({"k\udc80": "v"}, False),
        ({"user_id": "v\udc80"}, False),
        ({"user_id": type("Sub", (str,), {})("u-1")}, False),
        ({"user_id": "x" * 300}, False),
    ],
)
def test_keys_bound_after_the_middlewares_get_the_chain_s_line(
    log_output: LogOutput,
    monkeypatch: pytest.MonkeyPatch,
    bound: dict[str, Any],
    formatted: bool,
) -> None:
    # What a request binds after the middleware (``user_id`` from the auth
    # dependency) is written in the formatted line when it can be written as
    # it is, and the line is the chain's, byte for byte, either way.
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    log_output.configure(level="DEBUG", service="videos")
    pipeline = _SINK.pipeline
    request_id = new_request_id()
    context = {
        "request_id": request_id,
        "method": "GET",
        "path": "/videos",
        "client": "10.0.0.1:5000",
        **bound,
    }

    def render() -> bytes:
        return _written_access_line(log_output, context, request_id, made_here=True)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rendered as a dict, not as the formatted string")

    render()  # the method, path and client in the table
    with monkeypatch.context() as patched:
        # Only the formatted line is written without a dict rendered.
        patched.setattr(_log_pipeline, "dumps", refuse)
        patched.setattr(_log_pipeline.orjson, "dumps", refuse)
        fast = render()
    assert (b'"event":"request finished"' in fast) is formatted, fast
    line = render()
    if formatted:
        assert line == fast
    monkeypatch.setattr(pipeline, "_direct_access", False)
    monkeypatch.setattr(pipeline, "_template_access", False)
    assert render() == line
    written = orjson.loads(line)
    assert list(written)[:4] == ["request_id", "method", "path", "client"]
    assert b"eyJzdWIiOiIxIn0" not in line
    assert b"plain" not in line


def test_a_middleware_key_removed_and_bound_again_keeps_the_chain_s_order(
    log_output: LogOutput,
) -> None:
    pipeline = _SINK.pipeline
    request_id = new_request_id()
    context = {"request_id": request_id, "method": "GET", "path": "/a", "client": None}
    context["user_id"] = "u-1"
    context["path"] = context.pop("path")  # now last
    pipeline.access_line(context, 200, 1500, None, request_id, True)
    assert list(log_output.lines()[-1])[:5] == ["request_id", "method", "client", "user_id", "path"]


class _AnySpelling(str):
    """A str equal to any spelling of itself: ``_AnySpelling("User_ID") == "user_id"``."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.lower())


class _Field(enum.StrEnum):
    USER_ID = "user_id"


def _fast_and_chain(
    monkeypatch: pytest.MonkeyPatch, log_output: LogOutput, context: dict[Any, Any]
) -> tuple[bytes, bool, bytes]:
    """The access line for ``context`` as the pipeline writes it, whether it was the
    formatted string, and the line the whole chain writes (both from one call site,
    so a rendered stack is the same)."""
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.25)
    pipeline = _SINK.pipeline
    request_id = context["request_id"]
    lines = []
    dicts_rendered = []
    original_dumps = _log_pipeline.dumps

    def counting_dumps(*args: Any, **kwargs: Any) -> Any:
        dicts_rendered.append(1)
        return original_dumps(*args, **kwargs)

    for chain in (False, True):
        with monkeypatch.context() as patched:
            patched.setattr(_log_pipeline, "dumps", counting_dumps)
            if chain:
                patched.setattr(pipeline, "_direct_access", False)
                patched.setattr(pipeline, "_template_access", False)
            log_output.stream.seek(0)
            log_output.stream.truncate()
            pipeline.access_line(context, 200, 1500, None, request_id, True)
            lines.append(bytes(log_output.stream.getvalue()))
            if not chain:
                formatted = not dicts_rendered
    return lines[0], formatted, lines[1]


def _context(**bound: Any) -> dict[Any, Any]:
    return {
        "request_id": new_request_id(),
        "method": "GET",
        "path": "/videos",
        "client": "10.0.0.1:5000",
        **bound,
    }


@pytest.mark.parametrize("value", ["v", None])
@pytest.mark.parametrize(
    "key",
    [
        "logger",
        "status_code",
        "duration_ms",
        "error",
        "event",
        "level",
        "timestamp",
        "exc_info",
        "stack_info",
    ],
)
def test_a_key_the_line_sets_or_renders_itself_takes_the_chain(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, key: str, value: str | None
) -> None:
    # ``event``, ``exc_info``, ``stack_info``...: bound in the request, each is
    # written the chain's way (overridden, rendered, dropped), never as it is.
    log_output.configure(level="DEBUG", service="videos")
    _fast_and_chain(monkeypatch, log_output, _context(user_id="u-1"))  # the tables filled
    fast, formatted, chain = _fast_and_chain(
        monkeypatch, log_output, _context(user_id="u-1", **{key: value})
    )
    assert not formatted
    assert fast == chain


@pytest.mark.parametrize(
    "bound",
    [
        {1: "a"},
        {None: "a"},
        {("t",): "a"},
        {b"user_id": "a"},
        {_Field.USER_ID: "u-1"},  # equal to the key the table holds, not a str itself
        {_AnySpelling("User_ID"): "u-1"},  # equal to "user_id", another text
        {"user_id": _AnySpelling("U-1")},  # equal to "u-1", another text
    ],
)
def test_keys_and_values_only_equal_to_those_in_the_tables_take_the_chain(
    log_output: LogOutput, monkeypatch: pytest.MonkeyPatch, bound: dict[Any, Any]
) -> None:
    # The tables are looked up by equality: only a str itself (or None) is
    # written from them, anything else the chain's way.
    log_output.configure(level="DEBUG", service="videos")
    _, formatted, _ = _fast_and_chain(monkeypatch, log_output, _context(user_id="u-1"))
    assert formatted
    fast, formatted, chain = _fast_and_chain(monkeypatch, log_output, {**_context(), **bound})
    assert not formatted
    assert fast == chain
    assert b'"event":"request finished"' in chain  # the line, not "Log call failed"
    # The first kind seen does not decide for the other.
    fast, formatted, chain = _fast_and_chain(monkeypatch, log_output, _context(user_id="u-1"))
    assert formatted
    assert fast == chain


def test_the_table_of_key_texts_stays_small(log_output: LogOutput) -> None:
    # Keys that differ on every request (an application binding ids as keys)
    # must not grow the table for good.
    pipeline = _SINK.pipeline
    for n in range(3000):
        context = {"request_id": "r", "method": "GET", "path": "/v", "client": None}
        context[f"k{n}"] = "v"
        pipeline.access_line(context, 200, 1500, None, "r", False)
        assert len(pipeline._key_texts) <= 1025
    lines = log_output.find(event="request finished")
    assert [line[f"k{n}"] for n, line in enumerate(lines)] == ["v"] * 3000


def test_structlog_contextvars_are_masked_on_every_line(log_output: LogOutput) -> None:
    client = _listing_client()
    structlog.contextvars.bind_contextvars(api_key="k-123", tenant="Bearer abc.def")
    try:
        assert client.get("/items").status_code == 200
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [
        line for line in log_output.lines() if line.get("event") in ("listing", "request finished")
    ]
    assert [(line["api_key"], line["tenant"]) for line in lines] == [
        ("[REDACTED]", "Bearer [REDACTED]"),
        ("[REDACTED]", "Bearer [REDACTED]"),
    ]
    assert "k-123" not in log_output.text


def test_structlog_context_keys_come_in_the_order_they_were_first_bound(
    log_output: LogOutput,
) -> None:
    # Not in the order of a walk over the context, which changes between
    # processes: the same line, the same key order, on every worker.
    structlog.contextvars.bind_contextvars(zeta_hc=1, alpha_hc=2)
    structlog.contextvars.bind_contextvars(mid_hc=3, alpha_hc=4)
    try:
        get_logger("app").info("ordered", own=0)
    finally:
        structlog.contextvars.clear_contextvars()
    line = log_output.one(event="ordered")
    assert [key for key in line if key.endswith("_hc") or key == "own"] == [
        "own",
        "zeta_hc",
        "alpha_hc",
        "mid_hc",
    ]
    assert line["alpha_hc"] == 4
