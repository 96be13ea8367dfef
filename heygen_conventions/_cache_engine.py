"""How the service mixin reads, fills and invalidates entries (private).

Layout of a namespace's keys, after the backend's prefix (``{videos}`` in a
Redis Cluster, so the keys of one namespace share a hash slot)::

    videos:version                      namespace version (INCR)
    videos:g:<key>                      generation token of <key>
    videos:v<version>:<schema>:<key>    b"V" + generation + JSON, or b"N" + generation
    videos:l:v<version>:<schema>:<key>  cross-process load lock

``<key>`` is :func:`key_text`: ``user:7`` for ``("user", 7)``, or ``#`` and a
hash when the key is long, unusual or has a ``:`` inside a part.

An entry is served only while the generation written into it is still the
key's current one. Invalidating renews the generation token, so a fill that
started before the invalidation (and still carries the old token) is never
served, and entries of every schema are invalidated together.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
from pydantic import TypeAdapter, ValidationError

from heygen_conventions.errors import CacheUnavailableError

logger = logging.getLogger("heygen_conventions.cache")

CacheKey = str | int | UUID | tuple[str | int | UUID, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9._:@/+=-]{1,120}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FORMAT = 3  # part of the schema hash: bump when the entry layout changes
NO_GENERATION = b"-" * 16
VALUE = b"V"
NOT_FOUND = b"N"
HEADER = 17  # tag byte + 16-byte generation
INVALIDATION_CHANNEL = "heygen:cache-invalidate"
MAX_FAILED_KEYS = 10_000
# Failed invalidations are retried in the background: first after this many
# seconds, then at doubling intervals up to the maximum, until one succeeds,
# each retry a probe past the breaker.
REPLAY_FIRST_DELAY = 0.05
REPLAY_MAX_DELAY = 1.0
# When the backend closes (shutdown), invalidations still failing get one last
# attempt within this many seconds; what is left then is logged as lost.
LAST_ATTEMPT_TIMEOUT = 2.0


# -- keys ---------------------------------------------------------------------


def key_text(key: CacheKey) -> str:
    """The key as written in Redis: readable when short and plain, else ``#`` + a hash.

    A tuple's parts are joined with ``:`` (``("user", 7)`` reads ``user:7``)
    only while no part holds a ``:`` of its own; otherwise ``("acme", "q3:plan")``,
    ``("acme:q3", "plan")`` and ``"acme:q3:plan"`` would all be one entry and
    one tenant could be served another's value. A part is compared by its text,
    as it always was: ``7`` and ``"7"``, a UUID and its string, ``"x"`` and
    ``("x",)`` are the same key.
    """
    if isinstance(key, str):
        # A str subclass (a str-mixin enum) by its value, as a plain str: the text
        # is used in f-strings, concatenations and dict lookups alike.
        key = str.__str__(key)
        if ":" not in key:
            return _readable_or_hashed(key)
        parts: tuple[str, ...] = (key,)
    elif isinstance(key, UUID | int):
        return _readable_or_hashed(str(key))  # never holds a ":"
    elif isinstance(key, tuple):
        parts = tuple(str.__str__(part) if isinstance(part, str) else str(part) for part in key)
        if parts and all(":" not in part for part in parts):
            # Splitting on ":" gives the parts back, so the joined text is unambiguous.
            return _readable_or_hashed(":".join(parts))
    else:
        raise TypeError(f"cache keys are str, int, UUID or tuples of them, got {type(key)!r}")
    # Length-prefixed parts after a 0xFF byte, which no UTF-8 text holds: equal
    # neither to another tuple's encoding nor to any joined text.
    encoded = [part.encode("utf-8", "surrogatepass") for part in parts]
    data = b"\xff" + b"".join(b"%d:%b" % (len(part), part) for part in encoded)
    return "#" + hashlib.blake2b(data, digest_size=16).hexdigest()


def _readable_or_hashed(text: str) -> str:
    if _PLAIN_KEY.fullmatch(text):
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16)
    return "#" + digest.hexdigest()


def generation_of(raw: bytes | None) -> bytes:
    if raw is None:
        return NO_GENERATION
    if len(raw) == 16:
        return raw
    # Not written by us: any value still works as a token, at a fixed width.
    return hashlib.blake2b(raw, digest_size=8).hexdigest().encode()


def reply(values: Any, count: int) -> list[bytes | None]:
    """A ``get_many`` answer, checked: ``count`` values, each bytes or None.

    Anything else (a proxy or server answering with integers, a short array)
    is the backend failing, not data: the caller answers from the loader.
    """
    if (
        not isinstance(values, list | tuple)
        or len(values) != count
        or not all(value is None or isinstance(value, bytes) for value in values)
    ):
        raise CacheUnavailableError("Cache answered a read with a malformed reply")
    return values if isinstance(values, list) else list(values)


def version_segment(raw: bytes | None) -> str:
    if raw is None:
        return "0"
    if raw.isdigit():
        return raw.decode()
    return "x" + hashlib.blake2b(raw, digest_size=4).hexdigest()


# -- values ---------------------------------------------------------------------


@dataclass(slots=True)
class Codec:
    """How values of one type are written to the cache and read back.

    Entries name fields by their Python names, never by alias: a model's
    aliases may differ between validation and serialization, be paths or
    choices, or be refused as input (``populate_by_name=False``), while names
    read back in every case. Computed fields are left out (``extra="forbid"``
    would refuse them). This is the cache's own format, not the app's JSON.
    """

    adapter: TypeAdapter[Any]
    decode: Callable[[bytes], Any]
    dump: Callable[[Any], bytes]  # set fields only: a hit keeps which fields were set
    schema_hash: str
    instance_of: type | None
    model: Any
    many: Callable[[bytes], list[Any]] | None = None
    # Every field: for a value whose unset fields would not read back alike
    # (a default_factory making a new id or time on each validation).
    dump_all: Callable[[Any], bytes] | None = None

    def decode_many(self, json_array: bytes) -> list[Any]:
        """Values from a JSON array of them, validated in one call."""
        if self.many is None:
            self.many = _validate_json(TypeAdapter(list[self.model]))  # type: ignore[name-defined]
        return self.many(json_array)

    def to_model(self, value: object) -> Any:
        if self.instance_of is not None and isinstance(value, self.instance_of):
            return value
        # Loaders may return ORM rows or dicts; callers always get the model type.
        return self.adapter.validate_python(value, from_attributes=True)

    @property
    def name(self) -> str:
        model = self.model
        return model.__qualname__ if isinstance(model, type) else repr(model)


_CODECS: dict[Any, Codec] = {}


def codec_for(model: Any) -> Codec:
    codec = _CODECS.get(model)
    if codec is None:
        codec = _CODECS[model] = _build_codec(model)
    return codec


def _validate_json(adapter: TypeAdapter[Any]) -> Callable[[bytes], Any]:
    return functools.partial(adapter.validator.validate_json, by_alias=False, by_name=True)


def _build_codec(model: Any) -> Codec:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    try:
        schema: object = [
            adapter.json_schema(by_alias=False, mode="validation"),
            adapter.json_schema(by_alias=False, mode="serialization"),
        ]
    except Exception:  # a type without a JSON schema: its name stands in
        schema = repr(model)
    digest = hashlib.blake2b(
        orjson.dumps([_FORMAT, schema], option=orjson.OPT_SORT_KEYS), digest_size=4
    ).hexdigest()
    dump_all = functools.partial(
        adapter.dump_json,
        by_alias=False,
        exclude_computed_fields=True,
        round_trip=True,  # Json[...] fields are written as the text they were read from
        warnings=False,  # a value off its schema is caught by the read-back check instead
    )
    # A hit keeps which fields were set (routes with response_model_exclude_unset).
    dump = functools.partial(dump_all, exclude_unset=True)
    instance_of = model if isinstance(model, type) else None
    if instance_of is not None:
        try:
            isinstance(None, instance_of)
        except TypeError:  # TypedDict, typing.Any, a non-runtime Protocol...
            instance_of = None
    return Codec(
        adapter, _validate_json(adapter), dump, digest, instance_of, model, dump_all=dump_all
    )


def encode(
    stats: NamespaceStats, namespace: str, codec: Codec, values: Sequence[Any]
) -> list[bytes | None]:
    """The JSON to store for each value; None for one that would not read back equal.

    A value that fails to serialize (``bytes`` that are not UTF-8), does not
    validate from its own JSON (``inf`` written as ``null``) or validates to
    something else (``Optional[float]`` inf read back as None, an excluded
    field) must not be stored: the caller answers with it uncached. Each is
    counted; the first of a model in a namespace is logged.
    """
    payloads: list[bytes | None] = []
    written: list[bytes] = []
    for value in values:
        try:
            payload = codec.dump(value)
        except Exception as exc:
            payloads.append(None)
            record_unstorable(stats, namespace, codec, "not serializable", exc)
        else:
            payloads.append(payload)
            written.append(payload)
    if not written:
        return payloads
    indexes = [n for n, payload in enumerate(payloads) if payload is not None]
    for n, back in zip(indexes, _read_back(codec, written), strict=True):
        if _same(back, values[n]):
            continue
        # Unset fields a default_factory fills anew on each read, or that reading
        # needs (a tagged union's default tag): every field then.
        whole = _dump_all(codec, values[n])
        if whole is not None and _same(_read_back(codec, [whole])[0], values[n]):
            payloads[n] = whole
            continue
        payloads[n] = None
        if isinstance(back, _Unreadable):
            record_unstorable(stats, namespace, codec, "does not read back", back.error)
        else:
            record_unstorable(stats, namespace, codec, "reads back unequal", None)
    return payloads


def _same(back: Any, value: Any) -> bool:
    if isinstance(back, _Unreadable):
        return False
    try:
        return bool(back == value)
    except Exception:  # an __eq__ that raises cannot vouch for the copy
        return False


def _dump_all(codec: Codec, value: Any) -> bytes | None:
    if codec.dump_all is None:  # pragma: no cover - every codec built here has one
        return None
    try:
        return codec.dump_all(value)
    except Exception:
        return None


class _Unreadable:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _read_back(codec: Codec, payloads: list[bytes]) -> list[Any]:
    """Each payload decoded, or an :class:`_Unreadable`; one call for many when all decode."""
    if len(payloads) > 1:
        with suppress(Exception):
            values = codec.decode_many(b"[" + b",".join(payloads) + b"]")
            if len(values) == len(payloads):
                return values
    read: list[Any] = []
    for payload in payloads:
        try:
            read.append(codec.decode(payload))
        except Exception as exc:
            read.append(_Unreadable(exc))
    return read


def record_unstorable(
    stats: NamespaceStats, namespace: str, codec: Codec, reason: str, exc: BaseException | None
) -> None:
    """Count a value left uncached; log it once per model and namespace.

    Such a value is a property of the data, not an outage that ends: it comes
    back on every read of its key, so only the first is logged.
    """
    stats.unstorable += 1
    if codec.schema_hash in stats.unstorable_logged:
        return
    stats.unstorable_logged.add(codec.schema_hash)
    # Never the error's text: pydantic's holds the value, which may be private.
    logger.warning(
        "Value not cached: it does not survive the cache's JSON round trip",
        extra={
            "cache_namespace": namespace,
            "cache_model": codec.name,
            "reason": reason,
            "error_type": None if exc is None else type(exc).__name__,
        },
    )


def seconds(value: float | timedelta, name: str) -> float:
    number = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not number > 0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return number


# -- configuration ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    namespace: str
    ttl: float | None
    negative_ttl: float | None
    jitter: float
    max_ttl: float
    lock: bool
    lock_ttl: float
    lock_wait: float
    local_ttl: float | None

    def base(self, backend: Any) -> str:
        if getattr(backend, "cluster", False):
            return "{" + self.namespace + "}"
        return self.namespace

    def jittered(self, ttl: float) -> float:
        if not self.jitter:
            return ttl
        return ttl * (1 + random.uniform(-self.jitter, self.jitter))  # noqa: S311 - not crypto

    def generation_ttl(self) -> float:
        # Outlives every entry written under the previous token.
        return 2 * self.max_ttl * (1 + self.jitter) + self.lock_ttl + 60


def config_for(cls: type) -> Config | None:
    namespace = getattr(cls, "cache_namespace", None)
    if namespace is None:
        return None
    name = cls.__name__
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"{name}.cache_namespace must be 1-64 of [A-Za-z0-9_.-], got {namespace!r}"
        )
    jitter = getattr(cls, "cache_ttl_jitter", 0.1)
    if not 0 <= jitter < 1:
        raise ValueError(f"{name}.cache_ttl_jitter must be in [0, 1), got {jitter!r}")

    def optional(attribute: str) -> float | None:
        value = getattr(cls, attribute, None)
        return None if value is None else seconds(value, f"{name}.{attribute}")

    def required(attribute: str) -> float:
        return seconds(getattr(cls, attribute), f"{name}.{attribute}")

    config = Config(
        namespace=namespace,
        ttl=optional("cache_ttl"),
        negative_ttl=optional("cache_negative_ttl"),
        jitter=float(jitter),
        max_ttl=required("cache_max_ttl"),
        lock=bool(getattr(cls, "cache_lock", False)),
        lock_ttl=required("cache_lock_ttl"),
        lock_wait=required("cache_lock_wait"),
        local_ttl=optional("cache_local_ttl"),
    )
    for attribute, value in (
        ("cache_ttl", config.ttl),
        ("cache_negative_ttl", config.negative_ttl),
    ):
        if value is not None and value > config.max_ttl:
            raise ValueError(f"{name}.{attribute} exceeds cache_max_ttl ({config.max_ttl} s)")
    return config


class Names:
    """A namespace's fixed key parts on one backend."""

    __slots__ = ("base", "generation_prefix", "version_key")

    def __init__(self, base: str) -> None:
        self.base = base
        self.version_key = base + ":version"
        self.generation_prefix = base + ":g:"


