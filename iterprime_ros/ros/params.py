"""Every parameter of the iterprime_segmenter node, declared in one table.

Why one table: the node declares, documents (ParameterDescriptor) and validates from the
same rows, and the rows that configure the method map one-to-one onto
pipeline.SegmenterSettings fields (their defaults are taken from there, so the two cannot
drift). A bad value stops the node at start with a message that names the parameter, the
value and what is allowed. This module imports rclpy only inside ``declare_and_read``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from ..image_size import DEFAULT_MAX_IMAGE_PIXELS
from ..pipeline import SegmenterSettings

_DEFAULTS = {f.name: f.default for f in fields(SegmenterSettings)}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_PTB_NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")


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

    @property
    def live(self) -> bool:
        """Safe to change while the node runs (`ros2 param set`); else only while unconfigured."""
        return self.name in LIVE

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

    def _coerce(self, value: Any) -> Any:
        bad = ParameterError(
            f"parameter '{self.name}' = {value!r}: wrong type ({type(value).__name__}); "
            f"allowed: {self.allowed}"
        )
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise bad
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


def _template(v: str) -> str | None:
    if v.count("{}") != 1 or re.search(r"\{(?!\})|(?<!\{)\}", v):
        return "not a template with exactly one placeholder"
    return None


def _nonempty(v: str) -> str | None:
    return "empty" if not v.strip() else None


def _device(v: str) -> str | None:
    return None if _DEVICE.match(v.strip().lower()) else "not a device"


def _prefetch(v: str) -> str | None:
    from ..prefetch import PrefetchPolicy

    try:
        PrefetchPolicy.parse(v)
    except ValueError:
        return "not a prefetch policy"
    return None


def _frame_id(v: str) -> str | None:
    if v and (v != v.strip() or " " in v or v.startswith("/")):
        return "not a tf2 frame id"
    return None


def _tags(v: list[str]) -> str | None:
    if not v:
        return "empty (at least NN is needed)"
    bad = [t for t in v if t not in _PTB_NOUN_TAGS]
    return f"unknown tags {bad}" if bad else None


P = ParamSpec
PARAMETERS: tuple[ParamSpec, ...] = (
    # compute
    P("device", "str", "where the models run", check=_device, hint="auto, cpu, cuda or cuda:N"),
    P("half_precision", "bool", "fp16 weights on CUDA when autocast is off (ignored on CPU)"),
    P(
        "autocast",
        "str",
        "mixed precision with fp32 weights: auto (fp16 on CUDA, bf16 on a CPU with native bf16), "
        "off, bf16 or fp16 (CUDA only)",
        choices=("auto", "off", "bf16", "fp16"),
    ),
    # models
    P(
        "vlp_model",
        "str",
        "vision-language model: Hugging Face id (from the local cache; fetch with "
        "`iterprime download`) or a local folder",
        check=_nonempty,
    ),
    P(
        "proposal_model",
        "str",
        "mask-proposal model: Hugging Face id or local folder",
        check=_nonempty,
    ),
    P(
        "vlp_backend",
        "str",
        "VLP backend in the model registry",
        choices=("blip_itm", "albef_itm"),
    ),
    P(
        "proposal_backend",
        "str",
        "proposal backend in the model registry",
        choices=("mask2former",),
    ),
    # Grad-CAM
    P(
        "gradcam_layer",
        "int",
        "cross-attention layer used for Grad-CAM (0-based; -1: the backend's own, BLIP 6, "
        "ALBEF 8)",
        low=-1,
        high=47,
    ),
    P(
        "prompt_template",
        "str",
        "text around the expression, with one {} placeholder",
        check=_template,
        hint="a string with exactly one '{}' and no other braces, e.g. 'there is a {}'",
    ),
    P(
        "first_token",
        "str",
        "first token of the ITM text: BLIP's [ENC] or [CLS]",
        choices=("enc", "cls"),
    ),
    P("max_text_tokens", "int", "longest tokenised prompt", low=8, high=512),
    # PWEM / IGRS
    P(
        "aggregation",
        "str",
        "how token Grad-CAMs are combined",
        choices=("pwem", "global", "local", "gvlp", "mean"),
    ),
    P(
        "no_primary",
        "str",
        "aggregation when no primary word is found",
        choices=("reference", "gvlp"),
    ),
    P("igrs_iterations", "int", "IGRS passes (1 turns the refinement off)", low=1, high=10),
    P(
        "igrs_alpha",
        "float",
        "weight of the new map in the IGRS blend (paper's lambda = 1 - alpha)",
        low=0.0,
        high=1.0,
        low_open=True,
    ),
    P(
        "binarize_threshold",
        "float",
        "heat above which patches are masked in the next IGRS pass",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    ),
    P("stop_rule", "str", "when IGRS stops early", choices=("reference", "soft_itm")),
    # proposals and selection
    P(
        "proposal_threshold",
        "float",
        "sigmoid threshold of the proposal masks",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    ),
    P(
        "proposal_shortest_edge",
        "int",
        "proposal network input: shortest edge in pixels",
        low=32,
        high=4096,
    ),
    P(
        "proposal_longest_edge",
        "int",
        "proposal network input: longest edge limit in pixels",
        low=32,
        high=8192,
    ),
    P(
        "max_components",
        "int",
        "proposals with more connected components are not selected",
        low=1,
        high=10000,
    ),
    P(
        "empty_selection",
        "str",
        "nothing valid to select: fail, or take the proposal with the most heat (flagged)",
        choices=("fail", "best_heat"),
    ),
    P(
        "selection_score",
        "str",
        "selection rule: reference (paper), coverage (heat F-measure) or whole (whole object "
        "over its parts)",
        choices=("reference", "coverage", "whole"),
    ),
    P(
        "spatial_prior",
        "bool",
        "prefer proposals placed as the expression's spatial words say (leftmost, top ...)",
    ),
    # text
    P(
        "primary_tags",
        "str_list",
        "PTB tags that can be the primary word (reference: NN)",
        check=_tags,
        hint="a non-empty list of " + ", ".join(_PTB_NOUN_TAGS),
    ),
    P("parser", "str", "parser for the primary word", choices=("auto", "benepar", "spacy")),
    P("normalize_commands", "bool", "turn spoken commands into referring expressions"),
    P("extra_command_phrases", "str_list", "more leading phrases to strip, e.g. the robot's name"),
    P("check_language", "bool", "fail commands that do not look like English"),
    P(
        "frame_cache_size",
        "int",
        "frames whose proposals and image embedding are kept",
        low=1,
        high=64,
    ),
    # camera, frames and standard outputs (README "Robot-frame outputs")
    P(
        "image_transport",
        "str",
        "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage on "
        "`image/compressed` (JPEG/PNG, decoded with OpenCV)",
        choices=("raw", "compressed"),
        default="raw",
        setting=False,
    ),
    P(
        "image_rectified",
        "bool",
        "the image and its aligned depth are rectified: back-project through camera_info P "
        "(false: through K, the distortion undone)",
        default=False,
        setting=False,
    ),
    P(
        "target_frame",
        "str",
        "frame of centroid_target, grasp_point_target, extent_3d, the markers and 3-D "
        "detections, looked up with tf2 at the image stamp ('' = the camera frame)",
        default="",
        check=_frame_id,
        setting=False,
        hint="'' or a tf2 frame id (no spaces, no leading '/')",
    ),
    P(
        "transform_timeout_s",
        "float",
        "how long to wait for the transform into target_frame at the image stamp",
        default=0.1,
        low=0.0,
        high=10.0,
        setting=False,
    ),
    # node behaviour (not pipeline settings)
    P(
        "queue_size",
        "int",
        "commands that may wait while one runs; overflow fails the oldest waiting",
        default=5,
        low=1,
        high=1000,
        setting=False,
    ),
    P(
        "max_image_age_s",
        "float",
        "a command needs an image received at most this long ago (node clock)",
        default=2.0,
        low=0.0,
        high=3600.0,
        low_open=True,
        setting=False,
    ),
    P(
        "prefetch",
        "str",
        "prepare the latest camera frame (proposals + image embedding) while no command runs: "
        "off, latest, or every:N (every N-th frame)",
        default="latest",
        check=_prefetch,
        setting=False,
        hint="off, latest or every:N with N >= 1",
    ),
    P(
        "prefetch_max_age_s",
        "float",
        "a command uses the latest prefetched frame instead of the newest image when that frame "
        "was received at most this long ago (node clock); 0 always takes the newest image",
        default=30.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    P(
        "publish_debug_image",
        "bool",
        "publish ~/debug_image (heat map, mask, centroid, expression)",
        default=True,
        setting=False,
    ),
    P(
        "depth_erosion_px",
        "int",
        "mask erosion before the depth median (mask edges often hit the background)",
        default=3,
        low=0,
        high=50,
        setting=False,
    ),
    P(
        "depth_sync_tolerance_s",
        "float",
        "largest stamp difference among the image, the depth and the camera_info used",
        default=0.1,
        low=0.0,
        high=10.0,
        setting=False,
    ),
    P(
        "autostart",
        "bool",
        "configure and activate at start (false: wait for a lifecycle manager)",
        default=True,
        setting=False,
    ),
    P(
        "max_image_pixels",
        "int",
        "bigger images are downscaled for the models (mask at full size); over 16x this, "
        "refused; 0: no limit",
        default=DEFAULT_MAX_IMAGE_PIXELS,
        low=0,
        high=400_000_000,
        setting=False,
    ),
    P(
        "diagnostics_period_s",
        "float",
        "period of the /diagnostics status (state, queue, image rate and age, latency)",
        default=1.0,
        low=0.1,
        high=60.0,
        setting=False,
    ),
    P(
        "image_qos",
        "str",
        "reliability of the image, depth and camera_info subscriptions",
        default="best_effort",
        choices=("best_effort", "reliable"),
        setting=False,
    ),
    # following the object after a command (tracking.py, ~/track)
    P(
        "track",
        "bool",
        "after a successful command, follow its object on later frames (~/track)",
        default=True,
        setting=False,
    ),
    P(
        "track_rate_hz",
        "float",
        "most track updates per second (0: every frame it can afford)",
        default=0.0,
        low=0.0,
        high=1000.0,
        setting=False,
    ),
    P(
        "track_timeout_s",
        "float",
        "a track ends this long after its command (0: never)",
        default=0.0,
        low=0.0,
        high=86400.0,
        setting=False,
    ),
    P(
        "track_lost_timeout_s",
        "float",
        "a track lost for longer than this ends",
        default=3.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    P(
        "track_flow",
        "str",
        "optical flow that carries the mask between frames (none: only proposals)",
        default="dis",
        choices=("dis", "farneback", "none"),
        setting=False,
    ),
    P(
        "track_flow_max_side",
        "int",
        "flow is computed on frames scaled to at most this side",
        default=320,
        low=16,
        high=4096,
        setting=False,
    ),
    P(
        "track_min_appearance",
        "float",
        "colour-histogram similarity to the command's mask below which the object counts as lost",
        default=0.5,
        low=0.0,
        high=1.0,
        setting=False,
    ),
    P(
        "track_proposals_period_s",
        "float",
        "re-associate with fresh mask proposals at most this often (a proposal pass on the "
        "current frame; 0: never)",
        default=0.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    # the conversation (docs/voice.md)
    # the conversation (docs/voice.md)
    P(
        "min_confidence",
        "float",
        "answers with a lower confidence are 'not sure': success false, no grasp target, their "
        "candidates and a question instead (0: every answer found is a target)",
        low=0.0,
        high=1.0,
    ),
    P(
        "hold_ambiguous",
        "bool",
        "an ambiguous answer (the words fit several objects) is no target either until the "
        "person chooses (the question is published either way)",
    ),
    P(
        "max_candidates",
        "int",
        "distinct objects offered with each answer (candidates)",
        low=1,
        high=20,
    ),
    P(
        "ambiguity_margin",
        "float",
        "the runner-up within this share of the best candidate's score makes an answer ambiguous",
        low=0.0,
        high=1.0,
        high_open=True,
    ),
    P(
        "plural_commands",
        "bool",
        "'both cups', 'all the red blocks': answer with every matching object (objects)",
    ),
    P(
        "dialogue_timeout_s",
        "float",
        "a question or answer older than this takes no replies or corrections",
        low=0.0,
        high=86400.0,
        low_open=True,
    ),
    P(
        "publish_candidate_masks",
        "bool",
        "give each candidate in a result its full-size mono8 mask (false: boxes and "
        "descriptions only, for lighter messages)",
        default=True,
        setting=False,
    ),
)
del P

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}
_ROS_OWN = ("use_sim_time", "start_type_description_service", "qos_overrides")  # rclpy's own

# Method and node settings that need no reload: `ros2 param set` changes them on a running node,
# validated by the rows above. The rest (models, device, backends, input sizes, parser, caches,
# QoS) are read at configure/activate: change them while the node is unconfigured.
LIVE: frozenset[str] = frozenset(
    {
        "gradcam_layer",
        "prompt_template",
        "aggregation",
        "no_primary",
        "igrs_iterations",
        "igrs_alpha",
        "binarize_threshold",
        "stop_rule",
        "proposal_threshold",
        "max_components",
        "empty_selection",
        "normalize_commands",
        "extra_command_phrases",
        "check_language",
        "queue_size",
        "max_image_age_s",
        "prefetch_max_age_s",
        "publish_debug_image",
        "depth_erosion_px",
        "depth_sync_tolerance_s",
        "max_image_pixels",
        "image_rectified",
        "transform_timeout_s",
        "min_confidence",
        "hold_ambiguous",
        "max_candidates",
        "ambiguity_margin",
        "plural_commands",
        "dialogue_timeout_s",
        "publish_candidate_masks",
    }
)
assert LIVE <= set(SPECS), sorted(LIVE - set(SPECS))


@dataclass(frozen=True)
class NodeSettings:
    """The node-only parameters, validated."""

    image_transport: str = "raw"
    image_rectified: bool = False
    target_frame: str = ""
    transform_timeout_s: float = 0.1
    queue_size: int = 5
    max_image_age_s: float = 2.0
    prefetch: str = "latest"
    prefetch_max_age_s: float = 30.0
    publish_debug_image: bool = True
    depth_erosion_px: int = 3
    depth_sync_tolerance_s: float = 0.1
    autostart: bool = True
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    diagnostics_period_s: float = 1.0
    image_qos: str = "best_effort"
    track: bool = True
    track_rate_hz: float = 0.0
    track_timeout_s: float = 0.0
    track_lost_timeout_s: float = 3.0
    track_flow: str = "dis"
    track_flow_max_side: int = 320
    track_min_appearance: float = 0.5
    track_proposals_period_s: float = 0.0
    publish_candidate_masks: bool = True


@dataclass(frozen=True)
class Parameters:
    segmenter: SegmenterSettings
    node: NodeSettings

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "Parameters":
        """Validated parameters from raw values (see validate)."""
        return validate(values)


def validate(values: Mapping[str, Any]) -> Parameters:
    """Raw parameter values (missing ones take their defaults) -> settings; ParameterError lists
    every
    bad value, unknown names included.
    """
    errors: list[str] = []
    clean: dict[str, Any] = {}
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        errors.append(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
    for spec in PARAMETERS:
        try:
            clean[spec.name] = spec.validate(values.get(spec.name, spec.ros_default()))
        except ParameterError as exc:
            errors.append(str(exc))
    if not errors and clean["proposal_longest_edge"] < clean["proposal_shortest_edge"]:
        errors.append("parameter 'proposal_longest_edge' must be >= proposal_shortest_edge")
    if errors:
        raise ParameterError("; ".join(errors))
    node = NodeSettings(**{k: clean[k] for k in (f.name for f in fields(NodeSettings))})
    seg_values = {s.name: clean[s.name] for s in PARAMETERS if s.setting}
    seg_values["device"] = seg_values["device"].strip().lower()
    try:
        segmenter = SegmenterSettings(**seg_values)
    except ValueError as exc:  # the pipeline's own checks, should the table ever be looser
        raise ParameterError(f"bad parameters: {exc}") from None
    return Parameters(segmenter=segmenter, node=node)


def descriptor(spec: ParamSpec) -> Any:
    """rcl_interfaces ParameterDescriptor: description and allowed values for `ros2 param
    describe`.

    dynamic_typing lets this module give its own message for a wrong type (rclpy's would not name
    what is allowed) and accept 2 for a float. Nothing is read_only: the node's set-parameters
    callback decides (live settings any time, the rest while unconfigured), with the reason.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    return ParameterDescriptor(
        name=spec.name,
        description=spec.description
        + ("" if spec.live else " (read at configure: change while unconfigured)"),
        additional_constraints=spec.allowed,
        read_only=False,
        dynamic_typing=True,
    )


def declare_and_read(node: Any) -> Parameters:
    """Declare every parameter on `node` (overrides from --params-file / -p apply) and validate
    them.

    Parameters given to the node that are not in the table are reported too (a typo in the YAML
    would otherwise be ignored silently).
    """
    values: dict[str, Any] = {}
    for spec in PARAMETERS:
        values[spec.name] = node.declare_parameter(
            spec.name, spec.ros_default(), descriptor(spec)
        ).value
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    for name in overrides:
        if name not in SPECS and name not in _ROS_OWN and not name.startswith("qos_overrides."):
            values[name] = overrides[name]
    return validate(values)


def current_values(node: Any) -> dict[str, Any]:
    """The values of the table's parameters on a node now (they may have been set since start)."""
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}


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


def yaml_defaults() -> dict[str, Any]:
    """The table's defaults as a ros__parameters mapping (docs and tests compare
    config/segment.yaml to it).
    """
    return {p.name: p.ros_default() for p in PARAMETERS}
