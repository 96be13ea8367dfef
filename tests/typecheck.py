"""Type-check a snippet of application code with ``mypy --strict``, as a user's project would.

For the typing the API promises (``py.typed``): what the README shows must
pass a strict check. The snippets see this checkout of the package, whatever
is installed, and share one mypy cache per test run, so only the first check
pays for reading FastAPI and SQLAlchemy.
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
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    monkeypatch.chdir(ROOT)  # the project's mypy configuration (the pydantic plugin)
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(directory / "cache"), "--no-error-summary", str(snippet)]
    )
    return "" if status == 0 else out + err
