"""Request and response bodies (pydantic v2).

Request bodies refuse unknown fields (a misspelt field is a 422, not a
silent no-op) and normalise text before checking its length. Response models
read ORM rows directly (``from_attributes``) and describe every field.
"""

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from examples.video_app.models import (
    MAX_DESCRIPTION_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SCRIPT_LENGTH,
    MAX_TITLE_LENGTH,
    EngagementKind,
    UserRole,
    VideoStatus,
)
from heygen_conventions import APIResponse

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
#: Longer than any token the app issues; anything longer is refused unparsed.
MAX_TOKEN_LENGTH = 8192

_TITLE_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

EXAMPLE_USER_ID = "0192f6a4-8c1e-7a3b-9f10-2b7c3d4e5f60"
EXAMPLE_VIDEO_ID = "0192f6a5-1d2e-7c4f-8a9b-0c1d2e3f4a5b"
EXAMPLE_TEMPLATE_ID = "0192f6a3-5b6c-7d8e-9f0a-1b2c3d4e5f6a"


# What strip_whitespace strips (Unicode White_Space), as a regex character class body.
_WHITESPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _text_pattern(forbidden: str) -> str:
    """The documented form of a stripped text: something besides whitespace, none of ``forbidden``.

    Only documentation (``pattern`` in the schema, so that clients and
    generated requests know that ``" "`` is empty); the validators decide.
    """
    ws, visible = _WHITESPACE, f"[^{_WHITESPACE}{forbidden}]"
    return f"^[{ws}]*{visible}(?:[^{forbidden}]*{visible})?[{ws}]*$"


def _at_most(limit: int) -> BeforeValidator:
    """Refuse a text longer than ``limit`` as sent, before stripping shortens it.

    Last in its ``Annotated``, so that it wraps (runs before) the string
    constraints without changing how they apply.

    The documented ``maxLength`` is about what the client sends: without
    this, ``"a"`` padded with a thousand spaces would pass a 200 limit.
    """

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": limit},
            )
        return value

    return BeforeValidator(check)


def _title(value: str) -> str:
    if _TITLE_FORBIDDEN.search(value):
        raise ValueError('must not contain control characters nor any of < > : " / \\ | ? *')
    return value


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here gives one answer on every database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value) or "\x00" in value:
        raise ValueError("must be an email address")
    return value.lower()


