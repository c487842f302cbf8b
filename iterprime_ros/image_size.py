"""One image-size rule for the node, `iterprime segment`, replay and eval.

Why: one huge frame (an 8000 x 8000 camera mistake, a 30000 x 30000 PNG bomb) must not take the
process to many GB or a traceback. Images up to `max_image_pixels` run at full size. Bigger ones
up to REFUSE_FACTOR times that are downscaled for the models (area kept under the limit) and the
mask is scaled back to the source size; anything bigger is refused with a one-line message,
before decoding where the format allows (`check_file`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

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
        raise ImageTooLargeError(f"{path}: {exc}") from None
    return plan(height, width, max_image_pixels)
