"""setup_app wires every part so they work together, on SQLite and PostgreSQL."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from heygen_conventions import (
    APIResponse,
    AppComponents,
    Base,
    BaseRepository,
    CacheBackend,
    CachedServiceMixin,
    Database,
    MemoryCache,
    NotFoundError,
    Settings,
    get_cache,
    get_components,
    get_current_user,
    get_db_session,
    install_auth,
    require_admin_role,
    setup_app,
)
from heygen_conventions.testing import (
    app_client,
    assert_error,
    assert_ok,
    auth_headers,
    capture_logs,
    make_token,
)


class AppBase(DeclarativeBase):
    metadata = Base.metadata.__class__(naming_convention=Base.metadata.naming_convention)
    type_annotation_map = Base.type_annotation_map


class Note(AppBase):
    __tablename__ = "app_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50), unique=True)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str


class NoteRepository(BaseRepository[Note]):
    pass


class NoteService(CachedServiceMixin):
    cache_namespace = "notes"

    def __init__(self, session: AsyncSession, cache: CacheBackend) -> None:
        self.session = session
        self.cache = cache
        self.repository = NoteRepository(session)
        self.loads = 0

    async def get(self, note_id: int) -> NoteOut:
        async def load() -> Note | None:
            self.loads += 1
            return await self.repository.get_by_id(note_id)

        note = await self.cached(str(note_id), load, model=NoteOut)
        if note is None:
            raise NotFoundError("Note not found")
        return note


@dataclass
class User:
    id: str
    roles: list[str] = field(default_factory=list)
    is_active: bool = True


USERS = {"ada": User("ada", ["admin"]), "bob": User("bob")}


async def load_user(subject: str) -> User | None:
    return USERS.get(subject)


def build(database: Database, cache: CacheBackend, **options: Any) -> tuple[FastAPI, list[str]]:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    settings = Settings(app_name="setup-test", environment="test")
    setup_app(app, settings, user_loader=load_user, database=database, cache=cache, **options)

    def service(
        session: Annotated[AsyncSession, Depends(get_db_session)],
        cache: Annotated[CacheBackend, Depends(get_cache)],
    ) -> NoteService:
        return NoteService(session, cache)

    @app.post("/notes", status_code=201, response_model=APIResponse[NoteOut])
    async def create(
        title: str,
        user: Annotated[User, Depends(get_current_user)],
        session: Annotated[AsyncSession, Depends(get_db_session)],
    ) -> APIResponse[NoteOut]:
        note = await NoteRepository(session).create({"title": title})
        return APIResponse[NoteOut].ok(NoteOut.model_validate(note))

    @app.get("/notes/{note_id}", response_model=APIResponse[NoteOut])
    async def read(
        note_id: int,
        svc: Annotated[NoteService, Depends(service)],
        user: Annotated[User, Depends(get_current_user)],
    ) -> APIResponse[NoteOut]:
        return APIResponse[NoteOut].ok(await svc.get(note_id))

    @app.delete("/notes", status_code=204)
    async def purge(
        user: Annotated[User, Depends(require_admin_role)],
        session: Annotated[AsyncSession, Depends(get_db_session)],
    ) -> None:
        for note in (await session.scalars(select(Note))).all():
            await session.delete(note)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app, events


@pytest.fixture
async def wired(database: Database, cache_backend: CacheBackend) -> tuple[FastAPI, list[str]]:
    await database.create_all(AppBase.metadata)
    return build(database, cache_backend)


async def test_every_part_works_together(wired: tuple[FastAPI, list[str]]) -> None:
    app, events = wired
    token = make_token(app, USERS["bob"])
    async with app_client(app) as client:
        assert events == ["startup"]
        assert_error(await client.post("/notes?title=x"), status=401, code="not_authenticated")
        created = assert_ok(
            await client.post("/notes?title=first", headers=auth_headers(token)), status=201
        )
        with capture_logs() as logs:
            response = await client.get(
                f"/notes/{created['id']}",
                headers={**auth_headers(token), "X-Request-ID": "req-1"},
            )
        assert assert_ok(response) == created
        assert response.headers["x-request-id"] == "req-1"
        access = [e for e in logs if e.get("status_code") == 200 and "duration_ms" in e]
        assert access, logs
        assert access[-1]["request_id"] == "req-1"
        assert access[-1]["user_id"] == "bob"
        # The second read is served from the cache.
        again = await client.get(f"/notes/{created['id']}", headers=auth_headers(token))
        assert assert_ok(again) == created
        assert_error(
            await client.get("/notes/999", headers=auth_headers(token)),
            status=404,
            code="not_found",
        )
        assert_error(
            await client.delete("/notes", headers=auth_headers(token)),
            status=403,
            code="permission_denied",
        )
        admin = make_token(app, USERS["ada"])
        assert (await client.delete("/notes", headers=auth_headers(admin))).status_code == 204
    assert events == ["startup", "shutdown"]


async def test_unexpected_errors_carry_the_request_id_header(
    wired: tuple[FastAPI, list[str]],
) -> None:
    app, _ = wired
    async with app_client(app) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-boom"})
    body = assert_error(response, status=500, code="internal_error")
    assert response.headers["x-request-id"] == "req-boom"
    assert body["metadata"]["request_id"] == "req-boom"
    assert "secret internals" not in response.text


async def test_components_are_reachable(wired: tuple[FastAPI, list[str]]) -> None:
    app, _ = wired
    components = get_components(app)
    assert isinstance(components, AppComponents)
    assert components.auth is not None
    assert components.settings.app_name == "setup-test"


async def test_calling_twice_is_an_error(database: Database) -> None:
    app = FastAPI()
    setup_app(app, Settings(environment="test"), database=database)
    with pytest.raises(RuntimeError, match="setup_app\\(\\) was already called"):
        setup_app(app, Settings(environment="test"), database=database)


async def test_an_app_with_protected_routes_and_no_user_loader_refuses_to_start(
    database: Database,
) -> None:
    app = FastAPI()
    setup_app(app, Settings(environment="test"), database=database)  # no user_loader=

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(user: Annotated[Any, Depends(get_current_user)]) -> dict[str, str]:
        return {"id": str(user)}

    @app.delete("/videos/{video_id}", dependencies=[Depends(require_admin_role)])
    async def delete(video_id: int) -> None:
        return None

    with pytest.raises(RuntimeError, match="user_loader=") as refused:
        async with app_client(app):
            pass
    assert "GET /me" in str(refused.value)
    assert "DELETE /videos/{video_id}" in str(refused.value)
    assert "/open" not in str(refused.value)


async def test_auth_installed_after_setup_app_is_enough(database: Database) -> None:
    app = FastAPI()
    setup_app(app, Settings(environment="test"), database=database)
    install_auth(app, user_loader=_load_user, settings=Settings(environment="test"))

    @app.get("/me")
    async def me(user: Annotated[Any, Depends(get_current_user)]) -> dict[str, str]:
        return {"id": str(user)}

    async with app_client(app) as client:
        response = await client.get("/me", headers=auth_headers(make_token(app, "ann")))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "ann"}


async def _load_user(subject: str) -> str:
    return subject


def test_get_components_without_setup_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="setup_app"):
        get_components(FastAPI())


async def test_problem_format_and_untrusted_request_ids(database: Database) -> None:
    app = FastAPI()
    setup_app(
        app,
        Settings(environment="test"),
        database=database,
        error_format="problem",
        trust_request_id=False,
        request_id_header="X-Correlation-ID",
    )
    async with app_client(app) as client:
        response = await client.get("/missing", headers={"X-Correlation-ID": "mine"})
    body = assert_error(response, status=404, code="not_found")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-correlation-id"] != "mine"
    assert body["request_id"] == response.headers["x-correlation-id"]


@pytest.mark.parametrize(
    ("error_format", "media_type"),
    [("envelope", "application/json"), ("problem", "application/problem+json")],
)
async def test_openapi_documents_the_422_in_the_chosen_format(
    database: Database, cache_backend: CacheBackend, error_format: str, media_type: str
) -> None:
    # With auth's password flow, whose own OpenAPI rewrite wraps the handlers' one.
    app, _ = build(database, cache_backend, error_format=error_format, token_url="/auth/token")
    async with app_client(app) as client:
        document = (await client.get("/openapi.json")).json()
        refused = await client.get(
            "/notes/not-a-number", headers=auth_headers(make_token(app, "bob"))
        )
    validation = document["paths"]["/notes/{note_id}"]["get"]["responses"]["422"]
    assert list(validation["content"]) == [media_type]
    assert refused.headers["content-type"] == media_type
    ref = validation["content"][media_type]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(refused.json()) == set(document["components"]["schemas"][ref]["properties"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["BearerAuth"]["type"] == "oauth2"


async def test_defaults_come_from_settings(tmp_path: Any) -> None:
    app = FastAPI()
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    components = setup_app(app, Settings(environment="test", database_url=url))
    assert str(components.database.url) == url
    assert type(components.cache).__name__ == "MemoryCache"
    assert components.auth is None
    async with app_client(app) as client:
        await components.database.ping()
        assert (await client.get("/nothing")).status_code == 404


async def test_the_in_process_cache_works_again_after_a_restart(tmp_path: Path) -> None:
    # Served twice (two app_client or TestClient blocks on one app object), the
    # default in-process cache works again, as the database and RedisCache do.
    app = FastAPI()
    settings = Settings(
        environment="test", database_url=f"sqlite+aiosqlite:///{tmp_path}/restart.db"
    )
    setup_app(app, settings, cache=MemoryCache(), configure_logs=False)

    @app.put("/counter")
    async def bump(cache: Annotated[CacheBackend, Depends(get_cache)]) -> dict[str, object]:
        await cache.set("counter", b"1", ttl=60)
        return {
            "success": True,
            "message": "OK",
            "data": (await cache.get("counter") or b"").decode(),
        }

    for _ in range(2):
        async with app_client(app) as client:
            assert assert_ok(await client.put("/counter")) == "1"
