"""BaseRepository reads, writes, filters, loading and errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import enum
import gc
import itertools
import pickle
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, assert_type

import pytest
from pydantic import BaseModel
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Enum,
    Float,
    ForeignKey,
    Interval,
    MetaData,
    Numeric,
    String,
    Table,
    Time,
    Uuid,
    event,
    func,
    inspect,
    select,
    text,
    true,
)
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    mapped_column,
    reconstructor,
)

from heygen_conventions import (
    BaseRepository,
    ConflictError,
    Database,
    InvalidInputError,
    NotFoundError,
    PageParams,
    _bulk,
)
from heygen_conventions.db import NAMING_CONVENTION, UTCDateTime, uuid7
from tests.fixtures.db import (
    DATABASE_BACKENDS,
    Author,
    Comment,
    Counter,
    SampleBase,
    Tag,
    Video,
    count_queries,
)


class VideoRepository(BaseRepository[Video]):
    sortable_fields = ("created_at", "title", "duration", "status")
    searchable_fields = ("title", "slug")


class AuthorRepository(BaseRepository[Author]):
    pass


class CounterRepository(BaseRepository[Counter]):
    pass


class CommentRepository(BaseRepository[Comment]):
    pass


class TagRepository(BaseRepository[Tag]):
    pass


class DefaultsBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Ticket(DefaultsBase):
    """Values only the database knows (a server default), a column key that is not
    the attribute's name, and a load hook."""

    __table__ = Table(
        "sample_tickets",
        DefaultsBase.metadata,
        Column("id", Uuid(), primary_key=True, default=uuid7),
        Column("code", String(20), key="code_key", unique=True),
        Column("state", String(20), server_default=text("'open'"), nullable=False),
        Column("note", String(50)),
    )
    code = __table__.c.code_key
    id: Mapped[uuid.UUID]
    state: Mapped[str]
    note: Mapped[str | None]
    loaded_hook_ran = False

    @reconstructor
    def _on_load(self) -> None:
        self.loaded_hook_ran = True


class TicketRepository(BaseRepository[Ticket]):
    pass


_badge_numbers = itertools.count(1)


def _next_badge_number() -> int:
    return next(_badge_numbers)


class Badge(DefaultsBase):
    """Python defaults of the application's own: a ``uuid4`` key, a function run per row."""

    __tablename__ = "sample_badges"
    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    number: Mapped[int] = mapped_column(default=_next_badge_number)
    label: Mapped[str] = mapped_column(String(20))


class BadgeRepository(BaseRepository[Badge]):
    pass


class Shade(enum.Enum):
    light = "l"
    dark = "d"


class Paint(DefaultsBase):
    """Values a column reads back in another form than the one given (an enum by name)."""

    __tablename__ = "sample_paints"
    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid7)
    shade: Mapped[Shade] = mapped_column(Enum(Shade, name="sample_shade"), unique=True)
    finish: Mapped[Shade] = mapped_column(Enum(Shade, name="sample_shade"))
    coats: Mapped[int] = mapped_column(default=1)


class PaintRepository(BaseRepository[Paint]):
    pass


class Asset(DefaultsBase):
    """Single-table inheritance: one table, a discriminator column."""

    __tablename__ = "sample_assets"
    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid7)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50), unique=True)
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "asset"}


class Image(Asset):
    __mapper_args__ = {"polymorphic_identity": "image"}


class Clip(Asset):
    """Joined-table inheritance: a row in each of two tables."""

    __tablename__ = "sample_clips"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sample_assets.id"), primary_key=True)
    seconds: Mapped[int] = mapped_column(default=0)
    __mapper_args__ = {"polymorphic_identity": "clip"}


class AssetRepository(BaseRepository[Asset]):
    pass


class ImageRepository(BaseRepository[Image]):
    pass


class ClipRepository(BaseRepository[Clip]):
    pass


class VideoCreate(BaseModel):
    title: str
    slug: str
    status: str = "draft"
    duration: int | None = None
    author_id: uuid.UUID | None = None


class VideoUpdate(BaseModel):
    title: str | None = None
    status: str | None = None
    duration: int | None = None
    version: int | None = None


async def add_videos(session: AsyncSession, count: int, **extra: Any) -> list[Video]:
    videos = await VideoRepository(session).create_many(
        {"title": f"Video {n:03d}", "slug": f"video-{n:03d}", **extra} for n in range(count)
    )
    await session.commit()
    return videos


# --- Construction and typing --------------------------------------------------


def test_model_comes_from_the_generic_argument() -> None:
    assert VideoRepository.model is Video  # type: ignore[misc]

    class Explicit(BaseRepository[Any]):
        model = Author

    assert Explicit.model is Author


def test_a_repository_without_model_is_refused(session: AsyncSession) -> None:
    class Nothing(BaseRepository):  # type: ignore[type-arg]
        pass

    with pytest.raises(TypeError, match="no model"):
        Nothing(session)


