"""Rooms a reader can hold: no runtime file over 500 lines, no offline-tool file over 600, and
no runtime function over 80 lines. The split into rooms of one job only lasts if a check fails
when a file or function grows back into a hall.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "iterprime_ros"
RUNTIME = sorted(p for p in PACKAGE.rglob("*.py") if "tools" not in p.relative_to(PACKAGE).parts)
TOOLS = sorted((PACKAGE / "tools").rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", RUNTIME, ids=_name)
def test_runtime_file_is_at_most_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 500, f"{_name(path)} has {lines} lines: split it into rooms of one job"


@pytest.mark.parametrize("path", TOOLS, ids=_name)
def test_tools_file_is_at_most_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 600, f"{_name(path)} has {lines} lines: split it into parts"


@pytest.mark.parametrize("path", RUNTIME, ids=_name)
def test_runtime_functions_are_at_most_80_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not long, f"{_name(path)}: functions over 80 lines: {long}"
