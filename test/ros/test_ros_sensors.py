"""Camera data held for the worker (iterprime_ros/ros/sensors.py) and the 3-D centroid from a
depth message (spatial.compute_centroid_3d, the rule tracking and replay use).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from camera_fixtures import expected_centroid_3d

from iterprime_ros.ros.camera import camera_model
from iterprime_ros.ros.conversions import depth_to_fields
from iterprime_ros.ros.sensors import SensorCache
from iterprime_ros.ros.spatial import compute_centroid_3d

FX, FY, CX, CY = 60.0, 55.0, 31.5, 23.5
H, W = 48, 64


def _header(sec: int, nanosec: int = 0, frame_id: str = "cam"):
    return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _depth(array: np.ndarray, encoding: str, sec: int = 1, nanosec: int = 0):
    return SimpleNamespace(header=_header(sec, nanosec), **depth_to_fields(array, encoding))


def _info(width: int = W, height: int = H):
    return SimpleNamespace(k=[FX, 0, CX, 0, FY, CY, 0, 0, 1], width=width, height=height)


def _mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[10:30, 20:50] = True
    m[30:40, 20:28] = True  # an L shape: centroid and eroded region differ from the box's
    return m


def expected_point(mask: np.ndarray, depth_m: np.ndarray, erode_px: int):
    return expected_centroid_3d(mask, depth_m, erode_px, (FX, FY, CX, CY))


def test_plane_at_1_5_m_in_both_encodings():
    mask = _mask()
    for depth in (
        _depth(np.full((H, W), 1500, np.uint16), "16UC1"),
        _depth(np.full((H, W), 1.5, np.float32), "32FC1"),
    ):
        c = compute_centroid_3d(mask, depth, _info(), erode_px=3, rectified=False)
        v, u = np.nonzero(mask)
        assert c.point == pytest.approx(
            ((u.mean() - CX) * 1.5 / FX, (v.mean() - CY) * 1.5 / FY, 1.5), abs=1e-6
        )


def test_ramp_with_holes_uses_the_median_of_valid_depth_over_the_eroded_mask():
    mask = _mask()
    cols = np.arange(W, dtype=np.float32)
    metres = np.tile(0.8 + 0.02 * cols, (H, 1)).astype(np.float32)
    holes = metres.copy()
    holes[::2, ::3] = np.nan
    holes[15, :] = 0.0
    c32 = compute_centroid_3d(mask, _depth(holes, "32FC1"), _info(), erode_px=3, rectified=False)
    assert c32.point == pytest.approx(expected_point(mask, holes, 3), abs=1e-5)
    mm = np.rint(metres * 1000).astype(np.uint16)
    mm[::2, ::3] = 0
    c16 = compute_centroid_3d(mask, _depth(mm, "16UC1"), _info(), erode_px=3, rectified=False)
    assert c16.point == pytest.approx(expected_point(mask, mm / 1000.0, 3), abs=1e-5)


def test_big_endian_depth():
    msg = _depth(np.full((H, W), 1.25, np.float32), "32FC1")
    msg.data = np.frombuffer(msg.data, "<f4").astype(">f4").tobytes()
    msg.is_bigendian = 1
    assert compute_centroid_3d(_mask(), msg, _info(), 2, rectified=False).point[
        2
    ] == pytest.approx(1.25)


@pytest.mark.parametrize(
    "depth, info, reason",
    [
        (np.zeros((H, W), np.uint16), "ok", "no valid depth inside the mask"),
        (np.full((H, W), np.nan, np.float32), "ok", "no valid depth inside the mask"),
        (np.ones((H // 2, W // 2), np.float32), "ok", "depth is 32x24 but the image is 64x48"),
        (np.ones((H, W), np.float32), None, "no camera_info received"),
        (np.ones((H, W), np.float32), "uncalibrated", "uncalibrated"),
    ],
)
def test_no_3d_centroid_says_why(depth, info, reason):
    enc = "16UC1" if depth.dtype == np.uint16 else "32FC1"
    cam = {
        "ok": _info(),
        None: None,
        "uncalibrated": SimpleNamespace(k=[0.0] * 9, width=W, height=H),
    }[info]
    c = compute_centroid_3d(_mask(), _depth(depth, enc), cam, 3, rectified=False)
    assert c.point is None and reason in c.reason
    assert (
        compute_centroid_3d(_mask(), None, _info(), 3, rectified=False).reason
        == "no depth frame matching the image"
    )


def intrinsics_for(info, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) the centroid uses for a raw image of width x height."""
    cam = camera_model(info, width, height, rectified=False)
    return cam.fx, cam.fy, cam.cx, cam.cy


