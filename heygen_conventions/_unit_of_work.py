"""Work deferred until a request's transaction commits, dropped if it rolls back.

The seam between the cache and the data layer. Pending callbacks live in the
unit of work's ``info`` dict (``AsyncSession.info`` / ``Session.info``):

- ``info["heygen_after_commit"]``: async callables to run once the root
  transaction has committed;
- ``info["heygen_cache_pending"]``: the ``(namespace, key)`` pairs (``key``
  None for a whole namespace) those callbacks will invalidate, so reads in the
  same transaction bypass the cache and see their own writes.

For a SQLAlchemy session, listeners installed on first use move the callbacks
out at ``after_commit`` and start running them at once, and drop them when
the root transaction rolls back (a rolled-back savepoint keeps them: running
an invalidation that was not needed is harmless, skipping one is not). The
data layer awaits them before the response is sent::

    await session.commit()
    await run_after_commit(session)

For any other unit of work (an object with ``info`` and ``in_transaction()``)
the data layer calls :func:`run_after_commit` after its commit and
:func:`discard_after_commit` after its rollback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = [
    "AFTER_COMMIT_KEY",
    "PENDING_INVALIDATIONS_KEY",
    "defer_until_commit",
    "discard_after_commit",
    "run_after_commit",
]

AFTER_COMMIT_KEY = "heygen_after_commit"
PENDING_INVALIDATIONS_KEY = "heygen_cache_pending"
_TASK_KEY = "heygen_after_commit_task"
_LISTENING_KEY = "heygen_after_commit_listening"
_READY_KEY = "heygen_after_commit_ready"

logger = logging.getLogger("heygen_conventions.cache")

# Strong references: the event loop keeps only weak ones to running tasks.
_RUNNING: set[asyncio.Task[None]] = set()


def in_transaction(unit_of_work: Any) -> bool:
    """True when ``unit_of_work`` has a transaction whose commit is still ahead."""
    check = getattr(unit_of_work, "in_transaction", None)
    return (
        callable(check) and bool(check()) and isinstance(getattr(unit_of_work, "info", None), dict)
    )


def defer_until_commit(
    unit_of_work: Any,
    callback: Callable[[], Awaitable[None]],
    *,
    pending: Iterable[tuple[str, str | None]] = (),
) -> None:
    """Run ``callback`` after ``unit_of_work`` commits; drop it if it rolls back.

    ``pending`` names the ``(namespace, key)`` pairs the callback invalidates
    (key None: the whole namespace); reads of them bypass the cache until then.
    """
    info: dict[str, Any] = unit_of_work.info
    info.setdefault(AFTER_COMMIT_KEY, []).append(callback)
    marks = set(pending)
    if marks:
        info.setdefault(PENDING_INVALIDATIONS_KEY, set()).update(marks)
    if not info.get(_LISTENING_KEY):
        _listen(unit_of_work)


async def run_after_commit(unit_of_work: Any) -> None:
    """Await the callbacks of the transaction that just committed."""
    info: dict[str, Any] | None = getattr(unit_of_work, "info", None)
    if info is None:
        return
    task: asyncio.Task[None] | None = info.pop(_TASK_KEY, None)
    if task is not None:
        await asyncio.shield(task)
    ready = info.pop(_READY_KEY, None)
    if ready:
        await _run_all(ready)
    if not info.get(_LISTENING_KEY):
        # Not a SQLAlchemy session: nothing moved the callbacks out at commit.
        callbacks = info.pop(AFTER_COMMIT_KEY, None)
        info.pop(PENDING_INVALIDATIONS_KEY, None)
        if callbacks:
            await _run_all(callbacks)


def discard_after_commit(unit_of_work: Any) -> None:
    """Forget the callbacks of a transaction that rolled back."""
    info: dict[str, Any] | None = getattr(unit_of_work, "info", None)
    if info is not None:
        info.pop(AFTER_COMMIT_KEY, None)
        info.pop(PENDING_INVALIDATIONS_KEY, None)


async def _run_all(callbacks: list[Callable[[], Awaitable[None]]]) -> None:
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            logger.exception("After-commit callback failed", extra={"callback": repr(callback)})


def _listen(unit_of_work: Any) -> None:
    try:
        from sqlalchemy import event
        from sqlalchemy.orm import Session, SessionTransaction
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return
    session = getattr(unit_of_work, "sync_session", unit_of_work)
    if not isinstance(session, Session):
        return

    def after_commit(session: Session) -> None:
        callbacks = session.info.pop(AFTER_COMMIT_KEY, None)
        session.info.pop(PENDING_INVALIDATIONS_KEY, None)
        if not callbacks:
            return
        try:
            # Inside `await session.commit()` this is the event loop's thread.
            loop = asyncio.get_running_loop()
        except RuntimeError:
            session.info[_READY_KEY] = callbacks
            return
        task = loop.create_task(_run_all(callbacks))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        session.info[_TASK_KEY] = task

    def after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
        if previous.parent is None:
            discard_after_commit(session)

    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_soft_rollback", after_soft_rollback)
    session.info[_LISTENING_KEY] = True
