"""A real uvicorn process with uvicorn_log_config: every line it writes is one JSON object."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.logging import LogOutput

ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import sys

from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from heygen_conventions import (
    RequestContextMiddleware,
    get_logger,
    install_exception_handlers,
    uvicorn_log_config,
)

app = FastAPI()
install_exception_handlers(app)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    get_logger("app").info("pong", password="hunter2")
    return {"ok": True}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")


@app.get("/late-boom")
async def late_boom() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("late boom")

    return StreamingResponse(chunks())


app.add_middleware(RequestContextMiddleware)
config = uvicorn_log_config(json=True, service="e2e")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=config)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("uvicorn did not start listening within 30 s")


def test_uvicorn_own_lines_and_the_apps_lines_share_one_json_format(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script), str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_listening(port, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            ping = client.get("/ping", headers={"X-Request-ID": "req-e2e"})
            boom = client.get("/boom", headers={"X-Request-ID": "req-boom"})
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/late-boom", headers={"X-Request-ID": "req-late"})
    finally:
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert ping.status_code == 200, ping.text
    assert ping.headers["x-request-id"] == "req-e2e"
    assert boom.status_code == 500
    assert boom.headers["x-request-id"] == "req-boom"
    assert stdout == b""
    lines = [orjson.loads(line) for line in stderr.decode().splitlines()]
    assert all(isinstance(line, dict) and line["service"] == "e2e" for line in lines)
    events = [(line["logger"], line["event"]) for line in lines]
    assert ("uvicorn.error", "Application startup complete.") in events
    assert any(
        logger == "uvicorn.error" and event.startswith("Uvicorn running on")
        for logger, event in events
    )
    assert ("uvicorn.error", "Shutting down") in events
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    pong = next(line for line in lines if line["event"] == "pong")
    assert pong["request_id"] == "req-e2e"
    assert pong["password"] == "[REDACTED]"
    access = [line for line in lines if line["event"] == "request finished"]
    assert [(line["request_id"], line["status_code"]) for line in access] == [
        ("req-e2e", 200),
        ("req-boom", 500),
        ("req-late", 200),
    ]
    # One traceback per failed request, with its id; none repeated by uvicorn.
    tracebacks = [line for line in lines if "exception" in line]
    assert [line["request_id"] for line in tracebacks] == ["req-boom", "req-late"], stderr
    assert tracebacks[1]["path"] == "/late-boom"


def test_uvicorns_access_line_when_kept_does_not_log_the_query_string(
    log_output: LogOutput,
) -> None:
    log_output.configure(level="INFO", uvicorn_access=True)
    # What uvicorn's h11/httptools protocols log for "GET /callback?code=...&state=...".
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:50000",
        "GET",
        "/callback?code=oauth-code-77&state=xyz",
        "1.1",
        200,
    )
    line = log_output.one(logger="uvicorn.access")
    assert line["event"] == '127.0.0.1:50000 - "GET /callback HTTP/1.1" 200'
    assert "oauth-code-77" not in log_output.text
