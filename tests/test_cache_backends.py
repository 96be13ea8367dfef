"""The backends keep the CacheBackend contract, on memory, fakeredis and real Redis."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
import redis.asyncio as redis

from heygen_conventions import (
    CacheBackend,
    CacheUnavailableError,
    CircuitBreaker,
    MemoryCache,
    PubSubBackend,
    RedisCache,
    ServiceUnavailableError,
)
from heygen_conventions.cache import DEFAULT_REDIS_OPTIONS
from tests.fixtures.cache import cache_keys


async def test_backend_satisfies_both_protocols(cache_backend: CacheBackend) -> None:
    assert isinstance(cache_backend, CacheBackend)
    assert isinstance(cache_backend, PubSubBackend)


async def test_get_set_delete_round_trip(cache_backend: CacheBackend) -> None:
    assert await cache_backend.get("absent") is None
    await cache_backend.set("k", b"\x00\xffbinary")
    assert await cache_backend.get("k") == b"\x00\xffbinary"
    assert await cache_backend.delete("k") is True
    assert await cache_backend.delete("k") is False
    assert await cache_backend.get("k") is None


async def test_many_keep_order_and_count(cache_backend: CacheBackend) -> None:
    await cache_backend.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl=30)
    assert await cache_backend.get_many(["c", "missing", "a"]) == [b"3", None, b"1"]
    assert await cache_backend.get_many([]) == []
    assert await cache_backend.delete_many(["a", "b", "missing"]) == 2
    assert await cache_backend.delete_many([]) == 0
    await cache_backend.set_many({})
    assert await cache_backend.get_many(["a", "b", "c"]) == [None, None, b"3"]


async def test_ttl_expires(cache_backend: CacheBackend) -> None:
    await cache_backend.set("short", b"x", ttl=0.05)
    await cache_backend.set("long", b"y", ttl=30)
    assert await cache_backend.get("short") == b"x"
    await asyncio.sleep(0.15)
    assert await cache_backend.get("short") is None
    assert await cache_backend.get("long") == b"y"


async def test_set_if_absent_is_a_lock(cache_backend: CacheBackend) -> None:
    assert await cache_backend.set_if_absent("lock", b"first", ttl=0.1) is True
    assert await cache_backend.set_if_absent("lock", b"second", ttl=0.1) is False
    assert await cache_backend.get("lock") == b"first"
    await asyncio.sleep(0.2)
    assert await cache_backend.set_if_absent("lock", b"third", ttl=5) is True


async def test_incr_counts_from_zero(cache_backend: CacheBackend) -> None:
    assert await cache_backend.incr("n") == 1
    assert await cache_backend.incr("n", 5) == 6
    assert await cache_backend.get("n") == b"6"


async def test_incr_on_a_non_integer_raises_the_library_error(cache_backend: CacheBackend) -> None:
    await cache_backend.set("text", b"abc")
    with pytest.raises(CacheUnavailableError):
        await cache_backend.incr("text")


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_non_positive_ttl_is_rejected(cache_backend: CacheBackend, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl must be > 0"):
        await cache_backend.set("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl must be > 0"):
        await cache_backend.set_many({"k": b"v"}, ttl=ttl)


async def test_values_must_be_bytes(cache_backend: CacheBackend) -> None:
    with pytest.raises(TypeError, match="bytes"):
        await cache_backend.set("k", "text")  # type: ignore[arg-type]
    await cache_backend.set("k", bytearray(b"ok"))  # type: ignore[arg-type]
    assert await cache_backend.get("k") == b"ok"


async def test_keys_carry_the_prefix(cache_backend: CacheBackend) -> None:
    await cache_backend.set("plain key", b"1", ttl=30)
    assert await cache_keys(cache_backend) == ["plain key"]


async def test_publish_reaches_subscribers_after_entering(cache_backend: CacheBackend) -> None:
    assert isinstance(cache_backend, PubSubBackend)
    async with cache_backend.subscribe("news") as messages:
        assert await cache_backend.publish("news", b"hello") >= 1
        assert await asyncio.wait_for(anext(aiter(messages)), 5) == b"hello"


async def test_memory_cache_evicts_least_recently_used() -> None:
    cache = MemoryCache(maxsize=2)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"  # a is now the most recently used
    await cache.set("c", b"3")
    assert await cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    assert len(cache) == 2


async def test_memory_cache_ttl_follows_its_clock() -> None:
    now = [100.0]
    cache = MemoryCache(clock=lambda: now[0])
    await cache.set("k", b"v", ttl=10)
    now[0] += 9.9
    assert await cache.get("k") == b"v"
    now[0] += 0.2
    assert await cache.get("k") is None


async def test_memory_cache_incr_keeps_the_ttl() -> None:
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    await cache.set("n", b"1", ttl=10)
    assert await cache.incr("n") == 2
    now[0] = 11
    assert await cache.get("n") is None


async def test_memory_cache_sweeps_expired_entries_as_it_grows() -> None:
    now = [0.0]
    cache = MemoryCache(maxsize=None, clock=lambda: now[0])
    await cache.set_many({f"old{i}": b"1" for i in range(1000)}, ttl=10)
    await cache.set_many({f"kept{i}": b"1" for i in range(24)})
    now[0] = 11
    await cache.set("new", b"1", ttl=10)  # the 1025th entry: past the first sweep mark
    assert len(cache) == 25
    # Unbounded: live entries stay, however many are written.
    await cache.set_many({f"more{i}": b"1" for i in range(20_000)}, ttl=60)
    assert len(cache) == 20_025
    assert await cache.get("kept0") == b"1"


async def test_memory_cache_refuses_work_once_closed() -> None:
    cache = MemoryCache()
    await cache.set("k", b"v")
    async with cache.subscribe("c") as messages:
        await cache.close()
        with pytest.raises(CacheUnavailableError):
            await anext(aiter(messages))
    with pytest.raises(CacheUnavailableError):
        await cache.get("k")


@pytest.mark.parametrize("bad", [{"maxsize": 0}, {"default_ttl": 0}])
def test_memory_cache_rejects_bad_configuration(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        MemoryCache(**bad)  # type: ignore[arg-type]


def test_redis_cache_from_url_uses_short_timeouts_and_one_retry() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")
    client = cache.client
    assert isinstance(client, redis.Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == DEFAULT_REDIS_OPTIONS["socket_timeout"] <= 0.5
    assert kwargs["socket_connect_timeout"] <= 0.5
    assert kwargs["health_check_interval"] > 0
    retry = kwargs["retry"]
    assert retry.get_retries() == 1


def test_redis_cache_client_options_override_the_defaults() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", client_options={"socket_timeout": 2.0})
    client = cache.client
    assert isinstance(client, redis.Redis)
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2.0


def test_redis_cache_refuses_a_decoding_client() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisCache(fakeredis.FakeAsyncRedis(decode_responses=True))


def test_redis_cache_refuses_client_options_with_a_client() -> None:
    with pytest.raises(ValueError, match="client_options"):
        RedisCache(fakeredis.FakeAsyncRedis(), client_options={"socket_timeout": 1})


async def test_redis_cache_closes_only_the_client_it_created() -> None:
    client = fakeredis.FakeAsyncRedis()
    await RedisCache(client).close()
    assert await client.ping() is True  # still usable: the caller owns it
    await client.aclose()


async def test_wrong_type_at_a_key_is_a_cache_error_not_an_outage() -> None:
    client = fakeredis.FakeAsyncRedis()
    cache = RedisCache(client)
    await client.lpush("list", b"x")
    with pytest.raises(CacheUnavailableError) as caught:
        await cache.get("list")
    assert isinstance(caught.value, ServiceUnavailableError)
    assert caught.value.__cause__ is not None
    assert cache.breaker.state == "closed"
    await client.aclose()


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=5, clock=lambda: now[0])
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"  # the success reset the count
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.allow() is False
    assert breaker.retry_after() == 5
    now[0] = 5
    assert breaker.allow() is True  # the probe
    assert breaker.state == "half_open"
    assert breaker.allow() is False  # only one probe at a time
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.opened_count == 2
    now[0] = 10
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.retry_after() == 0


def test_breaker_replaces_a_probe_that_never_reported() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 1
    assert breaker.allow() is True
    now[0] = 1.5
    assert breaker.allow() is False
    now[0] = 2
    assert breaker.allow() is True


def test_breaker_probe_now_lets_one_call_through_before_the_reset_timeout() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60, clock=lambda: now[0])
    breaker.probe_now()
    assert breaker.state == "closed"  # nothing to do
    breaker.record_failure()
    assert breaker.allow() is False
    breaker.probe_now()
    assert breaker.allow() is True  # the probe, 59 s early
    assert breaker.allow() is False  # one at a time, as any probe
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.retry_after() == 60  # a failed probe opens it for the whole timeout again
    breaker.probe_now()  # a probe that never reported back is replaced too
    assert breaker.allow() is True


@pytest.mark.parametrize("bad", [{"failure_threshold": 0}, {"reset_timeout": 0}])
def test_breaker_rejects_bad_configuration(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(**bad)  # type: ignore[arg-type]