NO_VERSION: tuple[bytes | None, str] = (None, "0")


# -- per-backend state ----------------------------------------------------------


@dataclass(slots=True)
class NamespaceStats:
    hits: int = 0
    local_hits: int = 0
    negative_hits: int = 0
    misses: int = 0
    stale: int = 0
    corrupt: int = 0
    errors: int = 0
    loads: int = 0
    load_seconds: float = 0.0
    lock_waits: int = 0
    unstorable: int = 0
    # The operation whose failure opened the current incident ("" when none):
    # only a success of the same kind ends it.
    incident: str = ""
    incident_errors: int = 0
    unstorable_logged: set[str] = field(default_factory=set)  # schema hashes

    def snapshot(self) -> dict[str, int | float]:
        return {
            "hits": self.hits,
            "local_hits": self.local_hits,
            "negative_hits": self.negative_hits,
            "misses": self.misses,
            "stale": self.stale,
            "corrupt": self.corrupt,
            "errors": self.errors,
            "loads": self.loads,
            "load_seconds": round(self.load_seconds, 6),
            "lock_waits": self.lock_waits,
            "unstorable": self.unstorable,
        }


LocalEntry = tuple[float, int, bytes]  # expires at, namespace epoch, entry
# A read-through's outcome for the callers sharing it: the JSON (None for "not
# found"), whether it was a hit, and the value itself when it has no JSON (the
# cache could not hold it).
Outcome = tuple[bytes | None, bool, Any]


