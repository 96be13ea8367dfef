from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url

from heygen_conventions import Settings
from heygen_conventions.settings import DEVELOPMENT_JWT_SECRET
from tests.typecheck import mypy_strict

STRONG = "k" * 48


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("HEYGEN_", "VIDEOS_")):
            monkeypatch.delenv(name)


def test_defaults_run_the_embedded_stack() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./heygen.db"
    assert settings.redis_url is None
    assert settings.environment == "development"
    assert settings.jwt_algorithms == ["HS256"]
    assert not settings.is_production


def test_development_gets_the_public_secret() -> None:
    secret = Settings().jwt_secret
    assert secret is not None
    assert secret.get_secret_value() == DEVELOPMENT_JWT_SECRET


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYGEN_DATABASE_URL", "postgresql+asyncpg://db/app")
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "development")
    monkeypatch.setenv("HEYGEN_JWT_ACCESS_TOKEN_TTL", "PT5M")
    monkeypatch.setenv("HEYGEN_JWT_LEEWAY", "10")
    monkeypatch.setenv("HEYGEN_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://db/app"
    assert settings.jwt_access_token_ttl == timedelta(minutes=5)
    assert settings.jwt_leeway == timedelta(seconds=10)
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "HEYGEN_JWT_SECRET must be set"),
        (DEVELOPMENT_JWT_SECRET, "public development secret"),
        ("short-secret", "needs at least 32 bytes"),
        ("x" * 31, "is 31 bytes"),
    ],
)
def test_production_refuses_weak_secrets(
    monkeypatch: pytest.MonkeyPatch, secret: str | None, message: str
) -> None:
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "production")
    if secret is not None:
        monkeypatch.setenv("HEYGEN_JWT_SECRET", secret)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_production_accepts_a_strong_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "production")
    monkeypatch.setenv("HEYGEN_JWT_SECRET", STRONG)
    settings = Settings()
    assert settings.is_production
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == STRONG


def test_multibyte_secret_is_measured_in_bytes() -> None:
    # 11 characters, 33 bytes: long enough.
    Settings(environment="production", jwt_secret="é" * 11 + "abcdefghijk")  # type: ignore[arg-type]


def test_secrets_never_appear_in_repr_or_dump() -> None:
    settings = Settings(environment="production", jwt_secret=STRONG)  # type: ignore[arg-type]
    assert STRONG not in repr(settings)
    assert STRONG not in str(settings.model_dump())
    assert STRONG not in settings.model_dump_json()


def test_asymmetric_algorithm_needs_no_hmac_secret() -> None:
    settings = Settings(environment="production", jwt_algorithm="RS256")
    assert settings.jwt_secret is None
    assert settings.jwt_algorithms == ["RS256"]


def test_subclass_with_its_own_prefix_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class VideoSettings(Settings):
        model_config = SettingsConfigDict(env_prefix="VIDEOS_")
        max_upload_mb: int = 100

    monkeypatch.setenv("VIDEOS_MAX_UPLOAD_MB", "7")
    assert VideoSettings().max_upload_mb == 7
    monkeypatch.setenv("VIDEOS_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="VIDEOS_JWT_SECRET"):
        VideoSettings()


def test_invalid_values_are_clear_errors() -> None:
    with pytest.raises(ValidationError, match="environment"):
        Settings(environment="staging")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="log_level"):
        Settings(log_level="LOUD")  # type: ignore[arg-type]


def test_servers_without_an_explicit_environment_need_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEYGEN_DATABASE_URL", "postgresql+asyncpg://app@db/app")
    with pytest.raises(ValidationError, match="looks like a deployment"):
        Settings()
    monkeypatch.delenv("HEYGEN_DATABASE_URL")
    monkeypatch.setenv("HEYGEN_REDIS_URL", "redis://cache:6379/0")
    with pytest.raises(ValidationError, match="HEYGEN_ENVIRONMENT=development"):
        Settings()
    # Saying so explicitly, or giving a secret, is enough.
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "development")
    assert Settings().jwt_secret is not None
    monkeypatch.delenv("HEYGEN_ENVIRONMENT")
    monkeypatch.setenv("HEYGEN_JWT_SECRET", STRONG)
    secret = Settings().jwt_secret
    assert secret is not None
    assert secret.get_secret_value() == STRONG


