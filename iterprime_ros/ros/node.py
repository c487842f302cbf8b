"""The iterprime_segmenter node: camera image + spoken command in, the referred object out.

Threads: the executor thread runs every callback, and callbacks only store messages or
enqueue commands; one worker thread loads the models and runs each command, so images keep
flowing while the models work. Every command (topic or service) gets exactly one result on
~/result; a service call also gets it as its response. Commands are only ever text to segment:
nothing in a command is run, formatted into code, or used to pick a model, file or parameter
(docs/robustness.md).

    ros2 run iterprime_ros segmenter --ros-args --params-file config/segment.yaml -r
    image:=/camera/image
    iterprime-node --ros-args ...        (the same, installed with pip)
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import rclpy
from geometry_msgs.msg import PointStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from iterprime_ros.msg import Segmentation
from iterprime_ros.srv import Segment

from ..core.command import CommandError, normalise_command
from ..pipeline import ModelLoadError, Segmenter, is_out_of_memory
from . import messages
from .conversions import ImageConversionError, image_to_rgb
from .params import PARAMETERS, ParameterError, declare_and_read
from .sensors import SensorCache, compute_centroid_3d, stamp_ns
from .worker import JobQueue, Worker

NODE_NAME = "iterprime_segmenter"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Commands are tiny and must not be lost: a burst of them waits in DDS until the executor takes
# them.
COMMAND_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# A spoken command is one sentence. Longer text is refused at once (not queued): the parser's cost
# grows with the length, BLIP reads only the first max_text_tokens tokens anyway, and one
# megabyte-long string must not hold the worker for minutes.
MAX_COMMAND_CHARS = 1000
LOG_TEXT_CHARS = 200  # commands are quoted in the log up to this length
DOWNLOAD_HINT = (
    "fetch the default weights with `iterprime download` on a machine with internet, or point "
    "vlp_model / proposal_model at local model folders"
)


def _short(text: str) -> str:
    """A command quoted for the log, cut to LOG_TEXT_CHARS characters."""
    if len(text) <= LOG_TEXT_CHARS:
        return repr(text)
    return f"{text[:LOG_TEXT_CHARS]!r}... ({len(text)} characters)"


class ImageStats:
    """What the image callback costs and how regularly images arrive (executor thread only).

    Why: the image callback must never wait for model work; the longest time spent in it and the
    longest gap between two images are the evidence, logged at shutdown (docs/robustness.md).
    """

    def __init__(self) -> None:
        self.count = 0
        self.max_callback_s = 0.0
        self.max_gap_s = 0.0
        self._last: float | None = None

    def record(self, start: float, end: float) -> None:
        self.count += 1
        self.max_callback_s = max(self.max_callback_s, end - start)
        if self._last is not None:
            self.max_gap_s = max(self.max_gap_s, start - self._last)
        self._last = start

    def summary(self) -> str:
        return (
            f"{self.count} images received, image callback max {self.max_callback_s * 1e3:.2f} "
            "ms, "
            f"longest gap between images {self.max_gap_s * 1e3:.0f} ms"
        )


@dataclass
class Job:
    """One command waiting for (or getting) its answer."""

    command_id: int
    text: str
    arrived_ns: int  # node clock
    arrived_mono: float  # for latency
    image: Any = None  # sensor_msgs/Image chosen when the command arrived
    use_depth: bool = True  # False for an image that came with a service request
    future: Future | None = None
    answered: bool = False


class SegmenterNode(Node):
    """See the module docstring; parameters are in params.py, topics in README "ROS 2
    interface".
    """

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.parameters = declare_and_read(self)  # ParameterError: main() reports it and exits 2
        self.settings = self.parameters.node
        self._sensors = SensorCache()
        self._id_lock = threading.Lock()
        self._answer_lock = threading.Lock()
        self._next_id = 1
        self._segmenter: Segmenter | None = None
        self._model_error: str | None = None
        self._normaliser = self.parameters.segmenter.normaliser_settings()
        self.image_stats = ImageStats()
        self._answered = {"succeeded": 0, "failed": 0}

        self._image_sub = self.create_subscription(
            Image, "image", self._on_image, qos_profile_sensor_data
        )
        self.create_subscription(String, "command", self._on_command, COMMAND_QOS)
        self.create_subscription(Image, "depth", self._sensors.add_depth, qos_profile_sensor_data)
        self.create_subscription(
            CameraInfo, "camera_info", self._sensors.set_camera_info, qos_profile_sensor_data
        )
        self._result_pub = self.create_publisher(Segmentation, "~/result", RELIABLE)
        self._mask_pub = self.create_publisher(Image, "~/mask", RELIABLE)
        self._centroid_pub = self.create_publisher(PointStamped, "~/centroid", RELIABLE)
        self._debug_pub = (
            self.create_publisher(Image, "~/debug_image", RELIABLE)
            if self.settings.publish_debug_image
            else None
        )
        self.create_service(Segment, "~/segment", self._on_segment)

        self._queue: JobQueue[Job] = JobQueue(self.settings.queue_size)
        self._worker: Worker[Job] = Worker(
            self._queue, self._process, self._on_job_error, setup=self._load_models
        )
        self._worker.start()
        self.get_logger().info(
            f"listening: image={self._image_sub.topic_name} "
            f"command={self.resolve_topic_name('command')} "
            f"depth={self.resolve_topic_name('depth')} "
            f"camera_info={self.resolve_topic_name('camera_info')}; "
            f"queue_size={self.settings.queue_size} "
            f"max_image_age_s={self.settings.max_image_age_s:g}; "
            "loading models in the background"
        )

    # ------------------------------------------------------------------ models
    def _load_models(self) -> None:
        """Worker thread: load the models once. A failure does not stop the node: every command is
        then answered with a failure that says why (missing weights and how to fetch them).
        """
        s = self.parameters.segmenter
        t0 = time.monotonic()
        try:
            from ..models.loading import quiet_transformers

            quiet_transformers()
            segmenter = Segmenter(s)
            parser = segmenter.warmup()
        except Exception as exc:  # noqa: BLE001 - any load failure becomes the answer to every command
            from ..models.loading import ModelNotFoundError

            text = str(exc).split("\n")[0]
            if "iterprime download" not in text:
                text = f"{text}; {DOWNLOAD_HINT}"
            kind = (
                ""
                if isinstance(exc, (ModelLoadError, ModelNotFoundError))
                else f" ({type(exc).__name__})"
            )
            self._model_error = f"models not loaded{kind}: {text}"
            self.get_logger().error(self._model_error)
            return
        self._segmenter = segmenter
        self.get_logger().info(
            f"models ready in {time.monotonic() - t0:.1f} s: vlp={s.vlp_model} "
            f"proposals={s.proposal_model} device={s.device} parser={parser}"
        )

    @property
    def models_ready(self) -> bool:
        return self._worker.ready.is_set()

    # ------------------------------------------------------------------ callbacks (executor
    # thread)
    def _on_image(self, msg: Image) -> None:
        start = time.monotonic()
        self._sensors.set_image(msg, self.get_clock().now().nanoseconds)
        self.image_stats.record(start, time.monotonic())

    def _on_command(self, msg: String) -> None:
        self._submit(msg.data, None, None)

    async def _on_segment(
        self, request: Segment.Request, response: Segment.Response
    ) -> Segment.Response:
        """Service: the request goes through the same queue as topic commands; awaiting keeps the
        executor free while the worker runs it.
        """
        future: Future = Future(executor=self.executor)
        # A done callback makes set_result (from the worker thread) wake the executor; without one
        # rclpy leaves this coroutine parked until some other event arrives.
        future.add_done_callback(lambda _f: None)
        image = request.image if request.image.width > 0 and request.image.height > 0 else None
        self._submit(request.text, image, future)
        response.result = await future
        return response

    def _submit(self, text: str, explicit_image: Image | None, future: Future | None) -> None:
        with self._id_lock:
            command_id = self._next_id
            self._next_id += 1
        now = self.get_clock().now().nanoseconds
        job = Job(command_id, text, now, time.monotonic(), future=future)
        self.get_logger().info(f"command {command_id}: {_short(text)}")
        # Failures known before any model work are answered at once, without queueing.
        if len(text) > MAX_COMMAND_CHARS:
            self._fail(
                job,
                f"the command is too long ({len(text)} characters; at most {MAX_COMMAND_CHARS}): "
                "send one spoken sentence",
            )
            return
        try:  # microseconds: empty, non-English or naming no object needs no image and no model
            normalise_command(text, self._normaliser)
        except CommandError as exc:
            self._fail(job, str(exc))
            return
        if self._model_error is not None:
            self._fail(job, self._model_error)
            return
        if explicit_image is not None:
            job.image, job.use_depth = explicit_image, False
        else:
            frame = self._sensors.latest_image()
            topic = self._image_sub.topic_name
            if frame is None:
                self._fail(job, f"no image received on {topic} yet")
                return
            age = (now - frame.received_ns) / 1e9
            if age > self.settings.max_image_age_s:
                self._fail(
                    job,
                    f"no image newer than {self.settings.max_image_age_s:g} s on {topic} "
                    f"(the latest arrived {age:.1f} s ago)",
                )
                return
            job.image = frame.msg
        for dropped in self._queue.put(job):
            if dropped is job:  # the queue is closed: the node is shutting down
                self._fail(job, "the node is shutting down")
            else:
                self._fail(
                    dropped,
                    f"dropped: queue full ({self.settings.queue_size} commands waiting); "
                    f"command {command_id} arrived after it",
                )

    # ------------------------------------------------------------------ answers (either thread)
    def _header(self, job: Job) -> Header:
        if job.image is not None and (stamp_ns(job.image.header) > 0 or job.image.header.frame_id):
            return messages.copy_header(job.image.header)
        header = Header()
        header.stamp.sec, header.stamp.nanosec = divmod(job.arrived_ns, 1_000_000_000)
        if job.image is not None:
            header.frame_id = job.image.header.frame_id
        return header

    def _answer_info(
        self, job: Job, centroid_3d: tuple[float, float, float] | None = None
    ) -> messages.Answer:
        return messages.Answer(
            job.command_id,
            job.text,
            self._header(job),
            time.monotonic() - job.arrived_mono,
            centroid_3d,
        )

    def _fail(self, job: Job, error: str) -> None:
        self._answer(job, messages.failure(self._answer_info(job), error))

    def _answer(
        self,
        job: Job,
        result: Segmentation,
        mask: Image | None = None,
        centroid: PointStamped | None = None,
    ) -> None:
        """Publish the one answer to `job` (a second answer is a bug: logged, not sent)."""
        with self._answer_lock:
            if job.answered:
                self.get_logger().error(
                    f"command {job.command_id} answered twice; second answer dropped"
                )
                return
            job.answered = True
            if mask is not None:
                self._mask_pub.publish(mask)
            if centroid is not None:
                self._centroid_pub.publish(centroid)
            self._result_pub.publish(result)
            self._answered["succeeded" if result.success else "failed"] += 1
        if result.success:
            self.get_logger().info(
                f"command {job.command_id}: {result.expression!r} -> mask at "
                f"({result.centroid_px.x:.0f}, "
                f"{result.centroid_px.y:.0f}) px"
                + (
                    f", ({result.centroid_3d.x:.3f}, {result.centroid_3d.y:.3f}, "
                    f"{result.centroid_3d.z:.3f}) m"
                    if result.has_centroid_3d
                    else ""
                )
                + f" in {result.latency_s:.2f} s"
            )
        else:
            self.get_logger().warning(f"command {job.command_id} failed: {_short(result.error)}")
        if job.future is not None and not job.future.done():
            job.future.set_result(result)

    # ------------------------------------------------------------------ the model work (worker
    # thread)
    def _process(self, job: Job) -> None:
        if self._model_error is not None or self._segmenter is None:
            self._fail(job, self._model_error or "models are not loaded")
            return
        try:
            rgb = image_to_rgb(job.image)
        except ImageConversionError as exc:
            self._fail(job, f"cannot use the image: {exc}")
            return
        header = job.image.header
        key = (
            (header.frame_id, stamp_ns(header), rgb.shape)
            if (job.use_depth and stamp_ns(header) > 0)
            else None
        )
        result = self._segmenter.segment(rgb, job.text, frame_id=key)
        point = None
        if result.success and job.use_depth and result.mask is not None:
            depth = self._sensors.depth_for(header, self.settings.depth_sync_tolerance_s)
            info = self._sensors.camera_info()
            c3 = compute_centroid_3d(result.mask, depth, info, self.settings.depth_erosion_px)
            point = c3.point
            if point is None and (self._sensors.has_depth or info is not None):
                self.get_logger().warning(
                    f"command {job.command_id}: no 3-D centroid: {c3.reason}"
                )
        msg = messages.segmentation(result, self._answer_info(job, point))
        mask = msg.mask if msg.success else None
        self._answer(job, msg, mask, messages.centroid_point(msg))
        self._publish_debug(rgb, result, msg.header)

    def _publish_debug(self, rgb: Any, result: Any, header: Header) -> None:
        """Heat map, mask, centroid and expression over the image; rendered only when someone
        listens.
        """
        if self._debug_pub is None or self._debug_pub.get_subscription_count() == 0:
            return
        try:
            from ..overlay import render_overlay

            self._debug_pub.publish(messages.debug_image(render_overlay(rgb, result), header))
        except Exception as exc:  # noqa: BLE001 - a debug image must never cost an answer
            self.get_logger().warning(f"debug image failed: {exc}")

    def _on_job_error(self, job: Job, exc: BaseException) -> None:
        """A command raised past the pipeline's own handling (a bug, or an error outside its
        stages).
        """
        if is_out_of_memory(exc):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._fail(job, f"out of GPU memory: {exc}".split("\n")[0])
            return
        self._fail(job, f"internal error: {type(exc).__name__}: {exc}".split("\n")[0])

    # ------------------------------------------------------------------ shutdown
    def stats(self) -> str:
        """One line: commands received and answered, and the image callback figures
        (ImageStats).
        """
        with self._id_lock:
            received = self._next_id - 1
        with self._answer_lock:
            ok, failed = self._answered["succeeded"], self._answered["failed"]
        return (
            f"stats: {received} commands received, {ok + failed} answered ({ok} succeeded, "
            f"{failed} failed); "
            f"{self.image_stats.summary()}"
        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; commands still waiting are answered with a failure. Logs stats()."""
        for job in self._worker.stop(timeout):
            try:
                self._fail(job, "the node is shutting down")
            except Exception as exc:  # noqa: BLE001 - the context may already be shut down (Ctrl-C)
                self.get_logger().warning(
                    f"command {job.command_id} not answered at shutdown: {exc}"
                )
        line = self.stats()
        try:
            if (
                not self.context.ok()
            ):  # after Ctrl-C: /rosout is gone, the logger would complain about it
                raise RuntimeError("context shut down")
            self.get_logger().info(line)
        except Exception:  # noqa: BLE001 - stderr is always there
            print(
                f"[INFO] [{self.get_fully_qualified_name().lstrip('/').replace('/', '.')}]: "
                f"{line}",
                file=sys.stderr,
                flush=True,
            )


def usage() -> str:
    lines = [__doc__.strip(), "", "Parameters (config/segment.yaml; -p name:=value):"]
    for p in PARAMETERS:
        lines.append(f"  {p.name:<24} {p.description}; {p.allowed} (default {p.ros_default()!r})")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    """Console entry (`iterprime-node`, `ros2 run iterprime_ros segmenter`). Exits 2 on a bad
    parameter.
    """
    argv = sys.argv if args is None else args
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own or "--help" in own:
        print(usage())
        return
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    rclpy.init(args=argv)
    try:
        node = SegmenterNode()
    except ParameterError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"bad parameters: {exc}")
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
