"""Each rule: an app that breaks it is reported at the right place, one that follows it is not."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Security, status
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from heygen_conventions import (
    APIResponse,
    CursorPage,
    InvalidInputError,
    NotFoundError,
    PaginatedResponse,
    PermissionDeniedError,
    check_app,
    error_responses,
    install_exception_handlers,
)
from tests.fixtures.checks import VideoResponse, build_clean_app, current_user


def found(app: Any, rule: str) -> list[str]:
    """Where ``rule`` is broken in ``app``."""
    return [v.where for v in check_app(app, select=[rule])]


def api() -> tuple[FastAPI, APIRouter]:
    """An app with the library's error handlers, which document every route's 422."""
    app = FastAPI()
    install_exception_handlers(app)
    return app, APIRouter(prefix="/api/v1", tags=["videos"])


def test_the_well_written_app_has_no_violations() -> None:
    assert check_app(build_clean_app(), include_ignored=True) == []


# --- paths -----------------------------------------------------------------


def test_path_verb() -> None:
    app, router = api()
    router.add_api_route("/getVideos", lambda: None)
    router.add_api_route("/videos/{video_id}/delete", lambda video_id: None, methods=["POST"])
    router.add_api_route("/update-video/{video_id}", lambda video_id: None, methods=["PUT"])
    for fine in ("/videos", "/videos/{video_id}/process", "/settings", "/updates", "/listings"):
        router.add_api_route(fine, lambda: None)
    app.include_router(router)
    assert found(app, "HC101") == [
        "GET /api/v1/getVideos",
        "POST /api/v1/videos/{video_id}/delete",
        "PUT /api/v1/update-video/{video_id}",
    ]
    fixes = [v.fix for v in check_app(app, select=["path-verb"])]
    assert fixes == [
        "name the resource: /api/v1/videos",
        "name the resource: /api/v1/videos/{video_id}",
        "name the resource: /api/v1/videos/{video_id}",
    ]


def test_path_case() -> None:
    app, router = api()
    for bad in ("/videoTemplates", "/Videos", "/video templates"):
        router.add_api_route(bad, lambda: None)
    for fine in ("/video-templates", "/video_templates", "/v2", "/jwks.json", "/.well-known"):
        router.add_api_route(fine, lambda: None)
    app.include_router(router)
    assert found(app, "HC102") == [
        "GET /api/v1/videoTemplates",
        "GET /api/v1/Videos",
        "GET /api/v1/video templates",
    ]


def test_path_plural_for_collections_before_an_id() -> None:
    app, router = api()
    for bad in ("/video/{video_id}", "/status/{status_id}", "/users/{user_id}/video/{video_id}"):
        router.add_api_route(bad, lambda: None)
    for fine in (
        "/videos/{video_id}",
        "/statuses/{status_id}",
        "/categories/{category_id}",
        "/media/{media_id}",
        "/people/{person_id}",
        "/analyses/{analysis_id}",
        "/users/me",
        "/videos/{video_id}/analytics",
        "/videos/{video_id}/process",
    ):
        router.add_api_route(fine, lambda: None)
    app.include_router(router)
    assert found(app, "HC103") == [
        "GET /api/v1/video/{video_id}",
        "GET /api/v1/status/{status_id}",
        "GET /api/v1/users/{user_id}/video/{video_id}",
    ]


def test_path_plural_for_a_listed_collection() -> None:
    app, router = api()

    @router.get("/video")
    async def singular_list() -> list[VideoResponse]:
        return []

    @router.get("/history")
    async def singular_page() -> PaginatedResponse[VideoResponse]:
        raise NotImplementedError

    @router.get("/profile")
    async def one_item() -> APIResponse[VideoResponse]:
        raise NotImplementedError

    @router.get("/videos")
    async def plural_list() -> CursorPage[VideoResponse]:
        raise NotImplementedError

    app.include_router(router)
    assert found(app, "HC103") == ["GET /api/v1/video", "GET /api/v1/history"]


def test_path_param_case() -> None:
    app, router = api()
    router.add_api_route("/videos/{videoId}", lambda videoId: None)
    router.add_api_route("/videos/{video_id}/clips/{clip_id}", lambda video_id, clip_id: None)
    app.include_router(router)
    assert found(app, "HC104") == ["GET /api/v1/videos/{videoId}"]


def test_path_param_name() -> None:
    app, router = api()
    router.add_api_route("/videos/{id}", lambda id: None)
    router.add_api_route("/videos/{user_id}/clips", lambda user_id: None)
    for fine in (
        "/videos/{video_id}",
        "/categories/{category_id}",
        "/statuses/{status_id}",
        "/people/{person_id}",
        "/video-templates/{template_id}",
        "/templates/{template_slug}",
        "/files/{file_path:path}",
        "/v2/{video_id}",
    ):
        router.add_api_route(fine, lambda: None)
    app.include_router(router)
    violations = check_app(app, select=["HC105"])
    assert [(v.where, v.fix) for v in violations] == [
        ("GET /api/v1/videos/{id}", "rename it {video_id}"),
        ("GET /api/v1/videos/{user_id}/clips", "rename it {video_id}"),
    ]


def test_path_version() -> None:
    app = FastAPI()
    for bad in ("/videos", "/v1/videos", "/api/videos"):
        app.add_api_route(bad, lambda: None)
    for fine in ("/api/v1/videos", "/api/v2beta/videos", "/api/v1", "/.well-known/jwks.json"):
        app.add_api_route(fine, lambda: None)
    assert found(app, "HC106") == ["GET /videos", "GET /v1/videos", "GET /api/videos"]


def test_path_trailing_slash() -> None:
    app = FastAPI()
    slashed = APIRouter(prefix="/api/v1/videos")
    slashed.add_api_route("/", lambda: None)
    bare = APIRouter(prefix="/api/v1/clips")
    bare.add_api_route("", lambda: None)
    app.include_router(slashed)
    app.include_router(bare)
    assert found(app, "HC107") == ["GET /api/v1/videos/"]


def test_path_findings_merge_over_the_methods_of_a_path() -> None:
    app, router = api()
    router.add_api_route("/video/{video_id}", lambda video_id: None)
    router.add_api_route("/video/{video_id}", lambda video_id: None, methods=["DELETE"])
    app.include_router(router)
    assert found(app, "HC103") == ["GET, DELETE /api/v1/video/{video_id}"]


# --- query parameters --------------------------------------------------------


def test_query_param_case_uses_the_name_clients_send() -> None:
    app, router = api()

    @router.get("/videos")
    async def bad(
        pageNum: int = Query(1, ge=1),
        sort_field: str = Query("created_at", alias="sortField"),
    ) -> None: ...

    @router.get("/clips")
    async def good(video_status: str | None = None, sort_by: str = "created_at") -> None: ...

    app.include_router(router)
    violations = check_app(app, select=["HC201"])
    assert [(v.where, v.fix) for v in violations] == [
        ("GET /api/v1/videos", "rename it 'page_num'"),
        ("GET /api/v1/videos", "rename it 'sort_field'"),
    ]


class PerPageQuery(BaseModel):
    per_page: int = Field(20, ge=1, description="Items per page")


class BoundedQuery(BaseModel):
    per_page: int = Field(20, ge=1, le=100, description="Items per page")


def test_page_size_bounds() -> None:
    app, router = api()

    @router.get("/a")
    async def no_upper(per_page: int = Query(20, ge=1)) -> None: ...

    @router.get("/b")
    async def no_lower(limit: int = Query(20, le=100)) -> None: ...

    @router.get("/c")
    async def in_a_query_model(q: Annotated[PerPageQuery, Query()]) -> None: ...

    @router.get("/d")
    async def camel(itemsPerPage: int = 20) -> None: ...

    @router.get("/e")
    async def bounded(per_page: int = Query(20, ge=1, le=100)) -> None: ...

    @router.get("/f")
    async def exclusive(page_size: int = Query(20, gt=0, lt=101)) -> None: ...

    @router.get("/g")
    async def choices(per_page: Literal[10, 20, 50] = 20) -> None: ...

    @router.get("/h")
    async def bounded_model(q: Annotated[BoundedQuery, Query()]) -> None: ...

    @router.get("/i")
    async def from_a_dependency(paging: Annotated[Any, Depends(_paging)]) -> None: ...

    app.include_router(router)
    assert found(app, "HC202") == [
        "GET /api/v1/a",
        "GET /api/v1/b",
        "GET /api/v1/c",
        "GET /api/v1/d",
        "GET /api/v1/i",
    ]


def _paging(per_page: int = Query(20, ge=1)) -> int:
    return per_page


def test_page_lower_bound() -> None:
    app, router = api()

    @router.get("/a")
    async def unbounded(page: int = 1) -> None: ...

    @router.get("/b")
    async def from_zero(page: int = Query(1, ge=0)) -> None: ...

    @router.get("/c")
    async def negative_offset(offset: int = Query(0, ge=-1)) -> None: ...

    @router.get("/d")
    async def good(page: int = Query(1, ge=1), offset: int = Query(0, ge=0)) -> None: ...

    @router.get("/e")
    async def also_good(page: int = Query(1, gt=0)) -> None: ...

    app.include_router(router)
    assert found(app, "HC203") == ["GET /api/v1/a", "GET /api/v1/b", "GET /api/v1/c"]


class SortOrder(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


def test_sort_order_values() -> None:
    app, router = api()

    @router.get("/a")
    async def any_string(sort_order: str = "desc") -> None: ...

    @router.get("/b")
    async def unanchored(sort_order: str = Query("desc", pattern="asc|desc")) -> None: ...

    @router.get("/c")
    async def extra_value(sort_order: Literal["asc", "desc", "random"] = "desc") -> None: ...

    @router.get("/d")
    async def refuses_asc(sort_order: str = Query("desc", pattern="^desc$")) -> None: ...

    @router.get("/e")
    async def literal(sort_order: Literal["asc", "desc"] = "desc") -> None: ...

    @router.get("/f")
    async def anchored(sort_order: str = Query("desc", pattern="^(asc|desc)$")) -> None: ...

    @router.get("/g")
    async def as_enum(sort_order: SortOrder | None = None) -> None: ...

    @router.get("/h")
    async def rust_only_pattern(
        sort_order: str = Query("desc", pattern=r"^\p{Ll}+$"),
    ) -> None: ...

    app.include_router(router)
    messages = {v.where: v.message for v in check_app(app, select=["HC204"])}
    assert list(messages) == ["GET /api/v1/a", "GET /api/v1/b", "GET /api/v1/c", "GET /api/v1/d"]
    assert "accepts 'ascending'" in messages["GET /api/v1/b"]
    assert "'random'" in messages["GET /api/v1/c"]


def test_query_param_description() -> None:
    app, router = api()

    @router.get("/a")
    async def bare(search: str | None = None) -> None: ...

    @router.get("/b")
    async def described(search: str | None = Query(None, description="Title search")) -> None: ...

    @router.get("/c")
    async def hidden(debugMode: bool = Query(False, include_in_schema=False)) -> None: ...

    app.include_router(router)
    assert found(app, "HC205") == ["GET /api/v1/a"]


# --- status codes and response models ---------------------------------------


def test_create_status() -> None:
    app, router = api()
    router.add_api_route("/videos", lambda: None, methods=["POST"])
    router.add_api_route("/clips", lambda: None, methods=["POST"], status_code=201)
    router.add_api_route("/renders", lambda: None, methods=["POST"], status_code=202)
    router.add_api_route("/videos/{video_id}/process", lambda video_id: None, methods=["POST"])
    router.add_api_route("/auth/login", lambda: None, methods=["POST"])
    app.include_router(router)
    assert found(app, "HC301") == ["POST /api/v1/videos"]


def test_delete_status() -> None:
    app, router = api()

    @router.delete("/videos/{video_id}")
    async def answers_a_message(video_id: UUID) -> dict[str, str]:
        return {"message": "Video deleted successfully"}

    @router.delete("/clips/{clip_id}", status_code=204)
    async def no_content(clip_id: UUID) -> None: ...

    app.include_router(router)
    assert found(app, "HC302") == ["DELETE /api/v1/videos/{video_id}"]


def test_response_model() -> None:
    app, router = api()

    @router.get("/a")
    async def undeclared():
        return {}

    @router.get("/b")
    async def plain_dict() -> dict[str, Any]:
        return {}

    @router.get("/c")
    async def list_of_dicts() -> list[dict[str, int]]:
        return []

    @router.get("/d", response_model=Any)
    async def any_model() -> Any: ...

    @router.post("/e", status_code=201)
    async def created_text() -> str:
        return ""

    @router.get("/f")
    async def model() -> VideoResponse:
        raise NotImplementedError

    @router.get("/g", response_model=list[VideoResponse])
    async def models() -> Any: ...

    @router.get("/h")
    async def envelope() -> APIResponse[PaginatedResponse[VideoResponse]]:
        raise NotImplementedError

    @router.get("/i", response_class=HTMLResponse)
    async def page() -> str:
        return "<p>hi</p>"

    @router.get("/j", response_class=FileResponse)
    async def download() -> str:
        return __file__

    @router.get("/k")
    async def raw() -> Response:
        return Response(b"")

    @router.delete("/l", status_code=204)
    async def nothing() -> None: ...

    @router.get("/m")
    async def optional_model() -> VideoResponse | None: ...

    app.include_router(router)
    messages = {v.where: v.message for v in check_app(app, select=["HC303"])}
    assert list(messages) == [
        "GET /api/v1/a",
        "GET /api/v1/b",
        "GET /api/v1/c",
        "GET /api/v1/d",
        "POST /api/v1/e",
    ]
    assert messages["GET /api/v1/c"].startswith(
        "responds with dict[str, int], not a pydantic model"
    )


# --- documentation -------------------------------------------------------------


def test_summary_and_description() -> None:
    app, router = api()

    @router.get("/a")
    async def undocumented() -> None: ...

    @router.get("/b", summary="List b")
    async def summary_only() -> None: ...

    @router.get("/c", description="Lists every c.")
    async def description_only() -> None: ...

    @router.get("/d")
    async def docstring() -> None:
        """List d."""

    app.include_router(router)
    assert found(app, "HC401") == ["GET /api/v1/a", "GET /api/v1/c"]
    assert found(app, "HC402") == ["GET /api/v1/a", "GET /api/v1/b"]


def test_route_tags() -> None:
    app = FastAPI()
    app.add_api_route("/api/v1/a", lambda: None)
    app.add_api_route("/api/v1/b", lambda: None, tags=["b"])
    tagged = APIRouter(prefix="/api/v1/c", tags=["c"])
    tagged.add_api_route("", lambda: None)
    app.include_router(tagged)
    assert found(app, "HC403") == ["GET /api/v1/a"]


oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


def test_protected_routes_document_401() -> None:
    # Without the library's handlers, which document every protected route's 401.
    app, router = FastAPI(), APIRouter(prefix="/api/v1", tags=["videos"])

    @router.get("/a")
    async def direct(user: Annotated[str, Depends(current_user)]) -> None: ...

    @router.get("/b")
    async def oauth(token: Annotated[str, Depends(oauth2)]) -> None: ...

    @router.get("/c", responses={401: {"description": "Not authenticated"}})
    async def documented(user: Annotated[str, Depends(current_user)]) -> None: ...

    @router.get("/d", responses={"4XX": {"description": "Client error"}})
    async def range_documented(user: Annotated[str, Depends(current_user)]) -> None: ...

    @router.get("/e")
    async def public() -> None: ...

    app.include_router(router)
    protected_router = APIRouter(prefix="/api/v1/f", dependencies=[Depends(current_user)])
    protected_router.add_api_route("", lambda: None)
    app.include_router(protected_router)
    documented_router = APIRouter(
        prefix="/api/v1/g", dependencies=[Depends(current_user)], responses={401: {}}
    )
    documented_router.add_api_route("", lambda: None)
    app.include_router(documented_router)
    violations = check_app(app, select=["HC404"])
    assert [v.where for v in violations] == ["GET /api/v1/a", "GET /api/v1/b", "GET /api/v1/f"]
    assert "HTTPBearer" in violations[0].message
    assert "OAuth2PasswordBearer" in violations[1].message
    assert violations[0].fix == 'responses=error_responses({401: "Not authenticated"})'


def test_the_library_auth_dependencies_are_seen_as_protected() -> None:
    from heygen_conventions import (
        get_current_user,
        get_optional_user,
        require_admin_role,
        require_scopes,
    )

    app, router = FastAPI(), APIRouter(prefix="/api/v1", tags=["videos"])  # no handlers
    router.add_api_route("/me", lambda user=Depends(get_current_user): None)
    router.add_api_route("/maybe", lambda user=Depends(get_optional_user): None)
    router.add_api_route("/stats", lambda: None, dependencies=[Depends(require_admin_role)])
    router.add_api_route("/uploads", lambda user=Depends(require_scopes("videos:write")): None)
    documented = {401: {"description": "Not authenticated"}, 403: {"description": "Forbidden"}}
    router.add_api_route(
        "/reports", lambda: None, dependencies=[Depends(require_admin_role)], responses=documented
    )
    app.include_router(router)
    violations = check_app(app, select=["HC404", "HC405"])
    assert [(v.rule, v.where) for v in violations] == [
        ("HC404", "GET /api/v1/me"),
        ("HC404", "GET /api/v1/maybe"),
        ("HC404", "GET /api/v1/stats"),
        ("HC405", "GET /api/v1/stats"),
        ("HC404", "GET /api/v1/uploads"),
        ("HC405", "GET /api/v1/uploads"),
    ]
    # The scheme as the OpenAPI document names it, not a private class name.
    assert "BearerAuth" in violations[0].message
    assert "_BearerToken" not in violations[0].message


def test_the_handlers_document_the_401_and_403_of_protected_routes() -> None:
    from fastapi.security import APIKeyHeader

    from heygen_conventions import (
        get_current_user,
        get_optional_user,
        require_admin_role,
        require_scopes,
    )

    optional_key = APIKeyHeader(name="X-Key", auto_error=False)  # never refuses anything
    app, router = api()
    router.add_api_route("/me", lambda user=Depends(get_current_user): None)
    router.add_api_route("/maybe", lambda user=Depends(get_optional_user): None)
    router.add_api_route("/stats", lambda: None, dependencies=[Depends(require_admin_role)])
    router.add_api_route("/uploads", lambda user=Depends(require_scopes("videos:write")): None)
    router.add_api_route("/keyed", lambda key=Depends(optional_key): None)
    mine = {401: {"description": "Mine"}}
    router.add_api_route("/own", lambda user=Depends(get_current_user): None, responses=mine)
    router.add_api_route("/public", lambda: None)
    app.include_router(router)
    paths = app.openapi()["paths"]
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}

    def responses(path: str) -> dict[str, Any]:
        return dict(paths[f"/api/v1/{path}"]["get"]["responses"])

    assert responses("me")["401"] == {"description": "Not authenticated", "content": body}
    assert "403" not in responses("me")
    # An invalid token is refused even where no token is needed.
    assert "401" in responses("maybe")
    assert responses("stats")["403"] == {"description": "Permission denied", "content": body}
    assert responses("uploads")["401"]["content"] == body
    assert responses("uploads")["403"]["content"] == body
    assert "401" not in responses("keyed")
    assert responses("own")["401"]["description"] == "Mine"
    assert "401" not in responses("public")
    # What the document says is what the checker asks for.
    assert check_app(app, select=["HC404", "HC405"]) == []


def test_problem_json_apps_document_the_401_as_problem_details() -> None:
    from heygen_conventions import get_current_user

    app = FastAPI()
    install_exception_handlers(app, format="problem")
    app.add_api_route("/me", lambda user=Depends(get_current_user): None)
    content = app.openapi()["paths"]["/me"]["get"]["responses"]["401"]["content"]
    assert content == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
    }


def require_editor(user: Annotated[str, Depends(current_user)]) -> str:
    if user != "editor":
        raise PermissionDeniedError("Editors only")
    return user


def test_error_responses_a_route_can_produce_are_documented() -> None:
    app, router = api()

    @router.get("/a")
    async def raises_library_error() -> None:
        raise NotFoundError()

    @router.get("/b")
    async def raises_http_exception() -> None:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="taken")

    @router.get("/c")
    async def raises_literal_status() -> None:
        raise HTTPException(400, "bad")

    @router.get("/d", responses={401: {}})  # its 403 (a role) the handlers document
    async def role_dependency(user: Annotated[str, Depends(require_editor)]) -> None: ...

    @router.get("/e/{clip_id}")
    async def path_parameter(clip_id: int) -> None: ...

    @router.get("/f", responses={401: {}})  # its 403 (a scope) the handlers document
    async def scoped(
        token: Annotated[HTTPAuthorizationCredentials, Security(HTTPBearer(), scopes=["x"])],
    ) -> None: ...

    @router.get("/g")
    async def raises_422_without_inputs() -> None:
        raise InvalidInputError()

    @router.get("/h", responses={404: {}, 409: {}})
    async def documented(missing: bool = True) -> None:
        if missing:
            raise NotFoundError()
        raise HTTPException(status_code=409)

    @router.get("/i")
    async def validation_is_documented_by_the_handlers(page: int = 1) -> None:
        raise InvalidInputError()

    @router.get("/j")
    async def no_errors() -> None:
        return None

    app.include_router(router)
    messages = {v.where: v.message for v in check_app(app, select=["HC405"])}
    assert messages == {
        "GET /api/v1/a": "can answer 404 but does not document it",
        "GET /api/v1/b": "can answer 409 but does not document it",
        "GET /api/v1/c": "can answer 400 but does not document it",
        "GET /api/v1/e/{clip_id}": "can answer 404 but does not document it",
        "GET /api/v1/g": "can answer 422 but does not document it",
    }


def test_fastapis_validation_error_does_not_document_422() -> None:
    """FastAPI documents every route's 422 as HTTPValidationError; clients never get that body."""
    plain = FastAPI()
    router = APIRouter(prefix="/api/v1", tags=["videos"])

    @router.get("/a")
    async def with_inputs(page: int = 1) -> None:
        """Has a query parameter, so FastAPI's validation can answer 422."""

    @router.get("/b", responses=error_responses({422: "Request validation failed"}))
    async def documented(page: int = 1) -> None:
        """Documents the body the handlers send."""

    @router.get("/c", responses={422: {"description": "Invalid", "content": FASTAPI_422}})
    async def fastapi_body(page: int = 1) -> None:
        """Documents FastAPI's body by hand."""

    @router.get("/d")
    async def no_inputs() -> None:
        """Nothing to validate."""

    @router.get("/e/{clip_id}")
    async def not_found_too(clip_id: int) -> None:
        """Can also answer 404."""

    plain.include_router(router)
    violations = check_app(plain, select=["HC405"])
    assert {v.where: v.message for v in violations} == {
        "GET /api/v1/a": "can answer 422 but does not document it",
        "GET /api/v1/c": "can answer 422 but does not document it",
        "GET /api/v1/e/{clip_id}": "can answer 404, 422 but does not document them",
    }
    fixes = {v.where: v.fix for v in violations}
    assert fixes["GET /api/v1/e/{clip_id}"] == (
        'responses=error_responses({404: "...", 422: "..."}); setup_app() or '
        "install_exception_handlers() on the app checked documents the 422 of every route "
        "with inputs"
    )
    # The same routes on an app whose handlers document the 422 they send.
    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    assert {v.where: v.fix for v in check_app(app, select=["HC405"])} == {
        "GET /api/v1/e/{clip_id}": 'responses=error_responses({404: "..."})'
    }
    assert app.openapi_schema is None  # the check leaves no cached document behind
    # A router checked alone has no document: its routes' 422 is not documented.
    assert [v.where for v in check_app(router, select=["HC405"])] == [
        "GET /api/v1/a",
        "GET /api/v1/c",
        "GET /api/v1/e/{clip_id}",
    ]


