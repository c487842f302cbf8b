"""The player's small recorder: what the graph publishes on some topics, written to a bag.

Why: the integration test plays the sample bag into the node and records its results this
way, on machines without rosbag2; the bag it writes keeps every promise of the bag writer
(CRCs, one writer per output, the partial kept on Ctrl-C).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .bag_player import BagPlayer, message_class
from .bags import BagWriter


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


def _spin_until(executor: Any, stop: threading.Event) -> None:
    """The recorder thread: spin in short steps until `stop` is set (then return, still owning
    nothing the main thread is about to destroy).
    """
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)


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