async def test_get_by_id_is_typed_and_finds_the_row(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    created = await repo.create(VideoCreate(title="Intro", slug="intro"))
    found = await repo.get_by_id(created.id)
    assert_type(found, Video | None)
    assert found is created
    assert await repo.get_by_id(uuid.uuid4()) is None


# --- Reads --------------------------------------------------------------------


async def test_get_one_and_get_one_or_none(session: AsyncSession) -> None:
    await add_videos(session, 3)
    repo = VideoRepository(session)
    video = await repo.get_one(slug="video-001")
    assert_type(video, Video)
    assert video.title == "Video 001"
    assert await repo.get_one_or_none(slug="missing") is None
    with pytest.raises(NotFoundError, match="Video not found"):
        await repo.get_one(slug="missing")
    with pytest.raises(RuntimeError, match="more than one"):
        await repo.get_one_or_none(status="draft")


async def test_list_filters_orders_and_limits(session: AsyncSession) -> None:
    await add_videos(session, 5)
    repo = VideoRepository(session)
    await repo.update_many({"status": "published"}, Video.slug.in_(["video-001", "video-003"]))
    published = await repo.list(status="published", order_by="-title")
    assert [v.slug for v in published] == ["video-003", "video-001"]
    assert [v.slug for v in await repo.list(order_by="title", limit=2, offset=1)] == [
        "video-001",
        "video-002",
    ]
    in_list = await repo.list(slug=["video-000", "video-004"], order_by="title")
    assert [v.slug for v in in_list] == ["video-000", "video-004"]
    assert await repo.list(duration=None, status="draft", order_by=Video.title.desc(), limit=1)
    assert [v.slug for v in await repo.list(Video.title > "Video 002")] == [
        "video-003",
        "video-004",
    ]


async def test_a_list_filter_holding_none_matches_null_too(session: AsyncSession) -> None:
    await add_videos(session, 4)
    repo = VideoRepository(session)
    await repo.update_many({"duration": 5}, Video.slug.in_(["video-000", "video-001"]))
    await repo.update_many({"duration": 9}, Video.slug == "video-002")
    # video-003 has no duration (NULL): None in the list matches it, as duration=None does.
    slugs = [v.slug for v in await repo.list(duration=[None, 5], order_by="title")]
    assert slugs == ["video-000", "video-001", "video-003"]
    assert [v.slug for v in await repo.list(duration=[None], order_by="title")] == ["video-003"]
    assert await repo.count(duration=[None, 5, 9]) == 4
    assert await repo.count(duration=[]) == 0
    many = [None, *range(100, 2100)]  # past the one-parameter threshold
    assert [v.slug for v in await repo.list(duration=many)] == ["video-003"]


async def test_search_over_numbers_uuids_and_enums_reads_them_as_text(
    database: Database,
) -> None:
    # PostgreSQL has no ILIKE for integers, UUIDs or enums: they are searched as text.
    class Numbers(VideoRepository):
        searchable_fields = ("title", "duration")

    class Keys(VideoRepository):
        searchable_fields = ("id",)

    class Paints(PaintRepository):
        searchable_fields = ("shade",)

    await database.create_all(SampleBase.metadata)
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        videos = await Numbers(session).create_many(
            [{"title": f"t{n}", "slug": f"s{n}", "duration": d} for n, d in enumerate([12, 120, 7])]
        )
        await PaintRepository(session).create_many(
            [
                {"shade": Shade.light, "finish": Shade.dark},
                {"shade": Shade.dark, "finish": Shade.dark},
            ]
        )
        await session.commit()
        repo = Numbers(session)
        assert sorted(v.duration for v in await repo.list(search="12")) == [12, 120]
        key = str(videos[2].id)
        assert [v.id for v in await Keys(session).list(search=key[-12:])] == [videos[2].id]
        assert [p.shade for p in await Paints(session).list(search="LIG")] == [Shade.light]


async def test_unknown_filter_or_sort_field_is_invalid_input(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    with pytest.raises(InvalidInputError) as unknown_filter:
        await repo.list(nope=1)
    assert unknown_filter.value.details[0].field == "nope"
    with pytest.raises(InvalidInputError, match="allowed: created_at, title, duration, status"):
        await repo.list(order_by="slug")
    with pytest.raises(InvalidInputError):
        await repo.list(order_by="-__class__")


async def test_without_sortable_fields_clients_sort_by_key_and_timestamps_only(
    sample_db: Database,
) -> None:
    """Sorting by a column reveals its order even when responses leave it out."""

    class Unlisted(BaseRepository[Video]):
        default_sort = "-duration"  # the repository's own choice: any column

    async with sample_db.session() as session:
        repo = Unlisted(session)
        await repo.create_many(
            [{"title": f"t{n}", "slug": f"s{n}", "duration": n} for n in range(3)]
        )
        assert [v.duration for v in await repo.list()] == [2, 1, 0]
        for allowed in ("id", "-created_at", "updated_at"):
            assert len((await repo.paginate(PageParams(sort_by=allowed))).data) == 3
        with pytest.raises(
            InvalidInputError, match="allowed: id, created_at, updated_at"
        ) as caught:
            await repo.paginate(PageParams(sort_by="duration"))
        assert caught.value.details[0].field == "sort_by"
        with pytest.raises(InvalidInputError):
            await repo.paginate_cursor(sort="-duration")
        # Code sorts by any column with the column itself.
        listed = await repo.list(order_by=Video.duration.desc())
        assert [v.duration for v in listed] == [2, 1, 0]


async def test_a_default_sort_naming_no_column_is_a_programming_error(
    session: AsyncSession,
) -> None:
    class Broken(BaseRepository[Video]):
        default_sort = "nope"

    with pytest.raises(TypeError, match="'nope': not a column of Video"):
        await Broken(session).list()


async def test_wrong_value_type_in_a_filter_is_invalid_input(session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError):
        await VideoRepository(session).get_one_or_none(id="not-a-uuid")


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"duration": "abc"}, "Expected a number, got str"),
        ({"duration": [1, "abc"]}, "Expected a number, got str"),
        ({"duration": [*range(1_001), "abc"]}, "Expected a number, got str"),
        ({"duration": 2**70}, "Number out of range (32-bit integers)"),
        ({"duration": [1, 2**31]}, "Number out of range (32-bit integers)"),
        ({"duration": [True]}, "Expected a number, got bool"),
        ({"duration": {"a": 1}}, "Expected a number, got dict"),
        ({"title": 5}, "Expected text, got int"),
        ({"title": ["a", 5]}, "Expected text, got int"),
        ({"title": [["nested"]]}, "Expected text, got list"),
        ({"author_id": [7]}, "Expected a UUID, got int"),
        ({"id": "not-a-uuid"}, "Not a valid UUID"),
    ],
)
async def test_filter_values_of_the_wrong_type_are_422_on_every_database(
    session: AsyncSession, filters: dict[str, Any], message: str
) -> None:
    # Each failed differently before: PostgreSQL refused the comparison (500),
    # SQLite found nothing or could not bind a large integer (500).
    repo = VideoRepository(session)
    for call in (repo.count, repo.list, repo.exists):
        with pytest.raises(InvalidInputError) as raised:
            await call(**filters)
        (detail,) = raised.value.details
        field = next(iter(filters))
        assert (detail.code, detail.field, detail.message) == (
            "invalid_filter_value",
            field,
            message,
        )


async def test_filter_values_the_column_can_compare_are_accepted(session: AsyncSession) -> None:
    videos = await add_videos(session, 3, duration=7)
    repo = VideoRepository(session)
    assert await repo.count(duration=7.0) == 3
    assert await repo.count(duration=Decimal(7)) == 3
    assert await repo.count(duration=[7, None], title=[v.title for v in videos]) == 3
    # UUIDs as text, as clients send them, on SQLite too.
    assert await repo.count(id=[str(videos[0].id), videos[1].id]) == 2
    assert (await repo.get_one(id=str(videos[2].id))).id == videos[2].id
    assert await repo.count(duration=[2**31 - 1, -(2**31)]) == 0


# More values than a statement has parameters (32,767 on PostgreSQL, 32,766 on SQLite).
MANY = 33_000


async def test_filters_take_more_values_than_a_statement_has_parameters(
    sample_db: Database,
) -> None:
    async with sample_db.session() as session:
        videos = await add_videos(session, 5, duration=7)
        kept = [v.id for v in videos[1:4]]
        ids = [*kept, kept[0], None, *(uuid.uuid4() for _ in range(MANY))]
        repo = VideoRepository(session)
        with count_queries(sample_db) as log:
            assert await repo.count(id=ids) == 3
        # One parameter for the whole list, whatever the database's limit.
        assert len(log.statements) == 1
        assert ("json_each" if sample_db.dialect_name == "sqlite" else "ANY") in log.statements[0]
        assert [v.id for v in await repo.list(id=ids, order_by="title")] == kept
        assert await repo.exists(id=set(ids))
        assert (await repo.paginate(PageParams(per_page=2), id=ids)).total_count == 3
        assert len((await repo.paginate_cursor(limit=5, id=tuple(ids))).data) == 3
        slugs = [f"video-{n:03d}" for n in (0, 4)] + [f"absent-{n}" for n in range(MANY)]
        assert await repo.update_many({"status": "picked"}, slug=slugs) == 2
        assert await repo.count(status="picked") == 2
        assert await repo.count(duration=[7, *range(100, 100 + MANY)]) == 5
        assert await repo.delete_many(ids) == 3
        await session.commit()
    async with sample_db.session() as session:
        assert await VideoRepository(session).count() == 2