FASTAPI_422 = {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}


def test_the_422_is_read_from_the_document_each_app_serves() -> None:
    def versioned_app(*, handlers: bool) -> FastAPI:
        app = FastAPI()
        if handlers:
            install_exception_handlers(app)
        app.add_api_route(
            "/api/v1/clips/{clip_id}", get_clip, responses=error_responses({404: "?"})
        )
        return app

    async def get_clip(clip_id: int) -> None:
        """One clip."""

    parent = versioned_app(handlers=False)
    parent.mount("/mounted", versioned_app(handlers=True))
    assert [v.where for v in check_app(parent, select=["HC405"])] == ["GET /api/v1/clips/{clip_id}"]
    # An app that replaces its document after the handlers, with FastAPI's own generator.
    replaced = versioned_app(handlers=True)
    replaced.openapi = lambda: get_openapi(  # type: ignore[method-assign]
        title="replaced", version="1", routes=replaced.routes
    )
    assert [v.where for v in check_app(replaced, select=["HC405"])] == [
        "GET /api/v1/clips/{clip_id}"
    ]


# --- models ------------------------------------------------------------------------


class CamelOut(BaseModel):
    video_id: UUID = Field(..., description="Video ID")
    viewCount: int = Field(0, description="Views")


class GeneratedCamelOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    video_id: UUID = Field(..., description="Video ID")


