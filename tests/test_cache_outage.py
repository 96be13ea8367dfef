"""Fail-open: Redis killed, refusing or blackholed; the loader answers, the breaker opens."""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from heygen_conventions import (
    CacheBackend,
    CachedServiceMixin,
    CacheUnavailableError,
    CircuitBreaker,
    MemoryCache,
    RedisCache,
    cache_stats,
    install_cache,
)
from heygen_conventions import _cache_engine as engine
from tests.fixtures.cache import Blackhole, RedisServer, free_port, unique_prefix


class Video(BaseModel):
    id: int
    title: str


class VideoService(CachedServiceMixin):
    cache_namespace = "videos"

    def __init__(self, cache: CacheBackend) -> None:
        self.cache = cache
        self.loads = 0

    async def get(self, video_id: int) -> Video | None:
        async def load() -> Video:
            self.loads += 1
            return Video(id=video_id, title=f"video {video_id}")

        return await self.cached(video_id, load, model=Video)


def _fast_cache(url: str, **breaker: Any) -> RedisCache:
    return RedisCache(
        url,
        prefix=unique_prefix("outage"),
        breaker=CircuitBreaker(**{"failure_threshold": 3, "reset_timeout": 0.3, **breaker}),
        client_options={"socket_timeout": 0.1, "socket_connect_timeout": 0.1},
    )


def _records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


async def test_redis_killed_mid_test_then_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="heygen_conventions.cache")
    cache = _fast_cache(redis_server.url)
    service = VideoService(cache)
    try:
        assert await service.get(1) == Video(id=1, title="video 1")
        assert await service.get(1) == Video(id=1, title="video 1")
        assert service.loads == 1

        redis_server.stop()
        for _ in range(20):
            assert await service.get(1) == Video(id=1, title="video 1")
        assert service.loads == 21
        assert cache.breaker.state == "open"
        stats = cache_stats(cache)
        assert stats["breaker"] == "open"
        assert stats["namespaces"]["videos"]["errors"] == 20
        (incident,) = _records(caplog, "Cache unavailable, answering from the loader")
        assert incident.levelno == logging.WARNING
        assert incident.cache_namespace == "videos"  # type: ignore[attr-defined]
        assert incident.cache_operation == "read"  # type: ignore[attr-defined]

        redis_server.start()  # empty: it did not persist anything
        await asyncio.sleep(0.35)  # past the breaker's reset timeout
        assert await service.get(1) == Video(id=1, title="video 1")
        assert cache.breaker.state == "closed"
        assert len(_records(caplog, "Cache recovered")) == 1
        loads = service.loads
        assert await service.get(1) == Video(id=1, title="video 1")
        assert service.loads == loads  # cached again
    finally:
        await cache.close()


async def test_an_outage_burst_still_loads_once_per_key(redis_server: RedisServer) -> None:
    cache = _fast_cache(redis_server.url)
    service = VideoService(cache)
    release = asyncio.Event()
    loads = 0

    async def slow() -> Video:
        nonlocal loads
        loads += 1
        await release.wait()
        return Video(id=1, title="slow")

    try:
        redis_server.stop()
        readers = [asyncio.create_task(service.cached(1, slow, model=Video)) for _ in range(200)]
        await asyncio.sleep(0.3)
        release.set()
        values = await asyncio.gather(*readers)
        assert all(v == Video(id=1, title="slow") for v in values)
        assert loads == 1
    finally:
        await cache.close()


async def test_connection_refused_opens_the_breaker() -> None:
    cache = _fast_cache(f"redis://127.0.0.1:{free_port()}/0")
    service = VideoService(cache)
    try:
        for i in range(50):
            assert await service.get(i) == Video(id=i, title=f"video {i}")
        assert cache.breaker.state == "open"
        assert cache.breaker.opened_count == 1
        with pytest.raises(CacheUnavailableError) as caught:
            await cache.get("anything")
        assert caught.value.retry_after is not None
        assert caught.value.message == "Cache circuit is open"
    finally:
        await cache.close()


