"""Offset and keyset pagination, PageParams and signed cursors, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as time_of_day
from decimal import Decimal
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Interval,
    LargeBinary,
    MetaData,
    String,
    Time,
    Uuid,
    bindparam,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from heygen_conventions import (
    BadRequestError,
    Base,
    BaseRepository,
    CursorPage,
    Database,
    DBSession,
    InvalidInputError,
    PageParams,
    PaginatedResponse,
    TimestampMixin,
    UUIDPrimaryKeyMixin,
    install_database,
    install_exception_handlers,
    repository,
)
from heygen_conventions.db import NAMING_CONVENTION
from heygen_conventions.pagination import MAX_PAGE, CursorCodec
from heygen_conventions.repository import _plain_select
from tests.fixtures.db import Author, Comment, Video, asgi_client, count_queries


class VideoRepository(BaseRepository[Video]):
    sortable_fields = ("created_at", "title", "duration", "status")
    searchable_fields = ("title",)


class VideoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    title: str
    duration: int | None


async def seed(session: AsyncSession, count: int, **extra: Any) -> list[Video]:
    videos = await VideoRepository(session).create_many(
        {"title": f"Video {n:03d}", "slug": f"v-{n:03d}", "duration": n % 4, **extra}
        for n in range(count)
    )
    await session.commit()
    return videos


# --- PageParams -------------------------------------------------------------


def test_page_params_construct_directly() -> None:
    params = PageParams(page=2, per_page=10, sort_by="title", sort_order="desc", search=" cat ")
    assert (params.offset, params.sort, params.search) == (10, "-title", "cat")
    assert PageParams().sort is None
    assert PageParams(search="  ").search is None
    assert params == PageParams(
        page=2, per_page=10, sort_by="title", sort_order="desc", search="cat"
    )
    assert hash(params) == hash(
        PageParams(page=2, per_page=10, sort_by="title", sort_order="desc", search="cat")
    )
    assert params != "page"
    assert "per_page=10" in repr(params)
    with pytest.raises(ValueError, match="page"):
        PageParams(page=0)
    with pytest.raises(ValueError, match="per_page"):
        PageParams(per_page=0)
    with pytest.raises(ValueError, match="sort_order"):
        PageParams(sort_order="up")  # type: ignore[arg-type]


def test_depends_refuses_contradictory_configuration() -> None:
    with pytest.raises(ValueError, match="default_sort"):
        PageParams.depends(sort_fields=("title",), default_sort="created_at")
    with pytest.raises(ValueError, match="default_per_page"):
        PageParams.depends(default_per_page=500, max_per_page=100)
    with pytest.raises(ValueError, match="default_order"):
        PageParams.depends(default_order="sideways")  # type: ignore[arg-type]


VideoPage = Annotated[
    PageParams,
    Depends(
        PageParams.depends(
            sort_fields=("created_at", "title"),
            default_sort="title",
            default_per_page=5,
            max_per_page=50,
        )
    ),
]


def make_app(db: Database) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, db)

    @app.get("/videos", response_model=PaginatedResponse[VideoOut])
    async def list_videos(params: VideoPage, session: DBSession) -> Any:
        return await VideoRepository(session).paginate(params)

    @app.get("/plain")
    async def plain(params: Annotated[PageParams, Depends()], session: DBSession) -> Any:
        page = await VideoRepository(session).paginate(params, count="none")
        return {"titles": [v.title for v in page.data], "has_next": page.has_next}

    @app.get("/feed", response_model=CursorPage[VideoOut])
    async def feed(
        session: DBSession,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
        status: str = "draft",
    ) -> Any:
        return await VideoRepository(session).paginate_cursor(
            cursor=cursor, limit=3, sort="-created_at", status=status
        )

    return app


async def test_paginated_route(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 12)
    async with asgi_client(make_app(sample_db)) as client:
        response = await client.get("/videos", params={"page": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert [v["title"] for v in body["data"]] == [f"Video {n:03d}" for n in range(5, 10)]
        assert (body["total_count"], body["total_pages"], body["has_next"]) == (12, 3, True)
        desc = await client.get("/videos", params={"sort_by": "title", "sort_order": "desc"})
        assert desc.json()["data"][0]["title"] == "Video 011"
        searched = await client.get("/videos", params={"search": "Video 01"})
        assert searched.json()["total_count"] == 2
        plain = await client.get("/plain", params={"per_page": 10, "sort_by": "title"})
        assert plain.json()["has_next"] is True


async def test_bad_page_parameters_are_422_in_the_standard_body(sample_db: Database) -> None:
    async with asgi_client(make_app(sample_db)) as client:
        unknown = await client.get("/videos", params={"sort_by": "slug"})
        assert unknown.status_code == 422, unknown.text
        error = unknown.json()["errors"][0]
        assert error["field"] == "query.sort_by"
        assert "'created_at'" in error["message"]
        assert "'title'" in error["message"]
        for params in ({"page": 0}, {"page": -1}, {"per_page": 51}, {"per_page": 0}):
            response = await client.get("/videos", params=params)
            assert response.status_code == 422, (params, response.text)
            assert response.json()["success"] is False
        wrong_type = await client.get("/videos", params={"page": "two"})
        assert wrong_type.json()["errors"][0]["field"] == "query.page"
        too_far = await client.get("/videos", params={"page": MAX_PAGE + 1})
        assert too_far.status_code == 422
        # Not in the endpoint's allow-list, so the repository refuses it too.
        slug = await client.get("/plain", params={"sort_by": "slug"})
        assert slug.status_code == 422
        assert "allowed: created_at, title, duration, status" in slug.text


async def test_control_characters_in_search_are_422_on_every_database(
    sample_db: Database,
) -> None:
    async with sample_db.session() as session:
        await seed(session, 3)
    async with asgi_client(make_app(sample_db)) as client:
        # SQLite would end the pattern at NUL and match every row; PostgreSQL refuses NUL.
        for text in ("\x00", "Video\x00", "a\nb", "\x1b[31m", "\r"):
            for path in ("/videos", "/plain"):
                response = await client.get(path, params={"search": text})
                assert response.status_code == 422, (path, text, response.text)
                assert response.json()["errors"] == [
                    {
                        "code": "value_error",
                        "message": "Value error, must not contain control characters "
                        "(tab excepted)",
                        "field": "query.search",
                    }
                ]
        tab = await client.get("/videos", params={"search": "Video\t"})
        assert tab.status_code == 200, tab.text
        assert tab.json()["total_count"] == 3  # the tab is stripped like other whitespace
    with pytest.raises(ValueError, match="control characters"):
        PageParams(search="\x00")


async def test_openapi_lists_the_allowed_sort_fields(sample_db: Database) -> None:
    async with asgi_client(make_app(sample_db)) as client:
        schema = (await client.get("/openapi.json")).json()
    parameters = {p["name"]: p for p in schema["paths"]["/videos"]["get"]["parameters"]}
    sort_schema = parameters["sort_by"]["schema"]
    options = sort_schema.get("anyOf", [sort_schema])
    assert {"enum": ["created_at", "title"], "type": "string"} in options
    assert parameters["per_page"]["schema"]["maximum"] == 50
    assert parameters["per_page"]["schema"]["default"] == 5


async def test_huge_page_number_answers_fast_with_the_true_total(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 3)
    async with asgi_client(make_app(sample_db)) as client:
        started = time.perf_counter()
        response = await client.get("/videos", params={"page": 10**12})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == []
        assert response.json()["total_count"] == 3
        plain = await client.get("/plain", params={"page": 10**12, "per_page": 100})
        assert plain.status_code == 200, plain.text
        assert plain.json() == {"titles": [], "has_next": False}
        assert time.perf_counter() - started < 5


# --- Offset pagination ------------------------------------------------------------


async def test_exact_count_pages_and_past_the_end(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 25)
        repo = VideoRepository(session)
        page = await repo.paginate(PageParams(page=3, per_page=10, sort_by="title"))
        assert [v.title for v in page.data] == [f"Video {n:03d}" for n in range(20, 25)]
        assert (page.total_count, page.total_pages, page.has_next, page.has_previous) == (
            25,
            3,
            False,
            True,
        )
        assert page.metadata == {"count": "exact"}
        with count_queries(sample_db) as log:
            past = await repo.paginate(PageParams(page=9, per_page=10))
        assert past.data == []
        assert past.total_count == 25  # the true total, not 0
        assert log.count == 1  # the count alone: no data query past the end
        filtered = await repo.paginate(PageParams(per_page=2), duration=0)
        assert filtered.total_count == 7
        with count_queries(sample_db) as log:
            empty = await repo.paginate(PageParams(), title="nothing")
        assert (empty.total_count, empty.data, log.count) == (0, [], 1)


async def test_count_none_uses_one_extra_row(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 21)
        repo = VideoRepository(session)
        with count_queries(sample_db) as log:
            first = await repo.paginate(PageParams(per_page=10), count="none")
        assert log.count == 1
        assert "count(" not in log.statements[0].lower()
        assert (len(first.data), first.has_next, first.total_count, first.total_pages) == (
            10,
            True,
            None,
            None,
        )
        last = await repo.paginate(PageParams(page=3, per_page=10), count="none")
        assert (len(last.data), last.has_next) == (1, False)
        assert last.metadata == {"count": "none"}


async def test_estimate_count(sample_db: Database) -> None:
    class AlwaysEstimate(VideoRepository):
        exact_count_below = 0

    async with sample_db.session() as session:
        await seed(session, 30)
        repo = AlwaysEstimate(session)
        small = await VideoRepository(session).paginate(PageParams(per_page=10), count="estimate")
        assert (small.total_count, small.metadata) == (30, {"count": "exact"})
        middle = await repo.paginate(PageParams(page=2, per_page=10), count="estimate")
        assert len(middle.data) == 10
        assert middle.has_next is True
        if sample_db.dialect_name == "postgresql":
            assert middle.metadata == {"count": "estimated"}
            assert middle.total_count is not None
            assert middle.total_count >= 21
        else:
            assert middle.metadata == {"count": "exact"}
            assert middle.total_count == 30
        last = await repo.paginate(PageParams(page=3, per_page=10), count="estimate")
        # The last page shows where the listing ends: the total is exact.
        assert (last.total_count, last.has_next, last.metadata) == (30, False, {"count": "exact"})
        past = await repo.paginate(PageParams(page=5, per_page=10), count="estimate")
        assert past.data == []
        assert past.has_next is False


async def test_ties_are_broken_by_the_primary_key(sample_db: Database) -> None:
    async with sample_db.session() as session:
        videos = await seed(session, 20)
        repo = VideoRepository(session)
        seen = []
        for page in range(1, 5):
            result = await repo.paginate(
                PageParams(page=page, per_page=6, sort_by="duration", sort_order="desc")
            )
            seen += [v.id for v in result.data]
        assert len(seen) == len(set(seen)) == 20
        expected = sorted(videos, key=lambda v: (v.duration, v.id), reverse=True)
        assert seen == [v.id for v in expected]


async def test_paginate_a_joined_distinct_statement(sample_db: Database) -> None:
    async with sample_db.session() as session:
        videos = await seed(session, 4)
        session.add_all(
            [Comment(body=str(n), video_id=videos[n % 2].id) for n in range(6)]
        )  # six comments on two videos
        await session.commit()
        repo = VideoRepository(session)
        statement = select(Video).join(Video.comments).distinct()
        page = await repo.paginate(PageParams(per_page=10), statement=statement)
        assert page.total_count == 2
        assert sorted(v.slug for v in page.data) == ["v-000", "v-001"]


def test_only_plain_statements_are_counted_without_a_subquery() -> None:
    assert _plain_select(select(Video).where(Video.duration > 3))
    assert not _plain_select(select(Video).distinct())
    assert not _plain_select(select(Video.author_id).group_by(Video.author_id))
    # Unknown shapes (SQLAlchemy internals renamed) take the subquery, which is always right.
    assert not _plain_select(object())  # type: ignore[arg-type]


async def test_an_exact_count_through_a_subquery_counts_the_same(
    sample_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sample_db.session() as session:
        await seed(session, 7)
        repo = VideoRepository(session)
        direct = await repo.paginate(PageParams(per_page=2), count="exact")
        monkeypatch.setattr(repository, "_plain_select", lambda query: False)
        with count_queries(sample_db) as log:
            wrapped = await repo.paginate(PageParams(per_page=2), count="exact")
        assert "FROM (SELECT" in log.statements[0].replace("\n", " ")
        assert direct.total_count == wrapped.total_count == 7
        assert [v.id for v in direct.data] == [v.id for v in wrapped.data]


async def test_paginate_loads_relationships(sample_db: Database) -> None:
    async with sample_db.session() as session:
        author = Author(name="ann")
        session.add(author)
        await session.flush()
        await seed(session, 3, author_id=author.id)
        page = await VideoRepository(session).paginate(PageParams(), load=("author",))
        assert {v.author.name for v in page.data if v.author} == {"ann"}


# --- Keyset pagination ------------------------------------------------------------


async def walk(repo: VideoRepository, **kwargs: Any) -> tuple[list[list[Any]], list[str | None]]:
    pages, cursors, cursor = [], [], None
    while True:
        page = await repo.paginate_cursor(cursor=cursor, **kwargs)
        pages.append([v.id for v in page.data])
        cursors.append(page.previous_cursor)
        if not page.has_more:
            assert page.next_cursor is None
            return pages, cursors
        cursor = page.next_cursor


async def test_cursor_walk_forward_and_back(sample_db: Database) -> None:
    async with sample_db.session() as session:
        videos = await seed(session, 23)
        repo = VideoRepository(session)
        pages, previous = await walk(repo, limit=5, sort=["duration", "-title"])
        expected = [
            v.id for v in sorted(videos, key=lambda v: (v.duration, [-ord(c) for c in v.title]))
        ]
        assert [i for page in pages for i in page] == expected
        assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
        assert previous[0] is None
        # Walk back from the last page to the first.
        back = await repo.paginate_cursor(cursor=previous[-1], limit=5, sort=["duration", "-title"])
        assert [v.id for v in back.data] == pages[-2]
        assert back.has_more is True
        cursor = back.previous_cursor
        for expected_page in reversed(pages[:-2]):
            page = await repo.paginate_cursor(cursor=cursor, limit=5, sort=["duration", "-title"])
            assert [v.id for v in page.data] == expected_page
            cursor = page.previous_cursor
        assert cursor is None  # reached the first page


async def test_cursor_single_direction_uses_a_row_value_comparison(sample_db: Database) -> None:
    async with sample_db.session() as session:
        videos = await seed(session, 9)
        repo = VideoRepository(session)
        first = await repo.paginate_cursor(limit=4, sort="-created_at")
        with count_queries(sample_db) as log:
            second = await repo.paginate_cursor(
                cursor=first.next_cursor, limit=4, sort="-created_at"
            )
        assert "(sample_videos.created_at, sample_videos.id) <" in log.statements[0]
        expected = [v.id for v in sorted(videos, key=lambda v: (v.created_at, v.id), reverse=True)]
        assert [v.id for v in first.data + second.data] == expected[:8]


async def test_cursor_over_a_nullable_column_keeps_nulls_last(sample_db: Database) -> None:
    async with sample_db.session() as session:
        repo = VideoRepository(session)
        await repo.create_many(
            {"title": f"T{n}", "slug": f"s{n}", "duration": None if n % 3 == 0 else n}
            for n in range(11)
        )
        for sort in ("duration", "-duration"):
            pages, previous = await walk(repo, limit=3, sort=sort)
            ids = [i for page in pages for i in page]
            rows = {v.id: v for v in await repo.list()}
            durations = [rows[i].duration for i in ids]
            assert len(ids) == len(set(ids)) == 11
            present = [d for d in durations if d is not None]
            assert durations[len(present) :] == [None] * 4  # NULLs last either way
            assert present == sorted(present, reverse=sort.startswith("-"))
            # And back from the last page, across the NULLs.
            back = await repo.paginate_cursor(limit=3, sort=sort, cursor=previous[-1])
            assert [v.id for v in back.data] == pages[-2]


async def test_cursor_respects_filters_and_search(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 12)
        repo = VideoRepository(session)
        pages, _ = await walk(repo, limit=2, duration=1)
        assert sum(len(p) for p in pages) == 3
        page = await repo.paginate_cursor(limit=10, search="Video 00")
        assert len(page.data) == 10
        assert page.has_more is False


async def test_bad_cursors_are_400(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 12)
        repo = VideoRepository(session)
        page = await repo.paginate_cursor(limit=2, duration=1)
        cursor = page.next_cursor
        assert cursor is not None
        body, tag = cursor.split(".")
        tampered = ("A" if body[0] != "A" else "B") + body[1:] + "." + tag
        cases = {
            "malformed": "not-a-cursor",
            "malformed!": "a.b.c",
            "altered": tampered,
            "bad base64": "@@@." + tag,
            "huge": "x" * 5000,
        }
        for name, bad in cases.items():
            with pytest.raises(BadRequestError) as caught:
                await repo.paginate_cursor(cursor=bad, limit=2, duration=1)
            assert caught.value.details[0].code == "invalid_cursor", name
        with pytest.raises(BadRequestError, match="another listing"):
            await repo.paginate_cursor(cursor=cursor, limit=2, duration=2)
        with pytest.raises(BadRequestError, match="another listing"):
            await repo.paginate_cursor(cursor=cursor, limit=2, duration=1, sort="title")
        foreign = VideoRepository(session, cursor_secret="another-secret-of-32-bytes-or-more!")
        with pytest.raises(BadRequestError, match="another key"):
            await foreign.paginate_cursor(cursor=cursor, limit=2, duration=1)
        assert (await repo.paginate_cursor(cursor=cursor, limit=2, duration=1)).data


async def test_expired_cursor_is_400(sample_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    class ShortLived(VideoRepository):
        cursor_max_age = timedelta(minutes=5)

    async with sample_db.session() as session:
        await seed(session, 4)
        repo = ShortLived(session)
        cursor = (await repo.paginate_cursor(limit=2)).next_cursor
        assert (await repo.paginate_cursor(cursor=cursor, limit=2)).data
        later = time.time() + 600
        monkeypatch.setattr("heygen_conventions.pagination.time.time", lambda: later)
        with pytest.raises(BadRequestError, match="expired"):
            await repo.paginate_cursor(cursor=cursor, limit=2)


async def test_a_zero_cursor_age_is_an_age_not_no_limit(
    sample_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Immediate(VideoRepository):
        cursor_max_age = timedelta(0)

    class Unlimited(VideoRepository):
        cursor_max_age = None

    async with sample_db.session() as session:
        await seed(session, 4)
        cursor = (await Immediate(session).paginate_cursor(limit=2)).next_cursor
        later = time.time() + 1
        monkeypatch.setattr("heygen_conventions.pagination.time.time", lambda: later)
        with pytest.raises(BadRequestError, match="expired"):
            await Immediate(session).paginate_cursor(cursor=cursor, limit=2)
        kept = (await Unlimited(session).paginate_cursor(limit=2)).next_cursor
        much_later = time.time() + 10 * 365 * 86400
        monkeypatch.setattr("heygen_conventions.pagination.time.time", lambda: much_later)
        assert (await Unlimited(session).paginate_cursor(cursor=kept, limit=2)).data


async def test_cursor_errors_through_a_route(sample_db: Database) -> None:
    async with sample_db.session() as session:
        await seed(session, 5)
    async with asgi_client(make_app(sample_db)) as client:
        first = (await client.get("/feed")).json()
        assert len(first["data"]) == 3
        assert first["has_more"] is True
        second = await client.get("/feed", params={"cursor": first["next_cursor"]})
        assert second.status_code == 200, second.text
        assert len(second.json()["data"]) == 2
        bad = await client.get("/feed", params={"cursor": "garbage"})
        assert bad.status_code == 400, bad.text
        assert bad.json()["errors"][0] == {
            "code": "invalid_cursor",
            "message": "The cursor is malformed",
            "field": "cursor",
        }
        foreign = await client.get(
            "/feed", params={"cursor": first["next_cursor"], "status": "published"}
        )
        assert foreign.status_code == 400


async def test_cursor_without_a_configured_secret_uses_a_process_key(
    sample_db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("heygen_conventions.pagination._PROCESS_KEY", None)
    async with sample_db.session() as session:
        await seed(session, 3)
        session.info.pop("heygen_cursor_key")
        repo = VideoRepository(session)
        cursor = (await repo.paginate_cursor(limit=1)).next_cursor
        assert (await repo.paginate_cursor(cursor=cursor, limit=1)).data
    assert any("No cursor secret configured" in r.message for r in caplog.records)


async def test_limit_must_be_positive(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="limit"):
        await VideoRepository(session).paginate_cursor(limit=0)


async def test_unknown_sort_in_cursor_pagination(session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError, match="allowed"):
        await VideoRepository(session).paginate_cursor(sort="slug")


# --- Keyset pagination over every kind of sort column -----------------------------


class KeysBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = Base.type_annotation_map


class Labels(TypeDecorator[tuple[str, ...]]):
    """Comma-separated text read back as a tuple: a type that does not say what it holds."""

    impl = String(100)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else ",".join(value)

    def process_result_value(self, value: Any, dialect: Any) -> tuple[str, ...] | None:
        return None if value is None else tuple(value.split(","))


class Slot(UUIDPrimaryKeyMixin, TimestampMixin, KeysBase):
    """A column of each type a sort may use, with ties, and NULLs where nullable."""

    __tablename__ = "sample_slots"
    active: Mapped[bool]
    flagged: Mapped[bool | None] = mapped_column(default=None)
    starts: Mapped[time_of_day] = mapped_column(Time())
    ends: Mapped[time_of_day | None] = mapped_column(Time(), default=None)
    length: Mapped[timedelta] = mapped_column(Interval())
    day: Mapped[date]
    score: Mapped[float | None] = mapped_column(default=None)
    digest: Mapped[bytes] = mapped_column(LargeBinary())
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    labels: Mapped[tuple[str, ...] | None] = mapped_column(Labels(), default=None)


class SlotRepository(BaseRepository[Slot]):
    sortable_fields = (
        "active",
        "flagged",
        "starts",
        "ends",
        "length",
        "day",
        "score",
        "digest",
        "created_at",
        "payload",
        "labels",
    )


def ordered(rows: list[Any], sort: list[str]) -> list[Any]:
    """The ids of ``rows`` in the order a keyset walk must give: NULLs last in either
    direction, ties broken by the primary key in the first key's direction."""
    specs = [*sort, ("-" if sort[0].startswith("-") else "") + "id"]
    result = list(rows)
    for spec in reversed(specs):  # stable sorts, least significant key first
        name = spec.lstrip("-")
        present = [row for row in result if getattr(row, name) is not None]
        missing = [row for row in result if getattr(row, name) is None]
        present.sort(key=lambda row: getattr(row, name), reverse=spec.startswith("-"))
        result = present + missing
    return [row.id for row in result]


