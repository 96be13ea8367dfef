"""The two cache backends: :class:`MemoryCache` (in-process) and :class:`RedisCache`.

Both store bytes under string keys, prefixed with the backend's ``prefix``,
and raise :class:`~heygen_conventions.errors.CacheUnavailableError` (chained
to the original error) whenever they cannot answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from types import TracebackType
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from heygen_conventions._breaker import CircuitBreaker
from heygen_conventions.errors import CacheUnavailableError

__all__ = ["DEFAULT_REDIS_OPTIONS", "MemoryCache", "RedisCache"]

#: What ``RedisCache(url)`` passes to redis-py unless overridden. redis-py's own
#: defaults (5 s timeouts, 10 retries) turn a Redis outage into multi-second
#: requests; a cache must give up fast and let the breaker take over.
#: Calls wait up to ``pool_timeout`` for a free connection when all
#: ``max_connections`` are busy, instead of failing at once as redis-py's
#: default pool does (a burst of requests must queue, not trip the breaker).
DEFAULT_REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 0.25,
    "socket_timeout": 0.5,
    "health_check_interval": 15,
    "max_connections": 64,
    "pool_timeout": 0.5,
}


def _default_retry() -> Retry:
    # One quick retry on a dropped connection (a pooled socket that died when
    # Redis restarted); a timeout is not retried, it would only double the wait.
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.05),
        retries=1,
        supported_errors=(RedisConnectionError,),
    )


_SUBSCRIBE_CONFIRM_TIMEOUT = 2.0
_PUBSUB_POLL_SECONDS = 1.0


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if not ttl > 0:  # also rejects NaN
        raise ValueError(f"ttl must be > 0 seconds or None, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def _as_bytes(value: object) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"cache values are bytes, got {type(value).__name__}")


class _CloseHooks:
    """Callbacks run when a backend closes (the service mixin's background tasks)."""

    def __init__(self) -> None:
        self._close_hooks: list[Callable[[], Awaitable[None]]] = []

    def add_close_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._close_hooks.append(hook)

    async def _run_close_hooks(self) -> None:
        hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            await hook()


class MemoryCache(_CloseHooks):
    """In-process backend: TTLs, LRU eviction past ``maxsize``, in-process pub/sub.

    The embedded default when no Redis URL is configured. Each process has its
    own copy, so several app instances do not share it.

    Args:
        maxsize: Entries kept before the least recently used is evicted.
        prefix: Prepended to every key and channel.
        default_ttl: Seconds services cache for when they set no ``cache_ttl``.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    cluster = False

    def __init__(
        self,
        *,
        maxsize: int = 10_000,
        prefix: str = "",
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        if default_ttl is not None:
            _ttl_ms(default_ttl)
        self.maxsize = maxsize
        self.prefix = prefix
        self.default_ttl = default_ttl
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._channels: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._data)

    def _check_open(self) -> None:
        if self._closed:
            raise CacheUnavailableError("Cache is closed")

    def _lookup(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at is not None and expires_at <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, ttl: float | None) -> None:
        ms = _ttl_ms(ttl)
        expires_at = None if ms is None else self._clock() + ms / 1000
        self._data[key] = (value, expires_at)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        return self._lookup(self.prefix + key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check_open()
        prefix = self.prefix
        return [self._lookup(prefix + key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._check_open()
        self._store(self.prefix + key, _as_bytes(value), ttl)

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        self._check_open()
        _ttl_ms(ttl)
        for key, value in items.items():
            self._store(self.prefix + key, _as_bytes(value), ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        self._check_open()
        full = self.prefix + key
        if self._lookup(full) is not None:
            return False
        self._store(full, _as_bytes(value), ttl)
        return True

    async def delete(self, key: str) -> bool:
        self._check_open()
        full = self.prefix + key
        if self._lookup(full) is None:
            return False
        del self._data[full]
        return True

    async def delete_many(self, keys: Sequence[str]) -> int:
        self._check_open()
        return sum([await self.delete(key) for key in keys])

    async def incr(self, key: str, amount: int = 1) -> int:
        self._check_open()
        full = self.prefix + key
        current = self._lookup(full)
        try:
            number = int(current) if current is not None else 0
        except ValueError:
            raise CacheUnavailableError("Value at key is not an integer") from None
        number += amount
        expires_at = self._data[full][1] if current is not None else None
        self._data[full] = (str(number).encode(), expires_at)
        self._data.move_to_end(full)
        return number

    async def publish(self, channel: str, message: bytes) -> int:
        self._check_open()
        receivers = self._channels.get(self.prefix + channel, ())
        for queue in receivers:
            with suppress(asyncio.QueueFull):
                queue.put_nowait(_as_bytes(message))
        return len(receivers)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscribe(self.prefix + channel)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        self._check_open()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=10_000)
        self._channels.setdefault(channel, set()).add(queue)

        async def messages() -> AsyncIterator[bytes]:
            while True:
                message = await queue.get()
                if message is None:
                    raise CacheUnavailableError("Cache is closed")
                yield message

        try:
            yield messages()
        finally:
            self._channels.get(channel, set()).discard(queue)

    async def close(self) -> None:
        await self._run_close_hooks()
        self._closed = True
        self._data.clear()
        for queues in self._channels.values():
            for queue in queues:
                with suppress(asyncio.QueueFull):
                    queue.put_nowait(None)


# Errors that mean "Redis is not answering": they count towards the breaker.
_AVAILABILITY_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class _Guard:
    """Checks the breaker before a call and translates redis-py errors after it."""

    __slots__ = ("breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def __enter__(self) -> None:
        if not self.breaker.allow():
            raise CacheUnavailableError(
                "Cache circuit is open", retry_after=math.ceil(self.breaker.retry_after())
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.breaker.record_success()
            return
        if issubclass(exc_type, _AVAILABILITY_ERRORS):
            self.breaker.record_failure()
            raise CacheUnavailableError(f"Redis unavailable: {exc_type.__name__}") from exc
        if issubclass(exc_type, RedisError):
            # Redis answered (e.g. WRONGTYPE): it is up, the data is wrong.
            self.breaker.record_success()
            raise CacheUnavailableError(f"Redis error: {exc_type.__name__}") from exc


class RedisCache(_CloseHooks):
    """Backend on ``redis.asyncio``, for state shared by several app instances.

    Give it a URL (``redis://host:6379/0``, ``rediss://...``) to get a pooled
    client with short timeouts, one retry on a dropped connection and health
    checks (:data:`DEFAULT_REDIS_OPTIONS`, overridable through
    ``client_options``), closed with the backend. Or give it an existing
    ``redis.asyncio.Redis`` / ``RedisCluster`` client (fakeredis included),
    which stays open when the backend closes. A circuit breaker in front of
    every call makes an unreachable Redis cost microseconds per call once
    it has failed ``failure_threshold`` times in a row.

    Args:
        client: A URL or an existing client.
        prefix: Prepended to every key and channel (e.g. ``"videos-api:"``).
        default_ttl: Seconds services cache for when they set no ``cache_ttl``.
        cluster: Treat a URL as a Redis Cluster entry point. Keys that must
            share a slot then carry a hash tag (``{namespace}``).
        breaker: The circuit breaker; a fresh ``CircuitBreaker()`` by default.
        client_options: Extra keyword arguments for the redis-py client.
    """

    def __init__(
        self,
        client: str | redis.Redis | RedisCluster,
        *,
        prefix: str = "",
        default_ttl: float | None = None,
        cluster: bool = False,
        breaker: CircuitBreaker | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if default_ttl is not None:
            _ttl_ms(default_ttl)
        self.prefix = prefix
        self.default_ttl = default_ttl
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._guard = _Guard(self.breaker)
        self._client: redis.Redis | RedisCluster
        if isinstance(client, str):
            options = {**DEFAULT_REDIS_OPTIONS, "retry": _default_retry(), **(client_options or {})}
            pool_timeout = options.pop("pool_timeout")
            if cluster:
                options.pop("health_check_interval", None)
                self._client = RedisCluster.from_url(client, **options)
            else:
                pool = redis.BlockingConnectionPool.from_url(
                    client, timeout=pool_timeout, **options
                )
                self._client = redis.Redis.from_pool(pool)
            self._owns_client = True
        else:
            if client_options:
                raise ValueError("client_options apply only when RedisCache creates the client")
            self._client = client
            self._owns_client = False
        connection_kwargs: dict[str, Any] = getattr(self._client, "get_connection_kwargs", dict)()
        if connection_kwargs.get("decode_responses"):
            raise ValueError("RedisCache needs a client with decode_responses=False (bytes)")
        self.cluster = isinstance(self._client, RedisCluster)
        # A cluster client splits a multi-key read by hash slot; keys that share
        # a slot (one namespace) still go in one command.
        self._mget: Callable[[list[str]], Awaitable[list[Any]]] = (
            self._client.mget_nonatomic
            if isinstance(self._client, RedisCluster)
            else self._client.mget
        )

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The underlying redis-py client (for commands the protocol does not cover)."""
        return self._client

    async def get(self, key: str) -> bytes | None:
        with self._guard:
            value = await self._client.get(self.prefix + key)
        return cast("bytes | None", value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        prefix = self.prefix
        with self._guard:
            values = await self._mget([prefix + key for key in keys] if prefix else list(keys))
        return cast("list[bytes | None]", values)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        ms = _ttl_ms(ttl)
        with self._guard:
            await self._client.set(self.prefix + key, _as_bytes(value), px=ms)

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        ms = _ttl_ms(ttl)
        if not items:
            return
        prefix = self.prefix
        with self._guard:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(prefix + key, _as_bytes(value), px=ms)
                await pipe.execute()

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        ms = _ttl_ms(ttl)
        with self._guard:
            stored = await self._client.set(self.prefix + key, _as_bytes(value), px=ms, nx=True)
        return bool(stored)

    async def delete(self, key: str) -> bool:
        with self._guard:
            removed: int = await self._client.delete(self.prefix + key)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        prefix = self.prefix
        with self._guard:
            removed: int = await self._client.delete(*[prefix + key for key in keys])
        return removed

    async def incr(self, key: str, amount: int = 1) -> int:
        with self._guard:
            value: int = await self._client.incrby(self.prefix + key, amount)
        return value

    async def publish(self, channel: str, message: bytes) -> int:
        with self._guard:
            receivers: int = await self._client.publish(self.prefix + channel, _as_bytes(message))
        return receivers

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscribe(self.prefix + channel)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub = self._client.pubsub()
        try:
            with self._guard:
                await pubsub.subscribe(channel)
                # Messages published before the server confirms are not delivered,
                # so the subscription counts only from the confirmation on.
                async with asyncio.timeout(_SUBSCRIBE_CONFIRM_TIMEOUT):
                    while True:
                        reply = await pubsub.get_message(timeout=_PUBSUB_POLL_SECONDS)
                        if reply is not None and reply.get("type") == "subscribe":
                            break
            yield self._messages(pubsub)
        finally:
            with suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _messages(self, pubsub: Any) -> AsyncIterator[bytes]:
        while True:
            try:
                reply = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_PUBSUB_POLL_SECONDS
                )
            except (*_AVAILABILITY_ERRORS, RedisError) as exc:
                raise CacheUnavailableError("Redis subscription lost") from exc
            if reply is not None and reply.get("type") == "message":
                yield reply["data"]

    async def close(self) -> None:
        await self._run_close_hooks()
        if self._owns_client:
            await self._client.aclose()
