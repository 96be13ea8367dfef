"""Invalidations requested inside a transaction run after its commit, never after a rollback."""

# ruff: noqa: S608 - the only interpolated names are the fixture's own table and schema

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from heygen_conventions import CacheBackend, CachedServiceMixin, MemoryCache
from heygen_conventions.cache import defer_until_commit, discard_after_commit, run_after_commit
from tests.conftest import TEST_DATABASE_URL

DATABASES = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]


class Item(BaseModel):
    id: int
    title: str


@pytest.fixture(params=DATABASES)
async def engine_and_table(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine and a table holding item 1 ("before"): SQLite in memory, or a fresh
    PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        engine = create_async_engine("sqlite+aiosqlite:///:memory:")
        table = "items"
        schema = None
    else:
        assert TEST_DATABASE_URL
        engine = create_async_engine(TEST_DATABASE_URL)
        schema = f"cache_{secrets.token_hex(6)}"
        table = f"{schema}.items"
    async with engine.begin() as conn:
        if schema:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.execute(text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, title TEXT)"))
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'before')"))
    try:
        yield engine, table
    finally:
        if schema:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await engine.dispose()


class ItemService(CachedServiceMixin):
    cache_namespace = "items"

    def __init__(self, session: AsyncSession, cache: CacheBackend, table: str) -> None:
        self.session = session
        self.cache = cache
        self.table = table

    async def get(self, item_id: int) -> Item | None:
        async def load() -> dict[str, Any] | None:
            row = (
                await self.session.execute(
                    text(f"SELECT id, title FROM {self.table} WHERE id = :id"), {"id": item_id}
                )
            ).first()
            return None if row is None else {"id": row.id, "title": row.title}

        return await self.cached(item_id, load, model=Item)

    async def rename(self, item_id: int, title: str) -> None:
        await self.session.execute(
            text(f"UPDATE {self.table} SET title = :title WHERE id = :id"),
            {"title": title, "id": item_id},
        )
        await self.invalidate(item_id)


async def _title_seen_by_another_request(
    engine: AsyncEngine, cache: CacheBackend, table: str
) -> str | None:
    async with AsyncSession(engine) as session:
        item = await ItemService(session, cache, table).get(1)
        await session.rollback()
        return None if item is None else item.title


async def test_invalidation_waits_for_the_commit(engine_and_table: tuple[AsyncEngine, str]) -> None:
    engine, table = engine_and_table
    cache = MemoryCache()
    assert await _title_seen_by_another_request(engine, cache, table) == "before"
    async with AsyncSession(engine) as session:
        service = ItemService(session, cache, table)
        await service.rename(1, "after")
        # Not committed: other requests still get the cached committed value...
        assert await _title_seen_by_another_request(engine, cache, table) == "before"
        # ... while this transaction reads its own write, bypassing the cache.
        own = await service.get(1)
        assert own is not None
        assert own.title == "after"
        await session.commit()
        await run_after_commit(session)
    assert await _title_seen_by_another_request(engine, cache, table) == "after"


async def test_invalidation_is_dropped_on_rollback(
    engine_and_table: tuple[AsyncEngine, str],
) -> None:
    engine, table = engine_and_table
    cache = MemoryCache()
    assert await _title_seen_by_another_request(engine, cache, table) == "before"
    loads_before = _loads(cache)
    async with AsyncSession(engine) as session:
        service = ItemService(session, cache, table)
        await service.rename(1, "never")
        await session.rollback()
        await run_after_commit(session)
        assert "heygen_after_commit" not in session.info
        # The same session, after the rollback, uses the cache again.
        item = await service.get(1)
        assert item is not None
        assert item.title == "before"
        await session.rollback()
    assert await _title_seen_by_another_request(engine, cache, table) == "before"
    assert _loads(cache) == loads_before  # still served from the cache


async def test_a_rolled_back_savepoint_keeps_earlier_invalidations(
    engine_and_table: tuple[AsyncEngine, str],
) -> None:
    engine, table = engine_and_table
    cache = MemoryCache()
    await _title_seen_by_another_request(engine, cache, table)
    async with AsyncSession(engine) as session:
        service = ItemService(session, cache, table)
        await service.rename(1, "after")
        savepoint = await session.begin_nested()
        await savepoint.rollback()
        await session.commit()
        await run_after_commit(session)
    assert await _title_seen_by_another_request(engine, cache, table) == "after"


