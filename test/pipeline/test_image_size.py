"""The shared image-size rule: full size, downscaled for the models, or refused."""

import numpy as np
import pytest
from PIL import Image

from iterprime_ros import image_size
from iterprime_ros.image_size import (
    ImageTooLargeError,
    check_file,
    downscale,
    mask_to_source,
    plan,
)


def test_small_image_runs_as_it_is():
    p = plan(480, 640, max_image_pixels=640 * 480)
    assert p.scale == 1.0 and not p.downscaled and p.model_size == (480, 640)


def test_big_image_is_downscaled_under_the_limit_and_the_mask_comes_back_full_size():
    p = plan(3000, 4000, max_image_pixels=1_000_000)
    h, w = p.model_size
    assert p.downscaled and h * w <= 1_000_000 * 1.01 and abs(w / h - 4 / 3) < 0.01
    small = downscale(np.zeros((3000, 4000, 3), np.uint8), p)
    assert small.shape == (h, w, 3)
    mask = np.zeros((h, w), bool)
    mask[: h // 2, : w // 2] = True
    full = mask_to_source(mask, p)
    assert full.shape == (3000, 4000) and full.dtype == bool
    assert abs(full.mean() - 0.25) < 0.01


def test_far_too_big_image_is_refused_with_sizes_in_the_message():
    limit = 1_000_000
    with pytest.raises(ImageTooLargeError, match=r"30000 x 30000 .*refused"):
        plan(30000, 30000, max_image_pixels=limit)
    # just under the refusal bound is still planned
    side = int((limit * image_size.REFUSE_FACTOR) ** 0.5) - 1
    assert plan(side, side, max_image_pixels=limit).downscaled


def test_zero_limit_means_no_limit_and_empty_image_is_an_error():
    assert plan(30000, 30000, max_image_pixels=0).scale == 1.0
    with pytest.raises(ValueError, match="no pixels"):
        plan(0, 80)


def test_file_check_reads_only_the_header(tmp_path):
    # A PNG whose header says 30000 x 30000 (a decompression bomb) is refused without decoding.
    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path, optimize=True)
    assert path.stat().st_size < 5_000_000
    with pytest.raises(ImageTooLargeError):
        check_file(path, max_image_pixels=4096 * 4096)
    ok = tmp_path / "ok.png"
    Image.new("RGB", (64, 48)).save(ok)
    assert check_file(ok).model_size == (48, 64)


def test_a_small_limit_is_said_in_pixels_not_as_zero_megapixels():
    """A limit set low (an evaluation, a test) reads as pixel counts; camera sizes as MP."""
    with pytest.raises(ImageTooLargeError) as small:
        plan(48, 64, max_image_pixels=100)
    assert "(3,072 pixels)" in str(small.value) and "(100 pixels)" in str(small.value)
    assert "0.0 MP" not in str(small.value)
    with pytest.raises(ImageTooLargeError, match=r"\(900\.0 MP\).*\(1\.0 MP\)"):
        plan(30000, 30000, max_image_pixels=1_000_000)
