"""Every parameter of the iterprime_segmenter node: validated into settings, declared on it.

Why one table: the node declares, documents (ParameterDescriptor) and validates from the
same rows, and the rows that configure the method map one-to-one onto
pipeline.SegmenterSettings fields (their defaults are taken from there, so the two cannot
drift). A bad value stops the node at start with a message that names the parameter, the
value and what is allowed. This module imports rclpy only inside ``declare_and_read``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from ..core.scene import SCENE_CHANGE
from ..image_size import DEFAULT_MAX_IMAGE_PIXELS
from ..pipeline import SegmenterSettings
from ..prefetch import PrefetchPolicy
from .param_spec import ParameterError, ParamSpec
from .param_table import _ROS_OWN, LIVE, PARAMETERS, SPECS
from .params_files import (
    _matches,
    check_params_files,
    node_parameters,
    params_files,
    read_params_file,
)

__all__ = [
    "LIVE",
    "PARAMETERS",
    "SPECS",
    "NodeSettings",
    "ParamSpec",
    "ParameterError",
    "Parameters",
    "_matches",
    "check_params_files",
    "current_values",
    "declare_and_read",
    "descriptor",
    "node_parameters",
    "params_files",
    "read_params_file",
    "validate",
    "yaml_defaults",
]


@dataclass(frozen=True)
class NodeSettings:
    """The node-only parameters, validated."""

    image_transport: str = "raw"
    image_rectified: bool = False
    target_frame: str = ""
    transform_timeout_s: float = 0.1
    queue_size: int = 5
    max_image_age_s: float = 2.0
    prefetch: PrefetchPolicy = PrefetchPolicy()
    prefetch_max_age_s: float = 30.0
    prefetch_min_interval_s: float = 1.0
    prefetch_scene_change: float = SCENE_CHANGE
    prefetch_cpu_share: float = 0.5
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
    every bad value, unknown names included.
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
    node = NodeSettings(
        **{k: SPECS[k].typed(clean[k]) for k in (f.name for f in fields(NodeSettings))}
    )
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


def yaml_defaults() -> dict[str, Any]:
    """The table's defaults as a ros__parameters mapping (docs and tests compare
    config/segment.yaml to it).
    """
    return {p.name: p.ros_default() for p in PARAMETERS}
