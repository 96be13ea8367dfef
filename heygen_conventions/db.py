"""Database access: the engine and its sessions, the request's unit of work, model mixins.

``Database`` owns one async engine and its session factory. ``install_database``
puts it on a FastAPI app; ``get_db_session`` then gives each request one
session inside one transaction, committed when the route succeeds and rolled
back on any error, before the response is sent, so a failed commit answers
an error, never a 200.

Models derive from :class:`Base` (constraint names fit Alembic autogenerate)
and the mixins: :class:`UUIDPrimaryKeyMixin` (time-ordered UUIDv7 made in
Python, so bulk inserts batch), :class:`TimestampMixin` (timezone-aware UTC,
set per row) and :class:`VersionMixin` (optimistic locking).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import operator
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI
from pydantic import SecretStr
from sqlalchemy import (
    URL,
    DateTime,
    Dialect,
    FromClause,
    Integer,
    MetaData,
    Table,
    Uuid,
    event,
    func,
    make_url,
    text,
)
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column
from sqlalchemy.schema import ColumnDefault
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator
from starlette.requests import HTTPConnection

from heygen_conventions._lifespan import close_after_lifespan
from heygen_conventions._memory_sqlite import SharedConnectionPool
from heygen_conventions._sql_errors import (
    _first_attribute,
    translate_db_error,
    translate_db_errors,
)
from heygen_conventions._unit_of_work import (
    _AsyncSession,
    _SyncSession,
    after_commit,
    run_after_commit,
    unit_of_work_scope,
)
from heygen_conventions.settings import Settings

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "DBSession",
    "Database",
    "TimestampMixin",
    "UTCDateTime",
    "UUIDPrimaryKeyMixin",
    "VersionMixin",
    "after_commit",
    "get_db_session",
    "install_database",
    "uuid7",
]

logger = logging.getLogger("heygen_conventions.db")

#: Constraint names Alembic autogenerate can reproduce:
#: ``uq_videos_slug``, ``fk_videos_user_id_users``, ``ck_videos_<name>``.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_STATE_KEY = "heygen_database"
_CURSOR_KEY_INFO = "heygen_cursor_key"
# Sessions of a SQLite Database, whose connections have _SQLITE_LOWER.
_SQLITE_LOWER_INFO = "heygen_sqlite_lower"
# A Unicode lower() on the connections of a SQLite Database; SQLite's
# own lower() and LIKE fold ASCII letters only.
_SQLITE_LOWER = "heygen_lower"
# Engines with echo on log as ``sqlalchemy.engine.Engine.echo``; see Database.
_ECHO_LOGGING_NAME = "echo"


# --- UUIDv7 -----------------------------------------------------------------

_uuid7_lock = threading.Lock()
_uuid7_last = [0, 0]  # [unix ms, 12-bit counter]
_random_pool = bytearray()  # os.urandom() read 4 KiB at a time: one syscall per 512 ids
_UUID7_BITS = (0x7 << 76) | (0b10 << 62)  # version 7, RFC 9562 variant
_RAND_B = 0x3FFF_FFFF_FFFF_FFFF
# Filling a made UUID's slots directly: what UUID(int=value) ends with,
# without re-validating a value built in range (UUID refuses __setattr__).
_set_int = uuid.UUID.__dict__["int"].__set__
_set_is_safe = uuid.UUID.__dict__["is_safe"].__set__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def _uuid7_slots(count: int) -> int:
    """Reserve ``count`` consecutive (millisecond, counter) slots; return the first.

    RFC 9562 section 6.2 method 1: a 12-bit counter in rand_a keeps ids made
    in the same millisecond in creation order within the process. A slot is
    ``ms << 12 | counter``, so counting past 0xFFF borrows the next
    millisecond rather than repeat. Call with ``_uuid7_lock`` held.
    """
    now_slot = (time.time_ns() // 1_000_000) << 12
    last_slot = (_uuid7_last[0] << 12) | _uuid7_last[1]
    first = now_slot if now_slot > last_slot else last_slot + 1
    end = first + count - 1
    _uuid7_last[0], _uuid7_last[1] = end >> 12, end & 0xFFF
    return first


def _made_uuid(value: int) -> uuid.UUID:
    made = object.__new__(uuid.UUID)
    _set_int(made, value)
    _set_is_safe(made, _UNKNOWN_SAFETY)
    return made


def _uuid7_value(slot: int, rand_b: int) -> int:
    return ((slot >> 12) << 80) | ((slot & 0xFFF) << 64) | _UUID7_BITS | (rand_b & _RAND_B)


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (version 7): new rows land at the right edge of the index.

    The library's own generator on every Python version (3.14's ``uuid.uuid7``
    keeps its counter without a lock, and a shorter random part): ids one
    process makes, from any thread, single or in batches, increase.
    """
    global _random_pool
    with _uuid7_lock:
        slot = _uuid7_slots(1)
        if not _random_pool:
            _random_pool = bytearray(os.urandom(4096))
        rand_b = int.from_bytes(_random_pool[-8:])
        del _random_pool[-8:]
    return _made_uuid(_uuid7_value(slot, rand_b))


