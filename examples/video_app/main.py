"""The application: ``create_app()`` builds it; ``app`` is the one uvicorn serves.

    uvicorn examples.video_app.main:app      # configured by HEYGEN_* variables

Run ``python -m examples.video_app migrate`` first on a new database (``make
demo`` and ``python -m examples.video_app`` do it for you).
"""

from typing import Any

from fastapi import APIRouter, FastAPI

from examples.video_app.docs import SERVER_ERRORS
from examples.video_app.routers import auth, health, templates, users, videos
from examples.video_app.security import make_user_loader
from examples.video_app.settings import VideoAppSettings
from heygen_conventions import CacheBackend, Database, setup_app

API_PREFIX = "/api/v1"
TOKEN_URL = f"{API_PREFIX}/auth/token"

DESCRIPTION = """
A HeyGen-style video platform built with **heygen-conventions**.

1. Register with `POST /api/v1/users`, then log in with the **Authorize** button
   (or `POST /api/v1/auth/token`).
2. Create a video, render it with `POST /api/v1/videos/{video_id}/process`,
   and follow its status.
3. Every answer, errors included, comes in the same envelope, with the
   request id in `metadata` and in the `X-Request-ID` header.
"""

TAGS = [
    {"name": "auth", "description": "Tokens: log in, refresh, log out."},
    {"name": "users", "description": "Registration, the caller's account and videos."},
    {"name": "videos", "description": "Create, render, watch and measure videos."},
    {"name": "templates", "description": "Looks for videos; admins manage them."},
    {"name": "health", "description": "Whether this instance can serve."},
]


def create_app(
    settings: VideoAppSettings | None = None,
    *,
    database: Database | None = None,
    cache: CacheBackend | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    """Build the API.

    Args:
        settings: Configuration; read from ``HEYGEN_*`` variables when omitted.
        database: Use this database instead of ``settings.database_url`` (tests).
        cache: Use this cache instead of the one the settings choose (tests).
        configure_logs: False leaves the process's logging as it is (tests).
    """
    settings = settings if settings is not None else VideoAppSettings()
    database = database if database is not None else Database.from_settings(settings)
    app = FastAPI(
        title="Video platform",
        description=DESCRIPTION,
        version="1.0.0",
        openapi_tags=TAGS,
    )
    setup_app(
        app,
        settings,
        user_loader=make_user_loader(database),
        database=database,
        cache=cache,
        token_url=TOKEN_URL,
        configure_logs=configure_logs,
    )
    api = APIRouter(prefix=API_PREFIX, responses=SERVER_ERRORS)
    for module in (auth, users, videos, templates, health):
        api.include_router(module.router)
    app.include_router(api)
    return app


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access (``uvicorn examples.video_app.main:app``),
    # not at import: importing create_app must not read the environment,
    # configure logging or open an engine.
    if name == "app":
        built = globals()["app"] = create_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
