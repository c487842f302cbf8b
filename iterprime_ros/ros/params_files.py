"""Params YAML files of the node: which files its ROS arguments name, what they give it, and
every value checked by the table before rcl reads them.

Why before rclpy.init: rcl answers a malformed file with a traceback, and silently keeps an
earlier value when a later file gives the same parameter with another type.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .param_spec import ParameterError
from .param_table import _ROS_OWN, SPECS


def params_files(argv: list[str]) -> list[str]:
    """The --params-file paths among a node's ROS arguments, in order."""
    files, in_ros = [], False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg == "--params-file" and i + 1 < len(argv):
            files.append(argv[i + 1])
    return files


def read_params_file(path: str) -> dict[str, Any]:
    """A params file as a mapping; ParameterError with the file and the reason if unreadable.

    Why before rclpy.init: rcl answers a malformed file with a traceback and exit status 1.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ParameterError(f"params file {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParameterError(f"params file {path}: not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("ros__parameters", {}), dict)
        for v in data.values()
    ):
        raise ParameterError(
            f"params file {path}: expected 'node_name: {{ros__parameters: {{name: value}}}}'"
        )
    return data


def _matches(key: str, node_fqn: str) -> bool:
    """Whether a params-file key names this node (rcl: '/**' any namespaces, '*' one name)."""
    pattern = key if key.startswith("/") else "/" + key
    regex = ""
    for part in re.split(r"(/\*\*|\*)", pattern):
        if part == "/**":
            regex += "(/[^/]+)*"
        elif part == "*":
            regex += "[^/]+"
        else:
            regex += re.escape(part)
    return re.fullmatch(regex, node_fqn) is not None


def node_parameters(data: Mapping[str, Any], node_fqn: str) -> dict[str, Any]:
    """The ros__parameters a params file (read_params_file) gives one node, merged in file order
    as rcl does (`/**`, `*` wildcards; later entries win).
    """
    values: dict[str, Any] = {}
    for key, entry in data.items():
        if _matches(str(key), node_fqn):
            values.update(entry.get("ros__parameters") or {})
    return values


def check_params_files(paths: list[str], node_fqn: str) -> None:
    """Validate every value each file gives this node, by the table; ParameterError lists all.

    Why: rcl merges the files and silently keeps an earlier value when a later file gives the
    same parameter with another type (queue_size: '7' after queue_size: 5), so the node would
    never see the bad value. Unknown names are reported too.
    """
    errors = []
    for path in paths:
        for key, entry in read_params_file(path).items():
            if not _matches(str(key), node_fqn):
                continue
            for name, value in (entry.get("ros__parameters") or {}).items():
                where = f"params file {path} ({key})"
                if name in _ROS_OWN or str(name).startswith("qos_overrides"):
                    continue
                spec = SPECS.get(name)
                if spec is None:
                    errors.append(f"{where}: unknown parameter {name!r}")
                    continue
                try:
                    spec.validate(value)
                except ParameterError as exc:
                    errors.append(f"{where}: {exc}")
    if errors:
        raise ParameterError("; ".join(errors))