def uuid7_many(count: int) -> list[uuid.UUID]:
    """``count`` ids as :func:`uuid7` makes them, in order, for a bulk write: one
    lock and one read of random bytes for the batch instead of one per id."""
    count = operator.index(count)
    if count <= 0:
        return []
    with _uuid7_lock:
        first = _uuid7_slots(count)
    # One read of fresh random bytes for the batch, taken 8 at a time as integers.
    # The loop is _uuid7_value() and _made_uuid() inlined: keep the three alike.
    randoms = memoryview(os.urandom(8 * count)).cast("Q")
    made = object.__new__
    set_int, set_is_safe, unknown, uuid_type = _set_int, _set_is_safe, _UNKNOWN_SAFETY, uuid.UUID
    bits, rand_mask = _UUID7_BITS, _RAND_B
    ids: list[uuid.UUID] = []
    append = ids.append
    for slot, rand_b in zip(range(first, first + count), randoms, strict=True):
        new = made(uuid_type)
        set_int(new, ((slot >> 12) << 80) | ((slot & 0xFFF) << 64) | bits | (rand_b & rand_mask))
        set_is_safe(new, unknown)
        append(new)
    return ids


def _uuid7_after_fork() -> None:
    # A forked worker (gunicorn --preload, Celery prefork) would otherwise hand
    # out its parent's buffered random bytes: the same ids as its siblings. The
    # last slot stays: the child's ids still sort after the parent's so far
    # (a batch may have reserved milliseconds ahead of the clock).
    global _random_pool, _uuid7_lock
    _random_pool = bytearray()
    _uuid7_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_uuid7_after_fork)


# --- Types and declarative base ----------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    Stored as ``timestamptz`` on PostgreSQL and as UTC text on SQLite (which
    has no time zones), ``YYYY-MM-DD HH:MM:SS.ffffff``; always read back
    aware, in UTC (text without the fraction too). Naive datetimes are
    refused instead of being guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware datetime")
        value = value.astimezone(UTC)
        # SQLite compares the text: one offset (UTC) and no suffix keeps it ordered.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class utc_now(GenericFunction[datetime]):
    """The database's current time, stored as :class:`UTCDateTime` stores a value.

    ``now()`` on PostgreSQL. On SQLite, whose ``CURRENT_TIMESTAMP`` has no
    fraction, the text a bound value becomes: SQLite compares the text, and
    ``...:05`` sorts before ``...:05.000000``. Available to SQL (and to
    migration files) as ``func.heygen.utc_now()`` once the library is imported.
    """

    type = UTCDateTime()
    package = "heygen"
    name = "utc_now"
    inherit_cache = True