class CamelIn(BaseModel):
    templateId: UUID | None = None


class Undescribed(BaseModel):
    title: str
    duration: int = Field(0, description="Seconds")


def test_field_case() -> None:
    app, router = api()

    @router.get("/a")
    async def camel_field() -> APIResponse[CamelOut]:
        raise NotImplementedError

    @router.get("/b")
    async def camel_aliases() -> list[GeneratedCamelOut]:
        raise NotImplementedError

    @router.post("/c", status_code=201)
    async def camel_body(body: CamelIn) -> VideoResponse:
        raise NotImplementedError

    @router.get("/d")
    async def snake() -> PaginatedResponse[VideoResponse]:
        raise NotImplementedError

    app.include_router(router)
    violations = check_app(app, select=["HC501"])
    assert [v.where for v in violations] == [
        "model tests.test_checks_rules.CamelIn",
        "model tests.test_checks_rules.CamelOut",
        "model tests.test_checks_rules.GeneratedCamelOut",
    ]
    assert "'viewCount'" in violations[1].message
    assert "'videoId'" in violations[2].message


def test_field_description_looks_inside_the_envelope() -> None:
    app, router = api()

    @router.get("/a")
    async def enveloped() -> APIResponse[Undescribed]:
        raise NotImplementedError

    @router.get("/b")
    async def paged() -> PaginatedResponse[Undescribed]:
        raise NotImplementedError

    @router.post("/c", status_code=201)
    async def body_needs_none(body: Undescribed) -> APIResponse[VideoResponse]:
        raise NotImplementedError

    app.include_router(router)
    violations = check_app(app, select=["HC502"])
    assert [(v.where, v.message) for v in violations] == [
        (
            "model tests.test_checks_rules.Undescribed",
            "response field 'title' has no description (used by GET /api/v1/a and 1 more)",
        )
    ]


