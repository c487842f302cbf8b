"""One image-size rule for the node, `iterprime segment`, replay and eval.

Why: one huge frame (an 8000 x 8000 camera mistake, a 30000 x 30000 PNG bomb) must not take the
process to many GB or a traceback. Images up to `max_image_pixels` run at full size. Bigger ones
up to REFUSE_FACTOR times that are downscaled for the models (area kept under the limit) and the
mask is scaled back to the source size; anything bigger is refused with a one-line message,
before decoding where the format allows (`check_file`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # 16.8 MP: above any robot camera's native size
REFUSE_FACTOR = 16  # beyond max_image_pixels * REFUSE_FACTOR an image is refused, not scaled
# Stored bytes one pixel of the biggest accepted image may take (rgb8/bgr8, a colour camera's
# encodings), and room for a message's other fields or a chunk's other messages.
BYTES_PER_PIXEL = 3
READ_SLACK_BYTES = 1 << 20


class ImageTooLargeError(ValueError):
    """The image is too big to process even downscaled; the message says sizes and the limit."""


@dataclass(frozen=True)
class SizePlan:
    """How an image of (height, width) is handled: scale 1.0 = as it is."""

    height: int
    width: int
    scale: float

    @property
    def model_size(self) -> tuple[int, int]:
        """(height, width) the models see."""
        if self.scale >= 1.0:
            return self.height, self.width
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    @property
    def downscaled(self) -> bool:
        return self.scale < 1.0


def _amount(pixels: int) -> str:
    """Megapixels for camera-sized figures, the pixel count below 0.1 MP (where "0.0 MP"
    would say nothing, e.g. a limit set low in a test or an evaluation).
    """
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels:,} pixels"


def plan(height: int, width: int, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SizePlan:
    """The size plan for an image, or ImageTooLargeError (max_image_pixels <= 0: no limit)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels ({width} x {height})")
    pixels = height * width
    if max_image_pixels <= 0 or pixels <= max_image_pixels:
        return SizePlan(height, width, 1.0)
    if pixels > max_image_pixels * REFUSE_FACTOR:
        raise ImageTooLargeError(
            f"image of {width} x {height} ({_amount(pixels)}) is over "
            f"{REFUSE_FACTOR} x max_image_pixels ({_amount(max_image_pixels)}); refused"
        )
    return SizePlan(height, width, math.sqrt(max_image_pixels / pixels))


