"""Robustness, part 4: what the code can do with the text and images it is sent (no node needed).

A command is text to segment and nothing more. This reads the source (AST, not grep, so
comments and docstrings do not count):
- nothing in iterprime_ros evaluates text as code: no eval/exec/compile/__import__ call, no
  yaml.load (only safe_load), no trust_remote_code, no torch.load but with weights_only=True;
- the only unpickling is the eval harness reading the RefCOCO refs file from the user's own
  dataset folder (a file the user supplies, never message data), through an Unpickler that
  refuses every class;
- the code the node runs (every iterprime_ros module it imports, found by importing it in a
  fresh interpreter, plus the debug overlay it imports lazily) starts no process and opens
  no file for writing. What it reads: the model folders named by its parameters.
The run-time side (hostile commands answered as text, no file written, parameters unchanged
and read-only) is in test_robustness_input.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "iterprime_ros"
CODE_CALLS = {"eval", "exec", "compile", "__import__"}
UNPICKLING_ALLOWED = {
    "iterprime_ros/tools/eval/datasets.py"
}  # RefCOCO refs(unc).p from the user's dataset folder
WRITE_ATTRS = {
    "write_text",
    "write_bytes",
    "imwrite",
    "save",
    "save_pretrained",
    "mkdir",
    "makedirs",
    "touch",
    "mkdtemp",
    "mkstemp",
    "NamedTemporaryFile",
    "TemporaryDirectory",
    "rmtree",
    "symlink_to",
    "copyfile",
    "copytree",
    "unlink",
}
FS_CALLS = {"copy", "copy2", "move", "rename", "replace", "remove"}  # only as os.X / shutil.X
PROCESS_ATTRS = {
    "system",
    "popen",
    "Popen",
    "run",
    "call",
    "check_call",
    "check_output",
    "spawnv",
    "execv",
    "execvp",
    "fork",
}


def _sources() -> dict[str, ast.AST]:
    return {
        str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p))
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            owner = (
                f.value.id
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                else ""
            )
            yield node, name, owner


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _weights_only(call: ast.Call) -> bool:
    """torch.load(..., weights_only=True) literally: tensors and plain containers only, no class
    is ever built from the file (the ALBEF checkpoint reader, models/albef.py).
    """
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def test_no_text_is_evaluated_as_code():
    found = []
    for path, tree in _sources().items():
        for node, name, owner in _calls(tree):
            if isinstance(node.func, ast.Name) and name in CODE_CALLS:
                found.append(f"{path}:{node.lineno} {name}()")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                found.append(f"{path}:{node.lineno} yaml.{name}()")
            if owner == "torch" and name == "load" and not _weights_only(node):
                found.append(f"{path}:{node.lineno} torch.load() without weights_only=True")
            if any(k.arg == "trust_remote_code" for k in node.keywords):
                found.append(f"{path}:{node.lineno} trust_remote_code")
    assert not found, found


def test_unpickling_only_of_the_users_refcoco_file_and_only_plain_data():
    users = {
        path
        for path, tree in _sources().items()
        if _imports(tree) & {"pickle", "marshal", "shelve", "dill"}
    }
    assert users <= UNPICKLING_ALLOWED, users
    source = (ROOT / "iterprime_ros/tools/eval/datasets.py").read_text()
    tree = ast.parse(source)
    unpicklers = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef)
        and any(ast.unparse(b) == "pickle.Unpickler" for b in n.bases)
    ]
    assert unpicklers and all(
        any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in c.body)
        for c in unpicklers
    ), "the refs unpickler must refuse classes (find_class)"
    loads = [
        f"{n.lineno}"
        for n, name, owner in _calls(tree)
        if owner == "pickle" and name in ("load", "loads")
    ]
    assert not loads, f"plain pickle.load in eval/datasets.py at lines {loads}"


class _MakesADirectory:
    """Pickles to a call of os.mkdir(marker): what a tampered refs file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.mkdir, (str(self.marker),))


def test_a_refs_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    """The behaviour, not the shape: an unpickler whose find_class accepts classes fails here."""
    import pickle

    import pytest
    from eval_fixtures import write_refer

    from iterprime_ros.tools.eval.datasets import DatasetError, ReferDataset

    root = write_refer(tmp_path / "refer")
    refs_path = root / "refcoco" / "refs(unc).p"
    plain = ReferDataset(root, "refcoco").refs  # the plain file loads
    assert plain and all(isinstance(r, dict) for r in plain)
    for payload in (
        [{"ref_id": 1, "evil": _MakesADirectory(tmp_path / "pwned")}],
        {"not": "a list"},
    ):
        refs_path.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(DatasetError, match=r"refs\(unc\).p"):
            ReferDataset(root, "refcoco")
    assert not (tmp_path / "pwned").exists(), "the pickle ran code"
    import collections

    refs_path.write_bytes(pickle.dumps([collections.OrderedDict(a=1)], protocol=2))
    with pytest.raises(DatasetError, match="collections.OrderedDict; only plain data"):
        ReferDataset(root, "refcoco")


def _node_modules() -> list[str]:
    """Source files of every iterprime_ros module the node imports (and the lazily imported
    overlay).
    """
    code = (
        "import json, sys; import iterprime_ros.ros.node, iterprime_ros.overlay; "
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('iterprime_ros') and getattr(m, '__file__', None))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    files = [Path(f).resolve() for f in json.loads(out.stdout.strip().splitlines()[-1])]
    return sorted(
        str(f.relative_to(ROOT)) for f in files if f.suffix == ".py" and PACKAGE in f.parents
    )


def test_node_code_writes_no_files_and_starts_no_process():
    modules = _node_modules()
    assert "iterprime_ros/ros/node.py" in modules and "iterprime_ros/pipeline.py" in modules
    found = []
    for path in modules:
        tree = ast.parse((ROOT / path).read_text(), path)
        if _imports(tree) & {"subprocess", "shutil", "tempfile", "pickle"}:
            found.append(
                f"{path}: imports "
                f"{sorted(_imports(tree) & {'subprocess', 'shutil', 'tempfile', 'pickle'})}"
            )
        for node, name, owner in _calls(tree):
            if (
                name in WRITE_ATTRS
                and isinstance(node.func, ast.Attribute)
                and owner not in ("self", "str")
            ):
                found.append(f"{path}:{node.lineno} .{name}()")
            if owner in ("os", "shutil") and name in FS_CALLS:
                found.append(f"{path}:{node.lineno} {owner}.{name}()")
            if owner in ("os", "subprocess") and name in PROCESS_ATTRS:
                found.append(f"{path}:{node.lineno} {owner}.{name}()")
            if name == "open" and (isinstance(node.func, ast.Name) or owner in ("io", "os")):
                mode = (
                    node.args[1]
                    if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg == "mode"), None)
                )
                if mode is not None and not (
                    isinstance(mode, ast.Constant) and set(str(mode.value)) <= set("rbt")
                ):
                    found.append(f"{path}:{node.lineno} open(..., {ast.unparse(mode)})")
            if name == "open" and isinstance(node.func, ast.Attribute) and node.args:
                mode = node.args[0]
                if isinstance(mode, ast.Constant) and not set(str(mode.value)) <= set("rbt"):
                    found.append(f"{path}:{node.lineno} .open({mode.value!r})")
    assert not found, "\n".join(found)
