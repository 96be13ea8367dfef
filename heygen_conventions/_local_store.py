"""The in-process revocation store auth falls back on when no shared cache is set."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

__all__ = ["LocalStore"]


class LocalStore:
    """In-process :class:`CacheBackend` for revocations when no shared cache is set.

    Only this process sees it: with several instances, use a shared backend.
    """

    _PURGE_AT = 10_000

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def _live(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and time.monotonic() >= expires:
            del self._data[key]
            return None
        return value

    def _purge(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and now >= exp]:
            del self._data[key]

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if len(self._data) >= self._PURGE_AT:
            self._purge()
        self._data[key] = (value, None if ttl is None else time.monotonic() + ttl)

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        for key, value in items.items():
            await self.set(key, value, ttl=ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl=ttl)
        return True

    async def delete(self, key: str) -> bool:
        existed = self._live(key) is not None
        self._data.pop(key, None)
        return existed

    async def delete_many(self, keys: Iterable[str]) -> int:
        return sum([await self.delete(key) for key in keys])

    async def incr(self, key: str, amount: int = 1) -> int:
        current = self._live(key)
        value = (int(current) if current is not None else 0) + amount
        expires = self._data[key][1] if current is not None else None
        self._data[key] = (str(value).encode(), expires)
        return value

    async def close(self) -> None:
        self._data.clear()
