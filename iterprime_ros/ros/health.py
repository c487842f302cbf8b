"""The node's health: /diagnostics on a timer, and the stats line logged at shutdown.

Why apart from the rule itself (diagnostics.py): the rule is a pure function of a snapshot;
gathering the snapshot reads every other room (queue, worker, answers, frames, models), and the
shutdown line must be written even when the ROS context is already gone.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from . import diagnostics


class Health:
    """Publishes the node's diagnostic status every diagnostics_period_s."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._images_at_last_status = (0, time.monotonic())
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_timer(
            node.parameters.node.diagnostics_period_s,
            self.publish,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )

    def snapshot(self) -> diagnostics.Snapshot:
        """The figures /diagnostics reports (also handy in tests)."""
        node, frames = self.node, self.node.frames
        frame = frames.sensors.latest_image()
        now_ns = node.get_clock().now().nanoseconds
        count, since = self._images_at_last_status
        now = time.monotonic()
        images = frames.image_stats.count
        self._images_at_last_status = (images, now)
        segmenter = node.models.segmenter
        device = node.parameters.segmenter.device
        if segmenter is not None:
            device = str(getattr(segmenter.vlp, "device", device))
        received = node.commands.received
        ok, failed = node.answers.counts()
        return diagnostics.Snapshot(
            state=node.state,
            enabled=node.enabled,
            models_ready=segmenter is not None,
            unavailable=node.unavailable,
            device=device,
            queue_depth=len(node.queue),
            queue_size=node.queue.maxsize,
            running=node.worker.busy,
            images_received=images,
            image_rate_hz=(images - count) / max(now - since, 1e-6),
            image_age_s=None if frame is None else (now_ns - frame.received_ns) / 1e9,
            image_gap_max_s=frames.image_stats.take_window_gap(),
            max_image_age_s=node.settings.max_image_age_s,
            latencies_s=node.answers.latencies.values(),
            succeeded=ok,
            failed=failed,
            received=received,
            gpu_memory_mb=diagnostics.gpu_memory_mb(device),
        )

    def publish(self) -> None:
        node = self.node
        status = diagnostics.assess(self.snapshot())
        msg = DiagnosticArray()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=bytes([status.level]),
                name=f"{node.get_fully_qualified_name()}: referring segmentation",
                message=status.message,
                hardware_id="",
                values=[KeyValue(key=k, value=v) for k, v in status.values.items()],
            )
        ]
        self._pub.publish(msg)

    def stats(self) -> str:
        """One line: commands received and answered, and the image callback figures."""
        received = self.node.commands.received
        ok, failed = self.node.answers.counts()
        return (
            f"stats: {received} commands received, {ok + failed} answered ({ok} succeeded, "
            f"{failed} failed); "
            f"{self.node.frames.image_stats.summary()}"
        )

    def log_stats(self) -> None:
        """The shutdown stats line, once every command that reached the node is answered."""
        node = self.node
        line = self.stats()
        try:
            if not node.context.ok():  # /rosout is gone: the logger would complain about it
                raise RuntimeError("context shut down")
            node.get_logger().info(line)
        except Exception:  # noqa: BLE001 - stderr is always there
            print(
                f"[INFO] [{node.get_fully_qualified_name().lstrip('/').replace('/', '.')}]: "
                f"{line}",
                file=sys.stderr,
                flush=True,
            )
