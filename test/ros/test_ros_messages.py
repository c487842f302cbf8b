"""Pipeline result -> Segmentation / mono8 mask / PointStamped (iterprime_ros/ros/messages.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
from std_msgs.msg import Header  # noqa: E402

from iterprime_ros.pipeline import SegmentationResult  # noqa: E402
from iterprime_ros.ros import messages  # noqa: E402


def _header() -> Header:
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = 42, 7
    return h


def _result() -> SegmentationResult:
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    return SegmentationResult(
        success=True,
        error="",
        command="grab the red cup please",
        expression="the red cup",
        primary_word="cup",
        mask=mask,
        centroid=(3.0, 1.5),
        grasp_point=(3, 1),
        bbox=(2, 1, 3, 2),
        score=1.25,
        itm_score=0.5,
        iterations=2,
    )


def test_success_maps_every_field():
    answer = messages.Answer(9, "grab the red cup please", _header(), 0.75, (0.1, -0.2, 1.5))
    msg = messages.segmentation(_result(), answer)
    assert msg.success and msg.error == "" and msg.command_id == 9
    assert (msg.command, msg.expression, msg.primary_word) == (
        "grab the red cup please",
        "the red cup",
        "cup",
    )
    assert msg.header == _header() and msg.mask.header == _header()
    assert (msg.mask.width, msg.mask.height, msg.mask.encoding, msg.mask.step) == (
        6,
        4,
        "mono8",
        6,
    )
    got = np.frombuffer(bytes(msg.mask.data), np.uint8).reshape(4, 6)
    np.testing.assert_array_equal(got, _result().mask * 255)
    assert (msg.bbox.x_offset, msg.bbox.y_offset, msg.bbox.width, msg.bbox.height) == (2, 1, 3, 2)
    assert (msg.centroid_px.x, msg.centroid_px.y, msg.grasp_point_px.x, msg.grasp_point_px.y) == (
        3.0,
        1.5,
        3.0,
        1.0,
    )
    assert msg.has_centroid_3d and (msg.centroid_3d.x, msg.centroid_3d.y, msg.centroid_3d.z) == (
        0.1,
        -0.2,
        1.5,
    )
    assert (
        msg.score == pytest.approx(1.25)
        and msg.itm_score == pytest.approx(0.5)
        and msg.iterations == 2
    )
    assert msg.latency_s == pytest.approx(0.75)
    point = messages.centroid_point(msg)
    assert point.header == _header() and (point.point.x, point.point.z) == (0.1, 1.5)


def test_without_depth_there_is_no_3d_point():
    msg = messages.segmentation(_result(), messages.Answer(1, "x", _header(), 0.1))
    assert not msg.has_centroid_3d and messages.centroid_point(msg) is None


def test_failure_has_error_and_no_mask():
    failed = SegmentationResult(
        success=False,
        error="nothing selected: no proposal covers the peak",
        command="the cup",
        expression="the cup",
        primary_word="cup",
    )
    msg = messages.segmentation(failed, messages.Answer(3, "the cup", _header(), 0.2))
    assert not msg.success and msg.error.startswith("nothing selected") and msg.mask.width == 0
    assert msg.expression == "the cup" and msg.command_id == 3 and msg.header == _header()
    plain = messages.failure(messages.Answer(4, "x", _header(), 0.0), "")
    assert not plain.success and plain.error == "failed"


def test_debug_image_is_bgr8_of_the_overlay():
    bgr = np.zeros((3, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in BGR
    img = messages.debug_image(bgr, _header())
    assert (img.encoding, img.width, img.height, img.step) == ("bgr8", 5, 3, 15)
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(3, 5, 3), bgr)
