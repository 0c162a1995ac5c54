"""House rules checked by tools: lint, strict typing, and the layer contract (import-linter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv",
    [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "lint-imports")],
        [str(BIN / "mypy")],
    ],
    ids=["ruff", "import-linter", "mypy-strict"],
)
def test_tool_passes(argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_module_grows_past_the_house_limit() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in (ROOT / "nodeprobe").rglob("*.py")
             if "_pb2" not in p.name}
    big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 450}
    assert not big, f"split these along a real seam: {big}"
