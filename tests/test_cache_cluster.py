"""On a Redis Cluster a namespace's keys share a hash slot, so multi-key reads work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
from pydantic import BaseModel

from heygen_conventions import CachedServiceMixin, RedisCache, cache_stats
from tests.fixtures.cache import RedisServer, cache_keys, start_redis_server, unique_prefix


class Video(BaseModel):
    id: int
    title: str


class VideoService(CachedServiceMixin):
    cache_namespace = "videos"
    cache_lock = True

    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[RedisServer]:
    """A one-node Redis Cluster owning every slot (it checks CROSSSLOT like a real one)."""
    node = start_redis_server(
        tmp_path, "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")
    )
    client = redis.Redis(host="127.0.0.1", port=node.port)
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    for _ in range(500):
        if b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"):
            break
        time.sleep(0.01)
    client.close()
    try:
        yield node
    finally:
        node.stop()


async def test_cached_and_invalidation_on_a_cluster(cluster_node: RedisServer) -> None:
    cache = RedisCache(cluster_node.url, prefix=unique_prefix(), cluster=True)
    assert cache.cluster
    service = VideoService(cache)
    loads: list[int] = []

    async def load_many(ids: list[int]) -> dict[int, Video]:
        loads.extend(ids)
        return {i: Video(id=i, title=f"video {i}") for i in ids}

    def loader(video_id: int) -> Callable[[], Awaitable[Video]]:
        async def load() -> Video:
            loads.append(video_id)
            return Video(id=video_id, title=f"video {video_id}")

        return load

    try:
        assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="video 1")
        assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="video 1")
        found = await service.cached_many([1, 2, 3], load_many, model=Video)
        assert list(found) == [1, 2, 3]
        await service.invalidate(1, 2)
        await service.cached_many([1, 2, 3], load_many, model=Video)
        await service.invalidate_namespace()
        await asyncio.gather(*(service.cached(3, loader(3), model=Video) for _ in range(20)))
        assert loads == [1, 2, 3, 1, 2, 3]
        assert cache_stats(cache)["namespaces"]["videos"]["errors"] == 0
        keys = await cache_keys(cache)
        assert keys
        assert all(key.startswith("{videos}:") for key in keys), keys
        assert await cache.delete_many(keys) == len(keys)
    finally:
        await cache.close()
