"""Data access: one repository per model, on the library's ``BaseRepository``.

Repositories flush and never commit: the request's session (or the
background job's ``Database.transaction()``) commits once.
"""

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, distinct, func, select

from examples.video_app.models import (
    EngagementKind,
    Template,
    User,
    Video,
    VideoEngagement,
    VideoStatus,
)
from examples.video_app.schemas import VideoAnalyticsResponse
from heygen_conventions import BaseRepository, translate_db_errors


class UserRepository(BaseRepository[User]):
    """Users, found by id or by login email."""

    async def get_by_email(self, email: str) -> User | None:
        """The user with this (lower-case) email, or None."""
        return await self.get_one_or_none(email=email.lower())


class TemplateRepository(BaseRepository[Template]):
    """Templates, listed by name or age and searched by name and description."""

    sortable_fields = ("name", "created_at")
    searchable_fields = ("name", "description")
    default_sort = "name"


class VideoRepository(BaseRepository[Video]):
    """Videos, with the status transitions rendering needs and the analytics query."""

    sortable_fields = ("created_at", "updated_at", "title", "duration")
    searchable_fields = ("title", "description")
    default_sort = "-created_at"

    async def move_status(
        self, video_id: uuid.UUID, to: VideoStatus, *, allowed_from: Sequence[VideoStatus]
    ) -> bool:
        """Set ``to`` only if the video is still in one of ``allowed_from``; whether it was.

        One conditional UPDATE, so two workers (or two app instances) racing
        for the same video cannot both start rendering it.
        """
        changed = await self.update_many(
            {"status": to}, Video.id == video_id, Video.status.in_(list(allowed_from))
        )
        return changed == 1

    async def analytics(
        self, video_id: uuid.UUID
    ) -> tuple[uuid.UUID, VideoAnalyticsResponse] | None:
        """The owner and audience figures of a video in one query, or None if it does not exist.

        Every figure is a conditional aggregate over one outer join, so the
        cost is one round trip whatever the number of engagements.
        """
        kind = VideoEngagement.kind

        def counted(what: EngagementKind) -> ColumnElement[int]:
            return func.count(case((kind == what, 1)))

        statement = (
            select(
                Video.user_id,
                counted(EngagementKind.VIEW),
                func.count(distinct(case((kind == EngagementKind.VIEW, VideoEngagement.user_id)))),
                counted(EngagementKind.LIKE),
                counted(EngagementKind.SHARE),
                counted(EngagementKind.COMMENT),
            )
            .select_from(Video)
            .outerjoin(VideoEngagement, VideoEngagement.video_id == Video.id)
            .where(Video.id == video_id)
            .group_by(Video.id, Video.user_id)
        )
        with translate_db_errors():
            row = (await self.session.execute(statement)).one_or_none()
        if row is None:
            return None
        owner_id, views, unique_viewers, likes, shares, comments = row
        engaged = likes + shares + comments
        return owner_id, VideoAnalyticsResponse(
            video_id=video_id,
            views=views,
            unique_viewers=unique_viewers,
            likes=likes,
            shares=shares,
            comments=comments,
            engagement_rate=round(engaged / views, 4) if views else 0.0,
        )


class EngagementRepository(BaseRepository[VideoEngagement]):
    """Viewer interactions; written one at a time, read only as aggregates."""
