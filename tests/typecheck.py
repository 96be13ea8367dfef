"""Type-check a snippet of application code with ``mypy --strict``, as a user's project would.

For the typing the API promises (``py.typed``): what the README shows must
pass a strict check. The snippets see this checkout of the package, whatever
is installed, are checked without pydantic's mypy plugin, and share one mypy
cache per test run, so only the first check pays for reading FastAPI and
SQLAlchemy.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[1]
_WORK = tempfile.TemporaryDirectory(prefix="heygen-mypy-")


def mypy_strict(source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """mypy's report on ``source``; empty when it type-checks."""
    directory = Path(_WORK.name)
    snippet = directory / f"snippet_{len(list(directory.glob('snippet_*.py')))}.py"
    snippet.write_text(textwrap.dedent(source), encoding="utf-8")
    # A user's project as strict as can be, without pydantic's mypy plugin
    # (which many projects do not use): an empty configuration of its own.
    config = directory / "mypy.ini"
    config.write_text("[mypy]\n", encoding="utf-8")
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    monkeypatch.chdir(directory)
    out, err, status = api.run(
        [
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(directory / "cache"),
            "--no-error-summary",
            str(snippet),
        ]
    )
    return "" if status == 0 else out + err
