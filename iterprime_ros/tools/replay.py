"""Offline rosbag replay: `iterprime replay IN_BAG OUT_BAG` runs the pipeline on a bag, no DDS.

Why offline: a perception change is judged by replaying recorded data, and that should
work on a laptop or in CI without a ROS install or a running graph. The replay answers
each command on the command topic with what the live node would have had at that moment
-- the latest image received before it (bag record time, like the node's receive clock),
the depth frame and camera_info matched to that image's stamp by the node's rule
(ros/sensors.py, within depth_sync_tolerance_s) -- and writes one
``iterprime_ros/msg/Segmentation`` per command (success or failure) plus the mono8 mask
and the 3-D centroid to an output bag with the message definition embedded, so ``ros2
bag info``/``play`` and rosbags read it. Bad input never stops the run: a missing image
topic, a corrupt message or an unknown encoding becomes a clear error line and failure
results for the commands it affects.

Exit status: 0 every command answered from usable input; 1 results written but the input
had problems (or, with --strict, a command failed); 2 nothing could be done (missing bag
or command topic, output exists, bad settings, missing weights).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..image_size import (
    DEFAULT_MAX_IMAGE_PIXELS,
)
from ..models.loading import quiet_transformers
from ..pipeline import Segmenter
from .bags import (
    BagError,
    BagReader,
    OutputLock,
    check_replaceable,
    partial_name,
)
from .errors import UserError
from .model_args import (
    add_model_arguments,
    load_parameters,
    model_settings,
    settings_fingerprint,
)
from .replay_config import (  # noqa: F401 - the replay's names, re-exported for its users
    CAMERA_INFO_TOPIC,
    CENTROID_TOPIC,
    COMMAND_TOPIC,
    DEPTH_TOPIC,
    IMAGE_TOPIC,
    MASK_TOPIC,
    RESULT_TOPIC,
    TRACK_TOPIC,
    WRITTEN_TOPICS,
    ReplayConfig,
    ReplayError,
    ReplaySummary,
    check_topics,
)
from .replay_output import (  # noqa: F401
    check_overlay_folder,
    overlay_name,
    segmentation_message,
)
from .replay_resume import _resume_source, resume_marker  # noqa: F401
from .replay_run import _Terminated, replay_bag  # noqa: F401

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- command line


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Register `iterprime replay` (cli.py calls this)."""
    p = subparsers.add_parser(
        "replay",
        help="run the pipeline on a rosbag (offline, no ROS graph) and write the results to a bag",
        description="Answer every command in IN_BAG with the latest image before it (as the node "
        "would) and "
        "write iterprime_ros/msg/Segmentation results, masks and 3-D centroids to OUT_BAG. "
        "OUT_BAG ending in .mcap or .db3 is one file; any other name is a rosbag2 folder.",
        epilog="exit status: 0 all commands answered from usable input; 1 results written but the "
        "input had "
        "problems (or --strict and a command failed); 2 nothing done",
    )
    p.add_argument(
        "in_bag", metavar="IN_BAG", help="input bag: rosbag2 folder, .mcap, .db3 (or ROS 1 .bag)"
    )
    p.add_argument(
        "out_bag", metavar="OUT_BAG", help="output bag (.mcap / .db3 file, or a folder)"
    )
    p.add_argument(
        "--image-topic",
        default=IMAGE_TOPIC,
        help=f"sensor_msgs/Image topic (default {IMAGE_TOPIC})",
    )
    p.add_argument(
        "--command-topic",
        default=COMMAND_TOPIC,
        help=f"std_msgs/String topic (default {COMMAND_TOPIC})",
    )
    p.add_argument(
        "--depth-topic", default=DEPTH_TOPIC, help=f"aligned depth topic (default {DEPTH_TOPIC})"
    )
    p.add_argument(
        "--camera-info-topic",
        default=CAMERA_INFO_TOPIC,
        help=f"camera_info topic (default {CAMERA_INFO_TOPIC})",
    )
    p.add_argument(
        "--overlays",
        metavar="DIR",
        type=Path,
        help="write one overlay PNG per result (NNN_command.png) into DIR, a new or empty "
        "folder (with --force a non-empty one: overlays of the same name are replaced, other "
        "files never touched)",
    )
    _add_run_arguments(p)
    p.set_defaults(func=cmd_replay)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The settings, output and resume flags of `iterprime replay`."""
    p.add_argument(
        "--config",
        metavar="YAML",
        help="node parameters file, e.g. config/segment.yaml (default: the parameters' defaults)",
    )
    add_model_arguments(p)  # --vlp --proposals --device --fp32 --set: override the config
    p.add_argument("--max-image-age", type=float, metavar="S", help="override max_image_age_s")
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), help="storage of a folder OUT_BAG (default mcap)"
    )
    p.add_argument(
        "--include-input",
        action="store_true",
        help="copy every input topic into OUT_BAG as well, except the topics the replay writes "
        f"itself ({', '.join(WRITTEN_TOPICS)}): a replay of a replay holds one result per "
        "command",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT_BAG if it exists and is a bag (never another file or folder, never "
        "the input), and overlays of the same name in a non-empty --overlays DIR",
    )
    p.add_argument(
        "--track",
        action="store_true",
        help="after each answered command, follow the object on later images and write "
        "/iterprime_segmenter/track (one Segmentation per image, as the node)",
    )
    p.add_argument(
        "--track-proposals-every",
        type=int,
        default=0,
        metavar="N",
        help="with --track: re-associate with mask proposals every N tracked images (0: never)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the finished results an interrupted run left (OUT_BAG's .partial bag) "
        "instead of resuming from them",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help="bigger images are downscaled for the models, more than 16x bigger refused "
        f"(default {DEFAULT_MAX_IMAGE_PIXELS}; iterprime_ros/image_size.py)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any command failed")


def cmd_replay(args: argparse.Namespace) -> int:
    params = load_parameters(args.config)
    settings = model_settings(args, params.segmenter)
    cfg = _config(args, params.node, settings)
    out = Path(args.out_bag)
    try:
        lock = OutputLock(out)
        lock.acquire()  # before models load: a second run to the same OUT stops here
    except BagError as exc:
        raise UserError(str(exc)) from None
    try:
        commands = _check_before_loading(args, cfg, out)
        print(
            f"replaying {args.in_bag}: {commands} command(s) on {cfg.command_topic}, images "
            f"from {cfg.image_topic}"
        )
        segmenter = _load_segmenter(settings)
        try:
            summary = replay_bag(args.in_bag, out, segmenter, cfg)
        except ReplayError as exc:
            raise UserError(str(exc)) from None
        except _Terminated:
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            return 130
    finally:
        lock.release()
    _report(summary, cfg)
    return summary.exit_code(args.strict)


def _config(args: argparse.Namespace, node: Any, settings: Any) -> ReplayConfig:
    """The replay's configuration from the command line and the node parameters."""
    max_age = node.max_image_age_s if args.max_image_age is None else args.max_image_age
    if not max_age > 0:
        raise UserError("--max-image-age must be positive")
    if args.max_image_pixels < 1:
        raise UserError("--max-image-pixels must be at least 1")
    return ReplayConfig(
        image_topic=args.image_topic,
        command_topic=args.command_topic,
        depth_topic=args.depth_topic,
        camera_info_topic=args.camera_info_topic,
        max_image_age_s=max_age,
        depth_sync_tolerance_s=node.depth_sync_tolerance_s,
        depth_erosion_px=node.depth_erosion_px,
        image_rectified=node.image_rectified,
        overlays=args.overlays,
        include_input=args.include_input,
        storage=args.storage,
        overwrite=args.force,
        max_image_pixels=args.max_image_pixels,
        restart=args.restart,
        fingerprint=settings_fingerprint(settings),
        track=args.track,
        track_proposals_every=max(0, args.track_proposals_every),
    )


