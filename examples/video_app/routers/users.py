"""Registration, the caller's profile and the caller's video feed: ``/api/v1/users``."""

from typing import Annotated

from fastapi import APIRouter, Query

from examples.video_app.dependencies import CurrentUser, UserServiceDep, VideoServiceDep
from examples.video_app.docs import cursor_page, errors, ok
from examples.video_app.models import VideoStatus
from examples.video_app.schemas import EXAMPLES, UserCreate, UserResponse, VideoResponse
from heygen_conventions import APIResponse, CursorPage, ErrorDetail

router = APIRouter(prefix="/users", tags=["users"])

MAX_CURSOR_LENGTH = 4096
MAX_FEED_LIMIT = 100


@router.post(
    "",
    response_model=APIResponse[UserResponse],
    status_code=201,
    summary="Register",
    description="Create an account with the `user` role. Passwords are stored as Argon2id "
    "hashes. An email already registered answers 409.",
    response_description="The new account",
    responses={
        **ok(EXAMPLES["user"], message="User registered", status=201),
        **errors(
            400,
            409,
            422,
            e409=ErrorDetail(
                code="unique_violation",
                message="A record with the same email already exists",
                field="email",
            ),
            e422=ErrorDetail(
                code="string_too_short",
                message="String should have at least 10 characters",
                field="body.password",
            ),
        ),
    },
)
async def register_user(body: UserCreate, users: UserServiceDep) -> APIResponse[UserResponse]:
    """Register a new user account."""
    user = await users.register(body)
    return APIResponse.ok(UserResponse.model_validate(user), message="User registered")


@router.get(
    "/me",
    response_model=APIResponse[UserResponse],
    summary="Who am I",
    description="The account the bearer token belongs to, as stored now (role included).",
    response_description="The caller's account",
    responses={**ok(EXAMPLES["user"]), **errors(401)},
)
async def read_current_user(user: CurrentUser) -> APIResponse[UserResponse]:
    """The signed-in user's account."""
    return APIResponse.ok(UserResponse.model_validate(user))


@router.get(
    "/me/videos",
    response_model=CursorPage[VideoResponse],
    summary="My videos, by cursor",
    description="The caller's videos, newest first, a page at a time by keyset cursor: pass "
    "`next_cursor` (or `previous_cursor`) back as `cursor` with the same `status`. Every "
    "page costs the same however deep. A cursor that was altered, belongs to another "
    "filter or is older than a day answers 400.",
    response_description="One page of videos",
    responses={
        **cursor_page(EXAMPLES["video"]),
        **errors(
            400,
            401,
            422,
            e400=ErrorDetail(
                code="invalid_cursor",
                message="The cursor was altered or signed by another key",
                field="cursor",
            ),
            e422=ErrorDetail(
                code="less_than_equal",
                message="Input should be less than or equal to 100",
                field="query.limit",
            ),
        ),
    },
)
async def list_my_videos(
    user: CurrentUser,
    videos: VideoServiceDep,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="Cursor from the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_LIMIT, description="Items per page.")] = 20,
    status: Annotated[VideoStatus | None, Query(description="Only videos in this status.")] = None,
) -> CursorPage[VideoResponse]:
    """Page through the caller's videos by keyset cursor."""
    return await videos.feed(user, cursor=cursor, limit=limit, status=status)
