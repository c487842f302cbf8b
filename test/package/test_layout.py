"""The runtime (core, models, pipeline, ros node) never imports the offline tools (tools/).

Why: the robot installs the runtime; the tools (replay, player, eval, world, bench, demo, CLI)
may import the runtime, never the other way, so a reader sees the two apart and the node does
not drag offline code (and its dependencies) onto the robot.
"""

import ast
from pathlib import Path

import pytest
from fresh_python import fresh_python

PACKAGE = Path(__file__).resolve().parents[2] / "iterprime_ros"
TOOLS = PACKAGE / "tools"
RUNTIME_FILES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if TOOLS not in p.parents and p.name != "__main__.py" and "__pycache__" not in p.parts
)


def module_of(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_modules(path: Path):
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = module_of(path) if path.name == "__init__.py" else module_of(path)[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            for alias in node.names:  # `from iterprime_ros import tools`
                yield f"{module}.{alias.name}"


def test_runtime_files_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in RUNTIME_FILES}
    assert {"pipeline.py", "ros/node.py", "core/igrs.py", "models/blip.py"} <= names
    assert not any(n.startswith("tools/") for n in names)


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_runtime_does_not_import_tools(path):
    for module in imported_modules(path):
        assert not (
            module == "iterprime_ros.tools" or module.startswith("iterprime_ros.tools.")
        ), (
            f"{path.relative_to(PACKAGE)} imports {module}: runtime code must not import the "
            "offline tools"
        )


def test_importing_the_node_loads_no_tool():
    code = (
        "import sys, iterprime_ros, iterprime_ros.ros.node, iterprime_ros.pipeline, "
        "iterprime_ros.models, "
        "iterprime_ros.overlay; "
        "print(sorted(m for m in sys.modules if m.startswith('iterprime_ros.tools')))"
    )
    assert fresh_python(code, cwd=PACKAGE.parent) == "[]"
