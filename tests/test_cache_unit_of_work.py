"""Invalidations requested inside a transaction run after its commit, never after a rollback.

The services here read and write the data layer's sample models through
``BaseRepository``, in sessions made by ``Database``, on SQLite and (with
``TEST_DATABASE_URL``) PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import pytest
from pydantic import BaseModel
from sqlalchemy import true
from sqlalchemy.ext.asyncio import AsyncSession

from heygen_conventions import (
    BaseRepository,
    CacheBackend,
    CachedServiceMixin,
    Database,
    MemoryCache,
    NotFoundError,
    cache_stats,
)
from tests.fixtures.db import Video


class VideoOut(BaseModel):
    id: uuid.UUID
    title: str


class VideoRepository(BaseRepository[Video]):
    pass


class VideoService(CachedServiceMixin):
    cache_namespace = "uow-videos"

    def __init__(self, session: AsyncSession, cache: CacheBackend) -> None:
        self.session = session
        self.cache = cache
        self.videos = VideoRepository(session)

    async def get(self, video_id: uuid.UUID) -> VideoOut | None:
        return await self.cached(video_id, lambda: self.videos.get_by_id(video_id), model=VideoOut)

    async def get_many(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, VideoOut]:
        async def load(missing: list[uuid.UUID]) -> Mapping[uuid.UUID, Video]:
            return {video.id: video for video in await self.videos.list(Video.id.in_(missing))}

        return await self.cached_many(ids, load, model=VideoOut)

    async def rename(self, video_id: uuid.UUID, title: str) -> None:
        await self.videos.update(video_id, {"title": title})
        await self.invalidate(video_id)

    async def rename_all(self, title: str) -> None:
        await self.videos.update_many({"title": title}, true())
        await self.invalidate_namespace()


@pytest.fixture
async def video_ids(sample_db: Database) -> list[uuid.UUID]:
    """Two committed videos, titled "before" and "other"."""
    async with sample_db.transaction() as session:
        repository = VideoRepository(session)
        first = await repository.create({"title": "before", "slug": "first"})
        second = await repository.create({"title": "other", "slug": "second"})
        return [first.id, second.id]


async def seen_by_another_request(db: Database, cache: CacheBackend, video_id: uuid.UUID) -> str:
    async with db.session() as session:
        video = await VideoService(session, cache).get(video_id)
    assert video is not None
    return video.title


def loads(cache: CacheBackend) -> int:
    stats = cache_stats(cache)["namespaces"].get("uow-videos", {})
    return int(stats.get("loads", 0))


async def test_invalidation_waits_for_the_commit(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    assert await seen_by_another_request(sample_db, cache, video_id) == "before"
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        await service.rename(video_id, "after")
        # Not committed: other requests still get the cached committed value...
        assert await seen_by_another_request(sample_db, cache, video_id) == "before"
        # ... while this transaction reads its own write, bypassing the cache.
        own = await service.get(video_id)
        assert own is not None
        assert own.title == "after"
        await session.commit()  # returns once the invalidation has run
        assert await seen_by_another_request(sample_db, cache, video_id) == "after"
        # The commit cleared the marks: this session reads through the cache again.
        before = loads(cache)
        assert await service.get(video_id) == VideoOut(id=video_id, title="after")
        assert loads(cache) == before


async def test_invalidation_is_dropped_on_rollback(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    assert await seen_by_another_request(sample_db, cache, video_id) == "before"
    loads_before = loads(cache)
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        await service.rename(video_id, "never")
        await session.rollback()
        # The same session, after the rollback, uses the cache again.
        assert await service.get(video_id) == VideoOut(id=video_id, title="before")
    assert await seen_by_another_request(sample_db, cache, video_id) == "before"
    assert loads(cache) == loads_before  # still served from the cache


async def test_a_failing_unit_of_work_leaves_the_cache_alone(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    assert await seen_by_another_request(sample_db, cache, video_id) == "before"
    loads_before = loads(cache)

    async def rename_then_fail() -> None:
        async with sample_db.transaction() as session:
            await VideoService(session, cache).rename(video_id, "never")
            raise NotFoundError("changed my mind")

    with pytest.raises(NotFoundError):
        await rename_then_fail()
    assert await seen_by_another_request(sample_db, cache, video_id) == "before"
    assert loads(cache) == loads_before


async def test_a_rolled_back_savepoint_keeps_earlier_invalidations(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    async with sample_db.transaction() as session:
        service = VideoService(session, cache)
        await service.rename(video_id, "after")
        savepoint = await session.begin_nested()
        await savepoint.rollback()
        own = await service.get(video_id)
        assert own is not None
        assert own.title == "after"  # still this transaction's own write
    assert await seen_by_another_request(sample_db, cache, video_id) == "after"


async def test_a_released_savepoint_waits_for_the_outer_commit(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    loads_before = loads(cache)
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        await service.rename(video_ids[1], "outer")  # pysqlite begins at the first write
        async with session.begin_nested():
            await service.rename(video_id, "inner")
        # Released, not committed: nothing is invalidated yet, reads stay our own.
        assert await seen_by_another_request(sample_db, cache, video_id) == "before"
        own = await service.get(video_id)
        assert own is not None
        assert own.title == "inner"
        await session.rollback()
    assert await seen_by_another_request(sample_db, cache, video_id) == "before"
    assert loads(cache) == loads_before + 1  # only the read that bypassed the cache
    async with sample_db.session() as session:
        assert (await VideoRepository(session).get_one(id=video_id)).title == "before"


async def test_a_begin_block_invalidates_as_it_commits(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        async with session.begin():
            await service.rename(video_id, "after")
        assert await seen_by_another_request(sample_db, cache, video_id) == "after"


async def test_namespace_invalidation_waits_for_the_commit(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        await service.rename_all("bulk")
        assert await seen_by_another_request(sample_db, cache, video_id) == "before"
        own = await service.get(video_id)
        assert own is not None
        assert own.title == "bulk"
        await session.commit()
    assert await seen_by_another_request(sample_db, cache, video_id) == "bulk"


async def test_cached_many_bypasses_only_the_keys_this_transaction_changed(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache = MemoryCache()
    changed, untouched = video_ids
    async with sample_db.session() as session:
        assert len(await VideoService(session, cache).get_many(video_ids)) == 2
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        await service.rename(changed, "after")
        loads_before = loads(cache)
        found = await service.get_many(video_ids)
        assert found[changed].title == "after"
        assert found[untouched].title == "other"
        assert loads(cache) == loads_before + 1  # one load, for the changed key alone
        await session.rollback()
    async with sample_db.session() as session:
        found = await VideoService(session, cache).get_many(video_ids)
    assert found[changed].title == "before"


async def test_outside_a_transaction_invalidation_is_immediate(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    async with sample_db.session() as session:
        service = VideoService(session, cache)
        await service.videos.update(video_id, {"title": "after"})
        await session.commit()
        assert not session.in_transaction()
        await service.invalidate(video_id)
    assert await seen_by_another_request(sample_db, cache, video_id) == "after"


class ByDb(CachedServiceMixin):
    cache_namespace = "uow-videos"

    def __init__(self, cache: CacheBackend, db: object) -> None:
        self.cache = cache
        self.db = db  # the mixin also looks for `db`


async def test_the_unit_of_work_may_be_named_db(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    async with sample_db.session() as session:
        await VideoRepository(session).update(video_id, {"title": "after"})
        await ByDb(cache, session).invalidate(video_id)
        assert await seen_by_another_request(sample_db, cache, video_id) == "before"
        await session.commit()
    assert await seen_by_another_request(sample_db, cache, video_id) == "after"
    # Anything but a session (here the Database itself) is no transaction: at once.
    await ByDb(cache, sample_db).invalidate(video_id)


async def test_a_session_not_made_by_database_is_refused_inside_a_transaction(
    sample_db: Database, video_ids: list[uuid.UUID]
) -> None:
    cache, video_id = MemoryCache(), video_ids[0]
    await seen_by_another_request(sample_db, cache, video_id)
    async with AsyncSession(sample_db.engine) as session:
        service = VideoService(session, cache)
        await service.videos.update(video_id, {"title": "after"})
        # Nothing could run the invalidation after that session's commit.
        with pytest.raises(TypeError, match=r"VideoService .* Database"):
            await service.invalidate(video_id)
        await session.commit()
        await service.invalidate(video_id)  # after the commit it happens at once
    assert await seen_by_another_request(sample_db, cache, video_id) == "after"