async def test_a_long_list_with_a_bad_value_is_invalid_input(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    with pytest.raises(InvalidInputError):
        await repo.count(id=[uuid.uuid4() for _ in range(2_000)] + ["not-a-uuid"])
    with pytest.raises(InvalidInputError):
        await repo.count(slug=["a"] * 2_000 + [{"not": "text"}])


class TypesBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Measure(TypesBase):
    """A column of each type a long value list binds as one parameter, and an enum."""

    __tablename__ = "sample_measures"
    id: Mapped[int] = mapped_column(primary_key=True)
    ratio: Mapped[float | None] = mapped_column(Float)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    day: Mapped[date | None] = mapped_column(Date)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    span: Mapped[timedelta | None] = mapped_column(Interval)
    clock: Mapped[time | None] = mapped_column(Time)
    mood: Mapped[str | None] = mapped_column(Enum("calm", "busy", name="sample_mood"))


class MeasureRepository(BaseRepository[Measure]):
    pass


async def test_long_value_lists_match_the_rows_short_ones_match(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await database.create_all(TypesBase.metadata)
    rows: list[dict[str, Any]] = [
        {
            "ratio": 0.1 + 0.2,
            "amount": Decimal("1.50"),
            "day": date(2024, 1, 1),
            "at": datetime(2024, 1, 1, 12, 30, 45, 123456, tzinfo=UTC),
            "flag": True,
            "span": timedelta(seconds=5),
            "clock": time(1, 2, 3, 4),
            "mood": "calm",
        },
        {
            "ratio": float("inf"),
            "amount": Decimal("2"),
            "day": date(2024, 1, 2),
            "at": datetime(2024, 1, 2, tzinfo=UTC),
            "flag": False,
            "span": timedelta(days=1),
            "clock": time(4, 5, 6),
            "mood": "busy",
        },
        {"ratio": -1.0},
    ]
    asked: dict[str, list[Any]] = {key: [row.get(key) for row in rows] for key in rows[0]}
    asked["ratio"] += [float("nan"), float("-inf")]
    asked["at"] = [  # the same instants, in another zone
        value.astimezone(timezone(timedelta(hours=-5))) if value else None for value in asked["at"]
    ]
    async with database.session() as session:
        measures = MeasureRepository(session)
        await measures.create_many(rows)
        short = {field: await measures.count(**{field: values}) for field, values in asked.items()}
        monkeypatch.setattr(_bulk, "IN_LIST_MAX", 0)  # every list takes the long path
        long = {field: await measures.count(**{field: values}) for field, values in asked.items()}
    # Two rows by value; the third by its NULLs (None is in those lists) or its ratio.
    assert short == dict.fromkeys(asked, 3)
    assert long == short


def test_too_many_distinct_values_for_an_enum_column_is_invalid_input() -> None:
    # Enums are not sent as one parameter: past the parameter limit they are refused.
    values = ["calm", "busy"] * 20_000
    for dialect in ("postgresql", "sqlite"):
        assert _bulk.in_values(dialect, Measure.mood, values) is not None
        with pytest.raises(InvalidInputError) as caught:
            _bulk.in_values(
                dialect, Measure.mood, [str(n) for n in range(_bulk.MAX_PARAMETERS + 1)]
            )
        assert caught.value.details[0].field == "mood"


async def test_count_and_exists(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await add_videos(session, 4)
        repo = VideoRepository(session)
        assert await repo.count() == 4
        assert await repo.count(Video.title >= "Video 002") == 2
        assert await repo.count(search="video-00") == 4
        with count_queries(sample_db) as log:
            assert await repo.exists(slug="video-002") is True
            assert await repo.exists(slug="nope") is False
        assert all("EXISTS" in statement.upper() for statement in log.statements)
        assert all("COUNT" not in statement.upper() for statement in log.statements)


async def test_stream_walks_the_table_in_batches(sample_db: Database) -> None:
    async with sample_db.session() as session:
        videos = await add_videos(session, 25)
        repo = VideoRepository(session)
        with count_queries(sample_db) as log:
            streamed = [v.id async for v in repo.stream(batch_size=10)]
        assert streamed == sorted(v.id for v in videos)
        assert log.count == 3
        assert [v.slug async for v in repo.stream(slug=["video-003", "video-007"])] == [
            "video-003",
            "video-007",
        ]


async def test_search_escapes_like_wildcards(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    for title in ("100% real", "1000 real", "snake_case", "snakeXcase", "back\\slash"):
        await repo.create({"title": title, "slug": title.replace(" ", "-")})
    assert [v.title for v in await repo.list(search="100%")] == ["100% real"]
    assert [v.title for v in await repo.list(search="e_c")] == ["snake_case"]
    assert [v.title for v in await repo.list(search="K\\S")] == ["back\\slash"]
    assert len(await repo.list(search="REAL")) == 2  # case-insensitive
    assert len(await repo.list(search="   ")) == 5
    with pytest.raises(InvalidInputError, match="Search is not supported"):
        await AuthorRepository(session).list(search="x")


async def test_search_ignores_case_beyond_ascii_on_every_database(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    titles = ("École", "MÜNCHEN", "Größe 100%", "größe 1000", "Ärger_Ü", "ÄrgerXü", "Ö\\ö")
    for n, title in enumerate(titles):
        await repo.create({"title": title, "slug": f"s-{n}"})

    async def found(text: str) -> list[str]:
        return sorted(v.title for v in await repo.list(search=text))

    assert await found("école") == ["École"]
    assert await found("ÉCOLE") == ["École"]
    assert await found("ecole") == []  # case only: accents still count, as in PostgreSQL
    assert await found("münchen") == ["MÜNCHEN"]
    assert await found("gröSSe") == []  # no case folding of ß to ss, as in PostgreSQL
    assert await found("GRÖßE") == ["Größe 100%", "größe 1000"]
    # LIKE wildcards and the escape character still match only themselves.
    assert await found("GRÖßE 100%") == ["Größe 100%"]
    assert await found("ärger_ü") == ["Ärger_Ü"]
    assert await found("ö\\Ö") == ["Ö\\ö"]
    assert await repo.count(search="Ä") == 2


# --- Relationship loading ---------------------------------------------------------


async def seed_with_relations(session: AsyncSession, videos: int) -> None:
    author = await AuthorRepository(session).create({"name": f"author-{videos}"})
    tag = Tag(name=f"tag-{videos}")
    session.add(tag)
    for n in range(videos):
        video = await VideoRepository(session).create(
            {"title": f"T{n}", "slug": f"s-{videos}-{n}", "author_id": author.id}
        )
        session.add_all(
            [Comment(body="a", video_id=video.id), Comment(body="b", video_id=video.id)]
        )
        video.tags.append(tag)
    await session.commit()


async def test_unrequested_relationships_raise_instead_of_lazy_loading(
    sample_db: Database,
) -> None:
    async with sample_db.session() as session:
        await seed_with_relations(session, 2)
    async with sample_db.session() as session:
        videos = await VideoRepository(session).list()
        with pytest.raises(InvalidRequestError, match=r"lazy=.raise."):
            _ = videos[0].author
        with pytest.raises(InvalidRequestError, match=r"lazy=.raise."):
            _ = videos[0].comments


async def test_list_with_relations_costs_the_same_queries_for_any_size(
    sample_db: Database,
) -> None:
    counts = []
    for size in (2, 12):
        async with sample_db.session() as session:
            await seed_with_relations(session, size)
        async with sample_db.session() as session:
            repo = VideoRepository(session)
            author = await AuthorRepository(session).get_one(name=f"author-{size}")
            with count_queries(sample_db) as log:
                videos = await repo.list(author_id=author.id, load=("author", "comments", "tags"))
                assert len(videos) == size
                assert all(v.author is not None and v.author.name == author.name for v in videos)
                assert all(len(v.comments) == 2 and len(v.tags) == 1 for v in videos)
            counts.append(log.count)
    # One query for the videos joined to their author, one per collection.
    assert counts == [3, 3]


async def test_nested_and_attribute_loads(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed_with_relations(session, 2)
    async with sample_db.session() as session:
        comment = (await CommentRepository(session).list(load=("video.author",), limit=1))[0]
        assert comment.video.author is not None
        video = await VideoRepository(session).get_one(
            slug="s-2-0", load=[Video.comments, Video.author]
        )
        assert {c.body for c in video.comments} == {"a", "b"}
        with pytest.raises(ValueError, match="no relationship"):
            await VideoRepository(session).list(load=("nope",))
        with pytest.raises(ValueError, match="not a relationship"):
            await VideoRepository(session).list(load=(Video.title,))


# --- Writes -------------------------------------------------------------------


async def test_create_from_pydantic_and_mapping(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    first = await repo.create(VideoCreate(title="One", slug="one", duration=3))
    second = await repo.create({"title": "Two", "slug": "two"})
    assert first.id.version == 7
    assert second.id > first.id
    assert first.version == 1
    assert first.status == "draft"
    # A new row's collections are known to be empty: no lazy load needed.
    assert first.comments == []
    assert first.tags == []
    await session.commit()
    assert await repo.count() == 2


async def test_create_can_load_relationships(session: AsyncSession) -> None:
    author = await AuthorRepository(session).create({"name": "ann"})
    video = await VideoRepository(session).create(
        {"title": "t", "slug": "t", "author_id": author.id}, load=("author",)
    )
    assert video.author is author


async def test_create_with_missing_required_field_is_invalid_input(session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await VideoRepository(session).create({"title": "no slug"})
    assert caught.value.details[0].field == "slug"


async def test_create_rejects_unknown_fields(session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError, match="Unknown field"):
        await VideoRepository(session).create({"title": "t", "slug": "s", "colour": "red"})
    with pytest.raises(TypeError):
        await VideoRepository(session).create(["not", "a", "mapping"])  # type: ignore[arg-type]


async def test_duplicate_is_a_conflict_and_nothing_is_half_written(sample_db: Database) -> None:
    async def create_batch() -> None:
        async with sample_db.transaction() as session:
            repo = VideoRepository(session)
            await repo.create({"title": "first", "slug": "first"})
            await repo.create_many([{"title": "a", "slug": "same"}, {"title": "b", "slug": "same"}])

    with pytest.raises(ConflictError) as caught:
        await create_batch()
    assert caught.value.details[0].field == "slug"
    async with sample_db.session() as session:
        assert await VideoRepository(session).count() == 0


async def test_create_many_batches_and_returns_rows_in_order(sample_db: Database) -> None:
    class SmallBatches(VideoRepository):
        batch_size = 20

    async with sample_db.session() as session:
        repo = SmallBatches(session)
        with count_queries(sample_db) as log:
            videos = await repo.create_many(
                VideoCreate(title=f"V{n}", slug=f"v-{n}", duration=n) for n in range(50)
            )
            await session.flush()  # nothing left to write: the rows are already in
        assert log.count == 3  # one statement per batch of 20
        assert [v.slug for v in videos] == [f"v-{n}" for n in range(50)]
        assert all(v.version == 1 and v.created_at is not None for v in videos)
        assert [v.id for v in videos] == sorted(v.id for v in videos)
        assert videos[0].comments == []
        videos[0].title = "changed"  # the rows are live in the session
        await session.commit()
    async with sample_db.session() as session:
        repo = SmallBatches(session)
        assert await repo.count() == 50
        stored = await repo.get_one(slug="v-0")
        assert stored.title == "changed"
        assert stored.created_at == videos[0].created_at
        assert await repo.create_many([]) == []


async def test_create_many_gives_each_row_its_own_defaults(sample_db: Database) -> None:
    given = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    started = datetime.now(UTC)
    async with sample_db.session() as session:
        videos = await VideoRepository(session).create_many(
            [{"title": f"t{n}", "slug": f"s{n}"} for n in range(3)]
            + [{"title": "dated", "slug": "dated", "created_at": given}]
        )
        await session.commit()
    finished = datetime.now(UTC)
    fresh, dated = videos[:3], videos[3]
    # A new row's two timestamps are one instant; rows follow one another in time and key.
    assert all(v.created_at == v.updated_at for v in fresh)
    assert all(started <= v.created_at <= finished for v in fresh)
    assert [v.created_at for v in videos[:3]] == sorted(v.created_at for v in fresh)
    assert [v.id for v in videos] == sorted(v.id for v in videos)
    assert dated.created_at == given
    assert started <= dated.updated_at <= finished
    async with sample_db.session() as session:
        stored = {v.slug: v for v in await VideoRepository(session).list()}
    assert {slug: (v.id, v.created_at, v.updated_at) for slug, v in stored.items()} == {
        v.slug: (v.id, v.created_at, v.updated_at) for v in videos
    }


async def test_create_many_runs_the_application_s_own_defaults_per_row(
    database: Database,
) -> None:
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        repo = BadgeRepository(session)
        own_key = uuid.uuid4()
        badges = await repo.create_many(
            [{"label": "a"}, {"label": "b"}, {"label": "c", "id": own_key}]
        )
        numbers = [b.number for b in badges]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        assert all(b.id.version == 4 for b in badges)
        assert len({b.id for b in badges}) == 3
        assert badges[2].id == own_key
        with count_queries(database) as log:
            assert [await session.get(Badge, b.id) for b in badges] == badges
        assert log.count == 0  # held in the session
        await session.commit()
    async with database.session() as session:
        stored = await BadgeRepository(session).list(order_by=Badge.label)
        assert [(b.id, b.number) for b in stored] == [(b.id, b.number) for b in badges]


@pytest.mark.parametrize("returning", [True, False])
async def test_upsert_rows_stored_alike_in_two_statements_are_refused(
    database: Database, returning: bool
) -> None:
    # "light" and Shade.light are one row. In batches of one row the first statement
    # inserts it and the second updates it: refused as within one statement, rather
    # than two objects for one row, or one holding values the database does not.
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        repo = PaintRepository(session)
        repo.batch_size = 1
        rows: list[dict[str, Any]] = [
            {"shade": "light", "finish": Shade.dark},
            {"shade": Shade.light, "finish": Shade.light, "coats": 2},
        ]
        with pytest.raises(InvalidInputError) as caught:
            await repo.upsert_many(rows, on="shade", returning=returning)
        assert caught.value.details[0].field == "shade"
        await session.rollback()
        assert await session.scalar(select(func.count()).select_from(Paint)) == 0


class TextKeyBase(DeclarativeBase):
    pass


class Doc(TextKeyBase):
    """A UUID key read back as text (as_uuid=False), made by uuid4 in Python."""

    __tablename__ = "sample_text_key_docs"
    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(20))


class DocRepository(BaseRepository[Doc]):
    pass


# SQLite's Uuid(as_uuid=False) binds text only: a uuid4() key cannot be sent there.
@pytest.mark.parametrize(
    "database", [name for name in DATABASE_BACKENDS if name != "sqlite"], indirect=True
)
async def test_create_many_keys_made_in_python_take_the_column_s_type(
    database: Database,
) -> None:
    await database.create_all(TextKeyBase.metadata)
    async with database.session() as session:
        docs = await DocRepository(session).create_many([{"name": "a"}, {"name": "b"}])
        assert [type(doc.id) for doc in docs] == [str, str]
        for doc in docs:
            assert await session.get(Doc, doc.id) is doc
            assert await session.get(Doc, str(doc.id)) is doc


class NoCaseBase(DeclarativeBase):
    pass


class Handle(NoCaseBase):
    """A name unique whatever its case (SQLite's NOCASE collation)."""

    __tablename__ = "sample_nocase_handles"
    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(20, collation="NOCASE"), unique=True)
    note: Mapped[str | None] = mapped_column(String(20))


class HandleRepository(BaseRepository[Handle]):
    pass


# NOCASE is SQLite's collation; PostgreSQL refuses such a statement itself (21000).
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_upsert_rows_one_row_under_two_names_in_one_statement(database: Database) -> None:
    # "Ann" and "ann" are one row to the unique index. SQLite writes it twice in one
    # statement; overwriting the name, RETURNING gives a different name each time,
    # so only the primary key tells: refused as other rows stored alike are.
    await database.create_all(NoCaseBase.metadata)
    async with database.session() as session:
        repo = HandleRepository(session)
        rows = [{"name": "Ann", "note": "first"}, {"name": "ann", "note": "second"}]
        with pytest.raises(InvalidInputError) as caught:
            await repo.upsert_many(rows, on="name", update=["name", "note"])
        assert caught.value.details[0].field == "name"


async def test_create_many_reads_back_keys_the_database_makes(session: AsyncSession) -> None:
    repo = CounterRepository(session)
    counters = await repo.create_many([{"name": "a"}, {"name": "b", "value": 5}])
    assert [c.name for c in counters] == ["a", "b"]
    assert all(isinstance(c.id, int) for c in counters)
    assert counters[1].value == 5
    assert counters[0].value == 0
    assert counters[0] is await repo.get_by_id(counters[0].id)


@pytest.mark.parametrize("attach", ["as loaded", "session internals", "Session.add"])
async def test_create_many_objects_are_in_the_identity_map(
    sample_db: Database, attach: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What runs should a SQLAlchemy release drop one fast path, then the other.
    if attach != "as loaded":
        monkeypatch.setattr(_bulk, "_ATTACH_AS_LOADED", False)
    if attach == "Session.add":
        monkeypatch.setattr(_bulk, "_ATTACH_DETACHED", None)
    async with sample_db.session() as session:
        loaded: list[Any] = []
        event.listen(
            session.sync_session, "loaded_as_persistent", lambda _, obj: loaded.append(obj)
        )
        repo = VideoRepository(session)
        with count_queries(sample_db) as log:
            videos = await repo.create_many(
                [{"title": "a", "slug": "a"}, {"title": "b", "slug": "b"}]
            )
            assert loaded == videos  # as for objects a query loads, on every path
            assert await session.get(Video, videos[1].id) is videos[1]
            assert await repo.get_by_id(videos[0].id) is videos[0]
        # Every value was known before the INSERT: nothing is read back.
        assert log.count == 1
        assert "RETURNING" not in log.statements[0].upper()
        assert all(inspect(video).persistent for video in videos)
        assert not session.dirty
        assert not session.new
        videos[1].title = "b, changed"  # a change is tracked and flushed like any other
        assert list(session.dirty) == [videos[1]]
        await session.flush()
        assert (await repo.get_one(slug="b")).title == "b, changed"
        comment = Comment(body="first", video_id=videos[0].id)
        session.add(comment)
        await session.flush()
        await session.refresh(videos[0], attribute_names=["comments"])
        assert videos[0].comments == [comment]
        await session.commit()


@pytest.mark.parametrize("write", ["create_many", "upsert_many"])
async def test_bulk_written_objects_own_their_values(session: AsyncSession, write: str) -> None:
    # The objects are built from the rows the repository made, never from the
    # caller's dicts: changing or reusing those afterwards changes no object.
    rows: list[dict[str, Any]] = [{"title": "a", "slug": "a"}, {"title": "b", "slug": "b"}]
    repo = VideoRepository(session)
    if write == "create_many":
        videos = await repo.create_many(rows)
    else:
        videos = (await repo.upsert_many(rows, on="slug")).items
    rows[0]["title"] = "changed"
    rows[1].clear()
    assert rows[0] == {"title": "changed", "slug": "a"}
    assert [(v.title, v.slug) for v in videos] == [("a", "a"), ("b", "b")]
    # Plain ORM objects: tracked, expired and refreshed, copied and detached as any other.
    videos[0].title = "a2"
    assert session.is_modified(videos[0])
    assert not session.is_modified(videos[1])
    session.expire(videos[1])
    await session.refresh(videos[1])
    assert videos[1].title == "b"
    copy = pickle.loads(pickle.dumps(videos[1]))  # noqa: S301 - our own bytes
    assert (copy.id, copy.title, copy.created_at) == (videos[1].id, "b", videos[1].created_at)
    await session.flush()
    session.expunge(videos[0])
    assert inspect(videos[0]).detached
    assert (await repo.get_one(slug="a")).title == "a2"


@pytest.mark.parametrize("write", ["create_many", "insert_many", "upsert_many"])
async def test_bulk_writes_flush_pending_objects_first(session: AsyncSession, write: str) -> None:
    # A parent added but not flushed yet: rows referring to it must find it
    # (the session autoflushes before Core statements too, since SQLAlchemy 2.0.16).
    video = Video(id=uuid7(), title="parent", slug="parent")
    session.add(video)
    repo = CommentRepository(session)
    rows = [{"body": "first", "video_id": video.id}, {"body": "second", "video_id": video.id}]
    if write == "create_many":
        await repo.create_many(rows)
    elif write == "insert_many":
        assert await repo.insert_many(rows) == 2
    else:
        await repo.upsert_many([{**row, "id": uuid7()} for row in rows], on="id")
    assert not session.new
    assert await repo.count(video_id=video.id) == 2


async def test_bulk_writes_tell_the_session_which_model_they_write(session: AsyncSession) -> None:
    # Core statements into the table: do_orm_execute listeners and Session.get_bind()
    # (routing by model) still learn the model, as they do for the ORM's own statements.
    models: list[Any] = []

    def record(state: ORMExecuteState) -> None:
        if state.is_insert:
            models.append(state.bind_mapper)

    event.listen(session.sync_session, "do_orm_execute", record)
    repo = VideoRepository(session)
    await repo.create_many([{"title": "a", "slug": "a"}])
    await repo.insert_many([{"title": "b", "slug": "b"}])
    await repo.upsert_many([{"title": "c", "slug": "a"}], on="slug")
    assert models == [inspect(Video)] * 3


class VideoDraft(BaseModel):
    title: str
    slug: str
    status: str | None = None  # unset: the column's default, as with create()
    duration: int | None = None


async def test_bulk_inserts_take_none_for_a_defaulted_column_as_create_does(
    session: AsyncSession,
) -> None:
    repo = VideoRepository(session)
    one = await repo.create(VideoDraft(title="a", slug="a"))
    many = await repo.create_many(
        [VideoDraft(title="b", slug="b"), {"title": "c", "slug": "c", "status": None}]
    )
    assert await repo.insert_many([VideoDraft(title="d", slug="d", duration=5)]) == 1
    assert [one.status, *(v.status for v in many)] == ["draft", "draft", "draft"]
    assert many[0].duration is None  # nullable: None is NULL, default or not
    stored = {v.slug: (v.status, v.duration) for v in await repo.list()}
    assert stored == {
        "a": ("draft", None),
        "b": ("draft", None),
        "c": ("draft", None),
        "d": ("draft", 5),
    }


async def test_bulk_writes_leave_the_garbage_collector_as_they_found_it(
    session: AsyncSession,
) -> None:
    # Bulk writes hold the collector off while they build rows and objects;
    # it must be back on afterwards, on success and on refused input alike,
    # and stay off for an application that turned it off itself.
    repo = VideoRepository(session)
    assert gc.isenabled()
    await repo.create_many([{"title": "a", "slug": "a"}])
    assert gc.isenabled()
    await repo.upsert_many([{"title": "b", "slug": "a"}, {"title": "c", "slug": "c"}], on="slug")
    assert gc.isenabled()
    with pytest.raises(InvalidInputError, match="Unknown field"):
        await repo.create_many([{"title": "d", "slug": "d", "nope": 1}])
    assert gc.isenabled()
    gc.disable()
    try:
        await repo.create_many([{"title": "e", "slug": "e"}])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert [v.title for v in await repo.list(order_by=Video.slug)] == ["b", "c", "e"]

    # A generator of rows runs with the collector on: its own garbage is collected.
    seen: list[bool] = []

    def rows(prefix: str) -> Iterator[dict[str, str]]:
        for n in range(3):
            seen.append(gc.isenabled())
            yield {"title": prefix, "slug": f"{prefix}{n}"}

    await repo.create_many(rows("g"))
    await repo.upsert_many(rows("h"), on="slug")
    assert seen == [True] * 6


async def test_bulk_objects_roll_back_with_their_savepoint(sample_db: Database) -> None:
    # A savepoint rolled back takes its rows away: their objects must leave the
    # identity map (as create()'s do), and a row an upsert changed reads as stored.
    async with sample_db.session() as session:
        repo = VideoRepository(session)
        kept = await repo.create({"title": "kept", "slug": "kept"})
        await session.commit()
        savepoint = await session.begin_nested()
        made = await repo.create_many([{"title": "gone", "slug": "gone"}])
        upserted = await repo.upsert_many(
            [{"title": "changed", "slug": "kept"}, {"title": "new", "slug": "new"}], on="slug"
        )
        assert upserted.items[0] is kept
        await savepoint.rollback()
        assert inspect(made[0]).transient
        assert inspect(upserted.items[1]).transient
        assert await session.get(Video, made[0].id) is None
        assert await session.get(Video, upserted.items[1].id) is None
        assert [(v.slug, v.title, v.version) for v in await repo.list()] == [("kept", "kept", 1)]
        assert kept.title == "kept"


async def test_database_made_keys_roll_back_with_their_savepoint(session: AsyncSession) -> None:
    # SQLite gives a rolled-back row's key to the next row: an object left behind for
    # it was returned in place of the new row's.
    repo = CounterRepository(session)
    savepoint = await session.begin_nested()
    (gone,) = await repo.create_many([{"name": "gone", "value": 7}])
    await savepoint.rollback()
    assert inspect(gone).transient
    (made,) = await repo.create_many([{"name": "made", "value": 1}])
    assert made is not gone
    assert (made.name, made.value) == ("made", 1)


async def test_bulk_writes_of_single_table_subclasses_set_their_discriminator(
    database: Database,
) -> None:
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        images = await ImageRepository(session).create_many([{"name": "a"}])
        assert await ImageRepository(session).insert_many([{"name": "b"}]) == 1
        result = await ImageRepository(session).upsert_many(
            [{"name": "b"}, {"name": "c"}], on="name"
        )
        assert (result.created, result.updated) == (1, 1)
        assert images[0].kind == "image"
        await session.commit()
    async with database.session() as session:
        loaded = await AssetRepository(session).list(order_by=Asset.name)
        assert [(type(a), a.kind, a.name) for a in loaded] == [
            (Image, "image", "a"),
            (Image, "image", "b"),
            (Image, "image", "c"),
        ]
        # A row spanning two tables (joined inheritance) is refused before any SQL.
        clips = ClipRepository(session)
        for write in (
            clips.create_many([{"name": "d"}]),
            clips.insert_many([{"name": "d"}]),
            clips.upsert_many([{"name": "d"}], on="name"),
        ):
            with pytest.raises(TypeError, match="several tables"):
                await write
        clip = await clips.create({"name": "d", "seconds": 3})
        assert (clip.kind, clip.seconds) == ("clip", 3)


async def test_create_many_reads_back_server_defaults(database: Database) -> None:
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        repo = TicketRepository(session)
        with count_queries(database) as log:
            tickets = await repo.create_many(
                [{"code": "a"}, {"code": "b", "state": "closed", "note": "n"}]
            )
        assert [(t.code, t.state, t.note) for t in tickets] == [
            ("a", "open", None),
            ("b", "closed", "n"),
        ]
        assert "RETURNING" in log.statements[0].upper()
        assert all(t.loaded_hook_ran for t in tickets)
        assert await session.get(Ticket, tickets[0].id) is tickets[0]
        await session.commit()
    async with database.session() as session:
        stored = await TicketRepository(session).list(order_by=Ticket.code)
        assert [(t.code, t.state, t.note) for t in stored] == [
            ("a", "open", None),
            ("b", "closed", "n"),
        ]


async def test_upsert_objects_keep_what_existing_rows_keep(database: Database) -> None:
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        repo = TicketRepository(session)
        first = await repo.upsert_many([{"code": "a", "state": "closed"}, {"code": "b"}], on="code")
        await session.commit()
        ids = [t.id for t in first.items]
    async with database.session() as session:
        repo = TicketRepository(session)
        result = await repo.upsert_many(
            [{"code": "b", "note": "again"}, {"code": "c"}, {"code": "a", "note": "x"}],
            on="code",
            update=["note"],
        )
        assert (result.created, result.updated) == (1, 2)
        b, c, a = result.items
        assert (b.id, b.state, b.note) == (ids[1], "open", "again")
        assert (a.id, a.state, a.note) == (ids[0], "closed", "x")
        assert (c.state, c.note) == ("open", None)
        assert all(inspect(t).persistent and t.loaded_hook_ran for t in result.items)
        assert await session.get(Ticket, a.id) is a


async def test_upsert_objects_hold_what_the_database_read_back(database: Database) -> None:
    # The key and the columns an upsert does not overwrite are read back: inserted
    # rows' objects hold them as the column reads them, as updated rows' objects do.
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        repo = PaintRepository(session)
        await repo.upsert({"shade": "light", "finish": "light"}, on="shade")
        result = await repo.upsert_many(
            [{"shade": "light", "finish": "dark", "coats": 2}, {"shade": "dark", "finish": "dark"}],
            on="shade",
            update=["coats"],
        )
        assert (result.created, result.updated) == (1, 1)
        held = [(p.shade, p.finish, p.coats) for p in result.items]
        await session.commit()
    assert held == [(Shade.light, Shade.light, 2), (Shade.dark, Shade.dark, 1)]
    async with database.session() as session:
        stored = {
            p.shade: (p.shade, p.finish, p.coats) for p in await PaintRepository(session).list()
        }
        assert held == [stored[Shade.light], stored[Shade.dark]]


async def test_create_many_with_keys_given_as_strings(sample_db: Database) -> None:
    given = [uuid7(), uuid7()]
    rows = [{"id": str(key), "title": f"t{n}", "slug": f"s{n}"} for n, key in enumerate(given)]
    async with sample_db.session() as session:
        repo = VideoRepository(session)
        # Text parsed (SQLite) or read back (PostgreSQL): the objects hold UUIDs either way.
        videos = await repo.create_many(rows)
        assert [v.id for v in videos] == given
        assert await session.get(Video, given[0]) is videos[0]


async def test_create_many_refuses_relationships(session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError, match="relationship"):
        await VideoRepository(session).create_many([{"title": "t", "slug": "s", "tags": []}])


async def test_update_applies_only_fields_sent(session: AsyncSession) -> None:
    author = await AuthorRepository(session).create({"name": "ann"})
    repo = VideoRepository(session)
    video = await repo.create(
        {"title": "Old", "slug": "old", "duration": 10, "author_id": author.id}
    )
    await session.commit()
    before = video.updated_at
    await asyncio.sleep(0.01)
    updated = await repo.update(video.id, VideoUpdate(title="New"), load=("author",))
    assert updated.title == "New"
    assert updated.duration == 10  # not sent, not touched
    assert updated.author is author  # relationship untouched
    assert updated.version == 2
    assert updated.updated_at > before
    assert (await repo.update(updated, {"duration": None})).duration is None


async def test_update_replaces_the_relationships_it_is_given(sample_db: Database) -> None:
    async with sample_db.transaction() as session:
        author = await AuthorRepository(session).create({"name": "ann"})
        tags = [Tag(name=name) for name in ("a", "b", "c")]
        session.add_all(tags)
        video = await VideoRepository(session).create({"title": "t", "slug": "t", "tags": tags[:1]})
        # An object of this session whose collection was never loaded.
        await VideoRepository(session).update(video, {"tags": tags[:2]})
    async with sample_db.transaction() as session:
        repo = VideoRepository(session)
        replaced = await TagRepository(session).list(name=["b", "c"])
        updated = await repo.update(
            video.id, {"tags": replaced, "author": await session.get(Author, author.id)}
        )
        assert sorted(t.name for t in updated.tags) == ["b", "c"]
        assert updated.author_id == author.id
        assert "comments" in inspect(updated).unloaded  # not given: left alone, not loaded
    async with sample_db.session() as session:
        stored = await VideoRepository(session).get_one(id=video.id, load=("tags", "author"))
        assert sorted(t.name for t in stored.tags) == ["b", "c"]
        assert stored.author is not None
        assert stored.author.name == "ann"
        assert await TagRepository(session).count() == 3


async def test_update_of_a_missing_row_is_404(session: AsyncSession) -> None:
    with pytest.raises(NotFoundError):
        await VideoRepository(session).update(uuid.uuid4(), {"title": "x"})


async def test_update_with_a_stale_version_is_409(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    video = await repo.create({"title": "t", "slug": "t"})
    await repo.update(video.id, VideoUpdate(title="by me", version=1))
    with pytest.raises(ConflictError) as caught:
        await repo.update(video.id, VideoUpdate(title="late", version=1))
    assert caught.value.details[0].code == "stale_version"


async def test_concurrent_update_is_detected_by_the_version_column(sample_db: Database) -> None:
    async with sample_db.transaction() as session:
        video = await VideoRepository(session).create({"title": "t", "slug": "t"})
    async with sample_db.session() as first, sample_db.session() as second:
        mine = await VideoRepository(first).get_one(id=video.id)
        theirs = await VideoRepository(second).get_one(id=video.id)
        await VideoRepository(second).update(theirs, {"title": "theirs"})
        await second.commit()
        with pytest.raises(ConflictError, match="changed by someone else"):
            await VideoRepository(first).update(mine, {"title": "mine"})


async def test_update_many_moves_updated_at_and_version(session: AsyncSession) -> None:
    videos = await add_videos(session, 3)
    stamp = videos[0].updated_at
    await asyncio.sleep(0.01)
    repo = VideoRepository(session)
    assert await repo.update_many({"status": "archived"}, Video.slug != "video-002") == 2
    archived = await repo.list(status="archived", order_by="title")
    assert [v.slug for v in archived] == ["video-000", "video-001"]
    assert all(v.version == 2 and v.updated_at > stamp for v in archived)
    with pytest.raises(ValueError, match="every row"):
        await repo.update_many({"status": "x"})
    assert await repo.update_many({"status": "all"}, true()) == 3


async def test_delete_and_delete_many(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed_with_relations(session, 3)
    async with sample_db.transaction() as session:
        repo = VideoRepository(session)
        video = await repo.get_one(slug="s-3-0")  # loaded with raiseload options
        await repo.delete(video)  # the comments cascade still loads and goes
        await repo.delete((await repo.get_one(slug="s-3-1")).id)
        with pytest.raises(NotFoundError):
            await repo.delete(uuid.uuid4())
    async with sample_db.session() as session:
        assert await VideoRepository(session).count() == 1
        assert await CommentRepository(session).count() == 2


async def test_deleting_a_row_another_transaction_deleted_is_404(sample_db: Database) -> None:
    async with sample_db.transaction() as session:
        video = await VideoRepository(session).create({"title": "t", "slug": "t"})
    async with sample_db.session() as first, sample_db.session() as second:
        mine = await VideoRepository(first).get_one(id=video.id)
        await VideoRepository(second).delete(video.id)
        await second.commit()
        with pytest.raises(NotFoundError):
            await VideoRepository(first).delete(mine)


async def test_deleting_a_row_another_transaction_changed_is_409(sample_db: Database) -> None:
    async with sample_db.transaction() as session:
        video = await VideoRepository(session).create({"title": "t", "slug": "t"})
    async with sample_db.session() as first, sample_db.session() as second:
        mine = await VideoRepository(first).get_one(id=video.id)
        await VideoRepository(second).update(video.id, {"title": "theirs"})
        await second.commit()
        with pytest.raises(ConflictError, match="changed by someone else"):
            await VideoRepository(first).delete(mine)
    async with sample_db.transaction() as session:  # the usual path still deletes
        await VideoRepository(session).delete(video.id)
        assert await VideoRepository(session).get_by_id(video.id) is None


async def test_delete_many_is_chunked(sample_db: Database) -> None:
    class SmallBatches(VideoRepository):
        batch_size = 4

    async with sample_db.session() as session:
        videos = await add_videos(session, 10)
        repo = SmallBatches(session)
        ids = [v.id for v in videos[:9]] + [videos[0].id, uuid.uuid4()]
        with count_queries(sample_db) as log:
            assert await repo.delete_many(ids) == 9
        assert log.count == 3
        assert await repo.count() == 1


async def test_deleting_a_referenced_row_is_a_conflict(sample_db: Database) -> None:
    async def delete_author() -> None:
        async with sample_db.transaction() as session:
            author = await AuthorRepository(session).get_one(name="author-1")
            await AuthorRepository(session).delete_many([author.id])

    async with sample_db.session() as session:
        await seed_with_relations(session, 1)
    with pytest.raises(ConflictError, match="still referenced"):
        await delete_author()


# --- Upserts ------------------------------------------------------------------


async def test_upsert_reports_created_then_updated(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    first, created = await repo.upsert({"title": "One", "slug": "one"}, on="slug")
    assert created is True
    await session.commit()
    stamp = first.updated_at
    await asyncio.sleep(0.01)
    again, created = await repo.upsert({"title": "One again", "slug": "one"}, on="slug")
    assert created is False
    assert again is first
    assert not session.dirty
    assert again.title == "One again"
    assert again.updated_at > stamp
    assert again.created_at == first.created_at
    assert again.version == 2
    assert await repo.count() == 1


async def test_upsert_many_in_one_statement_per_batch(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await add_videos(session, 2)
        repo = VideoRepository(session)
        rows = [{"title": f"New {n}", "slug": f"video-{n:03d}"} for n in range(5)]
        rows.append({"title": "Last wins", "slug": "video-004"})
        with count_queries(sample_db) as log:
            result = await repo.upsert_many(rows, on=["slug"])
        assert log.count == 1
        assert (result.created, result.updated) == (3, 2)
        assert [v.title for v in result.items] == ["New 0", "New 1", "New 2", "New 3", "Last wins"]
        assert await repo.count() == 5


async def test_upsert_many_objects_hold_what_the_rows_hold(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await add_videos(session, 2)
        result = await VideoRepository(session).upsert_many(
            [{"title": f"T{n}", "slug": f"video-{n:03d}"} for n in range(4)], on="slug"
        )
        assert (result.created, result.updated) == (2, 2)
        made = {v.slug: (v.id, v.title, v.created_at, v.updated_at) for v in result.items}
        await session.commit()
    async with sample_db.session() as session:
        stored = await VideoRepository(session).list(order_by=Video.slug)
        assert {v.slug: (v.id, v.title, v.created_at, v.updated_at) for v in stored} == made


async def test_upsert_can_limit_the_fields_it_overwrites(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    await repo.upsert({"title": "Kept", "slug": "k", "duration": 1}, on="slug")
    video, created = await repo.upsert(
        {"title": "Ignored", "slug": "k", "duration": 2}, on="slug", update=["duration"]
    )
    assert not created
    assert (video.title, video.duration) == ("Kept", 2)


async def test_upsert_with_database_made_keys(session: AsyncSession) -> None:
    repo = CounterRepository(session)
    first = await repo.upsert_many([{"name": "a", "value": 1}, {"name": "b"}], on="name")
    assert (first.created, first.updated) == (2, 0)
    second = await repo.upsert_many([{"name": "a", "value": 2}, {"name": "c"}], on="name")
    assert (second.created, second.updated) == (1, 1)
    assert second.items[0].value == 2
    assert second.items[0].id == first.items[0].id
    assert await repo.upsert_many([], on="name") == type(first)([], 0, 0)
    with pytest.raises(InvalidInputError, match="name"):
        await repo.upsert({"value": 3}, on="name")


async def test_upsert_rows_with_different_fields(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    result = await repo.upsert_many(
        [{"title": "A", "slug": "a"}, {"title": "B", "slug": "b", "duration": 9}], on="slug"
    )
    assert [v.slug for v in result.items] == ["a", "b"]
    assert result.items[1].duration == 9


async def test_upsert_keyed_on_the_primary_key_counts_updates(sample_db: Database) -> None:
    ids = [uuid7() for _ in range(3)]
    async with sample_db.transaction() as session:
        repo = VideoRepository(session)
        first = await repo.upsert_many(
            [{"id": key, "title": "a", "slug": f"s{n}"} for n, key in enumerate(ids)], on="id"
        )
        assert (first.created, first.updated) == (3, 0)
        counters = await CounterRepository(session).upsert_many(
            [{"id": 7, "name": "seven"}], on="id"
        )
        assert (counters.created, counters.updated) == (1, 0)
    async with sample_db.transaction() as session:
        repo = VideoRepository(session)
        new = uuid7()
        rows = [{"id": key, "title": "b", "slug": f"s{n}"} for n, key in enumerate([*ids, new])]
        with count_queries(sample_db) as log:
            again = await repo.upsert_many(rows, on="id")
        assert (again.created, again.updated) == (1, 3)
        assert [v.id for v in again.items] == [*ids, new]
        if sample_db.dialect_name == "postgresql":
            assert log.count == 1  # the statement itself tells inserts from updates
        video, created = await repo.upsert({"id": ids[0], "title": "c", "slug": "s0"}, on="id")
        assert (video.title, created) == ("c", False)
        # Keyed on another column, with the row's own key sent along.
        video, created = await repo.upsert({"id": ids[1], "title": "d", "slug": "s1"}, on="slug")
        assert (video.title, created) == ("d", False)
        _, created = await repo.upsert({"id": uuid7(), "title": "e", "slug": "s9"}, on="slug")
        assert created
        counters = await CounterRepository(session).upsert_many(
            [{"id": 7, "name": "seven", "value": 1}, {"id": 8, "name": "eight"}], on="id"
        )
        assert (counters.created, counters.updated) == (1, 1)
    async with sample_db.session() as session:
        assert await VideoRepository(session).count() == 5
        assert await CounterRepository(session).count() == 2


def test_upsert_rows_are_ordered_alike_whatever_the_keys_hold() -> None:
    """Every call orders overlapping keys the same way (NULLs first, then by
    value), so concurrent upserts lock their rows in one order."""
    from heygen_conventions.repository import _in_key_order

    with_null = [((None,), {}), ((10,), {}), ((2,), {})]
    without = [((10,), {}), ((2,), {})]
    assert [key for key, _ in _in_key_order(with_null)] == [(None,), (2,), (10,)]
    assert [key for key, _ in _in_key_order(without)] == [(2,), (10,)]
    # Two-column keys, NULLs in either column, any input order: one result.
    keys = [(a, b) for a in (None, 1, 2) for b in (None, "x", "y")]
    expected = sorted(keys, key=lambda key: [(v is not None, v) for v in key])
    for seed in range(20):
        shuffled = keys[:]
        random.Random(seed).shuffle(shuffled)  # noqa: S311 - not crypto
        assert [key for key, _ in _in_key_order([(k, {}) for k in shuffled])] == expected


async def test_concurrent_upserts_over_the_same_keys_never_deadlock(sample_db: Database) -> None:
    """Each writer sends the keys in its own order, over several statements."""

    class SmallBatches(VideoRepository):
        batch_size = 40

    slugs = [f"k{n:03d}" for n in range(150)]
    results: list[tuple[int, int]] = []

    async def writer(number: int) -> None:
        mine = slugs[:]
        random.Random(number).shuffle(mine)  # noqa: S311 - not crypto
        async with sample_db.transaction() as session:
            result = await SmallBatches(session).upsert_many(
                [{"title": f"by {number}", "slug": slug} for slug in mine],
                on="slug",
                returning=number % 2 == 0,
            )
        if number % 2 == 0:  # objects come back in the caller's order
            assert [v.slug for v in result.items] == mine
        results.append((result.created, result.updated))

    await asyncio.gather(*(writer(number) for number in range(6)))
    assert sum(created for created, _ in results) == len(slugs)
    assert all(created + updated == len(slugs) for created, updated in results)
    async with sample_db.session() as session:
        assert await VideoRepository(session).count() == len(slugs)


async def test_upsert_counts_hold_when_writers_race_for_new_keys(
    sample_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys the database makes: created or updated must not depend on timing."""
    read_keys = CounterRepository._existing_keys

    async def slow_read(self: CounterRepository, conflict: Any, keys: Any) -> set[tuple[Any, ...]]:
        found = await read_keys(self, conflict, keys)
        await asyncio.sleep(0.05)  # another writer runs in between
        return found

    monkeypatch.setattr(CounterRepository, "_existing_keys", slow_read)
    results: list[tuple[int, int]] = []

    async def writer(value: int) -> None:
        async with sample_db.transaction() as session:
            result = await CounterRepository(session).upsert_many(
                [{"name": f"c{n}", "value": value} for n in range(3)], on="name"
            )
        results.append((result.created, result.updated))

    await asyncio.gather(writer(1), writer(2))
    assert sorted(results) == [(0, 3), (3, 0)]
    async with sample_db.session() as session:
        assert await CounterRepository(session).count() == 3


async def test_query_builds_on_the_repository_filters(session: AsyncSession) -> None:
    await add_videos(session, 3)
    repo = VideoRepository(session)
    statement = repo.query(status="draft", search="video-00").where(Video.title != "Video 001")
    rows = (await session.scalars(statement.order_by(Video.title))).all()
    assert [v.slug for v in rows] == ["video-000", "video-002"]
    assert (await session.scalars(select(Video).limit(1))).first() is not None


async def test_insert_many_reads_nothing_back(sample_db: Database) -> None:
    class SmallBatches(VideoRepository):
        batch_size = 20

    async with sample_db.session() as session:
        repo = SmallBatches(session)
        with count_queries(sample_db) as log:
            inserted = await repo.insert_many(
                VideoCreate(title=f"V{n}", slug=f"v-{n}", duration=n) for n in range(45)
            )
        assert inserted == 45
        assert log.count == 3
        assert all("RETURNING" not in statement.upper() for statement in log.statements)
        stored = await repo.list(order_by="duration")
        assert [v.duration for v in stored] == list(range(45))
        assert all(v.version == 1 and v.created_at is not None for v in stored)
        assert await CounterRepository(session).insert_many([{"name": "a"}, {"name": "b"}]) == 2
        assert await CounterRepository(session).count() == 2


async def test_upsert_many_can_return_counts_only(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await add_videos(session, 2)
        repo = VideoRepository(session)
        rows = [{"title": f"Re {n}", "slug": f"video-{n:03d}"} for n in range(4)]
        result = await repo.upsert_many(rows, on="slug", returning=False)
        assert (result.items, result.created, result.updated) == ([], 2, 2)
        assert [v.title for v in await repo.list(order_by="title")] == [
            "Re 0",
            "Re 1",
            "Re 2",
            "Re 3",
        ]
        counters = CounterRepository(session)
        await counters.upsert_many([{"name": "a"}], on="name", returning=False)
        again = await counters.upsert_many(
            [{"name": "a", "value": 2}, {"name": "b"}], on="name", returning=False
        )
        assert (again.created, again.updated) == (1, 1)


async def test_upsert_many_without_objects_leaves_none_stale_in_the_session(
    sample_db: Database,
) -> None:
    # An object the session holds for a row the upsert changed must not keep the
    # old values, nor the old version (its next change would be a false conflict).
    async with sample_db.session() as session:
        repo = VideoRepository(session)
        video = await repo.create({"title": "old", "slug": "s"})
        await session.commit()
        await repo.upsert_many([{"title": "new", "slug": "s"}], on="slug", returning=False)
        assert await repo.get_by_id(video.id) is video
        assert (video.title, video.version) == ("new", 2)
        await repo.update(video, {"duration": 5})
        assert video.version == 3
        await session.commit()
    async with sample_db.session() as session:
        with count_queries(sample_db) as log:  # no object held: nothing to read back
            await VideoRepository(session).upsert_many(
                [{"title": "newer", "slug": "s"}], on="slug", returning=False
            )
        assert log.count == 1


async def test_upsert_rows_whose_keys_the_column_stores_alike_are_refused(
    database: Database,
) -> None:
    # "light" (an enum given by name) and Shade.light are two keys in Python but one
    # row in the database: one statement cannot write that row twice. Refused with a
    # 422 naming the field on both databases, never an object for a row that is not
    # there or a 500.
    await database.create_all(DefaultsBase.metadata)
    async with database.session() as session:
        repo = PaintRepository(session)
        rows: list[dict[str, Any]] = [
            {"shade": "light", "finish": Shade.dark},
            {"shade": Shade.light, "finish": Shade.light},
        ]
        with pytest.raises(InvalidInputError) as caught:
            await repo.upsert_many(rows, on="shade")
        assert caught.value.details[0].field == "shade"
        await session.rollback()
        assert await session.scalar(select(func.count()).select_from(Paint)) == 0


@pytest.mark.parametrize("count", [1, 1_001])
@pytest.mark.parametrize("value", [1.7, Decimal("1.7")])
async def test_non_integral_filter_values_for_an_integer_column(
    session: AsyncSession, value: Any, count: int
) -> None:
    # duration is an INTEGER: 1.7 matches no row, however many values the list has
    # (past IN_LIST_MAX values the list is one array parameter, which must not
    # truncate 1.7 to 1).
    await add_videos(session, 2, duration=1)
    repo = VideoRepository(session)
    assert await repo.list(duration=[value] * count) == []
    assert await repo.count(duration=[value, 5] * count) == 0
    assert len(await repo.list(duration=[1.0] * count)) == 2  # 1.0 is 1


async def test_an_integer_too_large_for_the_database_is_invalid_input(
    session: AsyncSession,
) -> None:
    # A path parameter typed int takes any integer: one past 64 bits is invalid
    # input on both databases (SQLite's driver raises a bare OverflowError).
    repo = CounterRepository(session)
    with pytest.raises(InvalidInputError):
        await repo.get_by_id(2**70)
    with pytest.raises(InvalidInputError):
        await repo.delete_many([2**70])
    with pytest.raises(InvalidInputError):
        await repo.create({"name": "big", "value": 2**70})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("duration", "abc", "Expected an integer, got str"),
        ("duration", 1.7, "Expected an integer"),
        ("duration", True, "Expected an integer, got bool"),
        ("duration", 2**40, "Number out of range (32-bit integers)"),
        ("title", 5, "Expected text, got int"),
        ("author_id", "not-a-uuid", "Not a valid UUID"),
    ],
)
@pytest.mark.parametrize("write", ["create", "update", "update_many", "create_many", "upsert"])
async def test_written_values_of_the_wrong_type_are_invalid_input_naming_the_field(
    session: AsyncSession, write: str, field: str, value: Any, message: str
) -> None:
    # SQLite would store "abc" in an INTEGER column, and a bulk statement's arrays
    # would take True or 1.7 as 1 on PostgreSQL: on both databases the write is a
    # 422 naming the field, and nothing is written.
    repo = VideoRepository(session)
    video = await repo.create({"title": "kept", "slug": "kept", "duration": 3})
    data = {"title": "new", "slug": "new", field: value}
    calls = {
        "create": lambda: repo.create(data),
        "update": lambda: repo.update(video.id, {field: value}),
        "update_many": lambda: repo.update_many({field: value}, slug="kept"),
        "create_many": lambda: repo.create_many([data]),
        "upsert": lambda: repo.upsert(data, on="slug"),
    }
    with pytest.raises(InvalidInputError) as caught:
        await calls[write]()
    assert caught.value.details[0].code == "invalid_value"
    assert caught.value.details[0].field == field
    assert message in caught.value.details[0].message
    await session.refresh(video)
    assert (video.title, video.duration) == ("kept", 3)
    assert await repo.count() == 1


async def test_written_values_the_column_takes(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    author = await AuthorRepository(session).create({"name": "a"})
    # UUID text for a UUID column is parsed (SQLite binds UUID objects only);
    # SQL expressions are the database's to compute.
    video = await repo.create({"title": "t", "slug": "s", "author_id": str(author.id)})
    assert video.author_id == author.id
    await repo.update_many({"duration": 2}, slug="s")
    assert await repo.update_many({"duration": Video.duration + 1}, slug="s") == 1
    await session.refresh(video)
    assert video.duration == 3
    made = await repo.create_many([{"title": "u", "slug": "u", "author_id": str(author.id)}])
    assert made[0].author_id == author.id


async def test_bulk_writes_check_every_row(session: AsyncSession) -> None:
    repo = VideoRepository(session)
    author = await AuthorRepository(session).create({"name": "a"})
    rows: list[dict[str, Any]] = [
        {"title": "a", "slug": "a", "duration": 1},
        {"title": "b", "slug": "b"},  # leaves duration out
        {"title": "c", "slug": "c", "duration": "3"},
    ]
    with pytest.raises(InvalidInputError) as caught:
        await repo.create_many(rows)
    assert caught.value.details[0].field == "duration"
    with pytest.raises(InvalidInputError, match="'duration'"):
        await repo.upsert_many(rows, on="slug")
    assert await repo.count() == 0
    # Text for a UUID column is parsed in any row, before the rows are keyed.
    rows[2]["duration"] = 3
    rows[1]["author_id"] = str(author.id)
    result = await repo.upsert_many(rows, on="slug")
    assert [v.author_id for v in result.items] == [None, author.id, None]
    assert rows[1]["author_id"] == str(author.id)  # the caller's rows are left as they were
