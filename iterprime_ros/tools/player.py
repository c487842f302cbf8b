"""Live bag player (and a small recorder) for machines where `ros2 bag` is not installed.

    iterprime-play-bag data/sample.mcap --rate 5 --wait-for-subscribers 30
    iterprime-play-bag data/sample.mcap --record /iterprime_segmenter/result --record-to out.mcap

On a full ROS install `ros2 bag play` does the same job; this exists because the pip-only
environment (CI, a laptop venv) has rclpy but no rosbag2. It publishes every message of a
bag (rosbag2 folder, .mcap, .db3 or ROS 1 .bag) into the live graph with its original
relative timing scaled by --rate, optionally looping, with the QoS the recording's
publishers offered (else sensor-data QoS for camera topics, reliable for the rest).

Why serialized bytes: a rosbag2 bag stores exactly the CDR bytes rclpy publishes, so the
player hands them to ``Publisher.publish(bytes)`` unchanged -- exact (no field-by-field
copy that could drift from a message definition) and cheap (no Python objects for 1 MB
images). Each message is first checked with ``rclpy.serialization.deserialize_message``
so a corrupt one is skipped with a warning instead of reaching (and failing) subscribers.
ROS 1 bags are converted to CDR with rosbags.

--record TOPIC ... --record-to OUT writes what the graph publishes on those topics (with
the types' definitions embedded) while playing, and for a while after: the integration
test plays the sample bag into the node and records its results this way.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..core.command import MAX_COMMAND_CHARS
from ..image_size import DEFAULT_MAX_IMAGE_PIXELS
from .bag_player import (  # noqa: F401 - the player's names, re-exported for its users
    COMMAND_TOPIC,
    SENSOR_TYPES,
    BagPlayer,
    PlayerError,
    PlayOptions,
    PlayStats,
    check_bag,
    message_class,
    qos_for,
)
from .bags import BagError, bag_summary, check_replaceable
from .player_record import Recorder, _finish_recording, _spin_until  # noqa: F401


def _parse_remaps(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise PlayerError(f"--remap expects FROM:=TO, got {item!r}")
        out[src] = dst
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iterprime-play-bag",
        description="Publish a bag's messages into the live ROS 2 graph with their recorded "
        "timing "
        "(a stand-in for `ros2 bag play` where rosbag2 is not installed).",
    )
    p.add_argument("bag", help="rosbag2 folder, .mcap or .db3 file (or a ROS 1 .bag)")
    p.add_argument(
        "--rate", "-r", type=float, default=1.0, help="playback speed factor (default 1.0)"
    )
    p.add_argument("--loop", "-l", action="store_true", help="play again and again until Ctrl-C")
    p.add_argument(
        "--topics", nargs="+", default=[], metavar="TOPIC", help="play only these topics"
    )
    p.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="publish a topic under another name",
    )
    p.add_argument(
        "--start-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="skip the first S seconds of the bag",
    )
    p.add_argument(
        "--delay", type=float, default=0.0, metavar="S", help="wait S seconds before playing"
    )
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="before playing, wait up to S seconds until every played topic has a subscriber",
    )
    p.add_argument(
        "--clock",
        type=float,
        nargs="?",
        const=40.0,
        default=0.0,
        metavar="HZ",
        help="publish /clock with the bag's time (default 40 Hz) for nodes with use_sim_time",
    )
    p.add_argument(
        "--command-topic",
        default=COMMAND_TOPIC,
        metavar="TOPIC",
        help="std_msgs/String rows on this topic (in the bag, or after --remap) are commands: one "
        f"longer than the node accepts ({MAX_COMMAND_CHARS} characters) is skipped with a "
        "warning, not published "
        f"(default {COMMAND_TOPIC})",
    )
    _add_record_arguments(p)
    return p


def _add_record_arguments(p: argparse.ArgumentParser) -> None:
    """--record and its companions, --force, --max-image-pixels and --quiet."""
    p.add_argument(
        "--record",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help="record these topics while playing",
    )
    p.add_argument(
        "--record-to", metavar="OUT", help="bag to record into (.mcap, .db3 or a folder)"
    )
    p.add_argument(
        "--record-idle",
        type=float,
        default=10.0,
        metavar="S",
        help="after playing, keep recording until nothing arrived for S seconds (default 10)",
    )
    p.add_argument(
        "--record-count",
        type=int,
        default=0,
        metavar="N",
        help="after playing, stop recording as soon as N messages arrived on the first --record "
        "topic",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the --record-to bag (only a bag, never other files or the played bag)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help="the image-size rule's limit; a bag that declares a message, record or chunk bigger "
        "than the biggest image it accepts is refused before playing "
        f"(default {DEFAULT_MAX_IMAGE_PIXELS}; iterprime_ros/image_size.py)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print only warnings and errors")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = _preflight(args)
    except (PlayerError, BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import rclpy

    signal.signal(signal.SIGTERM, _on_sigterm)  # like Ctrl-C: the recording is kept (partial)
    # Not the player's own command line: rcl would read `--remap A:=B` there as a ROS remap
    # rule of the old syntax (a deprecation warning, and the rule applied to this node).
    rclpy.init(args=[sys.argv[0]])
    node = rclpy.create_node("iterprime_bag_player")
    live = _Live(node, BagPlayer(node, args.bag, options))
    code = 0
    try:
        code = live.run(args)
    except (PlayerError, BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as exc:
        live.player.stop()
        print("interrupted", file=sys.stderr)
        code = 128 + signal.SIGTERM if isinstance(exc, _Terminated) else 130
    finally:
        live.close(code)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


def _preflight(args: argparse.Namespace) -> PlayOptions:
    """Check the arguments and the bag before ROS starts: a bad path or a bag over the read
    limit fails fast (PlayerError/BagError).
    """
    if bool(args.record) != bool(args.record_to):
        raise PlayerError("--record and --record-to go together")
    if args.max_image_pixels < 1:
        raise PlayerError("--max-image-pixels must be at least 1")
    options = PlayOptions(
        rate=args.rate,
        loop=args.loop,
        topics=tuple(args.topics),
        remaps=_parse_remaps(args.remap),
        start_offset_s=args.start_offset,
        delay_s=args.delay,
        wait_for_subscribers_s=args.wait_for_subscribers,
        clock_hz=args.clock,
        quiet=args.quiet,
        max_image_pixels=args.max_image_pixels,
        command_topic=args.command_topic,
    )
    if args.record_to and Path(args.record_to).exists() and not args.force:
        raise PlayerError(f"{args.record_to} exists already (use --force to replace it)")
    if args.record_to:
        check_replaceable(args.record_to, [args.bag])
    if args.loop and args.record:
        raise PlayerError("--loop never ends, so it cannot be combined with --record")
    if not options.rate > 0:
        raise PlayerError(f"--rate must be positive, got {options.rate:g}")
    check_bag(args.bag, options.topics, options.limits)
    return options


class _Live:
    """One playing session in the graph: the player, and the recorder with its spin thread."""

    def __init__(self, node: Any, player: BagPlayer) -> None:
        self.node, self.player = node, player
        self.recorder: Recorder | None = None
        self.executor: Any = None
        self.spinner: threading.Thread | None = None
        self.stop_spinning = threading.Event()

    def run(self, args: argparse.Namespace) -> int:
        """Play (and record); the exit code: 0, or 1 when rows were skipped (corrupt, or a
        command the node would refuse for its length): the graph did not get the whole bag.
        """
        player, options = self.player, self.player.opt
        player.log(
            f"playing {args.bag} at rate {options.rate:g}{' (loop)' if options.loop else ''}:"
        )
        player.prepare()
        if args.record:
            self._start_recording(args)
        if options.wait_for_subscribers_s > 0:
            missing = player.wait_for_subscribers(options.wait_for_subscribers_s)
            if missing:
                player.warn(
                    f"no subscriber after {options.wait_for_subscribers_s:g} s on: "
                    f"{', '.join(missing)}"
                )
        stats = player.play()
        player.flush()
        player.log(
            f"published {stats.published} message(s) in {stats.wall_s:.2f} s"
            f" (latest {stats.max_late_s * 1000:.0f} ms behind schedule)"
            + (f"; skipped {stats.skipped} corrupt" if stats.skipped else "")
            + (f"; skipped {stats.refused} over-long command(s)" if stats.refused else "")
        )
        if self.recorder is not None:
            _finish_recording(self.recorder, args.record_idle, args.record_count, player)
        return 1 if stats.skipped or stats.refused else 0

    def _start_recording(self, args: argparse.Namespace) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.recorder = Recorder(
            self.node, list(args.record), args.record_to, overwrite=args.force, protect=(args.bag,)
        )
        missing = self.recorder.start(timeout_s=max(args.wait_for_subscribers, 2.0))
        for topic in missing:
            self.player.warn(f"no publisher on {topic} yet: it is not recorded")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(
            target=_spin_until,
            args=(self.executor, self.stop_spinning),
            name="iterprime-recorder",
            daemon=True,
        )
        self.spinner.start()

    def close(self, code: int) -> None:
        """Stop the recorder thread, then finish the recording (partial after a signal)."""
        # The recorder's spin thread stops on its own before the executor is shut down here:
        # Executor.shutdown() from another thread while spin() waits destroys the executor's
        # SIGINT guard condition under it, and rclpy then segfaults (seen after Ctrl-C/SIGTERM).
        self.stop_spinning.set()
        if self.spinner is not None:
            self.spinner.join(timeout=10.0)
            if self.spinner.is_alive():
                print("warning: the recorder thread did not stop; exiting", file=sys.stderr)
                sys.stderr.flush()
                os._exit(code or 1)
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=1.0)
        if self.recorder is not None:
            kept = self.recorder.close(interrupted=code >= 128)
            if kept is not None and code >= 128:
                print(f"the recording so far is kept in {kept}", file=sys.stderr)
            elif kept is not None:
                self.player.log(bag_summary(kept, self.player.opt.limits))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


if __name__ == "__main__":
    sys.exit(main())
