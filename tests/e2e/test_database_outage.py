"""The database goes away and comes back: 503s in the envelope, then 200s, with no restart.

On PostgreSQL (``TEST_DATABASE_URL``) the app reaches a fresh database
through a :class:`TcpProxy` that the test cuts, which resets every open
connection and refuses new ones, as a server that crashed or a network that
dropped would, then restores. SQLite has no server to lose; its nearest real
fault is the file becoming unreachable: the directory holding it is moved
away, and the connections the pool holds are dropped (they would otherwise
keep the moved file open), then the directory comes back.

Pre-ping stays off (the library's default): a connection found dead on use
is answered 503 and the pool discards every connection opened before it, so
recovery needs no restart and at most one request per dropped connection
fails after the server is back. The test bounds that number.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url

from examples.video_app.main import create_app
from examples.video_app.migrate import upgrade_database
from heygen_conventions import Database
from heygen_conventions.testing import app_client, assert_error, assert_ok, auth_headers
from tests.conftest import TEST_DATABASE_URL
from tests.e2e.conftest import PASSWORD, settings_for
from tests.e2e.servers import TcpProxy, create_database, drop_database

#: Requests after the database is back that may still fail, one per connection
#: the pool held when it went away (pool_size); in practice none.
RECOVERY_BUDGET = 5
#: An answer while the database is away must come at once, not after timeouts.
OUTAGE_ANSWER_SECONDS = 3.0


@dataclass
class Outage:
    """A database the test can take away from the app and give back."""

    database: Database
    cut: Callable[[], Awaitable[None]]
    restore: Callable[[], Awaitable[None]]


async def _sqlite_outage(directory: Path) -> AsyncIterator[Outage]:
    volume = directory / "volume"
    volume.mkdir()
    database = Database(f"sqlite+aiosqlite:///{volume / 'app.db'}", cursor_secret="c" * 32)
    await upgrade_database(database)

    async def cut() -> None:
        volume.rename(directory / "unmounted")
        await database.engine.dispose()

    async def restore() -> None:
        (directory / "unmounted").rename(volume)

    try:
        yield Outage(database, cut, restore)
    finally:
        await database.dispose()


async def _postgresql_outage(directory: Path) -> AsyncIterator[Outage]:
    url = make_url(await create_database(directory))
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    database = Database(url.set(host="127.0.0.1", port=proxy.port), cursor_secret="c" * 32)
    try:
        yield Outage(database, proxy.cut, proxy.restore)
    finally:
        await database.dispose()
        await proxy.close()
        await drop_database(url.render_as_string(hide_password=False))


@pytest.fixture(params=["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])])
async def outage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outage]:
    make = _sqlite_outage if request.param == "sqlite" else _postgresql_outage
    async for prepared in make(tmp_path):
        yield prepared


async def test_without_its_database_the_app_answers_503_and_recovers_without_a_restart(
    outage: Outage,
) -> None:
    url = outage.database.url.render_as_string(hide_password=False)
    app = create_app(settings_for(url), database=outage.database, configure_logs=False)
    async with app_client(app) as client:
        account = {"email": "dee@example.com", "password": PASSWORD, "full_name": "Dee"}
        assert_ok(await client.post("/api/v1/users", json=account), status=201)
        form = {"username": account["email"], "password": PASSWORD}
        login = assert_ok(await client.post("/api/v1/auth/token", data=form))
        headers = auth_headers(login["access_token"])
        created = await client.post("/api/v1/videos", json={"title": "Kept"}, headers=headers)
        video = assert_ok(created, status=201)
        path = f"/api/v1/videos/{video['id']}"

        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/api/v1/health", {}),
            ("GET", "/api/v1/templates", {}),
            ("POST", "/api/v1/auth/token", {"data": form}),
            ("GET", "/api/v1/videos", {"headers": headers}),
            ("GET", path, {"headers": headers}),
            ("PATCH", path, {"headers": headers, "json": {"title": "Lost", "version": 1}}),
            ("POST", "/api/v1/videos", {"headers": headers, "json": {"title": "Lost"}}),
        ]

        async def send(method: str, target: str, options: dict[str, Any]) -> httpx.Response:
            started = time.monotonic()
            response = await client.request(method, target, **options)
            assert time.monotonic() - started < OUTAGE_ANSWER_SECONDS, (method, target)
            return response

        await outage.cut()
        for _ in range(2):
            for method, target, options in requests:
                response = await send(method, target, options)
                assert_error(response, status=503, code="service_unavailable")
                assert response.headers["Retry-After"].isdigit(), response.headers

        await outage.restore()
        await recovered(send)
        # Back for good: every request succeeds, and nothing written during the outage stuck.
        assert assert_ok(await send("GET", path, {"headers": headers}))["title"] == "Kept"
        listed = await send("GET", "/api/v1/videos", {"headers": headers})
        assert listed.status_code == 200, listed.text
        assert [item["title"] for item in listed.json()["data"]] == ["Kept"]
        assert_ok(await send("POST", "/api/v1/auth/token", {"data": form}))
        renamed = await send(
            "PATCH", path, {"headers": headers, "json": {"title": "Renamed", "version": 1}}
        )
        assert assert_ok(renamed)["version"] == 2
        templates = await send("GET", "/api/v1/templates", {})
        assert templates.status_code == 200, templates.text

        # Gone and back between two requests: the pool's connections died unseen.
        await outage.cut()
        await outage.restore()
        await recovered(send)
        assert assert_ok(await send("GET", path, {"headers": headers}))["title"] == "Renamed"


async def recovered(send: Callable[..., Awaitable[httpx.Response]]) -> None:
    """Poll the health endpoint until 200, allowing RECOVERY_BUDGET 503s on the way."""
    failed = 0
    while (health := await send("GET", "/api/v1/health", {})).status_code != 200:
        assert_error(health, status=503, code="service_unavailable")
        failed += 1
        assert failed <= RECOVERY_BUDGET, "the app did not recover"
