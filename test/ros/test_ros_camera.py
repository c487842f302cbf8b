"""The camera model (iterprime_ros/ros/camera.py): image_geometry's rules for K, P, binning, ROI
and distortion, checked against forward projections computed independently (OpenCV's
projectPoints, the full-resolution matrices by hand).
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from iterprime_ros.ros.camera import (
    CameraModelError,
    adjusted_matrices,
    camera_model,
    expected_size,
)

K_FULL = [600.0, 0.0, 330.0, 0.0, 610.0, 250.0, 0.0, 0.0, 1.0]
P_FULL = [580.0, 0.0, 325.0, 0.0, 0.0, 585.0, 245.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def info(
    k=K_FULL,
    p=P_FULL,
    d=(),
    model="",
    binning=(0, 0),
    roi=(0, 0, 0, 0),
    size=(640, 480),
):
    """A duck-typed CameraInfo (field names as in sensor_msgs/CameraInfo)."""
    x_offset, y_offset, width, height = roi
    return SimpleNamespace(
        k=list(k),
        p=list(p),
        d=list(d),
        distortion_model=model,
        binning_x=binning[0],
        binning_y=binning[1],
        roi=SimpleNamespace(x_offset=x_offset, y_offset=y_offset, width=width, height=height),
        width=size[0],
        height=size[1],
    )


def test_binning_and_roi_follow_image_geometry():
    cam = info(binning=(2, 4), roi=(40, 24, 400, 320))
    k, p = adjusted_matrices(cam)
    assert (k[0, 0], k[1, 1]) == (300.0, 152.5)
    assert (k[0, 2], k[1, 2]) == ((330 - 40) / 2, (250 - 24) / 4)
    assert (p[0, 0], p[1, 1], p[0, 2], p[1, 2]) == (290.0, 146.25, (325 - 40) / 2, (245 - 24) / 4)
    assert expected_size(cam) == (200, 80)
    assert expected_size(info()) == (640, 480), "an all-zero ROI is the full image"
    assert expected_size(info(binning=(0, 0))) == (640, 480), "binning 0 counts as 1"


@pytest.mark.parametrize("rectified", [False, True])
def test_binned_roi_pixel_back_projects_like_the_full_resolution_pixel(rectified):
    """A pixel (u, v) of the binned ROI image is full-sensor pixel (u*bx + x0, v*by + y0)."""
    bx, by, x0, y0 = 2, 2, 40, 24
    cam = camera_model(info(binning=(bx, by), roi=(x0, y0, 400, 320)), 200, 160, rectified)
    m = np.array(P_FULL).reshape(3, 4) if rectified else np.array(K_FULL).reshape(3, 3)
    uv = np.array([[10.0, 20.0], [150.0, 90.0]])
    z = np.array([0.7, 1.9])
    full_u, full_v = uv[:, 0] * bx + x0, uv[:, 1] * by + y0
    expected = np.column_stack(
        ((full_u - m[0, 2]) * z / m[0, 0], (full_v - m[1, 2]) * z / m[1, 1], z)
    )
    assert cam.back_project(uv, z) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "model, dist",
    [
        ("plumb_bob", (-0.28, 0.07, 0.001, -0.0005, 0.0)),
        ("rational_polynomial", (0.1, -0.05, 0.0002, 0.0001, 0.01, 0.12, -0.03, 0.005)),
        ("equidistant", (-0.02, 0.004, -0.001, 0.0002)),
    ],
)
def test_raw_image_distortion_is_undone(model, dist):
    pts = np.array([[0.21, -0.12, 0.9], [-0.3, 0.2, 1.4], [0.0, 0.0, 2.0]])
    k = np.array(K_FULL).reshape(3, 3)
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(
            pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, np.array(dist)
        )
    else:
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), k, np.array(dist))
    cam = camera_model(info(d=dist, model=model), 640, 480, rectified=False)
    assert cam.back_project(uv.reshape(-1, 2), pts[:, 2]) == pytest.approx(pts, abs=1e-5)
    plain = camera_model(info(), 640, 480, rectified=False)
    assert not np.allclose(
        plain.back_project(uv.reshape(-1, 2), pts[:, 2])[:2], pts[:2], atol=1e-4
    )


def test_unknown_distortion_on_a_raw_image_is_refused_and_rectified_images_ignore_it():
    with pytest.raises(CameraModelError, match="distortion model 'weird'.*not supported"):
        camera_model(info(d=(0.1, 0, 0, 0, 0), model="weird"), 640, 480, rectified=False)
    with pytest.raises(CameraModelError, match="7 coefficients"):
        camera_model(info(d=(0.1,) * 7, model="plumb_bob"), 640, 480, rectified=False)
    cam = camera_model(info(d=(0.1, 0, 0, 0, 0), model="weird"), 640, 480, rectified=True)
    assert (cam.fx, cam.cx) == (580.0, 325.0)
    zero = camera_model(info(d=(0.0,) * 5, model="weird"), 640, 480, rectified=False)
    assert zero.fx == 600.0, "all-zero coefficients are no distortion, whatever the model says"


def test_stereo_right_camera_tx():
    """P of a right stereo camera: Tx = -fx * baseline; u = (fx X + Tx) / Z + cx."""
    baseline = 0.12
    p = list(P_FULL)
    p[3] = -580.0 * baseline
    cam = camera_model(info(p=p), 640, 480, rectified=True)
    x, y, z = 0.3, -0.1, 1.5
    u, v = (580.0 * x + p[3]) / z + 325.0, 585.0 * y / z + 245.0
    assert cam.back_project(np.array([[u, v]]), z)[0] == pytest.approx((x, y, z), abs=1e-9)


def test_uncalibrated_and_resized():
    with pytest.raises(CameraModelError, match="uncalibrated"):
        camera_model(info(k=[0.0] * 9), 640, 480, rectified=False)
    with pytest.raises(CameraModelError, match="P has no valid focal"):
        camera_model(info(p=[0.0] * 12), 640, 480, rectified=True)
    half = camera_model(info(), 320, 240, rectified=False)
    assert (half.fx, half.cx) == (300.0, (330 + 0.5) / 2 - 0.5)


def test_real_image_geometry_agrees():
    image_geometry = pytest.importorskip(
        "image_geometry", reason="image_geometry comes with apt ROS installs only"
    )
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    msg.k, msg.p = K_FULL, P_FULL
    msg.binning_x, msg.binning_y = 2, 2
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 40, 24, 400, 320
    model = image_geometry.PinholeCameraModel()
    model.fromCameraInfo(msg)
    k, p = adjusted_matrices(msg)
    assert np.asarray(model.intrinsicMatrix()) == pytest.approx(k)
    assert np.asarray(model.projectionMatrix()) == pytest.approx(p)
