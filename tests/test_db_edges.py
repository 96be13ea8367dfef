"""The database layer off the common path: errors a route swallows on PostgreSQL,
in-memory SQLite URIs, versions under Core updates, odd migration paths, blank secrets."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import String, select, text, update
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Mapped, mapped_column

from heygen_conventions import (
    ConflictError,
    Database,
    DBSession,
    Settings,
    VersionMixin,
    install_database,
    install_exception_handlers,
    translate_db_errors,
)
from heygen_conventions.migrations import alembic_config
from tests.fixtures.db import DATABASE_BACKENDS, SampleBase, Video, asgi_client

# --- A statement error a route swallows: PostgreSQL rolls back at COMMIT ----------------


async def test_a_route_swallowing_a_database_error_never_answers_200_for_lost_writes(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE rv_items (id int PRIMARY KEY)"))
        await session.execute(text("INSERT INTO rv_items VALUES (1)"))
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, database)

    @app.post("/items")
    async def create(session: DBSession) -> str:
        await session.execute(text("INSERT INTO rv_items VALUES (2)"))
        try:  # "insert if missing": the library's 409 caught, as any AppError may be
            with translate_db_errors():
                await session.execute(text("INSERT INTO rv_items VALUES (1)"))
        except ConflictError:
            pass
        return "saved"

    async with asgi_client(app) as client:
        response = await client.post("/items")
    async with database.session() as session:
        ids = list(await session.scalars(text("SELECT id FROM rv_items ORDER BY id")))
    # SQLite keeps the transaction going after a failed statement: 200 and both rows.
    # PostgreSQL aborts it, and its COMMIT is a ROLLBACK: item 2 is gone, so a 200 lies.
    if response.status_code == 200:
        assert ids == [1, 2], f"200 answered but the route's write was rolled back: {ids}"
    else:
        assert response.status_code >= 400
        assert ids == [1]


async def test_a_savepoint_keeps_a_caught_error_recoverable(database: Database) -> None:
    # The fix must not refuse the correct pattern: the failed statement in a savepoint.
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE rv_items2 (id int PRIMARY KEY)"))
        await session.execute(text("INSERT INTO rv_items2 VALUES (1)"))
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO rv_items2 VALUES (2)"))

        async def duplicate() -> None:
            async with session.begin_nested():
                with translate_db_errors():
                    await session.execute(text("INSERT INTO rv_items2 VALUES (1)"))

        with pytest.raises(ConflictError):
            await duplicate()
        await session.execute(text("INSERT INTO rv_items2 VALUES (3)"))
    async with database.session() as session:
        ids = list(await session.scalars(text("SELECT id FROM rv_items2 ORDER BY id")))
    assert ids == [1, 2, 3]


# --- In-memory SQLite given as a URI --------------------------------------------------


async def test_a_mode_memory_uri_keeps_transactions_apart() -> None:
    url = "sqlite+aiosqlite:///file:rv_mem?mode=memory&cache=shared&uri=true"
    db = Database(url, sqlite_busy_timeout=0.5)
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (v text)"))
        holder, other = db.session(), db.session()
        await holder.execute(text("INSERT INTO t VALUES ('rolled back')"))

        async def commit_other() -> None:
            await other.execute(text("INSERT INTO t VALUES ('other')"))
            await other.commit()

        # As with sqlite+aiosqlite://, the other transaction waits its turn (and here
        # times out) rather than committing the holder's half-done work with its own.
        with pytest.raises(PoolTimeoutError):
            await asyncio.wait_for(commit_other(), 2)
        await holder.rollback()
        await holder.close()
        await other.close()
        async with db.session() as session:
            assert list(await session.scalars(text("SELECT v FROM t"))) == []
    finally:
        await db.dispose()


async def test_a_file_memory_uri_is_one_database_for_every_session() -> None:
    db = Database("sqlite+aiosqlite:///file::memory:?uri=true")
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (v text)"))
        async with db.session() as holder:
            await holder.execute(text("SELECT count(*) FROM t"))  # holds a connection

            async def read() -> list[str]:
                async with db.session() as session:
                    return list(await session.scalars(text("SELECT v FROM t")))

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.2)
            await holder.commit()
            assert await reader == []  # not "no such table": a second, empty database
    finally:
        await db.dispose()


# --- VersionMixin under Core UPDATEs ----------------------------------------------------


class Doc(VersionMixin, SampleBase):
    __tablename__ = "rv_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    archived: Mapped[bool] = mapped_column(default=False)


async def test_a_core_update_moves_the_version(database: Database) -> None:
    await database.create_all(SampleBase.metadata, tables=[Doc.__table__])
    async with database.transaction() as session:
        session.add(Doc(id=1, title="draft"))
    async with database.session() as stale_session:
        stale = await stale_session.get(Doc, 1)  # a client read version 1
        assert stale is not None
        assert stale.version == 1
        async with database.transaction() as session:  # a job archives every draft
            await session.execute(update(Doc).values(archived=True))
        async with database.session() as session:
            assert await session.scalar(select(Doc.version)) == 2
        stale.title = "edited"  # the client's edit, based on version 1
        with pytest.raises(ConflictError), translate_db_errors():
            await stale_session.commit()


async def test_orm_and_repository_updates_still_count_once(database: Database) -> None:
    await database.create_all(SampleBase.metadata)
    async with database.transaction() as session:
        video = Video(title="t", slug="s")
        session.add(video)
    async with database.transaction() as session:
        loaded = await session.get(Video, video.id)
        assert loaded is not None
        loaded.title = "u"
    assert loaded.version == 2
    from heygen_conventions import BaseRepository

    class Videos(BaseRepository[Video]):
        pass

    async with database.transaction() as session:
        assert await Videos(session).update_many({"title": "v"}, slug="s") == 1
    async with database.session() as session:
        assert await session.scalar(select(Video.version)) == 3


# --- alembic_config with a "%" in the directory ------------------------------------------


def test_alembic_config_takes_a_directory_with_a_percent_sign(tmp_path: Path) -> None:
    directory = tmp_path / "100%_migrations"
    config = alembic_config(directory, "sqlite+aiosqlite:///x.db")
    assert config.get_main_option("script_location") == str(directory)


async def test_a_rollback_after_a_caught_error_lets_the_next_transaction_commit(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE rv_items3 (id int PRIMARY KEY)"))
        await session.execute(text("INSERT INTO rv_items3 VALUES (1)"))
    async with database.transaction() as session:
        with pytest.raises(ConflictError), translate_db_errors():
            await session.execute(text("INSERT INTO rv_items3 VALUES (1)"))
        await session.rollback()
        await session.execute(text("INSERT INTO rv_items3 VALUES (2)"))
    async with database.session() as session:
        ids = list(await session.scalars(text("SELECT id FROM rv_items3 ORDER BY id")))
    assert ids == [1, 2]


class Shelf(VersionMixin, SampleBase):
    __tablename__ = "rv_shelves"
    id: Mapped[int] = mapped_column(primary_key=True)


async def test_a_core_update_from_another_versioned_table_is_not_ambiguous(
    database: Database,
) -> None:
    await database.create_all(SampleBase.metadata, tables=[Doc.__table__, Shelf.__table__])
    async with database.transaction() as session:
        session.add_all([Doc(id=1, title="d"), Shelf(id=1)])
    async with database.transaction() as session:
        await session.execute(
            update(Doc).where(Doc.id == Shelf.id).values(archived=True),
            execution_options={"synchronize_session": False},
        )
    async with database.session() as session:
        assert await session.scalar(select(Doc.version)) == 2
        assert await session.scalar(select(Shelf.version)) == 1


# SQLite stores the text: this is about asyncpg, which refuses to encode "abc" for an
# int before sending anything, leaving the transaction intact to commit.
@pytest.mark.parametrize(
    "database", [name for name in DATABASE_BACKENDS if name != "sqlite"], indirect=True
)
async def test_an_error_the_server_never_saw_does_not_refuse_the_commit(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE rv_items4 (id int)"))
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO rv_items4 VALUES (1)"))
        with suppress(Exception):
            await session.execute(text("INSERT INTO rv_items4 VALUES (:v)"), {"v": "abc"})
    async with database.session() as session:
        assert list(await session.scalars(text("SELECT id FROM rv_items4"))) == [1]


# --- Settings: a blank secret is a missing one ------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", " " * 40])
def test_a_blank_jwt_secret_is_a_missing_one(blank: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYGEN_DATABASE_URL", "postgresql+asyncpg://app:pw@db/app")
    monkeypatch.setenv("HEYGEN_JWT_SECRET", blank)
    with pytest.raises(ValueError, match="HEYGEN_JWT_SECRET must be set"):
        Settings()  # servers, environment left at its default: a deployment
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="HEYGEN_JWT_SECRET must be set"):
        Settings()
