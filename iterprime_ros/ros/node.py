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

    ros2 run iterprime_ros segmenter --ros-args --params-file config/segment.yaml -r image:=/camera/image
    iterprime-node --ros-args ...        (the same, installed with pip)
    ros2 lifecycle set /iterprime_segmenter deactivate
    ros2 lifecycle set /iterprime_segmenter configure     (with -p autostart:=false; then activate)
"""  # noqa: E501 - the usage lines are commands to copy whole

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from typing import Any, Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from std_srvs.srv import SetBool

from ..pipeline import ModelLoadError, gradcam_layer_for
from . import diagnostics, logs
from .answers import OUTPUT_QOS, Answers
from .commands import DISABLED, Commands
from .dialogue import Dialogue
from .frames import Frames
from .health import Health
from .jobs import SHUTTING_DOWN, ImageStats, Job, first_line
from .main import run
from .names import NODE_NAME
from .params import (
    SPECS,
    ParameterError,
    Parameters,
    current_values,
    declare_and_read,
)
from .processing import ModelWork, check_models
from .track_output import NodeTracking
from .transforms import FrameTransformer, TransformSetupError, frame_transformer
from .worker import JobQueue, Worker


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
    """The wiring of the node's rooms, its lifecycle transitions, ~/enable and live parameters.

    The rooms: commands.py takes commands in (topic, service, action) and refuses what needs no
    model; processing.py runs one command on the worker thread; answers.py is the one place a
    result leaves; frames.py turns camera messages into model input; health.py reports. A
    transition only hands off to them. Parameters are rows of the table in params.py.
    """

    def __init__(self, transform_buffer: Any = None, **node_kwargs: Any) -> None:
        """transform_buffer: a tf2-style buffer from embedding code (else tf2_ros at configure)."""
        Node.__init__(self, NODE_NAME, **node_kwargs)
        self._transform_buffer = transform_buffer
        self.transformer: FrameTransformer | None = None  # set at configure when target_frame
        self._tf_listener: Any = None
        lifecycle_group = MutuallyExclusiveCallbackGroup()
        # Topic commands one at a time, in the order DDS delivered them; service and action
        # requests may wait on their answers side by side (an awaiting request holds its group).
        command_group = MutuallyExclusiveCallbackGroup()
        request_group = ReentrantCallbackGroup()
        LifecycleNodeMixin.__init__(self, callback_group=lifecycle_group)
        self._log_bridge = logs.bridge(self.get_logger())  # pipeline/worker/loading logs
        self.parameters: Parameters = declare_and_read(self)  # ParameterError: main() exits 2
        self._state_lock = threading.Lock()
        self._state = "unconfigured"  # this node's view of the lifecycle state
        self.starting = self.parameters.node.autostart  # commands wait for the autostart
        self.unavailable: str | None = None  # why the last configure/activate failed
        self.closing = False
        self.enabled = True
        self.normaliser = self.parameters.segmenter.normaliser_settings()

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.answers = Answers(self)
        self.frames = Frames(self, MutuallyExclusiveCallbackGroup())
        self.models = ModelWork(self)
        self.dialogue = Dialogue()  # every command's answer, replies and corrections
        self.tracking = NodeTracking(  # ~/track, ~/cancel_track (track_output.py)
            self,
            lambda: self.settings,
            self.frames.sensors,
            self.answers.mask_pub,
            self.answers.centroid_pub,
            OUTPUT_QOS,
            proposals=self.models.track_proposals,
            callback_group=request_group,
        )
        self.answers.tracking = self.tracking
        self.queue: JobQueue[Job] = JobQueue(self.parameters.node.queue_size)
        self.queue.hold()  # nothing runs before the node is active
        models = self.models
        self.worker: Worker[Job] = Worker(self.queue, models.process, models.on_job_error)
        self.commands = Commands(self, command_group, request_group)
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=request_group)
        self.health = Health(self)
        self.worker.start()
        self._log_listening()
        if self.starting:
            self._autostart_timer = self.create_timer(
                0.0, self._autostart, callback_group=lifecycle_group
            )

    def _log_listening(self) -> None:
        s = self.parameters.node
        self.get_logger().info(
            f"listening: image={self.resolve_topic_name('image')} "
            f"command={self.resolve_topic_name('command')} "
            f"depth={self.resolve_topic_name('depth')} "
            f"camera_info={self.resolve_topic_name('camera_info')}; "
            f"queue_size={s.queue_size} max_image_age_s={s.max_image_age_s:g}; "
            + (
                "configuring and activating (autostart)"
                if self.starting
                else "unconfigured: waiting for a lifecycle manager (autostart false)"
            )
        )

    @property
    def settings(self) -> Any:
        """The node-only settings (params.NodeSettings) in force now."""
        return self.parameters.node

    @property
    def state(self) -> str:
        with self._state_lock:
            return self._state

    def _set_state(self, state: str) -> None:
        """Record a lifecycle state; each one also ends the conversation, so a reply after any
        transition is never resolved against a question asked before it.
        """
        with self._state_lock:
            self._state = state
        self.dialogue.reset(f"lifecycle: {state}")

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        """Lifecycle group, once: configure and activate, as a lifecycle manager would."""
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        try:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        finally:
            self.starting = False
            if self.state != "active":
                self.commands.fail_waiting(self.commands.not_answering())

    @_logged_transition
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters (as they are now), check the model folders and create the
        frame transformer for target_frame (cleanup destroys it).

        SUCCESS leads to inactive; FAILURE (a bad parameter, a wrong model folder, no tf2 for
        target_frame: the reason is logged and answers commands) back to unconfigured; ERROR (an
        unexpected exception) to on_error.
        """
        self._set_state("configuring")
        try:
            parameters = Parameters.from_values(current_values(self))
            self._create_transformer(parameters)
            check_models(parameters)
        except (ParameterError, ModelLoadError, TransformSetupError) as exc:
            self.unavailable = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._destroy_transformer()
            self._set_state("unconfigured")
            return TransitionCallbackReturn.FAILURE
        self.parameters = parameters
        self.normaliser = parameters.segmenter.normaliser_settings()
        for dropped in self.queue.resize(parameters.node.queue_size):
            self.answers.fail(dropped, "dropped: queue_size was made smaller")
        self.unavailable = None
        self._set_state("inactive")
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def _create_transformer(self, parameters: Parameters) -> None:
        """target_frame: a tf2 buffer (or the embedder's); TransformSetupError says why not."""
        node = parameters.node
        self.transformer, self._tf_listener = frame_transformer(
            self, node.target_frame, node.transform_timeout_s, self._transform_buffer
        )
        if self.transformer is not None:
            self.get_logger().info(f"3-D outputs in {node.target_frame!r} (tf2 at image stamps)")

    def _destroy_transformer(self) -> None:
        unregister = getattr(self._tf_listener, "unregister", None)  # tf2_ros's listener
        if unregister is not None:
            unregister()
        self.transformer, self._tf_listener = None, None

    @_logged_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the camera, load the models (on the worker thread), start answering.

        SUCCESS leads to active; FAILURE (the models did not load: the reason is logged and
        answers commands; the camera subscriptions are dropped again) back to inactive; ERROR to
        on_error.
        """
        self._set_state("activating")
        self.frames.subscribe()
        error = self.worker.run(self.models.load, SHUTTING_DOWN)
        if error is not None:
            self.unavailable = error
            self.frames.unsubscribe()
            self._set_state("inactive")
            if not self.starting:
                self.commands.fail_waiting(error)
            return TransitionCallbackReturn.FAILURE
        self.unavailable = None
        self._set_state("active")
        self.queue.release()
        return super().on_activate(state)

    @_logged_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop answering: waiting commands fail; the running one finishes; the models go.

        SUCCESS leads to inactive (it never returns FAILURE); ERROR to on_error.
        """
        self._set_state("deactivating")
        self.queue.hold()
        self.commands.fail_waiting("the node was deactivated before this command ran")
        self.tracking.cancel("the node was deactivated")
        self.frames.unsubscribe()
        self.worker.run(self.models.unload)  # after the running command
        self._set_state("inactive")
        self.get_logger().info("deactivated: models unloaded")
        return super().on_deactivate(state)

    @_logged_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Undo configure: waiting commands fail and the frame transformer goes.

        SUCCESS leads to unconfigured (it never returns FAILURE); ERROR to on_error.
        """
        self.commands.fail_waiting("the node was cleaned up before this command ran")
        self._destroy_transformer()
        self._set_state("unconfigured")
        return super().on_cleanup(state)

    @_logged_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Answer everything pending with "shutting down", free the models.

        SUCCESS leads to finalized (as FAILURE would; it never returns FAILURE); ERROR to
        on_error.
        """
        self._set_state("finalized")
        self.queue.hold()
        self.commands.fail_waiting(SHUTTING_DOWN)
        self.frames.unsubscribe()
        self.worker.run(self.models.unload)
        return super().on_shutdown(state)

    @_logged_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: answer what waits, free the models, start over.

        SUCCESS (always) leads to unconfigured, from where configure may be tried again; FAILURE
        would lead to finalized; an exception here too leads to finalized.
        """
        self.get_logger().error(f"lifecycle error while {state.label}; back to unconfigured")
        self.queue.hold()
        self.commands.fail_waiting("the node hit an error")
        self.frames.unsubscribe()
        self.worker.run(self.models.unload)
        self._set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ enable
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        """~/enable: pause answering without tearing anything down (models stay loaded)."""
        self.enabled = bool(request.data)
        if not self.enabled:
            self.commands.fail_waiting(DISABLED.format(self.get_fully_qualified_name()))
        response.success = True
        response.message = "enabled" if self.enabled else "disabled: commands are refused"
        self.get_logger().info(f"~/enable: {response.message}")
        return response

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
            segmenter = self.models.segmenter
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
        self.normaliser = parameters.segmenter.normaliser_settings()
        for dropped in self.queue.resize(parameters.node.queue_size):
            self.answers.fail(dropped, "dropped: queue_size was made smaller")
        self.worker.call(lambda: self.models.update_settings(parameters))

    # ------------------------------------------------------------------ reports and shutdown
    @property
    def models_ready(self) -> bool:
        return self.models.segmenter is not None

    @property
    def image_stats(self) -> ImageStats:
        return self.frames.image_stats

    @property
    def commands_received(self) -> int:
        return self.commands.received

    def snapshot(self) -> diagnostics.Snapshot:
        """The figures /diagnostics reports (also handy in tests)."""
        return self.health.snapshot()

    def stats(self) -> str:
        """One line: commands received and answered, and the image callback figures."""
        return self.health.stats()

    def log_stats(self) -> None:
        """The shutdown stats line, once every command that reached the node is answered."""
        self.health.log_stats()

    def close(self) -> None:
        """Ctrl-C / SIGTERM, while the context still works: every command not yet answered (the
        running one too) gets "shutting down". Later model work is dropped. Commands still in DDS
        are answered the same way as the executor takes them; log_stats() comes after those.
        """
        prefetcher = self.frames.prefetcher
        if prefetcher is not None:
            prefetcher.stop(timeout=0.0)  # no new stage; the one in flight ends on its own
        left = self.commands.close()
        running = self.worker.current
        for job in ([running] if running is not None else []) + left:
            self.answers.fail(job, SHUTTING_DOWN)
        self.tracking.close()  # after the answers: it may wait for a proposal pass in flight

    def stop_threads(self, timeout: float) -> list[str]:
        """After close(): wait up to `timeout` s in all for the worker and the prefetcher to end
        their stage in flight; returns the names of the threads still running.

        Why: a thread still inside the models when the interpreter exits is killed mid-call by
        the C++ runtime's exit, and the process aborts instead of exiting 0.
        """
        end = time.monotonic() + timeout
        self.worker.stop(timeout)
        prefetcher = self.frames.prefetcher
        self.frames.stop_prefetch(max(0.0, end - time.monotonic()))
        threads = [self.worker.thread, self.tracking.loop.thread]
        running = [t.name for t in threads if t.is_alive()]
        return running + (["iterprime-prefetch"] if prefetcher and prefetcher.running else [])

    def destroy_node(self) -> None:
        logs.unbridge(self._log_bridge)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the node (exit 2 on a bad parameter). The programs start it through entry.py, which
    installs the signal handlers before this module's imports and re-executes with jemalloc.
    """
    if args is None:  # `python -m iterprime_ros.ros.node`: as entry.py would
        from ..jemalloc import maybe_reexec

        maybe_reexec()
    run(lambda: SegmenterNode(), sys.argv if args is None else args, __doc__ or "")


if __name__ == "__main__":
    main()
