"""Videos: listing, creation, cached reads, guarded edits, rendering, engagement, analytics.

``/api/v1/videos``. Videos are unlisted: anyone signed in who has a video's id
can read it and engage with it once rendered; only its owner or an admin can
change, render, delete it or read its analytics.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query

from examples.video_app.dependencies import (
    Cache,
    CurrentUser,
    DatabaseDep,
    SettingsDep,
    VideoServiceDep,
)
from examples.video_app.docs import INVALID_PATH, errors, ok, page
from examples.video_app.models import VideoStatus
from examples.video_app.schemas import (
    EXAMPLES,
    EngagementCreate,
    EngagementResponse,
    VideoAnalyticsResponse,
    VideoCreate,
    VideoPatch,
    VideoResponse,
    VideoUpdate,
)
from examples.video_app.services import render_video
from heygen_conventions import APIResponse, ErrorDetail, PageParams, PaginatedResponse

router = APIRouter(prefix="/videos", tags=["videos"])

SORT_FIELDS = ("created_at", "updated_at", "title", "duration")
VideoPage = Annotated[
    PageParams,
    Depends(
        PageParams.depends(sort_fields=SORT_FIELDS, default_sort="created_at", default_order="desc")
    ),
]

_NOT_FOUND = ErrorDetail(code="video_not_found", message="Video not found")
_STALE = ErrorDetail(
    code="stale_version",
    message="The record was changed by someone else; reload it and retry",
    field="version",
)


@router.get(
    "",
    response_model=PaginatedResponse[VideoResponse],
    summary="List videos",
    description="The caller's videos (every user's for an admin), a page at a time. Sort by "
    f"one of {', '.join(SORT_FIELDS)} (`sort_by`, `sort_order`), search titles and "
    "descriptions (`search`, case-insensitive), filter by `status`.",
    response_description="One page of videos",
    responses={
        **page(EXAMPLES["video"]),
        **errors(
            401,
            422,
            e422=ErrorDetail(
                code="literal_error",
                message="Input should be 'created_at', 'updated_at', 'title' or 'duration'",
                field="query.sort_by",
            ),
        ),
    },
)
async def list_videos(
    params: VideoPage,
    user: CurrentUser,
    videos: VideoServiceDep,
    status: Annotated[VideoStatus | None, Query(description="Only videos in this status.")] = None,
) -> PaginatedResponse[VideoResponse]:
    """List videos with pagination, sorting, search and a status filter."""
    return await videos.list_videos(params, user, status=status)


@router.post(
    "",
    response_model=APIResponse[VideoResponse],
    status_code=201,
    summary="Create a video",
    description="Create a video owned by the caller. It starts `pending`; render it with "
    "`POST /videos/{video_id}/process`. A `template_id` that does not exist answers 422.",
    response_description="The new video",
    responses={
        **ok(EXAMPLES["video"], message="Video created", status=201),
        **errors(400, 401, 422),
    },
)
async def create_video(
    body: VideoCreate, user: CurrentUser, videos: VideoServiceDep
) -> APIResponse[VideoResponse]:
    """Create a new video for the authenticated user."""
    video = await videos.create_video(body, user)
    return APIResponse.ok(video, message="Video created")


@router.get(
    "/{video_id}",
    response_model=APIResponse[VideoResponse],
    summary="Get a video",
    description="One video by id, served from the cache when it can be (a change is visible "
    "as soon as it is committed, on every instance).",
    response_description="The video",
    responses={
        **ok(EXAMPLES["video"]),
        **errors(401, 404, 422, e404=_NOT_FOUND, e422=INVALID_PATH),
    },
)
async def get_video(
    video_id: uuid.UUID, user: CurrentUser, videos: VideoServiceDep
) -> APIResponse[VideoResponse]:
    """Get a specific video by id."""
    return APIResponse.ok(await videos.get_video(video_id))


_EDIT_ERRORS = errors(
    400,
    401,
    403,
    404,
    409,
    422,
    e404=_NOT_FOUND,
    e409=_STALE,
)


@router.put(
    "/{video_id}",
    response_model=APIResponse[VideoResponse],
    summary="Replace a video",
    description="Replace every editable field (fields left out become empty) of a video, "
    "as its owner or an admin. Send the `version` you read: if the video changed since, "
    "the answer is 409 and nothing is saved. A new script or template sends a rendered "
    "video back to `pending`. A video being rendered cannot be edited (409).",
    response_description="The video as saved",
    responses={**ok({**EXAMPLES["video"], "version": 2}, message="Video updated"), **_EDIT_ERRORS},
)
async def replace_video(
    video_id: uuid.UUID, body: VideoUpdate, user: CurrentUser, videos: VideoServiceDep
) -> APIResponse[VideoResponse]:
    """Replace a video's editable fields (optimistic locking on `version`)."""
    video = await videos.update_video(video_id, body.model_dump(), user)
    return APIResponse.ok(video, message="Video updated")


