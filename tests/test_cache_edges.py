"""Cache keys, models and failures off the common path: string enums, TypedDicts,
fills racing invalidations, unset fields, local TTLs, writes refused while reads work."""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from heygen_conventions import (
    CacheBackend,
    CachedServiceMixin,
    CacheUnavailableError,
    MemoryCache,
    RedisCache,
    cache_stats,
    get_cache,
    install_cache,
)
from tests.test_cache import FakeDB, VideoResponse, VideoService, _until, engine_state


class Color(str, enum.Enum):  # noqa: UP042 - the pre-3.11 idiom for string enums, still common
    RED = "red"


class ColorService(CachedServiceMixin):
    cache_namespace = "colors"

    def __init__(self, cache: CacheBackend, db: FakeDB) -> None:
        self.cache = cache
        self.store = db

    async def get(self, key: Any) -> VideoResponse | None:
        return await self.cached(key, self.store.loader("red"), model=VideoResponse)


class LocalColorService(ColorService):
    cache_namespace = "local-colors"
    cache_local_ttl = 60


@pytest.mark.parametrize("invalidated", [Color.RED, "red"], ids=["enum", "value"])
async def test_a_str_enum_key_is_invalidated(cache_backend: CacheBackend, invalidated: Any) -> None:
    # A str-mixin enum is a str (Color.RED == "red"): FastAPI gives one for an
    # enum path parameter. Invalidating it, or its value, must not leave the
    # old row served.
    db = FakeDB()
    db.rows = {"red": {"id": 1, "title": "old"}}
    service = ColorService(cache_backend, db)
    assert (await service.get(Color.RED)).title == "old"  # type: ignore[union-attr]
    db.rows["red"]["title"] = "new"
    await service.invalidate(invalidated)
    assert (await service.get(Color.RED)).title == "new"  # type: ignore[union-attr]


async def test_a_str_enum_key_is_invalidated_in_other_instances_local_layers(
    shared_cache_backends: tuple[RedisCache, RedisCache],
) -> None:
    first, second = shared_cache_backends
    db = FakeDB()
    db.rows = {"red": {"id": 1, "title": "old"}}
    on_a, on_b = LocalColorService(first, db), LocalColorService(second, db)
    await on_a.get(Color.RED)
    await on_b.get(Color.RED)
    await _until(lambda: engine_state(first).local_ready and engine_state(second).local_ready)
    await on_b.get(Color.RED)  # now kept in B's local layer
    db.rows["red"]["title"] = "new"
    await on_a.invalidate(Color.RED)  # the same enum key, through instance A
    await asyncio.sleep(0.2)  # the broadcast reaches B
    assert (await on_b.get(Color.RED)).title == "new"  # type: ignore[union-attr]


class VideoDict(TypedDict):
    id: int
    title: str


@pytest.mark.parametrize("model", [VideoDict, Any], ids=["TypedDict", "Any"])
async def test_models_that_refuse_isinstance_are_cached(
    cache_backend: CacheBackend, model: Any
) -> None:
    service = VideoService(cache_backend, FakeDB())
    loads = 0

    async def load() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        return {"id": 1, "title": "a"}

    for _ in range(2):
        assert await service.cached("k", load, model=model) == {"id": 1, "title": "a"}
    assert loads == 1


async def test_a_cached_many_fill_that_raced_an_invalidation_is_never_served() -> None:
    # The cached_many twin of test_cache_failures.py's test for Flight: even
    # once the LRU has evicted the new token.
    cache = MemoryCache(maxsize=4)
    db = FakeDB()
    db.rows = {i: {"id": i, "title": f"video {i}"} for i in range(1, 10)}
    service = VideoService(cache, db)
    loaded, release = asyncio.Event(), asyncio.Event()

    async def slow_load_many(keys: list[int]) -> dict[int, Any]:
        rows = {key: dict(db.rows[key]) for key in keys}  # read before the writer commits
        loaded.set()
        await release.wait()  # ... and stored after its invalidation
        return rows

    reader = asyncio.create_task(service.cached_many([1], slow_load_many, model=VideoResponse))
    await loaded.wait()
    db.rows[1]["title"] = "renamed"  # the writer commits
    await service.invalidate(1)  # ... then invalidates: a new token for key 1
    release.set()
    assert (await reader)[1].title == "video 1"
    for i in (2, 3, 4):  # other traffic: the LRU evicts the token, oldest
        await service.get(i)
    assert (await service.get(1)).title == "renamed"  # type: ignore[union-attr]


