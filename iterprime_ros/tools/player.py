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
import importlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .bags import BagError, BagMessage, BagReader, BagWriter, bag_summary, check_replaceable

# Message types published with sensor-data QoS (best effort) when the bag recorded no QoS.
SENSOR_TYPES = frozenset(
    {
        "sensor_msgs/msg/Image",
        "sensor_msgs/msg/CompressedImage",
        "sensor_msgs/msg/CameraInfo",
        "sensor_msgs/msg/PointCloud2",
        "sensor_msgs/msg/LaserScan",
        "sensor_msgs/msg/Imu",
    }
)


class PlayerError(Exception):
    """The bag cannot be played (the message says why)."""


@dataclass
class PlayOptions:
    rate: float = 1.0
    loop: bool = False
    topics: tuple[str, ...] = ()  # empty: all
    remaps: dict[str, str] = field(default_factory=dict)
    start_offset_s: float = 0.0
    delay_s: float = 0.0
    wait_for_subscribers_s: float = 0.0
    clock_hz: float = 0.0  # > 0: publish /clock (bag time) at this rate
    quiet: bool = False


@dataclass
class PlayStats:
    published: int = 0
    skipped: int = 0
    loops: int = 0
    wall_s: float = 0.0
    max_late_s: float = 0.0
    per_topic: dict[str, int] = field(default_factory=dict)


def message_class(msgtype: str) -> type:
    """'pkg/msg/Type' -> the rclpy message class (the package's Python bindings must be
    installed).
    """
    pkg, _, name = msgtype.rpartition("/")
    module_name = pkg.replace("/", ".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise PlayerError(f"message type {msgtype} is not available to rclpy ({exc})") from None


def qos_for(msgtype: str, recorded: list[Any]) -> Any:
    """Rclpy QoSProfile: what the recorded publishers offered, else a default by message type."""
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSProfile,
        ReliabilityPolicy,
        qos_profile_sensor_data,
    )

    if recorded:
        reliable = all(q.reliability.name == "RELIABLE" for q in recorded)
        latched = all(q.durability.name == "TRANSIENT_LOCAL" for q in recorded)
        depth = max(int(q.depth) for q in recorded) or 10
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
    if msgtype in SENSOR_TYPES:
        return qos_profile_sensor_data
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
    )


def _describe_qos(qos: Any) -> str:
    return f"{qos.reliability.name.lower()}, depth {qos.depth}"


