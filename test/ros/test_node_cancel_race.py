"""A goal whose cancel the node accepted ends CANCELED, never ABORTED or SUCCEEDED, whatever the
timing.

Why: rclpy marks a goal as cancelling only after the node's cancel callback returns; a worker
that answers the goal in between (at its next stage boundary, or with its finished result) used
to end it ABORTED (or SUCCEEDED), though the client was told its cancel was accepted. The node
runs as its own process over DDS through test/race_node.py, which holds that window open after
every accepted cancel, so each race here is the losing case. Cancels are sent at every feedback
stage, from waiting in the queue to the last stage. Tiny random-weight models: plumbing only.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_harness import NodeProcess
from ros_helpers import spin_until

rclpy = pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from iterprime_ros.action import Segment as SegmentAction  # noqa: E402
from iterprime_ros.ros.commands import FEEDBACK_STAGES  # noqa: E402
from iterprime_ros.ros.conversions import rgb_to_fields  # noqa: E402
from iterprime_ros.ros.jobs import CANCELLED  # noqa: E402
from iterprime_ros.ros.messages import image_message  # noqa: E402
from iterprime_ros.srv import Segment  # noqa: E402

RACE_NODE = Path(__file__).resolve().parents[1] / "helpers" / "race_node.py"
RACES = 20
STATUS = {
    GoalStatus.STATUS_SUCCEEDED: "SUCCEEDED",
    GoalStatus.STATUS_CANCELED: "CANCELED",
    GoalStatus.STATUS_ABORTED: "ABORTED",
}


def picture(seed: int) -> Any:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(61, 81, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    msg = image_message(rgb_to_fields(np.ascontiguousarray(img[:480, :640])))
    msg.header.stamp.sec, msg.header.frame_id = 100 + seed, "camera_color_optical_frame"
    return msg


@pytest.fixture(scope="module")
def race_node(start_node):
    node = start_node("cancel_race", program=[str(RACE_NODE)])
    yield node
    node.stop()


@pytest.fixture(scope="module")
def client(race_node: NodeProcess):
    rclpy.init()
    node = rclpy.create_node("cancel_race_test")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    action = ActionClient(node, SegmentAction, f"{race_node.out}/segment")
    service = node.create_client(Segment, f"{race_node.out}/segment")
    assert action.wait_for_server(timeout_sec=120.0), race_node.log[-3000:]
    assert service.wait_for_service(timeout_sec=60.0)
    yield executor, action, service
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def _race(executor: Any, action: Any, service: Any, at: str, seed: int) -> tuple[bool, Any]:
    """Send a goal, cancel it when its feedback reaches `at`; (cancel accepted, final result)."""
    until = lambda predicate, timeout: spin_until(executor, predicate, timeout)  # noqa: E731
    ahead = None
    if at == "queued":  # a request runs ahead, so the goal waits in the queue
        ahead = service.call_async(Segment.Request(text="the red cup ahead", image=picture(99)))
    stages: list[str] = []
    goal = SegmentAction.Goal(text=f"the blue cup race {seed}", image=picture(seed))
    sent = action.send_goal_async(goal, lambda f: stages.append(f.feedback.stage))
    assert until(sent.done, 60.0) and sent.result().accepted
    handle = sent.result()
    result = handle.get_result_async()
    assert until(lambda: at in stages or result.done(), 120.0), stages
    cancel = handle.cancel_goal_async()
    assert until(cancel.done, 60.0) and until(result.done, 120.0)
    if ahead is not None:
        assert until(ahead.done, 120.0)
    return bool(cancel.result().goals_canceling), result.result()


def test_an_accepted_cancel_ends_canceled_whatever_the_timing(race_node, client):
    executor, action, service = client
    outcomes: list[tuple[str, bool, str, str]] = []
    for i in range(RACES):
        at = FEEDBACK_STAGES[i % len(FEEDBACK_STAGES)]
        accepted, res = _race(executor, action, service, at, i)
        status = STATUS.get(res.status, str(res.status))
        outcomes.append((at, accepted, status, res.result.result.error))
    counts = Counter((accepted, status) for _, accepted, status, _ in outcomes)
    print(f"\n  {RACES} races, (cancel accepted, goal status): {dict(counts)}")
    for at in FEEDBACK_STAGES:
        print(f"  cancel at {at:15s}", [o[1:3] for o in outcomes if o[0] == at])
    for i, (at, accepted, status, error) in enumerate(outcomes):
        where = f"race {i} (cancel at {at}): accepted={accepted} {status} {error!r}"
        if accepted or error == CANCELLED:  # the node acted on the cancel: both sides agree
            assert accepted and status == "CANCELED" and error == CANCELLED, where
        else:  # the answer came first: the cancel is refused and the goal ends as answered
            assert status in ("SUCCEEDED", "ABORTED"), where
    assert sum(o[1] for o in outcomes) >= RACES // 2, outcomes  # the races were run
    log = race_node.log
    assert "answered twice" not in log and "Traceback" not in log, log[-3000:]
