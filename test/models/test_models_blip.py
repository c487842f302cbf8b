"""BLIP ITM backend on a tiny random-weight model: plumbing only (shapes, hooks, masking, offsets).

Random weights say nothing about segmentation quality; these tests check that the right
tensors are captured, that gradients are the right ones, and that patch masking really
reaches every cross-attention layer (transformers drops encoder_attention_mask there).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iterprime_ros.core.backend import PassOutput, VLPBackend, words_of_tokens

TEXT = "there is a red cups on the left"


@pytest.fixture(scope="module")
def embedding(tiny_blip, sample_image):
    return tiny_blip.encode_image(sample_image)


def _keep_half(grid: int) -> torch.Tensor:
    keep = torch.ones(grid * grid, dtype=torch.bool)
    keep[::2] = False
    return keep


def test_protocol_and_pass_shapes(tiny_blip, embedding):
    assert isinstance(tiny_blip, VLPBackend)
    g = tiny_blip.grid
    assert g == 6 and embedding.embeds.shape == (1, 1 + g * g, 32)
    out = tiny_blip.text_pass(embedding, TEXT, None)
    assert isinstance(out, PassOutput)
    n_tokens = len(tiny_blip.token_offsets(TEXT))
    assert out.itm_logits.shape == (2,)
    assert out.attention.shape == (tiny_blip.num_heads, n_tokens, 1 + g * g)
    assert out.gradient.shape == out.attention.shape
    assert out.token_valid.shape == (n_tokens,) and out.token_valid.dtype == torch.bool
    assert torch.isfinite(out.gradient).all() and out.gradient.abs().sum() > 0
    assert 0.0 < out.match_probability < 1.0


def _reported_cross_attentions(backend, embedding) -> tuple[torch.Tensor, ...]:
    """Every layer's cross-attention on TEXT as transformers itself reports it (output_attentions),
    the reference the backend's hook is checked against.
    """
    toks = backend._tokens(TEXT)
    with torch.no_grad():
        return backend.model.text_encoder(
            input_ids=toks.input_ids,
            attention_mask=toks.attention_mask,
            encoder_hidden_states=embedding.embeds,
            output_attentions=True,
            return_dict=True,
        ).cross_attentions


def test_captured_tensor_is_post_softmax_probabilities(tiny_blip, embedding):
    """The dropout pre-hook sees exactly what transformers reports as cross-attention of layer
    l.
    """
    out = tiny_blip.text_pass(embedding, TEXT, None)
    assert torch.allclose(out.attention.sum(-1), torch.ones(out.attention.shape[:2]), atol=1e-5)
    ref = _reported_cross_attentions(tiny_blip, embedding)
    assert len(ref) == tiny_blip.num_layers
    assert torch.allclose(ref[tiny_blip.gradcam_layer][0], out.attention, atol=1e-6)
    logits = tiny_blip.itm_logits(embedding, TEXT)
    assert torch.allclose(logits, out.itm_logits, atol=1e-6)


def test_gradient_is_d_match_logit_d_attention(tiny_blip, embedding):
    """Central finite difference along a random direction agrees with <dlogit/dA, D>."""
    out = tiny_blip.text_pass(embedding, TEXT, None)
    direction = torch.randn(out.attention.shape, generator=torch.Generator().manual_seed(0))
    eps = 1e-3
    dropout = tiny_blip.model.text_encoder.encoder.layer[
        tiny_blip.gradcam_layer
    ].crossattention.self.dropout

    def logit_with(delta: float) -> float:
        handle = dropout.register_forward_pre_hook(
            lambda m, args: (args[0] + delta * direction[None],)
        )
        try:
            return float(tiny_blip.itm_logits(embedding, TEXT)[1])
        finally:
            handle.remove()

    numeric = (logit_with(eps) - logit_with(-eps)) / (2 * eps)
    analytic = float((out.gradient * direction).sum())
    assert numeric == pytest.approx(analytic, rel=2e-2, abs=1e-5)


def test_no_parameter_gradients(tiny_blip, embedding):
    tiny_blip.text_pass(embedding, TEXT, _keep_half(tiny_blip.grid))
    for p in tiny_blip.model.parameters():
        assert not p.requires_grad and p.grad is None
    assert not embedding.embeds.requires_grad


def test_masked_patches_get_zero_attention_in_every_layer_and_logit_changes(tiny_blip, embedding):
    """IGRS's mask must reach every cross-attention layer (the hook, not transformers, applies
    it).
    """
    g = tiny_blip.grid
    keep = _keep_half(g)
    dropped = torch.nonzero(~keep).flatten() + 1  # key columns (0 = image CLS, always kept)
    kept = torch.nonzero(keep).flatten() + 1
    full = tiny_blip.text_pass(embedding, TEXT, None)
    masked = tiny_blip.text_pass(embedding, TEXT, keep)
    assert masked.attention.shape == full.attention.shape
    assert torch.all(masked.attention[:, :, dropped] == 0.0)
    assert torch.all(masked.attention[:, :, kept] > 0.0) and torch.all(
        masked.attention[:, :, 0] > 0.0
    )
    assert torch.allclose(
        masked.attention.sum(-1), torch.ones(masked.attention.shape[:2]), atol=1e-5
    )
    assert not torch.allclose(masked.itm_logits, full.itm_logits, atol=1e-7), (
        "masking must change the ITM logit"
    )

    with tiny_blip.masked_cross_attention(keep):
        ref = _reported_cross_attentions(tiny_blip, embedding)
    for layer, att in enumerate(ref):
        assert torch.all(att[0][:, :, dropped] == 0.0), (
            f"layer {layer} still attends masked patches"
        )
    # all-kept mask == no mask
    same = tiny_blip.text_pass(embedding, TEXT, torch.ones(g * g, dtype=torch.bool))
    assert torch.allclose(same.itm_logits, full.itm_logits, atol=1e-6)


def test_canary_transformers_still_ignores_encoder_attention_mask(tiny_blip, embedding):
    """If this fails, transformers started honouring encoder_attention_mask in BLIP's text
    cross-attention: our hook is then redundant (harmless), but re-read models/blip.py.
    """
    toks = tiny_blip._tokens(TEXT)
    n = embedding.embeds.shape[1]
    zero_patches = torch.ones(1, n, dtype=torch.long)
    zero_patches[0, 1:] = 0
    with torch.no_grad():
        kw = dict(
            input_ids=toks.input_ids,
            attention_mask=toks.attention_mask,
            encoder_hidden_states=embedding.embeds,
            output_attentions=True,
            return_dict=True,
        )
        plain = tiny_blip.model.text_encoder(**kw)
        with_mask = tiny_blip.model.text_encoder(encoder_attention_mask=zero_patches, **kw)
    assert torch.allclose(plain.cross_attentions[0], with_mask.cross_attentions[0])


def test_keep_of_wrong_size_is_rejected(tiny_blip, embedding):
    with pytest.raises(ValueError, match="g\\*g"):
        tiny_blip.text_pass(embedding, TEXT, torch.ones(5, dtype=torch.bool))


def test_token_offsets_and_word_mapping(tiny_blip):
    offsets = tiny_blip.token_offsets(TEXT)
    tokens = tiny_blip.tokens(TEXT)
    valid = tiny_blip.token_valid(TEXT)
    assert tokens[0] == "[ENC]" and tiny_blip.first_token == "enc"  # BLIP ITM's first token
    assert tokens[-1] == "[SEP]"
    assert offsets[0] is None and offsets[-1] is None
    assert valid[0] and not valid[-1] and bool(valid[1:-1].all())
    pieces = [TEXT[s:e] for s, e in offsets[1:-1]]
    assert pieces == [
        "there",
        "is",
        "a",
        "red",
        "cup",
        "s",
        "on",
        "the",
        "left",
    ]  # "cups" -> cup ##s
    words = [(i, i + len(w)) for i, w in ((TEXT.index(w), w) for w in ("red", "cups", "left"))]
    owner = words_of_tokens(offsets, words)
    assert owner == [None, None, None, None, 0, 1, 1, None, None, 2, None]


def test_first_token_cls_option(tiny_model_dirs):
    from iterprime_ros.models.blip import BlipITMBackend

    b = BlipITMBackend(tiny_model_dirs.blip, device="cpu", gradcam_layer=1, first_token="cls")
    assert b.tokens("the cup")[0] == "[CLS]" and b.first_token == "cls"
    assert (
        b.model is BlipITMBackend(tiny_model_dirs.blip, device="cpu").model
    )  # loaded once, shared


def test_image_matters_and_preprocessing(tiny_blip, sample_image):
    """Vision initializer_range 0.02 (not BLIP's 1e-10 default): different images, different
    embeddings.
    """
    pixels = tiny_blip.preprocess(sample_image)
    assert pixels.shape == (1, 3, 96, 96)
    grey = np.full((50, 70, 3), 128, np.uint8)
    expected = (128 / 255 - np.array([0.48145466, 0.4578275, 0.40821073])) / np.array(
        [0.26862954, 0.26130258, 0.27577711]
    )
    assert np.allclose(tiny_blip.preprocess(grey)[0, :, 10, 10].numpy(), expected, atol=1e-5)
    a = tiny_blip.encode_image(sample_image).embeds
    b = tiny_blip.encode_image(grey).embeds
    assert (a - b).abs().max() > 1e-3


def test_bad_layer_and_bad_image(tiny_model_dirs, tiny_blip):
    from iterprime_ros.models.blip import BlipITMBackend

    with pytest.raises(ValueError, match="gradcam_layer 12 out of range"):
        BlipITMBackend(tiny_model_dirs.blip, device="cpu", gradcam_layer=12)
    with pytest.raises(ValueError, match="uint8"):
        tiny_blip.encode_image(np.zeros((10, 10, 3), np.float32))


def test_half_precision_path(tiny_model_dirs, sample_image, monkeypatch):
    """fp16 weights (the CUDA option), exercised on CPU by forcing the dtype: the mask still gives
    exact zeros and outputs come back as float32.
    """
    import iterprime_ros.models.blip as blip_module

    monkeypatch.setattr(
        blip_module, "resolve_dtype", lambda device, half: torch.float16 if half else torch.float32
    )
    b = blip_module.BlipITMBackend(tiny_model_dirs.blip, device="cpu", half_precision=True)
    assert next(b.model.parameters()).dtype == torch.float16
    emb = b.encode_image(sample_image)
    keep = _keep_half(b.grid)
    out = b.text_pass(emb, TEXT, keep)
    assert out.attention.dtype == torch.float32 and out.gradient.dtype == torch.float32
    assert torch.all(out.attention[:, :, torch.nonzero(~keep).flatten() + 1] == 0.0)
    assert torch.isfinite(out.gradient).all()


def _gradcam(out: PassOutput) -> torch.Tensor:
    """Plain Grad-CAM over the patch keys: relu(A * dA) averaged over heads and tokens."""
    return (out.attention * out.gradient).clamp(min=0)[:, :, 1:].mean(dim=(0, 1))


def test_autocast_gradcam_stays_close_to_fp32(tiny_model_dirs, sample_image):
    """bf16 autocast (weights stay float32) on the vision encoder and the text pass: the masked
    keys still get exactly zero attention and the Grad-CAM map stays close to fp32's. Tiny
    random model: plumbing and numerics only; the real-size drift is printed by the bench.
    """
    from iterprime_ros.models.blip import BlipITMBackend

    fp32 = BlipITMBackend(tiny_model_dirs.blip, device="cpu")
    bf16 = BlipITMBackend(tiny_model_dirs.blip, device="cpu", autocast="bf16", autocast_text=True)
    assert bf16.autocast_dtype == bf16.text_autocast_dtype == torch.bfloat16
    assert next(bf16.model.parameters()).dtype == torch.float32
    keep = _keep_half(fp32.grid)
    a = fp32.text_pass(fp32.encode_image(sample_image), TEXT, keep)
    b = bf16.text_pass(bf16.encode_image(sample_image), TEXT, keep)
    assert b.attention.dtype == b.gradient.dtype == torch.float32
    assert torch.all(b.attention[:, :, torch.nonzero(~keep).flatten() + 1] == 0.0)
    assert torch.isfinite(b.gradient).all()
    cam_a, cam_b = _gradcam(a), _gradcam(b)
    scale = float(cam_a.abs().max())
    assert scale > 0
    assert float((cam_a - cam_b).abs().max()) / scale < 0.1
    assert torch.corrcoef(torch.stack([cam_a, cam_b]))[0, 1] > 0.98
    assert not torch.equal(a.gradient, b.gradient), "autocast did not reach the text pass"
    # a CPU backend leaves the text passes in fp32 unless asked
    assert (
        BlipITMBackend(tiny_model_dirs.blip, device="cpu", autocast="bf16").text_autocast_dtype
        is None
    )


def test_hooks_are_installed_once_not_per_pass(tiny_blip, embedding):
    """The mask and capture hooks live on the model from loading on: passes add and remove none."""
    layers = list(tiny_blip._layers())

    def hook_ids():
        return [
            (
                tuple(layer.crossattention.self._forward_pre_hooks),
                tuple(layer.crossattention.self.dropout._forward_pre_hooks),
            )
            for layer in layers
        ]

    before = hook_ids()
    assert all(len(a) == 1 and len(d) == 1 for a, d in before)
    tiny_blip.text_pass(embedding, TEXT, _keep_half(tiny_blip.grid))
    tiny_blip.itm_logits(embedding, TEXT, _keep_half(tiny_blip.grid))
    assert hook_ids() == before
    assert tiny_blip._hooks.mask is None and tiny_blip._hooks.capture_layer is None