class BagPlayer:
    """Publishes a bag's messages on a node with their recorded timing scaled by `rate`."""

    def __init__(
        self, node: Any, bag_path: str | Path, options: PlayOptions | None = None
    ) -> None:
        self.node = node
        self.path = Path(bag_path)
        self.opt = options or PlayOptions()
        if not self.opt.rate > 0:
            raise PlayerError(f"--rate must be positive, got {self.opt.rate}")
        self.publishers: dict[str, Any] = {}  # bag topic -> publisher
        self.classes: dict[str, type] = {}
        self.stats = PlayStats()
        self._clock_pub: Any = None
        self._stop = threading.Event()

    def log(self, text: str) -> None:
        if not self.opt.quiet:
            print(text, flush=True)

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop.set()

    def prepare(self) -> None:
        """Open the bag once to check it and create one publisher per played topic."""
        with BagReader(self.path) as bag:
            topics = bag.topics
            if self.opt.topics:
                unknown = [t for t in self.opt.topics if t not in topics]
                if unknown:
                    raise PlayerError(
                        f"not in {self.path}: {', '.join(unknown)} (topics: "
                        f"{', '.join(sorted(topics))})"
                    )
            chosen = [t for t in sorted(topics) if not self.opt.topics or t in self.opt.topics]
            for topic in chosen:
                msgtype = topics[topic]
                if not msgtype:
                    self.warn(f"{topic} holds several message types; not played")
                    continue
                try:
                    cls = message_class(msgtype)
                except PlayerError as exc:
                    self.warn(f"{exc}; {topic} not played")
                    continue
                qos = qos_for(msgtype, bag.connections_qos(topic))
                name = self.opt.remaps.get(topic, topic)
                self.publishers[topic] = self.node.create_publisher(cls, name, qos)
                self.classes[topic] = cls
                self.log(
                    f"  {name:<44} {bag.counts[topic]:>5} x {msgtype}  ({_describe_qos(qos)})"
                )
        if not self.publishers:
            raise PlayerError(f"nothing to play in {self.path}")
        if self.opt.clock_hz > 0:
            from rclpy.qos import QoSProfile
            from rosgraph_msgs.msg import Clock

            self._clock_pub = self.node.create_publisher(Clock, "/clock", QoSProfile(depth=1))

    def wait_for_subscribers(self, timeout_s: float) -> list[str]:
        """Wait until every played topic has a subscriber; returns the topics that still have
        none.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [
                self.opt.remaps.get(t, t)
                for t, p in self.publishers.items()
                if p.get_subscription_count() == 0
            ]
            if not missing or time.monotonic() >= deadline or self._stop.is_set():
                return missing
            time.sleep(0.05)

    def _messages(self, bag: BagReader) -> Iterator[BagMessage]:
        start = bag.start_ns + int(self.opt.start_offset_s * 1e9)
        for m in bag.messages(self.publishers):
            if m.timestamp_ns >= start:
                yield m

    def play(self) -> PlayStats:
        """Publish until the bag ends (or forever with loop, until stop())."""
        t_begin = time.monotonic()
        if self.opt.delay_s > 0:
            self._sleep_until(t_begin + self.opt.delay_s, None, 0)
        while not self._stop.is_set():
            self._play_once()
            self.stats.loops += 1
            if not self.opt.loop:
                break
        self.stats.wall_s = time.monotonic() - t_begin
        return self.stats

    def _play_once(self) -> None:
        from rclpy.serialization import deserialize_message

        with BagReader(self.path) as bag:
            t0_bag: int | None = None
            t0_wall = time.monotonic()
            for m in self._messages(bag):
                if t0_bag is None:
                    t0_bag = m.timestamp_ns
                due = t0_wall + (m.timestamp_ns - t0_bag) / 1e9 / self.opt.rate
                if not self._sleep_until(due, t0_bag, t0_wall):
                    return
                self.stats.max_late_s = max(self.stats.max_late_s, time.monotonic() - due)
                try:
                    raw = bag.cdr(m)
                    deserialize_message(
                        raw, self.classes[m.topic]
                    )  # reject corrupt bytes before subscribers see them
                except Exception as exc:  # noqa: BLE001 - BagError or rclpy's RMWError
                    self.stats.skipped += 1
                    self.warn(
                        f"skipped corrupt {m.msgtype} on {m.topic} at "
                        f"+{(m.timestamp_ns - bag.start_ns) / 1e9:.3f} s: "
                        f"{' '.join(str(exc).split())}"
                    )
                    continue
                if self._clock_pub is not None:
                    self._publish_clock(m.timestamp_ns)
                self.publishers[m.topic].publish(raw)
                self.stats.published += 1
                self.stats.per_topic[m.topic] = self.stats.per_topic.get(m.topic, 0) + 1

    def _sleep_until(self, due: float, t0_bag: int | None, t0_wall: float) -> bool:
        """Sleep until `due` (monotonic), publishing /clock meanwhile if asked; False when
        stopped.
        """
        step = 1.0 / self.opt.clock_hz if self._clock_pub is not None else 0.05
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                return False
            if now >= due:
                return True
            time.sleep(min(step, due - now))
            if self._clock_pub is not None and t0_bag is not None:
                self._publish_clock(
                    t0_bag + int((time.monotonic() - t0_wall) * self.opt.rate * 1e9)
                )

    def _publish_clock(self, t_ns: int) -> None:
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = int(t_ns // 1_000_000_000), int(t_ns % 1_000_000_000)
        self._clock_pub.publish(msg)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until reliable subscribers acknowledged what was published (best effort
        otherwise).
        """
        from rclpy.duration import Duration

        for pub in self.publishers.values():
            try:
                pub.wait_for_all_acked(Duration(seconds=timeout_s))
            except Exception:  # noqa: BLE001 - best-effort publishers / older rmw
                pass


class Recorder:
    """Subscribes to topics (raw CDR) and writes what arrives into a bag, stamped with the node
    clock.
    """

    def __init__(
        self,
        node: Any,
        topics: list[str],
        out: str | Path,
        *,
        overwrite: bool = False,
        protect: tuple[str | Path, ...] = (),
    ) -> None:
        self.node = node
        self.topics = topics
        self.writer = BagWriter(out, overwrite=overwrite, protect=protect)
        self.counts: dict[str, int] = {t: 0 for t in topics}
        self.last_ns = time.monotonic_ns()
        self._lock = threading.Lock()
        self._subs: list[Any] = []
        self._open = False

    def start(self, timeout_s: float) -> list[str]:
        """Find each topic's type (waiting up to timeout_s for publishers), subscribe; returns
        topics not found.
        """
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        deadline = time.monotonic() + timeout_s
        types: dict[str, str] = {}
        while True:
            known = dict(self.node.get_topic_names_and_types())
            for t in self.topics:
                if t in known and known[t]:
                    types[t] = known[t][0]
            if len(types) == len(self.topics) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        self.writer.__enter__()
        self._open = True
        for topic, msgtype in types.items():
            infos = self.node.get_publishers_info_by_topic(topic)
            best_effort = any(
                i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos
            )
            qos = QoSProfile(
                depth=100,
                reliability=ReliabilityPolicy.BEST_EFFORT
                if best_effort
                else ReliabilityPolicy.RELIABLE,
            )
            self.writer.add_topic(topic, msgtype, qos="sensor" if best_effort else "reliable")
            self._subs.append(
                self.node.create_subscription(
                    message_class(msgtype),
                    topic,
                    lambda raw, t=topic: self._on_message(t, raw),
                    qos,
                    raw=True,
                )
            )
        return [t for t in self.topics if t not in types]

    def _on_message(self, topic: str, raw: bytes) -> None:
        with self._lock:
            if not self._open:
                return
            self.writer.write_raw(topic, bytes(raw), self.node.get_clock().now().nanoseconds)
            self.counts[topic] += 1
            self.last_ns = time.monotonic_ns()

    def close(self, interrupted: bool = False) -> Path | None:
        """Finish the bag: under its name, or (interrupted) under the .partial name; returns
        where it is (None when nothing was recorded before an interruption).
        """
        with self._lock:
            if self._open:
                self._open = False
                for sub in self._subs:
                    self.node.destroy_subscription(sub)
                if interrupted:
                    self.writer.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)
                else:
                    self.writer.__exit__(None, None, None)
        return self.writer.kept


