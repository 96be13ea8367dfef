"""CachedServiceMixin: read-through, typed values, keys, invalidation, stampedes, races."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    computed_field,
)
from pydantic.alias_generators import to_camel

from heygen_conventions import (
    APIResponse,
    CacheBackend,
    CachedServiceMixin,
    MemoryCache,
    NotFoundError,
    RedisCache,
    Settings,
    cache_from_settings,
    cache_stats,
    get_cache,
    install_cache,
    install_exception_handlers,
)
from tests.fixtures.cache import cache_keys
from tests.typecheck import mypy_strict


class VideoResponse(BaseModel):
    id: int
    title: str
    duration_seconds: float = 0.0
    tags: list[str] = []


class VideoResponseV2(BaseModel):
    id: int
    title: str
    owner: str


@dataclass
class VideoRow:
    """Stands in for an ORM row: the mixin validates it with from_attributes."""

    id: int
    title: str
    duration_seconds: float = 1.5
    tags: tuple[str, ...] = ("a",)


class FakeDB:
    """The source of truth, counting loads per key."""

    def __init__(self) -> None:
        self.rows: dict[Any, dict[str, Any]] = {}
        self.loads: list[Any] = []

    def loader(self, key: Any) -> Callable[[], Awaitable[Any]]:
        async def load() -> Any:
            self.loads.append(key)
            row = self.rows.get(key)
            return dict(row) if row is not None else None

        return load

    async def load_many(self, keys: list[Any]) -> dict[Any, Any]:
        self.loads.append(tuple(keys))
        return {key: dict(self.rows[key]) for key in keys if key in self.rows}


class VideoService(CachedServiceMixin):
    cache_namespace = "videos"
    cache_ttl = 60

    def __init__(self, cache: CacheBackend, db: FakeDB) -> None:
        self.cache = cache
        self.store = db

    async def get(self, video_id: Any) -> VideoResponse | None:
        return await self.cached(video_id, self.store.loader(video_id), model=VideoResponse)


@pytest.fixture
def db() -> FakeDB:
    store = FakeDB()
    store.rows = {i: {"id": i, "title": f"video {i}"} for i in range(1, 6)}
    return store


async def test_miss_then_hit_returns_the_model_type(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = VideoService(cache_backend, db)
    first = await service.get(1)
    second = await service.get(1)
    assert type(first) is VideoResponse
    assert type(second) is VideoResponse
    assert first == second == VideoResponse(id=1, title="video 1")
    assert db.loads == [1]
    stats = cache_stats(cache_backend)["namespaces"]["videos"]
    assert (stats["hits"], stats["misses"], stats["loads"]) == (1, 1, 1)
    assert stats["load_seconds"] >= 0


async def test_lists_come_back_as_lists_of_models(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())

    async def load() -> list[VideoResponse]:
        return [VideoResponse(id=1, title="a"), VideoResponse(id=2, title="b")]

    for _ in range(2):
        videos = await service.cached("recent", load, model=list[VideoResponse])
        assert videos is not None
        assert [type(v) for v in videos] == [VideoResponse, VideoResponse]
        assert [v.title for v in videos] == ["a", "b"]


async def test_loader_may_return_orm_like_rows(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())

    async def load() -> VideoRow:
        return VideoRow(id=7, title="row")

    for _ in range(2):
        video = await service.cached(7, load, model=VideoResponse)
        assert video == VideoResponse(id=7, title="row", duration_seconds=1.5, tags=["a"])


async def test_values_are_json_not_pickle(cache_backend: CacheBackend, db: FakeDB) -> None:
    await VideoService(cache_backend, db).get(1)
    (entry_key,) = [k for k in await cache_keys(cache_backend) if ":v0:" in k]
    raw = await cache_backend.get(entry_key)
    assert raw is not None
    assert raw.startswith(b"V")
    assert raw.endswith(b'{"id":1,"title":"video 1"}')  # the fields the loader set


async def test_key_layout_is_readable(cache_backend: CacheBackend, db: FakeDB) -> None:
    await VideoService(cache_backend, db).get(1)
    (entry_key,) = await cache_keys(cache_backend)
    namespace, version, schema, key = entry_key.split(":")
    assert (namespace, version, key) == ("videos", "v0", "1")
    assert len(schema) == 8


async def test_not_found_is_cached_briefly_and_still_none(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = VideoService(cache_backend, db)
    assert await service.get(404) is None
    assert await service.get(404) is None
    assert db.loads == [404]
    stats = cache_stats(cache_backend)["namespaces"]["videos"]
    assert stats["negative_hits"] == 1


async def test_negative_caching_can_be_turned_off(cache_backend: CacheBackend, db: FakeDB) -> None:
    class NoNegative(VideoService):
        cache_namespace = "videos-no-negative"
        cache_negative_ttl = None

    service = NoNegative(cache_backend, db)
    assert await service.get(404) is None
    assert await service.get(404) is None
    assert db.loads == [404, 404]


async def test_a_loader_that_raises_caches_nothing(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())
    calls = 0

    async def broken() -> VideoResponse:
        nonlocal calls
        calls += 1
        raise LookupError("database said no")

    for _ in range(2):
        with pytest.raises(LookupError, match="database said no"):
            await service.cached(1, broken, model=VideoResponse)
    assert calls == 2
    assert await cache_keys(cache_backend) == []


async def test_invalidate_reloads_the_key_only(cache_backend: CacheBackend, db: FakeDB) -> None:
    service = VideoService(cache_backend, db)
    await service.get(1)
    await service.get(2)
    db.rows[1]["title"] = "renamed"
    await service.invalidate(1)
    assert (await service.get(1)) == VideoResponse(id=1, title="renamed")
    await service.get(2)
    assert db.loads == [1, 2, 1]
    await service.invalidate()  # nothing to do


async def test_invalidate_reaches_every_schema_of_the_key(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = VideoService(cache_backend, db)
    db.rows[1]["owner"] = "ada"
    await service.get(1)
    await service.cached(1, db.loader(1), model=VideoResponseV2)
    db.rows[1]["title"] = "renamed"
    await service.invalidate(1)
    assert (await service.get(1)) == VideoResponse(id=1, title="renamed")
    v2 = await service.cached(1, db.loader(1), model=VideoResponseV2)
    assert v2 == VideoResponseV2(id=1, title="renamed", owner="ada")
    assert db.loads == [1, 1, 1, 1]


async def test_invalidate_namespace_is_one_write(cache_backend: CacheBackend, db: FakeDB) -> None:
    service = VideoService(cache_backend, db)
    for i in range(1, 4):
        await service.get(i)
    keys_before = await cache_keys(cache_backend)
    await service.invalidate_namespace()
    keys_after = await cache_keys(cache_backend)
    assert sorted(set(keys_after) - set(keys_before)) == ["videos:version"]
    for i in range(1, 4):
        await service.get(i)
    assert db.loads == [1, 2, 3, 1, 2, 3]
    assert any(key.startswith("videos:v1:") for key in await cache_keys(cache_backend))


async def test_other_instances_see_a_namespace_invalidation(
    shared_cache_backends: tuple[RedisCache, RedisCache], db: FakeDB
) -> None:
    first, second = shared_cache_backends
    on_a, on_b = VideoService(first, db), VideoService(second, db)
    await on_a.get(1)
    await on_b.get(1)
    assert db.loads == [1]
    db.rows[1]["title"] = "renamed"
    await on_a.invalidate_namespace()
    assert (await on_b.get(1)) == VideoResponse(id=1, title="renamed")
    await on_b.invalidate(1)
    db.rows[1]["title"] = "again"
    assert (await on_a.get(1)) == VideoResponse(id=1, title="again")


async def test_a_changed_model_never_decodes_old_bytes(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())

    async def load_v1() -> VideoResponse:
        return VideoResponse(id=1, title="old")

    async def load_v2() -> VideoResponseV2:
        return VideoResponseV2(id=1, title="new", owner="ada")

    await service.cached(1, load_v1, model=VideoResponse)
    value = await service.cached(1, load_v2, model=VideoResponseV2)
    assert value == VideoResponseV2(id=1, title="new", owner="ada")
    again = await service.cached(1, load_v1, model=VideoResponse)
    assert again == VideoResponse(id=1, title="old")  # both schemas live side by side


@pytest.mark.parametrize(
    "key",
    ["with space", "ünïcødé ключ", "x" * 5000, "new\nline", "{braces}", "#leading-hash"],
)
async def test_awkward_keys_are_hashed_and_distinct(cache_backend: CacheBackend, key: str) -> None:
    service = VideoService(cache_backend, FakeDB())
    calls: list[str] = []

    def loader_for(title: str) -> Callable[[], Awaitable[VideoResponse]]:
        async def load() -> VideoResponse:
            calls.append(title)
            return VideoResponse(id=1, title=title)

        return load

    assert (await service.cached(key, loader_for("awkward"), model=VideoResponse)) is not None
    plain = re.sub(r"[^A-Za-z0-9]", "_", key)[:50]
    await service.cached(plain, loader_for("plain"), model=VideoResponse)
    hit = await service.cached(key, loader_for("reloaded"), model=VideoResponse)
    assert hit is not None
    assert hit.title == "awkward"
    assert calls == ["awkward", "plain"]
    for stored in await cache_keys(cache_backend):
        assert len(stored) < 100
        assert " " not in stored
        assert "\n" not in stored


async def test_uuid_int_and_tuple_keys(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())
    ident = UUID("12345678-1234-5678-1234-567812345678")

    async def load() -> VideoResponse:
        return VideoResponse(id=1, title="t")

    await service.cached(ident, load, model=VideoResponse)
    await service.cached(("user", 7, ident), load, model=VideoResponse)
    keys = await cache_keys(cache_backend)
    assert any(k.endswith(":" + str(ident)) for k in keys)
    assert any(k.endswith(f":user:7:{ident}") for k in keys)
    with pytest.raises(TypeError, match="cache keys"):
        await service.cached(1.5, load, model=VideoResponse)  # type: ignore[arg-type]


# Keys whose parts hold a ":" and join to the same text: each pair must stay two entries.
COLLIDING_KEYS = [
    (("acme", "q3:plan"), ("acme:q3", "plan")),
    (("a", "b"), "a:b"),
    (("a", "b:c"), ("a", "b", "c")),
    (("x" * 100, "y:z" * 20), ("x" * 100 + ":y", "z" + "y:z" * 19)),  # both long: hashed
    (("", ""), ":"),
    ((), ""),
]


@pytest.mark.parametrize(
    ("first", "second"),
    COLLIDING_KEYS,
    ids=["tenant-slug", "tuple-vs-str", "two-vs-three-parts", "long", "empty-parts", "empty"],
)
async def test_keys_that_join_alike_are_distinct_entries(
    cache_backend: CacheBackend, first: Any, second: Any
) -> None:
    service = VideoService(cache_backend, FakeDB())

    def loader_for(title: str) -> Callable[[], Awaitable[VideoResponse]]:
        async def load() -> VideoResponse:
            return VideoResponse(id=1, title=title)

        return load

    got_first = await service.cached(first, loader_for("first"), model=VideoResponse)
    got_second = await service.cached(second, loader_for("second"), model=VideoResponse)
    assert got_first is not None
    assert got_second is not None
    assert (got_first.title, got_second.title) == ("first", "second")
    # Both stay cached and apart: neither reload runs, nor does one evict the other.
    again_first = await service.cached(first, loader_for("reloaded"), model=VideoResponse)
    again_second = await service.cached(second, loader_for("reloaded"), model=VideoResponse)
    assert again_first is not None
    assert again_second is not None
    assert (again_first.title, again_second.title) == ("first", "second")
    # Invalidating one leaves the other cached.
    await service.invalidate(first)
    after = await service.cached(second, loader_for("reloaded"), model=VideoResponse)
    assert after is not None
    assert after.title == "second"


async def test_a_part_with_a_colon_hashes_and_plain_tuples_stay_readable(
    cache_backend: CacheBackend,
) -> None:
    service = VideoService(cache_backend, FakeDB())

    async def load() -> VideoResponse:
        return VideoResponse(id=1, title="t")

    await service.cached(("acme", "q3-plan", 7), load, model=VideoResponse)
    await service.cached(("acme", "q3:plan"), load, model=VideoResponse)
    entries = [k for k in await cache_keys(cache_backend) if k.startswith("videos:v")]
    assert len(entries) == 2, entries
    assert any(k.endswith(":acme:q3-plan:7") for k in entries), entries
    assert not any("acme" in k for k in entries if not k.endswith(":acme:q3-plan:7")), entries
    assert any(re.search(r":#[0-9a-f]{32}$", k) for k in entries), entries


async def test_a_part_keeps_its_text_identity(cache_backend: CacheBackend) -> None:
    # An int or UUID and its text were always one key: invalidate(str(id))
    # reaches cached(id), and ("x",) is "x". Hashed keys keep that too.
    service = VideoService(cache_backend, FakeDB())
    ident = UUID("12345678-1234-5678-1234-567812345678")
    calls: list[str] = []

    async def load() -> VideoResponse:
        calls.append("load")
        return VideoResponse(id=1, title="t")

    pairs: list[tuple[Any, Any]] = [
        (("org:1", 7, ident), ("org:1", "7", str(ident))),
        (("a:b",), "a:b"),
        (("x",), "x"),
    ]
    for first, second in pairs:
        calls.clear()
        await service.cached(first, load, model=VideoResponse)
        await service.cached(second, load, model=VideoResponse)
        assert calls == ["load"], (first, second)


async def test_garbage_bytes_are_deleted_and_reloaded(
    cache_backend: CacheBackend, db: FakeDB, caplog: pytest.LogCaptureFixture
) -> None:
    service = VideoService(cache_backend, db)
    await service.get(1)
    (entry_key,) = [k for k in await cache_keys(cache_backend) if ":v0:" in k]
    await cache_backend.set(entry_key, b"\x80\x81 not json at all")
    with caplog.at_level(logging.WARNING, logger="heygen_conventions.cache"):
        assert (await service.get(1)) == VideoResponse(id=1, title="video 1")
    assert await service.get(1) == VideoResponse(id=1, title="video 1")
    assert db.loads == [1, 1]
    assert cache_stats(cache_backend)["namespaces"]["videos"]["corrupt"] == 1
    assert any(r.message == "Corrupt cache entries deleted" for r in caplog.records)


async def test_a_value_of_another_shape_is_reloaded(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = VideoService(cache_backend, db)
    await service.get(1)
    (entry_key,) = [k for k in await cache_keys(cache_backend) if ":v0:" in k]
    await cache_backend.set(entry_key, b"V" + b"-" * 16 + b'{"unexpected": [1, 2]}')
    assert (await service.get(1)) == VideoResponse(id=1, title="video 1")
    assert db.loads == [1, 1]
    assert cache_stats(cache_backend)["namespaces"]["videos"]["corrupt"] == 1


async def test_a_redis_value_of_another_type_is_replaced(
    shared_cache_backends: tuple[RedisCache, RedisCache], db: FakeDB
) -> None:
    backend, _ = shared_cache_backends
    service = VideoService(backend, db)
    await service.get(1)
    (entry_key,) = [k for k in await cache_keys(backend) if ":v0:" in k]
    client = backend.client
    await client.delete(backend.prefix + entry_key)
    await client.lpush(backend.prefix + entry_key, b"a list")  # type: ignore[misc]
    await client.lpush(backend.prefix + "videos:g:1", b"a list")  # type: ignore[misc]
    assert (await service.get(1)) == VideoResponse(id=1, title="video 1")
    assert (await service.get(1)) == VideoResponse(id=1, title="video 1")
    assert db.loads == [1, 1]
    await client.lpush(backend.prefix + "videos:version", b"a list")  # type: ignore[misc]
    await service.invalidate_namespace()
    await service.invalidate(1)
    assert cache_stats(backend)["namespaces"]["videos"]["errors"] == 0  # SET replaced the list
    assert (await service.get(1)) == VideoResponse(id=1, title="video 1")
    assert db.loads == [1, 1, 1]


# -- what the cache can hold -------------------------------------------------------


class CamelVideo(BaseModel):
    """Parses an upstream camelCase API: only the aliases are accepted as input."""

    model_config = ConfigDict(alias_generator=to_camel)
    video_id: int
    title: str


class CamelVideoByName(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    video_id: int
    title: str


class SplitAliases(BaseModel):
    """Reads other names than it writes, and accepts no field name as input."""

    video_id: int = Field(validation_alias="VideoID", serialization_alias="videoRef")
    title: str = Field(validation_alias=AliasChoices("name", "heading"))
    owner: str = Field(validation_alias=AliasPath("owner", "login"))


class AliasedEverywhere(BaseModel):
    """Writes by alias unless told otherwise, refuses field names, nests aliased models."""

    model_config = ConfigDict(
        serialize_by_alias=True, validate_by_name=False, validate_by_alias=True
    )
    video_id: int = Field(alias="ID")
    main: CamelVideo
    others: list[SplitAliases]


class StrictWithComputed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def minutes(self) -> float:
        return self.seconds / 60


class Base64Thumbnail(BaseModel):
    """Binary data and infinities its own JSON can hold."""

    model_config = ConfigDict(
        ser_json_bytes="base64", val_json_bytes="base64", ser_json_inf_nan="constants"
    )
    png: bytes
    ratio: float


CAMEL = CamelVideo.model_validate({"videoId": 1, "title": "Intro"})
SPLIT = SplitAliases.model_validate({"VideoID": 2, "heading": "Deep", "owner": {"login": "ada"}})
ROUND_TRIPS = [
    pytest.param(CamelVideo, CAMEL, id="alias_generator"),
    pytest.param(CamelVideoByName, CamelVideoByName(video_id=1, title="x"), id="populate_by_name"),
    pytest.param(SplitAliases, SPLIT, id="validation-serialization-choices-path"),
    pytest.param(
        AliasedEverywhere,
        AliasedEverywhere.model_validate({"ID": 3, "main": CAMEL, "others": [SPLIT]}),
        id="serialize_by_alias-nested",
    ),
    pytest.param(list[CamelVideo], [CAMEL, CAMEL], id="list"),
    pytest.param(CamelVideo | None, CAMEL, id="optional"),
    pytest.param(dict[str, SplitAliases], {"a": SPLIT}, id="dict"),
    pytest.param(StrictWithComputed, StrictWithComputed(seconds=90), id="computed-extra-forbid"),
    pytest.param(
        Base64Thumbnail, Base64Thumbnail(png=b"\x89PNG\xff", ratio=math.inf), id="base64-inf"
    ),
]


@pytest.mark.parametrize(("model", "value"), ROUND_TRIPS)
async def test_models_with_aliases_are_cached(
    cache_backend: CacheBackend, model: Any, value: Any
) -> None:
    service = VideoService(cache_backend, FakeDB())
    loads = 0

    async def load() -> Any:
        nonlocal loads
        loads += 1
        return value

    assert [await service.cached("k", load, model=model) for _ in range(3)] == [value] * 3
    stats = cache_stats(cache_backend)["namespaces"]["videos"]
    assert (loads, stats["hits"], stats["corrupt"]) == (1, 2, 0), stats


@pytest.mark.parametrize(("model", "value"), ROUND_TRIPS[:4])
async def test_cached_many_caches_models_with_aliases(
    cache_backend: CacheBackend, model: Any, value: Any
) -> None:
    service = VideoService(cache_backend, FakeDB())
    calls: list[list[int]] = []

    async def load_many(ids: list[int]) -> dict[int, Any]:
        calls.append(ids)
        return dict.fromkeys(ids, value)

    first = await service.cached_many([1, 2, 3], load_many, model=model)
    second = await service.cached_many([1, 2, 3], load_many, model=model)
    assert first == second == dict.fromkeys([1, 2, 3], value)
    assert calls == [[1, 2, 3]]
    stats = cache_stats(cache_backend)["namespaces"]["videos"]
    assert (stats["hits"], stats["corrupt"]) == (3, 0), stats


async def test_callers_joining_a_load_of_an_aliased_model_get_it(
    cache_backend: CacheBackend,
) -> None:
    service = VideoService(cache_backend, FakeDB())
    loads = 0
    release = asyncio.Event()

    async def slow() -> CamelVideo:
        nonlocal loads
        loads += 1
        await release.wait()
        return CAMEL

    readers = [asyncio.create_task(service.cached(1, slow, model=CamelVideo)) for _ in range(5)]
    await asyncio.sleep(0.05)
    release.set()
    assert await asyncio.gather(*readers) == [CAMEL] * 5
    assert loads == 1


class Thumbnail(BaseModel):
    id: int
    png: bytes


class Score(BaseModel):
    id: int
    value: float


class MaybeScore(BaseModel):
    id: int
    value: float | None


class Account(BaseModel):
    id: int
    password_hash: str = Field(default="", exclude=True)


class Tagged(BaseModel):
    id: int
    _etag: str = PrivateAttr(default="")


def _tagged() -> Tagged:
    tagged = Tagged(id=1)
    tagged._etag = "W/1"
    return tagged


UNSTORABLE = [
    # JSON text holds no such bytes: serializing fails.
    pytest.param(Thumbnail, Thumbnail(id=1, png=b"\x89PNG\xff"), id="bytes-not-utf8"),
    # Written as null, which a float refuses.
    pytest.param(Score, Score(id=1, value=math.inf), id="inf-written-as-null"),
    # Written as null, read back as None: another value.
    pytest.param(MaybeScore, MaybeScore(id=1, value=-math.inf), id="inf-read-back-as-none"),
    # Left out of the JSON: read back with the default.
    pytest.param(Account, Account(id=1, password_hash="x"), id="excluded-field"),
    pytest.param(Tagged, _tagged(), id="private-attribute"),
]
UNSTORABLE_WARNING = "Value not cached: it does not survive the cache's JSON round trip"


def _unstorable_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == UNSTORABLE_WARNING]


@pytest.mark.parametrize("locked", [False, True], ids=["", "cache_lock"])
@pytest.mark.parametrize(("model", "value"), UNSTORABLE)
async def test_a_value_json_cannot_hold_is_answered_uncached(
    cache_backend: CacheBackend,
    caplog: pytest.LogCaptureFixture,
    model: Any,
    value: Any,
    locked: bool,
) -> None:
    service = (LockedService if locked else VideoService)(cache_backend, FakeDB())
    loads = 0

    async def load() -> Any:
        nonlocal loads
        loads += 1
        return value

    with caplog.at_level(logging.WARNING, logger="heygen_conventions.cache"):
        assert [await service.cached("k", load, model=model) for _ in range(3)] == [value] * 3
    namespace = service.cache_namespace
    assert namespace is not None
    stats = cache_stats(cache_backend)["namespaces"][namespace]
    assert (loads, stats["hits"], stats["corrupt"], stats["unstorable"]) == (3, 0, 0, 3), stats
    assert [k for k in await cache_keys(cache_backend) if ":v0:" in k] == []
    (warning,) = _unstorable_warnings(caplog)
    extra = warning.__dict__
    assert (extra["cache_namespace"], extra["cache_model"]) == (namespace, model.__qualname__)
    assert [r.getMessage() for r in caplog.records] == [UNSTORABLE_WARNING]


@pytest.mark.parametrize(("model", "value"), UNSTORABLE[:2])
async def test_cached_many_answers_values_json_cannot_hold_uncached(
    cache_backend: CacheBackend, caplog: pytest.LogCaptureFixture, model: Any, value: Any
) -> None:
    service = VideoService(cache_backend, FakeDB())
    values = {1: value.model_copy(update={"id": 1}), 2: value.model_copy(update={"id": 2})}
    values[3] = model.model_validate({"id": 3, "png": b"fine", "value": 1.5})
    calls: list[list[int]] = []

    async def load_many(ids: list[int]) -> dict[int, Any]:
        calls.append(ids)
        return {i: values[i] for i in ids}

    with caplog.at_level(logging.WARNING, logger="heygen_conventions.cache"):
        first = await service.cached_many([1, 2, 3], load_many, model=model)
        second = await service.cached_many([1, 2, 3], load_many, model=model)
    assert first == second == values
    assert calls == [[1, 2, 3], [1, 2]]
    stats = cache_stats(cache_backend)["namespaces"]["videos"]
    assert (stats["hits"], stats["corrupt"], stats["unstorable"]) == (1, 0, 4), stats
    assert len(_unstorable_warnings(caplog)) == 1


async def test_callers_joining_a_load_share_a_value_json_cannot_hold(
    cache_backend: CacheBackend,
) -> None:
    service = VideoService(cache_backend, FakeDB())
    loads = 0
    release = asyncio.Event()

    async def slow() -> Score:
        nonlocal loads
        loads += 1
        await release.wait()
        return Score(id=1, value=math.inf)

    async def read_and_change() -> Score | None:
        score = await service.cached(1, slow, model=Score)
        assert score is not None
        score.value = 0.0  # before the callers that joined have resumed
        return score

    leader = asyncio.create_task(read_and_change())
    await _until(lambda: loads == 1)
    joined = [asyncio.create_task(service.cached(1, slow, model=Score)) for _ in range(4)]
    await asyncio.sleep(0.05)
    release.set()
    values = await asyncio.gather(*joined)
    assert values == [Score(id=1, value=math.inf)] * 4
    assert len({id(v) for v in values}) == 4  # each caller owns its instance
    assert (await leader) == Score(id=1, value=0.0)
    assert loads == 1


class Handle(BaseModel):
    """Neither JSON nor a deep copy can hold it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    id: int
    lock: Any


