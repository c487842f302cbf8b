"""The model and parameter choices every model-running command shares: --vlp --proposals
--device --fp32 --set, and a node parameters file read as the node reads it.

Why a module of its own: `iterprime segment`, replay, eval and the benchmarks all offer the same
flags with the same checks (the node's parameter table, ros/params.py); keeping them here lets
each command import them without importing the command line that registers the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from ..ros.names import NODE_NAME
from .errors import UserError


def _parse_value(raw: str, kind: str, name: str) -> Any:
    """KEY=VALUE text -> a value of the parameter's kind (ros/params.py); UserError if it is
    not one.
    """
    if kind == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--set {name}: expected true/false, got {raw!r}")
    if kind == "str_list":
        return [v.strip() for v in raw.split(",") if v.strip()]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        what = "an integer" if kind == "int" else "a number"
        raise UserError(f"--set {name}: expected {what}, got {raw!r}") from None
    return raw


def checked_changes(changes: dict[str, Any], flag: str = "--set") -> dict[str, Any]:
    """Setting changes checked against the node's parameter table (ros/params.py): the same
    ranges and choices as the node and --config, the parameter named in the refusal.
    """
    from ..ros.params import SPECS, ParameterError

    out: dict[str, Any] = {}
    for key, value in changes.items():
        spec = SPECS.get(key)
        if spec is None or not spec.setting:
            known = ", ".join(sorted(n for n, s in SPECS.items() if s.setting))
            raise UserError(f"{flag}: unknown setting {key!r}; known: {known}")
        try:
            clean = spec.validate(value)
        except ParameterError as exc:
            raise UserError(f"{flag}: {exc}") from None
        out[key] = tuple(clean) if spec.kind == "str_list" else clean
    return out


def _check_pairs(settings: Any) -> None:
    """The table's rules that relate two settings (longest >= shortest edge)."""
    from ..ros.params import ParameterError, validate

    try:
        validate(
            {
                "proposal_shortest_edge": settings.proposal_shortest_edge,
                "proposal_longest_edge": settings.proposal_longest_edge,
            }
        )
    except ParameterError as exc:
        raise UserError(f"bad setting: {exc}") from None


def apply_overrides(settings: Any, overrides: Sequence[str]) -> Any:
    """KEY=VALUE strings -> a new SegmenterSettings, each value checked by the node's table."""
    from ..ros.params import SPECS

    defaults = {f.name for f in dataclasses.fields(settings)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in defaults or key not in SPECS:
            raise UserError(
                f"--set: unknown setting {key!r}; known: {', '.join(sorted(defaults))}"
            )
        changes[key] = _parse_value(raw, SPECS[key].kind, key)
    try:
        settings = settings.replace(**checked_changes(changes))
    except ValueError as exc:
        raise UserError(f"bad setting: {exc}") from None
    _check_pairs(settings)
    return settings


def device_argument(value: str) -> str:
    """Argparse type for every --device flag: the node's `device` rule (ros/params.py), so
    auto | cpu | cuda | cuda:N are accepted by every command alike.
    """
    from ..ros.params import SPECS, ParameterError

    try:
        return SPECS["device"].validate(value)
    except (ParameterError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--vlp --proposals --device --fp32 --set: the model choice every model-running command
    offers.
    """
    p.add_argument(
        "--vlp", metavar="ID|DIR", help="vision-language model (Hugging Face id or folder)"
    )
    p.add_argument(
        "--proposals", metavar="ID|DIR", help="proposal model (Hugging Face id or folder)"
    )
    p.add_argument(
        "--device",
        type=device_argument,
        help="auto | cpu | cuda | cuda:N (default: the settings' value, auto)",
    )
    p.add_argument("--fp32", action="store_true", help="full precision on CUDA (default: fp16)")
    add_set_argument(p)


def add_set_argument(p: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE (repeatable): any pipeline setting, checked by the node's table."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any SegmenterSettings field, e.g. --set gradcam_layer=6 (repeatable)",
    )


def model_settings(args: argparse.Namespace, settings: Any) -> Any:
    """`settings` with the choices of add_model_arguments applied; UserError for a bad value."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("vlp_model", args.vlp),
            ("proposal_model", args.proposals),
            ("device", args.device),
        )
        if value
    }
    if args.fp32:
        changes["half_precision"] = False
    try:
        settings = settings.replace(**checked_changes(changes, "--vlp/--proposals/--device"))
    except ValueError as exc:
        raise UserError(f"bad setting: {exc}") from None
    return apply_overrides(settings, args.overrides)


def load_parameters(path: str | None) -> Any:
    """A node parameters YAML (or none) -> ros.params.Parameters; UserError naming what is
    wrong.
    """
    from ..ros.params import ParameterError, node_parameters, read_params_file, validate

    values: dict[str, Any] = {}
    if path:
        if not Path(path).is_file():
            raise UserError(f"parameters file not found: {path}")
        try:  # the node's own reader and rcl's key matching: a file means what it means there
            data = read_params_file(path)
        except ParameterError as exc:
            raise UserError(str(exc)) from None
        values = node_parameters(data, f"/{NODE_NAME}")
        if data and not values:
            raise UserError(f"{path}: no parameters for {NODE_NAME} (found {', '.join(data)})")
    try:
        return validate(values)
    except ParameterError as exc:
        raise UserError(f"{path or 'defaults'}: {exc}") from None


def settings_fingerprint(settings: Any) -> dict[str, Any]:
    """The settings that change results, as JSON values (device and caches do not)."""
    values = dataclasses.asdict(settings)
    for key in ("device", "frame_cache_size"):
        values.pop(key, None)
    return json.loads(json.dumps(values, default=list))