@router.patch(
    "/{video_id}",
    response_model=APIResponse[VideoResponse],
    summary="Change a video",
    description="Change only the fields sent, as the owner or an admin, with the `version` "
    "you read (409 when stale). The rules of PUT apply.",
    response_description="The video as saved",
    responses={**ok({**EXAMPLES["video"], "version": 2}, message="Video updated"), **_EDIT_ERRORS},
)
async def update_video(
    video_id: uuid.UUID, body: VideoPatch, user: CurrentUser, videos: VideoServiceDep
) -> APIResponse[VideoResponse]:
    """Change some of a video's fields (optimistic locking on `version`)."""
    video = await videos.update_video(video_id, body.model_dump(exclude_unset=True), user)
    return APIResponse.ok(video, message="Video updated")


@router.delete(
    "/{video_id}",
    status_code=204,
    summary="Delete a video",
    description="Delete a video and its engagement history, as its owner or an admin.",
    response_description="Deleted; no body",
    responses=errors(401, 403, 404, 422, e404=_NOT_FOUND, e422=INVALID_PATH),
)
async def delete_video(video_id: uuid.UUID, user: CurrentUser, videos: VideoServiceDep) -> None:
    """Delete a video (only the owner or an admin)."""
    await videos.delete_video(video_id, user)


@router.post(
    "/{video_id}/process",
    response_model=APIResponse[VideoResponse],
    status_code=202,
    summary="Render a video",
    description="Start rendering a `pending` or `failed` video, as its owner or an admin. "
    "The answer comes at once (202); the video then moves to `processing` and on to "
    "`completed`, or `failed` with a `failure_reason` (a video without a script fails). "
    "Poll `GET /videos/{video_id}` to follow it. A video already rendering or rendered "
    "answers 409.",
    response_description="Accepted; the video as it was when rendering was requested",
    responses={
        **ok(EXAMPLES["video"], message="Processing started", status=202),
        **errors(
            401,
            403,
            404,
            409,
            422,
            e404=_NOT_FOUND,
            e409=ErrorDetail(
                code="video_busy",
                message="Only pending or failed videos can be processed; this one is completed",
            ),
            e422=INVALID_PATH,
        ),
    },
)
async def process_video(
    video_id: uuid.UUID,
    user: CurrentUser,
    videos: VideoServiceDep,
    background: BackgroundTasks,
    database: DatabaseDep,
    cache: Cache,
    settings: SettingsDep,
) -> APIResponse[VideoResponse]:
    """Queue the video for rendering."""
    video = await videos.request_processing(video_id, user)
    background.add_task(
        render_video, database, cache, video_id, render_seconds=settings.render_seconds
    )
    return APIResponse.ok(video, message="Processing started")


@router.post(
    "/{video_id}/engagements",
    response_model=APIResponse[EngagementResponse],
    status_code=201,
    summary="Record an engagement",
    description="Record that the caller viewed, liked, shared or commented on a rendered "
    "video. A video that is not `completed` answers 409.",
    response_description="The recorded engagement",
    responses={
        **ok(EXAMPLES["engagement"], message="Engagement recorded", status=201),
        **errors(
            400,
            401,
            404,
            409,
            422,
            e404=_NOT_FOUND,
            e409=ErrorDetail(code="video_not_ready", message="The video is not rendered yet"),
            e422=ErrorDetail(
                code="enum",
                message="Input should be 'view', 'like', 'share' or 'comment'",
                field="body.kind",
            ),
        ),
    },
)
async def record_engagement(
    video_id: uuid.UUID, body: EngagementCreate, user: CurrentUser, videos: VideoServiceDep
) -> APIResponse[EngagementResponse]:
    """Record a view, like, share or comment."""
    engagement = await videos.record_engagement(video_id, body.kind, user)
    return APIResponse.ok(engagement, message="Engagement recorded")


@router.get(
    "/{video_id}/analytics",
    response_model=APIResponse[VideoAnalyticsResponse],
    summary="Video analytics",
    description="Views, distinct viewers, likes, shares, comments and the engagement rate of "
    "a video, for its owner or an admin. Computed live in one query.",
    response_description="The video's figures",
    responses={
        **ok(EXAMPLES["analytics"]),
        **errors(401, 403, 404, 422, e404=_NOT_FOUND, e422=INVALID_PATH),
    },
)
async def get_video_analytics(
    video_id: uuid.UUID, user: CurrentUser, videos: VideoServiceDep
) -> APIResponse[VideoAnalyticsResponse]:
    """Get analytics for a specific video."""
    return APIResponse.ok(await videos.get_analytics(video_id, user))
