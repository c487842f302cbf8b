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


def plan(height: int, width: int, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SizePlan:
    """The size plan for an image, or ImageTooLargeError (max_image_pixels <= 0: no limit)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels ({width} x {height})")
    pixels = height * width
    if max_image_pixels <= 0 or pixels <= max_image_pixels:
        return SizePlan(height, width, 1.0)
    if pixels > max_image_pixels * REFUSE_FACTOR:
        raise ImageTooLargeError(
            f"image of {width} x {height} ({pixels / 1e6:.1f} MP) is over "
            f"{REFUSE_FACTOR} x max_image_pixels ({max_image_pixels / 1e6:.1f} MP); refused"
        )
    return SizePlan(height, width, math.sqrt(max_image_pixels / pixels))


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


def result_to_source(result: Any, size_plan: SizePlan) -> Any:
    """A pipeline SegmentationResult computed on the downscaled image, at the source size:
    mask back by nearest neighbour, then centroid and bbox from that mask; the grasp point and
    the heat map scaled.
    """
    if not size_plan.downscaled:
        return result
    import cv2

    h, w = size_plan.height, size_plan.width
    mh, mw = size_plan.model_size
    sx, sy = w / mw, h / mh
    changes: dict[str, Any] = {"image_size": (h, w)}
    mask = getattr(result, "mask", None)
    if mask is not None:
        full = mask_to_source(mask, size_plan)
        changes["mask"] = full
        v, u = np.nonzero(full)
        if u.size:
            changes["centroid"] = (float(u.mean()), float(v.mean()))
            x0, y0 = int(u.min()), int(v.min())
            changes["bbox"] = (x0, y0, int(u.max()) - x0 + 1, int(v.max()) - y0 + 1)
    if getattr(result, "grasp_point", None) is not None:
        gu, gv = result.grasp_point
        changes["grasp_point"] = (min(w - 1, int(gu * sx)), min(h - 1, int(gv * sy)))
    heat = getattr(result, "heatmap", None)
    if heat is not None:
        changes["heatmap"] = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    return dataclasses.replace(result, **changes)
