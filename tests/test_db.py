"""Database, sessions per request, mixins and error translation, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    MetaData,
    String,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from heygen_conventions import (
    APIResponse,
    AppError,
    Base,
    ConflictError,
    Database,
    DBSession,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
    Settings,
    TimestampMixin,
    UUIDPrimaryKeyMixin,
    after_commit,
    get_db_session,
    install_database,
    install_exception_handlers,
    translate_db_errors,
    uuid7,
)
from heygen_conventions.db import NAMING_CONVENTION
from heygen_conventions.testing import isolated_database
from tests.conftest import TEST_DATABASE_URL
from tests.fixtures.db import DATABASE_BACKENDS, asgi_client
from tests.fixtures.logging import LogOutput
from tests.typecheck import mypy_strict


class Model(DeclarativeBase):
    # Base's own conventions, in a registry of its own (see tests/fixtures/db.py).
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    type_annotation_map = Base.type_annotation_map


class Owner(UUIDPrimaryKeyMixin, Model):
    __tablename__ = "owners"
    name: Mapped[str] = mapped_column(String(50))


class Clip(UUIDPrimaryKeyMixin, TimestampMixin, Model):
    __tablename__ = "clips"
    __table_args__ = (CheckConstraint("duration >= 0", name="duration_not_negative"),)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    duration: Mapped[int] = mapped_column(default=0)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("owners.id"), default=None)


@pytest.fixture
async def db(database: Database) -> Database:
    await database.create_all(Model.metadata)
    return database


class RecordResponseStart:
    """Notes when the response starts, to order it against after-commit callbacks."""

    def __init__(self, app: Any, events: list[str]) -> None:
        self.app, self.events = app, events

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.events.append(f"response {message['status']} started")
            await send(message)

        await self.app(scope, receive, recording_send)


def make_app(db: Database, events: list[str] | None = None) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    assert install_database(app, db) is db
    if events is not None:
        app.add_middleware(RecordResponseStart, events=events)

    @app.post("/clips/{slug}")
    async def create_clip(slug: str, session: DBSession) -> APIResponse[str]:
        # Added, not flushed: the INSERT (and any violation) happens at commit.
        session.add(Clip(slug=slug))
        return APIResponse.ok(slug)

    @app.post("/clips/{slug}/fail")
    async def create_then_fail(slug: str, session: DBSession) -> None:
        session.add(Clip(slug=slug))
        await session.flush()
        raise NotFoundError("nothing here")

    @app.post("/clips/{slug}/notify")
    async def create_and_notify(slug: str, session: DBSession, fail: bool = False) -> str:
        session.add(Clip(slug=slug))

        async def notify() -> None:
            assert events is not None
            # Runs after the commit: another session already sees the row.
            async with db.session() as other:
                seen = await other.scalar(select(func.count()).where(Clip.slug == slug))
            events.append(f"{slug} committed, visible={seen}")

        after_commit(session, notify)
        if fail:
            raise ConflictError("no")
        return "ok"

    @app.get("/same-session")
    async def same_session(
        one: AsyncSession = Depends(get_db_session),
        two: AsyncSession = Depends(get_db_session),
    ) -> bool:
        return one is two

    @app.post("/raw-duplicate/{slug}")
    async def raw_duplicate(slug: str, session: DBSession) -> str:
        # A hand-written statement failing inside the route is translated too.
        await session.execute(insert(Clip).values(id=uuid7(), slug=slug, duration=0))
        await session.execute(insert(Clip).values(id=uuid7(), slug=slug, duration=0))
        return "unreachable"

    return app


async def count_clips(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Clip)) or 0)


# --- Request unit of work ----------------------------------------------------


async def test_route_commits_once_it_succeeds(db: Database) -> None:
    async with asgi_client(make_app(db)) as client:
        response = await client.post("/clips/intro")
    assert response.status_code == 200, response.text
    assert await count_clips(db) == 1


async def test_failed_commit_answers_409_never_200(db: Database) -> None:
    async with asgi_client(make_app(db)) as client:
        assert (await client.post("/clips/intro")).status_code == 200
        response = await client.post("/clips/intro")
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["success"] is False
    assert body["errors"][0]["code"] == "unique_violation"
    assert body["errors"][0]["field"] == "slug"
    assert "intro" not in response.text  # the duplicate value is user data
    assert await count_clips(db) == 1


async def test_route_error_rolls_back(db: Database) -> None:
    async with asgi_client(make_app(db)) as client:
        response = await client.post("/clips/ghost/fail")
    assert response.status_code == 404, response.text
    assert await count_clips(db) == 0


async def test_database_errors_inside_the_route_are_translated(db: Database) -> None:
    async with asgi_client(make_app(db)) as client:
        response = await client.post("/raw-duplicate/twice")
    assert response.status_code == 409, response.text
    assert await count_clips(db) == 0


async def test_one_session_per_request(db: Database) -> None:
    async with asgi_client(make_app(db)) as client:
        assert (await client.get("/same-session")).json() is True


async def test_after_commit_runs_after_the_commit_and_before_the_response(db: Database) -> None:
    events: list[str] = []
    async with asgi_client(make_app(db, events)) as client:
        response = await client.post("/clips/a/notify")
        assert response.status_code == 200, response.text
        failed = await client.post("/clips/b/notify", params={"fail": "true"})
    assert failed.status_code == 409
    assert events == ["a committed, visible=1", "response 200 started", "response 409 started"]


async def test_after_commit_failure_is_logged_not_raised(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("cache down")

    ran: list[int] = []
    async with db.transaction() as session:
        session.add(Clip(slug="x"))
        after_commit(session, broken)
        after_commit(session, lambda: ran.append(1))
    assert ran == [1]
    assert await count_clips(db) == 1
    assert any(r.message == "After-commit callback failed" for r in caplog.records)


async def test_after_commit_of_an_explicit_commit_survives_a_later_rollback(db: Database) -> None:
    ran: list[str] = []

    async def commit_then_fail() -> None:
        async with db.transaction() as session:
            session.add(Clip(slug="kept"))
            after_commit(session, lambda: ran.append("kept"))
            await session.commit()
            assert ran == ["kept"]
            session.add(Clip(slug="dropped"))
            after_commit(session, lambda: ran.append("dropped"))
            raise NotFoundError()

    with pytest.raises(NotFoundError):
        await commit_then_fail()
    assert ran == ["kept"]
    assert await count_clips(db) == 1


async def test_after_commit_waits_for_the_outermost_commit_not_a_savepoint(db: Database) -> None:
    ran: list[str] = []
    async with db.session() as session:
        session.add(Clip(slug="outer"))
        await session.flush()  # the outer transaction has begun (pysqlite begins it at DML)
        async with session.begin_nested():
            session.add(Clip(slug="inner"))
            after_commit(session, lambda: ran.append("released"))
        assert ran == []  # the savepoint is released; the transaction is still open
        await session.rollback()
    assert ran == []
    assert await count_clips(db) == 0


async def test_a_savepoint_before_any_write_is_rolled_back_with_its_transaction(
    db: Database,
) -> None:
    # sqlite3 begins a transaction only at the first write: a SAVEPOINT
    # before it used to open one of its own, committed by its RELEASE.
    async with db.session() as session:
        async with session.begin_nested():
            session.add(Clip(slug="first-statement"))
        await session.rollback()
    async with db.session() as session:
        await session.scalar(select(func.count()).select_from(Clip))  # reads only, then
        async with session.begin_nested():
            session.add(Clip(slug="after-a-read"))
        async with session.begin_nested():
            session.add(Clip(slug="second-savepoint"))
        await session.rollback()
    assert await count_clips(db) == 0
    async with db.session() as session:
        async with session.begin_nested():
            session.add(Clip(slug="kept"))
        await session.commit()
    assert await count_clips(db) == 1


async def test_sqlite_writers_still_wait_for_the_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}", sqlite_busy_timeout=5)
    try:
        await db.create_all(Model.metadata)
        async with db.session() as holder, db.session() as waiter:
            async with holder.begin_nested():  # the first statement: BEGIN, then SAVEPOINT
                holder.add(Clip(slug="holder"))
            # The holder's transaction has written and holds the write lock.

            async def commit_later() -> None:
                await asyncio.sleep(0.3)
                await holder.commit()

            releasing = asyncio.create_task(commit_later())
            started = time.monotonic()
            async with waiter.begin_nested():
                waiter.add(Clip(slug="waiter"))
            await waiter.commit()  # waits (busy timeout) instead of failing "database is locked"
            waited = time.monotonic() - started
            await releasing
        assert waited >= 0.2
        assert await count_clips(db) == 2
    finally:
        await db.dispose()


async def test_in_memory_sqlite_keeps_concurrent_transactions_apart() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        await db.create_all(Model.metadata)
        written = asyncio.Event()

        async def fails_after_writing() -> None:
            async with db.transaction() as session:
                session.add(Clip(slug="rolled-back"))
                await session.flush()
                written.set()
                await asyncio.sleep(0.2)
                raise RuntimeError("boom")

        async def commits_meanwhile() -> None:
            await written.wait()
            async with db.transaction() as session:
                session.add(Clip(slug="committed"))

        both = asyncio.gather(fails_after_writing(), commits_meanwhile(), return_exceptions=True)
        failed, committed = await asyncio.wait_for(both, 5)
        assert isinstance(failed, RuntimeError)
        assert committed is None
        async with db.session() as session:
            assert list(await session.scalars(select(Clip.slug))) == ["committed"]
    finally:
        await db.dispose()


async def test_in_memory_sqlite_waits_no_longer_than_the_busy_timeout() -> None:
    db = Database("sqlite+aiosqlite://", sqlite_busy_timeout=0.2)
    try:
        await db.create_all(Model.metadata)
        async with db.session() as holder:
            holder.add(Clip(slug="held"))
            await holder.flush()  # its transaction holds the one connection until it ends
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError):
                async with db.transaction() as other:
                    await other.execute(select(1))
            assert 0.15 < time.monotonic() - started < 2
            await holder.commit()
        assert await count_clips(db) == 1
    finally:
        await db.dispose()


async def test_in_memory_sqlite_turns_pass_on_past_a_cancelled_wait() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        await db.create_all(Model.metadata)
        async with db.session() as holder:
            holder.add(Clip(slug="held"))
            await holder.flush()
            cancelled = asyncio.create_task(count_clips(db))
            queued = asyncio.create_task(count_clips(db))
            await asyncio.sleep(0.1)
            assert not cancelled.done()  # both wait their turn
            assert not queued.done()
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            await holder.commit()
        assert await asyncio.wait_for(queued, 2) == 1
        assert await asyncio.wait_for(count_clips(db), 2) == 1
    finally:
        await db.dispose()


async def test_after_commit_runs_when_a_begin_block_commits(db: Database) -> None:
    ran: list[str] = []
    async with db.session() as session:
        async with session.begin():
            session.add(Clip(slug="x"))
            after_commit(session, lambda: ran.append("committed"))
        assert ran == ["committed"]
        transaction = await session.begin()
        after_commit(session, lambda: ran.append("explicit"))
        await transaction.commit()
        assert ran == ["committed", "explicit"]

        async def fail() -> None:
            async with session.begin():
                after_commit(session, lambda: ran.append("rolled back"))
                raise ConflictError()

        with pytest.raises(ConflictError):
            await fail()
    assert ran == ["committed", "explicit"]


async def test_after_commit_refuses_a_foreign_session(db: Database) -> None:
    async with AsyncSession(db.engine) as session:
        with pytest.raises(TypeError, match="Database"):
            after_commit(session, lambda: None)


async def test_get_db_session_without_install_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/")
    async def route(session: DBSession) -> None:
        return None

    async with asgi_client(app) as client:
        with pytest.raises(RuntimeError, match="install_database"):
            await client.get("/")


async def test_lifespan_composes_and_disposes_after_the_apps_shutdown(database: Database) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("app startup")
        yield {"ready": True}
        events.append("app shutdown")

    app = FastAPI(lifespan=lifespan)
    original_dispose = database.dispose

    async def dispose() -> None:
        events.append("engine disposed")
        await original_dispose()

    database.dispose = dispose  # type: ignore[method-assign]
    install_database(app, database)
    with pytest.raises(RuntimeError, match="already"):
        install_database(app, database)

    @app.get("/")
    async def route(session: DBSession) -> int:
        return int(await session.scalar(text("SELECT 1")) or 0)

    async with asgi_client(app) as client:
        assert (await client.get("/")).json() == 1
        assert events == ["app startup"]
    assert events == ["app startup", "app shutdown", "engine disposed"]


# --- Database ----------------------------------------------------------------


async def test_transaction_commits_and_rolls_back(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Clip(slug="one"))

    async def add_two() -> None:
        async with db.transaction() as session:
            session.add(Clip(slug="two"))
            session.add(Clip(slug="one"))

    with pytest.raises(ConflictError):
        await add_two()
    assert await count_clips(db) == 1


async def test_sqlite_enforces_foreign_keys(db: Database) -> None:
    with pytest.raises(InvalidInputError) as caught:
        async with db.transaction() as session:
            session.add(Clip(slug="orphan", owner_id=uuid.uuid4()))
    assert caught.value.details[0].code == "foreign_key_violation"
    assert isinstance(caught.value.__cause__, IntegrityError)


async def test_deleting_a_referenced_row_is_a_conflict(db: Database) -> None:
    owner = Owner(name="ann")
    async with db.transaction() as session:
        session.add(owner)
        await session.flush()
        session.add(Clip(slug="c", owner_id=owner.id))
    with pytest.raises(ConflictError, match="still referenced"):
        async with db.transaction() as session:
            await session.execute(delete(Owner))


async def test_not_null_and_check_violations_are_invalid_input(db: Database) -> None:
    with pytest.raises(InvalidInputError) as not_null:
        async with db.transaction() as session:
            await session.execute(insert(Clip).values(id=uuid7(), slug=None))
    assert not_null.value.details[0].field == "slug"
    with pytest.raises(InvalidInputError) as check:
        async with db.transaction() as session:
            session.add(Clip(slug="neg", duration=-1))
    assert check.value.details[0].code == "check_violation"
    assert check.value.details[0].field == "ck_clips_duration_not_negative"


async def test_wrong_value_type_is_invalid_input(db: Database) -> None:
    with pytest.raises(InvalidInputError):
        async with db.transaction() as session:
            await session.execute(select(Clip).where(Clip.id == "not-a-uuid"))


async def test_a_nul_character_postgresql_cannot_store_is_named(db: Database) -> None:
    slug = "nul\x00byte"
    if db.dialect_name == "postgresql":
        with pytest.raises(InvalidInputError, match="cannot store") as caught:
            async with db.transaction() as session:
                session.add(Clip(slug=slug))
        assert caught.value.details[0].code == "unstorable_character"
        return
    async with db.transaction() as session:  # SQLite stores it as it is
        session.add(Clip(slug=slug))
    async with db.session() as session:
        assert await session.scalar(select(Clip.slug).where(Clip.slug == slug)) == slug


async def test_unknown_errors_pass_through(db: Database) -> None:
    with pytest.raises(Exception, match="no_such_table") as caught:
        async with db.transaction() as session:
            await session.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(caught.value, AppError)


async def test_unreachable_postgresql_is_503() -> None:
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            await db.ping()
        assert caught.value.headers["Retry-After"] == "1"
        assert isinstance(caught.value.__cause__, OSError)
    finally:
        await db.dispose()


async def test_unopenable_sqlite_is_503(tmp_path: Any) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        with pytest.raises(ServiceUnavailableError):
            await db.ping()
    finally:
        await db.dispose()
        # aiosqlite stops the worker of a failed connection without waiting for it;
        # let it finish while this loop still runs.
        workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]

        def join_workers() -> None:
            for worker in workers:
                worker.join(5)

        await asyncio.to_thread(join_workers)


async def test_503_through_a_route() -> None:
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, db)

    @app.get("/")
    async def route(session: DBSession) -> int:
        return int(await session.scalar(text("SELECT 1")) or 0)

    async with asgi_client(app) as client:
        response = await client.get("/")
    assert response.status_code == 503, response.text
    assert response.json()["errors"][0]["code"] == "service_unavailable"


async def test_ping_answers(db: Database) -> None:
    await db.ping()


def test_from_settings_uses_the_settings(echo_logger: logging.Logger) -> None:
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", database_echo=True)
    db = Database.from_settings(settings)
    assert db.dialect_name == "sqlite"
    assert db.echo is True
    assert db.engine.sync_engine.logger is echo_logger
    assert db.engine.sync_engine.hide_parameters is True
    assert "heygen_cursor_key" in db.session().info
    assert "sqlite+aiosqlite" in repr(db)
    shown = Settings(database_url="sqlite+aiosqlite://", database_hide_parameters=False)
    assert Database.from_settings(shown).engine.sync_engine.hide_parameters is False


def test_pool_settings_reach_postgresql_engines() -> None:
    db = Database(
        "postgresql+asyncpg://user:pw@127.0.0.1/x", pool_size=3, max_overflow=1, pool_timeout=2
    )
    assert db.engine.pool.size() == 3  # type: ignore[attr-defined]
    assert "pw" not in repr(db)


def test_translate_db_errors_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError), translate_db_errors():
        raise KeyError("x")


# --- Bound parameters stay out of the logs ---------------------------------------

SECRET = "sk_live_51HxTOPSECRETvalue0123456789"


class NeverCreated(UUIDPrimaryKeyMixin, Model):
    # Schema drift: the table is missing (42P01 / "no such table"), an error
    # the library does not translate, so it is answered 500 and logged.
    __tablename__ = "integrations_never_created"
    name: Mapped[str] = mapped_column(String(50))
    api_token: Mapped[str] = mapped_column(String(100))


@pytest.fixture
def echo_logger() -> Iterator[logging.Logger]:
    """The logger of engines with echo on; its level is put back after the test."""
    statements = logging.getLogger("sqlalchemy.engine.Engine.echo")
    level = statements.level
    yield statements
    statements.setLevel(level)


async def test_an_untranslated_error_logs_no_parameter_value(
    database: Database, log_output: LogOutput
) -> None:
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, database)

    @app.post("/integrations")
    async def create(session: DBSession) -> str:
        session.add(NeverCreated(name="stripe", api_token=SECRET))
        await session.flush()
        return "unreachable"

    async with asgi_client(app) as client:
        response = await client.post("/integrations")
    assert response.status_code == 500, response.text
    (line,) = log_output.find(event="Unhandled exception")
    # SQLAlchemy's message is logged, with the statement but not its values.
    assert "integrations_never_created" in orjson.dumps(line).decode()
    assert "[SQL parameters hidden due to hide_parameters=True]" in orjson.dumps(line).decode()
    assert SECRET not in log_output.text


@pytest.mark.parametrize("backend", DATABASE_BACKENDS)
async def test_opting_out_shows_the_parameters_in_errors(backend: str) -> None:
    url = TEST_DATABASE_URL if backend == "postgresql" else None
    async with isolated_database(url, hide_parameters=False) as db:
        with pytest.raises(Exception, match=SECRET) as caught:
            async with db.transaction() as session:
                session.add(NeverCreated(name="stripe", api_token=SECRET))
        assert not isinstance(caught.value, AppError)


async def echo_one_statement(database: Database) -> None:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT :token AS echoed"), {"token": SECRET})


@pytest.mark.parametrize("backend", DATABASE_BACKENDS)
async def test_echo_logs_each_statement_once_through_the_pipeline_with_parameters_hidden(
    backend: str, log_output: LogOutput, echo_logger: logging.Logger
) -> None:
    url = TEST_DATABASE_URL if backend == "postgresql" else None
    log_output.configure(level="WARNING")  # echo shows statements whatever the level
    async with isolated_database(url, echo=True) as db:
        await echo_one_statement(db)
    statements = [line for line in log_output.lines() if "echoed" in line["event"]]
    assert len(statements) == 1, log_output.text
    assert statements[0]["logger"] == "sqlalchemy.engine.Engine.echo"
    assert log_output.find(logger="sqlalchemy.engine.Engine.echo", level="info"), log_output.text
    assert "[SQL parameters hidden due to hide_parameters=True]" in log_output.text
    assert SECRET not in log_output.text
    # No handler of SQLAlchemy's own (its echo=True writes a raw copy to stdout):
    # the pipeline's root handler is the only one the records reach.
    chain: logging.Logger | None = echo_logger
    while chain is not None and chain is not logging.getLogger():
        assert chain.handlers == [], chain.name
        chain = chain.parent


async def test_echo_shows_parameters_when_asked(
    log_output: LogOutput, echo_logger: logging.Logger
) -> None:
    async with isolated_database(echo=True, hide_parameters=False) as db:
        await echo_one_statement(db)
    assert SECRET in log_output.text


async def test_engines_without_echo_stay_quiet(
    log_output: LogOutput, echo_logger: logging.Logger
) -> None:
    async with isolated_database(echo=True) as echoing, isolated_database() as quiet:
        await echo_one_statement(quiet)
        assert not [line for line in log_output.lines() if "echoed" in line["event"]]
        await echo_one_statement(echoing)
        assert [line for line in log_output.lines() if "echoed" in line["event"]]


# --- Mixins ------------------------------------------------------------------


async def test_each_row_gets_its_own_timestamps(db: Database) -> None:
    async with db.transaction() as session:
        first = Clip(slug="first")
        session.add(first)
        await session.flush()
        await asyncio.sleep(0.01)
        second = Clip(slug="second")
        session.add(second)
    async with db.session() as session:
        rows = (await session.scalars(select(Clip).order_by(Clip.created_at))).all()
    assert [c.slug for c in rows] == ["first", "second"]
    assert rows[0].created_at < rows[1].created_at
    for row in rows:
        assert row.created_at.tzinfo is UTC
        assert abs(row.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_updated_at_moves_on_orm_and_bulk_updates(db: Database) -> None:
    async with db.transaction() as session:
        clip = Clip(slug="c")
        session.add(clip)
    created, first_update = clip.created_at, clip.updated_at
    await asyncio.sleep(0.01)
    async with db.transaction() as session:
        loaded = await session.get(Clip, clip.id)
        assert loaded is not None
        loaded.duration = 5
    assert loaded.updated_at > first_update
    assert loaded.created_at == created
    await asyncio.sleep(0.01)
    async with db.transaction() as session:
        await session.execute(update(Clip).values(duration=6))
    async with db.session() as session:
        bulk = await session.get(Clip, clip.id)
    assert bulk is not None
    assert bulk.updated_at > loaded.updated_at


async def test_server_defaults_stamp_rows_inserted_outside_the_orm(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(
            text("INSERT INTO clips (id, slug, duration) VALUES (:id, 'raw', 0)"),
            {"id": uuid7().hex if db.dialect_name == "sqlite" else uuid7()},
        )
    async with db.session() as session:
        row = await session.scalar(select(Clip))
    assert row is not None
    assert row.created_at.tzinfo is UTC
    assert abs(row.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_server_default_timestamps_compare_like_bound_ones(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(
            text("INSERT INTO clips (id, slug, duration) VALUES (:id, 'raw', 0)"),
            {"id": uuid7().hex if db.dialect_name == "sqlite" else uuid7()},
        )
    async with db.transaction() as session:
        raw = await session.scalar(select(Clip).where(Clip.slug == "raw"))
        assert raw is not None
        session.add(Clip(slug="orm", created_at=raw.created_at + timedelta(milliseconds=1)))
    async with db.session() as session:

        async def slugs(*where: Any) -> list[str]:
            return list(await session.scalars(select(Clip.slug).where(*where).order_by(Clip.slug)))

        # The value read back finds its row, and orders against ORM-stamped rows.
        assert await slugs(Clip.created_at == raw.created_at) == ["raw"]
        assert await slugs(Clip.updated_at == raw.updated_at) == ["raw"]
        assert await slugs(Clip.created_at <= raw.created_at) == ["raw"]
        assert await slugs(Clip.created_at > raw.created_at) == ["orm"]
        if db.dialect_name == "sqlite":
            stored = await session.scalar(text("SELECT created_at FROM clips WHERE slug = 'raw'"))
            bound = await session.scalar(text("SELECT created_at FROM clips WHERE slug = 'orm'"))
            pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"
            assert re.fullmatch(pattern, stored), stored
            assert re.fullmatch(pattern, bound), bound


async def test_sqlite_reads_timestamps_stored_by_older_server_defaults() -> None:
    async with isolated_database(metadata=Model.metadata) as db:
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO clips (id, slug, duration, created_at, updated_at) "
                    "VALUES (:id, 'old', 0, '2024-01-15 10:30:00', '2024-01-15 10:30:00.250')"
                ),
                {"id": uuid7().hex},
            )
        async with db.session() as session:
            row = await session.scalar(select(Clip))
            assert row is not None
            assert row.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
            assert row.updated_at == datetime(2024, 1, 15, 10, 30, 0, 250_000, tzinfo=UTC)
            assert row.created_at.tzinfo is UTC
            old = select(Clip.slug).where(Clip.created_at == row.created_at)
            assert await session.scalar(old) is None  # the text differs from a bound value's
        # The README's migration note rewrites such rows as bound values are written.
        async with db.transaction() as session:
            await session.execute(
                text(
                    "UPDATE clips SET created_at = strftime('%Y-%m-%d %H:%M:%f000', created_at) "
                    "WHERE length(created_at) < 26"
                )
            )
            await session.execute(
                text(
                    "UPDATE clips SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', updated_at) "
                    "WHERE length(updated_at) < 26"
                )
            )
        async with db.session() as session:
            assert (
                await session.scalar(
                    select(Clip.slug).where(
                        Clip.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
                        Clip.updated_at == datetime(2024, 1, 15, 10, 30, 0, 250_000, tzinfo=UTC),
                    )
                )
                == "old"
            )


async def test_datetimes_round_trip_as_utc(db: Database) -> None:
    paris = timezone(timedelta(hours=2))
    moment = datetime(2024, 1, 15, 12, 30, tzinfo=paris)
    async with db.transaction() as session:
        session.add(Clip(slug="t", created_at=moment))
    async with db.session() as session:
        row = await session.scalar(select(Clip))
    assert row is not None
    assert row.created_at == moment
    assert row.created_at.tzinfo is UTC
    assert row.created_at.hour == 10


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(InvalidInputError):
        async with db.transaction() as session:
            session.add(Clip(slug="naive", created_at=datetime(2024, 1, 1)))


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    millis = ids[0].int >> 80
    assert abs(millis - datetime.now(UTC).timestamp() * 1000) < 60_000


def test_uuid7_many_continues_the_same_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    from heygen_conventions import db as db_module

    # 10,000 ids in one millisecond: the 12-bit counter runs over into the next ones.
    monkeypatch.setattr(db_module.time, "time_ns", lambda: 1_700_000_000_000 * 1_000_000)
    monkeypatch.setattr(db_module, "_uuid7_last", [0, 0])
    before = [uuid7() for _ in range(3)]
    batch = db_module.uuid7_many(10_000)
    after = [uuid7() for _ in range(3)]
    ids = before + batch + after
    assert len(batch) == 10_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {i.int >> 80 for i in ids} == {1_700_000_000_000 + n for n in range(3)}
    assert [(i.int >> 64) & 0xFFF for i in before] == [0, 1, 2]
    # Each id is an ordinary UUID: equal to (and hashed as) its own parsed text.
    assert all(uuid.UUID(str(i)) == i and hash(uuid.UUID(str(i))) == hash(i) for i in ids[:50])
    assert len({i.int & ((1 << 62) - 1) for i in batch}) == len(batch)  # random bits differ
    assert db_module.uuid7_many(0) == []


def test_uuid7_in_forked_workers_never_repeats_the_parent_s_randomness() -> None:
    from heygen_conventions import db as db_module

    uuid7()  # the parent has random bytes buffered
    # and a batch reserved milliseconds ahead of the clock
    last_of_parent = db_module.uuid7_many(50_000)[-1]
    made = []
    for _ in range(2):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(reader)
            os.write(writer, uuid7().bytes)
            os._exit(0)
        os.close(writer)
        made.append(uuid.UUID(bytes=os.read(reader, 16)))
        os.close(reader)
        os.waitpid(pid, 0)
    random_bits = [value.int & ((1 << 62) - 1) for value in made]
    assert random_bits[0] != random_bits[1]
    assert all(value > last_of_parent for value in made)  # still after the parent's ids


def test_uuid7_is_the_library_s_own_sequence_from_every_thread() -> None:
    from heygen_conventions import db as db_module

    made: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def work(n: int) -> None:
        for i in range(300):
            if i % 3:
                made[n].append(uuid7())
            else:
                made[n].extend(db_module.uuid7_many(5))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for ids in made for value in ids]
    assert len(set(every)) == len(every)
    assert all(ids == sorted(ids) for ids in made)
    assert db_module.uuid7_many(numpy_like_int(3))[0].version == 7


class numpy_like_int:
    """An integer type that is not int (it has ``__index__``)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


