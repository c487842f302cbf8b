"""A signal at any moment ends the node's process with exit code 0, every command answered.

Why: a supervisor (launch respawn, systemd) reads the exit code; an abort (exit -6, "terminate
called without an active exception": a thread still inside the models when the interpreter
exits) looks like a crash even though every command was answered. The node runs as its own
process over DDS (node_harness.NodeProcess) on tiny random-weight models (plumbing only). Each
run sends SIGINT or SIGTERM at one moment: during the autostart's activate transition, idle,
mid-command at a feedback stage (started, proposals, igrs) with requests waiting behind it, and
while a 4000 x 3000 service request is converted. Nodes start five at a time to keep the wall
time down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from node_harness import NodeProcess, tiny_params
from ros_helpers import spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from iterprime_ros.action import Segment as SegmentAction  # noqa: E402
from iterprime_ros.ros.conversions import rgb_to_fields  # noqa: E402
from iterprime_ros.ros.main import SHUTDOWN_BOUND_S  # noqa: E402
from iterprime_ros.ros.messages import image_message  # noqa: E402
from iterprime_ros.srv import Segment  # noqa: E402

MOMENTS = ("transition", "idle", "started", "proposals", "igrs", "huge")
RUNS = 20
BATCH = 5
START_TIMEOUT_S = 240.0  # five nodes starting at once on a loaded machine
# The node's own bound on its waits, plus the process's teardown: about a second on an idle
# machine, up to 27 s measured here at a load average of 15-25 on 2 cores.
EXIT_LIMIT_S = SHUTDOWN_BOUND_S + 45.0


def picture(h: int, w: int, seed: int) -> Any:
    """A picture of its own (seed): the frame cache never skips a stage for it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = np.ascontiguousarray(small.repeat(8, 0).repeat(8, 1)[:h, :w])
    msg = image_message(rgb_to_fields(img))
    msg.header.stamp.sec, msg.header.frame_id = 5 + seed, "camera_color_optical_frame"
    return msg


@dataclass
class Run:
    """One node process, the moment it gets its signal, and what it answered."""

    index: int
    moment: str
    sig: signal.Signals
    proc: NodeProcess
    futures: list[Any] = field(default_factory=list)  # service responses and the goal's result
    stages: list[str] = field(default_factory=list)
    signalled_at: float | None = None
    exited_at: float | None = None
    waiter: threading.Thread | None = None
    rc: int | None = None
    exit_s: float | None = None

    def signal(self) -> None:
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
            os.kill(self.proc.pid, self.sig)
            self.waiter = threading.Thread(target=self._wait, daemon=True)
            self.waiter.start()

    def _wait(self) -> None:
        """The exit's own time, whatever the test is busy with meanwhile."""
        try:
            self.proc.proc.wait(timeout=EXIT_LIMIT_S + 60.0)
        except subprocess.TimeoutExpired:
            return
        self.exited_at = time.monotonic()

    def logged(self, text: str) -> bool:
        return text in self.proc.log


@pytest.fixture(scope="module")
def client():
    rclpy.init()
    node = rclpy.create_node("signal_exit_test")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def _drive(run: Run, node: Any, executor: Any) -> None:
    """Bring the run to its moment and send the signal."""
    until = lambda predicate, timeout: spin_until(executor, predicate, timeout)  # noqa: E731
    if run.moment == "transition":  # configured, the models loading in activate
        assert until(lambda: run.logged("configured"), START_TIMEOUT_S), run.proc.log
        run.signal()
        return
    service = node.create_client(Segment, f"{run.proc.out}/segment")
    action = ActionClient(node, SegmentAction, f"{run.proc.out}/segment")
    assert until(lambda: run.logged("models ready"), START_TIMEOUT_S), run.proc.log[-3000:]
    assert service.wait_for_service(timeout_sec=60.0) and action.wait_for_server(60.0)
    if run.moment == "idle":
        run.signal()
        return
    if run.moment == "huge":
        big = picture(3000, 4000, 0)
        run.futures.append(service.call_async(Segment.Request(text="the red cup", image=big)))
        assert until(lambda: run.logged("command 1:"), 120.0), run.proc.log[-3000:]
        run.signal()  # the request is in the node: converted, then run
        return
    for i in range(2):  # work running ahead of the goal, and beside it
        request = Segment.Request(text=f"the red cup number {i}", image=picture(480, 640, i))
        run.futures.append(service.call_async(request))
    # both requests in the node before the goal (DDS keeps no order between the two doors)
    assert until(lambda: run.logged("command 2:"), 120.0), run.proc.log[-3000:]

    def feedback(msg: Any) -> None:
        run.stages.append(msg.feedback.stage)
        if run.moment in run.stages and len(run.futures) == 3:
            run.signal()  # at the stage, from the callback: no spin in between

    goal = SegmentAction.Goal(text="the blue cup", image=picture(480, 640, 2))
    sent = action.send_goal_async(goal, feedback_callback=feedback)
    assert until(sent.done, 120.0) and sent.result().accepted
    run.futures.append(sent.result().get_result_async())
    if run.moment in run.stages:
        run.signal()
    assert until(lambda: run.signalled_at is not None, 120.0), (run.stages, run.proc.log[-3000:])


def _finish(run: Run, executor: Any) -> None:
    """Wait for the exit (taking the answers meanwhile) and note its code and time."""
    spin_until(executor, lambda: run.exited_at is not None, EXIT_LIMIT_S + 60.0)
    if run.exited_at is not None:
        run.rc = run.proc.proc.returncode
        run.exit_s = run.exited_at - run.signalled_at
    spin_until(executor, lambda: all(f.done() for f in run.futures), 10.0)


def test_a_signal_at_any_moment_exits_0_with_every_command_answered(
    client, tiny_model_dirs, tmp_path_factory
):
    node, executor = client
    folder = tmp_path_factory.mktemp("signal_exit")
    runs: list[Run] = []
    for start in range(0, RUNS, BATCH):
        batch = [
            Run(
                i,
                MOMENTS[i % len(MOMENTS)],
                (signal.SIGINT, signal.SIGTERM)[i % 2],
                NodeProcess(f"sig_exit_{i}", tiny_params(tiny_model_dirs), folder),
            )
            for i in range(start, min(start + BATCH, RUNS))
        ]
        try:
            for run in batch:
                _drive(run, node, executor)
            for run in batch:
                _finish(run, executor)
        finally:
            for run in batch:
                run.proc.stop(timeout=5.0)  # only a node that did not exit is killed
        runs += batch
    codes = Counter(run.rc for run in runs)
    slowest = max((run.exit_s or 0.0) for run in runs)
    print(f"\n  {RUNS} signals: exit codes {dict(codes)}; slowest exit {slowest:.1f} s after")
    for run in runs:
        took = f"{run.exit_s:.1f} s" if run.exit_s is not None else "no exit"
        print(f"  {run.index:2d} {run.moment:10s} {run.sig.name:7s} rc={run.rc} {took}")
    for run in runs:
        log = run.proc.log
        where = f"run {run.index} ({run.moment}, {run.sig.name}):\n{log[-3000:]}"
        assert run.rc == 0, where
        assert "terminate called" not in log and "Traceback" not in log, where
        assert run.exit_s <= EXIT_LIMIT_S, where
        assert all(f.done() for f in run.futures), "every request answered: " + where
        stats = run.proc.stats()
        assert stats["commands_received"] == stats["answered"] == len(run.futures), where