@compiles(utc_now)
def _compile_utc_now(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(func.now(), **kw)


@compiles(utc_now, "sqlite")
def _compile_utc_now_sqlite(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    # %f is seconds with three decimals: padded to the six UTCDateTime binds.
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


class Base(DeclarativeBase):
    """Declarative base for application models.

    Its metadata names constraints by :data:`NAMING_CONVENTION`;
    ``Mapped[datetime]`` columns are :class:`UTCDateTime` and
    ``Mapped[uuid.UUID]`` columns are native UUIDs on PostgreSQL.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), uuid.UUID: Uuid()}


class UUIDPrimaryKeyMixin:
    """``id``: a UUIDv7 primary key generated in Python.

    Generating the key client-side lets ``INSERT ... RETURNING`` batch many
    rows per statement; a server-generated key forces one statement per row.
    """

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid7, sort_order=-10)


class TimestampMixin:
    """``created_at`` / ``updated_at``: aware UTC, stamped per row.

    Each row gets its own time from a callable default (the seed's
    ``default=datetime.now(timezone.utc)`` stamped every row with the import
    time), with a server default (:class:`utc_now`) for rows inserted outside
    the ORM;
    ``updated_at`` changes on every UPDATE the ORM or a Core ``update()``
    issues, including the repository's bulk updates.
    """

    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=utc_now(), nullable=False, sort_order=90
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        default=utcnow,
        onupdate=utcnow,
        server_default=utc_now(),
        nullable=False,
        sort_order=91,
    )


class VersionMixin:
    """``version``: optimistic locking through SQLAlchemy's ``version_id_col``.

    Every UPDATE checks and increments it; an update of a row someone else
    changed meanwhile raises :class:`~heygen_conventions.ConflictError` (409).
    Clients send back the version they read; ``BaseRepository.update`` refuses
    a different one. A model that needs its own ``__mapper_args__`` sets
    ``"version_id_col"`` there itself.
    """

    version: Mapped[int] = mapped_column(Integer(), nullable=False, default=1, sort_order=92)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        column = cls.__table__.c.version  # type: ignore[attr-defined]
        if column.onupdate is None:
            # The ORM sets the next version itself; a Core or bulk UPDATE that
            # does not (``update(Model).values(...)``) moves it too, or a client
            # holding the old version would overwrite that update without a
            # conflict. Bound to the table's column: qualified in UPDATE ... FROM.
            ColumnDefault(column + 1, for_update=True)._set_parent(column)
        return {"version_id_col": column}


# --- Database ---------------------------------------------------------------


def _cursor_key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        secret = secret.encode()
    # A key of its own, so a cursor signature never doubles as a token signature.
    return hmac.new(secret, b"heygen-conventions/cursor/v1", hashlib.sha256).digest()


def _unicode_lower(value: Any) -> Any:
    # str.lower(), not casefold(): PostgreSQL's ILIKE keeps "ß" apart from "ss" too.
    return value.lower() if isinstance(value, str) else value


def _sqlite_on_connect(busy_timeout_ms: int, in_memory: bool) -> Callable[..., None]:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.create_function(_SQLITE_LOWER, 1, _unicode_lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            # SQLite ships with foreign keys off, per connection.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
            if not in_memory:
                # Readers no longer block the writer, nor the writer readers.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return on_connect


def _sqlite_in_memory(url: URL) -> bool:
    # ":memory:", and the URI forms: "file::memory:" (one database per
    # connection) and "file:name?mode=memory" (SQLAlchemy shares one connection).
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.query.get("mode") == "memory"
    )


# PostgreSQL aborts a transaction at its first failed statement, and COMMIT
# then rolls it back without an error. A route that catches a database error
# (a 409 it meant to ignore) and returns would answer 200 for writes that were
# never saved. The failure is noted on the connection; committing it raises.
_FAILED_STATEMENT_INFO = "heygen_failed_statement"
_WROTE_INFO = "heygen_wrote"
_IN_FAILED_TRANSACTION = "25P02"


def _note_failed_statement(context: ExceptionContext) -> None:
    connection = context.connection
    if (
        connection is None
        or context.is_disconnect
        or not isinstance(context.sqlalchemy_exception, DBAPIError)
        or not connection.in_transaction()
        or connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    ):
        return
    connection.info[_FAILED_STATEMENT_INFO] = True


def _forget_failed_statement(connection: Connection, *args: Any) -> None:
    # A new transaction, or back to a savepoint taken before the failure
    # (none can be taken after it): the transaction can commit again.
    connection.info.pop(_FAILED_STATEMENT_INFO, None)


def _note_write(
    connection: Connection, cursor: Any, statement: Any, parameters: Any, context: Any, many: bool
) -> None:
    # A statement that may have written (anything but a compiled SELECT): only
    # then does a rolled-back COMMIT lose something a 200 would claim.
    compiled = getattr(context, "compiled", None)
    if (
        isinstance(compiled, SQLCompiler)
        and not (compiled.isinsert or compiled.isupdate or compiled.isdelete)
        and (not compiled.isplaintext or statement.lstrip()[:6].upper() == "SELECT")
    ):
        return
    connection.info[_WROTE_INFO] = True


def _forget_writes(connection: Connection) -> None:
    connection.info.pop(_WROTE_INFO, None)
    connection.info.pop(_FAILED_STATEMENT_INFO, None)


def _track_connection(session: Session, transaction: Any, connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    connections = session.info.setdefault(_SESSION_CONNECTIONS_INFO, [])
    if connection not in connections:  # savepoints begin on the same connection
        connections.append(connection)


def _refuse_failed_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # releasing a savepoint: PostgreSQL refuses it itself
    for connection in session.info.get(_SESSION_CONNECTIONS_INFO, ()):
        if connection.closed or connection.invalidated:
            continue  # its commit fails on its own
        if not connection.info.get(_FAILED_STATEMENT_INFO):
            continue
        if not connection.info.get(_WROTE_INFO):
            continue  # nothing written: a read-only transaction loses nothing
        # Some errors never reached the server (asyncpg refusing to encode a
        # parameter): ask it, once, whether the transaction is aborted.
        try:
            connection.exec_driver_sql("SELECT 1")
        except DBAPIError as exc:
            if _first_attribute(exc, "sqlstate") != _IN_FAILED_TRANSACTION:
                raise
            raise PendingRollbackError(
                "A statement of this transaction failed, so PostgreSQL would roll the "
                "whole transaction back at COMMIT: roll back instead, or run statements "
                "whose errors are caught inside a savepoint (session.begin_nested())"
            ) from None
        connection.info.pop(_FAILED_STATEMENT_INFO, None)


def _forget_connections(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_SESSION_CONNECTIONS_INFO, None)


_SESSION_CONNECTIONS_INFO = "heygen_connections"
event.listen(_SyncSession, "after_begin", _track_connection)
event.listen(_SyncSession, "before_commit", _refuse_failed_commit)
event.listen(_SyncSession, "after_transaction_end", _forget_connections)


def _begin_before_savepoint(connection: Any, name: str) -> None:
    # sqlite3 (so aiosqlite) begins a transaction only at the first INSERT,
    # UPDATE or DELETE. A SAVEPOINT before that opens a transaction of its
    # own, which its RELEASE commits: rows the session then rolls back would
    # stay. BEGIN first makes the savepoint nested, as on other databases.
    # Locking is unchanged (a SAVEPOINT outside a transaction is a deferred
    # BEGIN too), and transactions that write before any savepoint, or use
    # none, see no extra statement.
    if not connection.connection.driver_connection.in_transaction:
        connection.exec_driver_sql("BEGIN")


class Database:
    """One database: an async engine, its session factory and its lifecycle.

    ``Database("sqlite+aiosqlite:///./app.db")`` runs embedded (foreign keys
    on, WAL, a busy timeout, savepoints nested in their transaction);
    ``Database("postgresql+asyncpg://...")`` runs on PostgreSQL with the pool
    settings given. Sessions do not expire objects on commit, so a route can
    serialise what it committed.

    ``Database("sqlite+aiosqlite://")`` keeps the database in memory, in one
    connection every session shares. Each transaction has that connection
    to itself, from its first statement to its commit or rollback, while the
    others, readers included, wait (``sqlite_busy_timeout``, then 503): code
    must not await a second session while its first is mid-transaction.
    Fine for tests and demos; a file lets readers run alongside a writer.

    Args:
        url: SQLAlchemy async URL.
        echo: Log every statement, at INFO, through the application's logging
            (the ``sqlalchemy.engine.Engine.echo`` logger), with its bound
            parameters hidden unless ``hide_parameters`` is off.
        hide_parameters: Leave bound parameters (passwords, tokens, personal
            data) out of error messages, so out of the "Unhandled exception"
            log line, and out of echoed statements. Turn it off only to debug
            locally.
        pool_size: Connections kept open (PostgreSQL).
        max_overflow: Extra connections allowed under load (PostgreSQL).
        pool_timeout: Seconds to wait for a free connection before failing
            with 503 (PostgreSQL).
        pool_recycle: Reconnect connections older than this many seconds.
        pool_pre_ping: Test each connection as it leaves the pool (costs a
            round trip per checkout; disconnects are otherwise detected on use
            and answered 503).
        connect_args: Passed to the driver, e.g. asyncpg's
            ``{"server_settings": {"search_path": "tenant_a"}}``.
        sqlite_busy_timeout: Seconds a SQLite writer waits for the lock (in
            memory: seconds a transaction waits for the others to finish).
        cursor_secret: Signs keyset-pagination cursors; see
            :meth:`from_settings`, which uses the application's secret.
        **engine_options: Anything else :func:`create_async_engine` accepts.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        echo: bool = False,
        hide_parameters: bool = True,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float | None = None,
        pool_recycle: int | None = None,
        pool_pre_ping: bool = False,
        connect_args: Mapping[str, Any] | None = None,
        sqlite_busy_timeout: float = 5.0,
        cursor_secret: str | bytes | SecretStr | None = None,
        **engine_options: Any,
    ) -> None:
        self.url = make_url(url)
        options: dict[str, Any] = {
            "hide_parameters": hide_parameters,
            "pool_pre_ping": pool_pre_ping,
            **engine_options,
        }
        if echo:
            # Not SQLAlchemy's echo=True: it adds its own stdout handler, so every
            # statement was written twice, once raw outside the log pipeline. A
            # logger of echoing engines' own, set to INFO, reaches the
            # application's handlers once and leaves other engines quiet.
            options.setdefault("logging_name", _ECHO_LOGGING_NAME)
        if connect_args:
            options["connect_args"] = dict(connect_args)
        is_sqlite = self.url.get_backend_name() == "sqlite"
        in_memory = is_sqlite and _sqlite_in_memory(self.url)
        if in_memory and "poolclass" not in options and "pool" not in options:
            # One connection holds the database: one transaction at a time on it.
            options["poolclass"] = SharedConnectionPool
            options["pool_timeout"] = sqlite_busy_timeout
        if not is_sqlite:
            pooled = {
                "pool_size": pool_size,
                "max_overflow": max_overflow,
                "pool_timeout": pool_timeout,
                "pool_recycle": pool_recycle,
            }
            options.update({k: v for k, v in pooled.items() if v is not None})
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self.echo = echo
        statements = self.engine.sync_engine.logger  # a plain Logger: SQLAlchemy's echo is off
        if echo and isinstance(statements, logging.Logger):
            statements.setLevel(min(statements.getEffectiveLevel(), logging.INFO))
        if is_sqlite:
            event.listen(
                self.engine.sync_engine,
                "connect",
                _sqlite_on_connect(int(sqlite_busy_timeout * 1000), in_memory),
            )
            event.listen(self.engine.sync_engine, "savepoint", _begin_before_savepoint)
        elif self.engine.dialect.name == "postgresql":
            sync_engine = self.engine.sync_engine
            event.listen(sync_engine, "handle_error", _note_failed_statement)
            event.listen(sync_engine, "begin", _forget_writes)
            event.listen(sync_engine, "after_cursor_execute", _note_write)
            event.listen(sync_engine, "rollback_savepoint", _forget_failed_statement)
        info: dict[str, Any] = {_SQLITE_LOWER_INFO: True} if is_sqlite else {}
        if cursor_secret:
            info[_CURSOR_KEY_INFO] = _cursor_key(cursor_secret)
        # close_resets_only=False: a closed session (the request's, used from a
        # background task after the response) raises instead of silently
        # opening a transaction nobody will commit.
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine,
            class_=_AsyncSession,
            expire_on_commit=False,
            close_resets_only=False,
            info=info,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Database:
        """A database configured from :class:`Settings`.

        Cursors are signed with ``settings.cursor_secret``, else the HMAC JWT
        secret; with neither (asymmetric JWT keys), with a per-process key
        that other instances refuse, which is logged.
        """
        options: dict[str, Any] = {
            "echo": settings.database_echo,
            "hide_parameters": settings.database_hide_parameters,
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "pool_timeout": settings.database_pool_timeout,
            "cursor_secret": settings.cursor_secret or settings.jwt_secret,
        }
        options.update(overrides)
        return cls(settings.database_url, **options)

    @property
    def dialect_name(self) -> str:
        """``"postgresql"``, ``"sqlite"``, ..."""
        return self.engine.dialect.name

    def session(self) -> AsyncSession:
        """A new session; use it as ``async with db.session() as session:`` and commit yourself."""
        return self.sessionmaker()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error.

        The unit of work outside requests (workers, scripts, tests), with the
        same error translation and after-commit callbacks as a request.
        """
        async with _unit_of_work(self.sessionmaker) as session:
            yield session

    async def create_all(
        self, metadata: MetaData | None = None, *, tables: Sequence[FromClause] | None = None
    ) -> None:
        """Create missing tables of ``metadata`` (default: :class:`Base`'s), or just ``tables``.

        ``tables`` takes models' ``__table__`` (typed ``FromClause`` by SQLAlchemy).
        For demos and tests; applications migrate with Alembic.
        """
        target = metadata or Base.metadata
        async with self.engine.begin() as connection:
            await connection.run_sync(target.create_all, cast("Sequence[Table] | None", tables))

    async def drop_all(self, metadata: MetaData | None = None) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync((metadata or Base.metadata).drop_all)

    async def ping(self) -> None:
        """Check the database answers; raises :class:`ServiceUnavailableError` when not."""
        with translate_db_errors():
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


@asynccontextmanager
async def _unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    session = factory()
    try:
        try:
            with unit_of_work_scope(session):
                yield session
            if session.in_transaction():
                await session.commit()
        except BaseException as exc:
            await _rollback_quietly(session)
            # Callbacks of an earlier explicit commit still belong to committed data.
            await run_after_commit(session)
            translated = translate_db_error(exc) if isinstance(exc, Exception) else None
            if translated is not None:
                raise translated from exc
            raise
        await run_after_commit(session)
    finally:
        await session.close()


async def _rollback_quietly(session: AsyncSession) -> None:
    try:
        await session.rollback()
    except Exception:
        # The connection is already broken; closing the session discards it.
        logger.warning("Rollback failed", exc_info=True)


# --- FastAPI integration -----------------------------------------------------


def install_database(app: FastAPI, database: Database) -> Database:
    """Register ``database`` for :func:`get_db_session`, dispose it at shutdown, and return it.

    The engine is disposed after the app's own lifespan (if any) has shut
    down, so shutdown code can still use the database.

    Raises:
        RuntimeError: A database is already installed on ``app``.
    """
    if getattr(app.state, _STATE_KEY, None) is not None:
        raise RuntimeError("install_database() was already called on this app")
    setattr(app.state, _STATE_KEY, database)
    close_after_lifespan(app, database.dispose)
    return database


def _database_of(connection: HTTPConnection) -> Database:
    database = getattr(connection.app.state, _STATE_KEY, None)
    if not isinstance(database, Database):
        raise RuntimeError("No database on this app: call install_database(app, Database(url))")
    return database


async def _request_session(connection: HTTPConnection) -> AsyncIterator[AsyncSession]:
    async with _unit_of_work(_database_of(connection).sessionmaker) as session:
        yield session


async def get_db_session(
    session: Annotated[AsyncSession, Depends(_request_session, scope="function")],
) -> AsyncSession:
    """FastAPI dependency: the request's session, in the request's one transaction.

    It commits when the route returns and rolls back when it raises, in
    both cases before the response is sent: a commit that fails (say, a
    unique violation found only at COMMIT) answers the translated error
    (409) instead of a 200 for data that was never saved. Database errors
    raised anywhere in the route are translated the same way. Every use of
    the dependency in one request shares the session.

    A route that returns an error response without raising still commits:
    raise the library's errors to roll back.
    """
    # The session-owning dependency is function-scoped: its exit (the commit)
    # runs before the response is sent. A plain ``Depends(get_db_session)``
    # in an app therefore gets that behaviour without knowing about scopes.
    return session


#: ``db: DBSession`` in a route signature is ``Depends(get_db_session)``.
DBSession = Annotated[AsyncSession, Depends(get_db_session)]


def _session_cursor_key(session: AsyncSession) -> bytes | None:
    key = session.info.get(_CURSOR_KEY_INFO)
    return key if isinstance(key, bytes) else None


def _session_has_sqlite_lower(session: AsyncSession) -> bool:
    return session.info.get(_SQLITE_LOWER_INFO) is True
