"""The object in 3-D and in target_frame (iterprime_ros/ros/spatial.py), with expectations
computed independently: full-sensor intrinsics by hand, rotations by SciPy, transforms through
StandInTransformBuffer (a STAND-IN for tf2_ros.Buffer, which is not installable here).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from test_ros_camera import K_FULL, P_FULL, info
from tf_stand_in import StandInTransformBuffer, transform_msg

from iterprime_ros.ros.conversions import depth_to_fields
from iterprime_ros.ros.spatial import locate, object_in_camera
from iterprime_ros.ros.transforms import FrameTransformer

STAMP = SimpleNamespace(sec=40, nanosec=5_000_000)


def _header(frame="camera_optical", stamp=STAMP):
    return SimpleNamespace(stamp=stamp, frame_id=frame)


def _depth(metres: np.ndarray, stamp=STAMP, encoding="32FC1"):
    values = metres * 1000 if encoding == "16UC1" else metres
    return SimpleNamespace(header=_header(stamp=stamp), **depth_to_fields(values, encoding))


def _rect(h, w, rows, cols):
    m = np.zeros((h, w), bool)
    m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return m


@pytest.mark.parametrize("rectified", [False, True])
def test_plane_binning_roi_and_transform_give_the_point_in_target_frame_to_1_mm(rectified):
    """Constant depth plane + K/P + binning 2x2 + ROI + a known camera pose -> the point a planner
    gets in base_link, computed here from the full-sensor matrices and SciPy's rotation.
    """
    bx, by, x0, y0 = 2, 2, 40, 24
    w, h = 200, 160
    z = 1.25
    cam_info = info(binning=(bx, by), roi=(x0, y0, 2 * w, 2 * h))
    mask = _rect(h, w, (50, 70), (90, 130))  # centroid (110, 60), a whole pixel
    rot = Rotation.from_euler("xyz", (-110.0, 5.0, -85.0), degrees=True)
    t = np.array([0.32, -0.05, 0.91])
    buffer = StandInTransformBuffer()
    buffer.add(transform_msg("base_link", "camera_optical", tuple(t), tuple(rot.as_quat())))
    out = locate(
        mask,
        (110.0, 60.0),
        _header(),
        _depth(np.full((h, w), z, np.float32)),
        cam_info,
        erode_px=3,
        rectified=rectified,
        transformer=FrameTransformer(buffer, "base_link", 0.1),
    )
    assert out.error == "" and out.target is not None and out.target.frame_id == "base_link"

    m = np.array(P_FULL).reshape(3, 4) if rectified else np.array(K_FULL).reshape(3, 3)
    full_u, full_v = 110 * bx + x0, 60 * by + y0
    in_camera = np.array([(full_u - m[0, 2]) * z / m[0, 0], (full_v - m[1, 2]) * z / m[1, 1], z])
    expected = rot.apply(in_camera) + t
    assert np.abs(np.array(out.target.centroid) - expected).max() < 1e-3
    assert np.abs(np.array(out.target.grasp_point) - expected).max() < 1e-3
    assert out.camera.centroid == pytest.approx(in_camera, abs=1e-9)
    lookup_time = buffer.lookups[-1][2]
    assert lookup_time.nanoseconds == 40 * 10**9 + 5_000_000, "looked up at the image stamp"
    assert out.depth_stamp is STAMP


def test_box_of_a_raised_block_on_a_table():
    """A block 0.2 m nearer than the table: the box spans the block, not the table behind."""
    h, w = 120, 160
    depth = np.full((h, w), 1.5, np.float32)
    block = _rect(h, w, (40, 79), (50, 109))
    depth[block] = 1.3
    mask = _rect(h, w, (38, 81), (48, 111))  # the mask spills 2 px onto the table
    # a 640x480 calibration for this 160x120 stream: focal lengths scale by 1/4
    obj, why = object_in_camera(mask, (79.0, 59.0), _depth(depth), info(), 3)
    assert why == ""
    fx, fy = 600.0 / 4, 610.0 / 4
    size = obj.box_size
    assert size[0] == pytest.approx((109 - 50) * 1.3 / fx, rel=1e-6)
    assert size[1] == pytest.approx((79 - 40) * 1.3 / fy, rel=1e-6)
    assert size[2] == pytest.approx(0.0, abs=1e-6)
    assert obj.box_centre[2] == pytest.approx(1.3) and obj.grasp_point[2] == pytest.approx(1.3)


def test_grasp_point_takes_the_depth_at_the_grasp_pixel():
    h, w = 60, 80
    cols = np.arange(w, dtype=np.float32)
    depth = np.tile(1.0 + 0.01 * cols, (h, 1)).astype(np.float32)  # a slope along u
    mask = _rect(h, w, (10, 50), (10, 70))
    obj, _ = object_in_camera(mask, (20.0, 30.0), _depth(depth), info(size=(w, h)), 2)
    assert obj.grasp_point[2] == pytest.approx(1.2, abs=1e-6)
    assert obj.centroid[2] == pytest.approx(1.4, abs=1e-6)


def test_a_missing_transform_fails_only_the_3d_target_part():
    h, w = 48, 64
    mask = _rect(h, w, (10, 30), (20, 40))
    buffer = StandInTransformBuffer()
    out = locate(
        mask,
        None,
        _header(),
        _depth(np.full((h, w), 0.8, np.float32)),
        info(size=(w, h)),
        3,
        transformer=FrameTransformer(buffer, "base_link", 0.05),
    )
    assert out.camera is not None and out.target is None and out.output is None
    assert "no transform 'camera_optical' -> 'base_link'" in out.error
    same = locate(
        mask,
        None,
        _header(frame="base_link"),
        _depth(np.full((h, w), 0.8, np.float32)),
        info(size=(w, h)),
        3,
        transformer=FrameTransformer(buffer, "base_link", 0.05),
    )
    assert same.error == "" and same.target.centroid == same.camera.centroid


def test_reasons_without_3d():
    h, w = 48, 64
    mask = _rect(h, w, (10, 30), (20, 40))
    assert locate(mask, None, _header(), None, info(), 3, no_match_reason="why").error == "why"
    out = locate(mask, None, _header(), _depth(np.zeros((h, w), np.float32)), info(), 3)
    assert out.error == "no valid depth inside the mask" and out.depth_stamp is STAMP
    bad = info(d=(0.1, 0, 0, 0, 0), model="weird", size=(w, h))
    out = locate(mask, None, _header(), _depth(np.ones((h, w), np.float32)), bad, 3)
    assert "distortion model 'weird'" in out.error and out.output is None
    plain = locate(mask, None, _header(), _depth(np.ones((h, w), np.float32)), info(), 3)
    assert plain.error == "" and plain.output is plain.camera, "no target_frame: camera frame"


@pytest.mark.parametrize("rectified", [False, True])
@pytest.mark.parametrize("erode_px", [0, 3])
def test_commands_tracking_and_the_pure_rule_give_one_centroid(erode_px, rectified):
    """One rule for the 3-D centroid: the command's object (object_in_camera), the tracking and
    replay centroid (compute_centroid_3d) and core.geometry.centroid_3d through the same pinhole
    agree on a ragged mask over a noisy depth ramp with holes. camera_info's K and P differ, so
    a path that ignored `image_rectified` would land elsewhere.
    """
    from iterprime_ros.core.geometry import centroid_3d
    from iterprime_ros.ros.spatial import compute_centroid_3d

    rng = np.random.default_rng(7)
    h, w = 48, 64
    mask = rng.random((h, w)) < 0.1
    mask[10:35, 15:50] = True
    depth = (0.7 + 0.01 * np.arange(w, dtype=np.float32))[None, :] + rng.normal(0, 0.01, (h, w))
    depth = depth.astype(np.float32)
    depth[rng.random((h, w)) < 0.2] = np.nan
    k = (60.0, 55.0, 31.5, 23.5)
    p = (58.0, 58.0, 30.0, 24.5)  # the rectified camera's own intrinsics
    cam = SimpleNamespace(
        k=[k[0], 0, k[2], 0, k[1], k[3], 0, 0, 1],
        p=[p[0], 0, p[2], 0, 0, p[1], p[3], 0, 0, 0, 1, 0],
        d=[],
        width=w,
        height=h,
    )
    msg = _depth(depth)
    obj, why = object_in_camera(mask, None, msg, cam, erode_px, rectified)
    alone = compute_centroid_3d(mask, msg, cam, erode_px, rectified=rectified)
    fx, fy, cx, cy = p if rectified else k
    pure = centroid_3d(mask, depth, fx, fy, cx, cy, erode_px)
    assert why == "" and alone.reason == "" and pure is not None
    assert obj.centroid == alone.point
    assert alone.point == pytest.approx(pure, abs=1e-6)
