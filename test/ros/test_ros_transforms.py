"""Transforms into target_frame (iterprime_ros/ros/transforms.py): the project's own quaternion
arithmetic (used only where tf2 is not installed) against SciPy's, lookups at the image stamp
through StandInTransformBuffer (a STAND-IN for tf2_ros.Buffer), and the real tf2_ros where it
is installed (skipped here, with the reason).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from tf_stand_in import StandInTransformBuffer, transform_msg

from iterprime_ros.ros.transforms import (
    FrameTransformer,
    RigidTransform,
    TransformUnavailable,
    box_corners,
    enclosing_box,
    tf2_unavailable,
)


def test_rigid_transform_matches_scipy():
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.normal(size=4) * rng.uniform(0.2, 3.0)  # not unit length: normalised
        t = rng.normal(size=3)
        pts = rng.normal(size=(7, 3))
        expected = Rotation.from_quat(q).apply(pts) + t
        got = RigidTransform(tuple(t), tuple(q)).apply(pts)
        assert got == pytest.approx(expected, abs=1e-12)
    with pytest.raises(TransformUnavailable, match="invalid rotation"):
        RigidTransform((0, 0, 0), (0, 0, 0, 0)).apply(np.zeros((1, 3)))


def test_lookup_at_the_image_stamp_through_the_stand_in_buffer():
    buffer = StandInTransformBuffer()
    buffer.add(transform_msg("base_link", "cam", (1.0, 0.0, 0.5), (0, 0, 0, 1)))
    tf = FrameTransformer(buffer, "base_link", 0.25)
    stamp = SimpleNamespace(sec=12, nanosec=345)
    ts = tf.lookup("cam", stamp)
    target, source, time, timeout = buffer.lookups[-1]
    assert (target, source) == ("base_link", "cam")
    assert time.nanoseconds == 12 * 10**9 + 345 and timeout.nanoseconds == 250_000_000
    assert tf.points(ts, np.array([[0.1, 0.2, 0.3]]))[0] == pytest.approx((1.1, 0.2, 0.8))
    with pytest.raises(TransformUnavailable, match=r"'other' -> 'base_link' at 12.000000345"):
        tf.lookup("other", stamp)
    with pytest.raises(TransformUnavailable, match="no frame_id"):
        tf.lookup("", stamp)


def test_box_corners_and_enclosing_box():
    corners = box_corners(np.array([1.0, 2.0, 3.0]), np.array([0.2, 0.4, 0.6]))
    assert corners.shape == (8, 3)
    assert corners.min(axis=0) == pytest.approx((0.9, 1.8, 2.7))
    centre, size = enclosing_box(corners)
    assert centre == pytest.approx((1, 2, 3)) and size == pytest.approx((0.2, 0.4, 0.6))
    # a 90-degree yaw swaps x and y extents
    turned = RigidTransform((0, 0, 0), tuple(Rotation.from_euler("z", 90, degrees=True).as_quat()))
    _, size = enclosing_box(turned.apply(corners))
    assert size == pytest.approx((0.4, 0.2, 0.6))


def test_tf2_missing_is_explained():
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        reason = tf2_unavailable()
        assert reason is not None and "tf2_ros" in reason and "target_frame empty" in reason
    else:
        pytest.skip("tf2_ros is installed here: nothing to explain")


def test_real_tf2_buffer_agrees():
    tf2_ros = pytest.importorskip("tf2_ros", reason="tf2_ros comes with apt ROS installs only")
    from rclpy.time import Time

    q = tuple(Rotation.from_euler("xyz", (20, -35, 60), degrees=True).as_quat())
    msg = transform_msg("base_link", "cam", (0.4, -0.2, 1.1), q)
    buffer = tf2_ros.Buffer()
    buffer.set_transform_static(msg, "test")
    tf = FrameTransformer(buffer, "base_link", 0.1)
    ts = tf.lookup("cam", Time(seconds=5).to_msg())
    pts = np.array([[0.1, 0.2, 0.9], [-0.3, 0.0, 1.5]])
    assert tf.points(ts, pts) == pytest.approx(RigidTransform.from_msg(msg).apply(pts), abs=1e-9)


def test_frame_transformer_setup():
    from iterprime_ros.ros.transforms import frame_transformer

    assert frame_transformer(None, "", 0.1) == (None, None), "empty target_frame: camera frame"
    stand_in = StandInTransformBuffer()
    tf, listener = frame_transformer(None, "base_link", 0.3, buffer=stand_in)
    assert tf.buffer is stand_in and tf.target_frame == "base_link" and listener is None
    if tf2_unavailable() is not None:
        with pytest.raises(RuntimeError, match="target_frame 'base_link' is set but tf2_ros"):
            frame_transformer(None, "base_link", 0.1)
