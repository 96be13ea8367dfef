"""The revocation stores behave as the CacheBackend protocol says.

Runs on the in-process store, fakeredis and (with TEST_REDIS_URL) Redis, so
the revocation tests mean the same thing on each.
"""

from __future__ import annotations

import asyncio

from heygen_conventions._local_store import LocalStore
from heygen_conventions.cache import CacheBackend


async def test_get_set_delete(revocation_store: CacheBackend) -> None:
    store = revocation_store
    assert await store.get("a") is None
    await store.set("a", b"1")
    assert await store.get("a") == b"1"
    assert await store.get_many(["a", "b"]) == [b"1", None]
    await store.set_many({"b": b"2", "c": b"3"}, ttl=60)
    assert await store.get_many(["b", "c"]) == [b"2", b"3"]
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.delete_many(["b", "c", "zz"]) == 2


async def test_set_if_absent_and_incr(revocation_store: CacheBackend) -> None:
    store = revocation_store
    assert await store.set_if_absent("lock", b"x", ttl=60) is True
    assert await store.set_if_absent("lock", b"y", ttl=60) is False
    assert await store.get("lock") == b"x"
    assert await store.incr("n") == 1
    assert await store.incr("n", 5) == 6
    await store.delete_many(["lock", "n"])


async def test_values_expire(revocation_store: CacheBackend) -> None:
    store = revocation_store
    await store.set("short", b"1", ttl=0.05)
    await store.set_if_absent("short-lock", b"1", ttl=0.05)
    await asyncio.sleep(0.15)
    assert await store.get_many(["short", "short-lock"]) == [None, None]
    assert await store.set_if_absent("short-lock", b"2", ttl=60) is True
    await store.delete("short-lock")


async def test_in_process_store_purges_expired_entries_when_large() -> None:
    store = LocalStore()
    store._PURGE_AT = 10  # type: ignore[misc]
    for i in range(10):
        await store.set(f"k{i}", b"1", ttl=0.01)
    await asyncio.sleep(0.05)
    await store.set("fresh", b"1", ttl=60)
    assert list(store._data) == ["fresh"]
    await store.incr("fresh")
    assert await store.get("fresh") == b"2"
    await store.close()
    assert await store.get("fresh") is None