async def test_a_session_used_after_it_closed_raises(db: Database) -> None:
    """A background task holding the request's session fails loudly instead of
    opening a transaction that nobody commits."""
    async with db.transaction() as session:
        await session.execute(select(1))
    with pytest.raises(InvalidRequestError, match="permanently closed"):
        await session.execute(select(1))


def test_base_carries_the_naming_convention() -> None:
    assert Base.metadata.naming_convention == NAMING_CONVENTION


async def test_naming_convention_names_constraints(db: Database) -> None:
    async with db.engine.connect() as conn:

        def names(sync_conn: Any) -> dict[str, Any]:
            inspector = inspect(sync_conn)
            return {
                "uq": [u["name"] for u in inspector.get_unique_constraints("clips")],
                "fk": [f["name"] for f in inspector.get_foreign_keys("clips")],
                "ck": [c["name"] for c in inspector.get_check_constraints("clips")],
                "pk": inspector.get_pk_constraint("clips")["name"],
            }

        found = await conn.run_sync(names)
    assert found["uq"] == ["uq_clips_slug"]
    assert found["fk"] == ["fk_clips_owner_id_owners"]
    assert found["ck"] == ["ck_clips_duration_not_negative"]
    assert found["pk"] == "pk_clips"


async def test_concurrent_requests_get_separate_sessions(db: Database) -> None:
    seen: list[int] = []
    app = make_app(db)

    @app.get("/who")
    async def who(session: DBSession) -> int:
        seen.append(id(session))
        await asyncio.sleep(0.01)
        return 1

    async with asgi_client(app) as client:
        await client.get("/who")
        await client.get("/who")
    assert len(set(seen)) == 2


