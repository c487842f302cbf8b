"""The CPU form of Mask2Former's deformable attention sum against the library's own.

Both take the same inputs; random values here are inputs to a fixed formula (bilinear
sampling with zero padding, weighted by the attention), so agreement is a real check of the
arithmetic, not of any model's quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iterprime_ros.models.deformable_sampling import (
    cpu_deformable_sampling,
    deformable_attention_sum,
)
from iterprime_ros.models.mask2former import Mask2FormerProposals

library = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")


def _inputs(seed: int, shapes, batch=2, heads=4, depth=8, points=3, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in shapes)
    queries = 37
    value = torch.randn(batch, total, heads, depth, generator=g)
    # Locations spill past [0, 1] on every side, so corners fall off each map's edges.
    loc = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=g)
    loc = loc * (1 + 2 * spread) - spread
    att = torch.rand(batch, queries, heads, len(shapes), points, generator=g)
    return value, loc, att


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_library_sum_including_points_off_the_maps(seed):
    shapes = [(9, 13), (5, 7), (3, 4), (1, 2)]
    value, loc, att = _inputs(seed, shapes)
    expected = library.multi_scale_deformable_attention(value, shapes, loc, att)
    got = deformable_attention_sum(value, shapes, loc, att)
    assert got.shape == expected.shape and got.dtype == value.dtype
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_exact_edges_and_far_points_read_zeros_like_grid_sample():
    """Points on the last pixel centre, on the border, and far outside (also NaN-free far
    values on the last level of the last head, where the spare rows are needed).
    """
    shapes = [(4, 6), (2, 3)]
    value, loc, att = _inputs(5, shapes, batch=1, heads=2, depth=4, points=4)
    picks = torch.tensor([0.0, 1.0, -3.0, 5.0, 1 - 1 / 12, 1 / 12, 0.5, 1.0])
    loc[..., 0] = picks[torch.arange(loc[..., 0].numel()) % len(picks)].view(loc[..., 0].shape)
    loc[..., 1] = picks.flip(0)[torch.arange(loc[..., 1].numel()) % len(picks)].view(
        loc[..., 1].shape
    )
    expected = library.multi_scale_deformable_attention(value, shapes, loc, att)
    torch.testing.assert_close(
        deformable_attention_sum(value, shapes, loc, att), expected, rtol=1e-5, atol=1e-6
    )


def test_the_swap_lasts_only_for_the_block_and_only_on_cpu():
    original = library.multi_scale_deformable_attention
    with cpu_deformable_sampling(torch.device("cpu")):
        assert library.multi_scale_deformable_attention is deformable_attention_sum
    assert library.multi_scale_deformable_attention is original
    with pytest.raises(RuntimeError):
        with cpu_deformable_sampling(torch.device("cpu")):
            raise RuntimeError("a failing forward pass")
    assert library.multi_scale_deformable_attention is original
    with cpu_deformable_sampling(torch.device("meta")):
        assert library.multi_scale_deformable_attention is original


def test_backend_uses_it_and_gives_the_library_masks(tiny_model_dirs, monkeypatch):
    """The tiny random-weight Mask2Former (plumbing only): the backend's forward pass goes
    through the CPU sum, and its logits equal the library path's to float rounding.
    """
    calls = []

    def counted(*args):
        calls.append(1)
        return deformable_attention_sum(*args)

    backend = Mask2FormerProposals(tiny_model_dirs.mask2former, device="cpu")
    image = np.random.default_rng(3).integers(0, 255, (90, 150, 3), dtype=np.uint8)
    monkeypatch.setattr(
        "iterprime_ros.models.deformable_sampling.deformable_attention_sum", counted
    )
    fast, _, _ = backend.mask_logits(image)
    assert calls, "the backend's forward pass did not use the CPU deformable sum"
    monkeypatch.setattr(
        "iterprime_ros.models.mask2former.cpu_deformable_sampling",
        lambda device: __import__("contextlib").nullcontext(),
    )
    reference, _, _ = backend.mask_logits(image)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)