@dataclass(slots=True)
class State:
    """What every service instance on one backend shares."""

    stats: dict[str, NamespaceStats] = field(default_factory=dict)
    names: dict[str, Names] = field(default_factory=dict)
    # The namespace versions last read: raw value and its key segment.
    versions: dict[str, tuple[bytes | None, str]] = field(default_factory=dict)
    # (namespace, key) -> schema -> the read-through in progress
    inflight: dict[tuple[str, str], dict[str, asyncio.Future[Outcome]]] = field(
        default_factory=dict
    )
    # Invalidations that failed while the backend was down, retried until they
    # succeed; None in place of keys means the whole namespace. Until then this
    # process reads those keys from the loader, not from the cache.
    failed: dict[str, tuple[Config, set[str] | None]] = field(default_factory=dict)
    replaying: asyncio.Task[None] | None = None
    closing: bool = False  # no new retry task while the backend closes
    last_attempted: bool = False  # closing made its last attempt at what failed since
    replay_now: asyncio.Event | None = None
    local: OrderedDict[tuple[str, str], dict[str, LocalEntry]] = field(default_factory=OrderedDict)
    local_maxsize: int = 4096
    local_ns_epoch: dict[str, int] = field(default_factory=dict)
    local_epoch: int = 0
    # Per cached_many load in progress (by id of its set): its namespace, and
    # the keys of it invalidated meanwhile (None: the whole namespace).
    watches: dict[int, tuple[str, set[str | None]]] = field(default_factory=dict)
    local_ready: bool = False
    local_started: bool = False
    close_hooked: bool = False
    subscriber: asyncio.Task[None] | None = None

    def remember_version(self, namespace: str, raw: bytes | None) -> tuple[bytes | None, str]:
        known = self.versions[namespace] = (raw, version_segment(raw))
        return known

    def invalidation_failed(self, namespace: str, text: str) -> bool:
        """Whether an invalidation of ``text`` failed and has not been retried yet:
        the cache may still hold the entry it was meant to remove."""
        failed = self.failed.get(namespace)
        if failed is None:
            return False
        keys = failed[1]
        return keys is None or text in keys

    def ns(self, namespace: str) -> NamespaceStats:
        stats = self.stats.get(namespace)
        if stats is None:
            stats = self.stats[namespace] = NamespaceStats()
        return stats

    def forget(self, namespace: str, key: str | None) -> None:
        """After an invalidation: drop local entries, and let no new caller join a
        read-through that started before it."""
        self.local_epoch += 1
        for watched, invalidated in self.watches.values():
            if watched == namespace:
                invalidated.add(key)
        if key is None:
            self.local_ns_epoch[namespace] = self.local_ns_epoch.get(namespace, 0) + 1
            for slot in [slot for slot in self.inflight if slot[0] == namespace]:
                del self.inflight[slot]
        else:
            self.local.pop((namespace, key), None)
            self.inflight.pop((namespace, key), None)

    def clear_local(self) -> None:
        self.local_epoch += 1
        self.local.clear()

    def local_get(self, namespace: str, text: str, schema: str) -> bytes | None:
        if not self.local_ready:
            return None
        entries = self.local.get((namespace, text))
        if entries is None:
            return None
        entry = entries.get(schema)
        if entry is None:
            return None
        expires_at, ns_epoch, payload = entry
        if expires_at <= time.monotonic() or ns_epoch != self.local_ns_epoch.get(namespace, 0):
            del entries[schema]
            return None
        self.local.move_to_end((namespace, text))
        return payload

    def local_put(self, config: Config, text: str, schema: str, entry: bytes, epoch: int) -> None:
        # An invalidation that arrived while this entry was read or loaded may
        # concern it: then it is not kept.
        if config.local_ttl is None or not self.local_ready or self.local_epoch != epoch:
            return
        slot = (config.namespace, text)
        entries = self.local.get(slot)
        if entries is None:
            entries = self.local[slot] = {}
        # Never kept longer than the entry itself may live: a "not found" for
        # cache_negative_ttl, a value for cache_ttl.
        limit = config.negative_ttl if entry[:1] == NOT_FOUND else config.ttl
        lifetime = config.local_ttl if limit is None else min(config.local_ttl, limit)
        entries[schema] = (
            time.monotonic() + lifetime,
            self.local_ns_epoch.get(config.namespace, 0),
            entry,
        )
        self.local.move_to_end(slot)
        while len(self.local) > self.local_maxsize:
            self.local.popitem(last=False)


