"""The public test helpers behave as documented."""

import ast
import sys
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import text

from heygen_conventions import (
    APIResponse,
    CursorPage,
    NotFoundError,
    PaginatedResponse,
    Settings,
    get_current_user,
    install_auth,
    install_exception_handlers,
)
from heygen_conventions.testing import (
    app_client,
    assert_error,
    assert_ok,
    auth_headers,
    isolated_database,
    make_token,
    override_users,
)
from tests.conftest import TEST_DATABASE_URL
from tests.typecheck import mypy_strict

DATABASE_URLS = [None, *([TEST_DATABASE_URL] if TEST_DATABASE_URL else [])]


@dataclass
class Member:
    id: int
    roles: tuple[str, ...] = ()


async def nobody(subject: str) -> None:
    return None


def make_app(format: str = "envelope") -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app, format=format)  # type: ignore[arg-type]
    install_auth(app, user_loader=nobody, settings=Settings(environment="test"))

    @app.get("/me", response_model=APIResponse[int])
    async def me(user: Annotated[Member, Depends(get_current_user)]) -> APIResponse[int]:
        return APIResponse[int].ok(user.id)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> None:
        raise NotFoundError("Item not found")

    return app


async def test_tokens_authenticate_as_overridden_users() -> None:
    app = make_app()
    async with app_client(app) as client:
        token = make_token(app, Member(7))
        # The real loader knows nobody...
        assert_error(await client.get("/me", headers=auth_headers(token)), status=401)
        with override_users(app, [Member(7)]):
            assert assert_ok(await client.get("/me", headers=auth_headers(token))) == 7
            stranger = make_token(app, "8")
            assert_error(await client.get("/me", headers=auth_headers(stranger)), status=401)
        # ...and is back once the block ends.
        assert_error(await client.get("/me", headers=auth_headers(token)), status=401)


async def test_refresh_tokens_are_refused_as_access_tokens() -> None:
    app = make_app()
    with override_users(app, {"7": Member(7)}):
        async with app_client(app) as client:
            refresh = make_token(app, {"id": 7}, refresh=True)
            assert_error(await client.get("/me", headers=auth_headers(refresh)), status=401)


def test_make_token_needs_auth() -> None:
    with pytest.raises(RuntimeError, match="auth is not installed"):
        make_token(FastAPI(), "1")


async def test_assert_error_reads_both_formats() -> None:
    for format in ("envelope", "problem"):
        app = make_app(format)
        async with app_client(app) as client:
            missing = await client.get("/items/1")
            assert_error(missing, status=404, code="not_found")
            invalid = await client.get("/items/abc")
            assert_error(invalid, status=422, code="validation_error", field="path.item_id")
            assert_error(invalid, status=422, code="int_parsing")
            with pytest.raises(AssertionError, match="expected code 'conflict'"):
                assert_error(missing, status=404, code="conflict")
            with pytest.raises(AssertionError, match="expected 409"):
                assert_error(missing, status=409)
            with pytest.raises(AssertionError, match=r"expected an error on 'query\.x'"):
                assert_error(invalid, status=422, field="query.x")


def test_assert_ok_checks_status_and_envelope() -> None:
    ok = httpx.Response(200, json={"success": True, "data": [1], "message": "OK"})
    assert assert_ok(ok) == [1]
    with pytest.raises(AssertionError, match="expected 201"):
        assert_ok(ok, status=201)
    with pytest.raises(AssertionError, match="not a success envelope"):
        assert_ok(httpx.Response(200, json={"data": [1]}))
    with pytest.raises(AssertionError, match="not a success envelope"):
        assert_ok(httpx.Response(200, json=[1]))


