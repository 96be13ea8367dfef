"""The read-through machinery behind CachedServiceMixin (private).

:class:`Flight` is one read of one key: concurrent callers in the process
share it, and on a miss it loads, optionally under a cross-process lock, and
stores. The helpers read and write many keys for ``cached_many``.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from heygen_conventions import _cache_engine as engine
from heygen_conventions._cache_engine import (
    HEADER,
    NOT_FOUND,
    VALUE,
    Codec,
    Config,
    Miss,
    NamespaceStats,
    Outcome,
    State,
)

if TYPE_CHECKING:
    from heygen_conventions.cache import CacheBackend


def count_hit(stats: NamespaceStats, entry: bytes) -> None:
    stats.hits += 1
    if entry[:1] == NOT_FOUND:
        stats.negative_hits += 1


async def load(stats: NamespaceStats, loader: Callable[[], Awaitable[Any]], codec: Codec) -> Any:
    """The loader's value as the model (None for "not found")."""
    started = time.perf_counter()
    try:
        loaded = await loader()
    finally:
        stats.loads += 1
        stats.load_seconds += time.perf_counter() - started
    return None if loaded is None else codec.to_model(loaded)


async def read_many(
    state: State,
    config: Config,
    codec: Codec,
    texts: list[str],
    lookup: list[int],
    backend: CacheBackend,
) -> tuple[list[str], list[bytes | None], list[bytes | None]]:
    """One MGET of the version, the generations and the entries (two after a version bump).

    Returns the entry keys, the raw generations and the raw entries.
    """
    base = config.base(backend)
    version_key = base + ":version"
    generation_keys = [f"{base}:g:{texts[i]}" for i in lookup]
    count = len(lookup)
    version, segment = state.versions.get(config.namespace, engine.NO_VERSION)
    while True:
        data_keys = [f"{base}:v{segment}:{codec.schema_hash}:{texts[i]}" for i in lookup]
        keys = [version_key, *generation_keys, *data_keys]
        raw = engine.reply(await backend.get_many(keys), len(keys))
        if raw[0] == version:
            return data_keys, raw[1 : 1 + count], raw[1 + count :]
        version, segment = state.remember_version(config.namespace, raw[0])


def decode_all(
    codec: Codec, servable: list[tuple[int, bytes]], found: dict[int, Any]
) -> list[tuple[int, bytes | None]]:
    """Decode servable entries into ``found``; (index, entry) each, entry None if corrupt.

    All values are validated in one call, as one JSON array: much cheaper than
    one call per value. Only if that fails is each decoded alone.
    """
    values = [(i, entry) for i, entry in servable if entry[:1] == VALUE]
    for i, entry in servable:
        if entry[:1] == NOT_FOUND:
            found[i] = None
    if not values:
        return list(servable)
    try:
        decoded = codec.decode_many(b"[" + b",".join(e[HEADER:] for _, e in values) + b"]")
        if len(decoded) != len(values):  # an entry held several values: find it below
            raise ValueError("entry count mismatch")
    except ValueError:
        outcome: list[tuple[int, bytes | None]] = []
        for i, entry in servable:
            if entry[:1] == VALUE:
                try:
                    found[i] = codec.decode(entry[HEADER:])
                except ValueError:
                    outcome.append((i, None))
                    continue
            outcome.append((i, entry))
        return outcome
    for (i, _), value in zip(values, decoded, strict=True):
        found[i] = value
    return list(servable)


async def write_spread(
    backend: CacheBackend,
    stats: NamespaceStats,
    config: Config,
    entries: dict[str, bytes],
    ttl: float,
) -> None:
    """Write ``entries`` in a few groups with different jittered TTLs, concurrently."""
    if not entries:
        return
    buckets = min(4, len(entries)) if config.jitter else 1
    groups: list[dict[str, bytes]] = [{} for _ in range(buckets)]
    for n, (key, entry) in enumerate(entries.items()):
        groups[n % buckets][key] = entry
    results = await asyncio.gather(
        *(backend.set_many(group, ttl=config.jittered(ttl)) for group in groups),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, Exception):
            engine.record_error(backend, stats, config.namespace, "write", result)
            return
    if stats.incident in ("write", "lock"):
        engine.record_recovery(stats, config.namespace)


async def drop_corrupt(
    backend: CacheBackend, stats: NamespaceStats, namespace: str, keys: list[str]
) -> None:
    stats.corrupt += len(keys)
    engine.logger.warning(
        "Corrupt cache entries deleted", extra={"cache_namespace": namespace, "count": len(keys)}
    )
    with suppress(Exception):
        await backend.delete_many(keys)


async def release_lock(backend: CacheBackend, lock_key: str, token: bytes) -> None:
    # Not atomic: if our lock expired and another process took it in between,
    # it loses the lock early and one extra load may happen; nothing stale.
    with suppress(Exception):
        if await backend.get(lock_key) == token:
            await backend.delete(lock_key)