async def test_callers_joining_a_load_of_a_value_that_cannot_be_copied_load_it(
    cache_backend: CacheBackend,
) -> None:
    service = VideoService(cache_backend, FakeDB())
    loads = 0
    release = asyncio.Event()

    async def slow() -> Handle:
        nonlocal loads
        loads += 1
        await release.wait()
        return Handle(id=loads, lock=threading.Lock())

    readers = [asyncio.create_task(service.cached(1, slow, model=Handle)) for _ in range(3)]
    await asyncio.sleep(0.05)
    release.set()
    handles = await asyncio.gather(*readers)
    assert loads == 3
    assert sorted(h.id for h in handles if h is not None) == [1, 2, 3]


async def test_ttls_are_jittered(cache_backend: CacheBackend) -> None:
    class Jittered(VideoService):
        cache_namespace = "jittered"
        cache_ttl = 1000

    service = Jittered(cache_backend, FakeDB())
    for i in range(40):

        async def load(i: int = i) -> VideoResponse:
            return VideoResponse(id=i, title="t")

        await service.cached(i, load, model=VideoResponse)

    async def load_many(ids: list[int]) -> dict[int, VideoResponse]:
        return {i: VideoResponse(id=i, title="t") for i in ids}

    await service.cached_many(range(100, 140), load_many, model=VideoResponse)
    ttls = await _remaining_ttls(cache_backend, ":v0:")
    assert len(ttls) == 80
    assert all(890 <= ttl <= 1100 for ttl in ttls), ttls
    assert len({round(ttl) for ttl in ttls}) > 10


