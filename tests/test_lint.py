"""Style is checked, not reviewed: `ruff check` and `ruff format --check` over src, tests and tools ([tool.ruff] in
pyproject.toml). `make format` fixes what they report (`make lint` runs the same checks as this test)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"  # the dev extra installs it next to the interpreter


@pytest.mark.parametrize(
    "args", [["check", "--output-format", "concise"], ["format", "--check"]], ids=["check", "format"]
)
def test_ruff_passes(args):
    assert RUFF.is_file(), f"no {RUFF}: install the dev extra (make venv)"
    r = subprocess.run(
        [str(RUFF), *args, "src", "tests", "tools"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, (
        f"ruff {' '.join(args)} (make format fixes most of it):\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
    )
