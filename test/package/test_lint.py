"""Lint: ruff with the rules in ruff.toml (pycodestyle, pyflakes, import order, pep257 docstrings).

Runs in `make test` (and in `colcon test` with the whole suite), so a change that breaks the style
fails like any test.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (pip install -r requirements.txt)")
    return [found]


def test_ruff_check_passes():
    out = subprocess.run(
        ruff() + ["check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_code_is_formatted():
    out = subprocess.run(
        ruff() + ["format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, "run `ruff format .`:\n" + out.stdout + out.stderr
