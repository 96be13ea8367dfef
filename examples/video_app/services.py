"""Business rules: who may do what to a video, its life cycle, and its cache.

Services raise the library's errors (``NotFoundError`` and friends, or the
subclasses below); the exception handlers turn them into responses, so no
service knows about HTTP. ``VideoService`` reads videos through the cache and
invalidates them after the transaction that changed them commits.
"""

import asyncio
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from examples.video_app.models import (
    EngagementKind,
    Template,
    User,
    UserRole,
    Video,
    VideoStatus,
)
from examples.video_app.repositories import (
    EngagementRepository,
    TemplateRepository,
    UserRepository,
    VideoRepository,
)
from examples.video_app.schemas import (
    EngagementResponse,
    TemplateCreate,
    TemplateResponse,
    UserCreate,
    VideoAnalyticsResponse,
    VideoCreate,
    VideoResponse,
)
from examples.video_app.security import hash_password, verify_password
from heygen_conventions import (
    AuthenticationError,
    CacheBackend,
    CachedServiceMixin,
    ConflictError,
    CursorPage,
    Database,
    NotFoundError,
    PageParams,
    PaginatedResponse,
    ensure_owner_or_admin,
    get_logger,
)

logger = get_logger(__name__)

#: Speaking rate used to estimate a rendered video's length.
WORDS_PER_SECOND = 2.5
#: Bytes per second of rendered video (about 2 Mbit/s).
BYTES_PER_SECOND = 250_000


class VideoNotFoundError(NotFoundError):
    """Raised when no video has the requested id."""

    code = "video_not_found"
    default_message = "Video not found"


class TemplateNotFoundError(NotFoundError):
    """Raised when no template has the requested id."""

    code = "template_not_found"
    default_message = "Template not found"


class VideoBusyError(ConflictError):
    """Raised when a video cannot change in its current status (it is rendering, or done)."""

    code = "video_busy"


class VideoNotReadyError(ConflictError):
    """Raised when viewers interact with a video that is not rendered yet."""

    code = "video_not_ready"
    default_message = "The video is not rendered yet"


def _is_admin(user: User) -> bool:
    return user.role == UserRole.ADMIN