_TEXT = Field(json_schema_extra={"pattern": _text_pattern(r"\x00")})
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_LENGTH),
    AfterValidator(_title),
    Field(json_schema_extra={"pattern": _text_pattern(r'<>:"/\\|?*\x00-\x1f\x7f')}),
    _at_most(MAX_TITLE_LENGTH),
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DESCRIPTION_LENGTH),
    AfterValidator(_no_nul),
    _TEXT,
    _at_most(MAX_DESCRIPTION_LENGTH),
]
Script = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SCRIPT_LENGTH),
    AfterValidator(_no_nul),
    _TEXT,
    _at_most(MAX_SCRIPT_LENGTH),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(_no_nul),
    _TEXT,
    _at_most(MAX_NAME_LENGTH),
]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=MAX_EMAIL_LENGTH),
    AfterValidator(_email),
    # Documented, so that clients (and generated requests) know any string will not do.
    Field(json_schema_extra={"format": "email"}),
    _at_most(MAX_EMAIL_LENGTH),
]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
Token = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH)]
AspectRatio = Literal["16:9", "9:16", "1:1"]


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseBody(BaseModel):
    """Base of response bodies: built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


# --- users and tokens ---------------------------------------------------------


class UserCreate(RequestBody):
    """What a person sends to register."""

    email: Email = Field(..., description="Login; stored lower-case.")
    password: Password = Field(
        ..., description=f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."
    )
    full_name: Name = Field(..., description="Name shown to other users.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct-horse-battery",
                    "full_name": "Ada Lovelace",
                }
            ]
        }
    )


class UserResponse(ResponseBody):
    """A user as the API shows it (never the password hash)."""

    id: uuid.UUID = Field(..., description="User ID.")
    email: str = Field(..., description="Login email.")
    full_name: str = Field(..., description="Display name.")
    role: UserRole = Field(..., description="`user` or `admin`.")
    is_active: bool = Field(..., description="False when the account is disabled.")
    created_at: datetime = Field(..., description="Registration time (UTC).")


class TokenPair(BaseModel):
    """Tokens issued at login or refresh."""

    access_token: str = Field(..., description="Bearer token for `Authorization` headers.")
    refresh_token: str = Field(..., description="Exchange it at `/auth/refresh` for new tokens.")
    token_type: Literal["bearer"] = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(..., description="Seconds until the access token expires.")


class TokenResponse(APIResponse[TokenPair]):
    """The envelope around the tokens, plus RFC 6749's fields at the top level.

    OAuth2 clients, the documentation's Authorize button among them, read
    ``access_token`` and ``token_type`` from the top of the body.
    """

    access_token: str = Field(..., description="Same as `data.access_token` (RFC 6749).")
    token_type: Literal["bearer"] = Field(
        default="bearer", description="Same as `data.token_type`."
    )
    expires_in: int = Field(..., description="Same as `data.expires_in`.")

    @classmethod
    def issue(cls, tokens: TokenPair, message: str) -> Self:
        return cls(
            success=True,
            message=message,
            data=tokens,
            access_token=tokens.access_token,
            token_type=tokens.token_type,
            expires_in=tokens.expires_in,
        )


class RefreshRequest(RequestBody):
    """A refresh token to exchange; it is spent by the exchange."""

    refresh_token: Token = Field(..., description="The refresh token from login or refresh.")


class LogoutRequest(RequestBody):
    """Optionally, the refresh token to revoke along with the access token."""

    refresh_token: Token | None = Field(default=None, description="Also revoke this refresh token.")
    # Strict: lax parsing would take 0 or "no" for false, which the schema does not allow.
    everywhere: bool = Field(
        default=False, strict=True, description="Revoke every token issued to this user so far."
    )


# --- templates --------------------------------------------------------------------


class TemplateCreate(RequestBody):
    """What an admin sends to add a template."""

    name: Name = Field(..., description="Unique template name.")
    description: Description | None = Field(
        default=None, description="What the template looks like."
    )
    aspect_ratio: AspectRatio = Field(
        default="16:9", description="Frame shape of the rendered videos."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Studio presenter",
                    "description": "Avatar at a desk, soft light",
                    "aspect_ratio": "16:9",
                }
            ]
        }
    )


class TemplateResponse(ResponseBody):
    """A template as the API shows it."""

    id: uuid.UUID = Field(..., description="Template ID.")
    name: str = Field(..., description="Unique template name.")
    description: str | None = Field(default=None, description="What the template looks like.")
    aspect_ratio: str = Field(..., description="Frame shape: `16:9`, `9:16` or `1:1`.")
    created_at: datetime = Field(..., description="Creation time (UTC).")


# --- videos -----------------------------------------------------------------------


class _VideoFields(RequestBody):
    @model_validator(mode="after")
    def _title_differs_from_description(self) -> Self:
        title = getattr(self, "title", None)
        description = getattr(self, "description", None)
        if title and description and title.casefold() == description.casefold():
            raise ValueError("title and description must differ")
        return self


class VideoCreate(_VideoFields):
    """What a user sends to create a video; it starts `pending`."""

    title: Title = Field(..., description="Video title.")
    description: Description | None = Field(default=None, description="Video description.")
    script: Script | None = Field(
        default=None, description="What the avatar says; needed to render."
    )
    template_id: uuid.UUID | None = Field(default=None, description="Template to render with.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "Quarterly update",
                    "description": "Numbers for the team",
                    "script": "Hello team, here is how the quarter went.",
                    "template_id": EXAMPLE_TEMPLATE_ID,
                }
            ]
        }
    )


class VideoUpdate(VideoCreate):
    """The whole editable video (PUT): fields left out become empty."""

    version: int = Field(
        ..., ge=1, strict=True, description="The `version` read; a stale one answers 409."
    )


class VideoPatch(_VideoFields):
    """The fields to change (PATCH); the others stay as they are."""

    title: Title | None = Field(default=None, description="Video title.")
    description: Description | None = Field(default=None, description="Video description.")
    script: Script | None = Field(default=None, description="What the avatar says.")
    template_id: uuid.UUID | None = Field(default=None, description="Template to render with.")
    version: int = Field(
        ..., ge=1, strict=True, description="The `version` read; a stale one answers 409."
    )

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set - {"version"}:
            raise ValueError("give at least one field to change besides version")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be removed")
        return self


class VideoResponse(ResponseBody):
    """A video as the API shows it."""

    id: uuid.UUID = Field(..., description="Video ID.")
    title: str = Field(..., description="Video title.")
    description: str | None = Field(default=None, description="Video description.")
    script: str | None = Field(default=None, description="What the avatar says.")
    template_id: uuid.UUID | None = Field(default=None, description="Template it renders with.")
    user_id: uuid.UUID = Field(..., description="Owner's user ID.")
    status: VideoStatus = Field(..., description="`pending`, `processing`, `completed`, `failed`.")
    duration: int | None = Field(default=None, description="Length in seconds, once rendered.")
    file_size: int | None = Field(default=None, description="Size in bytes, once rendered.")
    failure_reason: str | None = Field(default=None, description="Why rendering failed, if it did.")
    version: int = Field(..., description="Send it back with updates (optimistic locking).")
    created_at: datetime = Field(..., description="Creation time (UTC).")
    updated_at: datetime = Field(..., description="Last change (UTC).")


class EngagementCreate(RequestBody):
    """One viewer interaction to record."""

    kind: EngagementKind = Field(..., description="`view`, `like`, `share` or `comment`.")


class EngagementResponse(ResponseBody):
    """A recorded interaction."""

    id: uuid.UUID = Field(..., description="Engagement ID.")
    video_id: uuid.UUID = Field(..., description="The video.")
    kind: EngagementKind = Field(..., description="What the viewer did.")
    created_at: datetime = Field(..., description="When (UTC).")


class VideoAnalyticsResponse(BaseModel):
    """Audience figures of one video."""

    video_id: uuid.UUID = Field(..., description="The video.")
    views: int = Field(..., description="Times the video was viewed.")
    unique_viewers: int = Field(..., description="Distinct signed-in viewers.")
    likes: int = Field(..., description="Likes.")
    shares: int = Field(..., description="Shares.")
    comments: int = Field(..., description="Comments.")
    engagement_rate: float = Field(
        ..., description="(likes + shares + comments) / views; 0 without views."
    )


class HealthResponse(BaseModel):
    """Whether the instance and what it depends on are up."""

    status: Literal["ok", "degraded"] = Field(
        ..., description="`degraded` while the cache is down (answers come from the database)."
    )
    database: Literal["ok"] = Field(..., description="The database answered.")
    cache: Literal["ok", "unavailable"] = Field(..., description="The cache answered.")
    version: str = Field(..., description="Library version serving the API.")


#: Example bodies for the documentation, shared by the routes.
EXAMPLES: dict[str, dict[str, Any]] = {
    "user": {
        "id": EXAMPLE_USER_ID,
        "email": "ada@example.com",
        "full_name": "Ada Lovelace",
        "role": "user",
        "is_active": True,
        "created_at": "2026-01-15T10:30:00Z",
    },
    "tokens": {
        "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        "refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        "token_type": "bearer",
        "expires_in": 900,
    },
    "template": {
        "id": EXAMPLE_TEMPLATE_ID,
        "name": "Studio presenter",
        "description": "Avatar at a desk, soft light",
        "aspect_ratio": "16:9",
        "created_at": "2026-01-15T10:30:00Z",
    },
    "video": {
        "id": EXAMPLE_VIDEO_ID,
        "title": "Quarterly update",
        "description": "Numbers for the team",
        "script": "Hello team, here is how the quarter went.",
        "template_id": EXAMPLE_TEMPLATE_ID,
        "user_id": EXAMPLE_USER_ID,
        "status": "pending",
        "duration": None,
        "file_size": None,
        "failure_reason": None,
        "version": 1,
        "created_at": "2026-01-15T10:30:00Z",
        "updated_at": "2026-01-15T10:30:00Z",
    },
    "engagement": {
        "id": "0192f6a6-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
        "video_id": EXAMPLE_VIDEO_ID,
        "kind": "view",
        "created_at": "2026-01-15T11:00:00Z",
    },
    "analytics": {
        "video_id": EXAMPLE_VIDEO_ID,
        "views": 120,
        "unique_viewers": 87,
        "likes": 14,
        "shares": 3,
        "comments": 7,
        "engagement_rate": 0.2,
    },
}
