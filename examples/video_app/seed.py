"""Demo data: an admin, two templates and a few videos (one with an audience).

Idempotent: every row has a fixed key (the admin's email, the templates'
names, the videos' ids), and rows already there are left as they are.
"""

import uuid
from dataclasses import dataclass

from examples.video_app.models import EngagementKind, User, UserRole, VideoStatus
from examples.video_app.repositories import (
    EngagementRepository,
    TemplateRepository,
    UserRepository,
    VideoRepository,
)
from examples.video_app.schemas import UserCreate
from examples.video_app.services import UserService
from examples.video_app.settings import VideoAppSettings
from heygen_conventions import Database, get_logger

logger = get_logger(__name__)

_NAMESPACE = uuid.UUID("6f1d2c3b-4a59-4e8f-9a0b-1c2d3e4f5a6b")

DEMO_TEMPLATES = [
    {"name": "Studio presenter", "description": "Avatar at a desk, soft light"},
    {
        "name": "Vertical short",
        "description": "Full-body avatar for phones",
        "aspect_ratio": "9:16",
    },
]


@dataclass(frozen=True)
class DemoVideo:
    """One demo video; ``key`` fixes its id."""

    key: str
    title: str
    description: str | None
    script: str | None
    status: VideoStatus
    template: str | None


DEMO_VIDEOS = [
    DemoVideo(
        key="welcome",
        title="Welcome to the platform",
        description="A tour in under a minute",
        script="Hello and welcome. In the next minute you will see how to make a video.",
        status=VideoStatus.COMPLETED,
        template="Studio presenter",
    ),
    DemoVideo(
        key="launch",
        title="Product launch teaser",
        description="For the newsletter",
        script="Something new is coming. Stay tuned.",
        status=VideoStatus.PENDING,
        template="Vertical short",
    ),
    DemoVideo(
        key="draft",
        title="Untitled draft",
        description=None,
        script=None,
        status=VideoStatus.PENDING,
        template=None,
    ),
]
# Engagements of the completed demo video: (kind, how many).
DEMO_AUDIENCE = [
    (EngagementKind.VIEW, 40),
    (EngagementKind.LIKE, 9),
    (EngagementKind.SHARE, 2),
    (EngagementKind.COMMENT, 3),
]


@dataclass
class SeedReport:
    """What a seeding run added (zeros on a re-run)."""

    admin_created: bool
    templates_created: int
    videos_created: int


def demo_video_id(key: str) -> uuid.UUID:
    """The fixed id of a demo video."""
    return uuid.uuid5(_NAMESPACE, f"video:{key}")


async def seed(database: Database, settings: VideoAppSettings) -> SeedReport:
    """Add the demo data that is missing, in one transaction."""
    async with database.transaction() as session:
        users = UserRepository(session)
        admin: User | None = await users.get_by_email(settings.demo_admin_email)
        admin_created = admin is None
        if admin is None:
            account = UserCreate(
                email=settings.demo_admin_email,
                password=settings.demo_admin_password.get_secret_value(),
                full_name="Demo Admin",
            )
            admin = await UserService(session).register(account, role=UserRole.ADMIN)

        templates = TemplateRepository(session)
        template_ids: dict[str, uuid.UUID] = {}
        templates_created = 0
        for values in DEMO_TEMPLATES:
            template = await templates.get_one_or_none(name=values["name"])
            if template is None:
                template = await templates.create(values)
                templates_created += 1
            template_ids[template.name] = template.id

        videos = VideoRepository(session)
        videos_created = 0
        for spec in DEMO_VIDEOS:
            video_id = demo_video_id(spec.key)
            if await videos.exists(id=video_id):
                continue
            done = spec.status == VideoStatus.COMPLETED
            await videos.create(
                {
                    "id": video_id,
                    "title": spec.title,
                    "description": spec.description,
                    "script": spec.script,
                    "status": spec.status,
                    "template_id": template_ids[spec.template] if spec.template else None,
                    "user_id": admin.id,
                    "duration": 6 if done else None,
                    "file_size": 1_500_000 if done else None,
                }
            )
            videos_created += 1
            if done:
                await EngagementRepository(session).insert_many(
                    {"video_id": video_id, "kind": kind}
                    for kind, count in DEMO_AUDIENCE
                    for _ in range(count)
                )
    report = SeedReport(admin_created, templates_created, videos_created)
    logger.info(
        "Demo data seeded",
        admin_created=report.admin_created,
        templates_created=report.templates_created,
        videos_created=report.videos_created,
    )
    return report
