"""One parameter of the iterprime_segmenter node: its type, range or choices, and the words
that say what is allowed.

Why a module of its own: the rows (param_table.py) are data; this is the rule every entry point
(node, CLI ``--set``, replay's params YAML, the benchmarks) checks a value with, so a value one
accepts, all accept. YAML 1.1 reads a bare ``off``, ``no`` or ``false`` as a boolean: a string
parameter that has an ``off`` value takes a YAML false as that value, and refuses any other
boolean with a message saying to quote the word.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Callable

from ..pipeline import SegmenterSettings

_DEFAULTS = {f.name: f.default for f in fields(SegmenterSettings)}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PTB_NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")


class ParameterError(ValueError):
    """One or more parameters have bad values; the message lists each with what is allowed."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. kind: bool | int | float | str | str_list. setting: True when it is a
    SegmenterSettings field of the same name (else a node-only parameter).
    """

    name: str
    kind: str
    description: str
    default: Any = None
    choices: tuple[str, ...] | None = None
    low: float | None = None  # inclusive unless low_open
    high: float | None = None  # inclusive unless high_open
    low_open: bool = False
    high_open: bool = False
    check: Callable[[Any], str | None] | None = None  # extra rule: returns what is wrong, or None
    setting: bool = True
    hint: str | None = None  # allowed values in words, when the rule is not a range or a list
    yaml_false: str | None = None  # the value a YAML false stands for (a bare `off`)
    parse: Callable[[Any], Any] | None = None  # checked value -> the typed setting (once)
    # safe to change while the node runs (`ros2 param set`); else only while unconfigured (set
    # from param_table.LIVE, the one list of live parameters)
    live: bool = False

    def __post_init__(self) -> None:
        if self.default is None and self.setting:
            default = _DEFAULTS[self.name]
            object.__setattr__(
                self, "default", list(default) if self.kind == "str_list" else default
            )

    @property
    def allowed(self) -> str:
        """What values are allowed, in words (error messages and the descriptor)."""
        if self.hint:
            return self.hint
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        words = {
            "bool": "true or false",
            "int": "an integer",
            "float": "a number",
            "str": "a string",
            "str_list": "a list of strings",
        }[self.kind]
        if self.low is not None or self.high is not None:
            lo = (
                ""
                if self.low is None
                else (f"> {self.low:g}" if self.low_open else f">= {self.low:g}")
            )
            hi = (
                ""
                if self.high is None
                else (f"< {self.high:g}" if self.high_open else f"<= {self.high:g}")
            )
            words += " " + " and ".join(p for p in (lo, hi) if p)
        return words

    def ros_default(self) -> Any:
        """The value handed to declare_parameter (an empty string list is [""]: ROS cannot type
        []).
        """
        if self.kind == "str_list":
            return list(self.default) or [""]
        return self.default

    def validate(self, value: Any) -> Any:
        """The value converted to this parameter's type; ParameterError naming the parameter if
        bad.
        """
        v = self._coerce(value)
        problem = None
        if self.choices and v not in self.choices:
            problem = "not allowed"
        elif self.kind in ("int", "float"):
            if self.kind == "float" and not math.isfinite(v):
                problem = "not a finite number"
            elif self.low is not None and (v <= self.low if self.low_open else v < self.low):
                problem = "too small"
            elif self.high is not None and (v >= self.high if self.high_open else v > self.high):
                problem = "too large"
        if problem is None and self.check is not None:
            problem = self.check(v)
        if problem is not None:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r}: {problem}; allowed: {self.allowed}"
            )
        return v

    def typed(self, value: Any) -> Any:
        """A validated value as the setting the code uses (a policy object, say), else as is."""
        return self.parse(value) if self.parse is not None else value

    def _coerce(self, value: Any) -> Any:
        bad = ParameterError(
            f"parameter '{self.name}' = {value!r}: wrong type ({type(value).__name__}); "
            f"allowed: {self.allowed}"
        )
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise bad
        if self.kind == "str" and isinstance(value, bool):
            return self._yaml_bool(value)
        if isinstance(value, bool):
            raise bad
        if self.kind == "int":
            if isinstance(value, int):
                return value
            raise bad
        if self.kind == "float":
            if isinstance(value, (int, float)):  # "2" in YAML is an int: accept it for a float
                return float(value)
            raise bad
        if self.kind == "str":
            if isinstance(value, str):
                return value
            raise bad
        if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
            return [
                x for x in value if x.strip()
            ]  # "" entries only exist because ROS cannot type []
        raise bad

    def _yaml_bool(self, value: bool) -> str:
        """A YAML boolean given to a string parameter: YAML 1.1 reads a bare off/no/false (and
        on/yes/true) as one. A false is this parameter's `off` word when it has one; anything
        else is refused with the fix.
        """
        if value is False and self.yaml_false is not None:
            return self.yaml_false
        word = "off" if value is False else "on"
        raise ParameterError(
            f"parameter '{self.name}' = {value!r}: YAML read a bare {word}/{str(value).lower()} "
            f"as a boolean; quote the value (e.g. {self.name}: '{self.yaml_false or word}'); "
            f"allowed: {self.allowed}"
        )


def _template(v: str) -> str | None:
    if v.count("{}") != 1 or re.search(r"\{(?!\})|(?<!\{)\}", v):
        return "not a template with exactly one placeholder"
    return None


def _nonempty(v: str) -> str | None:
    return "empty" if not v.strip() else None


def _device(v: str) -> str | None:
    return None if _DEVICE.match(v.strip().lower()) else "not a device"


def _prefetch(v: str) -> str | None:
    try:
        parse_prefetch(v)
    except ValueError:
        return "not a prefetch policy"
    return None


def parse_prefetch(v: str) -> Any:
    """The `prefetch` text as the typed policy (prefetch.PrefetchPolicy), parsed in one place."""
    from ..prefetch import PrefetchPolicy

    return PrefetchPolicy.parse(v)


def _frame_id(v: str) -> str | None:
    if v and (v != v.strip() or " " in v or v.startswith("/")):
        return "not a tf2 frame id"
    return None


def _tags(v: list[str]) -> str | None:
    if not v:
        return "empty (at least NN is needed)"
    bad = [t for t in v if t not in PTB_NOUN_TAGS]
    return f"unknown tags {bad}" if bad else None
