"""The checker API: ignores with reasons, selection, route discovery, report, assertion."""

from __future__ import annotations

import ast
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.routing import Mount

import heygen_conventions
from heygen_conventions import (
    APIResponse,
    Violation,
    assert_follows_conventions,
    check_app,
    ignore_conventions,
    install_exception_handlers,
)
from heygen_conventions.checks import IGNORE_MARKER, RULES, format_report
from tests.fixtures.checks import build_clean_app


class Profile(BaseModel):
    name: str


@ignore_conventions("field-description", reason="generated from a vendor schema")
class Vendor(BaseModel):
    vendor_name: str


class Partner(Vendor):
    extra: str


class Loose(BaseModel):
    title: str


def singular_me_app(**route_options: Any) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    router = APIRouter(prefix="/api/v1", tags=["users"])

    @router.get(
        "/user/{user_id}", responses={404: {"description": "No such user"}}, **route_options
    )
    async def read_user(user_id: int) -> Profile:
        """Read a user."""
        raise NotImplementedError

    app.include_router(router)
    return app


def rule_ids(violations: list[Violation]) -> list[str]:
    return [v.rule for v in violations]


def test_rules_have_unique_ids_and_names() -> None:
    assert len({rule.name for rule in RULES.values()}) == len(RULES)
    assert all(
        rule.id.startswith("HC") and rule.severity in ("error", "warning")
        for rule in RULES.values()
    )


def test_openapi_extra_marker_ignores_a_rule_and_keeps_the_reason() -> None:
    app = singular_me_app(openapi_extra={IGNORE_MARKER: {"HC103": "legacy URL kept for clients"}})
    assert "HC103" not in rule_ids(check_app(app))
    ignored = [v for v in check_app(app, include_ignored=True) if v.ignored_reason]
    assert [(v.rule, v.where, v.ignored_reason) for v in ignored] == [
        ("HC103", "GET /api/v1/user/{user_id}", "legacy URL kept for clients"),
    ]


def test_marker_accepts_rule_names() -> None:
    app = singular_me_app(openapi_extra={IGNORE_MARKER: {"path-plural": "legacy"}})
    assert "HC103" not in rule_ids(check_app(app))


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ({"HC999": "why"}, "unknown convention rule 'HC999'"),
        ({"HC103": "  "}, "give each ignored rule the reason"),
        (["HC103"], "must map each rule to the reason"),
    ],
)
def test_a_bad_marker_is_refused_with_the_route(marker: Any, error: str) -> None:
    app = singular_me_app(openapi_extra={IGNORE_MARKER: marker})
    with pytest.raises(ValueError, match=error) as raised:
        check_app(app)
    assert str(raised.value).startswith("GET /api/v1/user/{user_id}: ")


@pytest.mark.parametrize("decorator_first", [True, False])
def test_decorator_ignores_a_rule_in_either_order(decorator_first: bool) -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1", tags=["users"])

    async def read_me() -> None:
        """The caller's own profile."""

    mark = ignore_conventions("HC303", "route-description", reason="no body yet")
    if decorator_first:
        router.get("/me")(mark(read_me))
    else:
        mark(router.get("/me")(read_me))
    app.include_router(router)
    found = check_app(app, include_ignored=True)
    assert [(v.rule, v.ignored_reason) for v in found] == [("HC303", "no body yet")]


def test_decorator_needs_rules_and_a_reason() -> None:
    with pytest.raises(ValueError, match="at least one rule"):
        ignore_conventions(reason="because")
    with pytest.raises(ValueError, match="reason"):
        ignore_conventions("HC101", reason=" ")
    with pytest.raises(ValueError, match="unknown convention rule"):
        ignore_conventions("HC1O1", reason="typo")


def test_decorator_on_a_model_exempts_only_that_model() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1", tags=["vendors"])

    @router.get("/vendors")
    async def list_vendors() -> list[Vendor]:
        """List vendors."""
        return []

    @router.get("/partners")
    async def list_partners() -> list[Partner]:
        """List partners."""
        return []

    app.include_router(router)
    found = check_app(app, select=["HC502"], include_ignored=True)
    assert [(v.where.rsplit(".", 1)[-1], v.ignored_reason) for v in found] == [
        ("Partner", None),
        ("Vendor", "generated from a vendor schema"),
    ]


def test_a_model_is_exempt_when_every_route_using_it_is() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1", tags=["x"])
    marker = {IGNORE_MARKER: {"HC502": "internal"}}
    router.add_api_route("/items", lambda: [], response_model=list[Loose], openapi_extra=marker)
    app.include_router(router)
    assert check_app(app, select=["HC502"]) == []
    router.add_api_route("/others", lambda: [], response_model=list[Loose])
    assert rule_ids(check_app(app, select=["HC502"])) == ["HC502"]


def test_global_ignore_and_select() -> None:
    app = singular_me_app()
    assert "HC103" in rule_ids(check_app(app))
    assert "HC103" not in rule_ids(check_app(app, ignore=["HC103"]))
    found = check_app(app, ignore={"path-plural": "one user per account"}, include_ignored=True)
    assert [v.ignored_reason for v in found if v.rule == "HC103"] == ["one user per account"]
    assert set(rule_ids(check_app(app, select=["HC1"]))) <= {
        r for r in RULES if r.startswith("HC1")
    }
    assert rule_ids(check_app(app, select=["path-plural"])) == ["HC103"]
    assert check_app(app, select=["HC103"], ignore="HC103") == []


