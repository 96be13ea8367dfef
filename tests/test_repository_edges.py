"""Reads and pages off the common path: inheritance, expression columns, offsets past
64 bits, rows deleted between pages; migration file names and options."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from sqlalchemy import Date, Float, ForeignKey, Integer, MetaData, Numeric, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from heygen_conventions import (
    BadRequestError,
    Base,
    BaseRepository,
    Database,
    DBSession,
    InvalidInputError,
    PageParams,
    UUIDPrimaryKeyMixin,
    install_database,
    install_exception_handlers,
)
from heygen_conventions.db import NAMING_CONVENTION
from heygen_conventions.migrations import alembic_config, migration_filename
from tests.fixtures.db import asgi_client
from tests.test_pagination import VideoRepository, seed


class EdgeBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = Base.type_annotation_map


# Single-table inheritance: managers are rows of edge_staff with kind "manager".
class Staff(UUIDPrimaryKeyMixin, EdgeBase):
    __tablename__ = "edge_staff"
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "staff"}


class Manager(Staff):
    __mapper_args__ = {"polymorphic_identity": "manager"}


# Joined-table inheritance: an engineer is an edge_people row plus an edge_engineers row.
class Person(UUIDPrimaryKeyMixin, EdgeBase):
    __tablename__ = "edge_people"
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "person"}


class Engineer(Person):
    __tablename__ = "edge_engineers"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("edge_people.id"), primary_key=True)
    language: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_identity": "engineer"}


class StaffRepository(BaseRepository[Staff]):
    sortable_fields = ("name",)
    searchable_fields = ("name",)


class ManagerRepository(BaseRepository[Manager]):
    sortable_fields = ("name",)
    searchable_fields = ("name",)


class EngineerRepository(BaseRepository[Engineer]):
    searchable_fields = ("name",)


class Paint(UUIDPrimaryKeyMixin, EdgeBase):
    __tablename__ = "edge_paints"
    name: Mapped[str] = mapped_column(String(50))
    name_length = column_property(func.length(name))


class PaintRepository(BaseRepository[Paint]):
    sortable_fields = ("name", "name_length")


# --- exists() without a filter ------------------------------------------------


async def test_exists_without_filters_answers_instead_of_failing(sample_db: Database) -> None:
    async with sample_db.session() as session:
        repo = VideoRepository(session)
        assert await repo.exists() is False
        await seed(session, 2)
        assert await repo.exists() is True


async def test_exists_without_filters_through_a_route_is_not_a_500(sample_db: Database) -> None:
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, sample_db)

    @app.get("/any")
    async def any_video(session: DBSession) -> bool:
        return await VideoRepository(session).exists()

    async with asgi_client(app) as client:
        response = await client.get("/any")
    assert response.status_code == 200, response.text
    assert response.json() is False


# --- count() and exists() on inheritance mappings -------------------------------


async def test_count_and_exists_of_a_single_table_subclass_see_its_rows_only(
    database: Database,
) -> None:
    await database.create_all(EdgeBase.metadata)
    async with database.session() as session:
        session.add_all([Staff(name=f"staff {n}") for n in range(5)])
        session.add_all([Manager(name=f"manager {n}") for n in range(2)])
        await session.commit()
        managers = ManagerRepository(session)
        page = await managers.paginate(PageParams(per_page=10))
        assert page.total_count == 2
        assert await managers.count() == 2
        assert await managers.count(search="staff") == 0
        assert await managers.exists() is True
        await session.execute(Manager.__table__.delete().where(Staff.kind == "manager"))
        assert await managers.exists() is False


async def test_count_and_exists_of_a_joined_table_subclass_see_its_rows_only(
    database: Database,
) -> None:
    await database.create_all(EdgeBase.metadata)
    async with database.session() as session:
        session.add_all([Person(name=f"person {n}") for n in range(3)])
        session.add_all([Engineer(name=f"engineer {n}", language="py") for n in range(2)])
        await session.commit()
        engineers = EngineerRepository(session)
        assert (await engineers.paginate(PageParams())).total_count == 2
        assert await engineers.count() == 2
        assert await engineers.count(name="engineer 1") == 1
        assert await engineers.count(search="engineer") == 2
        assert await engineers.exists(name="person 1") is False


# --- A cursor of one model accepted by another --------------------------------------


async def test_a_cursor_of_another_model_on_the_same_table_is_400(database: Database) -> None:
    await database.create_all(EdgeBase.metadata)
    async with database.session() as session:
        session.add_all([Staff(name=f"staff {n}") for n in range(5)])
        session.add_all([Manager(name=f"manager {n}") for n in range(2)])
        await session.commit()
        staff_cursor = (await StaffRepository(session).paginate_cursor(limit=2)).next_cursor
        assert staff_cursor is not None
        with pytest.raises(BadRequestError, match="another listing"):
            await ManagerRepository(session).paginate_cursor(cursor=staff_cursor, limit=2)


# --- Sorting by a column_property --------------------------------------------------


async def test_sorting_by_a_column_property_is_not_a_500(database: Database) -> None:
    await database.create_all(EdgeBase.metadata)
    async with database.session() as session:
        repo = PaintRepository(session)
        session.add_all([Paint(name="x" * (n % 4 + 1)) for n in range(7)])
        await session.commit()
        rows = await repo.list()
        expected = [p.id for p in sorted(rows, key=lambda p: (p.name_length, p.id), reverse=True)]
        page = await repo.paginate(
            PageParams(per_page=10, sort_by="name_length", sort_order="desc")
        )
        assert [p.id for p in page.data] == expected
        assert [p.id for p in await repo.list(order_by="-name_length")] == expected
        seen: list[Any] = []
        cursor = None
        while True:
            keyset = await repo.paginate_cursor(cursor=cursor, limit=3, sort="-name_length")
            seen += [p.id for p in keyset.data]
            if not keyset.has_more:
                break
            cursor = keyset.next_cursor
        assert seen == expected


@pytest.mark.parametrize("write", ["create_many", "insert_many", "upsert_many"])
async def test_bulk_writes_refuse_a_value_for_an_attribute_of_no_column(
    database: Database, write: str
) -> None:
    await database.create_all(EdgeBase.metadata)
    rows: list[dict[str, Any]] = [{"name": "a"}, {"name": "bb", "name_length": 9}]
    async with database.session() as session:
        repo = PaintRepository(session)
        call = (
            repo.upsert_many(rows, on="name")
            if write == "upsert_many"
            else getattr(repo, write)(rows)
        )
        with pytest.raises(InvalidInputError) as caught:
            await call
        assert "name_length" in caught.value.message
        assert [(d.code, d.field) for d in caught.value.details] == [
            ("not_a_column", "name_length")
        ]
        assert await repo.count() == 0


# --- Going back past rows deleted meanwhile ------------------------------------------


async def test_previous_cursor_past_deleted_rows_is_not_a_dead_end(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 10)
        repo = VideoRepository(session)
        first = await repo.paginate_cursor(limit=3)
        second = await repo.paginate_cursor(cursor=first.next_cursor, limit=3)
        # Another request deletes the first page's rows.
        await repo.delete_many([v.id for v in first.data])
        back = await repo.paginate_cursor(cursor=second.previous_cursor, limit=3)
        # Nothing is left before: "previous" lands on the (new) first page,
        # not on an empty page that says there is nothing more.
        assert [v.id for v in back.data] == [v.id for v in second.data]
        assert back.has_more is True
        assert back.previous_cursor is None


# --- page * per_page past 64 bits ------------------------------------------------------


async def test_an_accepted_page_number_never_overflows_the_offset(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 3)
        repo = VideoRepository(session)
        # With a large max_per_page (an export endpoint) an accepted page number
        # puts the offset past 2**63: an empty page, not a database error.
        params = PageParams(page=10**15, per_page=10_000)
        page = await repo.paginate(params, count="none")
        assert page.data == []
        assert page.has_next is False


# --- Migrations --------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "Add a denormalised comment counter to the videos table for the feed",
        "add __internal column",
        "Añadir índice de vídeos",
    ],
)
def test_migration_filename_is_the_name_alembic_gives(tmp_path: Path, message: str) -> None:
    directory = tmp_path / "migrations"
    config = alembic_config(directory, ini_file=tmp_path / "alembic.ini")
    command.init(config, str(directory), template="generic")
    script = command.revision(config, message=message)
    assert script is not None
    assert not isinstance(script, list)
    made = Path(script.path).name
    assert made == migration_filename(message, when=_stamp_of(made))


def _stamp_of(filename: str) -> datetime:
    return datetime.strptime(filename[:19], "%Y_%m_%d_%H_%M_%S").replace(tzinfo=UTC)


async def test_run_migrations_takes_its_own_configure_options(
    database: Database, tmp_path: Path
) -> None:
    # A custom type comparison (or batch mode on PostgreSQL) is an ordinary
    # context.configure() option; run_migrations(**options) passes it on.
    directory = tmp_path / "migrations"
    config = alembic_config(directory, ini_file=tmp_path / "alembic.ini")
    command.init(config, str(directory), template="generic")
    (directory / "env.py").write_text(
        "from heygen_conventions.migrations import run_migrations\n"
        "from tests.fixtures.db import SampleBase\n"
        "run_migrations(SampleBase.metadata, compare_type=False, render_as_batch=True)\n",
        encoding="utf-8",
    )

    def revise(connection: Any) -> None:
        config.attributes["connection"] = connection
        command.revision(config, message="create sample tables", autogenerate=True)
        command.upgrade(config, "head")

    async with database.engine.begin() as connection:
        await connection.run_sync(revise)
    assert list((directory / "versions").glob("*.py"))


class Prio(enum.IntEnum):
    low = 1
    high = 2


class Color(enum.StrEnum):
    red = "red"


class Thing(UUIDPrimaryKeyMixin, EdgeBase):
    __tablename__ = "edge_things"
    name: Mapped[str] = mapped_column(String(50), default="x")
    prio: Mapped[int | None] = mapped_column(Integer, default=None)
    day: Mapped[date | None] = mapped_column(Date, default=None)
    ratio: Mapped[float | None] = mapped_column(Float, default=None)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(40, 0), default=None)


class ThingRepository(BaseRepository[Thing]):
    model = Thing


CASES = [
    ("prio", Prio.high),
    ("name", Color.red),
    ("day", datetime(2024, 1, 2, 3, 4)),
    ("ratio", Decimal("1.5")),
    ("ratio", 10**20),
    ("amount", 10**30),
    ("amount", Decimal(10**30)),
]


@pytest.mark.parametrize(("field", "value"), CASES)
@pytest.mark.parametrize("write", ["create", "create_many", "update_many"])
async def test_written_values_their_columns_take(
    database: Database, field: str, value: Any, write: str
) -> None:
    # Subclasses (IntEnum, StrEnum, datetime for a date), a Decimal for a float and
    # integers of any size for a float or numeric column pass the type checks.
    await database.create_all(EdgeBase.metadata)
    async with database.session() as session:
        repo = ThingRepository(session)
        if write == "create":
            await repo.create({field: value})
        elif write == "create_many":
            await repo.create_many([{field: value}, {field: value}])
        else:
            await repo.create({})
            await repo.update_many({field: value}, name="x")
        await session.commit()
        stored = await session.scalars(select(getattr(Thing, field)))
        expected = value.date() if isinstance(value, datetime) else value
        assert all(_same(got, expected) for got in stored)


def _same(got: Any, expected: Any) -> bool:
    if isinstance(got, Decimal | float) and isinstance(expected, int | Decimal):
        return float(got) == float(expected)  # SQLite keeps NUMERIC as a float
    return bool(got == expected)