_STATE_ATTR = "_heygen_cache_state"
# For backends that refuse new attributes (__slots__): id -> (backend, state).
_SLOTTED_STATES: dict[int, tuple[Any, State]] = {}


def state_for(backend: Any) -> State:
    state: State | None = getattr(backend, _STATE_ATTR, None)
    if state is not None:
        return state
    entry = _SLOTTED_STATES.get(id(backend))
    if entry is not None and entry[0] is backend:
        return entry[1]
    state = State()
    try:
        setattr(backend, _STATE_ATTR, state)
    except AttributeError:
        _SLOTTED_STATES[id(backend)] = (backend, state)
    return state


def existing_state(backend: Any) -> State | None:
    state: State | None = getattr(backend, _STATE_ATTR, None)
    if state is None:
        entry = _SLOTTED_STATES.get(id(backend))
        state = entry[1] if entry is not None and entry[0] is backend else None
    return state


async def close_state(backend: Any) -> None:
    """Stop the background tasks the mixin started for ``backend``.

    Invalidations that are still failing get one last attempt; those that
    fail again are logged as lost (other instances may serve the entries
    they were meant to remove until those expire).
    """
    state = existing_state(backend)
    if state is None:
        return
    for task in (state.subscriber, state.replaying):
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
    if state.failed and not state.last_attempted:
        # Once per failure: closing the app and then the backend runs this twice.
        state.closing = True
        try:
            await _last_attempt(state, backend)
        finally:
            state.closing = False
            state.last_attempted = True
    # Only now: the last attempt looks the state up again.
    _SLOTTED_STATES.pop(id(backend), None)
    state.subscriber = None
    state.replaying = None
    state.replay_now = None
    state.local_started = False
    state.local_ready = False
    state.close_hooked = False
    state.clear_local()


