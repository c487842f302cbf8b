"""The object in 3-D: centroid, grasp point and box from the mask and depth, then in target_frame.

Why these three: a planner needs where the object is (centroid), where to reach (grasp point:
the interior pixel, at the surface depth there) and how big it is (box). Rules, in the camera
frame (camera.py back-projects):
* centroid: the mask's 2-D centroid at the median valid depth over the eroded mask
  (core.geometry.centroid_pixel_depth, the one rule every 3-D centroid follows: commands here,
  tracking and replay through compute_centroid_3d; edges often hit the background);
* grasp point: the grasp pixel at the median valid depth of the mask within GRASP_WINDOW_PX of
  it (the object's median where none is valid);
* box: the mask pixels whose depth lies within the eroded core's 2nd-98th percentile depth
  (+-BOX_MARGIN_M), back-projected; their axis-aligned box.
In target_frame the centroid and grasp point are transformed and the box is the axis-aligned
box around the 8 transformed corners (looser than the object when the frames are rotated).
Failures keep the 2-D answer: each one is a reason string (Segmentation.error_3d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.geometry import centroid_pixel_depth, depth_to_metres, mask_centroid, mask_core
from .camera import CameraModel, CameraModelError, camera_model
from .conversions import ImageConversionError, depth_to_array
from .transforms import FrameTransformer, TransformUnavailable, box_corners, enclosing_box

GRASP_WINDOW_PX = 2  # a (2r+1)^2 window of depth around the grasp pixel
BOX_MARGIN_M = 0.01
BOX_PERCENTILES = (2.0, 98.0)
MAX_BOX_POINTS = 50_000  # more mask pixels are subsampled evenly (the box barely changes)

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Object3D:
    """The object's 3-D centroid, grasp point and axis-aligned box in frame_id (metres)."""

    frame_id: str
    centroid: Vec3
    grasp_point: Vec3
    box_centre: Vec3
    box_size: Vec3


@dataclass(frozen=True)
class Located:
    """The 3-D part of an answer: in the camera frame, in target_frame, or why not."""

    camera: Object3D | None = None
    target: Object3D | None = None  # set only when target_frame is set and the transform exists
    depth_stamp: Any = None  # builtin_interfaces/Time of the depth frame used
    error: str = ""

    @property
    def output(self) -> Object3D | None:
        """What the standard outputs carry: target_frame's object when asked for, else the
        camera's (None when target_frame was asked for and failed, or there is no 3-D at all).
        """
        return self.target if self.target is not None else (None if self.error else self.camera)


def _vec(a: np.ndarray) -> Vec3:
    return float(a[0]), float(a[1]), float(a[2])


def _depth_and_camera(
    depth_msg: Any, info: Any, shape: tuple[int, int], rectified: bool
) -> tuple[np.ndarray, CameraModel] | str:
    """(depth in metres, camera model) for a mask of `shape`, or why there is no 3-D."""
    if depth_msg is None:
        return "no depth frame matching the image"
    if info is None:
        return "no camera_info received"
    try:
        depth_m = depth_to_metres(depth_to_array(depth_msg), str(depth_msg.encoding))
        h, w = shape
        if depth_m.shape != (h, w):
            return (
                f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but the image is {w}x{h} "
                "(use depth aligned to the colour image)"
            )
        return depth_m, camera_model(info, w, h, rectified)
    except (ImageConversionError, CameraModelError, ValueError) as exc:
        return str(exc)


def _centroid(m: np.ndarray, depth_m: np.ndarray, cam: CameraModel, erode_px: int) -> Vec3 | None:
    """The rule's pixel and depth (core.geometry.centroid_pixel_depth) through the camera model."""
    found = centroid_pixel_depth(m, depth_m, erode_px)
    if found is None:
        return None
    u, v, z = found
    return _vec(cam.back_project(np.array([(u, v)]), z)[0])


@dataclass(frozen=True)
class Centroid3D:
    """A 3-D centroid, or None with the reason (logged; the result still succeeds in 2-D)."""

    point: Vec3 | None
    reason: str = ""


def compute_centroid_3d(
    mask: np.ndarray, depth_msg: Any, info: Any, erode_px: int, *, rectified: bool
) -> Centroid3D:
    """The 3-D centroid alone (tracking and replay), by the same rule as object_in_camera's.

    `rectified` has no default: the node's `image_rectified` decides whether the pixel is
    back-projected through camera_info's P or K, and a caller that forgot it would place a
    rectified camera's object elsewhere than the command path does.
    """
    m = np.asarray(mask).astype(bool)
    found = _depth_and_camera(depth_msg, info, m.shape, rectified)
    if isinstance(found, str):
        return Centroid3D(None, found)
    point = _centroid(m, *found, erode_px)
    return Centroid3D(point, "" if point is not None else "no valid depth inside the mask")


