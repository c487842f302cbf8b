"""The prefetch rule in the node (ros/frames.py with iterprime_ros/prefetch.py), over real DDS with
the node as its own process and the tiny random-weight models (plumbing only).

A camera streams one scene (new stamps, the same pixels): the node prepares it once and skips
the rest as the same scene; a command then runs on the prepared frame, and the result, the log
and /diagnostics say so and how old the frame was.
"""

from __future__ import annotations

import pytest
from node_harness import Harness, NodeProcess, tiny_params
from test_node_prefetch import TIMEOUT, image_msg

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402


def test_a_still_scene_is_prepared_once_and_the_answer_says_how_old(tiny_model_dirs, tmp_path):
    node = NodeProcess(
        "prefetch_rule",
        tiny_params(
            tiny_model_dirs,
            prefetch="latest",
            prefetch_min_interval_s=0.0,
            prefetch_cpu_share=1.0,
            diagnostics_period_s=0.5,
        ),
        tmp_path,
    )
    h = None
    statuses: list[dict[str, str]] = []
    try:
        rclpy.init()
        h = Harness(rclpy, node, "prefetch_rule_test")

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name.startswith(node.out + ":"):
                    statuses.append({kv.key: kv.value for kv in status.values})

        h.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        h.wait_ready()
        h.restamp = True  # every published image is a new frame of the same scene
        h.show(image_msg())
        assert h.until(
            lambda: any(int(s.get("frames skipped (same scene)", 0)) >= 3 for s in statuses),
            TIMEOUT,
        ), f"{statuses[-1:]}\n{node.log[-3000:]}"
        last = statuses[-1]
        assert last["prefetch"] in ("idle", "preparing") and int(last["frames prepared"]) >= 1
        assert float(last["prepared frame age (s)"]) >= 0.0
        result = h.command("the red cup", timeout=TIMEOUT)
        assert result.success and result.prefetched, result.error
        assert result.frame_age_s > 0.0  # the prepared frame, older than the newest image
    finally:
        if h is not None:
            h.close()
            rclpy.shutdown()
        log = node.stop()
    assert "prefetch: frame prepared" in log
    assert "frame prepared (prepared)" in log, log[-2000:]
