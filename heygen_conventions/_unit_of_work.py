"""Work that waits for a transaction's commit: the one after-commit mechanism (private).

Sessions made by :class:`~heygen_conventions.Database` are ``_AsyncSession``s.
:func:`after_commit` queues a callback in the session's ``info``; when the
outermost transaction commits the callbacks are promoted, and the commit
(``await session.commit()``, or leaving ``async with session.begin():``)
awaits them before it returns, so the request's session runs them before the
response is sent. A rollback of the outermost transaction drops the queued
ones. A savepoint changes nothing: callbacks queued before a rolled-back
savepoint are kept (the outer transaction may still commit), and releasing a
savepoint runs nothing (the outer one may still roll back).

The cache defers its invalidations here; the callbacks still queued are also
how it knows which keys this transaction changed (:func:`pending_after_commit`),
so that the transaction reads its own writes.

The session of the unit of work in progress (the request's, a
``Database.transaction()`` block's, an ``async with db.session()`` block's) is
also held in a context variable (:func:`current_unit_of_work`): a service that
keeps no session of its own invalidates at once and again when that
transaction commits, and reads its own writes meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction
from sqlalchemy.orm import Session, SessionTransaction

__all__ = [
    "AfterCommitCallback",
    "after_commit",
    "current_unit_of_work",
    "pending_after_commit",
    "run_after_commit",
    "unit_of_work_scope",
]

logger = logging.getLogger("heygen_conventions.db")

AfterCommitCallback = Callable[[], Awaitable[object] | object]

_PENDING = "heygen_after_commit_pending"
_READY = "heygen_after_commit_ready"
_SCOPES = "heygen_unit_of_work_tokens"


class _SyncSession(Session):
    """Our sessions' sync core; the events below are registered on it alone."""


@event.listens_for(_SyncSession, "after_commit")
def _promote(session: Session) -> None:
    # Fired for a released savepoint too: only the outermost commit counts.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.info.setdefault(_READY, []).extend(pending)


@event.listens_for(_SyncSession, "after_transaction_end")
def _discard(session: Session, transaction: SessionTransaction) -> None:
    # Callbacks still pending when the outermost transaction ends did not commit.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


class _AsyncTransaction(AsyncSessionTransaction):
    """``async with session.begin():`` runs the callbacks once its block has committed."""

    __slots__ = ()

    async def commit(self) -> None:
        await super().commit()
        await run_after_commit(self.session)

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        await super().__aexit__(type_, value, traceback)
        await run_after_commit(self.session)


_CURRENT: ContextVar[AsyncSession | None] = ContextVar("heygen_unit_of_work", default=None)


def current_unit_of_work() -> AsyncSession | None:
    """The session of the innermost unit of work open in this context, if any."""
    return _CURRENT.get()


@contextmanager
def unit_of_work_scope(session: AsyncSession) -> Iterator[None]:
    """Make ``session`` the current unit of work for the block."""
    token = _CURRENT.set(session)
    try:
        yield
    finally:
        # A block left from another context (an async generator abandoned
        # mid-block and finalised by the loop) cannot reset the variable where
        # it was set, which then keeps naming this session there. Harmless: a
        # service without its own session invalidates at once whatever the
        # variable says, and a closed session is in no transaction.
        with suppress(ValueError):
            _CURRENT.reset(token)


class _AsyncSession(AsyncSession):
    sync_session_class = _SyncSession

    async def commit(self) -> None:
        await super().commit()
        await run_after_commit(self)

    def begin(self) -> AsyncSessionTransaction:
        return _AsyncTransaction(self)

    async def __aenter__(self) -> _AsyncSession:
        session = await super().__aenter__()
        self.info.setdefault(_SCOPES, []).append(_CURRENT.set(self))
        return session

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        scopes = self.info.get(_SCOPES)
        if scopes:
            with suppress(ValueError):  # left from another context: see unit_of_work_scope
                _CURRENT.reset(scopes.pop())
        await super().__aexit__(type_, value, traceback)


def after_commit(session: AsyncSession, callback: AfterCommitCallback) -> None:
    """Run ``callback`` once the session's current transaction commits.

    A rollback drops it. Meant for side effects that must follow the data,
    such as cache invalidation: the request's session runs them after its
    commit and before the response is sent. A callback that fails is logged
    and does not fail the request (the data is committed by then).

    Args:
        session: A session made by a :class:`Database` (as ``get_db_session``
            and ``Database.session()`` give).
        callback: A function of no arguments, async or not.

    Raises:
        TypeError: The session was not made by a :class:`Database`.
    """
    if not isinstance(session.sync_session, _SyncSession):
        raise TypeError("after_commit() needs a session made by heygen_conventions.Database")
    session.info.setdefault(_PENDING, []).append(callback)


def pending_after_commit(session: Any) -> Sequence[AfterCommitCallback]:
    """The callbacks waiting for the commit of ``session``'s transaction (any object)."""
    info = getattr(session, "info", None)
    return info.get(_PENDING, ()) if isinstance(info, dict) else ()


async def run_after_commit(session: AsyncSession) -> None:
    """Run the callbacks of the transaction that just committed (none: a no-op).

    The data is committed: the callbacks run to their end even when the caller
    is cancelled meanwhile (a request timeout, a client gone), which then gets
    its ``CancelledError`` at once.
    """
    ready: list[AfterCommitCallback] | None = session.info.pop(_READY, None)
    if not ready:
        return
    task = asyncio.get_running_loop().create_task(_run_callbacks(ready))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    await asyncio.shield(task)


_RUNNING: set[asyncio.Task[None]] = set()  # strong references while shielded


async def _run_callbacks(ready: list[AfterCommitCallback]) -> None:
    for callback in ready:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(
                "After-commit callback failed",
                extra={"callback": getattr(callback, "__qualname__", repr(callback))},
            )
