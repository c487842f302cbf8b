"""Mask2Former proposal backend on a tiny random-weight model: plumbing only (sizes, crop,
threshold).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iterprime_ros.core.backend import ProposalBackend
from iterprime_ros.models.mask2former import Mask2FormerProposals, resized_shape


@pytest.fixture(scope="module")
def small_proposals(tiny_model_dirs):
    """Small input (shortest 64, longest 100) so padding is a large share of the input."""
    return Mask2FormerProposals(
        tiny_model_dirs.mask2former, device="cpu", shortest_edge=64, longest_edge=100
    )


def test_resized_shape_follows_shortest_and_longest_edge():
    assert resized_shape(480, 640, 800, 1333) == (800, 1067)
    assert resized_shape(100, 1000, 800, 1333) == (133, 1333)  # longest edge caps the scale
    assert resized_shape(90, 150, 64, 100) == (60, 100)
    assert resized_shape(1000, 1000, 800, 1333) == (800, 800)


def test_preprocess_pads_to_multiple_of_32(small_proposals):
    img = np.full((90, 150, 3), 200, np.uint8)
    pixels, (h, w) = small_proposals.preprocess(img)
    assert (h, w) == (60, 100)
    assert pixels.shape == (1, 3, 64, 128)
    assert torch.all(pixels[:, :, h:, :] == 0) and torch.all(pixels[:, :, :, w:] == 0)
    expected = (200 / 255 - 0.485) / 0.229
    assert float(pixels[0, 0, 5, 5]) == pytest.approx(expected, abs=1e-5)


def test_proposals_at_original_resolution_with_padding_cropped(small_proposals):
    """Non-square image: every query mask comes back at H x W, and equals upsample -> crop ->
    resize.
    """
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)
    masks = small_proposals.propose(img)
    assert isinstance(small_proposals, ProposalBackend)
    assert masks.shape == (small_proposals.num_queries, 90, 150) and masks.dtype == bool

    logits, padded, (h, w) = small_proposals.mask_logits(img)
    assert logits.shape[-2:] == (padded[0] // 4, padded[1] // 4)  # 1/4 of the padded input
    up = F.interpolate(logits[None], size=padded, mode="bilinear", align_corners=False)
    cropped = F.interpolate(
        up[:, :, :h, :w], size=(90, 150), mode="bilinear", align_corners=False
    )[0]
    expected = torch.sigmoid(cropped) > 0.35
    assert np.array_equal(masks, expected.numpy())
    # Without the crop the padding would be stretched into the image: a different answer.
    uncropped = F.interpolate(logits[None], size=(90, 150), mode="bilinear", align_corners=False)[
        0
    ]
    assert not np.array_equal(masks, (torch.sigmoid(uncropped) > 0.35).numpy())


def test_threshold_is_monotone_and_no_filtering(tiny_model_dirs, small_proposals, sample_image):
    strict = Mask2FormerProposals(
        tiny_model_dirs.mask2former,
        device="cpu",
        threshold=0.6,
        shortest_edge=64,
        longest_edge=100,
    )
    loose = small_proposals.propose(sample_image)
    tight = strict.propose(sample_image)
    assert loose.shape == tight.shape == (8, 120, 200)  # all queries, no class filter / NMS
    assert np.all(loose | ~tight)  # tight ⊆ loose
    assert strict.model is small_proposals.model  # same weights, loaded once


def test_full_size_proposals(tiny_proposals, sample_image):
    """Default 800/1333 input, as the method: still H x W out."""
    masks = tiny_proposals.propose(sample_image)
    assert masks.shape == (8, *sample_image.shape[:2])
    assert 0 < masks.mean() < 1  # the tiny model's masks have structure (not all on / all off)


def test_rejects_bad_threshold_and_image(tiny_model_dirs, small_proposals):
    with pytest.raises(ValueError, match="threshold"):
        Mask2FormerProposals(tiny_model_dirs.mask2former, device="cpu", threshold=1.5)
    with pytest.raises(ValueError, match="uint8"):
        small_proposals.propose(np.zeros((10, 10), np.uint8))


def test_half_precision_path(tiny_model_dirs, sample_image, monkeypatch):
    import iterprime_ros.models.mask2former as m2f

    monkeypatch.setattr(
        m2f, "resolve_dtype", lambda device, half: torch.float16 if half else torch.float32
    )
    half = m2f.Mask2FormerProposals(
        tiny_model_dirs.mask2former,
        device="cpu",
        half_precision=True,
        shortest_edge=64,
        longest_edge=100,
    )
    assert next(half.model.parameters()).dtype == torch.float16
    assert half.propose(sample_image).shape == (8, 120, 200)


def test_direct_resize_gives_the_two_step_masks(small_proposals):
    """The composed per-axis resize equals x4 -> crop -> resize: same masks, logits to rounding.

    Random logits at the real VGA shapes (800 x 1067 valid in 800 x 1088, logits at 1/4) and at
    an odd small shape; plumbing only, no model.
    """
    gen = torch.Generator().manual_seed(0)
    for q, padded, valid, out in (
        (6, (800, 1088), (800, 1067), (480, 640)),
        (5, (64, 128), (60, 100), (90, 150)),
    ):
        logits = torch.randn(q, padded[0] // 4, padded[1] // 4, generator=gen) * 3
        direct = small_proposals._masks_direct(logits, padded, valid, out)
        two_step = small_proposals._masks_two_step(logits, padded, valid, out)
        assert direct.shape == (q, *out) and direct.dtype == torch.bool
        assert torch.equal(direct, two_step)
        rows, cols = small_proposals._resizer(logits, padded, valid, out)
        composed = rows.rows(cols.cols(logits))
        reference = F.interpolate(logits[None], size=padded, mode="bilinear", align_corners=False)
        reference = F.interpolate(
            reference[:, :, : valid[0], : valid[1]], size=out, mode="bilinear", align_corners=False
        )[0]
        assert torch.allclose(composed, reference, atol=1e-5)


def test_autocast_keeps_fp32_weights_and_close_masks(tiny_model_dirs, sample_image):
    """bf16 autocast on the CPU: weights stay float32, masks nearly the fp32 ones (tiny random
    model, plumbing; the real-size drift is printed by the bench).
    """
    fp32 = Mask2FormerProposals(
        tiny_model_dirs.mask2former, device="cpu", shortest_edge=64, longest_edge=100
    )
    bf16 = Mask2FormerProposals(
        tiny_model_dirs.mask2former,
        device="cpu",
        shortest_edge=64,
        longest_edge=100,
        autocast="bf16",
        half_precision=True,
    )
    assert bf16.autocast_dtype == torch.bfloat16 and fp32.autocast_dtype is None
    assert next(bf16.model.parameters()).dtype == torch.float32
    a, b = fp32.propose(sample_image), bf16.propose(sample_image)
    assert a.shape == b.shape
    assert (a != b).mean() < 0.05
    la, lb = fp32.mask_logits(sample_image)[0], bf16.mask_logits(sample_image)[0]
    assert not torch.equal(la, lb), "autocast did not reach the network"
    assert float((la - lb).abs().mean()) < 0.1 * float(la.abs().mean())
    with pytest.raises(ValueError, match="autocast"):
        Mask2FormerProposals(tiny_model_dirs.mask2former, device="cpu", autocast="int8")
