"""Client input that reaches the repository through routes shaped as the README shows them."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query

from heygen_conventions import (
    CursorPage,
    Database,
    DBSession,
    InvalidInputError,
    PageParams,
    PaginatedResponse,
    install_database,
    install_exception_handlers,
)
from tests.fixtures.db import asgi_client
from tests.test_pagination import VideoOut, VideoRepository, seed


def make_app(db: Database) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, db)

    # The README's shape: a client's page number passed to PageParams.
    @app.get("/clips", response_model=PaginatedResponse[VideoOut])
    async def clips(session: DBSession, page: int = 1) -> Any:
        return await VideoRepository(session).paginate(PageParams(page=page, per_page=2))

    # The README's keyset shape: a client's search passed to paginate_cursor.
    @app.get("/feed", response_model=CursorPage[VideoOut])
    async def feed(
        session: DBSession,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
        search: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Any:
        return await VideoRepository(session).paginate_cursor(
            cursor=cursor, limit=4, sort="-created_at", search=search
        )

    return app


async def six_videos(db: Database) -> None:
    async with db.session() as session:
        await seed(session, 6)


def assert_422(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["errors"][0]["field"] == field, body


async def test_control_characters_in_a_keyset_search_are_422_on_every_database(
    sample_db: Database,
) -> None:
    await six_videos(sample_db)
    async with asgi_client(make_app(sample_db)) as client:
        for text in ("\x00", "zzz\x00", "Video\n1"):
            response = await client.get("/feed", params={"search": text})
            # SQLite would end the pattern at NUL and match every row.
            assert_422(response, "search")
    async with sample_db.session() as session:
        with pytest.raises(InvalidInputError, match="control characters"):
            await VideoRepository(session).count(search="\x00")


async def test_a_client_page_number_out_of_range_is_422_not_500(sample_db: Database) -> None:
    await six_videos(sample_db)
    async with asgi_client(make_app(sample_db)) as client:
        assert (await client.get("/clips", params={"page": 3})).status_code == 200
        for page in (0, -1, 10**16):
            assert_422(await client.get("/clips", params={"page": page}), "page")
    with pytest.raises(ValueError, match="page"):  # still a ValueError for code
        PageParams(page=0)


async def test_an_estimated_page_past_the_end_tells_the_true_total(sample_db: Database) -> None:
    class AlwaysEstimate(VideoRepository):
        exact_count_below = 0  # every count an estimate on PostgreSQL

    await six_videos(sample_db)  # six rows: three pages of two
    async with sample_db.session() as session:
        repo = AlwaysEstimate(session)
        for page in (7, 50, 4):
            past = await repo.paginate(PageParams(page=page, per_page=2), count="estimate")
            assert past.data == []
            # Past the end the page query read every matching row: the total is exact.
            assert (past.total_count, past.total_pages, past.metadata) == (
                6,
                3,
                {"count": "exact"},
            ), page
        none = await repo.paginate(PageParams(page=2, per_page=2), count="estimate", title="x")
        assert (none.total_count, none.total_pages) == (0, 0)