async def test_cached_many_stale_fill_finishing_late_does_not_drop_the_fresh_entry() -> None:
    cache = MemoryCache(maxsize=100)
    db = FakeDB()
    db.rows = {1: {"id": 1, "title": "video 1"}}
    service = VideoService(cache, db)
    loaded, release = asyncio.Event(), asyncio.Event()

    async def slow_load_many(keys: list[int]) -> dict[int, Any]:
        rows = {key: dict(db.rows[key]) for key in keys}
        loaded.set()
        await release.wait()
        return rows

    reader = asyncio.create_task(service.cached_many([1], slow_load_many, model=VideoResponse))
    await loaded.wait()
    db.rows[1]["title"] = "renamed"
    await service.invalidate(1)
    assert (await service.get(1)).title == "renamed"  # type: ignore[union-attr]
    release.set()
    await reader
    assert (await service.get(1)).title == "renamed"  # type: ignore[union-attr]
    assert len(db.loads) == 1, db.loads  # the fresh entry was kept


class Sparse(BaseModel):
    id: int
    note: str | None = None
    tags: list[str] = []


async def test_a_hit_keeps_which_fields_were_set(cache_backend: CacheBackend) -> None:
    # FastAPI's response_model_exclude_unset=True (and model_dump(exclude_unset=True))
    # must give the same JSON whether the value came from the loader or the cache.
    service = VideoService(cache_backend, FakeDB())

    async def load() -> dict[str, Any]:
        return {"id": 1, "tags": ["a"]}

    first = await service.cached("sparse", load, model=Sparse)
    second = await service.cached("sparse", load, model=Sparse)
    assert first is not None
    assert second is not None
    assert second.model_dump(exclude_unset=True) == first.model_dump(exclude_unset=True)
    assert cache_stats(cache_backend)["namespaces"]["videos"]["hits"] == 1


class Stamped(BaseModel):
    id: int
    ref: uuid.UUID = Field(default_factory=uuid.uuid4)  # made anew on every validation


async def test_a_value_whose_unset_fields_are_made_anew_is_still_cached(
    cache_backend: CacheBackend,
) -> None:
    # Written with every field: read back without them, its ref would change on each hit.
    service = VideoService(cache_backend, FakeDB())
    loads = 0

    async def load() -> Stamped:
        nonlocal loads
        loads += 1
        return Stamped(id=1)

    first = await service.cached("stamped", load, model=Stamped)
    second = await service.cached("stamped", load, model=Stamped)
    assert first == second
    assert loads == 1
    assert cache_stats(cache_backend)["namespaces"]["videos"]["unstorable"] == 0


class SparseService(CachedServiceMixin):
    cache_namespace = "sparse"

    def __init__(self, cache: CacheBackend = Depends(get_cache)) -> None:
        self.cache = cache


async def test_a_hit_keeps_which_fields_were_set_in_an_app() -> None:
    app = FastAPI()
    install_cache(app, MemoryCache())

    async def load() -> dict[str, Any]:
        return {"id": 1}

    @app.get("/sparse", response_model=Sparse, response_model_exclude_unset=True)
    async def sparse(service: SparseService = Depends()) -> Sparse | None:
        return await service.cached("one", load, model=Sparse)

    with TestClient(app) as client:
        assert client.get("/sparse").json() == {"id": 1}
        assert client.get("/sparse").json() == {"id": 1}  # from the cache


class ShortNegativeLocal(CachedServiceMixin):
    cache_namespace = "short-negative"
    cache_negative_ttl = 0.05
    cache_local_ttl = 60

    def __init__(self, cache: CacheBackend, db: FakeDB) -> None:
        self.cache = cache
        self.store = db

    async def get(self, key: int) -> VideoResponse | None:
        return await self.cached(key, self.store.loader(key), model=VideoResponse)


async def test_the_local_layer_keeps_not_found_no_longer_than_the_negative_ttl(
    cache_backend: CacheBackend,
) -> None:
    db = FakeDB()
    service = ShortNegativeLocal(cache_backend, db)
    await service.get(1)
    await _until(lambda: engine_state(cache_backend).local_ready)
    assert await service.get(1) is None  # "not found", now kept locally too
    db.rows[1] = {"id": 1, "title": "created"}  # created meanwhile, nothing invalidated
    await asyncio.sleep(0.2)  # the negative entry's lifetime is long over
    assert await service.get(1) == VideoResponse(id=1, title="created")


class WritesRefused(MemoryCache):
    """Reads answer, writes fail: Redis at maxmemory under noeviction (OOM errors)."""

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise CacheUnavailableError("Redis error: ResponseError")

    async def set_many(self, items: Any, *, ttl: float | None = None) -> None:
        raise CacheUnavailableError("Redis error: ResponseError")


async def test_failing_writes_are_logged_once_per_incident(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = WritesRefused()
    db = FakeDB()
    db.rows = {i: {"id": i, "title": f"video {i}"} for i in range(1, 6)}
    service = VideoService(cache, db)
    with caplog.at_level(logging.INFO, logger="heygen_conventions.cache"):
        for i in range(1, 6):
            assert (await service.get(i)) == VideoResponse(id=i, title=f"video {i}")
        await service.cached_many([1, 2, 3], db.load_many, model=VideoResponse)
    assert cache_stats(cache)["namespaces"]["videos"]["errors"] == 6
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["Cache unavailable, answering from the loader"], lines
