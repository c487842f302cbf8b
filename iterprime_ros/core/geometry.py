"""Where the chosen mask is: centroid, a grasp point inside it, bbox and a 3-D centroid.

Why: a robot needs a point, not a mask. The centre of mass can fall outside a curved object
(a banana, a mug handle), so the grasp point is the interior pixel farthest from the boundary.
The 3-D centroid uses the median depth over an eroded mask because mask edges often land on
the background and depth there is wrong or missing.
"""

from __future__ import annotations

import cv2
import numpy as np


def _check_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {m.shape}")
    if not m.any():
        raise ValueError("mask is empty")
    return m


def mask_centroid(mask: np.ndarray) -> tuple[float, float]:
    """(u, v) = mean column and mean row of the mask's pixels (pixel centres at integers)."""
    v, u = np.nonzero(_check_mask(mask))
    return float(u.mean()), float(v.mean())


def grasp_point(mask: np.ndarray) -> tuple[int, int]:
    """(u, v) of the mask pixel farthest from the background (exact Euclidean distance transform).

    The image border counts as background (the mask is zero-padded), so a mask cut by the
    frame does not put its grasp point on the edge. Ties (a plateau, e.g. along a rectangle's
    ridge): the tied pixel nearest the plateau's centre, then the first in row-major order.
    """
    m = _check_mask(mask)
    padded = np.pad(m, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    vs, us = np.nonzero(dist == dist.max())
    k = int(np.argmin((us - us.mean()) ** 2 + (vs - vs.mean()) ** 2))
    return int(us[k]), int(vs[k])


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the tightest box around the mask, inclusive of its edge pixels."""
    m = _check_mask(mask)
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    x, y = int(cols[0]), int(rows[0])
    return x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Depth image -> float32 metres, NaN where invalid (0, NaN, inf or negative).

    16UC1 / mono16: millimetres (ROS convention); 32FC1: metres.
    """
    d = np.asarray(depth)
    enc = encoding.upper()
    if enc in ("16UC1", "MONO16"):
        out = d.astype(np.float32) / 1000.0
    elif enc == "32FC1":
        out = d.astype(np.float32, copy=True)
    else:
        raise ValueError(f"unsupported depth encoding {encoding!r} (16UC1 in mm or 32FC1 in m)")
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def mask_core(mask: np.ndarray, erode_px: int) -> np.ndarray:
    """The mask eroded by a (2e+1)^2 square (outside the image is background), or the mask itself
    when the erosion would empty it: where depth belongs to the object, not to what is behind.
    """
    m = _check_mask(mask)
    if erode_px <= 0:
        return m
    kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
    eroded = cv2.erode(
        m.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
    ).astype(bool)
    return eroded if eroded.any() else m


def centroid_pixel_depth(
    mask: np.ndarray, depth_m: np.ndarray, erode_px: int = 2
) -> tuple[float, float, float] | None:
    """The 3-D centroid rule: (u, v, Z), the pixel to back-project and its depth, or None
    without valid depth in the mask.

    Z is the median of the valid depth (finite, positive; metres) over the mask eroded by
    erode_px (the un-eroded mask if the erosion empties it); (u, v) is the mask's 2-D centroid.
    Every 3-D centroid (commands, tracking, replay) is this pixel at this depth, back-projected
    through the camera model at hand.
    """
    m = _check_mask(mask)
    d = np.asarray(depth_m, dtype=np.float32)
    if d.shape != m.shape:
        raise ValueError(f"depth {d.shape} and mask {m.shape} differ in size")
    values = d[mask_core(m, erode_px)]
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return None
    u, v = mask_centroid(m)
    return u, v, float(np.median(values))


def centroid_3d(
    mask: np.ndarray,
    depth_m: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    erode_px: int = 2,
) -> tuple[float, float, float] | None:
    """3-D centroid in the camera frame (metres) through a pinhole camera, or None without valid
    depth or intrinsics: centroid_pixel_depth's (u, v, Z) with X = (u - cx)·Z/fx and
    Y = (v - cy)·Z/fy.
    """
    m = _check_mask(mask)
    if not (fx > 0 and fy > 0):
        return None
    found = centroid_pixel_depth(m, depth_m, erode_px)
    if found is None:
        return None
    u, v, z = found
    return (u - cx) * z / fx, (v - cy) * z / fy, z
