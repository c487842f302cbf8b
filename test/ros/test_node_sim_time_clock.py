"""With use_sim_time and no /clock, a command is refused with a message naming the missing clock.

Why: under sim time the node's clock reads 0 until the first /clock message, so every frame
"arrived" at 0 and the image-age rule (max_image_age_s) would pass a frame of any age. The node
runs as its own process over DDS; once /clock runs, the same command is answered on the camera
frame. Tiny random-weight models: plumbing only.
"""

from __future__ import annotations

import numpy as np
import pytest
from node_harness import Harness

rclpy = pytest.importorskip("rclpy")
from rclpy.time import Time  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from iterprime_ros.ros.conversions import rgb_to_fields  # noqa: E402
from iterprime_ros.ros.messages import image_message  # noqa: E402


def picture(sec: int) -> object:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(31, 41, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    msg = image_message(rgb_to_fields(np.ascontiguousarray(img[:240, :320])))
    msg.header.stamp.sec, msg.header.frame_id = sec, "camera_color_optical_frame"
    return msg


@pytest.fixture(scope="module")
def sim_node(start_node):
    node = start_node("sim_clock", {"use_sim_time": True})
    yield node
    node.stop()


def test_no_clock_refuses_with_the_reason_then_the_clock_makes_it_work(sim_node):
    rclpy.init()
    h = Harness(rclpy, sim_node, "sim_clock_test")
    try:
        h.wait_ready(timeout=240.0)
        assert h.until(lambda: "models ready" in sim_node.log, 240.0), sim_node.log[-3000:]
        h.show(picture(50))
        refused = h.command("the red cup without a clock")
        assert not refused.success
        assert "/clock" in refused.error and "use_sim_time" in refused.error, refused.error

        clock_pub = h.node.create_publisher(Clock, "/clock", 10)
        sim_ns = 1000 * 10**9

        def tick() -> None:  # sim time at the real rate, from 1000 s on
            nonlocal sim_ns
            sim_ns += 50_000_000
            clock_pub.publish(Clock(clock=Time(nanoseconds=sim_ns).to_msg()))

        h.node.create_timer(0.05, tick)
        h.spin(2.0)  # the clock runs, and frames arrive at sim time
        answered = h.command("the red cup with a clock", timeout=120.0)
        assert answered.success, answered.error
        assert answered.header.stamp.sec == 50  # the camera frame's own stamp
    finally:
        h.close()
        rclpy.shutdown()