async def test_a_plain_commit_still_invalidates(engine_and_table: tuple[AsyncEngine, str]) -> None:
    """Even a data layer that never calls run_after_commit gets the invalidation, soon."""
    engine, table = engine_and_table
    cache = MemoryCache()
    await _title_seen_by_another_request(engine, cache, table)
    async with AsyncSession(engine) as session:
        await ItemService(session, cache, table).rename(1, "after")
        await session.commit()
    for _ in range(100):
        if await _title_seen_by_another_request(engine, cache, table) == "after":
            break
        await asyncio.sleep(0.01)
    assert await _title_seen_by_another_request(engine, cache, table) == "after"


async def test_namespace_invalidation_waits_for_the_commit(
    engine_and_table: tuple[AsyncEngine, str],
) -> None:
    engine, table = engine_and_table
    cache = MemoryCache()
    await _title_seen_by_another_request(engine, cache, table)
    async with AsyncSession(engine) as session:
        service = ItemService(session, cache, table)
        await session.execute(text(f"UPDATE {table} SET title = 'bulk'"))
        await service.invalidate_namespace()
        assert await _title_seen_by_another_request(engine, cache, table) == "before"
        own = await service.get(1)
        assert own is not None
        assert own.title == "bulk"
        await session.commit()
        await run_after_commit(session)
    assert await _title_seen_by_another_request(engine, cache, table) == "bulk"


async def test_outside_a_transaction_invalidation_is_immediate(
    engine_and_table: tuple[AsyncEngine, str],
) -> None:
    engine, table = engine_and_table
    cache = MemoryCache()
    await _title_seen_by_another_request(engine, cache, table)
    async with AsyncSession(engine) as session:
        await session.execute(text(f"UPDATE {table} SET title = 'after'"))
        await session.commit()
        service = ItemService(session, cache, table)
        assert not session.in_transaction()
        await service.invalidate(1)
    assert await _title_seen_by_another_request(engine, cache, table) == "after"


class UnitOfWork:
    """A unit of work that is not a SQLAlchemy session."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.open = True

    def in_transaction(self) -> bool:
        return self.open


class Remembered(CachedServiceMixin):
    cache_namespace = "remembered"

    def __init__(self, cache: CacheBackend, db: UnitOfWork) -> None:
        self.cache = cache
        self.db = db  # the mixin also looks for `db`


async def test_any_unit_of_work_runs_its_callbacks_when_told() -> None:
    cache = MemoryCache()
    unit = UnitOfWork()
    service = Remembered(cache, unit)
    calls = 0

    async def load() -> Item:
        nonlocal calls
        calls += 1
        return Item(id=1, title=str(calls))

    unit.open = False
    assert await service.cached(1, load, model=Item) == Item(id=1, title="1")
    unit.open = True
    await service.invalidate(1)
    unit.open = False
    assert await service.cached(1, load, model=Item) == Item(id=1, title="2")  # bypassed
    assert await service.cached(1, load, model=Item) == Item(id=1, title="3")  # still pending
    await run_after_commit(unit)
    assert await service.cached(1, load, model=Item) == Item(id=1, title="4")  # reloaded, cached
    assert await service.cached(1, load, model=Item) == Item(id=1, title="4")

    unit.open = True
    await service.invalidate(1)
    discard_after_commit(unit)
    await run_after_commit(unit)
    assert await service.cached(1, load, model=Item) == Item(id=1, title="4")
    await run_after_commit(object())  # nothing registered anywhere: a no-op


async def test_a_failing_after_commit_callback_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unit = UnitOfWork()
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        ran.append("fine")

    defer_until_commit(unit, broken)
    defer_until_commit(unit, fine)
    await run_after_commit(unit)
    assert ran == ["fine"]
    assert any(r.message == "After-commit callback failed" for r in caplog.records)


def _loads(cache: CacheBackend) -> int:
    from heygen_conventions import cache_stats

    stats = cache_stats(cache)["namespaces"].get("items", {})
    return int(stats.get("loads", 0))