async def _remaining_ttls(backend: CacheBackend, marker: str) -> list[float]:
    keys = [k for k in await cache_keys(backend) if marker in k]
    if isinstance(backend, MemoryCache):
        now = backend._clock()
        return [backend._data[backend.prefix + k][1] - now for k in keys]  # type: ignore[operator]
    assert isinstance(backend, RedisCache)
    return [await backend.client.pttl(backend.prefix + k) / 1000 for k in keys]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("cache_ttl", 0),
        ("cache_ttl", -5),
        ("cache_ttl", timedelta(0)),
        ("cache_negative_ttl", 0),
        ("cache_lock_ttl", 0),
        ("cache_lock_wait", -1),
        ("cache_local_ttl", 0),
        ("cache_max_ttl", 0),
        ("cache_ttl_jitter", 1.0),
        ("cache_ttl", 10**9),
        ("cache_namespace", "has:colon"),
        ("cache_namespace", ""),
    ],
)
def test_bad_configuration_is_refused_when_the_class_is_defined(
    attribute: str, value: object
) -> None:
    with pytest.raises(ValueError, match=attribute):
        type("Bad", (CachedServiceMixin,), {"cache_namespace": "ok", attribute: value})


async def test_bad_call_arguments_are_refused(cache_backend: CacheBackend, db: FakeDB) -> None:
    service = VideoService(cache_backend, db)
    with pytest.raises(ValueError, match="ttl must be > 0"):
        await service.cached(1, db.loader(1), model=VideoResponse, ttl=0)
    with pytest.raises(ValueError, match="cache_max_ttl"):
        await service.cached(1, db.loader(1), model=VideoResponse, ttl=timedelta(days=30))

    class NoNamespace(CachedServiceMixin):
        def __init__(self) -> None:
            self.cache = cache_backend

    with pytest.raises(TypeError, match="cache_namespace"):
        await NoNamespace().cached(1, db.loader(1), model=VideoResponse)
    assert db.loads == []


