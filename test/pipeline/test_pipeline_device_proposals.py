"""The GPU path's proposals and heat map stay on the device until the chosen mask.

Run on the CPU through the same code the CUDA path takes (the pipeline's selection device set
to the CPU): the proposals are held as DeviceMasks, selection reads only the masks it indexes
(those covering the heat peak, then the chosen one), and the heat map IGRS made on the device
is used for the sums instead of uploading the host copy again. Tiny random-weight models:
plumbing only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import iterprime_ros.pipeline as pipeline_module
from iterprime_ros.core.device_masks import DeviceMasks
from iterprime_ros.core.selection import _heat_sums, select_proposal
from iterprime_ros.pipeline import Segmenter, SegmenterSettings


def test_device_masks_copy_only_what_is_indexed():
    masks = torch.rand(6, 5, 7) > 0.5
    dm = DeviceMasks(masks)
    assert dm.shape == (6, 5, 7) and len(dm) == 6 and dm.ndim == 3
    assert np.array_equal(dm[2], masks[2].numpy()) and dm.masks_read == 1
    assert dm[2] is dm[2] and dm.masks_read == 1  # one mask is read once
    assert np.array_equal(dm[np.array([0, 4])], masks[[0, 4]].numpy()) and dm.masks_read == 3
    assert np.array_equal(dm[-1], masks[5].numpy())
    assert np.array_equal(np.asarray(dm), masks.numpy()) and dm.masks_read == 4 + 6
    assert dm.reshape(6, -1).shape == (6, 35)  # other numpy reads: the whole set, once


def test_selection_on_device_masks_matches_the_host_arrays_and_reads_few():
    rng = np.random.default_rng(0)
    props = np.zeros((40, 30, 40), bool)
    for i in range(40):
        y, x = rng.integers(0, 20), rng.integers(0, 30)
        props[i, y : y + 10, x : x + 10] = True
    heat = rng.random((30, 40)).astype(np.float32)
    heat[15, 20] = 2.0
    heat /= heat.max()
    plain = select_proposal(heat, props)
    dm = DeviceMasks(torch.from_numpy(props))
    moved = select_proposal(
        heat, dm, proposals_tensor=dm.tensor, heat_tensor=torch.from_numpy(heat)
    )
    assert moved.index == plain.index and moved.score == plain.score
    assert np.array_equal(moved.scores, plain.scores)
    covering = int(props[:, 15, 20].sum())
    assert dm.masks_read == covering < 40


def test_heat_sums_from_the_device_heat_map_equal_the_uploaded_ones():
    props = torch.rand(9, 6, 8) > 0.3
    heat = np.random.default_rng(1).random((6, 8)).astype(np.float32)
    which = np.arange(9)
    for dtype in (np.float64, np.float32):
        a = _heat_sums(props.numpy(), heat, which, props, dtype)
        b = _heat_sums(props.numpy(), heat, which, props, dtype, torch.from_numpy(heat))
        assert np.array_equal(a, b)


def test_pipeline_keeps_the_proposals_on_the_device_and_hands_selection_the_device_heat(
    tiny_blip, tiny_proposals, sample_image, monkeypatch
):
    settings = SegmenterSettings(device="cpu", parser="spacy", empty_selection="best_heat")
    plain = Segmenter.from_backends(tiny_blip, tiny_proposals, settings)
    device = Segmenter.from_backends(tiny_blip, tiny_proposals, settings)
    device._selection_device = torch.device("cpu")  # the CUDA path, on the CPU
    seen = []
    real = pipeline_module.select_proposal

    def spy(*args, **kwargs):
        seen.append(kwargs.get("heat_tensor"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "select_proposal", spy)
    a = plain.segment(sample_image, "the red cup on the left")
    b = device.segment(sample_image, "the red cup on the left")
    assert seen[0] is None and isinstance(seen[1], torch.Tensor)
    assert np.array_equal(seen[1].numpy(), b.heatmap)
    frame = next(iter(device._frames.values()))
    assert isinstance(frame.proposals, DeviceMasks)
    assert frame.proposals._all is None, "every proposal was copied to the host"
    assert frame.proposals.masks_read < len(frame.proposals) or len(frame.proposals) <= 2
    assert (a.success, a.proposal_index) == (b.success, b.proposal_index)
    assert a.score == pytest.approx(b.score) and np.array_equal(a.mask, b.mask)
    # the candidates and the confidence read the device masks the same way as host masks
    assert [c.proposal_index for c in a.candidates] == [c.proposal_index for c in b.candidates]
    assert a.confidence == pytest.approx(b.confidence)
    # the tracker's re-association still gets a host array
    masks, cached = device.frame_proposals(sample_image)
    assert cached and isinstance(masks, np.ndarray) and masks.shape == frame.proposals.shape