# -- reading ------------------------------------------------------------------


class Miss:
    """A read that found no servable entry; ``generation`` is what a fill must carry."""

    __slots__ = ("corrupt", "generation")

    def __init__(self, generation: bytes, *, corrupt: bool = False) -> None:
        self.generation = generation
        self.corrupt = corrupt


def inspect(stats: NamespaceStats, raw_generation: bytes | None, raw: bytes | None) -> bytes | Miss:
    """The entry when it is servable, else a :class:`Miss`."""
    generation = generation_of(raw_generation)
    if raw is None:
        return Miss(generation)
    tag = raw[:1]
    if (tag == VALUE and len(raw) > HEADER) or (tag == NOT_FOUND and len(raw) == HEADER):
        if raw[1:HEADER] == generation:
            return raw
        stats.stale += 1
        return Miss(generation)
    return Miss(generation, corrupt=True)


def decode_entry(entry: bytes, codec: Codec) -> Any:
    """The value in a servable entry (None for "not found"); ValidationError if corrupt."""
    if entry[:1] == NOT_FOUND:
        return None
    return codec.decode(entry[HEADER:])


# -- incidents -----------------------------------------------------------------


def record_error(
    backend: Any,
    stats: NamespaceStats,
    namespace: str,
    operation: str,
    exc: BaseException,
    *,
    level: int = logging.WARNING,
    message: str = "Cache unavailable, answering from the loader",
) -> None:
    """Count a failed backend call; log only the first of an incident."""
    stats.errors += 1
    stats.incident_errors += 1
    if stats.incident:
        return
    stats.incident = operation
    breaker = getattr(backend, "breaker", None)
    logger.log(
        level,
        message,
        extra={
            "cache_namespace": namespace,
            "cache_operation": operation,
            "error_type": type(exc).__name__,
            "cause_type": type(exc.__cause__).__name__ if exc.__cause__ else None,
            "breaker_state": getattr(breaker, "state", None),
        },
    )