async def test_ttl_defaults_to_the_backends_default(db: FakeDB) -> None:
    class Defaulted(CachedServiceMixin):
        cache_namespace = "defaulted"
        cache_ttl_jitter = 0

        def __init__(self, cache: CacheBackend) -> None:
            self.cache = cache

    now = [0.0]
    backend = MemoryCache(default_ttl=42, clock=lambda: now[0])
    await Defaulted(backend).cached(1, db.loader(1), model=VideoResponse)
    (entry,) = [v for k, v in backend._data.items() if ":v0:" in k]
    assert entry[1] == 42

    class Bounded(Defaulted):
        cache_namespace = "bounded"
        cache_max_ttl = 10
        cache_negative_ttl = 5

    backend = MemoryCache(default_ttl=42, clock=lambda: now[0])
    await Bounded(backend).cached(1, db.loader(1), model=VideoResponse)
    (entry,) = [v for k, v in backend._data.items() if ":v0:" in k]
    assert entry[1] == 10  # a backend default never outlives cache_max_ttl


# -- cached_many -------------------------------------------------------------------


async def test_cached_many_loads_only_the_misses(cache_backend: CacheBackend, db: FakeDB) -> None:
    service = VideoService(cache_backend, db)
    await service.get(2)
    result = await service.cached_many([1, 2, 3, 404, 1], db.load_many, model=VideoResponse)
    assert list(result) == [1, 2, 3]
    assert all(type(v) is VideoResponse for v in result.values())
    assert db.loads == [2, (1, 3, 404)]
    again = await service.cached_many([3, 1, 404, 2], db.load_many, model=VideoResponse)
    assert list(again) == [3, 1, 2]
    assert db.loads == [2, (1, 3, 404)]
    assert await service.cached_many([], db.load_many, model=VideoResponse) == {}
    assert await service.get(404) is None  # cached_many's negative entry is shared
    assert db.loads == [2, (1, 3, 404)]


