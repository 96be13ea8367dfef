"""Composing shutdown work with an application's own lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI


def close_after_lifespan(app: FastAPI, close: Callable[[], Awaitable[object]]) -> None:
    """Run ``close`` once the app's lifespan (as it is now) has shut down, even on error.

    The existing lifespan is kept, not replaced, so an application's own
    startup and shutdown code still run, and still find the resource open.
    """
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        try:
            async with inner(app_) as state:
                yield state
        finally:
            await close()

    app.router.lifespan_context = lifespan


def check_at_startup(app: FastAPI, check: Callable[[FastAPI], None]) -> None:
    """Run ``check(app)`` when the app starts, before its own startup code.

    For mistakes only visible once every route is added (after setup): the
    server then refuses to start instead of failing requests. Also for what
    must be undone before each start, such as reopening an in-process cache
    that an earlier shutdown of the same app closed (``install_cache``).
    """
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        check(app)
        async with inner(app_) as state:
            yield state

    app.router.lifespan_context = lifespan
