"""Rooms a reader can hold: no runtime file over 500 lines, no offline-tool file over 600, and
no function over 80 lines, runtime or tools. The split into rooms of one job only lasts if a
check fails when a file or function grows back into a hall.
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


def long_functions(source: str, limit: int = 80) -> dict[str, int]:
    """Name -> length in lines of every function (methods and nested ones too) over `limit`."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > limit
    }


def test_long_functions_counts_every_line_of_a_function() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(84))
    source = f"def grown():\n{body}\n\ndef fits():\n    return 1\n"
    assert long_functions(source) == {"grown": 85}
    assert long_functions(source, limit=85) == {}


@pytest.mark.parametrize("path", RUNTIME, ids=_name)
def test_runtime_functions_are_at_most_80_lines(path: Path) -> None:
    long = long_functions(path.read_text(encoding="utf-8"))
    assert not long, f"{_name(path)}: functions over 80 lines: {long}"


@pytest.mark.parametrize("path", TOOLS, ids=_name)
def test_tools_functions_are_at_most_80_lines(path: Path) -> None:
    long = long_functions(path.read_text(encoding="utf-8"))
    assert not long, f"{_name(path)}: functions over 80 lines: {long}"