async def test_blackholed_redis_costs_timeouts_only_until_the_breaker_opens(
    blackhole: Blackhole,
) -> None:
    cache = _fast_cache(f"redis://127.0.0.1:{blackhole.port}/0", reset_timeout=60)
    service = VideoService(cache)
    try:
        for i in range(3):
            assert await service.get(i) == Video(id=i, title=f"video {i}")
        assert cache.breaker.state == "open"
        await asyncio.sleep(0.05)
        sent = (blackhole.connections, blackhole.bytes_received)
        assert sent[1] > 0  # the first calls did reach the hole and timed out
        for i in range(200):
            assert await service.get(i) == Video(id=i, title=f"video {i}")
        await asyncio.sleep(0.05)
        # Once open, the breaker sends nothing, so no call waits for a timeout.
        assert (blackhole.connections, blackhole.bytes_received) == sent
        assert service.loads == 203
    finally:
        await cache.close()


async def test_calls_the_caller_cancels_open_the_breaker_of_a_redis_that_never_answers(
    blackhole: Blackhole,
) -> None:
    # The application's own deadline (0.3 s) is shorter than the socket's (1 s): every
    # call is cancelled, none times out, and the breaker must open all the same.
    cache = RedisCache(
        f"redis://127.0.0.1:{blackhole.port}/0",
        prefix=unique_prefix("outage"),
        breaker=CircuitBreaker(failure_threshold=3, reset_timeout=60),
        client_options={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
    )
    try:
        for call in (cache.get_many(["a"]), cache.get("b"), cache.get_many(["c"])):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await call
        assert cache.breaker.state == "open"
        with pytest.raises(CacheUnavailableError):  # at once, no call made
            await cache.get_many(["a"])
    finally:
        await cache.close()


async def test_a_call_cancelled_quickly_counts_for_nothing(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, prefix=unique_prefix("outage"))
    try:
        for _ in range(5):
            task = asyncio.ensure_future(cache.get_many(["a"]))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert cache.breaker.state == "closed"
        assert await cache.get_many(["a"]) == [None]
    finally:
        await cache.close()


async def test_invalidations_lost_in_an_outage_are_retried_and_never_served_stale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the backend fails, invalidations are kept and retried until they succeed."""
    flaky = _Flaky(MemoryCache())
    service = VideoService(flaky)  # type: ignore[arg-type]
    titles = {1: "old", 2: "old"}

    def loader(video_id: int) -> Any:
        async def load() -> Video:
            return Video(id=video_id, title=titles[video_id])

        return load

    await service.cached(1, loader(1), model=Video)
    await service.cached(2, loader(2), model=Video)
    flaky.down = True
    titles[1] = "new"
    await service.invalidate(1)
    await service.invalidate_namespace()
    (record,) = _records(
        caplog, "Cache invalidation failed; it is retried until the cache answers again"
    )
    assert record.levelno == logging.ERROR
    assert record.cache_operation == "invalidate"  # type: ignore[attr-defined]
    flaky.down = False
    titles[2] = "new"
    # Answered from the loader until the retry has gone through, never from the old entries.
    assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="new")
    assert await service.cached_many([1, 2], _load_many(titles), model=Video) == {
        1: Video(id=1, title="new"),
        2: Video(id=2, title="new"),
    }
    await _retries_done(flaky)
    assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="new")
    assert await service.cached(2, loader(2), model=Video) == Video(id=2, title="new")


async def test_a_key_whose_invalidation_failed_is_read_from_the_loader_until_it_is_retried() -> (
    None
):
    # Reads still work, writes fail: the old entry is right there in the cache.
    flaky = _Flaky(MemoryCache(), failing={"set_many", "set", "incr"})
    service = VideoService(flaky)  # type: ignore[arg-type]
    titles = {1: "old", 2: "old"}
    loads: list[int] = []

    def loader(video_id: int) -> Any:
        async def load() -> Video:
            loads.append(video_id)
            return Video(id=video_id, title=titles[video_id])

        return load

    assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="old")
    flaky.down = True
    titles[1] = "new"
    await service.invalidate(1)
    for _ in range(3):
        assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="new")
        found = await service.cached_many([1, 2], _load_many(titles), model=Video)
        assert found[1] == Video(id=1, title="new")
    assert loads == [1, 1, 1, 1]  # every read of key 1 went to the loader
    state = engine.existing_state(flaky)
    assert state is not None
    assert state.replaying is not None  # still retrying

    flaky.down = False
    await _retries_done(flaky)
    assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="new")
    assert await service.cached(1, loader(1), model=Video) == Video(id=1, title="new")
    assert loads == [1, 1, 1, 1, 1]  # cached again


async def test_a_failed_invalidation_reaches_the_other_instance_without_further_reads(
    shared_cache_backends: tuple[RedisCache, RedisCache], caplog: pytest.LogCaptureFixture
) -> None:
    """Instance a loses its link to Redis while b keeps it; a's invalidation reaches
    b once a's link is back, although a serves no request in between."""
    caplog.set_level(logging.INFO, logger="heygen_conventions.cache")
    first, second = shared_cache_backends
    outage = await _invalidated_while_cut_off(first, second)
    assert await outage.seen_by_b() == "old"  # a is cut off

    outage.flaky.down = False
    await outage.until_b_sees_new(within=5)
    await _retries_done(outage.flaky)
    assert len(_records(caplog, "Cache recovered")) == 1


async def test_closing_the_cache_stops_the_retries() -> None:
    flaky = _Flaky(MemoryCache())
    service = VideoService(flaky)  # type: ignore[arg-type]
    flaky.down = True
    await service.invalidate(1)
    state = engine.existing_state(flaky)
    assert state is not None
    retrying = state.replaying
    assert retrying is not None
    await engine.close_state(flaky)
    assert retrying.cancelled()
    assert state.replaying is None


async def test_closing_the_backend_itself_stops_the_retries() -> None:
    """Scripts and workers close the backend, not the app: no task may outlive it."""
    flaky = _Flaky(MemoryCache())
    service = VideoService(flaky)  # type: ignore[arg-type]
    flaky.down = True
    await service.invalidate(1)
    state = engine.existing_state(flaky)
    assert state is not None
    retrying = state.replaying
    assert retrying is not None
    flaky.down = False
    await flaky.close()
    assert retrying.cancelled()
    assert state.replaying is None


async def test_retries_probe_past_the_open_breaker_a_few_times_a_second_at_most() -> None:
    cache = _fast_cache(f"redis://127.0.0.1:{free_port()}/0", reset_timeout=60)
    service = VideoService(cache)
    try:
        for i in range(3):
            await service.get(i)
        assert cache.breaker.state == "open"
        await service.invalidate(1)
        errors = cache_stats(cache)["namespaces"]["videos"]["errors"]
        await asyncio.sleep(0.4)
        # Retries at about 0.05, 0.15 and 0.35 s, each one call past the breaker...
        retried = cache_stats(cache)["namespaces"]["videos"]["errors"] - errors
        assert 1 <= retried <= 4
        # ...which each failure opens again for the requests' calls (between two
        # probes; one may be under way at any moment, the breaker half open).
        for _ in range(100):
            if cache.breaker.state == "open":
                break
            await asyncio.sleep(0.01)
        assert cache.breaker.state == "open"
        assert cache.breaker.retry_after() > 58
    finally:
        await cache.close()


async def test_an_invalidation_lands_within_a_second_of_the_backend_coming_back() -> None:
    """The other instance stops serving the old entry a retry later, not a breaker
    reset timeout (here a minute) later."""
    shared = MemoryCache()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    outage = await _invalidated_while_cut_off(shared, shared, breaker)
    await asyncio.sleep(0.5)  # retries fail meanwhile
    outage.flaky.down = False
    await outage.until_b_sees_new(within=3)  # not the breaker's minute
    await _retries_done(outage.flaky)


def _load_many(titles: dict[int, str]) -> Any:
    async def load_many(ids: list[int]) -> dict[int, Video]:
        return {i: Video(id=i, title=titles[i]) for i in ids}

    return load_many


async def _retries_done(backend: Any) -> None:
    state = engine.existing_state(backend)
    assert state is not None
    for _ in range(500):
        if state.replaying is None:
            break
        await asyncio.sleep(0.01)
    assert state.replaying is None, "the failed invalidations were never retried"
    assert not state.failed


@dataclass
class _Outage:
    """Instance a behind a switch and instance b, on one store; a changed key 1 while cut off."""

    flaky: _Flaky
    on_b: VideoService
    titles: dict[int, str]

    async def load(self) -> Video:
        return Video(id=1, title=self.titles[1])

    async def seen_by_b(self) -> str:
        video = await self.on_b.cached(1, self.load, model=Video)
        assert video is not None
        return video.title

    async def until_b_sees_new(self, *, within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while await self.seen_by_b() == "old":
            assert loop.time() < deadline, "the invalidation never reached b"
            await asyncio.sleep(0.02)


async def _invalidated_while_cut_off(
    a_store: CacheBackend, b_store: CacheBackend, breaker: CircuitBreaker | None = None
) -> _Outage:
    """b has key 1 cached; a, cut off, committed a new title and failed to invalidate it."""
    flaky = _Flaky(a_store, breaker=breaker)
    outage = _Outage(flaky, VideoService(b_store), {1: "old"})
    assert await outage.seen_by_b() == "old"
    flaky.down = True
    outage.titles[1] = "new"  # committed through a
    await VideoService(flaky).invalidate(1)  # type: ignore[arg-type]
    return outage


class _Flaky:
    """A real backend behind a switch that makes every call fail like an outage.

    With a ``breaker``, calls go through it as RedisCache's do.
    """

    def __init__(
        self,
        inner: CacheBackend,
        failing: set[str] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.inner = inner
        self.down = False
        self.failing = failing  # the calls that fail while down; None: all of them
        if breaker is not None:
            self.breaker = breaker

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_heygen"):  # the mixin's state is the wrapper's own
            raise AttributeError(name)
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute  # plain attributes and sync methods (add_close_hook)

        async def call(*args: Any, **kwargs: Any) -> Any:
            breaker: CircuitBreaker | None = self.__dict__.get("breaker")
            if breaker is not None and not breaker.allow():
                raise CacheUnavailableError("circuit open")
            if self.down and (self.failing is None or name in self.failing):
                if breaker is not None:
                    breaker.record_failure()
                raise CacheUnavailableError("down")
            if breaker is not None:
                breaker.record_success()
            return await attribute(*args, **kwargs)

        return call


async def test_closing_makes_a_last_attempt_at_the_failed_invalidations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shutdown right after an outage: the invalidation reaches the other instances
    although the breaker would refuse calls for another minute."""
    shared = MemoryCache()  # the Redis both instances use
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    outage = await _invalidated_while_cut_off(shared, shared, breaker)
    assert await outage.seen_by_b() == "old"
    assert breaker.state == "open"  # for a minute
    outage.flaky.down = False  # Redis is back, and a shuts down before its first retry
    await engine.close_state(outage.flaky)  # what closing a's backend runs
    assert await outage.seen_by_b() == "new"
    assert not _records(caplog, _LOST)
    state = engine.existing_state(outage.flaky)
    assert state is not None
    assert not state.failed


_LOST = (
    "Cache invalidation lost at shutdown; other instances may serve the old entries "
    "until they expire"
)


async def test_invalidations_still_failing_at_shutdown_are_logged_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = _Flaky(MemoryCache())
    service = VideoService(flaky)  # type: ignore[arg-type]
    flaky.down = True
    await service.invalidate(1, "two")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await engine.close_state(flaky)
    assert loop.time() - started < engine.LAST_ATTEMPT_TIMEOUT + 1
    (lost,) = _records(caplog, _LOST)
    assert lost.levelno == logging.ERROR
    assert lost.cache_namespace == "videos"  # type: ignore[attr-defined]
    assert lost.cache_keys == ["1", "two"]  # type: ignore[attr-defined]
    assert lost.cache_keys_count == 2  # type: ignore[attr-defined]
    assert lost.stale_for_at_most_s == 86400.0  # type: ignore[attr-defined]
    state = engine.existing_state(flaky)
    assert state is not None
    assert state.replaying is None  # the failed last attempt started no retries
    # Still known here: this process keeps reading those keys from the loader.
    assert state.invalidation_failed("videos", "1")


async def test_a_connection_dropped_by_a_restart_is_retried_once(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, prefix=unique_prefix("outage"))
    try:
        await cache.set("k", b"v")
        assert await cache.get_many(["k"]) == [b"v"]  # leaves a pooled connection open
        redis_server.stop()
        redis_server.start()
        # The pooled connection is dead; the read retries on a fresh one.
        assert await cache.get_many(["k"]) == [None]
        assert cache.breaker.state == "closed"
    finally:
        await cache.close()


async def test_a_cancelled_read_does_not_poison_the_pool(blackhole: Blackhole) -> None:
    cache = _fast_cache(f"redis://127.0.0.1:{blackhole.port}/0")
    try:
        reader = asyncio.create_task(cache.get_many(["k"]))
        await asyncio.sleep(0.05)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert cache._call.in_use == 0  # the turn was given back
    finally:
        await cache.close()


async def test_calls_beyond_the_pool_size_queue_instead_of_failing() -> None:
    import fakeredis

    client = fakeredis.FakeAsyncRedis(max_connections=6)
    cache = RedisCache(client)
    assert cache._call.limit == 2
    await cache.set("k", b"v")
    results = await asyncio.gather(*(cache.get_many(["k"]) for _ in range(200)))
    assert results == [[b"v"]] * 200
    assert cache.breaker.state == "closed"
    await client.aclose()


async def test_a_saturated_pool_fails_open_after_pool_timeout(blackhole: Blackhole) -> None:
    cache = RedisCache(
        f"redis://127.0.0.1:{blackhole.port}/0",
        client_options={"max_connections": 1, "pool_timeout": 0.05, "socket_timeout": 0.5},
    )
    try:
        holder = asyncio.create_task(cache.get_many(["k"]))  # takes the only turn, hangs
        await asyncio.sleep(0.02)
        with pytest.raises(CacheUnavailableError, match="No Redis connection free"):
            await cache.get_many(["k"])
        with pytest.raises(CacheUnavailableError):
            await holder
        assert cache._call.in_use == 0
    finally:
        await cache.close()


class _SlottedDown:
    """A backend with ``__slots__`` (its state is kept aside) that is down for good."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    async def get_many(self, keys: Any) -> Any:
        raise CacheUnavailableError("down")

    async def set_many(self, mapping: Any, ttl: Any = None) -> None:
        self.calls += 1
        raise CacheUnavailableError("down")

    async def close(self) -> None:
        return None


async def test_an_app_shutting_down_makes_one_last_attempt_and_leaves_no_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """install_cache closes the state, then the backend, whose close hook would again."""
    for backend in (_Flaky(MemoryCache(), failing={"set_many"}), _SlottedDown()):
        caplog.clear()
        app = FastAPI()
        install_cache(app, backend)  # type: ignore[arg-type]
        if isinstance(backend, _Flaky):
            backend.down = True
        async with app.router.lifespan_context(app):
            await VideoService(backend).invalidate(1)  # type: ignore[arg-type]
        assert len(_records(caplog, _LOST)) == 1, type(backend).__name__
        leftover = [
            task
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task() and not task.done()
        ]
        assert leftover == [], type(backend).__name__
        if isinstance(backend, _SlottedDown):
            calls = backend.calls
            await asyncio.sleep(0.3)
            assert backend.calls == calls  # nothing retries after the close