TAKE_OVER: Any = object()


def private_copy(value: Any) -> Any:
    """A deep copy of ``value``, or ``TAKE_OVER`` when it cannot be copied."""
    if value is TAKE_OVER:
        return TAKE_OVER
    try:
        return copy.deepcopy(value)
    except Exception:
        return TAKE_OVER


async def join(leader: asyncio.Future[Outcome], stats: NamespaceStats, codec: Codec) -> Any:
    """The outcome of another caller's read-through, decoded into our own instance.

    ``TAKE_OVER`` when that caller was cancelled (not us), or loaded a value
    the cache cannot hold and that cannot be copied either: we lead instead.
    """
    try:
        payload, hit, unstored = await asyncio.shield(leader)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if leader.cancelled() and not (task is not None and task.cancelling()):
            return TAKE_OVER
        raise
    if payload is not None:
        value = codec.decode(payload)
    elif unstored is not None:
        # No JSON to decode: a copy of the leader's value still spares a load.
        value = private_copy(unstored)
        if value is TAKE_OVER:
            return TAKE_OVER
    else:
        value = None
    if hit:
        stats.hits += 1
    else:
        stats.misses += 1
    return value


class Flight:
    """One read-through of one key.

    Concurrent callers for the same key in this process share it (single
    flight): one read, and on a miss one load, whose JSON each caller decodes
    into its own instance. This holds when the backend fails too, so an
    outage does not turn a burst of requests into a burst of loads. With
    ``cache_lock``, one process loads a missing key while the others wait.
    """

    def __init__(
        self,
        backend: Any,
        state: State,
        stats: NamespaceStats,
        config: Config,
        codec: Codec,
        loader: Callable[[], Awaitable[Any]],
        text: str,
        lifetime: float,
        epoch: int,
    ) -> None:
        self.backend = backend
        self.state = state
        self.stats = stats
        self.config = config
        self.codec = codec
        self.loader = loader
        self.text = text
        self.lifetime = lifetime
        self.epoch = epoch
        self.data_key = ""
        self.lock_key = ""
        self.read_keys: tuple[str, str, str] = ("", "", "")
        self.generation = engine.NO_GENERATION
        self.writable = False
        self.flight: asyncio.Future[Outcome] | None = None

    async def lead(self) -> Any:
        """Read; on a miss load and store. Callers arriving meanwhile share the outcome."""
        state, stats, codec, text = self.state, self.stats, self.codec, self.text
        slot = (self.config.namespace, text)
        schema = codec.schema_hash
        flight: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.flight = flight
        leaders = state.inflight.get(slot)
        if leaders is None:
            state.inflight[slot] = {schema: flight}
        else:
            leaders[schema] = flight
        try:
            found = await self._read()
            if isinstance(found, bytes):
                try:
                    value = engine.decode_entry(found, codec)
                except ValueError:  # pydantic's ValidationError: not this model's bytes
                    await drop_corrupt(self.backend, stats, slot[0], [self.data_key])
                else:
                    stats.hits += 1
                    if found[:1] == NOT_FOUND:
                        stats.negative_hits += 1
                    state.local_put(self.config, text, schema, found, self.epoch)
                    flight.set_result((None if value is None else found[HEADER:], True, None))
                    return value
            elif found is not None and found.corrupt:
                await drop_corrupt(self.backend, stats, slot[0], [self.data_key])
            stats.misses += 1
            value, payload = await self._fill()
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # mark retrieved; waiters re-raise it
            raise
        else:
            # A value the cache cannot hold reaches the others as copies of a
            # snapshot: the leader's caller may change its own instance meanwhile.
            snapshot = private_copy(value) if payload is None and value is not None else None
            flight.set_result((payload, False, snapshot))
            return value
        finally:
            leaders = state.inflight.get(slot)
            if leaders is not None and leaders.get(schema) is flight:
                del leaders[schema]
                if not leaders:
                    del state.inflight[slot]

    async def _read(self) -> bytes | Miss | None:
        """The servable entry, a Miss to fill, or None when the backend failed."""
        config, state, stats, backend = self.config, self.state, self.stats, self.backend
        namespace = config.namespace
        names = state.names.get(namespace)
        if names is None:
            names = state.names[namespace] = engine.Names(config.base(backend))
        version, segment = state.versions.get(namespace, engine.NO_VERSION)
        schema_text = f":{self.codec.schema_hash}:{self.text}"
        generation_key = names.generation_prefix + self.text
        data_key = f"{names.base}:v{segment}{schema_text}"
        try:
            raw_version, raw_generation, raw = engine.reply(
                await backend.get_many((names.version_key, generation_key, data_key)), 3
            )
            if raw_version != version:
                # The namespace was invalidated (maybe elsewhere): read at the new version.
                version, segment = state.remember_version(namespace, raw_version)
                data_key = f"{names.base}:v{segment}{schema_text}"
                raw_version, raw_generation, raw = engine.reply(
                    await backend.get_many((names.version_key, generation_key, data_key)), 3
                )
        except Exception as exc:
            engine.record_error(backend, stats, namespace, "read", exc)
            return None
        if stats.incident == "read":  # a write or an invalidation may still be failing
            engine.record_recovery(stats, namespace)
        if state.failed:
            # Answering again: retry the invalidations that failed now.
            engine.retry_failed(state, backend)
            engine.wake_retries(state)
        self.data_key = data_key
        self.lock_key = f"{names.base}:l:v{segment}{schema_text}"
        self.read_keys = (names.version_key, generation_key, data_key)
        self.writable = True
        found = engine.inspect(stats, raw_generation, raw)
        self.generation = (
            found.generation if isinstance(found, Miss) else engine.generation_of(raw_generation)
        )
        return found

    async def _fill(self) -> tuple[Any, bytes | None]:
        config, stats, backend = self.config, self.stats, self.backend
        if not self.writable:  # the backend failed: answer from the loader only
            value = await load(stats, self.loader, self.codec)
            return value, self._encode(value)
        token: bytes | None = None
        if config.lock:
            token = secrets.token_bytes(16)
            try:
                acquired = await backend.set_if_absent(self.lock_key, token, ttl=config.lock_ttl)
            except Exception as exc:
                engine.record_error(backend, stats, config.namespace, "lock", exc)
                value = await load(stats, self.loader, self.codec)
                return value, self._encode(value)
            if not acquired:
                stats.lock_waits += 1
                outcome = await self._wait_for_holder(token)
                if isinstance(outcome, bytes):
                    with suppress(ValueError):  # undecodable: load it ourselves below
                        value = engine.decode_entry(outcome, self.codec)
                        self.state.local_put(
                            config, self.text, self.codec.schema_hash, outcome, self.epoch
                        )
                        return value, None if value is None else outcome[HEADER:]
                    token = None
                elif outcome is None:
                    token = None  # gave up waiting: load without the lock
                else:
                    self.generation = outcome.generation
        try:
            value = await load(stats, self.loader, self.codec)
            payload = self._encode(value)
            if payload is not None or value is None:
                await self._store(payload)
            return value, payload
        finally:
            if token is not None:
                await release_lock(backend, self.lock_key, token)

    def _encode(self, value: Any) -> bytes | None:
        """The JSON to store; None for "not found" and for a value the cache cannot hold."""
        if value is None:
            return None
        return engine.encode(self.stats, self.config.namespace, self.codec, [value])[0]

    async def _store(self, payload: bytes | None) -> None:
        config = self.config
        generation = self.generation
        leaders = self.state.inflight.get((config.namespace, self.text))
        if leaders is None or leaders.get(self.codec.schema_hash) is not self.flight:
            # The key was invalidated while we loaded (forget() dropped this
            # read): the value may predate it. Its new token guards the entry
            # only while that token stays in the store; once the token is
            # evicted or expires, an entry carrying the old one would be
            # served again. Not stored: a reader that started after the
            # invalidation may have stored the new value meanwhile.
            return
        if payload is None:
            if config.negative_ttl is None:
                return
            entry, ttl = NOT_FOUND + generation, config.negative_ttl
        else:
            entry, ttl = VALUE + generation + payload, self.lifetime
        try:
            await self.backend.set(self.data_key, entry, ttl=config.jittered(ttl))
        except Exception as exc:
            engine.record_error(self.backend, self.stats, config.namespace, "write", exc)
            return
        if self.stats.incident in ("write", "lock"):
            engine.record_recovery(self.stats, config.namespace)
        self.state.local_put(config, self.text, self.codec.schema_hash, entry, self.epoch)

    async def _wait_for_holder(self, token: bytes) -> bytes | Miss | None:
        """Poll until the holder's entry appears (the entry) or we hold the lock (a Miss).

        None when ``cache_lock_wait`` passed in vain or the backend failed.
        """
        config, backend = self.config, self.backend
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.lock_wait
        delay = 0.005
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
            try:
                _, raw_generation, raw, holder = await backend.get_many(
                    (*self.read_keys, self.lock_key)
                )
                outcome = engine.inspect(self.stats, raw_generation, raw)
                if isinstance(outcome, bytes):
                    return outcome
                if holder is None and await backend.set_if_absent(
                    self.lock_key, token, ttl=config.lock_ttl
                ):
                    return outcome
            except Exception as exc:
                engine.record_error(backend, self.stats, config.namespace, "lock", exc)
                return None
        return None
