"""Checker cases off the common path: untyped envelopes, type aliases, computed fields,
generic models marked to ignore, one-sided sort orders, plurals, compound nouns, CLI failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, Literal, TypeVar

import pytest
from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field, computed_field
from typing_extensions import TypeAliasType

from heygen_conventions import (
    APIResponse,
    check_app,
    ignore_conventions,
    install_exception_handlers,
)
from heygen_conventions.__main__ import main

T = TypeVar("T")


class Video(BaseModel):
    title: str = Field(..., description="Video title")


class CamelVideo(BaseModel):
    videoTitle: str = Field(..., description="Video title")


def api() -> tuple[FastAPI, APIRouter]:
    app = FastAPI()
    install_exception_handlers(app)
    return app, APIRouter(prefix="/api/v1", tags=["videos"])


def found(app: Any, rule: str) -> list[str]:
    return [f"{v.where}: {v.message}" for v in check_app(app, select=[rule])]


# --- HC303: the envelope without its type parameter is data: Any ------------------


def test_an_envelope_of_any_is_no_declared_model() -> None:
    app, router = api()

    @router.get("/me")
    async def me() -> APIResponse:  # type: ignore[type-arg]
        """The caller."""
        raise NotImplementedError

    @router.get("/settings")
    async def settings() -> APIResponse[dict[str, Any]]:
        """Settings."""
        raise NotImplementedError

    @router.get("/profile")
    async def profile() -> APIResponse[Video]:
        """Fine."""
        raise NotImplementedError

    app.include_router(router)
    assert [where.split(":")[0] for where in found(app, "HC303")] == [
        "GET /api/v1/me",
        "GET /api/v1/settings",
    ]


# --- PEP 695 / TypeAliasType response models ------------------------------------

Videos = TypeAliasType("Videos", list[CamelVideo])


def test_a_type_alias_response_is_read_through() -> None:
    app, router = api()

    @router.get("/videos")
    async def list_videos() -> Videos:
        """List."""
        return []

    app.include_router(router)
    assert found(app, "HC303") == []  # it is a list of models
    assert [v.where for v in check_app(app, select=["HC501"])] == [
        "model tests.test_checks_more.CamelVideo"
    ]


# --- HC501/HC502: computed fields are on the wire --------------------------------


class WithComputed(BaseModel):
    title: str = Field(..., description="Video title")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def titleLength(self) -> int:
        return len(self.title)


def test_computed_fields_are_response_fields() -> None:
    app, router = api()

    @router.get("/videos")
    async def list_videos() -> list[WithComputed]:
        """List."""
        return []

    app.include_router(router)
    assert [v.message for v in check_app(app, select=["HC501", "HC502"])] == [
        "field 'titleLength' is not snake_case (used by GET /api/v1/videos)",
        "response field 'titleLength' has no description (used by GET /api/v1/videos)",
    ]


# --- a generic model marked with ignore_conventions ------------------------------


@ignore_conventions("HC502", reason="legacy envelope, documented elsewhere")
class Legacy(BaseModel, Generic[T]):
    payload: T


def test_marking_a_generic_model_exempts_its_parametrisations() -> None:
    app, router = api()

    @router.get("/legacies")
    async def legacies() -> Legacy[Video]:
        """Legacy."""
        raise NotImplementedError

    app.include_router(router)
    violations = check_app(app, select=["HC502"], include_ignored=True)
    assert [v.ignored_reason for v in violations] == ["legacy envelope, documented elsewhere"]


# --- HC204: a sort_order that refuses asc ---------------------------------------


def test_sort_order_literal_missing_a_direction() -> None:
    app, router = api()

    @router.get("/videos")
    async def list_videos(
        sort_order: Annotated[Literal["desc"], Query(description="Order")] = "desc",
    ) -> list[Video]:
        """List."""
        return []

    app.include_router(router)
    assert found(app, "HC204") == [
        "GET /api/v1/videos: 'sort_order' should accept only 'asc' and 'desc', but it refuses 'asc'"
    ]


# --- HC105: quizzes/{quiz_id} ------------------------------------------------------


def test_doubled_consonant_plurals_name_their_id() -> None:
    app, router = api()

    @router.get("/quizzes/{quiz_id}", responses={404: {"description": "No such quiz"}})
    async def get_quiz(quiz_id: int) -> Video:
        """Quiz."""
        raise NotImplementedError

    app.include_router(router)
    assert found(app, "HC105") == []


# --- HC101: compound nouns that start with a verb -----------------------------------


@pytest.mark.parametrize("segment", ["add-ons", "patch-notes", "set-ups"])
def test_compound_nouns_are_not_verbs(segment: str) -> None:
    app, router = api()
    router.get(f"/{segment}", summary="s", description="d")(lambda: [])
    app.include_router(router)
    assert found(app, "HC101") == []


# --- CLI: a failure while checking is no "violations found" ------------------------

BROKEN_DOCUMENT_APP = """
    from fastapi import FastAPI
    from pydantic import BaseModel, ConfigDict, Field

    class Blob:
        pass

    class Video(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        title: str = Field(..., description="Video title")
        blob: Blob | None = Field(None, description="Raw bytes")

    app = FastAPI()

    @app.get("/api/v1/videos", tags=["videos"])
    async def list_videos() -> list[Video]:
        '''List videos.'''
        return []
"""


def test_cli_check_that_fails_exits_2(
    app_module: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(BROKEN_DOCUMENT_APP)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", f"{module}:app"])
    assert exit_info.value.code == 2
    assert "PydanticInvalidForJsonSchema" in capsys.readouterr().err