def _check_before_loading(args: argparse.Namespace, cfg: ReplayConfig, out: Path) -> int:
    """Check the input and the output name before loading models (seconds to minutes);
    returns the number of commands. UserError for anything that stops the run.
    """
    if out.exists() and not args.force:
        raise UserError(f"output {out} exists already (use --force to replace it)")
    try:
        check_replaceable(out, [args.in_bag])
        if partial_name(out).exists():
            check_replaceable(partial_name(out), [args.in_bag])
            if not args.restart:
                _resume_source(Path(args.in_bag), out, cfg, echo=print)  # refuses a mismatch
        resuming = partial_name(out).exists() and not args.restart
        check_overlay_folder(args.overlays, args.force, resuming)
        with BagReader(args.in_bag, cfg.limits) as bag:
            check_topics(bag, cfg, echo=lambda _line: None)
            return bag.counts[cfg.command_topic]
    except (BagError, ReplayError) as exc:
        raise UserError(str(exc)) from None


def _load_segmenter(settings: Any) -> Any:
    """The pipeline with its models loaded and warmed up (the slow part of a start)."""
    quiet_transformers()
    t0 = time.perf_counter()
    segmenter = Segmenter(settings)
    warm = getattr(segmenter, "warmup", None)
    if callable(warm):
        warm()
    print(
        f"models loaded in {time.perf_counter() - t0:.1f} s (vlp {settings.vlp_model}, "
        f"proposals {settings.proposal_model}, device {settings.device})"
    )
    return segmenter


def _report(summary: ReplaySummary, cfg: ReplayConfig) -> None:
    """The closing lines: what was answered, where it is, every input problem once."""
    if summary.resumed:
        print(f"{summary.resumed} result(s) taken over from the interrupted run")
    print(
        f"{summary.commands} command(s): {summary.succeeded} answered, {summary.failed} failed; "
        f"{summary.commands} result(s) written to {summary.output} in {summary.wall_s:.1f} s "
        f"(pipeline {summary.segment_s:.1f} s)"
    )
    if summary.overlays:
        print(f"{len(summary.overlays)} overlay(s) in {cfg.overlays}")
    for problem in summary.problems:
        print(f"error: {problem}", file=sys.stderr)
