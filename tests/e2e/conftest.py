"""The example video platform, built for a test on one stack of real components.

``stack`` runs each test on SQLite with the in-process cache, and on
PostgreSQL with Redis when ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` are set
(each test in a schema and under a key prefix of its own, removed afterwards).
The schema comes from the app's Alembic migrations, as in production.
"""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from examples.video_app import security
from examples.video_app.main import create_app
from examples.video_app.migrate import upgrade_database
from examples.video_app.models import User, UserRole
from examples.video_app.repositories import UserRepository
from examples.video_app.settings import VideoAppSettings
from heygen_conventions import CacheBackend, Database, MemoryCache
from heygen_conventions.testing import app_client, assert_ok, auth_headers, isolated_database
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.e2e.servers import Cluster
from tests.fixtures.cache import _remove_prefixed, make_backend, unique_prefix

STACKS = ["sqlite+memory"]
if TEST_DATABASE_URL or TEST_REDIS_URL:
    STACKS.append(
        ("postgresql" if TEST_DATABASE_URL else "sqlite")
        + "+"
        + ("redis" if TEST_REDIS_URL else "memory")
    )

PASSWORD = "correct-horse-battery"
#: Argon2id at its lowest cost: the production parameters take a quarter of a
#: second per hash, which would dominate the suite's time.
CHEAP_HASHING = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the server processes' output to the report of a test that failed with them."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Cluster):
                report.sections.append(("instance logs", value.logs()))
    return report


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "_hasher", CHEAP_HASHING)
    monkeypatch.setattr(security, "_UNKNOWN_USER_HASH", CHEAP_HASHING.hash("no account has it"))


@dataclass
class Stack:
    """The app of one test and what it runs on."""

    name: str
    app: FastAPI
    database: Database
    cache: CacheBackend
    client: httpx.AsyncClient

    async def register(self, email: str, *, admin: bool = False) -> dict[str, str]:
        """Register a user through the API (made admin in the database); their auth headers."""
        created = await self.client.post(
            "/api/v1/users",
            json={"email": email, "password": PASSWORD, "full_name": email.split("@")[0]},
        )
        user = assert_ok(created, status=201)
        if admin:
            async with self.database.transaction() as session:
                users = UserRepository(session)
                row: User | None = await users.get_by_email(email)
                assert row is not None
                await users.update(row, {"role": UserRole.ADMIN})
        return {**await self.log_in(email), "X-User-ID": user["id"]}

    async def log_in(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = await self.client.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        return auth_headers(assert_ok(response)["access_token"])


def settings_for(database_url: str) -> VideoAppSettings:
    return VideoAppSettings(
        environment="test",
        app_name=f"e2e-{secrets.token_hex(4)}",
        database_url=database_url,
        render_seconds=0,
    )


async def _database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    url = None if kind == "sqlite" else TEST_DATABASE_URL
    async with isolated_database(url, cursor_secret="c" * 32) as database:
        yield database


async def _cache(kind: str) -> AsyncIterator[CacheBackend]:
    prefix = unique_prefix("e2e")
    if kind == "memory":
        yield MemoryCache(prefix=prefix)  # closed by the app's lifespan
        return
    backend = await make_backend("redis", prefix)
    client = backend.client
    assert isinstance(client, redis.Redis)
    try:
        yield backend
    finally:
        await _remove_prefixed(client, prefix)
        await client.aclose()


DATABASES = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]


@pytest.fixture(params=DATABASES)
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database: a SQLite file, and a PostgreSQL schema when configured."""
    async for database in _database(request.param, tmp_path):
        yield database


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The app on a migrated database and a fresh cache, with a client inside its lifespan."""
    database_kind, cache_kind = request.param.split("+")
    async for database in _database(database_kind, tmp_path):
        await upgrade_database(database)
        async for cache in _cache(cache_kind):
            app = create_app(
                settings_for(database.url.render_as_string(hide_password=False)),
                database=database,
                cache=cache,
                configure_logs=False,
            )
            async with app_client(app) as client:
                yield Stack(request.param, app, database, cache, client)
