"""The debug overlay shared by `iterprime segment --out` and the node's ~/debug_image."""

from __future__ import annotations

import numpy as np
import pytest

from iterprime_ros.overlay import render_overlay
from iterprime_ros.pipeline import SegmentationResult


def _result(success: bool = True) -> SegmentationResult:
    h, w = 60, 80
    mask = np.zeros((h, w), bool)
    mask[20:40, 30:60] = True
    heat = np.zeros((h, w), np.float32)
    heat[25:35, 35:55] = 1.0
    if not success:
        return SegmentationResult(
            False,
            "nothing selected: no proposal covers the heat-map peak",
            "the cup",
            expression="the cup",
            heatmap=heat,
        )
    return SegmentationResult(
        True,
        "",
        "pick up the cup",
        expression="the cup",
        mask=mask,
        heatmap=heat,
        centroid=(44.5, 29.5),
        grasp_point=(44, 29),
        bbox=(30, 20, 30, 20),
    )


def test_overlay_draws_on_a_bgr_copy():
    image = np.full((60, 80, 3), 100, np.uint8)
    image[..., 0] = 200  # red in RGB
    out = render_overlay(image, _result())
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image[..., 0], np.full((60, 80), 200, np.uint8))  # input untouched
    assert not np.array_equal(out[25:35, 35:55], out[50:55, 5:10])  # heat + mask drawn
    assert (
        out[50, 75, 2] > out[50, 75, 1]
    )  # BGR: red channel last; far from the mask only the heat tint
    # the expression label is drawn top-left on a dark box
    assert out[2:20, 2:60].mean() < image.mean()


def test_overlay_of_a_failure_and_of_bare_parts():
    image = np.zeros((60, 80, 3), np.uint8)
    out = render_overlay(image, _result(success=False))
    assert out.shape == (60, 80, 3) and out.any()
    bare = render_overlay(image, text="caf\u00e9 \u2615")  # non-ASCII text must not crash cv2
    assert bare.shape == (60, 80, 3)
    with pytest.raises(ValueError):
        render_overlay(np.zeros((60, 80), np.uint8))


def test_small_frames_are_enlarged_for_files_with_everything_in_place():
    image = np.full((60, 80, 3), 100, np.uint8)
    result = _result()
    small = render_overlay(image, result, text="")
    big = render_overlay(image, result, text="", min_side=384)
    k = 7  # ceil(384 / 60)
    assert big.shape == (60 * k, 80 * k, 3)
    assert render_overlay(image, result, min_side=60).shape == image.shape, "already large enough"
    # Mask outline: the mask drawn at k times the size lands where the enlarged mask is.
    green = (big[..., 1] > 200) & (big[..., 0] < 100) & (big[..., 2] < 100)
    ys, xs = np.nonzero(green)
    assert (ys.min(), xs.min()) == (20 * k, 30 * k) and (ys.max(), xs.max()) == (
        40 * k - 1,
        60 * k - 1,
    )
    # The grasp cross (red in BGR) sits on the enlarged grasp pixel's centre block.
    gy, gx = 29 * k + k // 2, 44 * k + k // 2
    assert big[gy, gx, 2] > 200 and big[gy, gx, 1] < 80
    # Far from the marks the pixels are the small overlay's, repeated k x k.
    np.testing.assert_array_equal(big[50 * k : 55 * k : k, 5 * k : 10 * k : k], small[50:55, 5:10])
