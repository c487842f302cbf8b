"""The Layout block of docs/development.md follows the tree.

Why: a map that names files which are gone, or misses the ones a reader will open, sends a
newcomer the wrong way. The check is robust to files being added where a reader does not need
them listed (inside tools/ subfolders, tests, data): every path and module the block names must
exist, every runtime module (the package outside tools/) must be named, and every entry of
iterprime_ros/tools/ must be listed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "development.md"
PACKAGE = ROOT / "iterprime_ros"
TOOLS = PACKAGE / "tools"


def layout_entries(text: str) -> dict[str, str]:
    """The code block under `## Layout`: {path from the root: its text (with continuation
    lines)}. An entry starts at a line's first column; indented lines continue it.
    """
    section = text.split("\n## Layout", 1)[1]
    block = section.split("```", 2)[1].split("\n", 1)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            assert current is not None, f"continuation line without an entry: {line!r}"
            entries[current] += " " + line.strip()
        else:
            current, _, rest = line.partition(" ")
            entries[current] = rest
    return entries


ENTRIES = layout_entries(PAGE.read_text())


def named_modules(folder: str) -> set[str]:
    """`name.py` words in a folder entry's text: the modules it says the folder holds."""
    return set(re.findall(r"\b(\w+\.py)\b", ENTRIES.get(folder, "")))


def runtime_modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if TOOLS not in p.parents and p != TOOLS and "__pycache__" not in p.parts
    )


def test_layout_block_is_found():
    assert "iterprime_ros/pipeline.py" in ENTRIES and "iterprime_ros/core/" in ENTRIES
    assert len(ENTRIES) >= 20


def test_every_listed_path_and_module_exists():
    missing = [path for path in ENTRIES if not (ROOT / path).exists()]
    for folder in ENTRIES:
        if folder.endswith("/"):
            missing += [
                folder + m for m in named_modules(folder) if not (ROOT / folder / m).is_file()
            ]
    assert not missing, f"docs/development.md's Layout names what is not in the tree: {missing}"


def test_every_runtime_module_is_listed():
    unlisted = []
    for path in runtime_modules():
        rel = path.relative_to(ROOT).as_posix()
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        if rel in ENTRIES or path.name in named_modules(folder):
            continue
        if path.name == "__init__.py" and path.parent != PACKAGE and folder in ENTRIES:
            continue  # a subpackage's __init__ is the folder's own entry
        unlisted.append(rel)
    assert not unlisted, (
        "runtime modules missing from docs/development.md's Layout (add each to its folder's "
        f"entry as `name.py`): {unlisted}"
    )


def test_every_tools_entry_is_listed():
    unlisted = [
        p.relative_to(ROOT).as_posix() + ("/" if p.is_dir() else "")
        for p in sorted(TOOLS.iterdir())
        if p.name not in ("__init__.py", "__pycache__") and (p.suffix == ".py" or p.is_dir())
    ]
    unlisted = [p for p in unlisted if p not in ENTRIES]
    assert not unlisted, f"tools missing from docs/development.md's Layout: {unlisted}"
