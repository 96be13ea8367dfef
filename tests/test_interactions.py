"""Features meeting one another: middleware errors answered under setup_app, versioned rows
after Core updates, read-only routes catching errors, cached tagged unions, envelope names."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from starlette.middleware.base import BaseHTTPMiddleware

from heygen_conventions import (
    APIResponse,
    AuthenticationError,
    BaseRepository,
    CachedServiceMixin,
    Database,
    DBSession,
    MemoryCache,
    Settings,
    cache_stats,
    install_database,
    install_exception_handlers,
    setup_app,
)
from tests.fixtures.db import SampleBase, asgi_client
from tests.fixtures.logging import LogOutput
from tests.test_db_edges import Doc


class RaisingAuth(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Any:
        raise AuthenticationError("bad token")


def test_answered_middleware_error_is_not_reraised_to_the_server(log_output: LogOutput) -> None:
    app = FastAPI()
    setup_app(app, Settings(), configure_logs=False)
    app.add_middleware(RaisingAuth)
    with TestClient(app) as client:  # raise_server_exceptions=True: default
        response = client.get("/x")
    assert response.status_code == 401
    assert log_output.one(event="request finished").get("error") is None


# --- VersionMixin onupdate x delete()'s version lock --------------------------------------


class Docs(BaseRepository[Doc]):
    pass


async def test_delete_after_a_core_update_of_the_same_row(database: Database) -> None:
    # A Core UPDATE now moves the version (onupdate), so the ORM expires the held
    # object's version; delete() read it with a lazy load outside the greenlet.
    await database.create_all(SampleBase.metadata, tables=[Doc.__table__])
    async with database.transaction() as session:
        session.add(Doc(id=1, title="draft"))
    async with database.transaction() as session:
        doc = await session.get(Doc, 1)
        await session.execute(update(Doc).where(Doc.id == 1).values(archived=True))
        await Docs(session).delete(doc)
    async with database.session() as session:
        assert await session.get(Doc, 1) is None


# --- OpenAPI names: Annotated envelopes --------------------------------------------------


def test_an_annotated_envelope_does_not_rename_the_plain_one() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/a")
    async def a() -> APIResponse[int]:
        return APIResponse.ok(1)

    @app.get("/b")
    async def b() -> APIResponse[Annotated[int, Field(ge=0, le=10)]]:
        return APIResponse.ok(1)

    schemas = app.openapi()["components"]["schemas"]
    assert "APIResponseOfInt" in schemas, sorted(schemas)


# --- The commit guard on a read-only transaction ----------------------------------------


async def test_a_read_only_route_that_catches_an_error_still_answers(database: Database) -> None:
    # Nothing was written, so nothing is lost at COMMIT: the route's 200 is true.
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, database)

    @app.get("/health")
    async def health(session: DBSession) -> dict[str, str]:
        await session.execute(text("SELECT 1"))
        with suppress(DBAPIError):
            await session.execute(text("SELECT * FROM no_such_extension_table"))
            return {"status": "full"}
        return {"status": "degraded"}

    async with asgi_client(app) as client:
        response = await client.get("/health")
    assert response.status_code == 200, response.text


async def test_update_with_a_version_after_a_core_update_of_the_same_row(
    database: Database,
) -> None:
    await database.create_all(SampleBase.metadata, tables=[Doc.__table__])
    async with database.transaction() as session:
        session.add(Doc(id=1, title="draft"))
    async with database.transaction() as session:
        doc = await session.get(Doc, 1)
        await session.execute(update(Doc).where(Doc.id == 1).values(archived=True))
        # The client sends the version it read (2: the Core UPDATE moved it).
        updated = await Docs(session).update(doc, {"version": 2, "title": "edited"})
        assert (updated.title, updated.version) == ("edited", 3)


# --- Cache entries of set fields only: a discriminator left at its default ----------------


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    name: str


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    name: str


Pet = Annotated[Cat | Dog, Field(discriminator="kind")]


class Pets(CachedServiceMixin):
    cache_namespace = "rv-pets"

    def __init__(self) -> None:
        self.cache = MemoryCache()
        self.loads = 0

    async def load(self, key: str) -> Cat:
        self.loads += 1
        return Cat(name=key)  # kind left at its default: not in the set fields

    async def get(self, key: str) -> Any:
        return await self.cached(key, lambda: self.load(key), model=Pet)


async def test_a_tagged_union_value_with_its_default_tag_is_still_cached() -> None:
    pets = Pets()
    assert await pets.get("tom") == Cat(name="tom")
    assert await pets.get("tom") == Cat(name="tom")
    assert pets.loads == 1, cache_stats(pets.cache)
