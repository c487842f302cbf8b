"""Mask geometry and depth back-projection with known numbers."""

import numpy as np
import pytest

from iterprime_ros.core.geometry import (
    centroid_3d,
    depth_to_metres,
    grasp_point,
    mask_bbox,
    mask_centroid,
)


def square(h=30, w=40, rows=(10, 17), cols=(20, 27)):
    m = np.zeros((h, w), bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = (
        True  # rows 10..16, cols 20..26: 7 x 7, centre (23, 13)
    )
    return m


def test_centroid_bbox_and_grasp_of_a_square():
    m = square()
    assert mask_centroid(m) == (23.0, 13.0)
    assert mask_bbox(m) == (20, 10, 7, 7)
    assert grasp_point(m) == (23, 13)
    assert all(isinstance(x, int) for x in grasp_point(m) + mask_bbox(m))


def test_centroid_of_a_rectangle_is_fractional():
    m = np.zeros((5, 6), bool)
    m[1:3, 1:5] = True  # rows 1,2 cols 1..4
    assert mask_centroid(m) == (2.5, 1.5)
    assert mask_bbox(m) == (1, 1, 4, 2)


def test_grasp_point_stays_inside_a_ring_whose_centroid_does_not():
    yy, xx = np.mgrid[0:41, 0:41]
    r = np.hypot(yy - 20, xx - 20)
    ring = (r >= 10) & (r <= 16)
    u, v = mask_centroid(ring)
    assert (u, v) == pytest.approx((20.0, 20.0))
    assert not ring[20, 20]
    gu, gv = grasp_point(ring)
    assert ring[gv, gu]
    assert 12 <= np.hypot(gv - 20, gu - 20) <= 14  # the middle of the band


def test_grasp_point_treats_the_image_border_as_background():
    m = np.ones((5, 9), bool)
    assert grasp_point(m) == (4, 2)


def test_empty_mask_is_rejected():
    with pytest.raises(ValueError):
        mask_centroid(np.zeros((3, 3), bool))
    with pytest.raises(ValueError):
        grasp_point(np.zeros((3, 3), bool))


def test_depth_in_millimetres_becomes_metres_with_zero_as_missing():
    mm = np.array([[0, 1500], [65535, 1000]], np.uint16)
    out = depth_to_metres(mm, "16UC1")
    assert out.dtype == np.float32
    assert (
        np.isnan(out[0, 0])
        and out[0, 1] == pytest.approx(1.5)
        and out[1, 0] == pytest.approx(65.535)
    )
    assert out[1, 1] == pytest.approx(1.0)
    m = np.array([[0.0, np.nan, np.inf, -1.0, 2.0]], np.float32)
    out = depth_to_metres(m, "32FC1")
    assert np.isnan(out[0, :4]).all() and out[0, 4] == 2.0
    assert m[0, 4] == 2.0 and m[0, 0] == 0.0  # input untouched
    with pytest.raises(ValueError):
        depth_to_metres(mm, "rgb8")


def test_centroid_3d_median_over_eroded_mask_and_back_projection():
    m = square()
    depth = np.full(m.shape, 5.0, np.float32)  # background
    depth[m] = 10.0  # mask edge bleeds into the background...
    depth[12:15, 22:25] = 2.0  # ...the eroded (erode 2 -> rows 12..14, cols 22..24) core is 2 m
    depth[13, 23] = np.nan  # invalid pixels are ignored
    x, y, z = centroid_3d(m, depth, fx=500.0, fy=400.0, cx=20.0, cy=15.0, erode_px=2)
    # Z = 2; (u, v) = (23, 13): X = (23 − 20)·2/500 = .012, Y = (13 − 15)·2/400 = −.01
    assert (x, y, z) == pytest.approx((0.012, -0.01, 2.0))
    # without erosion the 40 edge pixels at 10 m outnumber the 8 valid core pixels
    assert centroid_3d(m, depth, 500.0, 400.0, 20.0, 15.0, erode_px=0)[2] == pytest.approx(10.0)


def test_centroid_3d_falls_back_to_the_uneroded_mask_for_thin_objects():
    m = np.zeros((10, 10), bool)
    m[5, 2:8] = True  # one pixel thick: erosion empties it
    depth = np.full((10, 10), np.nan, np.float32)
    depth[5, 2:8] = [1.0, 1.0, 3.0, 3.0, 3.0, 9.0]
    x, y, z = centroid_3d(m, depth, 100.0, 100.0, 5.0, 5.0)
    assert z == pytest.approx(3.0)
    assert (x, y) == pytest.approx(((4.5 - 5.0) * 3.0 / 100.0, 0.0))


def test_centroid_3d_none_without_depth_or_intrinsics():
    m = square()
    nan = np.full(m.shape, np.nan, np.float32)
    assert centroid_3d(m, nan, 500.0, 500.0, 20.0, 15.0) is None
    ones = np.ones(m.shape, np.float32)
    assert centroid_3d(m, ones, 0.0, 500.0, 20.0, 15.0) is None
    assert centroid_3d(m, ones, 500.0, -1.0, 20.0, 15.0) is None
    with pytest.raises(ValueError):
        centroid_3d(m, ones[:-1], 500.0, 500.0, 20.0, 15.0)


def test_grasp_point_plateau_picks_its_middle():
    m = np.zeros((9, 30), bool)
    m[2:7, 3:25] = True  # 5 rows: ridge on row 4 from col 5 to col 22 -> middle col 13.5 -> 13
    assert grasp_point(m) == (13, 4)
