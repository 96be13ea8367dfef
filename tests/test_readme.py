"""Every Python block in the README runs, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int) -> None:
    code = compile(BLOCKS[index], f"README.md[block {index}]", "exec", dont_inherit=True)
    exec(code, {"__name__": f"readme_block_{index}"})  # noqa: S102 - our own README
