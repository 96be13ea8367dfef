"""The one connection of an in-memory SQLite database, lent to one transaction at a time.

An in-memory database lives in its connection, so every session of
``Database("sqlite+aiosqlite://")`` shares one (SQLAlchemy's ``StaticPool``).
Shared freely, one session's COMMIT commits another's half-done transaction
and its ROLLBACK undoes the other's work. :class:`SharedConnectionPool` lends
the connection from a session's first statement to its commit or rollback;
the others wait their turn, in order, as writers wait for a SQLite file's
lock, and fail the same way (503) after the busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any, cast

from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.util import await_only

__all__ = ["SharedConnectionPool"]


class _Waiter:
    __slots__ = ("future", "handed")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.handed = False  # the turn was given to it; it must pass it on if it gave up


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Turn:
    """A first-come, first-served lock usable from any event loop and thread.

    Not an ``asyncio.Lock``: that binds to one event loop, and one database is
    used from several (``asyncio.run`` calls in a script, ``TestClient``'s
    thread); and the connection can be returned by the garbage collector.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiters: deque[_Waiter] = deque()

    async def acquire(self) -> None:
        """Take the turn, once those who asked before have had theirs."""
        with self._guard:
            if not self._held:
                self._held = True
                return
            waiter = _Waiter(asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:  # cancelled, or timed out by the caller
            with self._guard:
                if waiter.handed:
                    self._pass_on()
                else:
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        with self._guard:
            self._pass_on()

    def _pass_on(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            try:
                waiter.future.get_loop().call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # its event loop is closed: nobody is waiting there
                continue
            waiter.handed = True
            return  # still held: by the waiter now
        self._held = False


class SharedConnectionPool(StaticPool):
    """``StaticPool`` lending its connection to one checkout at a time.

    Args:
        creator: Opens the connection (given by the engine).
        timeout: Seconds a checkout waits for the connection before
            ``sqlalchemy.exc.TimeoutError`` (a 503, like an exhausted pool);
            the engine's ``pool_timeout``.
    """

    def __init__(self, creator: Any, timeout: float = 5.0, **kwargs: Any) -> None:
        super().__init__(creator, **kwargs)
        self._timeout = timeout
        self._turn = _Turn()
        # The connection an invalidation let go of (a statement cancelled, a
        # recycle): it still holds the database, so the next checkout gets it back.
        self._orphan: Any = None
        self._disposing = False
        connect = self._invoke_creator

        def reconnect(rec: ConnectionPoolEntry) -> DBAPIConnection:
            orphan, self._orphan = self._orphan, None
            if orphan is not None:
                try:
                    orphan.rollback()  # what the invalidated transaction left half done
                    return cast("DBAPIConnection", orphan)
                except Exception:
                    self._close_for_good(orphan)
            return connect(rec)

        self._invoke_creator = reconnect

    def recreate(self) -> SharedConnectionPool:
        pool = super().recreate()
        assert isinstance(pool, SharedConnectionPool)
        pool._timeout = self._timeout
        return pool

    async def _take_turn(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._turn.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"The in-memory SQLite database stayed in another transaction for "
                f"{self._timeout:g} seconds; transactions on it run one at a time"
            ) from None

    def _do_get(self) -> ConnectionPoolEntry:
        # Pool checkouts run in SQLAlchemy's greenlet, where the async engine awaits.
        await_only(self._take_turn())
        try:
            return super()._do_get()
        except BaseException:
            self._turn.release()
            raise

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        self._turn.release()

    def _close_connection(self, connection: Any, *, terminate: bool = False) -> None:
        if self._disposing:
            super()._close_connection(connection, terminate=terminate)
            return
        # Closing the connection would drop the database with it: stop what it
        # runs (sqlite3's interrupt() is thread-safe) and keep it for the next checkout.
        with contextlib.suppress(Exception):  # not aiosqlite, or already closed
            connection._connection._conn.interrupt()
        if self._orphan is not None and self._orphan is not connection:  # pragma: no cover
            self._close_for_good(self._orphan)
        self._orphan = connection

    def _close_for_good(self, connection: Any) -> None:
        self._disposing, disposing = True, self._disposing
        try:
            super()._close_connection(connection, terminate=True)
        finally:
            self._disposing = disposing

    def dispose(self) -> None:
        self._disposing = True
        try:
            super().dispose()
            orphan, self._orphan = self._orphan, None
            if orphan is not None:
                super()._close_connection(orphan)
        finally:
            self._disposing = False
