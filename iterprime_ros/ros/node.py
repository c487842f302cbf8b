"""The iterprime_segmenter node: camera image + spoken command in, the referred object out.

A managed (lifecycle) node. configure checks the parameters and that each model folder holds
the expected kind of model; activate loads the models and subscribes to the camera; deactivate
stops answering (commands get a failure saying the node is inactive) and frees the models;
cleanup and shutdown answer everything pending. With autostart (the default) the node
configures and activates itself; autostart:=false leaves that to a lifecycle manager.

Threads: a multi-threaded executor runs the callbacks in groups (camera, topic commands,
service/action requests, lifecycle), so images, commands and parameter/lifecycle requests keep
flowing while a command is computed; callbacks only store messages or enqueue commands. One
worker thread loads the models and runs each command. Every command (topic, service or action)
gets exactly one result on ~/result, also at shutdown; a service call also gets it as its
response. Commands are only ever text to segment: nothing in a command is run, formatted into
code, or used to pick a model, file or parameter (docs/robustness.md).

Inputs: image, depth, camera_info (while active; QoS image_qos), command (reliable, keep-all: a
voice front end publishes reliable, keep-all). Outputs: ~/result (one per command), ~/mask,
~/centroid, ~/debug_image, /diagnostics, and (outputs.py) ~/marker and, with vision_msgs,
~/detections_2d and ~/detections_3d; with target_frame the 3-D part is also given in that frame
(tf2 at the image stamp; README "Robot-frame outputs"). Services: ~/segment (also an action
with feedback and cancel), ~/enable (std_srvs/SetBool), the lifecycle services. `ros2 param
set` changes the parameters marked [live] at run time; the others while the node is
unconfigured.

    ros2 run iterprime_ros segmenter --ros-args --params-file config/segment.yaml -r
    image:=/camera/image
    iterprime-node --ros-args ...        (the same, installed with pip)
    ros2 lifecycle set /iterprime_segmenter deactivate     (with -p autostart:=false: configure,
                                                            activate)
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool

from iterprime_ros.action import Segment as SegmentAction
from iterprime_ros.msg import Segmentation
from iterprime_ros.srv import Segment

from ..core.command import CommandError, normalise_command, too_long
from ..image_size import ImageTooLargeError, check_bytes
from ..pipeline import (
    CommandCancelled,
    ModelLoadError,
    Segmenter,
    gradcam_layer_for,
    is_out_of_memory,
)
from ..prefetch import Prefetcher
from . import diagnostics, logs, messages
from .conversions import ImageConversionError, check_image
from .jobs import ImageStats, Job, first_line, quote_command
from .names import NODE_NAME
from .outputs import StandardOutputs, fill_3d
from .params import (
    PARAMETERS,
    SPECS,
    ParameterError,
    Parameters,
    check_params_files,
    current_values,
    declare_and_read,
    params_files,
    read_params_file,
)
from .sensors import Frame, SensorCache, stamp_ns
from .sizing import compressed_for_models, result_at_source, rgb_for_models, size_plan
from .spatial import Located, locate
from .track_output import NodeTracking
from .transforms import FrameTransformer, TransformSetupError, frame_transformer
from .worker import JobQueue, Worker

OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Commands are tiny and must not be lost: the subscription keeps every command DDS delivered
# until the executor takes it (a burst of 1000 arrives whole). The sender must be reliable too
# (README "ROS 2 interface": the QoS a voice front end uses).
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
# Results of a burst are published faster than a subscriber may take them: a deep writer
# history keeps one from overwriting another before it is delivered.
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
EXECUTOR_THREADS = 6  # camera, commands, lifecycle and parameter services, with room to spare
SHUTTING_DOWN = "the node is shutting down"
CANCELLED = "cancelled: the action goal was cancelled by its client"
DISABLED = (
    "the node is disabled: ros2 service call {}/enable std_srvs/srv/SetBool '{{data: true}}'"
)
DOWNLOAD_HINT = (
    "fetch the default weights with `iterprime download` on a machine with internet, or point "
    "vlp_model / proposal_model at local model folders"
)


def _logged_transition(
    method: Callable[[Any, LifecycleState], TransitionCallbackReturn],
) -> Callable[[Any, LifecycleState], TransitionCallbackReturn]:
    """Log an exception in a transition callback before rclpy turns it into ERROR: rclpy drops
    it without a word, leaving a failed transition nobody can explain.
    """

    @functools.wraps(method)
    def wrapper(self: Any, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return method(self, state)
        except Exception as exc:
            self.get_logger().error(
                f"{method.__name__} failed: {first_line(exc)}\n{traceback.format_exc()}"
            )
            raise

    return wrapper


class SegmenterNode(LifecycleNodeMixin, Node):
    """See the module docstring; parameters are in params.py, topics in README "ROS 2 interface".

    Hooks for features (keep them single): a new camera frame arrives in `_on_image`; a result
    is built in `_process` and published only by `_answer`; outputs are created in
    `_create_outputs`; parameters are rows of the table in params.py (`self.parameters`).
    """

    def __init__(self, transform_buffer: Any = None, **node_kwargs: Any) -> None:
        """transform_buffer: a tf2-style buffer from embedding code (else tf2_ros at configure)."""
        Node.__init__(self, NODE_NAME, **node_kwargs)
        self._transform_buffer = transform_buffer
        self._transformer: FrameTransformer | None = None  # set at configure when target_frame
        self._tf_listener: Any = None
        self._lifecycle_group = MutuallyExclusiveCallbackGroup()
        self._camera_group = MutuallyExclusiveCallbackGroup()
        # Topic commands one at a time, in the order DDS delivered them; service and action
        # requests may wait on their answers side by side (an awaiting request holds its group).
        self._command_group = MutuallyExclusiveCallbackGroup()
        self._request_group = ReentrantCallbackGroup()
        LifecycleNodeMixin.__init__(self, callback_group=self._lifecycle_group)
        self._log_bridge = logs.bridge(self.get_logger())  # pipeline/worker/loading logs
        self.parameters: Parameters = declare_and_read(self)  # ParameterError: main() exits 2
        self._sensors = SensorCache()
        self._submit_lock = threading.Lock()  # ids are given in queue order
        self._answer_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._next_id = 1
        self._segmenter: Segmenter | None = None
        self._prefetcher: Prefetcher | None = None  # prepares frames while idle (prefetch.py)
        self._prepared: Frame | None = None  # the latest frame the prefetcher completed
        self._state = "unconfigured"  # this node's view of the lifecycle state
        self._starting = self.parameters.node.autostart  # commands wait for the autostart
        self._unavailable: str | None = None  # why the last configure/activate failed
        self._closing = False
        self._normaliser = self.parameters.segmenter.normaliser_settings()
        self.image_stats = ImageStats()
        self._answered = {"succeeded": 0, "failed": 0}
        self._sensor_subs: list[Any] = []
        self._enabled = True
        self._latencies = diagnostics.Latencies()
        self._images_at_last_status = (0, time.monotonic())

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._create_outputs()
        self.create_subscription(
            String, "command", self._on_command, COMMAND_QOS, callback_group=self._command_group
        )
        self.create_service(
            Segment, "~/segment", self._on_segment, callback_group=self._request_group
        )
        self._action = ActionServer(
            self,
            SegmentAction,
            "~/segment",
            execute_callback=self._execute_goal,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel,
            callback_group=self._request_group,
        )
        self._goals: dict[bytes, Job] = {}  # goal id -> its job, while it has no answer
        self.create_service(
            SetBool, "~/enable", self._on_enable, callback_group=self._request_group
        )
        self.create_timer(
            self.parameters.node.diagnostics_period_s,
            self._publish_diagnostics,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self._queue: JobQueue[Job] = JobQueue(self.parameters.node.queue_size)
        self._queue.hold()  # nothing runs before the node is active
        self._worker: Worker[Job] = Worker(self._queue, self._process, self._on_job_error)
        self._worker.start()
        self.get_logger().info(
            f"listening: image={self.resolve_topic_name('image')} "
            f"command={self.resolve_topic_name('command')} "
            f"depth={self.resolve_topic_name('depth')} "
            f"camera_info={self.resolve_topic_name('camera_info')}; "
            f"queue_size={self.parameters.node.queue_size} "
            f"max_image_age_s={self.parameters.node.max_image_age_s:g}; "
            + (
                "configuring and activating (autostart)"
                if self._starting
                else "unconfigured: waiting for a lifecycle manager (autostart false)"
            )
        )
        if self._starting:
            self._autostart_timer = self.create_timer(
                0.0, self._autostart, callback_group=self._lifecycle_group
            )

    def _create_outputs(self) -> None:
        """Publishers, created once: failures are answered in every lifecycle state."""
        self._result_pub = self.create_publisher(Segmentation, "~/result", RESULT_QOS)
        self._mask_pub = self.create_publisher(Image, "~/mask", OUTPUT_QOS)
        self._centroid_pub = self.create_publisher(PointStamped, "~/centroid", OUTPUT_QOS)
        self._debug_pub = self.create_publisher(Image, "~/debug_image", OUTPUT_QOS)
        self._tracking = NodeTracking(  # ~/track, ~/cancel_track (track_output.py)
            self,
            lambda: self.settings,
            self._sensors,
            self._mask_pub,
            self._centroid_pub,
            OUTPUT_QOS,
            proposals=self._track_proposals,
            callback_group=self._request_group,
        )
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._outputs = StandardOutputs(self, OUTPUT_QOS)  # ~/marker, vision_msgs detections
        if self._outputs.missing:
            self.get_logger().info(f"~/detections_2d and ~/detections_3d: {self._outputs.missing}")

    @property
    def settings(self) -> Any:
        """The node-only settings (params.NodeSettings) in force now."""
        return self.parameters.node

    @property
    def state(self) -> str:
        with self._state_lock:
            return self._state

    def _set_state(self, state: str) -> None:
        with self._state_lock:
            self._state = state

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        """Lifecycle group, once: configure and activate, as a lifecycle manager would."""
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        try:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        finally:
            self._starting = False
            if self.state != "active":
                self._fail_waiting(self._not_answering())

    @_logged_transition
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters (as they are now) and check the model folders."""
        self._set_state("configuring")
        try:
            parameters = Parameters.from_values(current_values(self))
            self._configure_frames(parameters)
            self._check_models(parameters)
        except (ParameterError, ModelLoadError, TransformSetupError) as exc:
            self._unavailable = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._set_state("unconfigured")
            return TransitionCallbackReturn.FAILURE
        self.parameters = parameters
        self._normaliser = parameters.segmenter.normaliser_settings()
        for dropped in self._queue.resize(parameters.node.queue_size):
            self._fail(dropped, "dropped: queue_size was made smaller")
        self._unavailable = None
        self._set_state("inactive")
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def _configure_frames(self, parameters: Parameters) -> None:
        """target_frame: a tf2 buffer (or the embedder's); TransformSetupError says why not."""
        node = parameters.node
        self._transformer, self._tf_listener = frame_transformer(
            self, node.target_frame, node.transform_timeout_s, self._transform_buffer
        )
        if self._transformer is not None:
            self.get_logger().info(f"3-D outputs in {node.target_frame!r} (tf2 at image stamps)")

    def _check_models(self, parameters: Parameters) -> None:
        """The device exists; each model folder exists and holds the kind of model its backend
        loads (no loading).
        """
        from ..models import (
            ModelCheckError,
            ModelNotFoundError,
            ModelTypeError,
            check_model_folder,
        )
        from ..models.loading import DeviceUnavailableError, resolve_device

        s = parameters.segmenter
        try:
            resolve_device(s.device)
        except DeviceUnavailableError as exc:
            raise ModelLoadError(f"models not loaded: parameter 'device': {exc}") from None
        try:
            check_model_folder("vlp_model", s.vlp_model, "vlp", s.vlp_backend)
            check_model_folder("proposal_model", s.proposal_model, "proposals", s.proposal_backend)
        except (ModelNotFoundError, ModelCheckError) as exc:
            text = first_line(exc)
            if "iterprime download" not in text and not isinstance(exc, ModelTypeError):
                text = f"{text}; {DOWNLOAD_HINT}"
            raise ModelLoadError(f"models not loaded: {text}") from None

    @_logged_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the models (on the worker thread), subscribe to the camera, start answering."""
        self._set_state("activating")
        self._subscribe_sensors()
        error = self._worker.call(self._load_models).result()
        if error is not None:
            self._unavailable = error
            self._unsubscribe_sensors()
            self._set_state("inactive")
            if not self._starting:
                self._fail_waiting(error)
            return TransitionCallbackReturn.FAILURE
        self._unavailable = None
        self._set_state("active")
        self._queue.release()
        return super().on_activate(state)

    @_logged_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop answering: waiting commands fail; the running one finishes; the models go."""
        self._set_state("deactivating")
        self._queue.hold()
        self._fail_waiting("the node was deactivated before this command ran")
        self._tracking.cancel("the node was deactivated")
        self._unsubscribe_sensors()
        self._worker.call(self._unload_models).result()  # after the running command
        self._set_state("inactive")
        self.get_logger().info("deactivated: models unloaded")
        return super().on_deactivate(state)

    @_logged_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._fail_waiting("the node was cleaned up before this command ran")
        unregister = getattr(self._tf_listener, "unregister", None)  # tf2_ros's listener
        if unregister is not None:
            unregister()
        self._transformer, self._tf_listener = None, None
        self._set_state("unconfigured")
        return super().on_cleanup(state)

    @_logged_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Answer everything pending with "shutting down", free the models."""
        self._set_state("finalized")
        self._queue.hold()
        self._fail_waiting(SHUTTING_DOWN)
        self._unsubscribe_sensors()
        self._worker.call(self._unload_models).result()
        return super().on_shutdown(state)

    @_logged_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"lifecycle error while {state.label}; back to unconfigured")
        self._queue.hold()
        self._fail_waiting("the node hit an error")
        self._unsubscribe_sensors()
        self._worker.call(self._unload_models).result()
        self._set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _subscribe_sensors(self) -> None:
        """Camera inputs exist only while active: an inactive node takes no frames."""
        if self._sensor_subs:
            return
        group = self._camera_group
        qos = qos_profile_sensor_data
        if self.settings.image_qos == "reliable":  # e.g. depth cameras that publish reliable only
            qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_type, image_topic = (
            (CompressedImage, "image/compressed")
            if self.settings.image_transport == "compressed"
            else (Image, "image")
        )
        self._sensor_subs = [
            self.create_subscription(
                image_type, image_topic, self._on_image, qos, callback_group=group
            ),
            self.create_subscription(
                Image, "depth", self._sensors.add_depth, qos, callback_group=group
            ),
            self.create_subscription(
                CameraInfo, "camera_info", self._sensors.set_camera_info, qos, callback_group=group
            ),
        ]

    def _unsubscribe_sensors(self) -> None:
        for sub in self._sensor_subs:
            self.destroy_subscription(sub)
        self._sensor_subs = []

    # ------------------------------------------------------------------ enable, diagnostics
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        """~/enable: pause answering without tearing anything down (models stay loaded)."""
        self._enabled = bool(request.data)
        if not self._enabled:
            self._fail_waiting(DISABLED.format(self.get_fully_qualified_name()))
        response.success = True
        response.message = "enabled" if self._enabled else "disabled: commands are refused"
        self.get_logger().info(f"~/enable: {response.message}")
        return response

    def snapshot(self) -> diagnostics.Snapshot:
        """The figures /diagnostics reports (also handy in tests)."""
        frame = self._sensors.latest_image()
        now_ns = self.get_clock().now().nanoseconds
        count, since = self._images_at_last_status
        now = time.monotonic()
        images = self.image_stats.count
        self._images_at_last_status = (images, now)
        segmenter = self._segmenter
        device = self.parameters.segmenter.device
        if segmenter is not None:
            device = str(getattr(segmenter.vlp, "device", device))
        with self._submit_lock:
            received = self._next_id - 1
        with self._answer_lock:
            ok, failed = self._answered["succeeded"], self._answered["failed"]
        return diagnostics.Snapshot(
            state=self.state,
            enabled=self._enabled,
            models_ready=segmenter is not None,
            unavailable=self._unavailable,
            device=device,
            queue_depth=len(self._queue),
            queue_size=self._queue.maxsize,
            running=self._worker.busy,
            images_received=images,
            image_rate_hz=(images - count) / max(now - since, 1e-6),
            image_age_s=None if frame is None else (now_ns - frame.received_ns) / 1e9,
            image_gap_max_s=self.image_stats.take_window_gap(),
            max_image_age_s=self.settings.max_image_age_s,
            latencies_s=self._latencies.values(),
            succeeded=ok,
            failed=failed,
            received=received,
            gpu_memory_mb=diagnostics.gpu_memory_mb(device),
        )

    def _publish_diagnostics(self) -> None:
        status = diagnostics.assess(self.snapshot())
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=bytes([status.level]),
                name=f"{self.get_fully_qualified_name()}: referring segmentation",
                message=status.message,
                hardware_id="",
                values=[KeyValue(key=k, value=v) for k, v in status.values.items()],
            )
        ]
        self._diagnostics_pub.publish(msg)

    # ------------------------------------------------------------------ parameters at run time
    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        """`ros2 param set`: checked by the table in params.py, all or nothing, with the reason.

        Live settings apply at once (the models take theirs between two commands); the others are
        read at configure, so they may change only while the node is unconfigured.
        """
        new = {p.name: p.value for p in changes}
        state = self.state
        fixed = sorted(n for n in new if n in SPECS and not SPECS[n].live)
        if fixed and state != "unconfigured":
            name = self.get_fully_qualified_name()
            return SetParametersResult(
                successful=False,
                reason=(
                    f"{', '.join(fixed)}: read at configure; the node is {state}: ros2 lifecycle "
                    f"set {name} deactivate, then cleanup; set it; then configure and activate"
                ),
            )
        try:
            parameters = Parameters.from_values({**current_values(self), **new})
            segmenter = self._segmenter
            if segmenter is not None:
                try:
                    gradcam_layer_for(segmenter.vlp, parameters.segmenter.gradcam_layer)
                except ValueError as exc:
                    raise ParameterError(f"parameter {exc}") from None
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if state != "unconfigured":
            self._apply_live(parameters)
        self.get_logger().info(
            "parameters set: " + ", ".join(f"{k}={v!r}" for k, v in sorted(new.items()))
        )
        return SetParametersResult(successful=True)

    def _apply_live(self, parameters: Parameters) -> None:
        """Use new live settings: node limits now, the models' between two commands."""
        self.parameters = parameters
        self._normaliser = parameters.segmenter.normaliser_settings()
        for dropped in self._queue.resize(parameters.node.queue_size):
            self._fail(dropped, "dropped: queue_size was made smaller")

        def to_models() -> None:
            if self._segmenter is not None:
                self._segmenter.update_settings(parameters.segmenter)

        self._worker.call(to_models)

    # ------------------------------------------------------------------ models (worker thread)
    def _load_models(self) -> str | None:
        """Load the models; returns why not (also logged) or None when they are ready."""
        s = self.parameters.segmenter
        t0 = time.monotonic()
        try:
            from ..models.loading import quiet_transformers

            quiet_transformers()
            segmenter = Segmenter(s)
            parser = segmenter.warmup()
        except Exception as exc:  # noqa: BLE001 - any load failure becomes the answer to commands
            from ..models.loading import DeviceUnavailableError, ModelNotFoundError

            text = first_line(exc)
            if "iterprime download" not in text and not isinstance(exc, DeviceUnavailableError):
                text = f"{text}; {DOWNLOAD_HINT}"
            kind = (
                ""
                if isinstance(exc, (ModelLoadError, ModelNotFoundError))
                else f" ({type(exc).__name__})"
            )
            error = f"models not loaded{kind}: {text}"
            self.get_logger().error(error)
            return error
        self._segmenter = segmenter
        self._start_prefetch(segmenter)
        self.get_logger().info(
            f"models ready in {time.monotonic() - t0:.1f} s: vlp={s.vlp_model} "
            f"proposals={s.proposal_model} device={s.device} parser={parser}"
        )
        return None

    def _unload_models(self) -> None:
        """Drop the models and give their (GPU) memory back."""
        self._stop_prefetch()
        if self._segmenter is None:
            return
        self._segmenter = None
        import gc

        from ..models.loading import clear_model_cache

        clear_model_cache()  # also empties the CUDA cache
        gc.collect()

    def _track_proposals(self, rgb: Any) -> Any:
        """Track thread: the frame's mask proposals for re-association (one proposal pass)."""
        segmenter = self._segmenter
        if segmenter is None:
            raise RuntimeError("models are not loaded")
        return segmenter.frame_proposals(rgb)[0]

    # ------------------------------------------------------------------ prefetch (issue 17)
    def _start_prefetch(self, segmenter: Segmenter) -> None:
        """Prepare the latest camera frame while no command runs (parameter `prefetch`)."""
        self._stop_prefetch()
        if self.settings.prefetch == "off":
            return
        self._prefetcher = Prefetcher(
            segmenter,
            self.settings.prefetch,
            on_prepared=self._on_prepared,
            convert=self._prefetch_input,
            idle=lambda: len(self._queue) == 0 and not self._worker.busy,
        ).start()

    def _stop_prefetch(self) -> None:
        prefetcher, self._prefetcher, self._prepared = self._prefetcher, None, None
        if prefetcher is not None:
            prefetcher.stop(timeout=60.0)  # after the stage in flight

    def _prefetch_input(self, frame: Frame, _: Any) -> tuple[Any, Any]:
        """Prefetch thread: the camera frame as the models will see it, and its cache key."""
        msg, limit = frame.msg, self.settings.max_image_pixels
        if isinstance(msg, CompressedImage):  # as _process converts it
            rgb, _ = compressed_for_models(msg, limit)
        else:
            check_image(msg)
            rgb = rgb_for_models(msg, size_plan(msg, limit))
        return rgb, camera_frame_key(msg.header, rgb)

    def _on_prepared(self, frame: Frame, timings: dict[str, float]) -> None:
        self._prepared = frame

    def _image_for_command(self, latest: Frame) -> Frame:
        """The latest prefetched frame when it is recent enough, else the newest image (the
        camera itself must be alive: `max_image_age_s` is checked on the newest image).
        """
        prepared = self._prepared
        if prepared is None or self._prefetcher is None or prepared is latest:
            return latest
        new, old = latest.msg, prepared.msg
        if type(new) is not type(old) or new.header.frame_id != old.header.frame_id:
            return latest  # another camera: the prepared frame is not this view
        # a broken newest image is answered as such, never covered by an older good one
        if isinstance(new, Image):
            try:
                check_image(new)
            except (ImageConversionError, ValueError):
                return latest
            if (new.width, new.height) != (old.width, old.height):
                return latest
        elif not _decodes_like(new, old, self.settings.max_image_pixels):
            return latest
        age = (self.get_clock().now().nanoseconds - prepared.received_ns) / 1e9
        return prepared if age <= self.settings.prefetch_max_age_s else latest

    @property
    def models_ready(self) -> bool:
        return self._segmenter is not None

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Image) -> None:
        """Camera group: a new frame arrives (stored only; the worker converts what it uses)."""
        start = time.monotonic()
        now = self.get_clock().now().nanoseconds
        self._sensors.set_image(msg, now)
        self._tracking.on_image(msg, now)  # hands the frame over; the track thread does the work
        prefetcher = self._prefetcher
        if prefetcher is not None:  # keeps a reference only; converted in its own thread
            frame = self._sensors.latest_image()
            prefetcher.offer(frame, frame)
        self.image_stats.record(start, time.monotonic())

    def _on_command(self, msg: String) -> None:
        self._submit(msg.data, None)

    async def _on_segment(
        self, request: Segment.Request, response: Segment.Response
    ) -> Segment.Response:
        """Service: the request goes through the same queue as topic commands; awaiting leaves
        every executor thread free while the worker runs it.
        """
        future: Future = Future(executor=self.executor)
        # A done callback makes set_result (from the worker thread) wake the executor; without one
        # rclpy leaves this coroutine parked until some other event arrives.
        future.add_done_callback(lambda _f: None)
        self._submit(request.text, request.image, future.set_result)
        response.result = await future
        return response

    async def _execute_goal(self, goal_handle: Any) -> Any:
        """Action: the same queue as every command; feedback says the stage and IGRS pass."""
        goal = goal_handle.request
        future: Future = Future(executor=self.executor)
        future.add_done_callback(lambda _f: None)  # wakes the executor (see _on_segment)

        def feedback(stage: str, igrs_pass: int, place: int) -> None:
            msg = SegmentAction.Feedback(stage=stage, igrs_pass=igrs_pass, queue_position=place)
            goal_handle.publish_feedback(msg)

        key = bytes(goal_handle.goal_id.uuid)
        job = Job(0, goal.text, 0, 0.0, on_answer=future.set_result, feedback=feedback)
        job.cancelled = threading.Event()
        self._goals[key] = job
        try:
            self._submit(goal.text, goal.image, job=job)
            result = await future
        finally:
            self._goals.pop(key, None)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return SegmentAction.Result(result=result)

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        """A waiting goal is answered "cancelled" at once; a running one at its next stage.
        A cancel also ends the running track (README "Following the object").
        """
        self._tracking.cancel("cancelled (action goal cancelled)")
        job = self._goals.get(bytes(goal_handle.goal_id.uuid))
        if job is None or job.cancelled is None:
            return CancelResponse.REJECT
        job.cancelled.set()
        if self._queue.remove(job):
            self._fail(job, CANCELLED)
        return CancelResponse.ACCEPT

    def _submit(
        self,
        text: str,
        explicit_image: Image | None,
        on_answer: Callable[[Segmentation], None] | None = None,
        job: Job | None = None,
    ) -> None:
        """Answer at once what needs no model, else queue the command (one lock: ids in order)."""
        with self._submit_lock:
            self._submit_locked(text, explicit_image, on_answer, job)

    def _submit_locked(
        self,
        text: str,
        explicit_image: Image | None,
        on_answer: Callable[[Segmentation], None] | None,
        job: Job | None,
    ) -> None:
        command_id = self._next_id
        self._next_id += 1
        now = self.get_clock().now().nanoseconds
        if job is None:
            job = Job(command_id, text, now, time.monotonic(), on_answer=on_answer)
        else:  # made by the action, with its feedback and cancel hooks
            job.command_id, job.arrived_ns, job.arrived_mono = command_id, now, time.monotonic()
        self.get_logger().info(f"command {command_id}: {quote_command(text)}")
        # Failures known before any model work are answered at once, without queueing.
        # A spoken command is one sentence; longer text is refused at once, not queued (the
        # same rule as the offline replay: core/command.py).
        refusal = too_long(text)
        if refusal is not None:
            self._fail(job, refusal)
            return
        try:  # microseconds: empty, non-English or naming no object needs no image and no model
            normalise_command(text, self._normaliser)
        except CommandError as exc:
            self._fail(job, str(exc))
            return
        state = self.state
        waiting = self._starting or state == "activating"
        if state != "active" and not waiting:
            self._fail(job, self._not_answering())
            return
        if not self._enabled:
            self._fail(job, DISABLED.format(self.get_fully_qualified_name()))
            return
        if explicit_image is not None and _image_given(explicit_image):
            try:
                check_image(explicit_image)
                size_plan(explicit_image, self.settings.max_image_pixels)
            except (ImageConversionError, ImageTooLargeError, ValueError) as exc:
                self._fail(job, f"the request's image cannot be used: {exc}")
                return
            job.image, job.use_depth = explicit_image, False
        else:  # the camera image current on arrival
            error = self._pick_image(job)
            if error and not waiting:
                self._fail(job, error)
                return
            # a node still starting may have no (fresh) frame yet: picked when the models are ready
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        dropped_list = self._queue.put(job)
        if job.feedback is not None and job not in dropped_list:
            job.feedback("queued", 0, self._queue.position(job))
        for dropped in dropped_list:
            if dropped is job:  # the queue is closed: the node is shutting down
                self._fail(job, SHUTTING_DOWN)
            else:
                self._fail(
                    dropped,
                    f"dropped: queue full ({self._queue.maxsize} commands waiting); "
                    f"command {job.command_id} arrived after it",
                )

    def _pick_image(self, job: Job) -> str | None:
        """Give the job the latest camera image; returns why not (none yet, or too old)."""
        frame: Frame | None = self._sensors.latest_image()
        compressed = self.settings.image_transport == "compressed"
        topic = self.resolve_topic_name("image/compressed" if compressed else "image")
        if frame is None:
            return f"no image received on {topic} yet"
        now = self.get_clock().now().nanoseconds
        age = (now - frame.received_ns) / 1e9
        limit = self.settings.max_image_age_s
        if age > limit:
            return (
                f"no image newer than {limit:g} s on {topic} (the latest arrived {age:.1f} s ago)"
            )
        job.image = self._image_for_command(frame).msg
        return None

    def _not_answering(self) -> str:
        """Why a command cannot be run now, with what to do about it."""
        if self._closing:
            return SHUTTING_DOWN
        state = self.state
        if self._unavailable:
            return self._unavailable
        name = self.get_fully_qualified_name()
        if state == "unconfigured":
            return f"the node is unconfigured: ros2 lifecycle set {name} configure, then activate"
        if state == "finalized":
            return "the node has shut down (lifecycle finalized)"
        return f"the node is {state}: ros2 lifecycle set {name} activate"

    def _fail_waiting(self, error: str) -> None:
        for job in self._queue.drain():
            self._fail(job, error)

    # ------------------------------------------------------------------ answers (any thread)
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
        located: Located | None = None,
    ) -> None:
        """Publish the one answer to `job`: THE place a result leaves the node.

        Beside ~/result: ~/mask, ~/centroid and the standard outputs (outputs.py) from `located`,
        the answer's 3-D part.

        A second answer is dropped: silently for a command already answered "shutting down"
        whose model work ended afterwards, as a logged bug otherwise.
        """
        with self._answer_lock:
            if job.answered:
                if not self._closing:
                    self.get_logger().error(
                        f"command {job.command_id} answered twice; second answer dropped"
                    )
                return
            job.answered = True
            self._answered["succeeded" if result.success else "failed"] += 1
            if job.ran:
                self._latencies.add(result.latency_s)
            try:
                if mask is not None:
                    self._mask_pub.publish(mask)
                if centroid is not None:
                    self._centroid_pub.publish(centroid)
                self._result_pub.publish(result)
                self._outputs.publish(result, located)
            except Exception as exc:  # noqa: BLE001 - the context is gone (killed mid-shutdown)
                print(f"command {job.command_id}: result not published: {exc}", file=sys.stderr)
                return
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
                + (
                    f", ({result.centroid_target.point.x:.3f}, "
                    f"{result.centroid_target.point.y:.3f}, {result.centroid_target.point.z:.3f})"
                    f" m in {result.centroid_target.header.frame_id}"
                    if result.has_target_point and self._transformer is not None
                    else ""
                )
                + f" in {result.latency_s:.2f} s"
            )
        else:
            self.get_logger().warning(
                f"command {job.command_id} failed: {quote_command(result.error)}"
            )
        if not result.success:  # a new command that failed ends the running track too
            self._tracking.on_answer(job.command_id, job.text, result, None, None, False)
        if job.on_answer is not None:
            job.on_answer(result)

    # ------------------------------------------------------------------ model work (worker)
    def _process(self, job: Job) -> None:
        """Worker thread: run one command and answer it (the per-command work)."""
        segmenter = self._segmenter
        if segmenter is None:
            self._fail(job, self._not_answering() or "models are not loaded")
            return
        if job.image is None:  # arrived while the node was starting
            error = self._pick_image(job)
            if error:
                self._fail(job, error)
                return
        try:
            if isinstance(job.image, CompressedImage):
                rgb, sizes = compressed_for_models(job.image, self.settings.max_image_pixels)
            else:
                check_image(job.image)  # its own message first: encoding, empty, step, size
                sizes = size_plan(job.image, self.settings.max_image_pixels)
                rgb = rgb_for_models(job.image, sizes)
        except (ImageConversionError, ImageTooLargeError, ValueError) as exc:
            self._fail(job, f"cannot use the image: {exc}")
            return
        progress = None
        if job.feedback is not None or job.cancelled is not None:

            def progress(stage: str, igrs_pass: int) -> None:
                if job.cancelled is not None and job.cancelled.is_set():
                    raise CommandCancelled(CANCELLED)
                if job.feedback is not None:
                    job.feedback(stage, igrs_pass, 0)

        header = job.image.header
        key = camera_frame_key(header, rgb) if job.use_depth else None
        prefetcher = self._prefetcher
        try:
            if progress is not None:
                progress("started", 0)
            if prefetcher is not None:
                with prefetcher.command():  # no prefetch stage starts while this runs
                    model_result = segmenter.segment(
                        rgb, job.text, frame_id=key, progress=progress
                    )
            else:
                model_result = segmenter.segment(rgb, job.text, frame_id=key, progress=progress)
        except CommandCancelled:
            self._fail(job, CANCELLED)
            return
        job.ran = True
        result = result_at_source(model_result, sizes)
        located = None
        if result.success and result.mask is not None:
            located = (
                self._locate(job, result)
                if job.use_depth
                else Located(error="no depth for an image given with the request")
            )
        point = located.camera.centroid if located and located.camera else None
        msg = messages.segmentation(result, self._answer_info(job, point))
        msg.prefetched = bool(getattr(model_result, "prefetched", False))
        if msg.success and located is not None:
            fill_3d(msg, located)
        mask = msg.mask if msg.success else None
        if msg.success:  # follow the object from the next frame on; the track exists before
            # the answer leaves, so a client may cancel it as soon as it has the answer
            self._tracking.on_answer(
                job.command_id, job.text, result, job.image, None, job.use_depth
            )
        self._answer(job, msg, mask, messages.centroid_point(msg), located)
        self._publish_debug(rgb, model_result, msg.header)  # at the size the models saw

    def _locate(self, job: Job, result: Any) -> Located:
        """The answer's 3-D part: depth and camera_info matched to the image, the camera model,
        target_frame (spatial.py). Its failure is logged and kept in error_3d; 2-D stands.
        """
        s = self.settings
        header = job.image.header
        match = self._sensors.match(header, s.depth_sync_tolerance_s)
        transformer = self._transformer
        if transformer is not None:  # transform_timeout_s may have changed since configure
            transformer = FrameTransformer(
                transformer.buffer, transformer.target_frame, s.transform_timeout_s
            )
        located = locate(
            result.mask,
            result.grasp_point,
            header,
            match.depth,
            match.info,
            s.depth_erosion_px,
            s.image_rectified,
            transformer,
            match.reason,
        )
        if located.error and (self._sensors.has_depth or self._sensors.camera_info() is not None):
            what = "no 3-D centroid" if located.camera is None else "no 3-D in target_frame"
            self.get_logger().warning(f"command {job.command_id}: {what}: {located.error}")
        return located

    def _publish_debug(self, rgb: Any, result: Any, header: Header) -> None:
        """Heat map, mask, centroid and expression over the image; rendered only when someone
        listens.
        """
        if (
            self._closing
            or not self.settings.publish_debug_image
            or self._debug_pub.get_subscription_count() == 0
        ):
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
    @property
    def commands_received(self) -> int:
        with self._submit_lock:
            return self._next_id - 1

    def stats(self) -> str:
        """One line: commands received and answered, and the image callback figures."""
        received = self.commands_received
        with self._answer_lock:
            ok, failed = self._answered["succeeded"], self._answered["failed"]
        return (
            f"stats: {received} commands received, {ok + failed} answered ({ok} succeeded, "
            f"{failed} failed); "
            f"{self.image_stats.summary()}"
        )

    def close(self) -> None:
        """Ctrl-C / SIGTERM, while the context still works: every command not yet answered (the
        running one too) gets "shutting down". Later model work is dropped. Commands still in DDS
        are answered the same way as the executor takes them; log_stats() comes after those.
        """
        prefetcher = self._prefetcher
        if prefetcher is not None:
            prefetcher.stop(timeout=0.0)  # no new stage; the one in flight ends on its own
        with self._submit_lock:  # no command slips in between
            self._closing = True
            left = self._queue.close()
        self._tracking.close()
        running = self._worker.current
        for job in ([running] if running is not None else []) + left:
            self._fail(job, SHUTTING_DOWN)

    def log_stats(self) -> None:
        """The shutdown stats line, once every command that reached the node is answered."""
        line = self.stats()
        try:
            if not self.context.ok():  # /rosout is gone: the logger would complain about it
                raise RuntimeError("context shut down")
            self.get_logger().info(line)
        except Exception:  # noqa: BLE001 - stderr is always there
            print(
                f"[INFO] [{self.get_fully_qualified_name().lstrip('/').replace('/', '.')}]: "
                f"{line}",
                file=sys.stderr,
                flush=True,
            )

    def destroy_node(self) -> None:
        logs.unbridge(self._log_bridge)
        super().destroy_node()


