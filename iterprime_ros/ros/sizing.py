"""The image-size rule (image_size.py) applied to the node's messages and results.

Why here: a frame over max_image_pixels is shrunk straight from the message's bytes (no
full-size RGB copy), the models run on the small image, and the answer is given at the source
resolution: the mask scaled back (nearest neighbour), centroid and box from the full-size mask
with memory-light sums, the grasp point scaled and kept inside the mask. No rclpy here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..core.geometry import mask_bbox
from ..image_size import SizePlan, check_bytes, downscale, mask_to_source, plan
from ..pipeline import SegmentationResult
from .conversions import compressed_to_rgb, image_to_rgb


def size_plan(msg: Any, max_image_pixels: int) -> SizePlan:
    """How this Image message is handled: ImageTooLargeError (refused), ValueError (no pixels)."""
    return plan(int(msg.height), int(msg.width), max_image_pixels)


def rgb_for_models(msg: Any, sizes: SizePlan) -> np.ndarray:
    """The RGB image the models see: the message itself, or shrunk on the way (INTER_AREA)."""
    return image_to_rgb(msg, sizes.model_size if sizes.downscaled else None)


def compressed_for_models(msg: Any, max_image_pixels: int) -> tuple[np.ndarray, SizePlan]:
    """A CompressedImage -> (the RGB the models see, its size plan). The size is read from the
    encoded header before decoding (a decompression bomb is refused: ImageTooLargeError), then
    OpenCV decodes it (ImageConversionError if it cannot) and it is shrunk like a raw frame.
    """
    sizes = check_bytes(np.asarray(msg.data, np.uint8).tobytes(), max_image_pixels)
    rgb = compressed_to_rgb(msg)
    if sizes is None:
        sizes = plan(*rgb.shape[:2], max_image_pixels)
    return (downscale(rgb, sizes) if sizes.downscaled else rgb), sizes


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    """Mean column and row of the mask's pixels, from row and column sums (no index arrays)."""
    rows = mask.sum(axis=1, dtype=np.int64)
    cols = mask.sum(axis=0, dtype=np.int64)
    n = float(rows.sum())
    return (
        float(cols @ np.arange(mask.shape[1], dtype=np.int64)) / n,
        float(rows @ np.arange(mask.shape[0], dtype=np.int64)) / n,
    )


def _inside(mask: np.ndarray, u: int, v: int, radius: int = 3) -> tuple[int, int]:
    """(u, v) if it is a mask pixel, else the nearest mask pixel within `radius` (else (u, v))."""
    h, w = mask.shape
    if mask[v, u]:
        return u, v
    y0, y1, x0, x1 = (
        max(0, v - radius),
        min(h, v + radius + 1),
        max(0, u - radius),
        min(w, u + radius + 1),
    )
    vs, us = np.nonzero(mask[y0:y1, x0:x1])
    if not len(us):
        return u, v
    k = int(np.argmin((us + x0 - u) ** 2 + (vs + y0 - v) ** 2))
    return int(us[k] + x0), int(vs[k] + y0)


def result_at_source(result: SegmentationResult, sizes: SizePlan) -> SegmentationResult:
    """The model-size result with its mask and geometry at the source resolution."""
    if not sizes.downscaled or result.mask is None or not result.success:
        return result
    mask = mask_to_source(result.mask, sizes)
    h_m, w_m = result.mask.shape
    sx, sy = sizes.width / w_m, sizes.height / h_m
    grasp = None
    if result.grasp_point is not None:
        gu = min(sizes.width - 1, max(0, round((result.grasp_point[0] + 0.5) * sx - 0.5)))
        gv = min(sizes.height - 1, max(0, round((result.grasp_point[1] + 0.5) * sy - 0.5)))
        grasp = _inside(mask, int(gu), int(gv), radius=int(max(sx, sy)) + 1)
    return replace(
        result,
        mask=mask,
        centroid=_centroid(mask),
        bbox=mask_bbox(mask),
        grasp_point=grasp,
        heatmap=None,
        image_size=(sizes.height, sizes.width),
    )