def record_recovery(stats: NamespaceStats, namespace: str) -> None:
    logger.info(
        "Cache recovered",
        extra={"cache_namespace": namespace, "errors_during_incident": stats.incident_errors},
    )
    stats.incident = ""
    stats.incident_errors = 0


# -- invalidating ----------------------------------------------------------------


async def invalidate_keys(config: Config, backend: Any, texts: Sequence[str]) -> bool:
    """Renew the generation of ``texts``; False when the backend failed (retried later)."""
    state = state_for(backend)
    for text in texts:
        state.forget(config.namespace, text)
    base = config.base(backend)
    tokens = {f"{base}:g:{text}": secrets.token_hex(8).encode() for text in texts}
    try:
        await backend.set_many(tokens, ttl=config.generation_ttl())
    except asyncio.CancelledError as exc:
        # The caller is gone but the write it follows is durable: retry it.
        _invalidation_failed(backend, state, config, exc, texts)
        raise
    except Exception as exc:
        _invalidation_failed(backend, state, config, exc, texts)
        return False
    if config.local_ttl is not None:
        await _broadcast(backend, [f"k\x00{config.namespace}\x00{text}" for text in texts])
    return True


async def invalidate_namespace(config: Config, backend: Any) -> bool:
    """Bump the namespace's version; False when the backend failed (retried later)."""
    state = state_for(backend)
    state.forget(config.namespace, None)
    version_key = config.base(backend) + ":version"
    try:
        try:
            version = await backend.incr(version_key)
        except CacheUnavailableError as exc:
            if exc.__cause__ is not None and type(exc.__cause__).__name__ != "ResponseError":
                raise
            # Not an integer at the key (or of another type): any fresh number
            # is a new version.
            version = secrets.randbits(48)
            await backend.set(version_key, str(version).encode())
    except asyncio.CancelledError as exc:
        _invalidation_failed(backend, state, config, exc, None)
        raise
    except Exception as exc:
        _invalidation_failed(backend, state, config, exc, None)
        return False
    state.remember_version(config.namespace, str(version).encode())
    if config.local_ttl is not None:
        await _broadcast(backend, [f"n\x00{config.namespace}"])
    return True


