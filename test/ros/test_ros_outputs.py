"""Standard outputs beside Segmentation (iterprime_ros/ros/outputs.py): the 3-D fields, RViz
markers (drawn and checked with tools/marker_view), and vision_msgs detections where vision_msgs
is installed (skipped here, with the reason).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID, before rclpy starts)
from ros_helpers import EVENT_TIMEOUT_S
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from iterprime_ros.msg import Segmentation
from iterprime_ros.ros.outputs import fill_3d, markers, vision_msgs_unavailable
from iterprime_ros.ros.spatial import Located, Object3D
from iterprime_ros.tools.marker_view import render, worked_example

CAM = Object3D("cam", (0.1, 0.0, 1.0), (0.1, 0.01, 0.98), (0.1, 0.0, 1.0), (0.2, 0.1, 0.04))
BASE = Object3D(
    "base_link", (0.5, 0.2, 0.1), (0.5, 0.21, 0.12), (0.49, 0.2, 0.1), (0.1, 0.2, 0.05)
)
STAMP = SimpleNamespace(sec=7, nanosec=250)


def _header() -> Header:
    h = Header()
    h.stamp.sec, h.frame_id = 9, "cam"
    return h


def _segmentation(success: bool = True) -> Segmentation:
    msg = Segmentation()
    msg.header = _header()
    msg.success, msg.command_id, msg.expression, msg.score = success, 4, "the red cup", 1.3
    msg.bbox.x_offset, msg.bbox.y_offset, msg.bbox.width, msg.bbox.height = 10, 20, 30, 40
    return msg


def test_fill_3d_in_target_frame_camera_frame_and_failure():
    msg = _segmentation()
    fill_3d(msg, Located(camera=CAM, target=BASE, depth_stamp=STAMP))
    assert msg.has_target_point and msg.error_3d == ""
    assert msg.centroid_target.header.frame_id == "base_link"
    assert msg.centroid_target.header.stamp.sec == 9, "the image's stamp"
    p, g = msg.centroid_target.point, msg.grasp_point_target.point
    assert (p.x, p.y, p.z) == BASE.centroid and (g.x, g.y, g.z) == BASE.grasp_point
    assert (msg.extent_3d.x, msg.extent_3d.y, msg.extent_3d.z) == BASE.box_size
    assert (msg.depth_stamp.sec, msg.depth_stamp.nanosec) == (7, 250)

    msg = _segmentation()
    fill_3d(msg, Located(camera=CAM, depth_stamp=STAMP))
    assert msg.has_target_point and msg.centroid_target.header.frame_id == "cam"

    msg = _segmentation()
    fill_3d(msg, Located(camera=CAM, depth_stamp=STAMP, error="no transform 'cam' -> 'base'"))
    assert not msg.has_target_point and msg.error_3d == "no transform 'cam' -> 'base'"
    assert msg.extent_3d.x == 0.0 and msg.depth_stamp.sec == 7


def test_markers_box_centroid_grasp_or_deleteall():
    ms = markers(_header(), Located(camera=CAM, target=BASE))
    assert [m.type for m in ms] == [Marker.CUBE, Marker.SPHERE, Marker.SPHERE]
    assert {m.header.frame_id for m in ms} == {"base_link"} and len({m.id for m in ms}) == 3
    box = ms[0]
    assert (box.pose.position.x, box.pose.position.y, box.pose.position.z) == BASE.box_centre
    assert (box.scale.x, box.scale.y, box.scale.z) == BASE.box_size
    assert 0 < box.color.a < 1 and box.pose.orientation.w == 1.0
    assert ms[1].pose.position.x == BASE.centroid[0]
    flat_box = Object3D("cam", (0, 0, 1), (0, 0, 1), (0, 0, 1), (0.1, 0.1, 0.0))
    flat = markers(_header(), Located(camera=flat_box))
    assert flat[0].scale.z == pytest.approx(0.005), "a flat box still shows"
    (clear,) = markers(_header(), Located(error="no depth received"))
    assert clear.action == Marker.DELETEALL


def test_rendered_markers_show_the_box_and_points_where_they_are():
    """The RViz-like top view: box and dots land on the pixels computed here from the poses."""
    ms = markers(_header(), Located(camera=CAM, target=BASE))
    img = render(ms, px_per_m=1000.0, size=480)
    top = img[:480, :480].astype(int)
    centre = np.mean([[m.pose.position.x, m.pose.position.y] for m in ms], axis=0)

    def px(x: float, y: float) -> tuple[int, int]:
        return int(round(240 + (x - centre[0]) * 1000)), int(round(240 - (y - centre[1]) * 1000))

    greenish = (top[:, :, 1] > top[:, :, 0] + 40) & (top[:, :, 1] > top[:, :, 2] + 40)
    area = greenish.sum()
    assert area == pytest.approx(100 * 200, rel=0.1), "box 0.1 x 0.2 m at 1 px/mm"
    u0, v0 = px(BASE.box_centre[0] - 0.05, BASE.box_centre[1] + 0.1)
    u1, v1 = px(BASE.box_centre[0] + 0.05, BASE.box_centre[1] - 0.1)
    vs, us = np.nonzero(greenish)
    assert abs(us.min() - u0) <= 2 and abs(us.max() - u1) <= 2
    assert abs(vs.min() - v0) <= 2 and abs(vs.max() - v1) <= 2
    u, v = px(*BASE.centroid[:2])
    b, g, r = top[v, u]
    assert r > 200 and g < 80 and b < 80, "red centroid dot"
    u, v = px(*BASE.grasp_point[:2])
    b, g, r = top[v, u]
    assert b > 200 and r < 80, "blue grasp dot"


def test_worked_example_places_the_block_on_the_table_in_base_link():
    """docs/marker_check.png's example: the block top is 5 cm above base_link's table plane."""
    box, centroid, grasp = worked_example()
    assert box.header.frame_id == "base_link"
    assert centroid.pose.position.z == pytest.approx(0.05, abs=1e-6)
    assert box.pose.position.x == pytest.approx(0.45, abs=0.02)


def test_vision_msgs_detections():
    if vision_msgs_unavailable() is not None:
        pytest.skip(f"vision_msgs is not installed here: {vision_msgs_unavailable()}")
    from iterprime_ros.ros.outputs import detection_2d_array, detection_3d_array

    arr = detection_2d_array(_segmentation())
    (d,) = arr.detections
    hyp = d.results[0].hypothesis if hasattr(d.results[0], "hypothesis") else d.results[0]
    assert getattr(hyp, "class_id", getattr(hyp, "id", None)) == "the red cup"
    assert d.bbox.size_x == 30 and d.id == "4"
    assert detection_2d_array(_segmentation(success=False)).detections == []
    arr3 = detection_3d_array(_segmentation(), Located(camera=CAM, target=BASE))
    assert arr3.header.frame_id == "base_link"
    assert arr3.detections[0].bbox.size.y == pytest.approx(0.2)
    assert detection_3d_array(_segmentation(), Located(error="x")).detections == []


def test_standard_outputs_over_dds():
    """Real rclpy nodes and DDS: one answer's markers arrive on ~/marker, reliable."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from iterprime_ros.ros.outputs import StandardOutputs

    rclpy.init()
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub_node = rclpy.create_node("outputs_test_pub", namespace="/h18out")
        sub_node = rclpy.create_node("outputs_test_sub")
        got: list[Marker] = []
        sub_node.create_subscription(Marker, "/h18out/outputs_test_pub/marker", got.append, qos)
        outputs = StandardOutputs(pub_node, qos)
        assert (outputs.detections_2d_pub is None) == (outputs.missing is not None)
        from rclpy.executors import SingleThreadedExecutor
        from ros_helpers import spin_until

        ex = SingleThreadedExecutor()
        ex.add_node(pub_node)
        ex.add_node(sub_node)
        assert spin_until(
            ex,
            lambda: pub_node.count_subscribers("/h18out/outputs_test_pub/marker") > 0,
            EVENT_TIMEOUT_S,
        )
        outputs.publish(_segmentation(), Located(camera=CAM, target=BASE))
        assert spin_until(ex, lambda: len(got) >= 3, EVENT_TIMEOUT_S)
        assert [m.type for m in got[:3]] == [Marker.CUBE, Marker.SPHERE, Marker.SPHERE]
        assert got[0].header.frame_id == "base_link" and got[0].header.stamp.sec == 9
        failed = _segmentation(success=False)
        failed.error_3d = ""
        outputs.publish(failed)
        assert spin_until(ex, lambda: len(got) >= 4, EVENT_TIMEOUT_S)
        assert got[3].action == Marker.DELETEALL
        outputs.destroy()
        ex.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    finally:
        rclpy.try_shutdown()
