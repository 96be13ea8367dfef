"""Cache benchmarks, as ratios to baselines measured in the same run.

    make test                                    # creates .venv with the dev tools
    .venv/bin/pip install -e '.[dev,bench]'      # adds fastapi-cache2 and cashews
    .venv/bin/python -m benchmarks.bench_cache   # BENCH_REDIS_URL (default redis://127.0.0.1:6379/15)

Uses a real Redis (db 15) under a unique key prefix it removes afterwards.

1. Hit path for a 10-field model: ``cached()`` against the floor, a raw
   ``redis.asyncio`` GET + ``model_validate_json``, and against the hit paths
   of fastapi-cache2 and cashews. Contenders are interleaved, each round's
   ratio is taken against that round's floor, and the median is reported.
2. ``cached_many`` of 100 ids, all hits: round trips, and speed against 100
   sequential ``cached()`` calls.
3. Stampede: 1,000 concurrent misses on one key in one process; and two
   processes with ``cache_lock`` on: loader calls counted in Redis.
4. Redis unreachable (connection refused, blackholed): once the breaker is
   open, the median latency ``cached()`` adds to the loader alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import redis.asyncio as redis
from pydantic import BaseModel

from heygen_conventions import CachedServiceMixin, CircuitBreaker, RedisCache

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
CALLS = int(os.environ.get("BENCH_CALLS", "1000"))


class VideoResponse(BaseModel):
    """A typical response model: ten fields."""

    id: UUID
    title: str
    description: str
    owner_id: UUID
    duration_seconds: float
    status: str
    views: int
    tags: list[str]
    created_at: datetime
    updated_at: datetime


def make_video() -> VideoResponse:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return VideoResponse(
        id=uuid4(),
        title="Quarterly product update",
        description="A walk through what shipped this quarter and what comes next.",
        owner_id=uuid4(),
        duration_seconds=312.5,
        status="ready",
        views=18234,
        tags=["product", "update", "q2"],
        created_at=now,
        updated_at=now,
    )


class VideoService(CachedServiceMixin):
    cache_namespace = "bench-videos"
    cache_ttl = 600

    def __init__(self, cache: Any) -> None:
        self.cache = cache


class LockedVideoService(VideoService):
    cache_namespace = "bench-locked"
    cache_lock = True
    cache_lock_wait = 5.0


class LocalVideoService(VideoService):
    cache_namespace = "bench-local"
    cache_local_ttl = 5.0


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> float:
    """Mean seconds per call over ``n`` sequential calls."""
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) / n


async def interleaved(
    contenders: dict[str, Callable[[], Awaitable[Any]]], baseline: str, rounds: int, n: int
) -> dict[str, tuple[float, float]]:
    """Median per-round ratio to ``baseline`` and median microseconds, per contender."""
    ratios: dict[str, list[float]] = {name: [] for name in contenders}
    micros: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        this_round = {name: await timed(call, n) for name, call in contenders.items()}
        for name, seconds in this_round.items():
            ratios[name].append(seconds / this_round[baseline])
            micros[name].append(seconds * 1e6)
    return {
        name: (statistics.median(ratios[name]), statistics.median(micros[name]))
        for name in contenders
    }


async def bench_hit_path(prefix: str) -> None:
    video = make_video()
    key = str(video.id)
    raw_client = redis.Redis.from_url(REDIS_URL)
    await raw_client.set(f"{prefix}floor:{key}", video.model_dump_json(), ex=600)

    async def floor() -> VideoResponse:
        raw = await raw_client.get(f"{prefix}floor:{key}")
        return VideoResponse.model_validate_json(raw)

    async def load() -> VideoResponse:
        return video

    ours = RedisCache(REDIS_URL, prefix=prefix)
    service = VideoService(ours)
    local_service = LocalVideoService(ours)

    async def cached() -> VideoResponse | None:
        return await service.cached(key, load, model=VideoResponse)

    async def cached_local() -> VideoResponse | None:
        return await local_service.cached(key, load, model=VideoResponse)

    contenders: dict[str, Callable[[], Awaitable[Any]]] = {
        "floor: redis GET + model_validate_json": floor,
        "heygen cached()": cached,
        "heygen cached(), local layer on": cached_local,
    }
    cleanup: list[Callable[[], Awaitable[Any]]] = [raw_client.aclose, ours.close]
    notes: list[str] = []

    try:
        from fastapi_cache import FastAPICache
        from fastapi_cache.backends.redis import RedisBackend
        from fastapi_cache.decorator import cache as fastapi_cache
    except ImportError:
        notes.append("fastapi-cache2 not installed (pip install -e '.[bench]')")
    else:
        fc_client = redis.Redis.from_url(REDIS_URL)
        FastAPICache.init(RedisBackend(fc_client), prefix=f"{prefix}fastapi-cache")

        @fastapi_cache(expire=600)
        async def fastapi_cache2_get(video_id: str) -> VideoResponse:
            return video

        async def fastapi_cache2() -> Any:
            return await fastapi_cache2_get(key)

        contenders["fastapi-cache2 @cache (JsonCoder; a hit returns a dict)"] = fastapi_cache2
        cleanup.append(fc_client.aclose)

    try:
        from cashews import Cache
    except ImportError:
        notes.append("cashews not installed (pip install -e '.[bench]')")
    else:
        cashews_cache = Cache()
        cashews_cache.setup(REDIS_URL)  # cashews' prefix selects a backend, not a namespace

        @cashews_cache(ttl=600, key=prefix + "cashews:video:{video_id}")
        async def cashews_get(video_id: str) -> VideoResponse:
            return video

        async def cashews() -> Any:
            return await cashews_get(key)

        contenders["cashews @cache"] = cashews
        cleanup.append(cashews_cache.close)

    for call in contenders.values():  # warm: fill every cache, open connections
        for _ in range(50):
            await call()
    result = await interleaved(contenders, "floor: redis GET + model_validate_json", ROUNDS, CALLS)
    print(f"\n## Hit path, 10-field model ({ROUNDS} rounds x {CALLS} calls, median)")
    print("| contender | ratio to floor | median us/call |")
    print("| --- | --- | --- |")
    for name, (ratio, micros) in result.items():
        print(f"| {name} | {ratio:.2f} | {micros:.0f} |")
    for note in notes:
        print(f"- {note}")
    for close in cleanup:
        await close()


class _CountingBackend:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


async def bench_cached_many(prefix: str) -> None:
    videos = {str(v.id): v for v in (make_video() for _ in range(100))}
    ids = list(videos)
    backend = RedisCache(REDIS_URL, prefix=prefix)
    service = VideoService(backend)

    async def load_many(wanted: list[str]) -> dict[str, VideoResponse]:
        return {i: videos[i] for i in wanted}

    await service.cached_many(ids, load_many, model=VideoResponse)
    counting = _CountingBackend(backend)
    service.cache = counting
    found = await service.cached_many(ids, load_many, model=VideoResponse)
    assert len(found) == 100
    round_trips = counting.calls
    service.cache = backend

    async def many() -> None:
        await service.cached_many(ids, load_many, model=VideoResponse)

    async def sequential() -> None:
        for i in ids:

            async def load(i: str = i) -> VideoResponse:
                return videos[i]

            await service.cached(i, load, model=VideoResponse)

    result = await interleaved(
        {"100 sequential cached()": sequential, "cached_many(100)": many},
        "100 sequential cached()",
        ROUNDS,
        max(5, CALLS // 50),
    )
    ratio, micros = result["cached_many(100)"]
    _, sequential_micros = result["100 sequential cached()"]
    print("\n## cached_many, 100 ids, all hits")
    print(f"- backend calls per cached_many: {round_trips} (one MGET)")
    print(
        f"- cached_many(100): {micros:.0f} us; 100 sequential cached(): {sequential_micros:.0f} us;"
        f" speed-up {1 / ratio:.1f}x"
    )
    await backend.close()


async def bench_stampede_one_process(prefix: str) -> None:
    backend = RedisCache(REDIS_URL, prefix=prefix)
    service = VideoService(backend)
    video = make_video()
    calls = 0

    async def slow_load() -> VideoResponse:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return video

    values = await asyncio.gather(
        *(service.cached("stampede", slow_load, model=VideoResponse) for _ in range(1000))
    )
    assert all(v == video for v in values)
    print("\n## Stampede")
    print(f"- 1 process, 1,000 concurrent misses on one key: {calls} loader call(s)")
    await backend.close()


async def stampede_worker(prefix: str, start_at: float, readers: int) -> None:
    """One of the two processes: ``readers`` concurrent misses, loads counted in Redis."""
    backend = RedisCache(REDIS_URL, prefix=prefix)
    service = LockedVideoService(backend)
    counter = redis.Redis.from_url(REDIS_URL)
    video = make_video()

    async def slow_load() -> VideoResponse:
        await counter.incr(f"{prefix}loads")
        await asyncio.sleep(0.1)
        return video

    await asyncio.sleep(max(0.0, start_at - time.time()))
    values = await asyncio.gather(
        *(service.cached("stampede", slow_load, model=VideoResponse) for _ in range(readers))
    )
    assert all(v is not None for v in values)
    await backend.close()
    await counter.aclose()


async def bench_stampede_two_processes(prefix: str) -> None:
    start_at = time.time() + 1.5  # both processes import and connect first
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.bench_cache",
            "--stampede-worker",
            prefix,
            str(start_at),
        )
        for _ in range(2)
    ]
    codes = [await worker.wait() for worker in workers]
    assert codes == [0, 0], codes
    counter = redis.Redis.from_url(REDIS_URL)
    loads = int(await counter.get(f"{prefix}loads") or 0)
    await counter.aclose()
    print(
        f"- 2 processes x 500 concurrent misses on one key, cache_lock on: {loads} loader call(s)"
    )


async def bench_breaker_open() -> None:
    from tests.fixtures.cache import Blackhole, free_port

    video = make_video()

    async def load() -> VideoResponse:
        return video

    async def direct() -> VideoResponse:
        return VideoResponse.model_validate(await load())

    hole = Blackhole()
    await hole.start()
    print("\n## Redis unreachable, breaker open (added latency per call, median)")
    for label, url in (
        ("connection refused", f"redis://127.0.0.1:{free_port()}/0"),
        ("blackholed (accepts, never answers)", f"redis://127.0.0.1:{hole.port}/0"),
    ):
        backend = RedisCache(url, breaker=CircuitBreaker(reset_timeout=3600))
        service = VideoService(backend)
        for i in range(3):  # the calls that pay a timeout and open the breaker
            await service.cached(f"k{i}", load, model=VideoResponse)
        assert backend.breaker.state == "open"

        async def cached(service: VideoService = service) -> VideoResponse | None:
            return await service.cached("k", load, model=VideoResponse)

        samples = []
        for _ in range(ROUNDS):
            with_cache = await timed(cached, CALLS)
            without = await timed(direct, CALLS)
            samples.append((with_cache - without) * 1e6)
        print(f"- {label}: +{statistics.median(samples):.1f} us per call, no request failed")
        await backend.close()
    await hole.close()


async def cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def main() -> None:
    logging.basicConfig(format="  (log) %(name)s: %(message)s")
    prefix = f"bench-cache-{secrets.token_hex(4)}:"
    print(f"Redis: {REDIS_URL}; Python {sys.version.split()[0]}")
    try:
        await bench_hit_path(prefix)
        await bench_cached_many(prefix)
        await bench_stampede_one_process(prefix)
        await bench_stampede_two_processes(prefix)
        await bench_breaker_open()
    finally:
        await cleanup(prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stampede-worker", nargs=2, metavar=("PREFIX", "START_AT"))
    args = parser.parse_args()
    if args.stampede_worker:
        prefix, start = args.stampede_worker
        asyncio.run(stampede_worker(prefix, float(start), readers=500))
    else:
        asyncio.run(main())
