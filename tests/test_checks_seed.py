"""The seed's own endpoint examples, checked.

Each "Good"/"Bad" pair in the conventions guide illustrates one convention,
so each is checked against the rules of that convention: the Bad example is
reported, the Good one is not. The snippets are written as the seed meant
them, in today's API (``pattern=`` for the removed ``regex=``; a Delete that
answers 204 returns no body). The seed's full documentation example, which
follows every convention at once, passes the whole checker.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from heygen_conventions import (
    APIResponse,
    PaginatedResponse,
    check_app,
    install_exception_handlers,
)
from tests.fixtures.checks import VideoAnalyticsResponse, VideoCreate, VideoResponse

NAMING = ["HC1"]
QUERY = ["HC2"]
STATUS = ["HC3"]


def rules_broken(app: FastAPI, select: list[str]) -> list[tuple[str, str]]:
    return [(v.rule, v.where) for v in check_app(app, select=select)]


def versioned(router: APIRouter) -> FastAPI:
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    return app


def test_good_restful_endpoint_names() -> None:
    router = APIRouter(tags=["videos"])

    @router.get("/videos")
    async def get_videos() -> list[VideoResponse]:
        raise NotImplementedError

    @router.post("/videos", status_code=201)
    async def create_video(video_data: VideoCreate) -> VideoResponse:
        raise NotImplementedError

    @router.get("/videos/{video_id}")
    async def get_video(video_id: UUID) -> VideoResponse:
        raise NotImplementedError

    @router.put("/videos/{video_id}")
    async def update_video(video_id: UUID, video_data: VideoCreate) -> VideoResponse:
        raise NotImplementedError

    @router.delete("/videos/{video_id}", status_code=204)
    async def delete_video(video_id: UUID) -> None: ...

    @router.get("/videos/{video_id}/analytics")
    async def get_video_analytics(video_id: UUID) -> VideoAnalyticsResponse:
        raise NotImplementedError

    @router.post("/videos/{video_id}/process")
    async def process_video(video_id: UUID) -> VideoResponse:
        raise NotImplementedError

    assert rules_broken(versioned(router), NAMING + STATUS) == []


def test_bad_non_restful_endpoint_names() -> None:
    router = APIRouter(tags=["videos"])
    router.add_api_route("/getVideos", lambda: None)
    router.add_api_route("/createVideo", lambda: None, methods=["POST"])
    router.add_api_route("/video/{video_id}/getAnalytics", lambda video_id: None)
    assert rules_broken(versioned(router), NAMING) == [
        ("HC101", "GET /api/v1/getVideos"),
        ("HC102", "GET /api/v1/getVideos"),
        ("HC101", "POST /api/v1/createVideo"),
        ("HC102", "POST /api/v1/createVideo"),
        ("HC101", "GET /api/v1/video/{video_id}/getAnalytics"),
        ("HC102", "GET /api/v1/video/{video_id}/getAnalytics"),
        ("HC103", "GET /api/v1/video/{video_id}/getAnalytics"),
    ]
    fixes = {v.where: v.fix for v in check_app(versioned(router), select=["HC101"])}
    assert fixes == {
        "GET /api/v1/getVideos": "name the resource: /api/v1/videos",
        "POST /api/v1/createVideo": "name the resource: /api/v1/videos",
        "GET /api/v1/video/{video_id}/getAnalytics": (
            "name the resource: /api/v1/videos/{video_id}/analytics"
        ),
    }


async def get_db_session() -> Any:
    yield None


def test_router_organization_only_trips_the_trailing_slash() -> None:
    """The guide's router example routes `"/"` under its prefix: `/api/v1/videos/`.

    Its own endpoint-naming section writes the path `/api/v1/videos`, and the
    slashed form makes FastAPI answer `/api/v1/videos` with a redirect, so the
    checker warns (HC107, a warning) and nothing else in that example.
    """
    router = APIRouter(prefix="/api/v1/videos", tags=["videos"])

    @router.get("/", response_model=list[VideoResponse])
    async def get_videos(
        page: int = Query(1, ge=1, description="Page number"),
        per_page: int = Query(20, ge=1, le=100, description="Items per page"),
        status: str | None = Query(None, description="Video status filter"),
        db: Any = Depends(get_db_session),
    ) -> list[VideoResponse]:
        """Get paginated list of videos."""
        return []

    @router.post("/", response_model=VideoResponse, status_code=201)
    async def create_video(
        video_data: VideoCreate,
        current_user: str = Depends(get_current_user),
        db: Any = Depends(get_db_session),
    ) -> VideoResponse:
        """Create a new video."""
        raise NotImplementedError

    @router.get("/{video_id}", response_model=VideoResponse)
    async def get_video(video_id: UUID, db: Any = Depends(get_db_session)) -> VideoResponse:
        """Get a specific video by ID."""
        raise NotImplementedError

    app = FastAPI()
    app.include_router(router)
    assert rules_broken(app, NAMING + QUERY + STATUS) == [("HC107", "GET, POST /api/v1/videos/")]


def test_good_query_parameters() -> None:
    router = APIRouter(tags=["videos"])

    @router.get("/videos")
    async def get_videos(
        page: int = Query(1, ge=1, description="Page number"),
        per_page: int = Query(20, ge=1, le=100, description="Items per page"),
        status: str | None = Query(None, description="Video status filter"),
        sort_by: str = Query("created_at", description="Sort field"),
        sort_order: str = Query("desc", pattern="^(asc|desc)$", description="Sort order"),
        search: str | None = Query(None, description="Search term"),
    ) -> list[VideoResponse]:
        raise NotImplementedError

    assert rules_broken(versioned(router), QUERY) == []


def test_bad_query_parameters() -> None:
    router = APIRouter(tags=["videos"])

    @router.get("/videos")
    async def get_videos(
        pageNum: int = Query(1),
        itemsPerPage: int = Query(20),
        videoStatus: str | None = Query(None),
        sortField: str = Query("created_at"),
    ) -> list[VideoResponse]:
        raise NotImplementedError

    broken = check_app(versioned(router), select=QUERY)
    assert sorted({v.rule for v in broken}) == ["HC201", "HC202", "HC203", "HC205"]
    camel = [v.message for v in broken if v.rule == "HC201"]
    assert camel == [
        f"query parameter {name!r} is not snake_case"
        for name in ("pageNum", "itemsPerPage", "videoStatus", "sortField")
    ]


def test_good_status_codes() -> None:
    router = APIRouter(tags=["videos"])

    @router.get("/videos", response_model=list[VideoResponse])
    async def get_videos() -> list[VideoResponse]:
        """Get list of videos - returns 200 OK."""
        return []

    @router.post("/videos", response_model=VideoResponse, status_code=201)
    async def create_video(video_data: VideoCreate) -> VideoResponse:
        """Create video - returns 201 Created."""
        raise NotImplementedError

    @router.put("/videos/{video_id}", response_model=VideoResponse)
    async def update_video(video_id: UUID, video_data: VideoCreate) -> VideoResponse:
        """Update video - returns 200 OK."""
        raise NotImplementedError

    @router.delete("/videos/{video_id}", status_code=204)
    async def delete_video(video_id: UUID) -> None:
        """Delete video - returns 204 No Content."""

    @router.get("/videos/{video_id}")
    async def get_video(video_id: UUID) -> VideoResponse:
        """Get video - returns 404 Not Found if not found."""
        raise HTTPException(status_code=404, detail="Video not found")

    assert rules_broken(versioned(router), NAMING + STATUS) == []


def test_the_security_sections_delete_breaks_the_status_convention() -> None:
    """The seed's delete_video returns a message with the default 200."""
    router = APIRouter(tags=["videos"])

    @router.delete("/videos/{video_id}")
    async def delete_video(video_id: UUID, current_user: str = Depends(get_current_user)) -> Any:
        """Delete a video (only owner or admin can delete)."""
        return {"message": "Video deleted successfully"}

    # No HC404: this stand-in's bearer scheme is optional (auto_error=False) and
    # nothing in it raises a 401, so the route answers none to document.
    assert rules_broken(versioned(router), [*STATUS, "HC404"]) == [
        ("HC302", "DELETE /api/v1/videos/{video_id}"),
        ("HC303", "DELETE /api/v1/videos/{video_id}"),
    ]