def test_the_library_response_models_follow_the_conventions() -> None:
    app, router = api()

    @router.get("/a")
    async def everything() -> APIResponse[
        PaginatedResponse[VideoResponse] | CursorPage[VideoResponse]
    ]:
        raise NotImplementedError

    app.include_router(router)
    assert check_app(app, select=["HC5"]) == []


@pytest.mark.parametrize("rule", ["HC999", "path-verbs", "HC9", "XX1", ""])
def test_unknown_rules_are_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="unknown convention rule"):
        check_app(FastAPI(), select=[rule])


def require_roles(*roles: str) -> Any:
    """A dependency factory, like the auth component's: the error class comes from a closure."""
    denied = PermissionDeniedError

    def check(user: Annotated[str, Depends(current_user)]) -> str:
        if user not in roles:
            raise denied(f"needs one of {roles}")
        return user

    return check


async def session_dependency() -> Any:
    """Shared plumbing: it turns a commit conflict into 409 on any route, read-only or not."""
    try:
        yield None
    except LookupError as exc:
        raise HTTPException(status_code=409) from exc


class CheckedSession:
    """A callable-instance dependency that raises 400 itself."""

    def __call__(self, strict: bool = False) -> None:
        if strict:
            raise HTTPException(status.HTTP_400_BAD_REQUEST)


