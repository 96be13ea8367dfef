"""FastAPI dependencies: services bound to the request's session, and who is calling.

Each service gets the request's one session (committed when the route
returns, before the response is sent) and the app's cache.
"""

from typing import Annotated

from fastapi import Depends, Request

from examples.video_app.models import User
from examples.video_app.services import TemplateService, UserService, VideoService
from examples.video_app.settings import VideoAppSettings
from heygen_conventions import (
    CacheBackend,
    Database,
    DBSession,
    JWTAuth,
    get_auth,
    get_cache,
    get_components,
    get_current_user,
    require_admin_role,
)

Cache = Annotated[CacheBackend, Depends(get_cache)]


def get_user_service(session: DBSession) -> UserService:
    """User service on the request's session."""
    return UserService(session)


def get_video_service(session: DBSession, cache: Cache) -> VideoService:
    """Video service on the request's session and the app's cache."""
    return VideoService(session, cache)


def get_template_service(session: DBSession, cache: Cache) -> TemplateService:
    """Template service on the request's session and the app's cache."""
    return TemplateService(session, cache)


def get_database(request: Request) -> Database:
    """The app's database, for work outside the request's transaction (background jobs)."""
    return get_components(request.app).database


def get_settings(request: Request) -> VideoAppSettings:
    """The settings the app was created with."""
    settings = get_components(request.app).settings
    if not isinstance(settings, VideoAppSettings):  # pragma: no cover - create_app ensures it
        raise TypeError("the app was not created by examples.video_app.main.create_app")
    return settings


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
VideoServiceDep = Annotated[VideoService, Depends(get_video_service)]
TemplateServiceDep = Annotated[TemplateService, Depends(get_template_service)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[VideoAppSettings, Depends(get_settings)]
AuthDep = Annotated[JWTAuth, Depends(get_auth)]
#: The signed-in user (401 without a valid token).
CurrentUser = Annotated[User, Depends(get_current_user)]
#: The signed-in user when an admin (401 without a token, 403 for other users).
AdminUser = Annotated[User, Depends(require_admin_role)]
