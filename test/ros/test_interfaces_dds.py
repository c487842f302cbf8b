"""msg/Segmentation and srv/Segment round-trip through real DDS between two processes."""

from __future__ import annotations

import os

import pytest
import ros_helpers  # noqa: F401  (sets this session's ROS_DOMAIN_ID before rclpy starts)
from ros_helpers import EVENT_TIMEOUT_S, spawn_python, spin_until, stop

rclpy = pytest.importorskip("rclpy")
from iterprime_ros.msg import Segmentation  # noqa: E402
from iterprime_ros.srv import Segment  # noqa: E402

PEER = os.path.join(os.path.dirname(__file__), "..", "helpers", "interface_echo_peer.py")


def _filled() -> Segmentation:
    m = Segmentation()
    m.header.frame_id = "camera_color_optical_frame"
    m.header.stamp.sec, m.header.stamp.nanosec = 1234, 5678
    m.command_id = 7
    m.command = "could you pick up the red cup on the left please"
    m.expression = "the red cup on the left"
    m.primary_word = "cup"
    m.success = True
    m.mask.height, m.mask.width, m.mask.encoding, m.mask.step = 2, 3, "mono8", 3
    m.mask.data = bytes([0, 255, 0, 255, 255, 0])
    m.bbox.x_offset, m.bbox.y_offset, m.bbox.width, m.bbox.height = 0, 0, 2, 2
    m.centroid_px.x, m.centroid_px.y = 0.75, 0.5
    m.grasp_point_px.x, m.grasp_point_px.y = 1.0, 1.0
    m.has_centroid_3d = True
    m.centroid_3d.x, m.centroid_3d.y, m.centroid_3d.z = 0.1, -0.2, 0.85
    m.score, m.itm_score, m.iterations, m.latency_s = 1.5, 0.25, 3, 0.125
    return m


@pytest.fixture(scope="module")
def peer_and_node():
    proc = spawn_python([PEER])
    rclpy.init()
    node = rclpy.create_node("interface_roundtrip_test")
    yield proc, node
    node.destroy_node()
    rclpy.shutdown()
    stop(proc)


def test_segmentation_message_round_trips_between_processes(peer_and_node):
    proc, node = peer_and_node
    got: list[Segmentation] = []
    node.create_subscription(Segmentation, "seg_out", got.append, 10)
    pub = node.create_publisher(Segmentation, "seg_in", 10)
    sent = _filled()
    assert spin_until(node, lambda: pub.get_subscription_count() > 0, EVENT_TIMEOUT_S), (
        "peer never subscribed"
    )
    assert spin_until(node, lambda: node.count_publishers("seg_out") > 0, EVENT_TIMEOUT_S)

    def publish_and_check() -> bool:
        pub.publish(sent)
        return bool(got)

    assert spin_until(node, publish_and_check, EVENT_TIMEOUT_S), "no echo from the peer process"
    echo = got[0]
    assert echo == sent  # generated __eq__ compares every field
    assert bytes(echo.mask.data) == bytes([0, 255, 0, 255, 255, 0])
    assert (
        echo.header.frame_id == "camera_color_optical_frame" and echo.header.stamp.nanosec == 5678
    )
    assert abs(echo.centroid_3d.z - 0.85) < 1e-12 and echo.iterations == 3


def test_segment_service_round_trips_between_processes(peer_and_node):
    proc, node = peer_and_node
    client = node.create_client(Segment, "segment_echo")
    assert client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S), (
        "service from the peer process not found"
    )
    req = Segment.Request()
    req.text = "the mug"
    req.image.width, req.image.height = 4, 2
    future = client.call_async(req)
    assert spin_until(node, future.done, EVENT_TIMEOUT_S)
    res = future.result().result
    assert res.command == "the mug" and res.success and (res.mask.width, res.mask.height) == (4, 2)

    empty = client.call_async(Segment.Request(text="x"))
    assert spin_until(node, empty.done, EVENT_TIMEOUT_S)
    assert not empty.result().result.success and empty.result().result.error == "no image"
