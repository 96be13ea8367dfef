"""Database errors on tables without a naming convention, and server states: the same
answer on SQLite and PostgreSQL (the PostgreSQL-only states run where it is configured)."""

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    text,
    update,
)

from heygen_conventions import (
    ConflictError,
    Database,
    InvalidInputError,
    ServiceUnavailableError,
    translate_db_errors,
)
from heygen_conventions.testing import isolated_database
from tests.conftest import TEST_DATABASE_URL
from tests.fixtures.db import DATABASE_BACKENDS

metadata = MetaData()  # unnamed constraints, as without a naming convention
parents = Table(
    "dbe_parents", metadata, Column("id", Integer, primary_key=True), Column("code", String(20))
)
children = Table(
    "dbe_children",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("dbe_parents.id")),
    Column("slug", String(50)),
    Column("body", Text),
    Column("seconds", Integer),
    CheckConstraint("seconds BETWEEN 1 AND 86400"),
)
Index("ix_dbe_children_lower_slug", func.lower(children.c.slug), unique=True)
Index("ix_dbe_children_body", children.c.body)


async def _filled(database: Database) -> Database:
    await database.create_all(metadata)
    async with database.transaction() as session:
        await session.execute(insert(parents).values(id=1, code="p"))
        await session.execute(insert(children).values(id=1, parent_id=1, slug="a", seconds=1))
    return database


@pytest.fixture
async def db(database: Database) -> Database:
    return await _filled(database)


@pytest.fixture(params=[backend for backend in DATABASE_BACKENDS if backend != "sqlite"])
async def postgres(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """PostgreSQL only, where it is configured: server states SQLite has no form of."""
    async with isolated_database(TEST_DATABASE_URL, cursor_secret="s" * 32) as database:
        yield await _filled(database)


async def _execute(db: Database, *statements: Any, table: Table | None = None) -> None:
    async with db.transaction() as session:
        with translate_db_errors(table=table):
            for statement in statements:
                await session.execute(statement)


async def test_changing_a_referenced_key_is_a_conflict(db: Database) -> None:
    # Other rows still reference the old key: 409 on both databases.
    with pytest.raises(ConflictError):
        await _execute(db, update(parents).values(id=2), table=parents)


async def test_an_unnamed_check_constraint_leaks_no_sql(db: Database) -> None:
    # SQLite reports an unnamed CHECK by its expression: no SQL or values in the details.
    with pytest.raises(InvalidInputError) as caught:
        await _execute(db, insert(children).values(id=2, seconds=0), table=children)
    for detail in caught.value.details:
        assert detail.field is None or " " not in detail.field, detail.field
        assert "86400" not in (detail.field or "") + detail.message


async def test_a_unique_expression_index_names_its_field(db: Database) -> None:
    # Found through the index's name on both databases.
    with pytest.raises(ConflictError) as caught:
        await _execute(db, insert(children).values(id=2, slug="A", seconds=1), table=children)
    assert [d.field for d in caught.value.details] == ["slug"]


async def test_a_value_too_big_for_an_index_is_invalid_input(db: Database) -> None:
    # PostgreSQL refuses an index row past 8191 bytes (54000): bad input, not a 500.
    # SQLite stores it.
    big = insert(children).values(id=2, seconds=1, body=os.urandom(6000).hex())
    if db.dialect_name == "postgresql":
        with pytest.raises(InvalidInputError):
            await _execute(db, big, table=children)
    else:
        await _execute(db, big, table=children)


async def test_a_lock_timeout_is_service_unavailable(postgres: Database) -> None:
    # 55P03 (lock_timeout, NOWAIT), as SQLite's busy database is (test_db_errors).
    async with postgres.transaction() as holder:
        await holder.execute(text("SELECT id FROM dbe_parents WHERE id = 1 FOR UPDATE"))
        with pytest.raises(ServiceUnavailableError):
            await _execute(
                postgres,
                text("SET LOCAL lock_timeout = '50ms'"),
                text("UPDATE dbe_parents SET code = 'q' WHERE id = 1"),
            )
        with pytest.raises(ServiceUnavailableError):
            await _execute(
                postgres, text("SELECT id FROM dbe_parents WHERE id = 1 FOR UPDATE NOWAIT")
            )


async def test_a_read_only_database_is_service_unavailable(postgres: Database) -> None:
    # 25006 (a standby after a failover), as SQLite's read-only database is.
    with pytest.raises(ServiceUnavailableError):
        await _execute(postgres, text("SET TRANSACTION READ ONLY"), insert(parents).values(id=5))