def check_bag(path: str | Path, topics: tuple[str, ...] = ()) -> None:
    """Open the bag and check the asked-for topics exist (PlayerError/BagError naming the
    problem).
    """
    with BagReader(path) as bag:
        have = bag.topics
        if not have:
            raise PlayerError(f"{path} holds no messages")
        unknown = [t for t in topics if t not in have]
        if unknown:
            raise PlayerError(
                f"not in {path}: {', '.join(unknown)} (topics: {', '.join(sorted(have))})"
            )


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
    p.add_argument("--quiet", "-q", action="store_true", help="print only warnings and errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.record) != bool(args.record_to):
        print("error: --record and --record-to go together", file=sys.stderr)
        return 2
    try:
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
        )
        if args.record_to and Path(args.record_to).exists() and not args.force:
            raise PlayerError(f"{args.record_to} exists already (use --force to replace it)")
        if args.record_to:
            check_replaceable(args.record_to, [args.bag])
        if args.loop and args.record:
            raise PlayerError("--loop never ends, so it cannot be combined with --record")
        if not options.rate > 0:
            raise PlayerError(f"--rate must be positive, got {options.rate:g}")
        check_bag(args.bag, options.topics)  # before starting ROS: a bad path fails fast
    except (PlayerError, BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    signal.signal(signal.SIGTERM, _on_sigterm)  # like Ctrl-C: the recording is kept (partial)
    rclpy.init()
    node = rclpy.create_node("iterprime_bag_player")
    recorder: Recorder | None = None
    stop_spinning = threading.Event()
    executor: SingleThreadedExecutor | None = None
    spinner: threading.Thread | None = None
    player = BagPlayer(node, args.bag, options)
    code = 0
    try:
        player.log(
            f"playing {args.bag} at rate {options.rate:g}{' (loop)' if options.loop else ''}:"
        )
        player.prepare()
        if args.record:
            recorder = Recorder(
                node, list(args.record), args.record_to, overwrite=args.force, protect=(args.bag,)
            )
            missing = recorder.start(timeout_s=max(args.wait_for_subscribers, 2.0))
            for topic in missing:
                player.warn(f"no publisher on {topic} yet: it is not recorded")
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            spinner = threading.Thread(
                target=_spin_until,
                args=(executor, stop_spinning),
                name="iterprime-recorder",
                daemon=True,
            )
            spinner.start()
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
        )
        if stats.skipped:
            code = 1
        if recorder is not None:
            _finish_recording(recorder, args.record_idle, args.record_count, player)
    except (PlayerError, BagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as exc:
        player.stop()
        print("interrupted", file=sys.stderr)
        code = 128 + signal.SIGTERM if isinstance(exc, _Terminated) else 130
    finally:
        # The recorder's spin thread stops on its own before the executor is shut down here:
        # Executor.shutdown() from another thread while spin() waits destroys the executor's
        # SIGINT guard condition under it, and rclpy then segfaults (seen after Ctrl-C/SIGTERM).
        stop_spinning.set()
        if spinner is not None:
            spinner.join(timeout=10.0)
            if spinner.is_alive():
                print("warning: the recorder thread did not stop; exiting", file=sys.stderr)
                sys.stderr.flush()
                os._exit(code or 1)
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if recorder is not None:
            kept = recorder.close(interrupted=code >= 128)
            if kept is not None and code >= 128:
                print(f"the recording so far is kept in {kept}", file=sys.stderr)
            elif kept is not None:
                player.log(bag_summary(kept))
        node.destroy_node()
        rclpy.try_shutdown()
    return code


def _spin_until(executor: Any, stop: threading.Event) -> None:
    """The recorder thread: spin in short steps until `stop` is set (then return, still owning
    nothing the main thread is about to destroy).
    """
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _finish_recording(recorder: Recorder, idle_s: float, count: int, player: BagPlayer) -> None:
    """Keep recording after playback: until `count` messages on the first topic, or `idle_s` of
    silence.
    """
    first = recorder.topics[0]
    recorder.last_ns = max(
        recorder.last_ns, time.monotonic_ns()
    )  # silence counts from the end of playback
    while True:
        if count and recorder.counts.get(first, 0) >= count:
            break
        if (time.monotonic_ns() - recorder.last_ns) / 1e9 >= idle_s:
            if count:
                player.warn(
                    f"recorded {recorder.counts.get(first, 0)} of {count} expected on {first} "
                    f"(nothing new for {idle_s:g} s)"
                )
            break
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
