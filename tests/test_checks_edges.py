"""The checker on less common app shapes: scopes beside a router's own dependency, responses
built by hand, validation aliases, streamed items, hosts and wrapped mounts, rule selection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Security
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount

from heygen_conventions import check_app, install_exception_handlers
from heygen_conventions.__main__ import main


def found(app: Any, rule: str) -> list[str]:
    return [f"{v.where}: {v.message}" for v in check_app(app, select=[rule])]


class Video(BaseModel):
    title: str = Field(..., description="Video title")


# --- a scoped Security() beside the same dependency required without scopes ---

_oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/tokens", scopes={"videos:write": "write"})


async def _user(scopes: SecurityScopes, token: Annotated[str, Depends(_oauth2)]) -> str:
    return token


def test_scopes_are_seen_when_the_dependency_is_also_on_the_router() -> None:
    app = FastAPI()  # without the handlers, which would document the 403 themselves
    router = APIRouter(
        prefix="/api/v1/videos",
        tags=["videos"],
        dependencies=[Depends(_user)],  # every route needs a user...
        responses={401: {"description": "Not authenticated"}},
    )

    @router.post("", status_code=201)
    async def create_video(  # ...and this one a scope as well
        user: Annotated[str, Security(_user, scopes=["videos:write"])],
    ) -> Video:
        """Create a video."""
        raise NotImplementedError

    app.include_router(router)
    assert found(app, "HC405") == ["POST /api/v1/videos: can answer 403 but does not document it"]


# --- response_model=None with a union of Response classes --------------------------


def test_an_endpoint_returning_one_of_several_responses_needs_no_model() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/api/v1/portals", tags=["portals"], response_model=None)
    async def portal(
        teleport: Annotated[bool, Query(description="Go")] = False,
    ) -> RedirectResponse | JSONResponse:
        """Answer a redirect or a JSON body it builds itself."""
        if teleport:
            return RedirectResponse("https://example.com")
        return JSONResponse({"message": "stay"})

    assert found(app, "HC303") == []


# --- validation_alias is the name clients send ---------------------------------------


class VideoCreate(BaseModel):
    video_title: str = Field(..., validation_alias="videoTitle", description="Video title")


def test_query_parameter_validation_alias_is_the_wire_name() -> None:
    app = FastAPI()

    @app.get("/api/v1/videos", tags=["videos"])
    async def list_videos(
        page_num: Annotated[int, Query(ge=1, validation_alias="pageNum", description="Page")] = 1,
    ) -> list[Video]:
        """List videos."""
        return []

    assert found(app, "HC201") == [
        "GET /api/v1/videos: query parameter 'pageNum' is not snake_case"
    ]


def test_request_field_validation_alias_is_the_wire_name() -> None:
    app = FastAPI()

    @app.post("/api/v1/videos", tags=["videos"], status_code=201)
    async def create_video(body: VideoCreate) -> Video:
        """Create a video."""
        raise NotImplementedError

    assert found(app, "HC501") == [
        "model tests.test_checks_edges.VideoCreate: field 'videoTitle' is not snake_case "
        "(used by POST /api/v1/videos)"
    ]


# --- streamed items are response models too -----------------------------------------


class StreamedVideo(BaseModel):
    videoTitle: str


def test_streamed_item_models_are_checked() -> None:
    app = FastAPI()

    @app.get("/api/v1/videos", tags=["videos"])
    async def stream_videos() -> AsyncIterator[StreamedVideo]:
        """Stream videos as JSON lines."""
        yield StreamedVideo(videoTitle="x")

    assert found(app, "HC501") == [
        "model tests.test_checks_edges.StreamedVideo: field 'videoTitle' is not snake_case "
        "(used by GET /api/v1/videos)"
    ]


# --- sub-applications behind a Host or a middleware-wrapped Mount ---------------------


def _sub_app(path: str = "/api/v1/videos/{video_id}") -> FastAPI:
    sub = FastAPI()
    install_exception_handlers(sub)  # documents the 422 of every route

    @sub.get(path, tags=["videos"], responses={404: {"description": "No such video"}})
    async def get_video(video_id: UUID) -> Video:
        """Get one video."""
        raise NotImplementedError

    return sub


def test_a_mount_with_middleware_reads_the_mounted_apps_document() -> None:
    app = Starlette(routes=[Mount("/", app=_sub_app(), middleware=[Middleware(GZipMiddleware)])])
    assert found(app, "HC405") == []


def test_routes_under_a_host_are_checked() -> None:
    app = FastAPI()
    app.host("api.example.com", _sub_app("/api/v1/Videos/{video_id}"))
    assert found(app, "HC102") == [
        "GET /api/v1/Videos/{video_id}: segment 'Videos' is not lowercase kebab- or snake-case"
    ]


def test_routes_under_a_middleware_wrapped_app_are_checked() -> None:
    app = Starlette(routes=[Mount("/", app=GZipMiddleware(_sub_app("/api/v1/Videos/{video_id}")))])
    assert found(app, "HC102") == [
        "GET /api/v1/Videos/{video_id}: segment 'Videos' is not lowercase kebab- or snake-case"
    ]


# --- an empty selection checks nothing and passes -----------------------------------


BROKEN_APP = """
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/api/v1/getVideos", tags=["videos"])
    async def get_videos() -> list[int]:
        '''List videos.'''
        return []
"""


def test_an_empty_select_is_refused() -> None:
    with pytest.raises(ValueError, match="select"):
        check_app(FastAPI(), select=[])


def test_a_string_select_is_one_selector() -> None:
    app = FastAPI()

    @app.get("/api/v1/getVideos", tags=["videos"])
    async def get_videos() -> list[Video]:
        """List videos."""
        return []

    assert [v.rule for v in check_app(app, select="HC1")] == ["HC101", "HC102"]


@pytest.mark.parametrize("selection", ["", ","])
def test_cli_empty_select_is_a_usage_error(
    selection: str, app_module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(BROKEN_APP)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", f"{module}:app", "--select", selection])
    assert exit_info.value.code == 2


# --- a mount's path converter -------------------------------------------------------


def test_a_mount_path_converter_is_read_like_a_route_one() -> None:
    sub = FastAPI()
    install_exception_handlers(sub)

    @sub.get("/things", tags=["things"], responses={404: {"description": "No such tenant"}})
    async def list_things() -> list[Video]:
        """List things."""
        return []

    app = FastAPI()
    app.mount("/api/v1/tenants/{id:int}", sub)
    assert found(app, "HC105") == [
        "GET /api/v1/tenants/{id}/things: path parameter {id} identifies a 'tenants' item; "
        "name it after the resource"
    ]