def _invalidation_failed(
    backend: Any, state: State, config: Config, exc: BaseException, texts: Sequence[str] | None
) -> None:
    stats = state.ns(config.namespace)
    record_error(
        backend,
        stats,
        config.namespace,
        "invalidate",
        exc,
        level=logging.ERROR,
        message="Cache invalidation failed; it is retried until the cache answers again",
    )
    if not state.closing:
        state.last_attempted = False
    _, known = state.failed.get(config.namespace, (config, set()))
    if texts is None or known is None or len(known) + len(texts) > MAX_FAILED_KEYS:
        state.failed[config.namespace] = (config, None)
    else:
        state.failed[config.namespace] = (config, known | set(texts))
    retry_failed(state, backend)


def retry_failed(state: State, backend: Any) -> None:
    """Make sure the invalidations that failed are being retried in the background.

    The retries do not wait for this process to read the cache again: another
    instance may be serving the entries they remove. A successful read wakes
    the retries early (see :func:`wake_retries`).
    """
    if state.replaying is not None or not state.failed or state.closing:
        return
    state.replay_now = asyncio.Event()
    state.replaying = asyncio.get_running_loop().create_task(_retry(state, backend))
    _stop_on_close(state, backend)


def wake_retries(state: State) -> None:
    """The backend answered: retry the failed invalidations now."""
    if state.replay_now is not None:
        state.replay_now.set()


async def _retry(state: State, backend: Any) -> None:
    delay = REPLAY_FIRST_DELAY
    try:
        while state.failed:
            wake = state.replay_now
            if wake is not None:
                with suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
                wake.clear()
            delay = min(delay * 2, REPLAY_MAX_DELAY)
            # Past an open breaker: requests keep failing fast, while this one
            # background call a second finds the backend back within a second,
            # not a reset timeout later, so other instances stop serving the
            # entries it invalidates that much sooner.
            _probe_now(backend)
            await _retry_once(state, backend)
    finally:
        state.replaying = None
        state.replay_now = None