async def test_cached_many_is_one_round_trip(cache_backend: CacheBackend, db: FakeDB) -> None:
    db.rows = {i: {"id": i, "title": str(i)} for i in range(100)}
    service = VideoService(cache_backend, db)
    await service.cached_many(range(100), db.load_many, model=VideoResponse)
    counted = _CountingBackend(cache_backend)
    service.cache = counted
    result = await service.cached_many(range(100), db.load_many, model=VideoResponse)
    assert len(result) == 100
    assert len(db.loads) == 1
    assert counted.calls == ["get_many"]


async def test_cached_many_sees_invalidations(cache_backend: CacheBackend, db: FakeDB) -> None:
    service = VideoService(cache_backend, db)
    await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    db.rows[2]["title"] = "renamed"
    await service.invalidate(2)
    result = await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    assert result[2].title == "renamed"
    assert db.loads == [(1, 2), (2,)]
    await service.invalidate_namespace()
    await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    assert db.loads == [(1, 2), (2,), (1, 2)]


async def test_cached_many_replaces_corrupt_entries(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = VideoService(cache_backend, db)
    await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    for key in [k for k in await cache_keys(cache_backend) if ":v0:" in k]:
        await cache_backend.set(key, b"garbage" if key.endswith(":1") else b"V" + b"-" * 16 + b"[]")
    result = await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    assert result == {
        1: VideoResponse(id=1, title="video 1"),
        2: VideoResponse(id=2, title="video 2"),
    }
    assert db.loads == [(1, 2), (1, 2)]
    assert cache_stats(cache_backend)["namespaces"]["videos"]["corrupt"] == 2


async def test_cached_many_survives_an_entry_holding_two_values(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = VideoService(cache_backend, db)
    await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    (first,) = [k for k in await cache_keys(cache_backend) if ":v0:" in k and k.endswith(":1")]
    two = b'{"id":1,"title":"a"},{"id":9,"title":"b"}'
    await cache_backend.set(first, b"V" + b"-" * 16 + two)
    result = await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    assert result == {
        1: VideoResponse(id=1, title="video 1"),
        2: VideoResponse(id=2, title="video 2"),
    }
    assert db.loads == [(1, 2), (1,)]


async def test_cached_many_loader_errors_propagate(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())

    async def broken(ids: list[int]) -> dict[int, VideoResponse]:
        raise LookupError("no")

    with pytest.raises(LookupError):
        await service.cached_many([1], broken, model=VideoResponse)
    assert await cache_keys(cache_backend) == []


class _CountingBackend:
    """Delegates to a real backend and records which methods were called."""

    def __init__(self, inner: CacheBackend) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if callable(attribute):

            def record(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attribute(*args, **kwargs)

            return record
        return attribute


# -- stampedes ---------------------------------------------------------------------


async def test_concurrent_misses_share_one_load(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())
    calls = 0
    release = asyncio.Event()

    async def slow() -> VideoResponse:
        nonlocal calls
        calls += 1
        await release.wait()
        return VideoResponse(id=1, title="once")

    readers = [
        asyncio.create_task(service.cached(1, slow, model=VideoResponse)) for _ in range(1000)
    ]
    await asyncio.sleep(0.05)
    release.set()
    values = await asyncio.gather(*readers)
    assert calls == 1
    assert all(v == VideoResponse(id=1, title="once") for v in values)
    assert len({id(v) for v in values}) == 1000  # each caller owns its instance


async def test_waiters_share_the_loaders_error(cache_backend: CacheBackend) -> None:
    service = VideoService(cache_backend, FakeDB())
    release = asyncio.Event()

    async def failing() -> VideoResponse:
        await release.wait()
        raise LookupError("shared failure")

    readers = [
        asyncio.create_task(service.cached(1, failing, model=VideoResponse)) for _ in range(5)
    ]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)


@pytest.mark.parametrize("count", [1, 5])
async def test_a_cancelled_leader_hands_over_to_one_waiter(
    cache_backend: CacheBackend, count: int
) -> None:
    service = VideoService(cache_backend, FakeDB())
    calls = 0
    gate = asyncio.Event()

    async def slow() -> VideoResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # the first load never finishes
        await gate.wait()
        return VideoResponse(id=1, title="second")

    leader = asyncio.create_task(service.cached(1, slow, model=VideoResponse))
    await _until(lambda: calls == 1)
    waiters = [
        asyncio.create_task(service.cached(1, slow, model=VideoResponse)) for _ in range(count)
    ]
    await asyncio.sleep(0.05)
    leader.cancel()  # e.g. its request timed out while the database was slow
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*waiters) == [VideoResponse(id=1, title="second")] * count
    assert calls == 2  # one load for all the waiters, not one each
    with pytest.raises(asyncio.CancelledError):
        await leader


class LockedService(VideoService):
    cache_namespace = "locked"
    cache_lock = True
    cache_lock_wait = 2.0


async def test_the_lock_makes_one_instance_load(
    shared_cache_backends: tuple[RedisCache, RedisCache],
) -> None:
    first, second = shared_cache_backends
    on_a, on_b = LockedService(first, FakeDB()), LockedService(second, FakeDB())
    calls: list[str] = []
    release = asyncio.Event()

    def loader(instance: str) -> Callable[[], Awaitable[VideoResponse]]:
        async def load() -> VideoResponse:
            calls.append(instance)
            await release.wait()
            return VideoResponse(id=1, title=f"from {instance}")

        return load

    task_a = asyncio.create_task(on_a.cached(1, loader("a"), model=VideoResponse))
    await _until(lambda: calls == ["a"])  # a holds the lock and is loading
    tasks_b = [
        asyncio.create_task(on_b.cached(1, loader("b"), model=VideoResponse)) for _ in range(50)
    ]
    await asyncio.sleep(0.1)
    release.set()
    values = await asyncio.gather(task_a, *tasks_b)
    assert calls == ["a"]
    assert {v.title for v in values if v is not None} == {"from a"}
    assert cache_stats(second)["namespaces"]["locked"]["lock_waits"] == 1
    assert [k for k in await cache_keys(first) if ":l:" in k] == []  # released


async def test_waiters_load_themselves_when_the_holder_died(
    shared_cache_backends: tuple[RedisCache, RedisCache],
) -> None:
    class ShortLock(VideoService):
        cache_namespace = "short-lock"
        cache_lock = True
        cache_lock_ttl = 0.2
        cache_lock_wait = 3.0

    first, second = shared_cache_backends
    dead = ShortLock(first, FakeDB())
    # A holder that took the lock and vanished: the lock key expires on its own.
    await dead.cache.set_if_absent(
        f"short-lock:l:v0:{_schema(VideoResponse)}:1", b"dead-holder", ttl=0.2
    )
    calls = 0

    async def load() -> VideoResponse:
        nonlocal calls
        calls += 1
        return VideoResponse(id=1, title="survivor")

    value = await ShortLock(second, FakeDB()).cached(1, load, model=VideoResponse)
    assert value == VideoResponse(id=1, title="survivor")
    assert calls == 1
    assert await dead.cached(1, load, model=VideoResponse) == value
    assert calls == 1


async def test_waiters_give_up_after_lock_wait(
    shared_cache_backends: tuple[RedisCache, RedisCache],
) -> None:
    class Impatient(VideoService):
        cache_namespace = "impatient"
        cache_lock = True
        cache_lock_ttl = 30
        cache_lock_wait = 0.1

    first, _ = shared_cache_backends
    await first.set_if_absent(f"impatient:l:v0:{_schema(VideoResponse)}:1", b"stuck", ttl=30)

    async def load() -> VideoResponse:
        return VideoResponse(id=1, title="mine")

    assert await Impatient(first, FakeDB()).cached(1, load, model=VideoResponse) == VideoResponse(
        id=1, title="mine"
    )


def _schema(model: type[BaseModel]) -> str:
    from heygen_conventions._cache_engine import codec_for

    return codec_for(model).schema_hash


# -- the stale-refill race -------------------------------------------------------------


async def test_a_fill_started_before_an_invalidation_is_never_served(
    cache_backend: CacheBackend,
) -> None:
    """Reader loads v1; writer commits v2 and invalidates; reader then writes v1 back."""
    rows = {1: "v1"}
    reader_loaded = asyncio.Event()
    writer_done = asyncio.Event()

    class Service(VideoService):
        cache_namespace = "race"

    service = Service(cache_backend, FakeDB())

    async def slow_reader_load() -> VideoResponse:
        title = rows[1]  # reads the row before the writer commits
        reader_loaded.set()
        await writer_done.wait()  # ... and writes it to the cache after
        return VideoResponse(id=1, title=title)

    async def load() -> VideoResponse:
        return VideoResponse(id=1, title=rows[1])

    reader = asyncio.create_task(service.cached(1, slow_reader_load, model=VideoResponse))
    await reader_loaded.wait()
    rows[1] = "v2"  # the writer commits
    await service.invalidate(1)  # ... then invalidates
    writer_done.set()
    assert (await reader) == VideoResponse(id=1, title="v1")  # its own read was before the write
    assert (await service.cached(1, load, model=VideoResponse)) == VideoResponse(id=1, title="v2")
    assert (await service.cached(1, load, model=VideoResponse)) == VideoResponse(id=1, title="v2")
    assert cache_stats(cache_backend)["namespaces"]["race"]["stale"] == 0  # never stored


async def test_callers_after_an_invalidation_do_not_join_an_older_read(
    cache_backend: CacheBackend,
) -> None:
    service = VideoService(cache_backend, FakeDB())
    rows = {1: "v1"}
    release = asyncio.Event()
    loading = asyncio.Event()

    async def slow_old() -> VideoResponse:
        title = rows[1]
        loading.set()
        await release.wait()
        return VideoResponse(id=1, title=title)

    async def load() -> VideoResponse:
        return VideoResponse(id=1, title=rows[1])

    old_reader = asyncio.create_task(service.cached(1, slow_old, model=VideoResponse))
    await asyncio.wait_for(loading.wait(), 10)  # the old reader has read the old row
    rows[1] = "v2"
    await service.invalidate(1)
    fresh = await service.cached(1, load, model=VideoResponse)  # does not wait for old_reader
    assert fresh == VideoResponse(id=1, title="v2")
    release.set()
    assert (await old_reader).title == "v1"
    assert await service.cached(1, load, model=VideoResponse) == VideoResponse(id=1, title="v2")


# -- the local layer ---------------------------------------------------------------


class LocalService(VideoService):
    cache_namespace = "local"
    cache_local_ttl = 30


async def test_local_layer_answers_without_the_backend(
    cache_backend: CacheBackend, db: FakeDB
) -> None:
    service = LocalService(cache_backend, db)
    await service.get(1)
    await _until(lambda: engine_state(cache_backend).local_ready)
    await service.get(1)  # read through once the feed is up
    counted = _CountingBackend(cache_backend)
    service.cache = counted
    assert (await service.get(1)) == VideoResponse(id=1, title="video 1")
    assert counted.calls == []
    assert cache_stats(cache_backend)["namespaces"]["local"]["local_hits"] == 1
    result = await service.cached_many([1, 2], db.load_many, model=VideoResponse)
    assert list(result) == [1, 2]
    assert counted.calls == ["get_many", "set_many"]


async def test_local_entries_of_other_instances_are_invalidated(
    shared_cache_backends: tuple[RedisCache, RedisCache], db: FakeDB
) -> None:
    first, second = shared_cache_backends
    on_a, on_b = LocalService(first, db), LocalService(second, db)
    await on_a.get(1)
    await on_b.get(1)
    await _until(lambda: engine_state(first).local_ready and engine_state(second).local_ready)
    await on_b.get(1)
    assert (await on_b.get(1)) == VideoResponse(id=1, title="video 1")
    assert cache_stats(second)["namespaces"]["local"]["local_hits"] >= 1
    db.rows[1]["title"] = "renamed"
    await on_a.invalidate(1)
    await _until(lambda: engine_state(second).local.get(("local", "1")) is None)
    assert (await on_b.get(1)) == VideoResponse(id=1, title="renamed")
    await on_b.get(2)
    await on_b.get(2)
    db.rows[2]["title"] = "renamed too"
    await on_a.invalidate_namespace()
    await _until(lambda: on_b_local_empty(second, "2"))
    assert (await on_b.get(2)) == VideoResponse(id=2, title="renamed too")


def on_b_local_empty(backend: CacheBackend, key: str) -> bool:
    state = engine_state(backend)
    return state.local_get("local", key, _schema(VideoResponse)) is None


def engine_state(backend: CacheBackend) -> Any:
    from heygen_conventions._cache_engine import state_for

    return state_for(backend)


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_local_layer_without_pub_sub_relies_on_its_ttl(db: FakeDB) -> None:
    class Bare:
        """A backend without publish/subscribe."""

        def __init__(self) -> None:
            self.inner = MemoryCache()

        def __getattr__(self, name: str) -> Any:
            if name in ("publish", "subscribe"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    class ShortLocal(VideoService):
        cache_namespace = "short-local"
        cache_local_ttl = 0.05

    bare = Bare()
    service = ShortLocal(bare, db)  # type: ignore[arg-type]
    await service.get(1)
    await service.get(1)
    assert cache_stats(bare)["namespaces"]["short-local"]["local_hits"] == 1  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    await service.get(1)
    assert cache_stats(bare)["namespaces"]["short-local"]["local_hits"] == 1  # type: ignore[arg-type]


# -- wiring into an app ------------------------------------------------------------------


class AppVideoService(CachedServiceMixin):
    """A service built per request by FastAPI, its backend from get_cache."""

    cache_namespace = "app-videos"
    rows: ClassVar[dict[int, dict[str, Any]]] = {1: {"id": 1, "title": "Intro"}}
    events: ClassVar[list[str]] = []

    def __init__(self, cache: CacheBackend = Depends(get_cache)) -> None:
        self.cache = cache

    async def get(self, video_id: int) -> VideoResponse:
        async def load() -> dict[str, Any] | None:
            self.events.append(f"load {video_id}")
            return self.rows.get(video_id)

        video = await self.cached(video_id, load, model=VideoResponse)
        if video is None:
            raise NotFoundError("Video not found")
        return video


def test_install_cache_serves_routes_and_closes_after_the_apps_lifespan() -> None:
    from contextlib import asynccontextmanager

    events: list[str] = []
    backend = MemoryCache()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        events.append("app started")
        yield {"greeting": "hi"}
        events.append("app stopped")
        await backend.set("written-at-shutdown", b"1")  # still open here

    app = FastAPI(lifespan=lifespan)
    install_exception_handlers(app)
    assert install_cache(app, backend) is backend
    assert app.state.heygen_cache is backend
    AppVideoService.events = events

    @app.get("/videos/{video_id}", response_model=APIResponse[VideoResponse])
    async def get_video(
        video_id: int, service: AppVideoService = Depends()
    ) -> APIResponse[VideoResponse]:
        return APIResponse.ok(await service.get(video_id))

    @app.get("/greeting")
    async def greeting(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    with TestClient(app) as client:
        response = client.get("/greeting")  # the app's own lifespan state is kept
        assert response.status_code == 200, response.text
        assert response.json() == {"greeting": "hi"}
        for _ in range(2):
            response = client.get("/videos/1")
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {
                "id": 1,
                "title": "Intro",
                "duration_seconds": 0.0,
                "tags": [],
            }
        for _ in range(2):
            response = client.get("/videos/2")
            assert response.status_code == 404, response.text
            assert response.json()["errors"][0]["code"] == "not_found"
    assert events == ["app started", "load 1", "load 2", "app stopped"]
    with pytest.raises(Exception, match="closed"):
        asyncio.run(backend.get("x"))
    with pytest.raises(RuntimeError, match="already"):
        install_cache(app, MemoryCache())


def test_get_cache_without_install_is_a_500() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/")
    async def index(cache: CacheBackend = Depends(get_cache)) -> dict[str, str]:
        return {}

    response = TestClient(app).get("/")
    assert response.status_code == 500, response.text


def test_cache_from_settings_picks_the_backend() -> None:
    memory = cache_from_settings(Settings(app_name="svc", cache_ttl=timedelta(seconds=90)))
    assert isinstance(memory, MemoryCache)
    assert (memory.prefix, memory.default_ttl) == ("svc:", 90)
    redis_cache = cache_from_settings(
        Settings(app_name="svc", environment="test", redis_url="redis://127.0.0.1:1/2")
    )
    assert isinstance(redis_cache, RedisCache)
    assert (redis_cache.prefix, redis_cache.default_ttl) == ("svc:", 300)


def test_stats_of_an_unused_backend_are_empty() -> None:
    assert cache_stats(MemoryCache()) == {
        "backend": "MemoryCache",
        "breaker": None,
        "namespaces": {},
    }


async def test_stats_work_for_backends_with_slots(db: FakeDB) -> None:
    class Slotted:
        __slots__ = ("inner",)

        def __init__(self) -> None:
            self.inner = MemoryCache()

        async def get_many(self, keys: Any) -> Any:
            return await self.inner.get_many(keys)

        async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
            await self.inner.set(key, value, ttl=ttl)

    slotted = Slotted()
    service = VideoService(slotted, db)  # type: ignore[arg-type]
    await service.get(1)
    await service.get(1)
    assert cache_stats(slotted)["namespaces"]["videos"]["hits"] == 1  # type: ignore[arg-type]


def test_cached_is_typed_for_models_and_unions(monkeypatch: pytest.MonkeyPatch) -> None:
    """``model=Video`` types the result ``Video | None``; a union the README allows checks too."""
    source = """
        from typing import Any, assert_type

        from pydantic import BaseModel

        from heygen_conventions import CachedServiceMixin


        class Video(BaseModel):
            id: int


        class Videos(CachedServiceMixin):
            cache_namespace = "videos"

            async def one(self) -> Video | None:
                async def load() -> Video:
                    return Video(id=1)

                found = await self.cached(1, load, model=Video)
                assert_type(found, Video | None)
                maybe = await self.cached(2, load, model=Video | None)
                many = await self.cached_many([1], self.load_many, model=Video)
                assert_type(many, dict[int, Video])
                either = await self.cached_many([1], self.load_many, model=Video | None)
                assert_type(either, dict[int, Any])
                return found if maybe is None else maybe

            async def load_many(self, ids: list[int]) -> dict[int, Video]:
                return {i: Video(id=i) for i in ids}
        """
    assert mypy_strict(source, monkeypatch) == ""
    # The check can fail: a wrong type is reported.
    wrong = source.replace("assert_type(found, Video | None)", "assert_type(found, Video)")
    assert "[assert-type]" in mypy_strict(wrong, monkeypatch)
