"""`heygen-conventions check`: exit codes, table and JSON output, rule selection, bad targets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from heygen_conventions.__main__ import main
from heygen_conventions.checks import RULES

BROKEN_APP = """
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/api/v1/getVideos", tags=["videos"])
    async def get_videos() -> list[int]:
        '''List videos.'''
        return []

    BROKEN = "not an application"

    def make():
        return app
"""

WARNINGS_ONLY_APP = """
    from fastapi import APIRouter, FastAPI
    from pydantic import BaseModel

    class Video(BaseModel):
        title: str

    router = APIRouter(prefix="/api/v1/videos", tags=["videos"])

    @router.get("")
    async def list_videos() -> list[Video]:
        '''List videos.'''
        return []

    app = FastAPI()
    app.include_router(router)
"""

WriteModule = Callable[[str], str]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's way of refusing a command line
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_app_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    code, out, _ = run(["check", "tests.fixtures.checks:build_clean_app", "--factory"], capsys)
    assert (code, out.strip()) == (0, "no violations")


def test_errors_exit_1_with_a_table(
    app_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(BROKEN_APP)
    code, out, _ = run(["check", f"{module}:app"], capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["rule", "severity", "route", "message"]
    assert any(
        line.startswith("HC101 path-verb") and "GET /api/v1/getVideos" in line for line in lines
    )
    assert lines[-1].startswith("3 violations (3 errors")


def test_attribute_defaults_to_app(
    app_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(BROKEN_APP)
    assert run(["check", module], capsys)[0] == 1


def test_warnings_pass_unless_fail_on_warning(
    app_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(WARNINGS_ONLY_APP)
    code, out, _ = run(["check", f"{module}:app"], capsys)
    assert code == 0
    assert "HC502 field-description" in out
    assert run(["check", f"{module}:app", "--fail-on", "warning"], capsys)[0] == 1


def test_json_output(app_module: WriteModule, capsys: pytest.CaptureFixture[str]) -> None:
    module = app_module(BROKEN_APP)
    code, out, _ = run(["check", f"{module}:app", "--format", "json", "--ignore", "HC102"], capsys)
    assert code == 1
    report = json.loads(out)
    assert [(v["rule"], v["where"]) for v in report["violations"]] == [
        ("HC101", "GET /api/v1/getVideos"),
        ("HC303", "GET /api/v1/getVideos"),
    ]
    assert report["violations"][0]["fix"] == "name the resource: /api/v1/videos"
    assert [(v["rule"], v["ignored_reason"]) for v in report["ignored"]] == [
        ("HC102", "--ignore on the command line")
    ]
    assert report["summary"] == {"errors": 2, "warnings": 0}


def test_select_and_ignore_take_lists_names_and_prefixes(
    app_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(BROKEN_APP)
    code, out, _ = run(
        ["check", f"{module}:app", "--format", "json", "--select", "HC1,response-model",
         "--ignore", "path-case", "--ignore", "HC101"],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert [v["rule"] for v in json.loads(out)["violations"]] == ["HC303"]
    code, out, _ = run(["check", f"{module}:app", "--select", "HC2"], capsys)
    assert (code, out.strip()) == (0, "no violations")


def test_ignored_findings_are_counted_and_shown_on_request(
    app_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app_module(BROKEN_APP)
    _, out, _ = run(["check", f"{module}:app", "--ignore", "HC1,HC3"], capsys)
    assert out.strip() == "no violations (3 ignored; --show-ignored lists them)"
    _, out, _ = run(["check", f"{module}:app", "--ignore", "HC1,HC3", "--show-ignored"], capsys)
    assert "ignored:" in out
    assert "HC303 response-model  GET /api/v1/getVideos" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_here:app", "cannot import 'no_such_module_here'"),
        ("{module}:application", "has no attribute 'application'"),
        ("{module}:BROKEN", "is a str, not a FastAPI application or APIRouter"),
        ("{module}:make", "(use --factory if it builds the app)"),
        ("{raising}:app", "importing '{raising}' failed: RuntimeError: no config"),
        ("{failing_import}:app", "importing '{failing_import}' failed: No module named 'nope'"),
        (":app", "names no module"),
    ],
)
def test_bad_targets_exit_2_with_a_clear_message(
    target: str, message: str, app_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {
        "module": app_module(BROKEN_APP),
        "raising": app_module("raise RuntimeError('no config')\n"),
        "failing_import": app_module("import nope\n"),
    }
    code, out, err = run(["check", target.format(**names)], capsys)
    assert code == 2
    assert out == ""
    assert message.format(**names) in err


def test_factory_errors_exit_2(app_module: WriteModule, capsys: pytest.CaptureFixture[str]) -> None:
    module = app_module(BROKEN_APP)
    code, _, err = run(["check", f"{module}:app", "--factory"], capsys)
    assert code == 2
    assert f"calling '{module}:app' failed: TypeError" in err
    code, _, err = run(["check", f"{module}:BROKEN", "--factory"], capsys)
    assert code == 2
    assert "is not callable" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check"], capsys)
    assert code == 2
    assert "the target application is required" in err
    code, _, err = run(["check", "x:app", "--format", "xml"], capsys)
    assert code == 2
    assert "invalid choice" in err


def test_unknown_rule_exits_2(app_module: WriteModule, capsys: pytest.CaptureFixture[str]) -> None:
    module = app_module(BROKEN_APP)
    code, _, err = run(["check", f"{module}:app", "--select", "HC1O1"], capsys)
    assert code == 2
    assert "unknown convention rule 'HC1O1'" in err


def test_list_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--list-rules"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(RULES)


def test_console_script_runs_as_a_process(app_module: WriteModule) -> None:
    module = app_module(BROKEN_APP)
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "heygen_conventions", "check", f"{module}:app", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["summary"]["errors"] == 3