def test_statuses_from_closures_generators_and_callable_instances() -> None:
    app, router = api()
    protected = {401: {"description": "Not authenticated"}}

    @router.get("/a", responses=protected)
    async def by_role(user: Annotated[str, Depends(require_roles("admin"))]) -> None:
        """Admins only."""

    @router.get("/b")
    async def with_session(session: Annotated[Any, Depends(session_dependency)]) -> None:
        """Uses a session."""

    @router.get("/c")
    async def with_instance(checked: Annotated[None, Depends(CheckedSession())]) -> None:
        """Uses a callable instance."""

    app.include_router(router)
    # The role's 403, found in the closure require_roles returns, the handlers document.
    assert "403" in app.openapi()["paths"]["/api/v1/a"]["get"]["responses"]
    assert {v.where: v.message for v in check_app(app, select=["HC405"])} == {
        "GET /api/v1/b": "can answer 409 but does not document it",
        "GET /api/v1/c": "can answer 400 but does not document it",
    }


async def quiet_session() -> Any:
    try:
        yield None
    except LookupError as exc:
        raise HTTPException(status_code=409) from exc


def test_a_dependency_can_declare_its_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    app, router = api()

    @router.get("/b")
    async def with_session(session: Annotated[Any, Depends(quiet_session)]) -> None:
        """Uses a session whose conflicts are documented app-wide."""

    app.include_router(router)
    assert found(app, "HC405") == ["GET /api/v1/b"]
    monkeypatch.setattr(quiet_session, "__conventions_statuses__", (), raising=False)
    assert found(app, "HC405") == []
    monkeypatch.setattr(quiet_session, "__conventions_statuses__", {403}, raising=False)
    assert [v.message for v in check_app(app, select=["HC405"])] == [
        "can answer 403 but does not document it"
    ]