@pytest.mark.parametrize("format", ["envelope", "problem"])
def test_assert_ok_accepts_pages_and_returns_their_items(format: str) -> None:
    app = make_app(format)

    @app.get("/pages", response_model=PaginatedResponse[int])
    async def pages() -> PaginatedResponse[int]:
        return PaginatedResponse[int].create([1, 2], page=1, per_page=2, total_count=3)

    @app.get("/uncounted", response_model=PaginatedResponse[int])
    async def uncounted() -> PaginatedResponse[int]:
        return PaginatedResponse[int].create([1, 2, 3], page=1, per_page=2, total_count=None)

    @app.get("/feed", response_model=CursorPage[int])
    async def feed() -> CursorPage[int]:
        return CursorPage[int](data=[4], next_cursor="c2", has_more=True)

    @app.get("/wrapped", response_model=APIResponse[PaginatedResponse[int]])
    async def wrapped() -> APIResponse[PaginatedResponse[int]]:
        page = PaginatedResponse[int].create([5], page=1, per_page=2, total_count=1)
        return APIResponse[PaginatedResponse[int]].ok(page)

    client = TestClient(app)  # Starlette's client: httpx2 responses
    assert assert_ok(client.get("/pages")) == [1, 2]
    assert assert_ok(client.get("/uncounted")) == [1, 2]
    assert assert_ok(client.get("/feed")) == [4]
    assert assert_ok(client.get("/wrapped"))["total_count"] == 1
    not_found = client.get("/items/1")
    with pytest.raises(AssertionError, match="not a success envelope nor a page"):
        assert_ok(not_found, status=404)


def test_the_assertions_type_check_with_both_test_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    report = mypy_strict(
        """
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

        from heygen_conventions.testing import app_client, assert_error, assert_ok


        async def check(app: FastAPI) -> None:
            client = TestClient(app)  # httpx2 responses
            assert_error(client.get("/missing"), status=404, code="not_found")
            assert_ok(client.get("/"))
            async with app_client(app) as async_client:  # httpx responses
                assert_error(await async_client.get("/missing"), status=404)
                assert_ok(await async_client.get("/"))
        """,
        monkeypatch,
    )
    assert report == ""


@pytest.mark.parametrize("url", DATABASE_URLS, ids=["sqlite", "postgresql"][: len(DATABASE_URLS)])
async def test_isolated_databases_do_not_see_each_other(url: str | None) -> None:
    async with isolated_database(url) as first, isolated_database(url) as second:
        async with first.transaction() as session:
            await session.execute(text("CREATE TABLE t_iso (id integer)"))
            await session.execute(text("INSERT INTO t_iso VALUES (1)"))
        async with second.transaction() as session:
            await session.execute(text("CREATE TABLE t_iso (id integer)"))
            assert (await session.execute(text("SELECT count(*) FROM t_iso"))).scalar() == 0
        async with first.transaction() as session:
            assert (await session.execute(text("SELECT count(*) FROM t_iso"))).scalar() == 1


def app_with_lifespan_state() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello"}

    app = FastAPI(lifespan=lifespan)
    install_exception_handlers(app)

    @app.get("/greeting")
    async def greeting(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    return app


async def test_app_client_passes_lifespan_state_to_requests() -> None:
    # What a lifespan yields reaches request.state, as under a server or TestClient.
    with TestClient(app_with_lifespan_state()) as client:
        assert client.get("/greeting").json() == {"greeting": "hello"}
    async with app_client(app_with_lifespan_state()) as client:
        response = await client.get("/greeting")
    assert response.status_code == 200, response.text
    assert response.json() == {"greeting": "hello"}


# --- packaging ---------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parent.parent


def _requirement_names(requirements: list[str]) -> set[str]:
    return {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements}


@pytest.mark.parametrize("module", ["testing.py", "pytest_plugin.py"])
def test_every_third_party_import_of_testing_is_declared(module: str) -> None:
    project = tomllib.loads((_ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"]) | _requirement_names(
        project["optional-dependencies"].get("testing", [])
    )
    declared = {name.replace("-", "_") for name in declared}  # as imported
    # pytest comes with pytest-asyncio.
    declared |= {"pytest"} if "pytest_asyncio" in declared else set()
    tree = ast.parse((_ROOT / "heygen_conventions" / module).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    third_party = imported - set(sys.stdlib_module_names) - {"heygen_conventions", "__future__"}
    # Installed with fastapi / sqlalchemy / pydantic themselves.
    third_party -= {"fastapi", "pydantic", "sqlalchemy", "starlette"}
    assert third_party <= declared, (
        f"not installed by the package or [testing]: {third_party - declared}"
    )
