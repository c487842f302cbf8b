"""The one place a result leaves the node: ~/result and, beside it, ~/mask, ~/centroid, the
standard outputs (outputs.py) and ~/debug_image.

Why one place: every command (topic, service or action) must get exactly one answer, also when
the node is deactivated, disabled or shutting down while the command runs. Keeping the
publishers, the answered flag and the counters behind one lock makes a second answer impossible
to publish, and makes the shutdown stats line count every answer once.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from geometry_msgs.msg import PointStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from iterprime_ros.msg import Segmentation

from . import diagnostics, messages
from .jobs import CANCELLED, Job, quote_command
from .outputs import StandardOutputs
from .sensors import stamp_ns
from .spatial import Located

OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Results of a burst are published faster than a subscriber may take them: a deep writer
# history keeps one from overwriting another before it is delivered.
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


class Answers:
    """The node's output publishers and the rule that each command is answered exactly once.

    Publishers are created once, with the node, because failures are answered in every
    lifecycle state (an unconfigured node still tells a client why it cannot help).
    """

    def __init__(self, node: Any) -> None:
        self.node = node
        self.result_pub = node.create_publisher(Segmentation, "~/result", RESULT_QOS)
        self.mask_pub = node.create_publisher(Image, "~/mask", OUTPUT_QOS)
        self.centroid_pub = node.create_publisher(PointStamped, "~/centroid", OUTPUT_QOS)
        self.debug_pub = node.create_publisher(Image, "~/debug_image", OUTPUT_QOS)
        # what a voice front end says aloud: each answer's question, once (docs/voice.md)
        self.question_pub = node.create_publisher(String, "~/question", OUTPUT_QOS)
        self.outputs = StandardOutputs(node, OUTPUT_QOS)  # ~/marker, vision_msgs detections
        if self.outputs.missing:
            node.get_logger().info(f"~/detections_2d and ~/detections_3d: {self.outputs.missing}")
        self.tracking: Any = None  # the node's NodeTracking: a failed command ends the track
        self.lock = threading.Lock()
        self._counts = {"succeeded": 0, "failed": 0}
        self.latencies = diagnostics.Latencies()

    def counts(self) -> tuple[int, int]:
        """(succeeded, failed) answers so far."""
        with self.lock:
            return self._counts["succeeded"], self._counts["failed"]

    def header(self, job: Job) -> Header:
        """The answer's header: the image's when it has a stamp or frame, else the arrival time."""
        if job.image is not None and (stamp_ns(job.image.header) > 0 or job.image.header.frame_id):
            return messages.copy_header(job.image.header)
        header = Header()
        header.stamp.sec, header.stamp.nanosec = divmod(job.arrived_ns, 1_000_000_000)
        if job.image is not None:
            header.frame_id = job.image.header.frame_id
        return header

    def info(
        self,
        job: Job,
        centroid_3d: tuple[float, float, float] | None = None,
        objects_3d: tuple[tuple[float, float, float] | None, ...] = (),
    ) -> messages.Answer:
        """What every answer to `job` carries besides the model's result."""
        return messages.Answer(
            job.command_id,
            job.text,
            self.header(job),
            time.monotonic() - job.arrived_mono,
            centroid_3d,
            objects_3d=objects_3d,
            candidate_masks=self.node.settings.publish_candidate_masks,
        )

    def fail(self, job: Job, error: str) -> None:
        self.answer(job, messages.failure(self.info(job), error))

    def answer(
        self,
        job: Job,
        result: Segmentation,
        mask: Image | None = None,
        centroid: PointStamped | None = None,
        located: Located | None = None,
    ) -> None:
        """Publish the one answer to `job`: THE place a result leaves the node.

        Beside ~/result: ~/mask, ~/centroid, ~/question (the answer's question, if it asks one)
        and the standard outputs (outputs.py) from `located`, the answer's 3-D part.

        A second answer is dropped: silently for a command already answered "shutting down"
        whose model work ended afterwards, as a logged bug otherwise.
        """
        with self.lock:
            if job.answered:
                if not self.node.closing:
                    self.node.get_logger().error(
                        f"command {job.command_id} answered twice; second answer dropped"
                    )
                return
            job.answered = True
            if result.success and job.cancelled is not None and job.cancelled.is_set():
                # the goal's cancel was accepted before this answer: the goal ends CANCELED,
                # so the answer says so too (commands.Commands.on_cancel)
                result = messages.failure(self.info(job), CANCELLED)
                mask = centroid = located = None
            self._counts["succeeded" if result.success else "failed"] += 1
            if job.ran:
                self.latencies.add(result.latency_s)
            try:
                if mask is not None:
                    self.mask_pub.publish(mask)
                if centroid is not None:
                    self.centroid_pub.publish(centroid)
                self.result_pub.publish(result)
                if result.question:  # after the result, so its status is there to read
                    self.question_pub.publish(String(data=result.question))
                self.outputs.publish(result, located)
            except Exception as exc:  # noqa: BLE001 - the context is gone (killed mid-shutdown)
                print(f"command {job.command_id}: result not published: {exc}", file=sys.stderr)
                return
        self._log(job, result)
        if not result.success and self.tracking is not None:  # a failed new command ends the
            self.tracking.on_answer(job.command_id, job.text, result, None, None, False)  # track
        if job.on_answer is not None:
            job.on_answer(result)

    def _log(self, job: Job, result: Segmentation) -> None:
        """One log line per answer: where the object is, or why there is no answer."""
        logger = self.node.get_logger()
        if not result.success:
            logger.warning(f"command {job.command_id} failed: {quote_command(result.error)}")
            return
        line = (
            f"command {job.command_id}: {result.expression!r} -> mask at "
            f"({result.centroid_px.x:.0f}, {result.centroid_px.y:.0f}) px"
        )
        if result.has_centroid_3d:
            c = result.centroid_3d
            line += f", ({c.x:.3f}, {c.y:.3f}, {c.z:.3f}) m"
        if result.has_target_point and self.node.transformer is not None:
            t = result.centroid_target
            where = t.header.frame_id
            line += f", ({t.point.x:.3f}, {t.point.y:.3f}, {t.point.z:.3f}) m in {where}"
        if job.frame_source:  # which camera frame, as the prefetch rule chose it
            prepared = "prepared" if result.prefetched else "not prepared"
            line += f"; frame {job.frame_source} ({prepared}), {job.frame_age_s:.2f} s old"
        logger.info(line + f" in {result.latency_s:.2f} s")

    def publish_debug(self, rgb: Any, result: Any, header: Header) -> None:
        """Heat map, mask, centroid and expression over the image; rendered only when someone
        listens.
        """
        if (
            self.node.closing
            or not self.node.settings.publish_debug_image
            or self.debug_pub.get_subscription_count() == 0
        ):
            return
        try:
            from ..overlay import render_overlay

            self.debug_pub.publish(messages.debug_image(render_overlay(rgb, result), header))
        except Exception as exc:  # noqa: BLE001 - a debug image must never cost an answer
            self.node.get_logger().warning(f"debug image failed: {exc}")
