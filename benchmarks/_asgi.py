"""Drive an ASGI app in-process, without sockets, so per-request costs are visible."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message


async def call(
    app: ASGIApp, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> int:
    """Send one request through ``app``; returns the status code."""
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return status


async def per_call_us(fn: Callable[[], Awaitable[Any]], *, number: int, repeat: int) -> float:
    """Median microseconds per call over ``repeat`` rounds of ``number`` calls."""
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            await fn()
        rounds.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(rounds)
