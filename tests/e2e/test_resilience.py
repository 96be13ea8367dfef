"""The app keeps serving without its cache, and says 503 (not 500) without its database."""

import uuid
from pathlib import Path

from examples.video_app.main import create_app
from examples.video_app.migrate import upgrade_database
from heygen_conventions import Database, RedisCache
from heygen_conventions.testing import app_client, assert_error, assert_ok, auth_headers, make_token
from tests.e2e.conftest import PASSWORD, settings_for


def down_cache() -> RedisCache:
    """A Redis cache whose server is gone: nothing listens on that loopback port."""
    return RedisCache("redis://127.0.0.1:1/0", prefix="test-e2e-down:")


async def test_without_the_cache_every_answer_comes_from_the_database(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'down.db'}", cursor_secret="c" * 32)
    await upgrade_database(database)
    app = create_app(
        settings_for(str(database.url)), database=database, cache=down_cache(), configure_logs=False
    )
    async with app_client(app) as client:
        health = assert_ok(await client.get("/api/v1/health"))
        assert (health["status"], health["cache"], health["database"]) == (
            "degraded",
            "unavailable",
            "ok",
        )
        body = {"email": "hal@example.com", "password": PASSWORD, "full_name": "Hal"}
        assert_ok(await client.post("/api/v1/users", json=body), status=201)
        login = await client.post(
            "/api/v1/auth/token", data={"username": "hal@example.com", "password": PASSWORD}
        )
        headers = auth_headers(assert_ok(login)["access_token"])
        video = assert_ok(
            await client.post("/api/v1/videos", json={"title": "Offline"}, headers=headers),
            status=201,
        )
        path = f"/api/v1/videos/{video['id']}"
        for _ in range(2):
            assert assert_ok(await client.get(path, headers=headers))["title"] == "Offline"
        renamed = await client.patch(
            path, json={"title": "Still here", "version": 1}, headers=headers
        )
        assert assert_ok(renamed)["version"] == 2
        assert assert_ok(await client.get(path, headers=headers))["title"] == "Still here"
        # Revoking needs the shared store: refused honestly rather than half done.
        logout = await client.post("/api/v1/auth/logout", headers=headers)
        assert_error(logout, status=503, code="service_unavailable")
    await database.dispose()


async def test_without_the_database_the_answer_is_503(tmp_path: Path) -> None:
    database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/nothing", cursor_secret="c" * 32)
    app = create_app(
        settings_for("postgresql+asyncpg://nobody@127.0.0.1:1/nothing"),
        database=database,
        configure_logs=False,
    )
    async with app_client(app) as client:
        assert_error(await client.get("/api/v1/health"), status=503, code="service_unavailable")
        login = await client.post(
            "/api/v1/auth/token", data={"username": "x@example.com", "password": PASSWORD}
        )
        assert_error(login, status=503)
        headers = auth_headers(make_token(app, str(uuid.uuid4())))
        assert_error(await client.get("/api/v1/videos", headers=headers), status=503)
        assert_error(await client.get("/api/v1/templates"), status=503)
