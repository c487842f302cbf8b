"""Table 4's "mask image" variant: patches painted with the preprocessing mean and re-encoded."""

from __future__ import annotations

import numpy as np
import torch

from iterprime_ros.core.backend import PassOutput, VLPBackend
from iterprime_ros.tools.eval.image_masking import ImageMaskingBackend


class RecordingVLP:
    """Fake inner backend (grid 2, input 4 x 4): records what it encodes and which embedding each
    pass got.
    """

    grid = 2
    input_size = (4, 4)
    _mean = (0.5, 0.25, 0.0)

    def __init__(self):
        self.encoded, self.passes = [], []

    def encode_image(self, image):
        self.encoded.append(image.copy())
        return len(self.encoded) - 1  # the embedding is the index of the encoded image

    def token_offsets(self, text):
        return [None, (0, len(text)), None]

    def token_valid(self, text):
        return torch.tensor([True, True, False])

    def text_pass(self, emb, text, keep):
        self.passes.append((emb, keep))
        z = torch.zeros(1, 3, 5)
        return PassOutput(torch.zeros(2), z, z, torch.tensor([True, True, False]))


def test_keep_none_uses_the_original_and_masks_paint_the_exact_patches():
    inner = RecordingVLP()
    wrapped = ImageMaskingBackend(inner)
    assert isinstance(wrapped, VLPBackend) and wrapped.grid == 2
    assert wrapped.token_valid("x").tolist() == [True, True, False]
    assert tuple(wrapped.fill) == (128, 64, 0)  # the inner backend's normalisation mean in 0..255
    image = np.full((8, 12, 3), 200, np.uint8)
    emb = wrapped.encode_image(image)
    assert inner.encoded[0].shape == (
        4,
        4,
        3,
    )  # resized to the backend input, so patches are exact
    wrapped.text_pass(emb, "cup", None)
    assert inner.passes[-1] == (0, None)
    keep = torch.tensor([True, False, True, True])  # drop the top-right patch
    wrapped.text_pass(emb, "cup", keep)
    painted = inner.encoded[1]
    assert (
        (painted[0:2, 2:4] == (128, 64, 0)).all()
        and (painted[2:, :] == 200).all()
        and (painted[:2, :2] == 200).all()
    )
    assert inner.passes[-1] == (1, None)  # every key visible: the mask is in the pixels
    wrapped.text_pass(emb, "cup on the left", keep.clone())
    assert len(inner.encoded) == 2 and wrapped.encodes == 1  # same mask: re-encoding cached
    wrapped.text_pass(emb, "cup", torch.ones(4, dtype=torch.bool))
    assert inner.passes[-1] == (0, None)


def test_with_tiny_blip_the_masked_pass_sees_every_key(tiny_blip, sample_image):
    """Random weights: plumbing only (attention shape, no key masking, the ITM logit changes)."""
    wrapped = ImageMaskingBackend(tiny_blip)
    emb = wrapped.encode_image(sample_image)
    keep = torch.ones(tiny_blip.grid**2, dtype=torch.bool)
    keep[: tiny_blip.grid * 2] = False
    plain = wrapped.text_pass(emb, "there is a red box", None)
    masked = wrapped.text_pass(emb, "there is a red box", keep)
    assert masked.attention.shape == plain.attention.shape
    assert bool(
        (masked.attention[:, 1:, 1:][..., ~keep] > 0).any()
    )  # dropped patches still attended
    assert not torch.allclose(masked.itm_logits, plain.itm_logits)
