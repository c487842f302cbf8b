"""Camera test data shared by the node and sensor tests: a textured picture, and the documented
3-D centroid rule computed independently of the code under test.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def textured_picture(h: int, w: int, seed: int) -> np.ndarray:
    """Random rgb8 texture with a red box at rows 10-30, columns 12-40 (the tiny Mask2Former then
    gives partial masks).
    """
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img[10:30, 12:40] = (220, 30, 30)
    return img


def expected_centroid_3d(
    mask: np.ndarray,
    depth_m: np.ndarray,
    erode_px: int,
    k: tuple[float, float, float, float],
) -> tuple[float, float, float]:
    """The documented rule, computed independently of the node: Z = median of the valid depth over
    the mask eroded by a (2 erode_px + 1)^2 square (outside the image counts as background; the
    mask itself if erosion empties it); the mask's centre of mass (u, v) back-projected with
    k = (fx, fy, cx, cy): X = (u - cx) Z / fx, Y = (v - cy) Z / fy.
    """
    fx, fy, cx, cy = k
    eroded = ndimage.binary_erosion(mask, np.ones((2 * erode_px + 1,) * 2, bool), border_value=0)
    region = eroded if eroded.any() else mask
    vals = depth_m[region]
    z = float(np.median(vals[np.isfinite(vals) & (vals > 0)]))
    v, u = np.nonzero(mask)
    return (u.mean() - cx) * z / fx, (v.mean() - cy) * z / fy, z