async def _retry_once(state: State, backend: Any) -> None:
    """Retry each failed invalidation once, stopping at the first that fails again."""
    for namespace, entry in list(state.failed.items()):
        config, keys = entry
        if keys is None:
            done = await invalidate_namespace(config, backend)
        else:
            done = await invalidate_keys(config, backend, sorted(keys))
        if not done:
            return
        # Failures recorded while this ran replaced the entry: they stay.
        if state.failed.get(namespace) is entry:
            del state.failed[namespace]
        stats = state.ns(namespace)
        if stats.incident:
            record_recovery(stats, namespace)


async def _last_attempt(state: State, backend: Any) -> None:
    _probe_now(backend)  # an open circuit would refuse the attempt without trying
    with suppress(TimeoutError, Exception):
        async with asyncio.timeout(LAST_ATTEMPT_TIMEOUT):
            await _retry_once(state, backend)
    for namespace, (config, keys) in state.failed.items():
        logger.error(
            "Cache invalidation lost at shutdown; other instances may serve the old entries "
            "until they expire",
            extra={
                "cache_namespace": namespace,
                # None: the whole namespace.
                "cache_keys": None if keys is None else sorted(keys)[:20],
                "cache_keys_count": None if keys is None else len(keys),
                "stale_for_at_most_s": config.max_ttl,
            },
        )


def _probe_now(backend: Any) -> None:
    probe_now = getattr(getattr(backend, "breaker", None), "probe_now", None)
    if callable(probe_now):
        probe_now()


# -- the local layer's invalidation feed --------------------------------------------


def start_local(state: State, backend: Any) -> None:
    if state.local_started:
        return
    state.local_started = True
    if not callable(getattr(backend, "subscribe", None)):
        # No broadcast: the local TTL alone bounds staleness.
        state.local_ready = True
        return
    state.subscriber = asyncio.get_running_loop().create_task(_subscribe(state, backend))
    _stop_on_close(state, backend)


def _stop_on_close(state: State, backend: Any) -> None:
    """Have ``backend.close()`` stop the background tasks started for it."""
    add_hook = getattr(backend, "add_close_hook", None)
    if state.close_hooked or not callable(add_hook):
        return
    state.close_hooked = True

    async def stop() -> None:
        await close_state(backend)

    add_hook(stop)


async def _broadcast(backend: Any, messages: list[str]) -> None:
    publish: Callable[[str, bytes], Awaitable[int]] | None = getattr(backend, "publish", None)
    if publish is None:
        return
    try:
        for message in messages:
            await publish(INVALIDATION_CHANNEL, message.encode())
    except Exception as exc:
        # Other instances' local entries now expire by their TTL alone.
        logger.warning(
            "Cache invalidation broadcast failed", extra={"error_type": type(exc).__name__}
        )


async def _subscribe(state: State, backend: Any) -> None:
    delay = 0.1
    while True:
        try:
            async with backend.subscribe(INVALIDATION_CHANNEL) as messages:
                # Anything kept before the subscription may have missed a message.
                state.clear_local()
                state.local_ready = True
                delay = 0.1
                async for message in messages:
                    kind, _, rest = message.decode("utf-8", "replace").partition("\x00")
                    if kind == "n":
                        state.forget(rest, None)
                        state.versions.pop(rest, None)
                    elif kind == "k":
                        namespace, _, text = rest.partition("\x00")
                        state.forget(namespace, text)
        except Exception as exc:
            logger.warning(
                "Cache invalidation feed lost; local cache off until it is back",
                extra={"error_type": type(exc).__name__},
            )
        state.local_ready = False
        state.clear_local()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


__all__ = [
    "HEADER",
    "NOT_FOUND",
    "VALUE",
    "CacheKey",
    "Codec",
    "Config",
    "Miss",
    "NamespaceStats",
    "Outcome",
    "State",
    "ValidationError",
    "close_state",
    "codec_for",
    "config_for",
    "decode_entry",
    "encode",
    "existing_state",
    "inspect",
    "invalidate_keys",
    "invalidate_namespace",
    "key_text",
    "record_error",
    "record_recovery",
    "reply",
    "retry_failed",
    "seconds",
    "start_local",
    "state_for",
    "version_segment",
    "wake_retries",
]
