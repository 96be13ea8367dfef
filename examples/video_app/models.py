"""Database models: users, templates, videos and their engagement events.

They derive from the library's ``Base`` (constraint names Alembic can
reproduce) and mixins: UUIDv7 primary keys, per-row UTC timestamps, and a
``version`` column for optimistic locking on videos.
"""

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from heygen_conventions import Base, TimestampMixin, UUIDPrimaryKeyMixin, VersionMixin

MAX_TITLE_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 1000
MAX_SCRIPT_LENGTH = 5000
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100


class UserRole(enum.StrEnum):
    """What a user may do: ``admin`` also manages templates and every video."""

    USER = "user"
    ADMIN = "admin"


class VideoStatus(enum.StrEnum):
    """Where a video is in its life: created, rendering, rendered, or failed to render."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class EngagementKind(enum.StrEnum):
    """What a viewer did with a rendered video."""

    VIEW = "view"
    LIKE = "like"
    SHARE = "share"
    COMMENT = "comment"


def _now() -> datetime:
    return datetime.now(UTC)


def _enum_column(enum_class: type[enum.StrEnum]) -> Enum:
    # Stored as the values ("pending"), in a VARCHAR on every database:
    # adding a status later needs no ALTER TYPE.
    return Enum(
        enum_class,
        native_enum=False,
        length=20,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class User(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A person who logs in; ``role`` is read at every request, never from the token."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(MAX_EMAIL_LENGTH), unique=True)
    full_name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    hashed_password: Mapped[str] = mapped_column(String(255))
    role: Mapped[UserRole] = mapped_column(_enum_column(UserRole), default=UserRole.USER)
    is_active: Mapped[bool] = mapped_column(default=True)


class Template(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A look for videos (avatar, background, aspect ratio), managed by admins."""

    __tablename__ = "templates"

    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)
    description: Mapped[str | None] = mapped_column(String(MAX_DESCRIPTION_LENGTH), default=None)
    aspect_ratio: Mapped[str] = mapped_column(String(10), default="16:9")


class Video(UUIDPrimaryKeyMixin, TimestampMixin, VersionMixin, Base):
    """A video a user creates from a script; rendering fills in duration and size."""

    __tablename__ = "videos"
    __table_args__ = (
        # The listing a user sees most: their own videos, newest first.
        Index("ix_videos_user_id_created_at", "user_id", "created_at"),
    )

    title: Mapped[str] = mapped_column(String(MAX_TITLE_LENGTH), index=True)
    description: Mapped[str | None] = mapped_column(String(MAX_DESCRIPTION_LENGTH), default=None)
    script: Mapped[str | None] = mapped_column(Text(), default=None)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("templates.id", ondelete="SET NULL"), default=None, index=True
    )
    status: Mapped[VideoStatus] = mapped_column(
        _enum_column(VideoStatus), default=VideoStatus.PENDING, index=True
    )
    duration: Mapped[int | None] = mapped_column(default=None)
    file_size: Mapped[int | None] = mapped_column(default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(200), default=None)


class VideoEngagement(UUIDPrimaryKeyMixin, Base):
    """One view, like, share or comment on a video; analytics aggregate them."""

    __tablename__ = "video_engagements"
    __table_args__ = (Index("ix_video_engagements_video_id_kind", "video_id", "kind"),)

    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[EngagementKind] = mapped_column(_enum_column(EngagementKind))
    created_at: Mapped[datetime] = mapped_column(default=_now)


#: The tables this application owns. ``Base.metadata`` is shared by every model
#: imported in the process; migrations compare and create these only.
TABLES = frozenset({"users", "templates", "videos", "video_engagements"})


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic ``include_name`` hook: leave other applications' tables alone."""
    return type_ != "table" or name in TABLES


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic ``include_object`` hook: this application's models only, though
    other code in the process (a library, a test) declared tables on ``Base`` too."""
    return type_ != "table" or name in TABLES
