"""The image-size rule on messages and results (iterprime_ros/ros/sizing.py), without ROS."""

from __future__ import annotations

import numpy as np
import pytest

from iterprime_ros.core.geometry import grasp_point, mask_bbox, mask_centroid
from iterprime_ros.image_size import ImageTooLargeError
from iterprime_ros.pipeline import SegmentationResult
from iterprime_ros.ros.conversions import image_to_rgb, rgb_to_fields
from iterprime_ros.ros.sizing import result_at_source, rgb_for_models, size_plan


class Msg:
    """A stand-in for sensor_msgs/Image (the conversions are duck-typed)."""

    def __init__(self, rgb: np.ndarray, encoding: str = "bgr8") -> None:
        for k, v in rgb_to_fields(rgb, encoding).items():
            setattr(self, k, v)


def test_small_images_pass_unchanged():
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    sizes = size_plan(Msg(rgb), 10_000)
    assert not sizes.downscaled
    np.testing.assert_array_equal(rgb_for_models(Msg(rgb), sizes), rgb)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "bgra8", "mono8"])
def test_big_images_are_shrunk_straight_from_the_message(encoding):
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[:150] = (200, 40, 10)
    msg = Msg(rgb, encoding)
    sizes = size_plan(msg, 300 * 400 // 4)
    assert sizes.downscaled and sizes.model_size == (150, 200)
    small = rgb_for_models(msg, sizes)
    full = image_to_rgb(msg)
    assert small.shape == (150, 200, 3)
    np.testing.assert_array_equal(small[10, 10], full[10, 10])  # same colours, same order
    np.testing.assert_array_equal(small[-10, -10], full[-10, -10])


def test_far_too_big_is_refused():
    msg = Msg(np.zeros((400, 400, 3), np.uint8))
    with pytest.raises(ImageTooLargeError, match="refused"):
        size_plan(msg, 400 * 400 // 17)


def test_result_is_given_at_the_source_resolution():
    model_mask = np.zeros((50, 80), bool)
    model_mask[10:30, 20:60] = True
    result = SegmentationResult(
        success=True,
        error="",
        command="the box",
        mask=model_mask,
        centroid=mask_centroid(model_mask),
        grasp_point=grasp_point(model_mask),
        bbox=mask_bbox(model_mask),
        heatmap=np.zeros((50, 80), np.float32),
    )
    msg = Msg(np.zeros((200, 320, 3), np.uint8))
    sizes = size_plan(msg, 50 * 80)
    assert sizes.model_size == (50, 80)
    out = result_at_source(result, sizes)
    assert out.mask.shape == (200, 320)
    assert out.bbox == mask_bbox(out.mask) == (80, 40, 160, 80)
    assert out.centroid == pytest.approx(mask_centroid(out.mask))
    u, v = out.grasp_point
    assert out.mask[v, u], "the grasp point stays inside the full-size mask"
    assert out.image_size == (200, 320) and out.heatmap is None
    assert result_at_source(result, size_plan(Msg(np.zeros((50, 80, 3), np.uint8)), 0)) is result


def test_compressed_images_follow_the_same_size_rule():
    """A PNG CompressedImage: sized from its header, decoded, shrunk like a raw frame, refused
    when far too big (before decoding), and garbage is a clear error.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage

    from iterprime_ros.ros.conversions import ImageConversionError
    from iterprime_ros.ros.sizing import compressed_for_models

    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[:150] = (200, 40, 10)
    msg = CompressedImage(format="png")
    msg.data = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    same, sizes = compressed_for_models(msg, 10**6)
    assert not sizes.downscaled
    np.testing.assert_array_equal(same, rgb)
    small, sizes = compressed_for_models(msg, 300 * 400 // 4)
    assert sizes.downscaled and small.shape == (150, 200, 3)
    np.testing.assert_array_equal(small[10, 10], (200, 40, 10))
    with pytest.raises(ImageTooLargeError, match="refused"):
        compressed_for_models(msg, 300 * 400 // 17)
    with pytest.raises(ImageConversionError, match="cannot be decoded"):
        compressed_for_models(CompressedImage(format="jpeg", data=b"\x00" * 10), 10**6)
