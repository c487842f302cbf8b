"""No docstring or comment line of one or two words followed by more text.

Why: an automatic wrap once broke sentences into fragments ("ParameterError lists" / "every" /
"bad value ..."), which read as nonsense and, in a usage line, split a command so a copy of it
fails. ruff has no rule for this, so this test is the check. A real short line stays allowed
where it is structure, not a fragment: a heading ending in ':', a bullet, the last line of a
paragraph, a command continued with a backslash, aligned columns (a table, a grammar).

The repair: join the fragment to its neighbour, or rewrap the few lines around it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("iterprime_ros", "test", "scripts", "launch")

# Files still holding fragments, each being rewritten on another branch at the time this check
# was added; the repair script runs over them after those branches merge. Empty this set then,
# so the check covers every file.
KNOWN_BROKEN: set[str] = set()

BULLET = re.compile(r"^([-*+•]|\d+[.)]|>>>|\.\.\.)(\s|$)")


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def is_fragment(prev: str | None, line: str, nxt: str) -> bool:
    """`line` (text without quotes or '#') is one or two words, and more text follows at the same
    indentation, with none of the structures named in the module docstring.
    """
    if not 1 <= len(line.split()) <= 2 or not nxt.strip() or indent(line) != indent(nxt):
        return False
    text = line.strip()
    if text.endswith(":") or BULLET.match(text) or BULLET.match(nxt.strip()):
        return False
    if set(text) <= set("-=~_*#"):
        return False
    if prev is not None and prev.rstrip().endswith("\\"):
        return False
    return not any("   " in n.strip() for n in (prev or "", line))


def docstring_fragments(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if not (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            continue
        const = body[0].value
        lines = source.splitlines()[const.lineno - 1 : const.end_lineno]
        inner = lines[1:-1] + [re.split(r"(\"\"\"|''')", lines[-1])[0]] if len(lines) > 1 else []
        for k in range(len(inner) - 1):
            prev = inner[k - 1] if k > 0 else None
            if is_fragment(prev, inner[k], inner[k + 1]):
                found.append((const.lineno + 1 + k, inner[k].strip()))
    return found


def comment_fragments(source: str) -> list[tuple[int, str]]:
    lines = source.splitlines()
    full = {}  # line number -> column of a comment alone on its line
    for t in tokenize.generate_tokens(io.StringIO(source).readline):
        if t.type == tokenize.COMMENT and not lines[t.start[0] - 1][: t.start[1]].strip():
            full[t.start[0]] = t.start[1]
    found = []
    for number, col in full.items():
        if full.get(number + 1) != col:
            continue
        body = lines[number - 1][col + 1 :]
        if body.strip().startswith(("noqa", "type:")):
            continue
        prev = lines[number - 2][col + 1 :] if full.get(number - 1) == col else None
        if is_fragment(prev, body, lines[number][col + 1 :]):
            found.append((number, body.strip()))
    return found


def python_files() -> list[Path]:
    return sorted(
        p
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def test_the_rule_finds_a_fragment_and_spares_structure():
    broken = '"""ParameterError lists\nevery\nbad value, unknown names included.\n"""\n'
    assert docstring_fragments(broken) == [(2, "every")]
    usage = '"""Usage.\n\n    ros2 run pkg node --ros-args -r\n    image:=/cam\n    other\n"""\n'
    assert docstring_fragments(usage) == [(4, "image:=/cam")]
    fine = (
        '"""Why:\nbecause.\n\n- one\n- two\n\nrun it \\\\\n    x:=1\n    then more\n\n'
        '    A := B        C\n    or D\n    E\nLast line.\n"""\n'
    )
    assert docstring_fragments(fine) == []
    comments = "# a long comment that the wrap broke\n# here\n# and it goes on\nx = 1  # noqa\n"
    assert comment_fragments(comments) == [(2, "here")]


@pytest.mark.parametrize("path", python_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_broken_docstring_or_comment_line(path):
    rel = path.relative_to(ROOT).as_posix()
    source = path.read_text()
    found = docstring_fragments(source) + comment_fragments(source)
    if rel in KNOWN_BROKEN:
        pytest.skip(f"{rel} is in KNOWN_BROKEN ({len(found)} fragment(s) left)")
    assert not found, (
        f"{rel}: lines of one or two words in the middle of a sentence: "
        + ", ".join(f"line {n}: {text!r}" for n, text in found)
    )


def test_known_broken_files_are_still_broken():
    """A file repaired on its own leaves the allow-list at once (it would hide new breaks)."""
    for rel in sorted(KNOWN_BROKEN):
        path = ROOT / rel
        if path.exists():
            source = path.read_text()
            assert docstring_fragments(source) + comment_fragments(source), (
                f"{rel} has no fragment left: remove it from KNOWN_BROKEN"
            )
