"""Publishing a bag's messages into the live ROS 2 graph with their recorded timing.

Why serialized bytes: a rosbag2 bag stores exactly the CDR bytes rclpy publishes, so the
player hands them to ``Publisher.publish(bytes)`` unchanged -- exact (no field-by-field copy
that could drift from a message definition) and cheap (no Python objects for 1 MB images).
Each message is first checked with ``rclpy.serialization.deserialize_message`` so a corrupt one
is skipped with a warning instead of reaching (and failing) subscribers. ROS 1 bags are
converted to CDR with rosbags. What the bag declares is checked before anything is published
(bag_check: CRCs, sizes over the read limit).

A command row longer than the node accepts (core.command.too_long, the rule the node and the
replay apply) is not published either: the node would only refuse it, and a row of hundreds of
megabytes would first cost every subscriber its copy. It is skipped with a warning naming the
bag, the row's log time, its size and the limit, and counted like a corrupt row.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..core.command import too_long
from ..image_size import DEFAULT_MAX_IMAGE_PIXELS
from ..ros.names import DEFAULT_INPUT_TOPICS
from .bags import BagError, BagMessage, BagReader, ReadLimits

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
COMMAND_TOPIC = DEFAULT_INPUT_TOPICS["command"]  # the node's, as the replay's default
STRING_TYPE = "std_msgs/msg/String"


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
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # the read limit follows it (bag_check)
    # String rows on this topic (in the bag, or after --remap) are commands
    command_topic: str = COMMAND_TOPIC

    @property
    def limits(self) -> ReadLimits:
        return ReadLimits.for_pixels(self.max_image_pixels)


@dataclass
class PlayStats:
    published: int = 0
    skipped: int = 0  # corrupt rows, not published
    refused: int = 0  # command rows over the node's length limit, not published
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
        with BagReader(self.path, self.opt.limits) as bag:
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

        with BagReader(self.path, self.opt.limits) as bag:
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
                    # reject corrupt bytes before subscribers see them
                    msg = deserialize_message(raw, self.classes[m.topic])
                except Exception as exc:  # noqa: BLE001 - BagError or rclpy's RMWError
                    self.stats.skipped += 1
                    self.warn(
                        f"skipped corrupt {m.msgtype} on {m.topic} at "
                        f"+{(m.timestamp_ns - bag.start_ns) / 1e9:.3f} s: {_why_corrupt(exc, m)}"
                    )
                    continue
                if self._refused_command(bag, m, msg, len(raw)):
                    continue
                if self._clock_pub is not None:
                    self._publish_clock(m.timestamp_ns)
                self.publishers[m.topic].publish(raw)
                self.stats.published += 1
                self.stats.per_topic[m.topic] = self.stats.per_topic.get(m.topic, 0) + 1

    def _refused_command(self, bag: BagReader, m: BagMessage, msg: Any, size: int) -> bool:
        """Whether `msg` is a command the node would refuse for its length; if so it is
        counted and named in one warning line, and the caller does not publish it.
        """
        topic = self.opt.command_topic
        if m.msgtype != STRING_TYPE or topic not in (m.topic, self.opt.remaps.get(m.topic)):
            return False
        refusal = too_long(msg.data)
        if refusal is None:
            return False
        self.stats.refused += 1
        self.warn(
            f"skipped the command on {m.topic} at +{(m.timestamp_ns - bag.start_ns) / 1e9:.3f} s "
            f"(log time {m.timestamp_ns} ns) in {self.path}, {size} bytes: {refusal}; not "
            "published (the node refuses it)"
        )
        return True

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


def check_bag(
    path: str | Path, topics: tuple[str, ...] = (), limits: ReadLimits | None = None
) -> None:
    """Open the bag and check the asked-for topics exist (PlayerError/BagError naming the
    problem).
    """
    with BagReader(path, limits) as bag:
        have = bag.topics
        if not have:
            raise PlayerError(f"{path} holds no messages")
        unknown = [t for t in topics if t not in have]
        if unknown:
            raise PlayerError(
                f"not in {path}: {', '.join(unknown)} (topics: {', '.join(sorted(have))})"
            )


def _why_corrupt(exc: Exception, m: BagMessage) -> str:
    """One readable line for a message rclpy cannot decode (its own text names a C++ file)."""
    if isinstance(exc, BagError):
        return str(exc)
    return (
        f"its {len(m.raw)} bytes do not decode as {m.msgtype} (a length field points past the "
        "end of the message, or it was written with another definition); check the recording"
    )
