"""Invalidations requested inside a transaction run after its commit, never after a rollback.

The services here read and write the data layer's sample models through
``BaseRepository``, in sessions made by ``Database``, on SQLite and (with
``TEST_DATABASE_URL``) PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncSession

from heygen_conventions import (
    BaseRepository,
    CacheBackend,
    CachedServiceMixin,
    Database,
    DBSession,
    MemoryCache,
    NotFoundError,
    cache_stats,
    install_database,
    install_exception_handlers,
)
from heygen_conventions._unit_of_work import current_unit_of_work
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


@dataclass
class Scene:
    """Two committed videos, "before" (cached by a first read) and "other"."""

    db: Database
    cache: MemoryCache
    video_id: uuid.UUID
    other_id: uuid.UUID

    def service(self, session: AsyncSession) -> VideoService:
        return VideoService(session, self.cache)

    async def seen(self) -> str:
        """The title another request reads, through the cache."""
        async with self.db.session() as session:
            return await title(self.service(session), self.video_id)

    def loads(self) -> int:
        return int(cache_stats(self.cache)["namespaces"]["uow-videos"]["loads"])


async def title(service: VideoService, video_id: uuid.UUID) -> str:
    video = await service.get(video_id)
    assert video is not None
    return video.title


@pytest.fixture
async def scene(sample_db: Database) -> Scene:
    async with sample_db.transaction() as session:
        repository = VideoRepository(session)
        first = await repository.create({"title": "before", "slug": "first"})
        second = await repository.create({"title": "other", "slug": "second"})
    made = Scene(sample_db, MemoryCache(), first.id, second.id)
    assert await made.seen() == "before"
    return made


async def test_invalidation_waits_for_the_commit(scene: Scene) -> None:
    async with scene.db.session() as session:
        service = scene.service(session)
        await service.rename(scene.video_id, "after")
        # Not committed: other requests still get the cached committed value...
        assert await scene.seen() == "before"
        # ... while this transaction reads its own write, bypassing the cache.
        assert await title(service, scene.video_id) == "after"
        await session.commit()  # returns once the invalidation has run
        assert await scene.seen() == "after"
        # The commit cleared the marks: this session reads through the cache again.
        loads = scene.loads()
        assert await title(service, scene.video_id) == "after"
        assert scene.loads() == loads


async def test_invalidation_is_dropped_on_rollback(scene: Scene) -> None:
    loads = scene.loads()
    async with scene.db.session() as session:
        service = scene.service(session)
        await service.rename(scene.video_id, "never")
        await session.rollback()
        # The same session, after the rollback, uses the cache again.
        assert await title(service, scene.video_id) == "before"
    assert await scene.seen() == "before"
    assert scene.loads() == loads  # still served from the cache


async def test_a_failing_unit_of_work_leaves_the_cache_alone(scene: Scene) -> None:
    loads = scene.loads()

    async def rename_then_fail() -> None:
        async with scene.db.transaction() as session:
            await scene.service(session).rename(scene.video_id, "never")
            raise NotFoundError("changed my mind")

    with pytest.raises(NotFoundError):
        await rename_then_fail()
    assert await scene.seen() == "before"
    assert scene.loads() == loads


async def test_a_rolled_back_savepoint_keeps_earlier_invalidations(scene: Scene) -> None:
    async with scene.db.transaction() as session:
        service = scene.service(session)
        await service.rename(scene.video_id, "after")
        savepoint = await session.begin_nested()
        await savepoint.rollback()
        assert await title(service, scene.video_id) == "after"  # still our own write
    assert await scene.seen() == "after"


async def test_a_released_savepoint_waits_for_the_outer_commit(scene: Scene) -> None:
    loads = scene.loads()
    async with scene.db.session() as session:
        service = scene.service(session)
        await service.rename(scene.other_id, "outer")  # pysqlite begins at the first write
        async with session.begin_nested():
            await service.rename(scene.video_id, "inner")
        # Released, not committed: nothing is invalidated yet, reads stay our own.
        assert await scene.seen() == "before"
        assert await title(service, scene.video_id) == "inner"
        await session.rollback()
    assert await scene.seen() == "before"
    assert scene.loads() == loads + 1  # only the read that bypassed the cache
    async with scene.db.session() as session:
        assert (await VideoRepository(session).get_one(id=scene.video_id)).title == "before"


async def test_a_begin_block_invalidates_as_it_commits(scene: Scene) -> None:
    async with scene.db.session() as session:
        async with session.begin():
            await scene.service(session).rename(scene.video_id, "after")
        assert await scene.seen() == "after"


async def test_namespace_invalidation_waits_for_the_commit(scene: Scene) -> None:
    async with scene.db.session() as session:
        service = scene.service(session)
        await service.rename_all("bulk")
        assert await scene.seen() == "before"
        assert await title(service, scene.video_id) == "bulk"
        await session.commit()
    assert await scene.seen() == "bulk"


async def test_cached_many_bypasses_only_the_keys_this_transaction_changed(scene: Scene) -> None:
    ids = [scene.video_id, scene.other_id]
    async with scene.db.session() as session:
        assert len(await scene.service(session).get_many(ids)) == 2
    async with scene.db.session() as session:
        service = scene.service(session)
        await service.rename(scene.video_id, "after")
        loads = scene.loads()
        found = await service.get_many(ids)
        assert [found[i].title for i in ids] == ["after", "other"]
        assert scene.loads() == loads + 1  # one load, for the changed key alone
        await session.rollback()
    async with scene.db.session() as session:
        found = await scene.service(session).get_many(ids)
    assert [found[i].title for i in ids] == ["before", "other"]


async def test_outside_a_transaction_invalidation_is_immediate(scene: Scene) -> None:
    async with scene.db.session() as session:
        service = scene.service(session)
        await service.videos.update(scene.video_id, {"title": "after"})
        await session.commit()
        assert not session.in_transaction()
        await service.invalidate(scene.video_id)
    assert await scene.seen() == "after"


class ByDb(CachedServiceMixin):
    cache_namespace = "uow-videos"

    def __init__(self, cache: CacheBackend, db: object) -> None:
        self.cache = cache
        self.db = db  # the mixin also looks for `db`


async def test_the_unit_of_work_may_be_named_db(scene: Scene) -> None:
    async with scene.db.session() as session:
        await VideoRepository(session).update(scene.video_id, {"title": "after"})
        await ByDb(scene.cache, session).invalidate(scene.video_id)
        assert await scene.seen() == "before"
        await session.commit()
    assert await scene.seen() == "after"
    # Anything but a session (here the Database itself) is no transaction: at once.
    await ByDb(scene.cache, scene.db).invalidate(scene.video_id)


async def test_a_session_not_made_by_database_is_refused_inside_a_transaction(
    scene: Scene,
) -> None:
    async with AsyncSession(scene.db.engine) as session:
        service = scene.service(session)
        await service.videos.update(scene.video_id, {"title": "after"})
        # Nothing could run the invalidation after that session's commit.
        with pytest.raises(TypeError, match=r"VideoService .* Database"):
            await service.invalidate(scene.video_id)
        await session.commit()
        await service.invalidate(scene.video_id)  # after the commit it happens at once
    assert await scene.seen() == "after"


class RepositoryOnly(CachedServiceMixin):
    """Keeps a repository and no session: the open unit of work is found anyway."""

    cache_namespace = "uow-videos"

    def __init__(self, session: AsyncSession, cache: CacheBackend) -> None:
        self.cache = cache
        self.videos = VideoRepository(session)

    async def rename(self, video_id: uuid.UUID, title: str) -> None:
        await self.videos.update(video_id, {"title": title})
        await self.invalidate(video_id)


async def test_a_service_without_a_session_waits_for_the_transaction_block(scene: Scene) -> None:
    async with scene.db.transaction() as session:
        service = RepositoryOnly(session, scene.cache)
        await service.rename(scene.video_id, "after")
        # A reader meanwhile caches the committed row again...
        assert await scene.seen() == "before"
        # ...while this transaction reads its own write.
        video = await service.cached(
            scene.video_id, lambda: service.videos.get_by_id(scene.video_id), model=VideoOut
        )
        assert video is not None
        assert video.title == "after"
    # The commit invalidates once more: the row the reader cached is not served.
    assert await scene.seen() == "after"


async def test_a_service_without_a_session_waits_for_a_session_block(scene: Scene) -> None:
    async with scene.db.session() as session:
        await RepositoryOnly(session, scene.cache).rename(scene.video_id, "after")
        assert await scene.seen() == "before"
        await session.commit()
        assert await scene.seen() == "after"
    async with scene.db.session() as session:
        await RepositoryOnly(session, scene.cache).rename(scene.video_id, "never")
        await session.rollback()
    assert await scene.seen() == "after"


class OwnTransactions(CachedServiceMixin):
    """Keeps the Database and commits each write in a transaction of its own."""

    cache_namespace = "uow-videos"

    def __init__(self, db: Database, cache: CacheBackend) -> None:
        self.db = db
        self.cache = cache

    async def rename(self, video_id: uuid.UUID, title: str) -> None:
        async with self.db.transaction() as session:
            await VideoRepository(session).update(video_id, {"title": title})
        await self.invalidate(video_id)  # after its own commit, as documented


async def test_a_write_committed_elsewhere_is_invalidated_whatever_the_open_unit_does(
    scene: Scene,
) -> None:
    service = OwnTransactions(scene.db, scene.cache)
    # Inside a read-only block that never commits.
    async with scene.db.session() as reader:
        await reader.execute(select(Video.id))
        await service.rename(scene.video_id, "after")
    assert await scene.seen() == "after"

    async def rename_inside_a_failing_unit() -> None:
        async with scene.db.transaction() as session:
            await session.execute(select(Video.id))
            await service.rename(scene.video_id, "again")
            raise NotFoundError("rolled back")

    with pytest.raises(NotFoundError):
        await rename_inside_a_failing_unit()
    assert await scene.seen() == "again"


async def test_a_service_without_a_session_waits_for_the_requests_commit(scene: Scene) -> None:
    app = FastAPI()
    install_database(app, scene.db)
    seen_during: list[str] = []

    @app.post("/rename/{title}")
    async def rename(title: str, session: DBSession) -> dict[str, bool]:
        await RepositoryOnly(session, scene.cache).rename(scene.video_id, title)
        # Had the invalidation run now, this read would load the old row and
        # cache it under the new generation: stale once the route commits.
        seen_during.append(await scene.seen())
        if title == "fail":
            raise NotFoundError("rolled back")
        return {"ok": True}

    install_exception_handlers(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/rename/after")
        assert response.status_code == 200, response.text
        assert await scene.seen() == "after"
        response = await client.post("/rename/fail")
        assert response.status_code == 404, response.text
    assert seen_during == ["before", "after"]
    assert await scene.seen() == "after"


async def test_a_nested_unit_of_work_is_current_only_inside_its_block(scene: Scene) -> None:
    async with scene.db.transaction() as outer:
        assert current_unit_of_work() is outer
        async with scene.db.transaction() as inner:
            assert current_unit_of_work() is inner
        assert current_unit_of_work() is outer
    assert current_unit_of_work() is None