def test_a_refused_configuration_never_prints_the_secrets_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEYGEN_DATABASE_URL", "postgresql+asyncpg://app:S3cretPassw0rd@db/app")
    with pytest.raises(ValidationError) as missing_secret:
        Settings()
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "production")
    monkeypatch.setenv("HEYGEN_JWT_SECRET", "tooShortButReal")
    with pytest.raises(ValidationError) as short_secret:
        Settings()
    for caught in (missing_secret, short_secret):
        text = str(caught.value)
        assert "S3cretPassw0rd" not in text
        assert "tooShortButReal" not in text
    assert "HEYGEN_JWT_SECRET is 15 bytes" in str(short_secret.value)  # the reason stays


def test_the_embedded_stack_keeps_the_development_secret() -> None:
    secret = Settings(database_url="sqlite+aiosqlite:///./x.db").jwt_secret
    assert secret is not None
    assert secret.get_secret_value() == DEVELOPMENT_JWT_SECRET


def test_urls_show_no_password_in_repr() -> None:
    settings = Settings(
        environment="test",
        database_url="postgresql+asyncpg://app:hunter2@db/app",
        redis_url="redis://:redispass@cache:6379/0",
    )
    shown = repr(settings)
    assert "hunter2" not in shown
    assert "redispass" not in shown
    assert "postgresql+asyncpg://app:***@db/app" in shown
    assert settings.database_url == "postgresql+asyncpg://app:hunter2@db/app"


@pytest.mark.parametrize(
    "password", ["k3J/9xQ+Zt", "Tr0ub4dor?x", "hunter#22x", "s3cr3t p4ss", "it's\"<ok>"]
)
def test_url_passwords_holding_any_character_show_as_sqlalchemy_hides_them(password: str) -> None:
    database_url = f"postgresql+asyncpg://app:{password}@db.internal:5432/app"
    redis_url = f"redis://default:{password}@cache:6379/0"
    settings = Settings(environment="test", database_url=database_url, redis_url=redis_url)
    shown = repr(settings)
    assert password not in shown
    assert make_url(database_url).password == password
    assert f"database_url='{make_url(database_url).render_as_string(hide_password=True)}'" in shown
    assert "redis_url='redis://default:***@cache:6379/0'" in shown


def test_a_raw_at_sign_in_a_url_password_is_hidden_whole() -> None:
    # SQLAlchemy stops the password at the first ``@`` (``p``); what was meant
    # (``p@ss``) must not show either.
    settings = Settings(environment="test", database_url="postgresql://app:p@ss@db/app")
    assert "database_url='postgresql://app:***@db/app'" in repr(settings)


def test_algorithms_are_comma_separated_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEYGEN_JWT_ALGORITHMS", "HS256, HS512")
    assert Settings().jwt_algorithms == ["HS256", "HS512"]


def test_cursor_secret_signs_cursors_for_every_instance() -> None:
    from heygen_conventions import Database
    from heygen_conventions.db import _CURSOR_KEY_INFO

    settings = Settings(
        environment="production",
        jwt_algorithm="RS256",
        cursor_secret="c" * 40,  # type: ignore[arg-type]
    )
    keys = [Database.from_settings(settings).sessionmaker.kw["info"] for _ in range(2)]
    assert keys[0][_CURSOR_KEY_INFO] == keys[1][_CURSOR_KEY_INFO]


def test_settings_type_check_without_pydantic_s_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    report = mypy_strict(
        """
        from datetime import timedelta

        from heygen_conventions import Settings

        settings = Settings(app_name="videos", jwt_access_token_ttl=timedelta(minutes=5))
        ttl: timedelta = settings.jwt_access_token_ttl
        """,
        monkeypatch,
    )
    assert report == ""
