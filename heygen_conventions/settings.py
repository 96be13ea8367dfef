"""Application settings read from the environment.

One pydantic-settings model holds everything the library needs. Applications
subclass it to add their own fields or to change the environment prefix::

    class VideoSettings(Settings):
        model_config = SettingsConfigDict(env_prefix="VIDEOS_")
        max_upload_mb: int = 100

With no environment at all the defaults run the embedded stack: SQLite through
aiosqlite and an in-process cache. Outside ``development`` and ``test`` the
model refuses to build with a missing, default or short HMAC secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["DEVELOPMENT_JWT_SECRET", "MIN_HMAC_SECRET_BYTES", "Settings"]

#: The HMAC secret used when none is configured in development and test.
#: It is public, so production refuses it.
DEVELOPMENT_JWT_SECRET = "heygen-conventions-development-secret-do-not-deploy"  # noqa: S105

#: RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
MIN_HMAC_SECRET_BYTES = 32

Environment = Literal["development", "production", "test"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# SQLAlchemy's URL grammar (``name://user:password@host``, the password being
# anything up to an ``@``: ``/?#``, quotes and spaces included), extended over
# further ``@`` before the host, so ``user:p@ss@db`` hides ``p@ss`` whole.
_URL_PASSWORD = re.compile(r"\A(\s*[\w+.-]+://[^:/]*:)[^@]*@(?:[^/?#@]*@)*")


def _without_password(url: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", url)


class Settings(BaseSettings):
    """Configuration for every part of the library.

    Each field is read from ``<prefix><FIELD_NAME>`` (prefix ``HEYGEN_`` by
    default), e.g. ``HEYGEN_DATABASE_URL``. Durations accept seconds
    (``900``) or ISO 8601 (``PT15M``).
    """

    model_config = SettingsConfigDict(
        env_prefix="HEYGEN_",
        env_file=None,
        extra="ignore",
        validate_default=True,
        # A refused setting must not print the environment: URLs carry
        # passwords, and the JWT secret is one.
        hide_input_in_errors=True,
    )

    app_name: str = Field(
        default="heygen-app", description="Service name, used in logs and cache keys."
    )
    environment: Environment = Field(
        default="development",
        description="`production` refuses a missing, public or short JWT secret.",
    )
    debug: bool = Field(
        default=False,
        description="For the application's own use; error responses never change with it.",
    )

    database_url: str = Field(
        default="sqlite+aiosqlite:///./heygen.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite://... or postgresql+asyncpg://...",
    )
    database_pool_size: int = Field(default=5, ge=1, description="Pool size (PostgreSQL).")
    database_max_overflow: int = Field(
        default=10, ge=0, description="Extra connections over the pool."
    )
    database_pool_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a connection."
    )
    database_echo: bool = Field(default=False, description="Log every SQL statement.")
    database_hide_parameters: bool = Field(
        default=True,
        description="Keep bound parameters out of SQL error messages and logged statements; "
        "turn off only to debug locally.",
    )

    redis_url: str | None = Field(
        default=None, description="redis://... enables Redis; unset uses the in-process cache."
    )
    cache_ttl: timedelta = Field(
        default=timedelta(minutes=5), description="Default cache lifetime."
    )

    jwt_secret: SecretStr | None = Field(
        default=None, description="HMAC secret (HS256/384/512), at least 32 bytes."
    )
    jwt_private_key: SecretStr | None = Field(
        default=None, description="PEM private key for RS*/ES*/EdDSA signing."
    )
    jwt_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Verification keys by `kid` (PEM) for asymmetric algorithms and rotation.",
    )
    jwt_verification_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Older HMAC secrets by `kid`, accepted for verification only (rotation).",
    )
    jwt_signing_kid: str | None = Field(
        default=None, description="`kid` header of the tokens this service signs (key rotation)."
    )
    jwt_algorithm: str = Field(default="HS256", description="Signing algorithm.")
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted algorithms, comma-separated (`HS256,HS512`); defaults to "
        "[jwt_algorithm]. Never read from a token.",
    )
    jwt_access_token_ttl: timedelta = Field(
        default=timedelta(minutes=15), description="Access lifetime."
    )
    jwt_refresh_token_ttl: timedelta = Field(
        default=timedelta(days=7), description="Refresh lifetime."
    )
    jwt_max_token_lifetime: timedelta = Field(
        default=timedelta(days=30), description="Tokens whose exp - iat exceeds this are refused."
    )
    jwt_issuer: str | None = Field(default=None, description="`iss` to set and require.")
    jwt_audience: str | None = Field(default=None, description="`aud` to set and require.")
    jwt_leeway: timedelta = Field(default=timedelta(seconds=0), description="Clock skew allowed.")
    jwt_max_token_bytes: int = Field(
        default=8192, ge=512, description="Longer tokens are refused before any parsing."
    )

    cursor_secret: SecretStr | None = Field(
        default=None,
        description="Signs keyset-pagination cursors; defaults to jwt_secret. Set it when tokens "
        "use asymmetric keys, so every instance accepts the others' cursors.",
    )

    log_level: LogLevel = Field(default="INFO", description="Minimum level logged.")
    log_format: LogFormat = Field(
        default="auto",
        description="`json`, `console`, or `auto` (JSON unless stderr is a terminal).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("jwt_secret", "cursor_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # ``HEYGEN_JWT_SECRET=`` (a variable interpolated from nothing) or only
        # whitespace is no secret: missing, not a key anyone can guess.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "cache_ttl",
        "jwt_access_token_ttl",
        "jwt_refresh_token_ttl",
        "jwt_max_token_lifetime",
        "jwt_leeway",
        mode="before",
    )
    @classmethod
    def _seconds_from_env(cls, value: object) -> object:
        # Environment values are strings; a bare number means seconds.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @model_validator(mode="after")
    def _check_production_secrets(self) -> Settings:
        if not self.jwt_algorithms:
            self.jwt_algorithms = [self.jwt_algorithm]
        if self.jwt_algorithm not in _HMAC_ALGORITHMS:
            return self
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret is not None else None
        prefix = self.model_config.get("env_prefix", "")
        variable = f"{prefix}JWT_SECRET"
        if self.environment in ("development", "test"):
            if secret is None:
                # The public secret is for the embedded stack or an explicit
                # development environment; URLs of real servers with the
                # environment left at its default look like a deployment.
                embedded = self.database_url.startswith("sqlite") and not self.redis_url
                if not embedded and "environment" not in self.model_fields_set:
                    raise ValueError(
                        f"{variable} must be set: the database or Redis URL points at a server, "
                        f"so this looks like a deployment. Set {prefix}ENVIRONMENT=development "
                        "to use the public development secret instead"
                    )
                self.jwt_secret = SecretStr(DEVELOPMENT_JWT_SECRET)
            return self
        if secret is None:
            raise ValueError(
                f"{variable} must be set when environment is {self.environment!r}: "
                f"generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        # Padded or quoted (a secret file's newline), it is still a key anyone can try.
        if DEVELOPMENT_JWT_SECRET in secret:
            raise ValueError(
                f"{variable} is the public development secret; set a private one "
                f"for environment {self.environment!r}"
            )
        for kid, old in self.jwt_verification_secrets.items():
            # Verification secrets verify tokens as the signing secret does.
            if DEVELOPMENT_JWT_SECRET in old.get_secret_value():
                raise ValueError(
                    f"{prefix}JWT_VERIFICATION_SECRETS[{kid!r}] is the public development "
                    f"secret: anyone could sign tokens under that kid in environment "
                    f"{self.environment!r}"
                )
        if len(secret.encode()) < MIN_HMAC_SECRET_BYTES:
            raise ValueError(
                f"{variable} is {len(secret.encode())} bytes; {self.jwt_algorithm} needs at "
                f"least {MIN_HMAC_SECRET_BYTES} bytes in environment {self.environment!r}"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in ("database_url", "redis_url") and isinstance(value, str):
                value = _without_password(value)
            yield name, value

    @property
    def is_production(self) -> bool:
        """True outside development and test."""
        return self.environment not in ("development", "test")
