"""Documentation pieces the routes share: success examples in the envelope, common errors.

Error statuses are documented with the library's ``error_responses()``, so
the documentation shows the bodies the exception handlers really send.
"""

from typing import Any

from heygen_conventions import ErrorDetail, error_responses

NOT_AUTHENTICATED = "Not authenticated"
#: What a body that is not text in its declared encoding answers (before validation).
BAD_BODY = ErrorDetail(code="bad_request", message="There was an error parsing the body")
INVALID_BODY = ErrorDetail(
    code="string_too_long",
    message="String should have at most 200 characters",
    field="body.title",
)
INVALID_PATH = ErrorDetail(
    code="uuid_parsing", message="Input should be a valid UUID", field="path.video_id"
)


def ok(data: Any, *, message: str = "OK", status: int = 200) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry for a success answered in the envelope, with an example.

    Its description is the route's ``response_description``.
    """
    example = {
        "success": True,
        "message": message,
        "data": data,
        "errors": [],
        "metadata": {},
    }
    return {status: {"content": {"application/json": {"example": example}}}}


def page(item: Any) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry for an offset page of ``item``-like entries."""
    example = {
        "data": [item],
        "total_count": 1,
        "page": 1,
        "per_page": 20,
        "total_pages": 1,
        "has_next": False,
        "has_previous": False,
        "metadata": {"count": "exact"},
    }
    return {200: {"content": {"application/json": {"example": example}}}}


def cursor_page(item: Any) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry for a keyset page of ``item``-like entries."""
    example = {
        "data": [item],
        "next_cursor": "eyJ2IjoxLCJsIjoi...",
        "previous_cursor": None,
        "has_more": True,
    }
    return {200: {"content": {"application/json": {"example": example}}}}


def errors(*statuses: int, **messages: str | ErrorDetail) -> dict[int | str, dict[str, Any]]:
    """Error entries; ``errors(401, 404, e404="Video not found")`` overrides a message."""
    defaults: dict[int, str | ErrorDetail] = {
        400: BAD_BODY,
        401: NOT_AUTHENTICATED,
        403: "Only the owner or an admin can do this",
        404: "Not found",
        409: "Conflict with the current state of the resource",
        422: INVALID_BODY,
        503: "Service temporarily unavailable",
    }
    chosen: dict[int, str | ErrorDetail] = {}
    for status in statuses:
        chosen[status] = messages.get(f"e{status}", defaults[status])
    return error_responses(chosen)


#: Every route can fail on the server side; documented once, on the API router.
SERVER_ERRORS = error_responses(
    {500: "Internal server error", 503: "Service temporarily unavailable"}
)