def test_intrinsics_scale_with_a_resized_stream():
    assert intrinsics_for(_info(), W, H) == (FX, FY, CX, CY)
    fx, fy, cx, cy = intrinsics_for(_info(W * 2, H * 2), W, H)
    assert (fx, fy) == (FX / 2, FY / 2)
    assert (cx, cy) == ((CX + 0.5) / 2 - 0.5, (CY + 0.5) / 2 - 0.5)


def test_depth_frame_closest_to_the_image_stamp():
    """The depth half of match(): nearest stamp within the tolerance, newest on a tie (each
    depth frame comes with a camera_info stamped alike, so the info never decides here).
    """
    cache = SensorCache(depth_frames=3)
    assert cache.match(_header(5), 0.1).depth is None

    def add(ns: int, tag: object) -> None:
        cache.add_depth(SimpleNamespace(header=_header(5, ns), tag=tag))
        cache.set_camera_info(SimpleNamespace(header=_header(5, ns), tag=f"i{ns}"))

    for ns in (0, 40_000_000, 80_000_000, 120_000_000):
        add(ns, ns)
    assert cache.match(_header(5, 70_000_000), 0.1).depth.tag == 80_000_000
    assert cache.match(_header(5, 0), 0.05).depth.tag == 40_000_000, (
        "frame 0 fell out of the 3-frame buffer"
    )
    assert cache.match(_header(6), 0.1).depth is None
    add(80_000_000, "newer")
    assert cache.match(_header(5, 80_000_000), 0.0).depth.tag == "newer", "newest wins a tie"


def test_latest_image_and_info():
    cache = SensorCache()
    assert cache.latest_image() is None and cache.camera_info() is None
    cache.set_image("a", 10)
    cache.set_image("b", 20)
    assert cache.latest_image().msg == "b" and cache.latest_image().received_ns == 20
    cache.set_camera_info("info")
    assert cache.camera_info() == "info"


def _stamped(sec: int, nanosec: int, tag: str):
    return SimpleNamespace(header=_header(sec, nanosec), tag=tag)


def test_match_follows_approximate_time():
    """message_filters' ApproximateTime rule: every stamp of the set within the slop of each other,
    the candidates nearest the image first.
    """
    cache = SensorCache(depth_frames=5)
    assert cache.match(_header(5), 0.1).reason == "no depth received"
    cache.add_depth(_stamped(5, 30_000_000, "d30"))
    assert cache.match(_header(5), 0.1).reason == "no camera_info received"
    cache.set_camera_info(_stamped(4, 900_000_000, "i-100"))
    cache.set_camera_info(_stamped(5, 60_000_000, "i60"))
    m = cache.match(_header(5), 0.1)
    assert (m.depth.tag, m.info.tag) == ("d30", "i60"), "nearest candidates that fit together"
    cache.add_depth(_stamped(4, 920_000_000, "d-80"))
    m = cache.match(_header(5), 0.1)
    assert (m.depth.tag, m.info.tag) == ("d30", "i60")
    # depth at -80 ms and info at +60 ms are each within 0.1 s of the image, but 140 ms apart
    cache2 = SensorCache()
    cache2.add_depth(_stamped(4, 920_000_000, "d-80"))
    cache2.set_camera_info(_stamped(5, 60_000_000, "i60"))
    assert "more than 0.1 s apart" in cache2.match(_header(5), 0.1).reason
    cache2.set_camera_info(_stamped(4, 950_000_000, "i-50"))
    assert cache2.match(_header(5), 0.1).info.tag == "i-50", "a further info that fits is taken"
    far = cache2.match(_header(9), 0.1)
    assert far.depth is None and "no depth within 0.1 s" in far.reason and "4.080 s" in far.reason