async def test_app_errors_are_not_translated_again(db: Database) -> None:
    with pytest.raises(NotFoundError):
        async with db.transaction():
            raise NotFoundError("kept as is")


async def test_constraint_checked_only_at_commit_is_an_error_response(db: Database) -> None:
    # PostgreSQL defers a unique constraint, SQLite a foreign key: either
    # way the statement succeeds and only COMMIT fails.
    if db.dialect_name == "postgresql":
        ddl = "CREATE TABLE deferred (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
        insert = "INSERT INTO deferred VALUES (1), (1)"
        expected = 409
    else:
        ddl = (
            "CREATE TABLE deferred"
            " (k CHAR(32) REFERENCES owners (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        insert = "INSERT INTO deferred VALUES ('missing')"
        expected = 422
    async with db.transaction() as session:
        await session.execute(text(ddl))
    app = make_app(db)

    @app.post("/deferred")
    async def deferred(session: DBSession) -> str:
        await session.execute(text(insert))
        return "looked fine until COMMIT"

    async with asgi_client(app) as client:
        response = await client.post("/deferred")
    assert response.status_code == expected, response.text
    assert "looked fine" not in response.text
    async with db.session() as session:
        assert await session.scalar(text("SELECT count(*) FROM deferred")) == 0


async def test_an_apps_yield_dependency_can_use_the_session(db: Database) -> None:
    class ClipService:
        def __init__(self, session: AsyncSession) -> None:
            self.session = session

    async def get_service(
        session: AsyncSession = Depends(get_db_session),
    ) -> AsyncIterator[ClipService]:
        yield ClipService(session)

    app = make_app(db)

    @app.post("/service/{slug}")
    async def create(slug: str, service: ClipService = Depends(get_service)) -> str:
        service.session.add(Clip(slug=slug))
        return slug

    async with asgi_client(app) as client:
        assert (await client.post("/service/a")).status_code == 200
        duplicate = await client.post("/service/a")
    assert duplicate.status_code == 409, duplicate.text
    assert await count_clips(db) == 1


async def test_create_all_takes_models_tables(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await database.create_all(Model.metadata, tables=[Owner.__table__])
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "owners" in names
    assert "clips" not in names
    # SQLAlchemy types __table__ as a FromClause: the README's call type-checks as written.
    report = mypy_strict(
        """
        from sqlalchemy import String
        from sqlalchemy.orm import Mapped, mapped_column

        from heygen_conventions import Base, Database, UUIDPrimaryKeyMixin


        class Episode(UUIDPrimaryKeyMixin, Base):
            __tablename__ = "episodes"
            title: Mapped[str] = mapped_column(String(200))


        async def create(db: Database) -> None:
            await db.create_all(tables=[Episode.__table__])
        """,
        monkeypatch,
    )
    assert report == ""


async def test_after_commit_callbacks_run_to_their_end_when_the_caller_is_cancelled(
    database: Database,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def slow() -> None:
        started.set()
        await release.wait()
        ran.append("slow")

    async def write() -> None:
        async with database.session() as session:
            after_commit(session, slow)
            after_commit(session, lambda: ran.append("next"))
            await session.commit()

    task = asyncio.create_task(write())
    await started.wait()  # committed; the callbacks are running
    task.cancel()  # the request times out
    with pytest.raises(asyncio.CancelledError):
        await task  # at once, not after the callbacks
    assert ran == []
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert ran == ["slow", "next"]  # neither cut short nor skipped


async def test_in_memory_sqlite_keeps_its_data_when_a_statement_is_cancelled() -> None:
    # The database lives in its one connection: a statement cancelled midway (a
    # timeout, a cancelled request) must not close the connection and the data with it.
    db = Database("sqlite+aiosqlite://")
    try:
        await db.create_all(Model.metadata)
        async with db.transaction() as session:
            session.add(Clip(slug="kept"))
        assert await count_clips(db) == 1

        async def slow() -> None:
            async with db.session() as session:
                await session.execute(text(SLOW_SQLITE_QUERY))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await count_clips(db) == 1
    finally:
        await db.dispose()


async def test_in_memory_sqlite_rolls_back_a_cancelled_transaction() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        await db.create_all(Model.metadata)
        async with db.transaction() as session:
            session.add(Clip(slug="kept"))

        async def write_then_hang() -> None:
            async with db.session() as session:
                session.add(Clip(slug="half-done"))
                await session.flush()
                await session.execute(text(SLOW_SQLITE_QUERY))

        task = asyncio.create_task(write_then_hang())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.session() as session:
            assert list(await session.scalars(select(Clip.slug))) == ["kept"]
            assert await session.scalar(text("PRAGMA foreign_keys")) == 1
    finally:
        await db.dispose()


# Counts to 30 million: seconds of work that a cancellation interrupts.
SLOW_SQLITE_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) "
    "SELECT count(*) FROM c"
)
