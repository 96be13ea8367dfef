"""The trivial endpoint the logging benchmark serves with uvicorn, in its own process.

``BENCH_VARIANT`` picks what wraps it: ``bare`` (nothing), ``ours``
(``configure_logging`` JSON lines plus ``RequestContextMiddleware``), and for
the split of that cost ``configured`` (``configure_logging`` alone),
``silent`` (the middleware without its access line), ``header`` (a
middleware adding a fixed response header and nothing else: what echoing
an id costs the server by itself) and ``floor`` (the benchmark's minimal
id + context + header + line middleware); the peer
asgi-correlation-id as ``correlation-id`` (its middleware alone) and
``correlation-id-line`` (its middleware with its logging filter on uvicorn's
access line, the way its documentation pairs them).
Whether uvicorn writes its own access line is uvicorn's ``--no-access-log``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI

from heygen_conventions import RequestContextMiddleware, configure_logging

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


variant = os.environ.get("BENCH_VARIANT")
if variant in ("ours", "silent", "configured"):
    configure_logging(level="INFO", json=True)
if variant in ("ours", "silent"):
    app.add_middleware(RequestContextMiddleware, access_log=variant == "ours")
if variant == "floor":
    from benchmarks.bench_logging import FloorMiddleware

    app.add_middleware(FloorMiddleware)
if variant in ("correlation-id", "correlation-id-line"):
    from asgi_correlation_id import CorrelationIdFilter, CorrelationIdMiddleware
    from uvicorn.logging import AccessFormatter

    app.add_middleware(CorrelationIdMiddleware)
    if variant == "correlation-id-line":  # uvicorn's access line, carrying the id
        for handler in logging.getLogger("uvicorn.access").handlers:
            handler.addFilter(CorrelationIdFilter())
            handler.setFormatter(
                AccessFormatter(
                    '%(levelprefix)s [%(correlation_id)s] %(client_addr)s - "%(request_line)s"'
                    " %(status_code)s",
                    use_colors=False,
                )
            )
if variant == "header":

    class FixedHeader:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            def send_with_header(message: Any) -> Any:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], FIXED_HEADER]
                return send(message)

            await self.app(scope, receive, send_with_header)

    FIXED_HEADER = (b"x-request-id", b"0123456789abcdef0123456789abcdef")
    app.add_middleware(FixedHeader)
