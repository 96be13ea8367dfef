"""Caching for services: a backend protocol, Redis and in-process backends, and a mixin.

Only the :class:`CacheBackend` protocol is defined so far; the backends and
``CachedServiceMixin`` follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["CacheBackend"]


@runtime_checkable
class CacheBackend(Protocol):
    """What the library needs from a cache store. Values are bytes; TTLs are seconds.

    Implementations raise their own errors on failure; callers that must
    fail open (the service mixin, revocation checks) catch them.
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
