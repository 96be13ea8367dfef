"""``python -m examples.video_app`` serves through uvicorn, configured by HEYGEN_* variables.

A smoke test of the entry point that the multi-instance and fault suites start.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples.video_app.settings import DEMO_ADMIN_PASSWORD
from tests.fixtures.cache import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "server.log"
    environment = {
        **os.environ,
        "HEYGEN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
        "HEYGEN_LOG_FORMAT": "json",
        "HEYGEN_RENDER_SECONDS": "0",
    }
    environment.pop("HEYGEN_REDIS_URL", None)
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "examples.video_app", "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            process.kill()
            process.wait(timeout=5)


def logged(log: Path, event: str, request_id: str) -> list[dict[str, object]]:
    # Complete lines only: the server may be writing the last one.
    complete = log.read_text().split("\n")[:-1]
    lines = [json.loads(line) for line in complete if line.startswith("{")]
    return [
        line
        for line in lines
        if line.get("event") == event and line.get("request_id") == request_id
    ]


def test_the_module_serves_the_seeded_api(server: tuple[str, Path]) -> None:
    base, log = server
    with httpx.Client(base_url=f"{base}/api/v1", timeout=10) as client:
        login = client.post(
            "/auth/token",
            data={"username": "admin@example.com", "password": DEMO_ADMIN_PASSWORD},
        )
        assert login.status_code == 200, login.text
        headers = {
            "Authorization": f"Bearer {login.json()['access_token']}",
            "X-Request-ID": "smoke-1",
        }
        listed = client.get("/videos", headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["total_count"] == 3
        assert listed.headers["X-Request-ID"] == "smoke-1"
    # The access line is written once the response has gone out: wait for it.
    deadline = time.monotonic() + 10
    while not (access := logged(log, "request finished", "smoke-1")):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert access[-1]["status_code"] == 200
    assert "Uvicorn running on" in log.read_text()
    assert "curl -s -X POST" in log.read_text()
