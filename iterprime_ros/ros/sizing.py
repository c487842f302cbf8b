"""The image-size rule (image_size.py) applied to the node's messages and results.

Why here: a frame over max_image_pixels is shrunk straight from the message's bytes (no
full-size RGB copy), the models run on the small image, and the answer is given at the source
resolution (image_size.result_to_source). No rclpy here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..image_size import SizePlan, check_bytes, downscale, plan, result_to_source
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


def result_at_source(result: SegmentationResult, sizes: SizePlan) -> SegmentationResult:
    """The model-size result with its mask and geometry at the source resolution (the shared
    rule in image_size.py; the heat map is dropped: the node never sends it).
    """
    if not result.success or result.mask is None:
        return result
    return result_to_source(result, sizes, heatmap=False)
