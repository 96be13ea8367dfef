"""The trivial endpoint the logging benchmark serves with uvicorn, in its own process.

``BENCH_VARIANT`` picks what wraps it: ``bare`` (nothing) or ``ours``
(``configure_logging`` JSON lines plus ``RequestContextMiddleware``).
Whether uvicorn writes its own access line is uvicorn's ``--no-access-log``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from heygen_conventions import RequestContextMiddleware, configure_logging

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


if os.environ.get("BENCH_VARIANT") == "ours":
    configure_logging(level="INFO", json=True)
    app.add_middleware(RequestContextMiddleware)
