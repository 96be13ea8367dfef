"""Schemathesis against the example app's own OpenAPI document, in-process on SQLite.

Every operation is called with generated requests, valid and invalid, as the
seeded administrator (a bearer token on every call; the routes' own tests
cover the unauthenticated answers). Each answer must be documented: no 5xx,
a status code the operation lists, a content type and a body matching the
schema documented for that status.

Bounded so that the suite stays fast: a fixed number of examples per
operation, derandomized (every run sends the same requests, so a failure in
CI is a change in the app, never luck), no example database. To explore
further, run it with a larger ``EXAMPLES_PER_OPERATION`` and
``derandomize=False``: that is how the findings fixed so far were made
(a 405's ``Allow`` listing one route's methods, ``"everywhere": 0`` taken for
``false``, blank and padded texts the schema allowed).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.python.asgi import shutdown_lifespans

from examples.video_app.main import create_app
from examples.video_app.migrate import upgrade_database
from examples.video_app.repositories import UserRepository
from examples.video_app.seed import seed
from heygen_conventions import Database
from heygen_conventions.testing import auth_headers, make_token
from tests.e2e.conftest import settings_for

EXAMPLES_PER_OPERATION = 25


#: Where the fuzzed app's database will be; created (migrated, seeded) by ``fuzzed_app``.
DATABASE_FILE = Path(tempfile.gettempdir()) / f"heygen-fuzz-{uuid.uuid4().hex}.db"
DATABASE_URL = f"sqlite+aiosqlite:///{DATABASE_FILE}"
# Built at import, as schemathesis generates the tests from the schema then; it
# opens nothing until its lifespan starts, on the first request.
APP = create_app(settings_for(DATABASE_URL), configure_logs=False)
# What schemathesis.openapi.from_asgi() does, minus the request: fetching the
# document through the app would start its lifespan at import time.
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP
schema.location = "/openapi.json"


async def _prepare(url: str) -> str:
    """Migrate and seed the database; the demo administrator's id."""
    database = Database(url)
    try:
        await upgrade_database(database)
        app_settings = settings_for(url)
        await seed(database, app_settings)
        async with database.session() as session:
            admin = await UserRepository(session).get_by_email(app_settings.demo_admin_email)
            assert admin is not None
            return str(admin.id)
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def admin_headers() -> Iterator[dict[str, str]]:
    """Prepare the fuzzed app's database; the seeded administrator's auth headers."""
    admin_id = asyncio.run(_prepare(DATABASE_URL))
    try:
        yield auth_headers(make_token(APP, admin_id, roles=["admin"]))
    finally:
        # Schemathesis starts the app's lifespan on first use and keeps it running.
        shutdown_lifespans()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DATABASE_FILE}{suffix}").unlink(missing_ok=True)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_documented(case: schemathesis.Case, admin_headers: dict[str, str]) -> None:
    case.call_and_validate(headers=admin_headers)
