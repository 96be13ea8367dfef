"""pytest fixtures for application test suites (needs pytest-asyncio).

Enable in a ``conftest.py``::

    pytest_plugins = ["heygen_conventions.pytest_plugin"]

- ``heygen_database``: an isolated :class:`~heygen_conventions.Database` per
  test (SQLite, or a fresh schema on the PostgreSQL named by
  ``TEST_DATABASE_URL``), tables of ``Base.metadata`` created.
- ``memory_cache``: a fresh :class:`~heygen_conventions.MemoryCache`.
- ``log_events``: the log events of the test, as
  :func:`~heygen_conventions.testing.capture_logs` collects them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from heygen_conventions.cache import MemoryCache
from heygen_conventions.db import Base, Database
from heygen_conventions.testing import capture_logs, isolated_database

__all__ = ["heygen_database", "log_events", "memory_cache"]


@pytest_asyncio.fixture
async def heygen_database() -> AsyncIterator[Database]:
    """A database of the test's own with ``Base.metadata``'s tables, removed afterwards."""
    async with isolated_database(
        os.environ.get("TEST_DATABASE_URL") or None, metadata=Base.metadata
    ) as database:
        yield database


@pytest_asyncio.fixture
async def memory_cache() -> AsyncIterator[MemoryCache]:
    """An empty in-process cache, closed afterwards."""
    cache = MemoryCache()
    try:
        yield cache
    finally:
        await cache.close()


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    """Log events emitted during the test."""
    with capture_logs() as events:
        yield events