class UserService:
    """Registration and password login."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = UserRepository(session)

    async def register(self, data: UserCreate, *, role: UserRole = UserRole.USER) -> User:
        """Create an account; an email already registered answers 409 (naming the field)."""
        hashed = await hash_password(data.password)
        user = await self.repository.create(
            {
                "email": data.email,
                "full_name": data.full_name,
                "hashed_password": hashed,
                "role": role,
            }
        )
        logger.info("User registered", new_user_id=str(user.id), role=role.value)
        return user

    async def authenticate(self, email: str, password: str) -> User:
        """The user with these credentials.

        Raises:
            AuthenticationError: Unknown email or wrong password (the same
                answer for both), or a disabled account.
        """
        user = await self.repository.get_by_email(email)
        valid, new_hash = await verify_password(
            password, user.hashed_password if user is not None else None
        )
        if user is None or not valid:
            logger.info("Login refused", reason="invalid_credentials")
            raise AuthenticationError("Incorrect email or password", code="invalid_credentials")
        if not user.is_active:
            raise AuthenticationError("User is inactive", code="inactive_user")
        if new_hash is not None:  # the hashing parameters were raised since
            await self.repository.update(user, {"hashed_password": new_hash})
        return user


class TemplateService:
    """Templates: anyone lists them, admins add and remove them."""

    def __init__(self, session: AsyncSession, cache: CacheBackend) -> None:
        self.session = session
        self.cache = cache
        self.repository = TemplateRepository(session)

    async def list_templates(self, params: PageParams) -> PaginatedResponse[TemplateResponse]:
        page = await self.repository.paginate(params)
        return PaginatedResponse[TemplateResponse].model_validate(page, from_attributes=True)

    async def create_template(self, data: TemplateCreate) -> TemplateResponse:
        """Add a template; a name already taken answers 409."""
        template = await self.repository.create(data)
        logger.info("Template created", template_id=str(template.id))
        return TemplateResponse.model_validate(template)

    async def delete_template(self, template_id: uuid.UUID) -> None:
        """Remove a template; the videos using it keep their content and lose the link."""
        template: Template | None = await self.repository.get_by_id(template_id)
        if template is None:
            raise TemplateNotFoundError()
        await self.repository.delete(template)
        # The database set those videos' template_id to NULL: drop every cached video.
        await VideoService(self.session, self.cache).invalidate_namespace()
        logger.info("Template deleted", template_id=str(template_id))


class VideoService(CachedServiceMixin):
    """Videos: creation, cached reads, guarded edits, rendering and analytics.

    Attributes:
        session: The unit of work; cache invalidations wait for its commit.
        cache: Where ``get_video`` reads through.
        repository: Video data access.
    """

    cache_namespace = "videos"
    cache_ttl = 300

    def __init__(self, session: AsyncSession, cache: CacheBackend) -> None:
        """Bind the service to a session (the request's or a job's) and the app's cache."""
        self.session = session
        self.cache = cache
        self.repository = VideoRepository(session)

    # --- reads ---------------------------------------------------------------

    async def get_video(self, video_id: uuid.UUID) -> VideoResponse:
        """The video, from the cache or the database (a missing id is cached briefly too).

        Raises:
            VideoNotFoundError: No video has this id (404).
        """
        video = await self.cached(
            video_id, lambda: self.repository.get_by_id(video_id), model=VideoResponse
        )
        if video is None:
            raise VideoNotFoundError()
        return video

    async def list_videos(
        self, params: PageParams, user: User, *, status: VideoStatus | None = None
    ) -> PaginatedResponse[VideoResponse]:
        """A page of the caller's videos (every user's for an admin)."""
        filters: dict[str, Any] = {} if _is_admin(user) else {"user_id": user.id}
        if status is not None:
            filters["status"] = status
        page = await self.repository.paginate(params, **filters)
        return PaginatedResponse[VideoResponse].model_validate(page, from_attributes=True)

    async def feed(
        self, user: User, *, cursor: str | None, limit: int, status: VideoStatus | None = None
    ) -> CursorPage[VideoResponse]:
        """The caller's videos newest first, by keyset: page 1,000 costs what page 1 does."""
        filters: dict[str, Any] = {"user_id": user.id}
        if status is not None:
            filters["status"] = status
        page = await self.repository.paginate_cursor(
            cursor=cursor, limit=limit, sort="-created_at", **filters
        )
        return CursorPage[VideoResponse].model_validate(page, from_attributes=True)

    async def get_analytics(self, video_id: uuid.UUID, user: User) -> VideoAnalyticsResponse:
        """Audience figures, for the owner or an admin; one query."""
        found = await self.repository.analytics(video_id)
        if found is None:
            raise VideoNotFoundError()
        owner_id, analytics = found
        ensure_owner_or_admin(user, owner_id)
        return analytics

    # --- writes --------------------------------------------------------------

    async def create_video(self, data: VideoCreate, user: User) -> VideoResponse:
        """A new ``pending`` video owned by ``user``; an unknown template answers 422."""
        logger.info("Creating video", has_script=data.script is not None)
        video = await self.repository.create({**data.model_dump(), "user_id": user.id})
        logger.info("Video created", video_id=str(video.id), status=video.status.value)
        return VideoResponse.model_validate(video)

    async def _owned(self, video_id: uuid.UUID, user: User) -> Video:
        video = await self.repository.get_by_id(video_id)
        if video is None:
            raise VideoNotFoundError()
        ensure_owner_or_admin(user, video.user_id)
        return video

    async def update_video(
        self, video_id: uuid.UUID, changes: dict[str, Any], user: User
    ) -> VideoResponse:
        """Apply ``changes`` (which carry the ``version`` the client read).

        A new script or template sends a rendered (or failed) video back to
        ``pending``: it must be rendered again.

        Raises:
            VideoNotFoundError: No such video (404).
            PermissionDeniedError: Neither the owner nor an admin (403).
            ConflictError: Stale ``version`` (409, code ``conflict``), or the
                video is rendering (409, ``video_busy``).
        """
        video = await self._owned(video_id, user)
        if video.status == VideoStatus.PROCESSING:
            raise VideoBusyError("The video is being rendered; edit it once it is done")
        content_changed = any(
            key in changes and changes[key] != getattr(video, key)
            for key in ("script", "template_id")
        )
        if content_changed and video.status in (VideoStatus.COMPLETED, VideoStatus.FAILED):
            changes = {
                **changes,
                "status": VideoStatus.PENDING,
                "duration": None,
                "file_size": None,
                "failure_reason": None,
            }
        video = await self.repository.update(video, changes)
        await self.invalidate(video_id)
        logger.info("Video updated", video_id=str(video_id), version=video.version)
        return VideoResponse.model_validate(video)

    async def delete_video(self, video_id: uuid.UUID, user: User) -> None:
        """Delete the video and its engagements (owner or admin)."""
        video = await self._owned(video_id, user)
        await self.repository.delete(video)
        await self.invalidate(video_id)
        logger.info("Video deleted", video_id=str(video_id))

    async def request_processing(self, video_id: uuid.UUID, user: User) -> VideoResponse:
        """Check that the video may be rendered now; the caller schedules :func:`render_video`.

        Raises:
            VideoBusyError: It is rendering or already rendered (409).
        """
        video = await self._owned(video_id, user)
        if video.status not in (VideoStatus.PENDING, VideoStatus.FAILED):
            raise VideoBusyError(
                f"Only pending or failed videos can be processed; this one is {video.status.value}"
            )
        logger.info("Video processing requested", video_id=str(video_id))
        return VideoResponse.model_validate(video)

    async def record_engagement(
        self, video_id: uuid.UUID, kind: EngagementKind, user: User
    ) -> EngagementResponse:
        """Record a view, like, share or comment on a rendered video."""
        video = await self.get_video(video_id)
        if video.status != VideoStatus.COMPLETED:
            raise VideoNotReadyError()
        engagement = await EngagementRepository(self.session).create(
            {"video_id": video_id, "kind": kind, "user_id": user.id}
        )
        return EngagementResponse.model_validate(engagement)

    # --- rendering (background jobs, each in a transaction of its own) -------

    async def start_rendering(self, video_id: uuid.UUID) -> bool:
        """``pending``/``failed`` -> ``processing``; False when another job got there first."""
        started = await self.repository.move_status(
            video_id,
            VideoStatus.PROCESSING,
            allowed_from=(VideoStatus.PENDING, VideoStatus.FAILED),
        )
        if started:
            await self.invalidate(video_id)
        return started

    async def finish_rendering(self, video_id: uuid.UUID) -> VideoStatus | None:
        """``processing`` -> ``completed`` (or ``failed`` without a script); None if gone."""
        video = await self.repository.get_by_id(video_id)
        if video is None or video.status != VideoStatus.PROCESSING:
            return None
        if not video.script:
            changes: dict[str, Any] = {
                "status": VideoStatus.FAILED,
                "failure_reason": "The video has no script to speak",
            }
        else:
            duration = max(1, round(len(video.script.split()) / WORDS_PER_SECOND))
            changes = {
                "status": VideoStatus.COMPLETED,
                "duration": duration,
                "file_size": duration * BYTES_PER_SECOND,
                "failure_reason": None,
            }
        await self.repository.update(video, changes)
        await self.invalidate(video_id)
        return video.status

    async def fail_rendering(self, video_id: uuid.UUID, reason: str) -> None:
        """``processing`` -> ``failed`` with ``reason`` (after an unexpected error)."""
        await self.repository.update_many(
            {"status": VideoStatus.FAILED, "failure_reason": reason},
            Video.id == video_id,
            status=VideoStatus.PROCESSING,
        )
        await self.invalidate(video_id)


