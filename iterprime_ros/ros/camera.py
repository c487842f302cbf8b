"""Pixels + depth -> 3-D camera-frame points by image_geometry's PinholeCameraModel rules.

Why not just K: a driver that bins, crops (ROI) or publishes rectified images gives K and P for
the full sensor; using them as they are puts the point in the wrong place. The rules here are
image_geometry's (fromCameraInfo): binning 0 means 1, an all-zero ROI means the full image, and
the principal point moves by the ROI offset before fx, fy, cx, cy (and Tx, Ty) are divided by
the binning. A rectified image is back-projected through P; a raw one through K, with the
distortion undone by OpenCV (plumb_bob, rational_polynomial, equidistant). A raw image with
another distortion model is refused with a reason, never silently treated as undistorted.
``image_geometry`` is used for the binning/ROI arithmetic when it is importable (apt installs);
the same arithmetic is written here for the wheel-only install (test_ros_camera.py checks it).
A stream resized after calibration (image size differs from the binned ROI) is scaled with
pixel centres at integers, as before this module existed.

No rclpy here: CameraInfo is duck-typed (rclpy or rosbags messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# distortion_model -> how many coefficients OpenCV needs at most, and which OpenCV family
_PLUMB_BOB = ("plumb_bob", "rational_polynomial")
_EQUIDISTANT = ("equidistant", "fisheye")


class CameraModelError(ValueError):
    """The CameraInfo cannot be used for this image (uncalibrated, unsupported distortion)."""


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics ready for this image: K (raw) or P (rectified), binning/ROI/resize applied.

    rectified: back-project through P (fx, fy, cx, cy, tx, ty from P); else through K with the
    distortion (dist, model) undone. tx/ty are P[0,3]/P[1,3] (nonzero for a stereo right camera).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    rectified: bool
    tx: float = 0.0
    ty: float = 0.0
    dist: tuple[float, ...] = ()
    model: str = ""

    def normalised(self, uv: np.ndarray) -> np.ndarray:
        """N x 2 pixels -> N x 2 (X/Z, Y/Z) for a point at depth Z = 1 (before Tx, Ty)."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if self.rectified or not any(self.dist):
            return np.column_stack(
                ((uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy)
            )
        k = np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
        pts = uv.reshape(-1, 1, 2)
        if self.model in _EQUIDISTANT:
            d = np.array((list(self.dist) + [0.0] * 4)[:4], dtype=np.float64)
            out = cv2.fisheye.undistortPoints(pts, k, d)
        else:
            out = cv2.undistortPoints(
                pts, k, np.array(self.dist, dtype=np.float64), None, None, None
            )
        return out.reshape(-1, 2)

    def back_project(self, uv: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """N x 2 pixels and their depths (metres along the optical axis) -> N x 3 points.

        For P: u = (fx X + Tx) / Z + cx, so X = ((u - cx) Z - Tx) / fx (likewise Y with Ty).
        """
        xy = self.normalised(uv)
        z = np.broadcast_to(np.asarray(z, dtype=np.float64), (xy.shape[0],))
        x = xy[:, 0] * z - self.tx / self.fx
        y = xy[:, 1] * z - self.ty / self.fy
        return np.column_stack((x, y, z))


def _matrices(info: Any) -> tuple[np.ndarray, np.ndarray]:
    """K (3x3) and P (3x4) of the info, binning and ROI applied (image_geometry when present)."""
    try:  # apt ROS installs: the reference implementation
        from image_geometry import PinholeCameraModel  # type: ignore[import-not-found]
    except ImportError:
        return adjusted_matrices(info)
    model = PinholeCameraModel()
    (getattr(model, "from_camera_info", None) or model.fromCameraInfo)(info)
    k = getattr(model, "intrinsic_matrix", None) or model.intrinsicMatrix
    p = getattr(model, "projection_matrix", None) or model.projectionMatrix
    return np.asarray(k(), float).reshape(3, 3), np.asarray(p(), float).reshape(3, 4)


def adjusted_matrices(info: Any) -> tuple[np.ndarray, np.ndarray]:
    """image_geometry's fromCameraInfo arithmetic: principal point minus the ROI offset, then
    fx, fy, cx, cy (K and P) divided by the binning. Binning 0 counts as 1.
    """
    k = np.array([float(v) for v in info.k], dtype=np.float64)
    # P is optional for raw images (some hand-made infos carry only K); zeros = "no P"
    p_values = getattr(info, "p", None)
    p = np.array([float(v) for v in ([0.0] * 12 if p_values is None else p_values)], np.float64)
    if k.size != 9:
        raise CameraModelError(f"camera_info K must have 9 values, got {k.size}")
    if p.size != 12:
        raise CameraModelError(f"camera_info P must have 12 values, got {p.size}")
    k, p = k.reshape(3, 3), p.reshape(3, 4)
    bx = max(1, int(getattr(info, "binning_x", 0) or 0))
    by = max(1, int(getattr(info, "binning_y", 0) or 0))
    roi = getattr(info, "roi", None)
    ox = int(getattr(roi, "x_offset", 0) or 0)
    oy = int(getattr(roi, "y_offset", 0) or 0)
    for m in (k, p):
        m[0, 2] -= ox
        m[1, 2] -= oy
        m[0, :] /= bx  # row 0 beyond [0,0] and [0,2] is 0 in K and Tx in P: Tx scales too
        m[1, :] /= by
    return k, p


def expected_size(info: Any) -> tuple[int, int]:
    """(width, height) of the images this info describes: the ROI (or full image) over binning."""
    bx = max(1, int(getattr(info, "binning_x", 0) or 0))
    by = max(1, int(getattr(info, "binning_y", 0) or 0))
    roi = getattr(info, "roi", None)
    w, h = int(getattr(roi, "width", 0) or 0), int(getattr(roi, "height", 0) or 0)
    ox, oy = int(getattr(roi, "x_offset", 0) or 0), int(getattr(roi, "y_offset", 0) or 0)
    if w == 0 and h == 0 and ox == 0 and oy == 0:
        w, h = int(info.width), int(info.height)
    return w // bx, h // by


def camera_model(info: Any, width: int, height: int, rectified: bool) -> CameraModel:
    """The CameraModel for an image of width x height described by `info`.

    CameraModelError: an uncalibrated info (fx or fy not positive), or a raw image whose
    distortion model is not one OpenCV can undo.
    """
    k, p = _matrices(info)
    m = p if rectified else k
    fx, fy, cx, cy = float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2])
    tx, ty = (float(p[0, 3]), float(p[1, 3])) if rectified else (0.0, 0.0)
    which = "P" if rectified else "K"
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, cx, cy, tx, ty]).all()):
        raise CameraModelError(
            f"camera_info {which} has no valid focal lengths (fx={fx}, fy={fy}): "
            "uncalibrated camera"
            + (" (or a raw-only driver: set image_rectified false)" if rectified else "")
        )
    ew, eh = expected_size(info)
    if ew > 0 and eh > 0 and (ew, eh) != (width, height):
        sx, sy = width / ew, height / eh  # pixel centres at integers: u' = (u + 0.5) s - 0.5
        fx, cx, tx = fx * sx, (cx + 0.5) * sx - 0.5, tx * sx
        fy, cy, ty = fy * sy, (cy + 0.5) * sy - 0.5, ty * sy
    d_values = getattr(info, "d", None)
    dist = tuple(float(v) for v in (() if d_values is None else d_values))
    model = str(getattr(info, "distortion_model", "") or "")
    if not rectified and any(dist):
        if model not in _PLUMB_BOB + _EQUIDISTANT:
            raise CameraModelError(
                f"distortion model {model!r} with nonzero coefficients is not supported for raw "
                f"images (supported: {', '.join(_PLUMB_BOB + _EQUIDISTANT)}); publish rectified "
                "images and set image_rectified true"
            )
        if model in _PLUMB_BOB and len(dist) not in (4, 5, 8, 12, 14):
            raise CameraModelError(
                f"distortion model {model!r} with {len(dist)} coefficients (OpenCV takes 4, 5, "
                "8, 12 or 14)"
            )
    return CameraModel(fx, fy, cx, cy, rectified, tx, ty, dist, model)