def object_in_camera(
    mask: np.ndarray,
    grasp_px: tuple[float, float] | None,
    depth_msg: Any,
    info: Any,
    erode_px: int,
    rectified: bool = False,
) -> tuple[Object3D | None, str]:
    """(the object in the camera frame, "") or (None, why not)."""
    m = np.asarray(mask).astype(bool)
    found = _depth_and_camera(depth_msg, info, m.shape, rectified)
    if isinstance(found, str):
        return None, found
    depth_m, cam = found
    centroid = _centroid(m, depth_m, cam, erode_px)
    if centroid is None:
        return None, "no valid depth inside the mask"
    valid = np.isfinite(depth_m)
    core_z = depth_m[mask_core(m, erode_px) & valid]

    gu, gv = grasp_px if grasp_px is not None else mask_centroid(m)
    r = GRASP_WINDOW_PX
    v0, u0 = max(0, int(round(gv)) - r), max(0, int(round(gu)) - r)
    window = (m & valid)[v0 : int(round(gv)) + r + 1, u0 : int(round(gu)) + r + 1]
    gz = depth_m[v0 : v0 + window.shape[0], u0 : u0 + window.shape[1]][window]
    z = centroid[2]
    grasp = cam.back_project(np.array([(gu, gv)]), float(np.median(gz)) if gz.size else z)[0]

    lo, hi = np.percentile(core_z, BOX_PERCENTILES)
    body = m & valid & (depth_m >= lo - BOX_MARGIN_M) & (depth_m <= hi + BOX_MARGIN_M)
    vs, us = np.nonzero(body)
    step = max(1, int(np.ceil(vs.size / MAX_BOX_POINTS)))
    vs, us = vs[::step], us[::step]
    points = cam.back_project(np.column_stack((us, vs)), depth_m[vs, us])
    centre, size = enclosing_box(points)
    frame = ""
    header = getattr(depth_msg, "header", None)
    if header is not None:
        frame = str(header.frame_id)
    return Object3D(frame, centroid, _vec(grasp), _vec(centre), _vec(size)), ""


def to_target(obj: Object3D, transformer: FrameTransformer, frame_id: str, stamp: Any) -> Object3D:
    """The object in transformer.target_frame at `stamp`; TransformUnavailable says why not."""
    if frame_id == transformer.target_frame:
        return Object3D(frame_id, obj.centroid, obj.grasp_point, obj.box_centre, obj.box_size)
    ts = transformer.lookup(frame_id, stamp)
    corners = box_corners(np.array(obj.box_centre), np.array(obj.box_size))
    pts = transformer.points(ts, np.vstack([obj.centroid, obj.grasp_point, corners]))
    if not np.isfinite(pts).all():
        raise TransformUnavailable("the transform gave non-finite coordinates")
    centre, size = enclosing_box(pts[2:])
    return Object3D(transformer.target_frame, _vec(pts[0]), _vec(pts[1]), _vec(centre), _vec(size))


def locate(
    mask: np.ndarray,
    grasp_px: tuple[float, float] | None,
    image_header: Any,
    depth_msg: Any,
    info: Any,
    erode_px: int,
    rectified: bool = False,
    transformer: FrameTransformer | None = None,
    no_match_reason: str = "",
) -> Located:
    """The whole 3-D part of one answer (depth/info already matched to the image)."""
    if depth_msg is None:
        return Located(error=no_match_reason or "no depth frame matching the image")
    obj, why = object_in_camera(mask, grasp_px, depth_msg, info, erode_px, rectified)
    stamp = depth_msg.header.stamp
    if obj is None:
        return Located(depth_stamp=stamp, error=why)
    frame = str(image_header.frame_id) or obj.frame_id
    obj = Object3D(frame, obj.centroid, obj.grasp_point, obj.box_centre, obj.box_size)
    if transformer is None or not transformer.target_frame:
        return Located(camera=obj, depth_stamp=stamp)
    try:
        target = to_target(obj, transformer, frame, image_header.stamp)
    except TransformUnavailable as exc:
        return Located(camera=obj, depth_stamp=stamp, error=str(exc))
    return Located(camera=obj, target=target, depth_stamp=stamp)