async def render_video(
    database: Database, cache: CacheBackend, video_id: uuid.UUID, *, render_seconds: float
) -> None:
    """Render a video: ``pending`` -> ``processing`` -> ``completed`` or ``failed``.

    Runs after the response, as a background task: each step opens a unit of
    work of its own (``Database.transaction()``), never the request's session,
    which is closed by then. Its log lines carry the request's id.
    """
    log = logger.bind(video_id=str(video_id))
    try:
        async with database.transaction() as session:
            started = await VideoService(session, cache).start_rendering(video_id)
        if not started:
            log.info("Video processing skipped: no longer pending")
            return
        log.info("Video processing started", status=VideoStatus.PROCESSING.value)
        await asyncio.sleep(render_seconds)
        async with database.transaction() as session:
            status = await VideoService(session, cache).finish_rendering(video_id)
        if status is None:
            log.info("Video processing abandoned: the video was deleted")
        elif status == VideoStatus.FAILED:
            log.warning("Video processing failed", status=status.value)
        else:
            log.info("Video processing completed", status=status.value)
    except Exception:
        log.exception("Video processing crashed")
        try:
            async with database.transaction() as session:
                await VideoService(session, cache).fail_rendering(
                    video_id, "Rendering stopped on an internal error"
                )
        except Exception:
            log.exception("Could not mark the video failed")