async def assert_walks_both_ways(
    repo: BaseRepository[Any], expected: list[Any], *, limit: int, sort: list[str]
) -> None:
    """Forward to the end, then back to the first page by previous cursors."""
    pages: list[list[Any]] = []
    cursors: list[str | None] = []
    cursor = None
    while True:
        page = await repo.paginate_cursor(cursor=cursor, limit=limit, sort=sort)
        pages.append([row.id for row in page.data])
        cursors.append(page.previous_cursor)
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert [i for page in pages for i in page] == expected, sort
    assert len(pages) == -(-len(expected) // limit), sort
    cursor = cursors[-1]
    for expected_page in reversed(pages[:-1]):
        page = await repo.paginate_cursor(cursor=cursor, limit=limit, sort=sort)
        assert [row.id for row in page.data] == expected_page, sort
        cursor = page.previous_cursor
    assert cursor is None, sort


async def test_cursor_walks_over_every_sortable_column_type(database: Database) -> None:
    await database.create_all(KeysBase.metadata)
    async with database.session() as session:
        repo = SlotRepository(session)
        scores = [1.5, -math.inf, math.inf, 0.25]
        await repo.create_many(
            {
                "active": n % 2 == 0,
                "flagged": None if n % 3 == 0 else n % 2 == 1,
                "starts": time_of_day(n % 4, 30, 0, 250_000 * (n % 2)),
                "ends": None if n % 4 == 0 else time_of_day(23, n % 3, 59, n % 2),
                "length": timedelta(minutes=n % 3 - 1, microseconds=n % 2),
                "day": date(2024, 2, 27 + n % 3) if n % 5 else date(1999, 12, 31),
                "score": None if n % 5 == 0 else scores[n % 4],
                "digest": bytes([n % 3, 0xFF - n % 2]),
            }
            for n in range(14)
        )
        await session.commit()
        rows = list(await repo.list())
        sorts = [
            ["active"],
            ["-active"],
            ["flagged"],
            ["-flagged"],
            ["active", "-day"],
            ["-active", "flagged", "-starts"],
            ["-flagged", "starts"],
            ["starts"],
            ["-starts"],
            ["ends"],
            ["-ends", "active"],
            ["length"],
            ["-length", "active"],
            ["day", "-length"],
            ["score"],
            ["-score", "-flagged"],
            ["digest"],
            ["-digest", "length"],
        ]
        for sort in sorts:
            await assert_walks_both_ways(repo, ordered(rows, sort), limit=3, sort=sort)


async def test_a_column_no_cursor_can_carry_is_refused_never_a_500(database: Database) -> None:
    await database.create_all(KeysBase.metadata)
    async with database.session() as session:
        repo = SlotRepository(session)
        await repo.create_many(
            {
                "active": True,
                "starts": time_of_day(9),
                "length": timedelta(0),
                "day": date(2024, 1, 1),
                "digest": b"",
                "payload": {"n": n},
                "labels": ("a", str(n)),
            }
            for n in range(3)
        )
        # JSON (arrays, hstore, pickles): refused before any query.
        with count_queries(database) as log, pytest.raises(InvalidInputError) as caught:
            await repo.paginate_cursor(limit=1, sort="payload")
        assert log.count == 0
        assert caught.value.details[0].field == "sort_by"
        assert "'payload'" in caught.value.message
        # A custom type that does not say what it holds: refused by its values.
        with pytest.raises(InvalidInputError, match="'labels'") as caught:
            await repo.paginate_cursor(limit=1, sort="-labels")
        assert caught.value.details[0].code == "invalid_sort_field"
        last = await repo.paginate_cursor(limit=5, sort="labels")  # one page: no cursor made
        assert [row.labels for row in last.data] == [("a", "0"), ("a", "1"), ("a", "2")]


async def test_cursor_walks_rows_stamped_by_the_server_default(database: Database) -> None:
    await database.create_all(KeysBase.metadata)
    # Rows inserted outside the ORM, as a migration backfill would: the database
    # stamps created_at and updated_at.
    insert_raw = text(
        "INSERT INTO sample_slots (id, active, starts, length, day, digest) "
        "VALUES (:id, :active, :starts, :length, :day, :digest)"
    ).bindparams(
        bindparam("id", type_=Uuid()),
        bindparam("active", type_=Boolean()),
        bindparam("starts", type_=Time()),
        bindparam("length", type_=Interval()),
        bindparam("day", type_=Date()),
        bindparam("digest", type_=LargeBinary()),
    )
    async with database.engine.begin() as connection:
        for n in range(6):
            await connection.execute(
                insert_raw,
                {
                    "id": uuid.uuid4(),
                    "active": n % 2 == 0,
                    "starts": time_of_day(10),
                    "length": timedelta(minutes=n),
                    "day": date(2024, 1, 1),
                    "digest": b"",
                },
            )
    async with database.session() as session:
        repo = SlotRepository(session)
        rows = list(await repo.list())
        assert len(rows) == 6
        for sort in (["created_at"], ["-created_at"], ["created_at", "-active"]):
            await assert_walks_both_ways(repo, ordered(rows, sort), limit=2, sort=sort)
        assert await repo.count(created_at=rows[0].created_at) == sum(
            row.created_at == rows[0].created_at for row in rows
        )


def test_cursor_values_round_trip_exactly() -> None:
    codec = CursorCodec(b"k" * 32, "listing", None)
    values = [
        time_of_day(23, 59, 59, 999_999),
        time_of_day(7, 5, tzinfo=timezone(timedelta(hours=-3))),
        timedelta(days=-1, microseconds=1),
        timedelta(days=10_000, seconds=1, microseconds=999_999),
        b"\x00\xffbytes",
        math.inf,
        -math.inf,
        0.1,
        True,
        datetime(2024, 1, 15, 10, 30, 0, 5, tzinfo=UTC),
        date(2024, 2, 29),
        Decimal("12.340"),
        uuid.UUID(int=7),
        None,
    ]
    decoded, backwards = codec.decode(codec.encode(values, backwards=True), [None] * len(values))
    assert backwards is True
    assert decoded == values
    assert [type(v) for v in decoded] == [type(v) for v in values]
    (nan,), _ = codec.decode(codec.encode([math.nan], backwards=False), [None])
    assert math.isnan(nan)
