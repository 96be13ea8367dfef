"""The cache when things go wrong mid-way: malformed replies, invalidations cut off by
cancellation, a fill racing an invalidation outliving its token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from heygen_conventions import MemoryCache, RedisCache, cache_stats
from tests.fixtures.cache import unique_prefix
from tests.test_cache import FakeDB, VideoResponse, VideoService
from tests.test_cache_unit_of_work import Scene, VideoRepository, scene  # noqa: F401

# -- a malformed reply from the server -------------------------------------------------


class FakeRespServer:
    """Speaks RESP: answers MGET with ``mget_reply`` and every other command ``+OK``."""

    def __init__(self, mget_reply: bytes) -> None:
        self.mget_reply = mget_reply
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    parts = []
                    for _ in range(int(line[1:])):
                        size = int((await reader.readline())[1:])
                        parts.append((await reader.readexactly(size + 2))[:-2])
                    writer.write(self.mget_reply if parts[0].upper() == b"MGET" else b"+OK\r\n")
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture(
    params=[
        b"*3\r\n$-1\r\n:2\r\n:3\r\n",  # integers where values belong
        b"*1\r\n$-1\r\n",  # fewer values than keys
    ],
    ids=["integers", "short"],
)
async def garbage_cache(request: pytest.FixtureRequest) -> AsyncIterator[RedisCache]:
    server = FakeRespServer(request.param)
    await server.start()
    cache = RedisCache(f"redis://127.0.0.1:{server.port}/0", prefix=unique_prefix("garbage"))
    try:
        yield cache
    finally:
        await cache.close()
        await server.close()


async def test_a_malformed_reply_is_answered_from_the_loader(garbage_cache: RedisCache) -> None:
    db = FakeDB()
    db.rows = {1: {"id": 1, "title": "video 1"}, 2: {"id": 2, "title": "video 2"}}
    service = VideoService(garbage_cache, db)
    assert await service.get(1) == VideoResponse(id=1, title="video 1")
    many = await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    assert many == {
        1: VideoResponse(id=1, title="video 1"),
        2: VideoResponse(id=2, title="video 2"),
    }
    assert cache_stats(garbage_cache)["namespaces"]["videos"]["errors"] >= 2


# -- an invalidation cut off by the caller's cancellation ------------------------------


class SlowInvalidations(MemoryCache):
    """Invalidation writes (``set_many``) take a moment, as on a busy Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        self.writing.set()
        await asyncio.sleep(0.1)
        await super().set_many(items, ttl=ttl)


async def test_an_invalidation_cut_off_by_cancellation_after_the_commit_still_happens(
    scene: Scene,  # noqa: F811
) -> None:
    cache = scene.cache = SlowInvalidations()
    assert await scene.seen() == "before"  # cached

    async def update() -> None:
        async with scene.db.session() as session:
            await scene.service(session).rename(scene.video_id, "after")
            await session.commit()

    task = asyncio.create_task(update())
    await cache.writing.wait()  # committed; the after-commit invalidation is under way
    task.cancel()  # the request times out, or its client goes away
    with pytest.raises(asyncio.CancelledError):
        await task
    async with scene.db.session() as session:
        row = await VideoRepository(session).get_by_id(scene.video_id)
        assert row is not None
        assert row.title == "after"  # the update is durable
    await asyncio.sleep(0.3)
    assert await scene.seen() == "after"  # not "before" until the TTL ends


async def test_a_direct_invalidation_cut_off_by_cancellation_is_retried() -> None:
    cache = SlowInvalidations()
    db = FakeDB()
    db.rows = {1: {"id": 1, "title": "before"}}
    service = VideoService(cache, db)
    assert (await service.get(1)).title == "before"  # type: ignore[union-attr]
    db.rows[1]["title"] = "after"  # committed by the caller
    task = asyncio.create_task(service.invalidate(1))
    await cache.writing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)
    other = VideoService(cache, db)  # any later request
    assert (await other.get(1)).title == "after"  # type: ignore[union-attr]


# -- a fill that raced an invalidation must stay unservable -----------------------------


async def test_a_fill_that_raced_an_invalidation_is_not_served_once_the_token_is_evicted() -> None:
    cache = MemoryCache(maxsize=4)
    db = FakeDB()
    db.rows = {i: {"id": i, "title": f"video {i}"} for i in range(1, 10)}
    service = VideoService(cache, db)
    loaded, release = asyncio.Event(), asyncio.Event()

    async def slow_load() -> dict[str, object]:
        row = dict(db.rows[1])  # read before the writer commits
        loaded.set()
        await release.wait()  # ... and stored after its invalidation
        return row

    reader = asyncio.create_task(service.cached(1, slow_load, model=VideoResponse))
    await loaded.wait()
    db.rows[1]["title"] = "renamed"  # the writer commits
    await service.invalidate(1)  # ... then invalidates: a new token for key 1
    release.set()
    assert (await reader).title == "video 1"  # type: ignore[union-attr]
    for i in (2, 3, 4):  # other traffic: the LRU evicts the token, oldest
        await service.get(i)
    assert (await service.get(1)).title == "renamed"  # type: ignore[union-attr]


async def test_a_stale_fill_finishing_late_does_not_drop_the_fresh_entry() -> None:
    cache = MemoryCache(maxsize=100)
    db = FakeDB()
    db.rows = {1: {"id": 1, "title": "video 1"}}
    service = VideoService(cache, db)
    loaded, release = asyncio.Event(), asyncio.Event()

    async def slow_load() -> dict[str, object]:
        row = dict(db.rows[1])
        loaded.set()
        await release.wait()
        return row

    reader = asyncio.create_task(service.cached(1, slow_load, model=VideoResponse))
    await loaded.wait()
    db.rows[1]["title"] = "renamed"
    await service.invalidate(1)
    # A reader arriving after the invalidation loads the new row and stores it.
    assert (await service.get(1)).title == "renamed"  # type: ignore[union-attr]
    assert len(db.loads) == 1
    release.set()
    await reader  # the stale reader finishes last
    assert (await service.get(1)).title == "renamed"  # type: ignore[union-attr]
    assert len(db.loads) == 1, db.loads  # served from the fresh entry, no reload
