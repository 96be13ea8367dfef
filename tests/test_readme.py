"""Every Python block in the README runs, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int) -> None:
    code = compile(BLOCKS[index], f"README.md[block {index}]", "exec", dont_inherit=True)
    namespace: dict[str, Any] = {"__name__": f"readme_block_{index}"}
    exec(code, namespace)  # noqa: S102 - our own README
    if "class EpisodeRepository" in BLOCKS[index]:
        # The first-resource walk-through is also an example of the API conventions.
        from heygen_conventions import check_app

        errors = [v for v in check_app(namespace["app"]) if v.severity == "error"]
        assert errors == []


def test_every_setting_is_in_the_configuration_table() -> None:
    from heygen_conventions import Settings

    text = README.read_text(encoding="utf-8")
    missing = [n for n in Settings.model_fields if f"`HEYGEN_{n.upper()}`" not in text]
    assert not missing, f"README configuration table lacks {missing}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_type_checks(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README shows passes ``mypy --strict``, as a user's project would run it."""
    from tests.typecheck import mypy_strict

    assert mypy_strict(BLOCKS[index], monkeypatch) == ""
