"""The two cache backends: :class:`MemoryCache` (in-process) and :class:`RedisCache`.

Both store bytes under string keys, prefixed with the backend's ``prefix``,
and raise :class:`~heygen_conventions.errors.CacheUnavailableError` (chained
to the original error) whenever they cannot answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
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
#: At most ``max_connections`` calls run at once; more wait up to
#: ``pool_timeout`` for a turn instead of failing at once as redis-py's pool
#: does when it runs out (a burst of requests must queue, not trip the breaker).
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
_SWEEP_FLOOR = 1024
_PUBSUB_HEADROOM = 4
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
        maxsize: Entries kept before the least recently used is evicted;
            None never evicts a live entry (for records that must last their
            TTL, such as token revocations). Either way expired entries are
            swept out as the cache grows.
        prefix: Prepended to every key and channel.
        default_ttl: Seconds services cache for when they set no ``cache_ttl``.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    cluster = False

    def __init__(
        self,
        *,
        maxsize: int | None = 10_000,
        prefix: str = "",
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 or None, got {maxsize}")
        if default_ttl is not None:
            _ttl_ms(default_ttl)
        self.maxsize = maxsize
        self.prefix = prefix
        self.default_ttl = default_ttl
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._sweep_at = _SWEEP_FLOOR
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
        if len(self._data) > self._sweep_at:
            self._sweep()
        if self.maxsize is not None:
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def _sweep(self) -> None:
        now = self._clock()
        data = self._data
        expired = [
            key for key, (_, expires) in data.items() if expires is not None and expires <= now
        ]
        for key in expired:
            del data[key]
        # Amortised O(1) per write: the next sweep waits for the entries to double.
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(data))

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

    def _reopen(self) -> None:
        # An app's lifespan can run again after shutdown closed the cache (a
        # second TestClient or app_client block): serve again, empty, as a
        # Redis client or a disposed engine do.
        self._closed = False

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
# A call cancelled after this long counts as a failure too: a cache call to a
# healthy Redis on the same network takes a millisecond or so.
_SLOW_CALL = 0.25


class _Call:
    """Wraps every Redis call: breaker first, then a connection turn, then error translation.

    At most ``limit`` calls run at once, the pool's size: past it a call waits
    (up to ``pool_timeout``) for a turn instead of failing the way redis-py's
    pool does when it runs out, so a burst of requests queues rather than
    tripping the breaker. The common case (breaker closed, a turn free) takes
    no await.
    """

    __slots__ = ("breaker", "in_use", "limit", "pool_timeout", "started", "waiters")

    def __init__(self, breaker: CircuitBreaker, limit: int, pool_timeout: float) -> None:
        self.breaker = breaker
        self.limit = limit
        self.pool_timeout = pool_timeout
        self.in_use = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        # When each call made with ``async with`` (by task) got its turn (see failed()).
        self.started: dict[asyncio.Task[Any] | None, float] = {}

    def enter(self) -> bool:
        """Take a turn now (True), or False when the caller must :meth:`wait` for one."""
        if not self.breaker.allow():
            raise CacheUnavailableError(
                "Cache circuit is open", retry_after=math.ceil(self.breaker.retry_after())
            )
        if self.in_use < self.limit and not self.waiters:
            self.in_use += 1
            return True
        return False

    async def wait(self) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(turn)
        try:
            async with asyncio.timeout(self.pool_timeout):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._hand_over()  # we were given a turn we will not use
            else:
                self.waiters.remove(turn)
            if isinstance(exc, TimeoutError):
                self.breaker.record_failure()
                raise CacheUnavailableError("No Redis connection free in time") from exc
            raise

    def _hand_over(self) -> None:
        while self.waiters:
            turn = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the turn passes on; in_use stays
                return
        self.in_use -= 1

    def succeeded(self) -> None:
        self._hand_over()
        self.breaker.record_success()

    def failed(self, exc: BaseException, started: float | None = None) -> None:
        """Give the turn back; raise the library's error for a redis-py one.

        ``started``: when the call got its turn. A call cancelled after
        ``_SLOW_CALL`` (the caller's own deadline ran out before the socket's)
        counts as a failure: left uncounted, a Redis that never answers would
        never open the breaker for an application with short request timeouts.
        """
        self._hand_over()
        if (
            isinstance(exc, asyncio.CancelledError)
            and started is not None
            and time.monotonic() - started >= _SLOW_CALL
        ):
            self.breaker.record_failure()
            return
        if isinstance(exc, _AVAILABILITY_ERRORS):
            self.breaker.record_failure()
            raise CacheUnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        if isinstance(exc, RedisError):
            # Redis answered (e.g. WRONGTYPE): it is up, the data is wrong.
            self.breaker.record_success()
            raise CacheUnavailableError(f"Redis error: {type(exc).__name__}") from exc

    async def __aenter__(self) -> None:
        if not self.enter():
            await self.wait()
        self.started[asyncio.current_task()] = time.monotonic()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        started = self.started.pop(asyncio.current_task(), None)
        if exc is None:
            self.succeeded()
        else:
            self.failed(exc, started)


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
        self._client: redis.Redis | RedisCluster
        pool_timeout = float(DEFAULT_REDIS_OPTIONS["pool_timeout"])
        if isinstance(client, str):
            options = {**DEFAULT_REDIS_OPTIONS, "retry": _default_retry(), **(client_options or {})}
            pool_timeout = float(options.pop("pool_timeout"))
            permits = int(options["max_connections"])
            # Room beyond the permits for pub/sub connections, which hold one each.
            options["max_connections"] = permits + _PUBSUB_HEADROOM
            if cluster:
                options.pop("health_check_interval", None)
                self._client = RedisCluster.from_url(client, **options)
            else:
                self._client = redis.Redis.from_url(client, **options)
            self._owns_client = True
        else:
            if client_options:
                raise ValueError("client_options apply only when RedisCache creates the client")
            self._client = client
            self._owns_client = False
            pool_size = getattr(getattr(client, "connection_pool", None), "max_connections", None)
            permits = int(DEFAULT_REDIS_OPTIONS["max_connections"])
            if isinstance(pool_size, int):
                permits = max(1, min(pool_size - _PUBSUB_HEADROOM, 2**16))
        self._call = _Call(self.breaker, permits, pool_timeout)
        connection_kwargs: dict[str, Any] = getattr(self._client, "get_connection_kwargs", dict)()
        if connection_kwargs.get("decode_responses"):
            raise ValueError("RedisCache needs a client with decode_responses=False (bytes)")
        self.cluster = isinstance(self._client, RedisCluster)
        self._mget: Callable[[list[str]], Awaitable[list[Any]]]
        if isinstance(self._client, RedisCluster):
            # Splits a multi-key read by hash slot; keys that share a slot (one
            # namespace) still go in one command.
            self._mget = self._client.mget_nonatomic
        elif getattr(self._client, "single_connection_client", False):
            self._mget = self._client.mget
        else:
            self._mget = self._mget_direct

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The underlying redis-py client (for commands the protocol does not cover)."""
        return self._client

    async def get(self, key: str) -> bytes | None:
        async with self._call:
            value = await self._client.get(self.prefix + key)
        return cast("bytes | None", value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        prefix = self.prefix
        call = self._call
        if not call.enter():  # the hot path: no await unless Redis is saturated
            await call.wait()
        started = time.monotonic()
        try:
            values = await self._mget([prefix + key for key in keys] if prefix else list(keys))
        except BaseException as exc:
            call.failed(exc, started)
            raise
        call.succeeded()
        return cast("list[bytes | None]", values)

    async def _mget_direct(self, keys: list[str]) -> list[Any]:
        # Every cache read is one MGET. redis-py's execute_command wraps each
        # command in retry bookkeeping and metrics hooks that cost about as
        # much CPU as the whole round trip; this sends MGET on a pooled
        # connection through the same public connection API its pipelines
        # use, keeping its behaviour: one retry on a dropped connection, and
        # a connection left in an unknown state is closed, never reused.
        assert isinstance(self._client, redis.Redis)
        pool = self._client.connection_pool
        attempt = 0
        while True:
            attempt += 1
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.send_command("MGET", *keys)
                reply: list[Any] = await connection.read_response()
            except BaseException as exc:
                with suppress(Exception):
                    await connection.disconnect()
                if attempt == 1 and isinstance(exc, RedisConnectionError):
                    continue
                raise
            finally:
                await pool.release(connection)
            return reply

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        ms = _ttl_ms(ttl)
        async with self._call:
            await self._client.set(self.prefix + key, _as_bytes(value), px=ms)

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        ms = _ttl_ms(ttl)
        if not items:
            return
        prefix = self.prefix
        async with self._call, self._client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(prefix + key, _as_bytes(value), px=ms)
            await pipe.execute()

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        ms = _ttl_ms(ttl)
        async with self._call:
            stored = await self._client.set(self.prefix + key, _as_bytes(value), px=ms, nx=True)
        return bool(stored)

    async def delete(self, key: str) -> bool:
        async with self._call:
            removed: int = await self._client.delete(self.prefix + key)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        prefix = self.prefix
        async with self._call:
            removed: int = await self._client.delete(*[prefix + key for key in keys])
        return removed

    async def incr(self, key: str, amount: int = 1) -> int:
        async with self._call:
            value: int = await self._client.incrby(self.prefix + key, amount)
        return value

    async def publish(self, channel: str, message: bytes) -> int:
        async with self._call:
            receivers: int = await self._client.publish(self.prefix + channel, _as_bytes(message))
        return receivers

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscribe(self.prefix + channel)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub = self._client.pubsub()
        try:
            async with self._call:
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
