"""Command intake: the `command` topic, the ~/segment service and action, the refusals answered
at once, the queue, and cancel.

Why one room for the three doors: a command is the same thing whichever way it came, so it gets
the same id sequence, the same refusals (too long, not English, naming no object, the node not
active or disabled, no fresh image) and the same queue. What needs no model is answered here
at once, without queueing; the rest waits for the worker (processing.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import String

from iterprime_ros.action import Segment as SegmentAction
from iterprime_ros.msg import Segmentation
from iterprime_ros.srv import Segment

from ..core.command import CommandError, normalise_command, too_long
from ..image_size import ImageTooLargeError
from .conversions import ImageConversionError, check_image
from .dialogue import may_be_reply
from .jobs import CANCELLED, SHUTTING_DOWN, Job, quote_command
from .sizing import size_plan

# Commands are tiny and must not be lost: the subscription keeps every command DDS delivered
# until the executor takes it (a burst of 1000 arrives whole). The sender must be reliable too
# (README "ROS 2 interface": the QoS a voice front end uses).
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
# The feedback stages of the ~/segment action, in the order a goal goes through them: intake
# sends "queued", the worker "started", the pipeline the rest ("igrs" once per IGRS text pass).
# action/Segment.action's comment names the same list (a test compares the two).
FEEDBACK_STAGES = ("queued", "started", "proposals", "image_encoding", "igrs", "selection")
# How long a goal whose cancel this node accepted waits for rclpy to mark it cancelling (rclpy
# does so just after the cancel callback returns) before it can end CANCELED.
CANCEL_MARK_WAIT_S = 2.0
DISABLED = (
    "the node is disabled: ros2 service call {}/enable std_srvs/srv/SetBool '{{data: true}}'"
)


def _image_given(image: Image) -> bool:
    """A request carries an image when any of its fields is set (an all-default one is none)."""
    return bool(image.width or image.height or image.encoding or image.step or len(image.data))


def _cancel_marked(goal_handle: Any) -> bool:
    """Wait (briefly) until rclpy has marked the goal cancelling, which it does right after this
    node's cancel callback accepted it; only a cancelling goal may end CANCELED. The worker may
    answer inside that gap, so without the wait such a goal would end ABORTED.
    """
    end = time.monotonic() + CANCEL_MARK_WAIT_S
    while not goal_handle.is_cancel_requested:
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


class Commands:
    """The node's three doors for commands, and the id counter they share."""

    def __init__(self, node: Any, command_group: Any, request_group: Any) -> None:
        self.node = node
        self._submit_lock = threading.Lock()  # ids are given in queue order
        self._next_id = 1
        self._goals: dict[bytes, Job] = {}  # goal id -> its job, while it has no answer
        node.create_subscription(
            String, "command", self.on_command, COMMAND_QOS, callback_group=command_group
        )
        node.create_service(Segment, "~/segment", self.on_segment, callback_group=request_group)
        self.action = ActionServer(
            node,
            SegmentAction,
            "~/segment",
            execute_callback=self.execute_goal,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=self.on_cancel,
            callback_group=request_group,
        )

    @property
    def received(self) -> int:
        """Commands received so far (every one gets an id, refused or not)."""
        with self._submit_lock:
            return self._next_id - 1

    # ------------------------------------------------------------------ the three doors
    def on_command(self, msg: String) -> None:
        self.submit(msg.data, None)

    async def on_segment(
        self, request: Segment.Request, response: Segment.Response
    ) -> Segment.Response:
        """Service: the request goes through the same queue as topic commands; awaiting leaves
        every executor thread free while the worker runs it.
        """
        future: Future = Future(executor=self.node.executor)
        # A done callback makes set_result (from the worker thread) wake the executor; without one
        # rclpy leaves this coroutine parked until some other event arrives.
        future.add_done_callback(lambda _f: None)
        self.submit(request.text, request.image, future.set_result)
        response.result = await future
        return response

    async def execute_goal(self, goal_handle: Any) -> Any:
        """Action: the same queue as every command; feedback says the stage and IGRS pass."""
        goal = goal_handle.request
        future: Future = Future(executor=self.node.executor)
        future.add_done_callback(lambda _f: None)  # wakes the executor (see on_segment)

        def feedback(stage: str, igrs_pass: int, place: int) -> None:
            msg = SegmentAction.Feedback(stage=stage, igrs_pass=igrs_pass, queue_position=place)
            goal_handle.publish_feedback(msg)

        key = bytes(goal_handle.goal_id.uuid)
        job = Job(0, goal.text, 0, 0.0, on_answer=future.set_result, feedback=feedback)
        job.cancelled = threading.Event()
        self._goals[key] = job
        try:
            self.submit(goal.text, goal.image, job=job)
            result = await future
        finally:
            self._goals.pop(key, None)
        if job.cancelled.is_set() and _cancel_marked(goal_handle):
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return SegmentAction.Result(result=result)

    def on_cancel(self, goal_handle: Any) -> CancelResponse:
        """A waiting goal is answered "cancelled" at once; a running one at its next stage.
        A cancel also ends the running track (README "Following the object").

        Accepted only while the goal has no answer (under the answers' lock); once accepted, the
        goal ends CANCELED whatever the worker does next (answers.py turns a late success into
        "cancelled", execute_goal waits for rclpy's cancelling mark).
        """
        self.node.tracking.cancel("cancelled (action goal cancelled)")
        job = self._goals.get(bytes(goal_handle.goal_id.uuid))
        if job is None or job.cancelled is None:
            return CancelResponse.REJECT
        answers = self.node.answers
        with answers.lock:  # a cancel is accepted only before the answer; then it must win
            if job.answered:
                return CancelResponse.REJECT
            job.cancelled.set()
        if self.node.queue.remove(job):
            answers.fail(job, CANCELLED)
        return CancelResponse.ACCEPT

    # ------------------------------------------------------------------ intake
    def submit(
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
        node, fail = self.node, self.node.answers.fail
        command_id = self._next_id
        self._next_id += 1
        now = node.get_clock().now().nanoseconds
        if job is None:
            job = Job(command_id, text, now, time.monotonic(), on_answer=on_answer)
        else:  # made by the action, with its feedback and cancel hooks
            job.command_id, job.arrived_ns, job.arrived_mono = command_id, now, time.monotonic()
        node.get_logger().info(f"command {command_id}: {quote_command(text)}")
        # Failures known before any model work are answered at once, without queueing.
        # A spoken command is one sentence; longer text is refused at once, not queued (the
        # same rule as the offline replay: core/command.py).
        refusal = too_long(text)
        if refusal is not None:
            fail(job, refusal)
            return
        try:  # microseconds: empty, non-English or naming no object needs no image and no model
            # kept on the job: the pipeline takes it as is and never normalises the command again
            job.expression = normalise_command(text, node.normaliser)
        except CommandError as exc:
            if not may_be_reply(text):  # "no, the other one" names no object: a reply does not
                fail(job, str(exc))
                return
        state = node.state
        waiting = node.starting or state == "activating"
        if state != "active" and not waiting:
            fail(job, self.not_answering())
            return
        if not node.enabled:
            fail(job, DISABLED.format(node.get_fully_qualified_name()))
            return
        if explicit_image is not None and _image_given(explicit_image):
            try:
                check_image(explicit_image)
                size_plan(explicit_image, node.settings.max_image_pixels)
            except (ImageConversionError, ImageTooLargeError, ValueError) as exc:
                fail(job, f"the request's image cannot be used: {exc}")
                return
            job.image, job.use_depth = explicit_image, False
        else:  # the camera image current on arrival
            error = node.frames.pick(job)
            if error and not waiting:
                fail(job, error)
                return
            # a node still starting may have no (fresh) frame yet: picked when the models are ready
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        queue, fail = self.node.queue, self.node.answers.fail
        dropped_list = queue.put(job)
        if job.feedback is not None and job not in dropped_list:
            job.feedback("queued", 0, queue.position(job))
        for dropped in dropped_list:
            if dropped is job:  # the queue is closed: the node is shutting down
                fail(job, SHUTTING_DOWN)
            else:
                fail(
                    dropped,
                    f"dropped: queue full ({queue.maxsize} commands waiting); "
                    f"command {job.command_id} arrived after it",
                )

    def close(self) -> list[Job]:
        """No command slips in any more; returns the waiting ones (to be answered)."""
        with self._submit_lock:
            self.node.closing = True
            return self.node.queue.close()

    # ------------------------------------------------------------------ refusals
    def not_answering(self) -> str:
        """Why a command cannot be run now, with what to do about it."""
        node = self.node
        if node.closing:
            return SHUTTING_DOWN
        state = node.state
        if node.unavailable:
            return node.unavailable
        name = node.get_fully_qualified_name()
        if state == "unconfigured":
            return f"the node is unconfigured: ros2 lifecycle set {name} configure, then activate"
        if state == "finalized":
            return "the node has shut down (lifecycle finalized)"
        return f"the node is {state}: ros2 lifecycle set {name} activate"

    def fail_waiting(self, error: str) -> None:
        """Answer every waiting command with `error` (deactivate, cleanup, disable, shutdown)."""
        for job in self.node.queue.drain():
            self.node.answers.fail(job, error)
