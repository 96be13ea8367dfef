from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from heygen_conventions import (
    APIResponse,
    CursorPage,
    ErrorDetail,
    PaginatedResponse,
    total_pages,
)


class VideoResponse(BaseModel):
    id: UUID
    title: str


def test_ok_builds_a_success_envelope_with_the_seed_fields() -> None:
    video = VideoResponse(id=UUID(int=1), title="Intro")
    response = APIResponse[VideoResponse].ok(video, message="Found", metadata={"x": 1})
    assert response.model_dump(mode="json") == {
        "success": True,
        "message": "Found",
        "data": {"id": str(UUID(int=1)), "title": "Intro"},
        "errors": [],
        "metadata": {"x": 1},
    }


def test_parametrised_ok_validates_data_into_the_declared_type() -> None:
    response = APIResponse[VideoResponse].ok({"id": str(UUID(int=3)), "title": "t"})  # type: ignore[arg-type]
    assert isinstance(response.data, VideoResponse)
    with pytest.raises(ValidationError):
        APIResponse[VideoResponse].ok({"title": "missing id"})  # type: ignore[arg-type]


def test_error_detail_field_is_optional() -> None:
    assert ErrorDetail(code="x", message="y").field is None


@given(
    total=st.integers(min_value=0, max_value=10**9),
    per_page=st.integers(min_value=1, max_value=1000),
    page=st.integers(min_value=1, max_value=10**6),
)
def test_page_arithmetic_over_any_total(total: int, per_page: int, page: int) -> None:
    first = (page - 1) * per_page
    on_page = max(0, min(per_page, total - first))
    result = PaginatedResponse.create(
        list(range(on_page)), page=page, per_page=per_page, total_count=total
    )
    assert result.total_pages is not None
    # Enough pages to hold everything, and no empty page at the end.
    assert result.total_pages * per_page >= total
    assert total == 0 or (result.total_pages - 1) * per_page < total
    assert result.has_next == (page * per_page < total)
    assert result.has_previous == (page > 1)
    assert result.total_count == total
    assert len(result.data) == on_page


@given(
    rows=st.integers(min_value=0, max_value=300),
    per_page=st.integers(min_value=1, max_value=100),
    page=st.integers(min_value=1, max_value=10**12),
)
def test_uncounted_page_uses_the_extra_row_for_has_next(
    rows: int, per_page: int, page: int
) -> None:
    fetched = list(range(min(rows, per_page + 1)))
    result = PaginatedResponse.create(fetched, page=page, per_page=per_page, total_count=None)
    assert result.has_next == (rows > per_page)
    assert result.data == fetched[:per_page]
    assert result.total_count is None
    assert result.total_pages is None


def test_empty_total_has_zero_pages_and_no_next() -> None:
    result = PaginatedResponse.create([], page=1, per_page=20, total_count=0)
    assert (result.total_pages, result.has_next, result.has_previous) == (0, False, False)


def test_page_past_the_end_keeps_the_true_total() -> None:
    result = PaginatedResponse.create([], page=9, per_page=10, total_count=25)
    assert result.data == []
    assert (result.total_count, result.total_pages, result.has_next) == (25, 3, False)
    assert result.has_previous


def test_last_page_exactly_full() -> None:
    result = PaginatedResponse.create(list(range(10)), page=2, per_page=10, total_count=20)
    assert (result.total_pages, result.has_next) == (2, False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page": 0, "per_page": 10, "total_count": 1}, "page must be >= 1"),
        ({"page": 1, "per_page": 0, "total_count": 1}, "per_page must be >= 1"),
        ({"page": 1, "per_page": 10, "total_count": -1}, "total_count must be >= 0"),
    ],
)
def test_create_rejects_impossible_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PaginatedResponse.create([], **kwargs)


def test_total_pages_rounds_up() -> None:
    assert [total_pages(n, 10) for n in (0, 1, 10, 11, 20)] == [0, 1, 1, 2, 2]


def _schema_names(app: FastAPI) -> set[str]:
    return set(app.openapi()["components"]["schemas"])


def test_openapi_names_are_readable_and_stable() -> None:
    app = FastAPI()

    @app.get("/one", response_model=APIResponse[VideoResponse])
    async def one() -> None: ...

    @app.get("/many", response_model=APIResponse[list[VideoResponse]])
    async def many() -> None: ...

    @app.get("/page", response_model=PaginatedResponse[VideoResponse])
    async def page() -> None: ...

    @app.get("/cursor", response_model=CursorPage[VideoResponse])
    async def cursor() -> None: ...

    @app.get("/map", response_model=APIResponse[dict[str, int] | None])
    async def mapping() -> None: ...

    names = _schema_names(app)
    assert {
        "APIResponseOfVideoResponse",
        "APIResponseOfListOfVideoResponse",
        "PaginatedResponseOfVideoResponse",
        "CursorPageOfVideoResponse",
        "APIResponseOfDictOfStrAndIntOrNull",
        "VideoResponse",
        "ErrorDetail",
    } <= names
    assert not any(name.endswith("_") or "[" in name for name in names), names
    ref = app.openapi()["paths"]["/one"]["get"]["responses"]["200"]["content"]
    assert ref["application/json"]["schema"]["$ref"].endswith("/APIResponseOfVideoResponse")


def test_two_models_with_one_name_do_not_collide() -> None:
    first = type("Item", (BaseModel,), {"__annotations__": {"a": int}, "__module__": "pkg_a"})
    second = type("Item", (BaseModel,), {"__annotations__": {"b": str}, "__module__": "pkg_b"})
    app = FastAPI()

    @app.get("/a", response_model=APIResponse[first])  # type: ignore[valid-type]
    async def a() -> None: ...

    @app.get("/b", response_model=APIResponse[second])  # type: ignore[valid-type]
    async def b() -> None: ...

    schemas = app.openapi()["components"]["schemas"]
    refs = {
        path: app.openapi()["paths"][path]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        for path in ("/a", "/b")
    }
    assert refs["/a"] != refs["/b"]
    data_refs = {
        schemas[ref.rsplit("/", 1)[1]]["properties"]["data"]["anyOf"][0]["$ref"]
        for ref in refs.values()
    }
    assert len(data_refs) == 2


VideoItem: Any = type(
    "Item", (BaseModel,), {"__annotations__": {"title": str}, "__module__": "pkg_videos"}
)
UserItem: Any = type(
    "Item", (BaseModel,), {"__annotations__": {"email": str}, "__module__": "pkg_users"}
)


def _ref_of(paths: list[str]) -> dict[str, str]:
    app = FastAPI()
    for path in paths:
        item = VideoItem if path == "/videos" else UserItem
        app.get(path, response_model=APIResponse[list[item]])(lambda: None)
    document = app.openapi()
    return {
        path: document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]["$ref"]
        for path in paths
    }


def test_list_envelopes_of_same_named_models_keep_their_names_whatever_the_route_order() -> None:
    first = _ref_of(["/videos", "/users"])
    second = _ref_of(["/users", "/videos"])
    assert first["/videos"] != first["/users"]
    # The name of a schema must not depend on the order routes were declared in...
    assert first == second
    # ...nor be numbered, nor claim to come from the library.
    for ref in first.values():
        assert not ref.endswith(("__1", "__2")), ref
        assert "heygen_conventions" not in ref, ref
