"""The demo data, the command line and the lazily built ``main.app``."""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import examples.video_app.__main__ as cli
import examples.video_app.main as main_module
from examples.video_app.seed import DEMO_VIDEOS, demo_video_id, seed
from examples.video_app.settings import DEMO_ADMIN_PASSWORD, VideoAppSettings
from heygen_conventions.testing import assert_ok
from tests.e2e.conftest import Stack
from tests.fixtures.logging import LogOutput


async def test_seeding_twice_adds_nothing_the_second_time(stack: Stack) -> None:
    settings = VideoAppSettings(environment="test", database_url="sqlite+aiosqlite://")
    first = await seed(stack.database, settings)
    again = await seed(stack.database, settings)
    assert (first.admin_created, first.templates_created, first.videos_created) == (True, 2, 3)
    assert (again.admin_created, again.templates_created, again.videos_created) == (False, 0, 0)

    admin = await stack.log_in(settings.demo_admin_email, DEMO_ADMIN_PASSWORD)
    me = assert_ok(await stack.client.get("/api/v1/users/me", headers=admin))
    assert me["role"] == "admin"
    listed = (await stack.client.get("/api/v1/videos", headers=admin)).json()
    assert listed["total_count"] == len(DEMO_VIDEOS)
    welcome = demo_video_id("welcome")
    analytics = assert_ok(
        await stack.client.get(f"/api/v1/videos/{welcome}/analytics", headers=admin)
    )
    assert (analytics["views"], analytics["engagement_rate"]) == (40, 0.35)
    templates = (await stack.client.get("/api/v1/templates")).json()
    assert [t["name"] for t in templates["data"]] == ["Studio presenter", "Vertical short"]


def test_production_refuses_the_public_demo_password() -> None:
    with pytest.raises(ValueError, match="HEYGEN_DEMO_ADMIN_PASSWORD"):
        VideoAppSettings(environment="production", jwt_secret="s" * 48)
    settings = VideoAppSettings(
        environment="production", jwt_secret="s" * 48, demo_admin_password="a-private-one"
    )
    assert settings.is_production


def test_the_command_line_migrates_and_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_output: LogOutput
) -> None:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("HEYGEN_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    assert cli.main(["migrate"]) == 0
    assert counts(path) == {"users": 0, "templates": 0, "videos": 0}
    assert cli.main(["seed"]) == 0
    assert cli.main(["seed"]) == 0
    assert counts(path) == {"users": 1, "templates": 2, "videos": len(DEMO_VIDEOS)}


def counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("users", "templates", "videos")
        }


def test_serve_migrates_seeds_prints_how_to_log_in_and_runs_uvicorn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_output: LogOutput,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HEYGEN_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}")
    served: dict[str, Any] = {}

    def run(app: FastAPI, **options: Any) -> None:
        served.update(options, app=app)

    monkeypatch.setattr("uvicorn.run", run)
    assert cli.main(["--no-seed", "--port", "8765"]) == 0
    assert isinstance(served["app"], FastAPI)
    assert (served["host"], served["port"]) == ("127.0.0.1", 8765)
    handlers = served["log_config"]["handlers"]
    assert handlers["heygen_conventions"]["service"] == "video-app"
    banner = capsys.readouterr().err
    assert "http://127.0.0.1:8765/docs" in banner
    assert "curl -s -X POST http://127.0.0.1:8765/api/v1/auth/token" in banner
    assert f"password={DEMO_ADMIN_PASSWORD}" in banner
    assert counts(tmp_path / "serve.db")["users"] == 0  # --no-seed; migrated all the same


def test_the_banner_never_prints_a_configured_password() -> None:
    settings = VideoAppSettings(demo_admin_password="my-own-secret-password")
    banner = cli._banner(settings, "127.0.0.1", 8000)
    assert "my-own-secret-password" not in banner
    assert "password=$HEYGEN_DEMO_ADMIN_PASSWORD" in banner


def test_main_app_is_built_on_first_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_output: LogOutput
) -> None:
    monkeypatch.setenv("HEYGEN_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'lazy.db'}")
    monkeypatch.delitem(vars(main_module), "app", raising=False)
    app = main_module.app
    assert isinstance(app, FastAPI)
    assert main_module.app is app
    monkeypatch.delitem(vars(main_module), "app")
    with pytest.raises(AttributeError):
        _ = main_module.nothing_here