def test_included_routers_nested_and_mounted_apps_are_walked() -> None:
    inner = APIRouter(prefix="/clips", tags=["clips"])
    inner.add_api_route("/{clipId}", lambda clipId: None)
    outer = APIRouter(prefix="/videos")
    outer.include_router(inner)
    app = FastAPI()
    app.include_router(outer, prefix="/api/v1")
    sub = FastAPI()
    sub.add_api_route("/getThings", lambda: None)
    app.mount("/api/v2", sub)
    starlette = Starlette(routes=[Mount("/legacy", app=sub)])
    assert [v.where for v in check_app(app, select=["HC104", "HC101"])] == [
        "GET /api/v1/videos/clips/{clipId}",
        "GET /api/v2/getThings",
    ]
    assert [v.where for v in check_app(starlette, select=["HC101"])] == ["GET /legacy/getThings"]
    router_alone = APIRouter()
    router_alone.include_router(outer)
    assert [v.where for v in check_app(router_alone, select=["HC104"])] == [
        "GET /videos/clips/{clipId}"
    ]


def test_hidden_and_websocket_routes_are_not_checked() -> None:
    app = FastAPI()
    app.add_api_route("/getHealth", lambda: None, include_in_schema=False)
    hidden = APIRouter(prefix="/internal")
    hidden.add_api_route("/getStats", lambda: None)
    app.include_router(hidden, include_in_schema=False)

    @app.websocket("/getFeed")
    async def feed(websocket: WebSocket) -> None: ...

    assert check_app(app) == []


def test_report_lists_fixes_ignores_and_a_summary() -> None:
    app = singular_me_app(openapi_extra={IGNORE_MARKER: {"HC502": "internal model"}})
    report = format_report(check_app(app, include_ignored=True))
    lines = report.splitlines()
    assert lines[0].split() == ["rule", "severity", "route", "message"]
    assert any(
        line.startswith("HC103 path-plural") and "GET /api/v1/user/{user_id}" in line
        for line in lines
    )
    assert any(line.strip() == "fix: use 'users': /api/v1/users/{user_id}" for line in lines)
    assert "ignored:" in lines
    assert lines[-1] == "1 violation (1 error, 0 warnings), 1 ignored"
    assert format_report([]) == "no violations"


def test_violations_serialise_to_json() -> None:
    violation = check_app(singular_me_app(), select=["HC103"])[0]
    assert json.loads(json.dumps(violation.to_dict())) == {
        "rule": "HC103",
        "name": "path-plural",
        "severity": "error",
        "where": "GET /api/v1/user/{user_id}",
        "message": violation.message,
        "fix": violation.fix,
        "ignored_reason": None,
    }


def test_assert_follows_conventions_fails_with_the_report() -> None:
    assert_follows_conventions(build_clean_app())
    with pytest.raises(AssertionError) as raised:
        assert_follows_conventions(singular_me_app())
    message = str(raised.value)
    assert "HC103 path-plural" in message
    assert "GET /api/v1/user/{user_id}" in message
    assert_follows_conventions(singular_me_app(), ignore={"HC103": "legacy", "HC502": "internal"})


def test_assert_follows_conventions_can_tolerate_warnings() -> None:
    app = singular_me_app(openapi_extra={IGNORE_MARKER: {"HC103": "legacy"}})
    with pytest.raises(AssertionError, match="HC502"):
        assert_follows_conventions(app)
    assert_follows_conventions(app, fail_on="error")


def test_the_check_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="heygen_conventions.checks"):
        check_app(build_clean_app())
    (record,) = [r for r in caplog.records if r.name == "heygen_conventions.checks"]
    assert record.operations == 6  # type: ignore[attr-defined]
    assert record.violations == 0  # type: ignore[attr-defined]


class TreeNode(BaseModel):
    """A recursive model: the walk over models must terminate."""

    node_name: str = Field(..., description="Name")
    children: list[TreeNode] = Field(default_factory=list, description="Sub-nodes")
    parentNode: TreeNode | None = Field(None, description="Parent")


def test_recursive_models_are_checked_once() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1", tags=["trees"])
    router.add_api_route("/trees", lambda: [], response_model=list[TreeNode])
    router.add_api_route("/forests", lambda: [], response_model=APIResponse[list[TreeNode]])
    app.include_router(router)
    assert [(v.rule, v.where) for v in check_app(app, select=["HC5"])] == [
        ("HC501", "model tests.test_checks.TreeNode")
    ]


CHECKER_MODULES = ["checks", "_check_routes", "_check_rules", "_naming"]


@pytest.mark.parametrize("module", CHECKER_MODULES)
def test_the_checker_imports_only_the_standard_library_and_fastapi(module: str) -> None:
    source = Path(heygen_conventions.__file__).with_name(f"{module}.py").read_text("utf-8")
    tree = ast.parse(source)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    own = {f"heygen_conventions.{name}" for name in CHECKER_MODULES}
    for name in imported:
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names | {"fastapi", "starlette", "pydantic"} or name in own
