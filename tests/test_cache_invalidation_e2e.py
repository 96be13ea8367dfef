"""End to end: a route's cache invalidation follows its commit, before the response.

A tiny app reads videos through ``CachedServiceMixin`` and updates them in the
request's session (``get_db_session``). Every database (SQLite, PostgreSQL)
with every cache backend (in-process, fakeredis, Redis).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from heygen_conventions import (
    APIResponse,
    BaseRepository,
    CacheBackend,
    CachedServiceMixin,
    Database,
    DBSession,
    NotFoundError,
    cache_stats,
    get_cache,
    install_cache,
    install_database,
    install_exception_handlers,
)
from tests.fixtures.db import Video, asgi_client


class VideoOut(BaseModel):
    id: uuid.UUID
    title: str
    slug: str


class VideoUpdate(BaseModel):
    title: str | None = None
    slug: str | None = None


class VideoRepository(BaseRepository[Video]):
    pass


class VideoService(CachedServiceMixin):
    cache_namespace = "e2e-videos"

    def __init__(self, session: DBSession, cache: CacheBackend = Depends(get_cache)) -> None:
        self.session = session
        self.cache = cache
        self.videos = VideoRepository(session)

    async def get(self, video_id: uuid.UUID) -> VideoOut:
        video = await self.cached(video_id, lambda: self.videos.get_by_id(video_id), model=VideoOut)
        if video is None:
            raise NotFoundError("Video not found")
        return video

    async def update(self, video_id: uuid.UUID, changes: VideoUpdate) -> VideoOut:
        video = await self.videos.get_by_id(video_id)
        if video is None:
            raise NotFoundError("Video not found")
        for field, value in changes.model_dump(exclude_unset=True).items():
            # Left for the request's commit to flush: a unique violation
            # surfaces at COMMIT, as a deferred constraint's would.
            setattr(video, field, value)
        await self.invalidate(video_id)
        return VideoOut.model_validate(video, from_attributes=True)


Service = Annotated[VideoService, Depends()]


class RecordResponseStart:
    def __init__(self, app: Any, events: list[str]) -> None:
        self.app, self.events = app, events

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.events.append(f"response {message['status']}")
            await send(message)

        await self.app(scope, receive, recording_send)


def make_app(database: Database, cache: CacheBackend, events: list[str]) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, database)
    install_cache(app, cache)
    app.add_middleware(RecordResponseStart, events=events)

    @app.get("/videos/{video_id}", response_model=APIResponse[VideoOut])
    async def get_video(video_id: uuid.UUID, service: Service) -> APIResponse[VideoOut]:
        return APIResponse.ok(await service.get(video_id))

    @app.patch("/videos/{video_id}", response_model=APIResponse[VideoOut])
    async def update_video(
        video_id: uuid.UUID, changes: VideoUpdate, service: Service
    ) -> APIResponse[VideoOut]:
        return APIResponse.ok(await service.update(video_id, changes))

    return app


@pytest.fixture
def slow_cache_writes(cache_backend: CacheBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``set_many`` (how invalidations are written) takes 50 ms; noted when done.

    Invalidation run in the background after the commit would then still be
    under way when the response is sent, and the next GET would read the
    stale entry.
    """
    events: list[str] = []
    set_many = cache_backend.set_many

    async def slow_set_many(items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        await asyncio.sleep(0.05)
        await set_many(items, ttl=ttl)
        events.append("cache written")

    monkeypatch.setattr(cache_backend, "set_many", slow_set_many)
    return events


@dataclass
class Running:
    client: httpx.AsyncClient
    video_id: uuid.UUID
    events: list[str]


@pytest.fixture
async def running(
    database: Database, cache_backend: CacheBackend, slow_cache_writes: list[str]
) -> AsyncIterator[Running]:
    """The app, serving two videos: "first" titled "v0" and "second"."""
    await database.create_all(Video.metadata)
    async with database.transaction() as session:
        repository = VideoRepository(session)
        video = await repository.create({"title": "v0", "slug": "first"})
        await repository.create({"title": "other", "slug": "second"})
    async with asgi_client(make_app(database, cache_backend, slow_cache_writes)) as client:
        yield Running(client, video.id, slow_cache_writes)


def loads(cache: CacheBackend) -> int:
    return int(cache_stats(cache)["namespaces"]["e2e-videos"]["loads"])


async def test_a_get_after_an_update_never_sees_stale_data(running: Running) -> None:
    client, path, events = running.client, f"/videos/{running.video_id}", running.events
    for round_ in range(1, 4):
        cached = await client.get(path)
        assert cached.status_code == 200, cached.text
        assert cached.json()["data"]["title"] == f"v{round_ - 1}"
        events.clear()
        updated = await client.patch(path, json={"title": f"v{round_}"})
        assert updated.status_code == 200, updated.text
        # The invalidation was written before the response started.
        assert events == ["cache written", "response 200"]
        after = await client.get(path)
        assert after.status_code == 200, after.text
        assert after.json()["data"]["title"] == f"v{round_}"


async def test_an_update_whose_commit_fails_leaves_the_cache_entry(
    running: Running, cache_backend: CacheBackend
) -> None:
    client, path, events = running.client, f"/videos/{running.video_id}", running.events
    assert (await client.get(path)).status_code == 200
    loads_before = loads(cache_backend)
    events.clear()
    # "second" is taken: the UPDATE flushed by the commit violates the unique slug.
    failed = await client.patch(path, json={"title": "never", "slug": "second"})
    assert failed.status_code == 409, failed.text
    assert failed.json()["errors"][0]["code"] == "unique_violation"
    assert events == ["response 409"]  # nothing invalidated
    again = await client.get(path)
    assert again.status_code == 200, again.text
    assert again.json()["data"] == {"id": str(running.video_id), "title": "v0", "slug": "first"}
    assert loads(cache_backend) == loads_before  # the entry answered, still in place
