"""In CI the real PostgreSQL and Redis must be configured and reachable."""

from __future__ import annotations

import pytest

from tests.conftest import IN_CI, TEST_DATABASE_URL, TEST_REDIS_URL

pytestmark = pytest.mark.skipif(not IN_CI, reason="only CI promises the real servers")


async def test_ci_postgresql_is_reachable() -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    assert TEST_DATABASE_URL, "CI must set TEST_DATABASE_URL"
    engine = create_async_engine(TEST_DATABASE_URL)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_ci_redis_is_reachable() -> None:
    import redis.asyncio as redis

    assert TEST_REDIS_URL, "CI must set TEST_REDIS_URL"
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()
