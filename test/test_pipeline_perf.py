"""The optimisations behind the latency figures (docs/performance.md), as behaviour -- never
timing.

Per-image work once per frame; no autograd graph through the vision encoder or the text layers
below the Grad-CAM layer; cross-attention keys/values of the image computed once; fp16 on CUDA;
selection sums vectorised, connected components only for proposals covering the peak; O_t
upsampled only when needed. Tiny random-weight models: plumbing only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from iterprime_ros.core import selection as selection_module
from iterprime_ros.core.backend import PassOutput
from iterprime_ros.core.igrs import IGRSSettings, run_igrs
from iterprime_ros.core.selection import select_proposal
from iterprime_ros.core.text import TokenRoles
from iterprime_ros.pipeline import Segmenter, SegmenterSettings

TEXT = "there is a red cup on the left"


class ForwardCounts:
    """Forward calls of the networks behind a pipeline (hooks on the torch modules themselves)."""

    def __init__(self, blip, proposals):
        self.n = {"vision": 0, "text": 0, "proposals": 0}
        self.handles = [
            blip.model.vision_model.register_forward_hook(lambda *a: self._add("vision")),
            blip.model.text_encoder.register_forward_hook(lambda *a: self._add("text")),
            proposals.model.register_forward_hook(lambda *a: self._add("proposals")),
        ]

    def _add(self, name):
        self.n[name] += 1

    def close(self):
        for h in self.handles:
            h.remove()


def test_networks_run_once_per_frame_and_only_the_text_encoder_per_pass(
    tiny_blip, tiny_proposals, sample_image
):
    seg = Segmenter.from_backends(
        tiny_blip,
        tiny_proposals,
        SegmenterSettings(device="cpu", stop_rule="none", parser="spacy"),
        raise_unexpected=True,
    )
    counts = ForwardCounts(tiny_blip, tiny_proposals)
    try:
        first = seg.segment(sample_image, "the red cup on the left")
        assert first.success and first.iterations == 3
        assert counts.n == {"vision": 1, "text": 3, "proposals": 1}
        second = seg.segment(sample_image.copy(), "the blue disc")  # same pixels, another array
        assert second.success and second.frame_cached
        assert counts.n == {"vision": 1, "text": 6, "proposals": 1}
        assert "proposals" not in second.timings and "image_encoding" not in second.timings
        assert [k for k in second.timings if k.startswith("igrs_pass_")] == [
            "igrs_pass_0",
            "igrs_pass_1",
            "igrs_pass_2",
        ]
    finally:
        counts.close()


def test_no_graph_through_the_vision_encoder_or_the_text_layers_below_l(tiny_blip, sample_image):
    """Backward reaches only the text layers from l up: lower layers build no graph, no module
    below l sees a backward call, and no parameter (vision or text) gets a gradient.
    """
    emb = tiny_blip.encode_image(sample_image)
    assert not emb.embeds.requires_grad and emb.embeds.grad_fn is None
    assert all(not k.requires_grad and not v.requires_grad for k, v in emb.cross_kv)
    layers = tiny_blip._layers()
    ell = tiny_blip.gradcam_layer
    out_requires_grad: dict[int, bool] = {}
    backward_calls = {i: 0 for i in range(len(layers))}
    handles = []
    for i, layer in enumerate(layers):
        handles.append(
            layer.register_forward_hook(
                lambda m, a, out, i=i: out_requires_grad.__setitem__(
                    i, (out[0] if isinstance(out, tuple) else out).requires_grad
                )
            )
        )
        handles.append(
            layer.output.register_full_backward_hook(
                lambda m, gi, go, i=i: backward_calls.__setitem__(i, backward_calls[i] + 1)
            )
        )
    vision_backward = []
    handles.append(
        tiny_blip.model.vision_model.register_full_backward_hook(
            lambda *a: vision_backward.append(1)
        )
    )
    try:
        out = tiny_blip.text_pass(emb, TEXT, None)
    finally:
        for h in handles:
            h.remove()
    assert out.gradient.abs().sum() > 0
    assert [out_requires_grad[i] for i in range(len(layers))] == [
        i >= ell for i in range(len(layers))
    ]
    assert all(backward_calls[i] == 0 for i in range(ell))
    assert all(backward_calls[i] == 1 for i in range(ell, len(layers)))
    assert not vision_backward
    assert all(p.grad is None and not p.requires_grad for p in tiny_blip.model.parameters())


def test_cross_attention_keys_and_values_come_from_the_image_embedding(tiny_blip, sample_image):
    """encode_image projects the image tokens once per layer; the passes reuse them and give
    exactly what recomputing them gives.
    """
    emb = tiny_blip.encode_image(sample_image)
    assert len(emb.cross_kv) == tiny_blip.num_layers
    calls = []
    projections = [
        m
        for layer in tiny_blip._layers()
        for m in (layer.crossattention.self.key, layer.crossattention.self.value)
    ]
    handles = [m.register_forward_hook(lambda *a: calls.append(1)) for m in projections]
    keep = torch.ones(tiny_blip.grid**2, dtype=torch.bool)
    keep[::3] = False
    try:
        cached = [tiny_blip.text_pass(emb, TEXT, k) for k in (None, keep)]
        assert calls == []
        fresh = [
            tiny_blip.text_pass(dataclasses.replace(emb, cross_kv=None), TEXT, k)
            for k in (None, keep)
        ]
        assert len(calls) == 2 * 2 * tiny_blip.num_layers
    finally:
        for h in handles:
            h.remove()
    for a, b in zip(cached, fresh):
        assert torch.equal(a.attention, b.attention) and torch.equal(a.gradient, b.gradient)
        assert torch.equal(a.itm_logits, b.itm_logits)
    assert torch.equal(
        tiny_blip.itm_logits(emb, TEXT, keep),
        tiny_blip.itm_logits(dataclasses.replace(emb, cross_kv=None), TEXT, keep),
    )
    # the swap is undone after each call
    assert all(
        type(layer.crossattention.self.key) is torch.nn.Linear for layer in tiny_blip._layers()
    )


def test_half_precision_is_fp16_on_cuda_only():
    from iterprime_ros.models.loading import resolve_dtype

    assert resolve_dtype(torch.device("cuda"), True) is torch.float16
    assert resolve_dtype(torch.device("cuda"), False) is torch.float32
    assert resolve_dtype(torch.device("cpu"), True) is torch.float32
    assert SegmenterSettings().half_precision is True


def _random_proposals(n=40, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    props = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        props[i, y : y + rng.integers(3, 30), x : x + rng.integers(3, 40)] = True
        if i % 3 == 0:  # a second part
            props[i, rng.integers(0, h - 4) :, : rng.integers(1, 6)] = True
    heat = rng.random((h, w)).astype(np.float32)
    return props, heat


def test_components_are_counted_only_for_proposals_covering_the_peak(monkeypatch):
    props, heat = _random_proposals()
    peak = heat == heat.max()
    covering = int(props[:, peak].any(axis=1).sum())
    assert 0 < covering < len(props)
    counted = []
    real = selection_module.count_components
    monkeypatch.setattr(
        selection_module, "count_components", lambda m, c=4: counted.append(1) or real(m, c)
    )
    sel = select_proposal(heat, props)
    assert len(counted) == covering
    assert sel.index is not None and props[sel.index][peak].any()


def test_selection_sums_on_a_tensor_copy_match_the_numpy_path():
    """The pipeline hands a GPU copy of the proposals on CUDA; the same code on a CPU tensor must
    give the same choice and scores.
    """
    for seed in range(3):
        props, heat = _random_proposals(seed=seed)
        a = select_proposal(heat, props)
        b = select_proposal(heat, props, proposals_tensor=torch.from_numpy(props))
        assert a.index == b.index and np.allclose(a.scores, b.scores, rtol=0, atol=1e-12)
        assert np.array_equal(a.valid, b.valid)
    with pytest.raises(ValueError, match="differs"):
        select_proposal(heat, props, proposals_tensor=torch.from_numpy(props[:3]))


def test_pipeline_keeps_no_device_copy_on_cpu(tiny_blip, tiny_proposals, sample_image):
    seg = Segmenter.from_backends(
        tiny_blip, tiny_proposals, SegmenterSettings(device="cpu", parser="spacy")
    )
    assert seg._selection_device is None and not seg._cuda_events
    seg.prepare_frame(sample_image)
    frame = next(iter(seg._frames.values()))
    assert frame.proposals is not None and frame.proposals_tensor is None


class DroppingVLP:
    """ITM probability falls with every pass; attention peaked on a different patch each pass."""

    grid = 4

    def __init__(self):
        self.calls = 0

    def text_pass(self, emb, text, keep):
        self.calls += 1
        att = torch.full((2, 4, 17), 0.01)
        att[:, :, 1 + (self.calls * 5) % 16] = 1.0
        logits = torch.tensor([0.0, 2.0 - self.calls])
        return PassOutput(
            logits,
            att / att.sum(-1, keepdim=True),
            torch.ones_like(att),
            torch.tensor([True, True, True, False]),
        )


ROLES = TokenRoles(effective=(1, 2), primary=(2,), valid=torch.tensor([True, True, True, False]))


def test_stop_rule_none_runs_every_pass():
    ref = run_igrs(DroppingVLP(), None, "t", ROLES, (8, 8), IGRSSettings(stop_rule="reference"))
    assert ref.iterations == 2 and ref.stop_reason == "itm_drop"
    none = run_igrs(DroppingVLP(), None, "t", ROLES, (8, 8), IGRSSettings(stop_rule="none"))
    assert none.iterations == 3 and none.stop_reason == "max_iterations"
    assert SegmenterSettings(stop_rule="none").igrs_settings().stop_rule == "none"


def test_heat_map_is_upsampled_only_when_returned(monkeypatch):
    """O_t (H x W) is computed for the returned pass only (reference rule), once per pass for
    soft_itm.
    """
    import iterprime_ros.core.igrs as igrs

    calls = []
    real = igrs.upsample
    monkeypatch.setattr(igrs, "upsample", lambda r, size: calls.append(1) or real(r, size))
    run_igrs(DroppingVLP(), None, "t", ROLES, (8, 8), IGRSSettings(stop_rule="none"))
    assert len(calls) == 1
    calls.clear()
    run_igrs(DroppingVLP(), None, "t", ROLES, (8, 8), IGRSSettings(stop_rule="soft_itm"))
    assert 1 <= len(calls) <= 3


def test_component_counts_are_cached_per_frame(
    monkeypatch, tiny_blip, tiny_proposals, sample_image
):
    props, heat = _random_proposals()
    cache: dict = {}
    counted = []
    real = selection_module.count_components
    monkeypatch.setattr(
        selection_module, "count_components", lambda m, c=4: counted.append(1) or real(m, c)
    )
    a = select_proposal(heat, props, component_cache=cache)
    n = len(counted)
    assert n > 0 and len(cache) == n
    b = select_proposal(heat, props, component_cache=cache)
    assert len(counted) == n and a.index == b.index and np.array_equal(a.valid, b.valid)
    # the pipeline keeps one cache per frame
    seg = Segmenter.from_backends(
        tiny_blip, tiny_proposals, SegmenterSettings(device="cpu", parser="spacy")
    )
    seg.segment(sample_image, "the red cup")
    frame = next(iter(seg._frames.values()))
    assert isinstance(frame.components, dict)
    before = len(counted)
    seg.segment(sample_image, "the red cup")  # same frame, same heat map: every count is cached
    assert len(counted) == before


def test_pipeline_selection_through_a_device_copy_gives_the_same_answer(
    tiny_blip, tiny_proposals, sample_image
):
    """The CUDA path (proposals copied to the device once per frame, sums there), run on the
    CPU.
    """
    settings = SegmenterSettings(device="cpu", parser="spacy", empty_selection="best_heat")
    plain = Segmenter.from_backends(tiny_blip, tiny_proposals, settings)
    copied = Segmenter.from_backends(tiny_blip, tiny_proposals, settings)
    copied._selection_device = torch.device("cpu")
    a = plain.segment(sample_image, "the red cup on the left")
    b = copied.segment(sample_image, "the red cup on the left")
    frame = next(iter(copied._frames.values()))
    assert (
        isinstance(frame.proposals_tensor, torch.Tensor)
        and frame.proposals_tensor.shape == frame.proposals.shape
    )
    assert (
        a.success == b.success
        and a.proposal_index == b.proposal_index
        and a.score == pytest.approx(b.score)
    )
