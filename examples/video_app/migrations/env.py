"""Alembic environment: the library's async runner, on this application's tables.

``alembic -c examples/video_app/alembic.ini upgrade head`` migrates the
database of ``HEYGEN_DATABASE_URL``; ``python -m examples.video_app migrate``
does the same in-process.
"""

from alembic import context

# Importing the hooks also registers the models on Base.
from examples.video_app.models import include_name, include_object
from examples.video_app.settings import VideoAppSettings
from heygen_conventions import Base
from heygen_conventions.migrations import run_migrations

config = context.config
url = None
if config.attributes.get("connection") is None and not config.get_main_option("sqlalchemy.url"):
    url = VideoAppSettings().database_url

run_migrations(Base.metadata, url=url, include_name=include_name, include_object=include_object)
