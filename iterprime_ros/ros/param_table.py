"""The rows of the node's parameter table: every parameter, its default and what is allowed.

Why one table: the node declares, documents (ParameterDescriptor) and validates from the same
rows, the CLI and the benchmarks check their ``--set`` values against them, and the rows that
configure the method map one-to-one onto pipeline.SegmenterSettings fields (their defaults are
taken from there, so the two cannot drift).
"""

from __future__ import annotations

from dataclasses import replace

from ..core.igrs import STOP_RULES
from ..core.scene import SCENE_CHANGE
from ..image_size import DEFAULT_MAX_IMAGE_PIXELS
from .param_spec import (
    PTB_NOUN_TAGS,
    ParamSpec,
    _device,
    _frame_id,
    _nonempty,
    _prefetch,
    _tags,
    _template,
    parse_prefetch,
)
from .param_table_followup import FOLLOWUP_ROWS

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
        yaml_false="off",
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
    P(
        "stop_rule",
        "str",
        "when IGRS stops early (none: never, every pass runs; benchmarks)",
        choices=STOP_RULES,
    ),
    P("single_pass", "str", "one-pass heat map: S(O_0) or O_0", choices=("sigmoid", "plain")),
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
        hint="a non-empty list of " + ", ".join(PTB_NOUN_TAGS),
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
        "prepare a camera frame (proposals + image embedding) while no command runs: off, "
        "latest (the newest frame worth it), or every:N (only every N-th frame is considered)",
        default="latest",
        check=_prefetch,
        parse=parse_prefetch,
        yaml_false="off",
        setting=False,
        hint="off, latest or every:N with N >= 1 (quote off in YAML)",
    ),
    P(
        "prefetch_max_age_s",
        "float",
        "a command takes a prepared frame instead of the newest image when the prepared frame "
        "was received at most this long ago and shows the same scene (node clock); the "
        "prefetcher refreshes a prepared frame before it gets this old; 0 always takes the "
        "newest image",
        default=30.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    P(
        "prefetch_min_interval_s",
        "float",
        "the prefetcher starts a frame at most this often (seconds between starts)",
        default=1.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    P(
        "prefetch_scene_change",
        "float",
        "a new frame is worth preparing when it differs from the prepared one by at least this "
        "much (mean absolute difference of 32x24 grey thumbnails, 0..1); 0 prepares every "
        "frame the interval allows",
        default=SCENE_CHANGE,
        low=0.0,
        high=1.0,
        setting=False,
    ),
    P(
        "prefetch_cpu_share",
        "float",
        "largest share of wall time the prefetcher may spend preparing frames while no command "
        "runs (idle CPU is about this times the torch threads); 1: no pause",
        default=0.5,
        low=0.0,
        high=1.0,
        low_open=True,
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
) + FOLLOWUP_ROWS
del P

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
        "prefetch_min_interval_s",
        "prefetch_scene_change",
        "prefetch_cpu_share",
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
# Each row knows whether it is live (the rows above are written without it, so the set stays in
# one place).
PARAMETERS = tuple(replace(p, live=p.name in LIVE) for p in PARAMETERS)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}
assert LIVE <= set(SPECS), sorted(LIVE - set(SPECS))
