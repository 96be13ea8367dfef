"""Configuration of the video platform: the library's settings plus its own."""

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from heygen_conventions import Settings

#: The demo administrator's password when none is configured; public, so never in production.
DEMO_ADMIN_PASSWORD = "demo-admin-password"


class VideoAppSettings(Settings):
    """Everything the app reads from ``HEYGEN_*`` environment variables.

    The library's fields (database and Redis URLs, JWT keys, logging) keep
    their names; these add the demo account and the simulated rendering time.
    """

    model_config = SettingsConfigDict(
        env_prefix="HEYGEN_", env_file=None, extra="ignore", validate_default=True
    )

    app_name: str = Field(
        default="video-app", description="Service name, used in logs and cache keys."
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///./video_app.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite://... or postgresql+asyncpg://...",
    )
    demo_admin_email: str = Field(
        default="admin@example.com", description="Login of the administrator `seed` creates."
    )
    demo_admin_password: SecretStr = Field(
        default=SecretStr(DEMO_ADMIN_PASSWORD), description="Password of that administrator."
    )
    render_seconds: float = Field(
        default=2.0, ge=0, le=60, description="How long the simulated rendering of a video takes."
    )

    @model_validator(mode="after")
    def _no_public_password_in_production(self) -> Self:
        if self.is_production and self.demo_admin_password.get_secret_value() == (
            DEMO_ADMIN_PASSWORD
        ):
            raise ValueError(
                "HEYGEN_DEMO_ADMIN_PASSWORD is the public demo password; set a private one "
                f"for environment {self.environment!r}"
            )
        return self
