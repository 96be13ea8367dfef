"""Read-through caching for services, safe under outages, stampedes and concurrent writers.

A service mixes in :class:`CachedServiceMixin`, names its namespace and
reads through the cache::

    class VideoService(CachedServiceMixin):
        cache_namespace = "videos"

        def __init__(self, session: AsyncSession, cache: CacheBackend) -> None:
            self.session = session
            self.cache = cache

        async def get_video(self, video_id: UUID) -> VideoResponse:
            video = await self.cached(
                video_id, lambda: self.repository.get_by_id(video_id), model=VideoResponse
            )
            if video is None:
                raise NotFoundError("Video not found")
            return video

Values are stored as JSON through a cached pydantic ``TypeAdapter`` (no
pickle), by field name whatever the aliases, and come back as the model type;
a value that would not read back equal is answered uncached. One hit is one
``MGET`` of the namespace version, the key's generation token and the entry;
an entry is served only while its generation is current, which closes the
stale-refill race (see ``_cache_engine``). Keys read ``<prefix><namespace>:v<version>:
<schema hash>:<key>``. Concurrent misses for one key share one load; with
``cache_lock`` one process loads while the others wait. Every backend error
is logged once per incident, counted, and answered from the loader.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Protocol,
    TypeVar,
    overload,
    runtime_checkable,
)

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from heygen_conventions import _cache_engine as engine
from heygen_conventions._breaker import CircuitBreaker
from heygen_conventions._cache_backends import DEFAULT_REDIS_OPTIONS, MemoryCache, RedisCache
from heygen_conventions._cache_engine import (
    NOT_FOUND,
    VALUE,
    CacheKey,
    Codec,
    Config,
    NamespaceStats,
    State,
)
from heygen_conventions._cache_read import (
    TAKE_OVER,
    Flight,
    count_hit,
    decode_all,
    drop_corrupt,
    join,
    load,
    read_many,
    write_spread,
)
from heygen_conventions._lifespan import check_at_startup, close_after_lifespan
from heygen_conventions._unit_of_work import (
    _AsyncSession,
    after_commit,
    current_unit_of_work,
    pending_after_commit,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from heygen_conventions.settings import Settings

__all__ = [
    "APP_STATE_KEY",
    "DEFAULT_REDIS_OPTIONS",
    "CacheBackend",
    "CacheKey",
    "CachedServiceMixin",
    "CircuitBreaker",
    "MemoryCache",
    "PubSubBackend",
    "RedisCache",
    "cache_from_settings",
    "cache_stats",
    "get_cache",
    "install_cache",
]

T = TypeVar("T")
K = TypeVar("K")

#: Attribute of ``app.state`` holding the installed backend.
APP_STATE_KEY = "heygen_cache"

_DEFAULT_TTL = 300.0


@runtime_checkable
class CacheBackend(Protocol):
    """What the library needs from a cache store. Values are bytes; TTLs are seconds.

    Implementations raise their own errors on failure (the library's backends
    raise :class:`~heygen_conventions.CacheUnavailableError`); callers that
    must fail open (the service mixin, revocation checks) catch them.
    """

    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or None when absent or expired."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, in one round trip."""

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` None keeps it until deleted or evicted."""

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        """Store several values in one round trip."""

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        """Store ``value`` only when ``key`` is absent (a lock); True when stored."""

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; the number that existed."""

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (0 when absent); the new value."""

    async def close(self) -> None:
        """Release connections; the backend is unusable afterwards."""


@runtime_checkable
class PubSubBackend(CacheBackend, Protocol):
    """A backend that can also broadcast to every app instance (both library backends can)."""

    async def publish(self, channel: str, message: bytes) -> int:
        """Send ``message`` to the subscribers of ``channel``; how many received it."""

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Subscribe; every message published after entering the context is delivered."""


# -- wiring -------------------------------------------------------------------------


def install_cache(app: FastAPI, backend: CacheBackend) -> CacheBackend:
    """Make ``backend`` the app's cache (``app.state.heygen_cache``), closed at shutdown.

    The app's own lifespan is kept: the backend closes after it has ended.

    Raises:
        RuntimeError: A cache is already installed on ``app``.
    """
    if getattr(app.state, APP_STATE_KEY, None) is not None:
        raise RuntimeError("install_cache() was already called on this app")
    setattr(app.state, APP_STATE_KEY, backend)

    async def close() -> None:
        await engine.close_state(backend)
        await backend.close()

    close_after_lifespan(app, close)
    reopen = getattr(backend, "_reopen", None)
    if callable(reopen):
        # Closed by an earlier shutdown of this app: usable again when it restarts.
        check_at_startup(app, lambda _app: reopen())
    return backend


def get_cache(connection: HTTPConnection) -> CacheBackend:
    """Dependency: the backend given to :func:`install_cache`."""
    backend: CacheBackend | None = getattr(connection.app.state, APP_STATE_KEY, None)
    if backend is None:
        raise RuntimeError("No cache installed: call install_cache(app, backend) at startup")
    return backend


def cache_from_settings(settings: Settings) -> MemoryCache | RedisCache:
    """``RedisCache`` when ``settings.redis_url`` is set, else ``MemoryCache``.

    Keys get the prefix ``"<app_name>:"``; services without their own
    ``cache_ttl`` cache for ``settings.cache_ttl``.
    """
    prefix = f"{settings.app_name}:"
    ttl = settings.cache_ttl.total_seconds()
    if settings.redis_url:
        return RedisCache(settings.redis_url, prefix=prefix, default_ttl=ttl)
    return MemoryCache(prefix=prefix, default_ttl=ttl)


def cache_stats(cache: CacheBackend) -> dict[str, Any]:
    """Counters per namespace and the breaker state, for a stats or health route.

    Per namespace: ``hits`` (every answer from the cache, including
    ``local_hits`` from the in-process layer and ``negative_hits`` answering
    "not found"), ``misses``, ``stale`` (entries found but invalidated since
    they were written), ``corrupt`` (entries that did not decode, deleted),
    ``errors`` (failed backend calls, answered from the loader), ``loads``
    and ``load_seconds`` (loader calls and their total time), ``lock_waits``,
    ``unstorable`` (loaded values that would not read back equal from JSON,
    answered uncached).
    """
    state = engine.existing_state(cache) or State()
    breaker = getattr(cache, "breaker", None)
    return {
        "backend": type(cache).__name__,
        "breaker": getattr(breaker, "state", None),
        "namespaces": {name: stats.snapshot() for name, stats in sorted(state.stats.items())},
    }


# -- the mixin ---------------------------------------------------------------------


class CachedServiceMixin:
    """Read-through caching for a service class, one namespace per class.

    The service sets ``self.cache`` (a :class:`CacheBackend`, e.g. from
    ``Depends(get_cache)``) in its constructor, and ``self.session`` (or
    ``self.db``) when it writes through a database session made by
    :class:`~heygen_conventions.Database` (``get_db_session`` gives one):
    invalidations requested while that session's transaction is open run
    after it commits, before the response is sent, and are dropped if it
    rolls back.

    Class attributes, checked when the class is created (durations in
    seconds or as ``timedelta``; zero or negative ones are refused):

    - ``cache_namespace``: required, 1-64 of ``[A-Za-z0-9_.-]``.
    - ``cache_ttl``: entry lifetime; None takes the backend's ``default_ttl``,
      else 300 s.
    - ``cache_ttl_jitter``: every TTL is spread by this fraction either way (0.1).
    - ``cache_negative_ttl``: lifetime of a cached "not found" (30 s; None: off).
    - ``cache_max_ttl``: bound on every TTL (1 day); invalidation records
      live about twice as long.
    - ``cache_lock``: across processes, one loads a missing key while the
      others wait and re-read (off). ``cache_lock_ttl`` (5 s) bounds how long
      a dead holder blocks the key; ``cache_lock_wait`` (1 s) is how long the
      others wait before loading themselves.
    - ``cache_local_ttl``: keep entries in process too, for this long (off).
      Invalidations reach other instances by pub/sub; this TTL bounds
      staleness when a message is lost.
    """

    cache: CacheBackend
    cache_namespace: ClassVar[str | None] = None
    cache_ttl: ClassVar[float | timedelta | None] = None
    cache_ttl_jitter: ClassVar[float] = 0.1
    cache_negative_ttl: ClassVar[float | timedelta | None] = 30.0
    cache_max_ttl: ClassVar[float | timedelta] = 86400.0
    cache_lock: ClassVar[bool] = False
    cache_lock_ttl: ClassVar[float | timedelta] = 5.0
    cache_lock_wait: ClassVar[float | timedelta] = 1.0
    cache_local_ttl: ClassVar[float | timedelta | None] = None

    _cache_config: ClassVar[Config | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._cache_config = engine.config_for(cls)

    def cache_unit_of_work(self) -> Any | None:
        """The session whose commit deferred invalidations wait for.

        ``self.session``, else ``self.db``, else None; override to choose
        another. Anything but an ``AsyncSession`` in a transaction means "no
        transaction of the service's own": invalidations happen at once, and
        again after the commit of the unit of work open where the call runs,
        if any (the request's session, a ``Database.transaction()`` or
        ``async with db.session()`` block), which may hold the write.
        """
        session = getattr(self, "session", None)
        return session if session is not None else getattr(self, "db", None)

    def _read_unit(self) -> Any | None:
        """The unit of work whose pending invalidations this service's reads respect."""
        unit = self.cache_unit_of_work()
        return unit if isinstance(unit, AsyncSession) else current_unit_of_work()

    def _config(self) -> Config:
        config = self._cache_config
        if config is None:
            raise TypeError(f"{type(self).__name__} must set cache_namespace")
        return config

    def _lifetime(self, config: Config, ttl: float | timedelta | None) -> float:
        if ttl is not None:
            lifetime = engine.seconds(ttl, "ttl")
            if lifetime > config.max_ttl:
                raise ValueError(f"ttl exceeds cache_max_ttl ({config.max_ttl} s)")
            return lifetime
        if config.ttl is not None:
            return config.ttl
        default = getattr(self.cache, "default_ttl", None)
        # Invalidation tokens are sized for cache_max_ttl: no entry may outlive it.
        return min(float(default) if default else _DEFAULT_TTL, config.max_ttl)

    # -- one value -------------------------------------------------------------------

    @overload
    async def cached(
        self,
        key: CacheKey,
        loader: Callable[[], Awaitable[Any]],
        *,
        model: type[T],
        ttl: float | timedelta | None = None,
    ) -> T | None: ...

    @overload
    async def cached(
        self,
        key: CacheKey,
        loader: Callable[[], Awaitable[Any]],
        *,
        model: Any,  # a union such as ``Model | None``, which ``type[T]`` cannot name
        ttl: float | timedelta | None = None,
    ) -> Any: ...

    async def cached(
        self,
        key: CacheKey,
        loader: Callable[[], Awaitable[Any]],
        *,
        model: Any,
        ttl: float | timedelta | None = None,
    ) -> Any:
        """The value for ``key``, from the cache or else from ``loader()``.

        Args:
            key: Identifies the value in the namespace (``str``, ``int``,
                ``UUID`` or a tuple of them).
            loader: Called on a miss. Returns a ``model`` value, or something
                ``model`` validates from (an ORM row, a dict), or None for
                "not found", which is cached for ``cache_negative_ttl``.
            model: The type returned: ``VideoResponse``, ``list[VideoResponse]``...
            ttl: Overrides ``cache_ttl`` for this entry.

        Returns:
            The value as ``model``, or None when the loader found nothing.

        Raises:
            What ``loader`` raises (and nothing is cached). Cache failures are
            never raised: the loader answers instead, and a value that would
            not read back equal from JSON is returned uncached.
        """
        config = self._config()
        lifetime = None if ttl is None else self._lifetime(config, ttl)
        backend = self.cache
        state = engine.state_for(backend)
        codec = engine.codec_for(model)
        text = engine.key_text(key)
        namespace = config.namespace
        stats = state.ns(namespace)

        unit = self._read_unit()
        if (unit is not None and _pending(unit, namespace, text)) or (
            state.failed and state.invalidation_failed(namespace, text)
        ):
            # This transaction changed the key, or an invalidation of it has
            # not reached the backend yet: read from the loader, cache nothing.
            stats.misses += 1
            return await load(stats, loader, codec)

        epoch = state.local_epoch
        if config.local_ttl is not None:
            engine.start_local(state, backend)
            local = state.local_get(namespace, text, codec.schema_hash)
            if local is not None:
                stats.local_hits += 1
                return self._serve(stats, local, codec)

        while (leaders := state.inflight.get((namespace, text))) is not None and (
            leader := leaders.get(codec.schema_hash)
        ) is not None:
            shared = await join(leader, stats, codec)
            if shared is not TAKE_OVER:
                return shared
            if not leader.cancelled():
                break  # its value could not be shared: load our own
            # Its caller was cancelled: the first waiter to wake leads, the others join it.
        if lifetime is None:
            lifetime = self._lifetime(config, None)
        flight = Flight(backend, state, stats, config, codec, loader, text, lifetime, epoch)
        return await flight.lead()

    def _serve(self, stats: NamespaceStats, entry: bytes, codec: Codec) -> Any:
        value = engine.decode_entry(entry, codec)
        count_hit(stats, entry)
        return value

    # -- many values -------------------------------------------------------------------

    @overload
    async def cached_many(
        self,
        ids: Iterable[K],
        loader_many: Callable[[list[K]], Awaitable[Mapping[K, Any]]],
        *,
        model: type[T],
        ttl: float | timedelta | None = None,
    ) -> dict[K, T]: ...

    @overload
    async def cached_many(
        self,
        ids: Iterable[K],
        loader_many: Callable[[list[K]], Awaitable[Mapping[K, Any]]],
        *,
        model: Any,  # a union, as for cached()
        ttl: float | timedelta | None = None,
    ) -> dict[K, Any]: ...

    async def cached_many(
        self,
        ids: Iterable[K],
        loader_many: Callable[[list[K]], Awaitable[Mapping[K, Any]]],
        *,
        model: Any,
        ttl: float | timedelta | None = None,
    ) -> dict[K, Any]:
        """Values for ``ids``: one cache round trip, one ``loader_many`` call for the misses.

        Args:
            ids: Keys (``str``, ``int``, ``UUID`` or tuples); repeats are read once.
            loader_many: Receives the ids that missed, in order; returns a
                mapping from id to value (model, ORM row or dict). Ids left out
                or mapped to None are "not found" and cached as such.
            model: The type of each value.
            ttl: Overrides ``cache_ttl``.

        Returns:
            The values found, keyed by id, in the order of ``ids``.
        """
        config = self._config()
        lifetime = self._lifetime(config, ttl)
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        backend = self.cache
        state = engine.state_for(backend)
        codec = engine.codec_for(model)
        namespace = config.namespace
        stats = state.ns(namespace)
        texts = [engine.key_text(item) for item in wanted]  # type: ignore[arg-type]
        found: dict[int, Any] = {}
        epoch = state.local_epoch

        unit = self._read_unit()
        bypass = set()
        if unit is not None:
            bypass = {i for i, text in enumerate(texts) if _pending(unit, namespace, text)}
        if state.failed:
            bypass.update(
                i for i, text in enumerate(texts) if state.invalidation_failed(namespace, text)
            )
        if config.local_ttl is not None:
            engine.start_local(state, backend)
            for i, text in enumerate(texts):
                local = None if i in bypass else state.local_get(namespace, text, codec.schema_hash)
                if local is not None:
                    stats.local_hits += 1
                    found[i] = self._serve(stats, local, codec)

        lookup = [i for i in range(len(wanted)) if i not in found and i not in bypass]
        fills: dict[int, tuple[str, bytes]] = {}  # index -> (entry key, generation)
        if lookup:
            try:
                data_keys, generations, raws = await read_many(
                    state, config, codec, texts, lookup, backend
                )
            except Exception as exc:
                engine.record_error(backend, stats, namespace, "read", exc)
            else:
                if stats.incident == "read":
                    engine.record_recovery(stats, namespace)
                if state.failed:
                    engine.retry_failed(state, backend)
                    engine.wake_retries(state)
                corrupt: list[str] = []
                servable: list[tuple[int, bytes]] = []
                for i, data_key, raw_generation, raw in zip(
                    lookup, data_keys, generations, raws, strict=True
                ):
                    outcome = engine.inspect(stats, raw_generation, raw)
                    if isinstance(outcome, bytes):
                        servable.append((i, outcome))
                        fills[i] = (data_key, engine.generation_of(raw_generation))
                        continue
                    if outcome.corrupt:
                        corrupt.append(data_key)
                    fills[i] = (data_key, outcome.generation)
                for i, entry in decode_all(codec, servable, found):
                    if entry is None:  # did not decode: refill it
                        corrupt.append(fills[i][0])
                        continue
                    del fills[i]
                    count_hit(stats, entry)
                    if config.local_ttl is not None:
                        state.local_put(config, texts[i], codec.schema_hash, entry, epoch)
                if corrupt:
                    await drop_corrupt(backend, stats, namespace, corrupt)

        missing = [i for i in range(len(wanted)) if i not in found]
        if missing:
            stats.misses += len(missing)
            started = time.perf_counter()
            # Keys invalidated in this process while we load (None: the namespace):
            # their values may predate the write, so they are not stored (see Flight._store).
            invalidated: set[str | None] = set()
            state.watches[id(invalidated)] = (namespace, invalidated)
            try:
                loaded = await loader_many([wanted[i] for i in missing])
            finally:
                del state.watches[id(invalidated)]
                stats.loads += 1
                stats.load_seconds += time.perf_counter() - started
            values: dict[str, bytes] = {}
            negatives: dict[str, bytes] = {}
            to_store: list[int] = []
            for i in list(fills):
                if None in invalidated or texts[i] in invalidated:
                    del fills[i]
            for i in missing:
                value = loaded.get(wanted[i])
                if value is None:
                    found[i] = None
                    if i in fills and config.negative_ttl is not None:
                        data_key, generation = fills[i]
                        negatives[data_key] = NOT_FOUND + generation
                    continue
                found[i] = codec.to_model(value)
                if i in fills:
                    to_store.append(i)
            payloads = engine.encode(stats, namespace, codec, [found[i] for i in to_store])
            for i, payload in zip(to_store, payloads, strict=True):
                if payload is None:  # the cache cannot hold it: answered uncached
                    continue
                data_key, generation = fills[i]
                entry = VALUE + generation + payload
                values[data_key] = entry
                state.local_put(config, texts[i], codec.schema_hash, entry, epoch)
            await write_spread(backend, stats, config, values, lifetime)
            if negatives and config.negative_ttl is not None:
                await write_spread(backend, stats, config, negatives, config.negative_ttl)
        return {wanted[i]: found[i] for i in range(len(wanted)) if found[i] is not None}

    # -- invalidating ---------------------------------------------------------------

    async def invalidate(self, *keys: CacheKey) -> None:
        """Make the entries for ``keys`` unservable, in every instance and every schema.

        Inside a transaction of :meth:`cache_unit_of_work` it waits for the
        commit and is dropped on rollback; meanwhile this transaction's reads
        of those keys bypass the cache. Outside a transaction it happens now:
        call it once the write is durable, never before.

        Raises:
            TypeError: The unit of work is in a transaction but is a session
                not made by :class:`~heygen_conventions.Database`.
        """
        config = self._config()
        texts = list(dict.fromkeys(engine.key_text(key) for key in keys))
        if texts:
            await self._invalidate(_Invalidation(config, self.cache, tuple(texts)))

    async def invalidate_namespace(self) -> None:
        """Make every entry of the namespace unservable in O(1), in every instance.

        Waits for the commit like :meth:`invalidate`.
        """
        await self._invalidate(_Invalidation(self._config(), self.cache, None))

    async def _invalidate(self, invalidation: _Invalidation) -> None:
        unit = self.cache_unit_of_work()
        if not (isinstance(unit, AsyncSession) and unit.in_transaction()):
            await invalidation()
            ambient = current_unit_of_work()
            if isinstance(ambient, _AsyncSession) and ambient.in_transaction():
                # The write may be in this transaction (a service that keeps only a
                # repository) or committed already elsewhere: invalidated now, and
                # again once this one commits, so that a read in between cannot
                # leave the old row cached. A rollback drops only the second.
                after_commit(ambient, invalidation)
            return
        try:
            after_commit(unit, invalidation)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} invalidates inside a transaction of a session not made "
                "by heygen_conventions.Database, which cannot run it after the commit: use "
                "get_db_session / Database.session(), or invalidate after your own commit"
            ) from None


class _Invalidation:
    """An invalidation waiting for the commit; ``texts`` None: the whole namespace."""

    __slots__ = ("backend", "config", "texts")

    def __init__(
        self, config: Config, backend: CacheBackend, texts: tuple[str, ...] | None
    ) -> None:
        self.config = config
        self.backend = backend
        self.texts = texts

    async def __call__(self) -> None:
        if self.texts is None:
            await engine.invalidate_namespace(self.config, self.backend)
        else:
            await engine.invalidate_keys(self.config, self.backend, self.texts)


def _pending(unit: Any, namespace: str, text: str) -> bool:
    """Whether ``unit``'s open transaction changed ``text``: it must read its own writes."""
    for callback in pending_after_commit(unit):
        if (
            isinstance(callback, _Invalidation)
            and callback.config.namespace == namespace
            and (callback.texts is None or text in callback.texts)
        ):
            return True
    return False