def test_good_response_format_with_the_library_models() -> None:
    router = APIRouter(tags=["videos"])

    @router.get("/videos", response_model=PaginatedResponse[VideoResponse])
    async def get_videos(
        page: int = Query(1, ge=1), per_page: int = Query(20, ge=1, le=100)
    ) -> PaginatedResponse[VideoResponse]:
        """Get paginated list of videos."""
        return PaginatedResponse.create([], page=page, per_page=per_page, total_count=0)

    assert rules_broken(versioned(router), NAMING + STATUS + ["HC202", "HC203", "HC5"]) == []


bearer = HTTPBearer(auto_error=False)


async def get_current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    return credentials.credentials if credentials else ""


def test_the_seeds_documentation_example_follows_every_convention() -> None:
    router = APIRouter(prefix="/api/v1/videos", tags=["videos"])

    @router.post(
        "",
        response_model=APIResponse[VideoResponse],
        status_code=201,
        summary="Create a new video",
        description="Create a new video for the authenticated user. The video will be "
        "initially set to 'pending' status and will be processed asynchronously.",
        response_description="Successfully created video",
        responses={
            400: {"description": "Invalid video data"},
            401: {"description": "Authentication required"},
        },
    )
    async def create_video(
        video_data: Annotated[
            VideoCreate,
            Body(examples=[{"title": "My First Video", "template_id": None}]),
        ],
        current_user: Annotated[str, Depends(get_current_user)],
    ) -> APIResponse[VideoResponse]:
        """Create a new video for the authenticated user."""
        raise NotImplementedError

    app = FastAPI()
    install_exception_handlers(app)  # the seed's handlers answer (and document) 422 its way
    app.include_router(router)
    assert check_app(app) == []


def test_the_bad_documentation_example_is_reported() -> None:
    router = APIRouter()

    @router.post("/videos", status_code=201)
    async def create_video(video_data: VideoCreate) -> Any:
        pass

    assert rules_broken(versioned(router), ["HC3", "HC4"]) == [
        ("HC303", "POST /api/v1/videos"),
        ("HC401", "POST /api/v1/videos"),
        ("HC402", "POST /api/v1/videos"),
        ("HC403", "POST /api/v1/videos"),
        # No handlers: its 422 is documented as FastAPI's HTTPValidationError.
        ("HC405", "POST /api/v1/videos"),
    ]