def read_limit_bytes(max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> int:
    """The most bytes one stored message, one record or one decompressed chunk may declare.

    The same rule as the pixels: a message bigger than the biggest image this rule accepts
    cannot be anything the pipeline would use, so a bag that declares more is refused before
    anything is allocated (a 32 KB file declaring a 1 GiB chunk must not take 1 GiB). 0 (no
    image limit) means no byte limit either.
    """
    if max_image_pixels <= 0:
        return 0
    return max_image_pixels * REFUSE_FACTOR * BYTES_PER_PIXEL + READ_SLACK_BYTES


def downscale(rgb: np.ndarray, size_plan: SizePlan) -> np.ndarray:
    """The image the models see (INTER_AREA: no aliasing on a big reduction)."""
    if not size_plan.downscaled:
        return rgb
    import cv2

    h, w = size_plan.model_size
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def mask_to_source(mask: np.ndarray, size_plan: SizePlan) -> np.ndarray:
    """A model-size boolean mask back at the source resolution (nearest neighbour)."""
    if not size_plan.downscaled or mask.shape == (size_plan.height, size_plan.width):
        return mask
    import cv2

    up = cv2.resize(
        mask.astype(np.uint8),
        (size_plan.width, size_plan.height),
        interpolation=cv2.INTER_NEAREST,
    )
    return up.astype(bool)


def check_file(path: str | Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SizePlan:
    """Read only the header of an image file and plan its size before it is decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # lazy: reads the header, not the pixels
            width, height = im.size
    except Image.DecompressionBombError as exc:  # PIL's own guard fires on some headers
        raise ImageTooLargeError(f"{path}: {exc} Refused.") from None
    return plan(height, width, max_image_pixels)


def check_bytes(data: bytes, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SizePlan | None:
    """`check_file` for an encoded image in memory (a CompressedImage); None when its header
    is not one PIL knows (the decoder then says what is wrong).
    """
    from io import BytesIO

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{exc} Refused.") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return plan(height, width, max_image_pixels)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    """Mean column and row of a mask's pixels from row and column sums (no index arrays: an
    8000 x 8000 mask would need 1 GB of them).
    """
    rows = mask.sum(axis=1, dtype=np.int64)
    cols = mask.sum(axis=0, dtype=np.int64)
    n = float(rows.sum())
    return (
        float(cols @ np.arange(mask.shape[1], dtype=np.int64)) / n,
        float(rows @ np.arange(mask.shape[0], dtype=np.int64)) / n,
    )


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x, y = int(cols[0]), int(rows[0])
    return x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1


def _inside(mask: np.ndarray, u: int, v: int, radius: int) -> tuple[int, int]:
    """(u, v) if it is a mask pixel, else the nearest mask pixel within `radius` (else (u, v))."""
    h, w = mask.shape
    if mask[v, u]:
        return u, v
    y0, y1 = max(0, v - radius), min(h, v + radius + 1)
    x0, x1 = max(0, u - radius), min(w, u + radius + 1)
    vs, us = np.nonzero(mask[y0:y1, x0:x1])
    if not len(us):
        return u, v
    k = int(np.argmin((us + x0 - u) ** 2 + (vs + y0 - v) ** 2))
    return int(us[k] + x0), int(vs[k] + y0)


def result_to_source(result: Any, size_plan: SizePlan, heatmap: bool = True) -> Any:
    """A pipeline SegmentationResult computed on the downscaled image, at the source size:
    mask back by nearest neighbour, then centroid and bbox from that mask (memory-light sums);
    the grasp point scaled and kept inside the mask; the heat map scaled (heatmap=False: dropped,
    as the node does, which never sends it). The candidates and answered objects of a
    conversation are brought back the same way, so every mask in one answer has one size.
    """
    if not size_plan.downscaled:
        return result
    import cv2

    h, w = size_plan.height, size_plan.width
    changes = _geometry_to_source(result, size_plan)
    changes["image_size"] = (h, w)
    for name in ("candidates", "objects"):
        if getattr(result, name, None):
            changes[name] = [
                dataclasses.replace(c, **_geometry_to_source(c, size_plan))
                for c in getattr(result, name)
            ]
    heat = getattr(result, "heatmap", None)
    if heat is not None:
        changes["heatmap"] = (
            cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR) if heatmap else None
        )
    return dataclasses.replace(result, **changes)


def _geometry_to_source(item: Any, size_plan: SizePlan) -> dict[str, Any]:
    """The mask, centroid, bbox and grasp point of a result or candidate at the source size."""
    h, w = size_plan.height, size_plan.width
    mh, mw = size_plan.model_size
    sx, sy = w / mw, h / mh
    changes: dict[str, Any] = {}
    mask = getattr(item, "mask", None)
    full = None
    if mask is not None:
        full = mask_to_source(mask, size_plan)
        changes["mask"] = full
        if full.any():
            changes["centroid"] = _centroid(full)
            changes["bbox"] = _bbox(full)
    if getattr(item, "grasp_point", None) is not None:
        gu, gv = item.grasp_point
        u = min(w - 1, max(0, round((gu + 0.5) * sx - 0.5)))
        v = min(h - 1, max(0, round((gv + 0.5) * sy - 0.5)))
        if full is not None and full.any():
            u, v = _inside(full, int(u), int(v), radius=int(max(sx, sy)) + 1)
        changes["grasp_point"] = (int(u), int(v))
    return changes