def camera_frame_key(header: Header, rgb: Any) -> Any:
    """Frame-cache key of a camera image: its frame and stamp (None without a stamp: the pipeline
    hashes the pixels). The prefetcher and the commands must use the same key.
    """
    stamp = stamp_ns(header)
    return (header.frame_id, stamp, rgb.shape) if stamp > 0 else None


def _decodes_like(new: CompressedImage, old: CompressedImage, max_image_pixels: int) -> bool:
    """The newest compressed frame decodes, at the prepared frame's size (one decode: a few ms
    for a camera frame; a decompression bomb is refused from its header first).
    """
    try:
        _, sizes = compressed_for_models(new, max_image_pixels)
        before = check_bytes(np.asarray(old.data, np.uint8).tobytes(), max_image_pixels)
    except (ImageConversionError, ImageTooLargeError, ValueError):
        return False
    return before is None or (before.height, before.width) == (sizes.height, sizes.width)


def _image_given(image: Image) -> bool:
    """A request carries an image when any of its fields is set (an all-default one is none)."""
    return bool(image.width or image.height or image.encoding or image.step or len(image.data))


def usage() -> str:
    lines = [__doc__.strip(), "", "Parameters (config/segment.yaml; -p name:=value):"]
    for p in PARAMETERS:
        live = " [live]" if p.live else ""
        lines.append(
            f"  {p.name:<24} {p.description}{live}; {p.allowed} (default {p.ros_default()!r})"
        )
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
    # Our own signal handling: rclpy's would shut the context down before the commands still
    # waiting could be answered.
    from rclpy.signals import SignalHandlerOptions

    files = params_files(argv)
    try:
        for path in files:  # rcl would answer a malformed file with a traceback
            read_params_file(path)
    except ParameterError as exc:
        print(f"[FATAL] [{NODE_NAME}]: bad parameters: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = SegmenterNode()
        check_params_files(files, node.get_fully_qualified_name())  # every file, not the merge
    except ParameterError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"bad parameters: {exc}")
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        # Service responses of the last answers go out, and commands still in DDS are taken and
        # answered "shutting down": spin until none has come for 0.5 s (at most 3 s).
        start = quiet_since = time.monotonic()
        seen = node.commands_received
        try:
            while rclpy.ok() and time.monotonic() - quiet_since < 0.5:
                if time.monotonic() - start > 3.0:
                    break
                executor.spin_once(timeout_sec=0.05)
                if node.commands_received != seen:
                    seen, quiet_since = node.commands_received, time.monotonic()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        node.log_stats()  # after the flush: commands taken from DDS meanwhile were answered too
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
