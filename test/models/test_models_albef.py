"""ALBEF ITM backend (models/albef.py) on checkpoints with the official key names and shapes.

Random weights: every test here checks plumbing (key names, shapes, loading, hooks, masking,
wiring into the pipeline), never segmentation quality. The architecture itself is checked
against a forward pass written out below with torch.nn.functional straight from the official
keys (timm ViT + ALBEF's xbert), independent of the transformers modules the backend uses.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iterprime_ros.core.text import build_prompt
from iterprime_ros.models import create_vlp_backend, vlp_backends
from iterprime_ros.models.albef import (
    AlbefITM,
    AlbefITMBackend,
    infer_architecture,
    official_to_module,
)
from iterprime_ros.models.loading import ModelNotFoundError
from iterprime_ros.pipeline import Segmenter, SegmenterSettings
from iterprime_ros.tools.tiny_models import albef_official_shapes, build_tiny_albef


@pytest.fixture(scope="module")
def tiny_albef_dir(tmp_path_factory):
    return build_tiny_albef(tmp_path_factory.mktemp("albef") / "albef", seed=0)


@pytest.fixture(scope="module")
def tiny_albef(tiny_albef_dir):
    return AlbefITMBackend(tiny_albef_dir, device="cpu")


@pytest.fixture(scope="module")
def official_state(tiny_albef_dir):
    return torch.load(tiny_albef_dir / "ALBEF.pth", map_location="cpu", weights_only=True)["model"]


# ---------------------------------------------------------------- the full-size key list
def test_full_size_official_keys_fit_the_model_without_allocating():
    shapes = albef_official_shapes()  # ALBEF.pth (14M): the official sizes
    # a few names and shapes as ALBEF's code defines them
    assert shapes["visual_encoder.pos_embed"] == (1, 257, 768)  # 256 px / 16 -> 16 x 16 + CLS
    assert shapes["visual_encoder.blocks.11.attn.qkv.weight"] == (2304, 768)
    assert shapes["text_encoder.bert.encoder.layer.8.crossattention.self.key.weight"] == (
        768,
        768,
    )
    assert "text_encoder.bert.encoder.layer.5.crossattention.self.key.weight" not in shapes
    assert shapes["itm_head.weight"] == (2, 768)
    arch = infer_architecture(shapes)
    assert (arch.vision_width, arch.vision_layers, arch.patch_size, arch.image_size) == (
        768,
        12,
        16,
        256,
    )
    assert (arch.text_layers, arch.fusion_layer, arch.grid) == (12, 6, 16)
    assert (arch.vision_heads, arch.text_heads, arch.vocab_size) == (12, 12, 30522)

    with torch.device("meta"):  # no memory: shapes only
        model = AlbefITM(arch)
        state = {k: torch.empty(s) for k, s in shapes.items()}
    mapped, unused = official_to_module(state)
    wanted = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith(("position_ids", "token_type_ids"))
    }
    assert {k: tuple(v.shape) for k, v in mapped.items()} == wanted
    # every official key is either used or one the ITM pass does not need
    # 12 blocks x (qkv weight, qkv bias), each split into three keys
    assert len(mapped) - 12 * 2 * 2 == len(shapes) - len(unused)
    assert all(
        k.startswith(("visual_encoder_m.", "text_encoder_m.", "vision_proj", "text_proj"))
        or k.startswith(("text_encoder.cls.", "image_queue", "text_queue", "queue_ptr", "temp"))
        or k.endswith("position_ids")
        for k in unused
    )
    assert "text_encoder.encoder.layer.8.crossattention.self.key.weight" in mapped


# ---------------------------------------------------------------- loading
def test_tiny_official_checkpoint_loads_through_the_real_loader(tiny_albef, tiny_albef_dir):
    b = tiny_albef
    assert isinstance(b, AlbefITMBackend) and b.name == "albef_itm"
    assert b.gradcam_layer == 8 and b.fusion_layer == 6 and b.num_layers == 12
    assert b.grid == 16 and b.input_size == (256, 256) and b.num_heads == 2
    assert b.model.visual_encoder.layernorm.eps == 1e-6  # timm ViT's, not BERT's 1e-12
    # the same model through the registry, from the .pth path itself
    assert "albef_itm" in vlp_backends()
    again = create_vlp_backend(
        "albef_itm",
        model=str(tiny_albef_dir / "ALBEF.pth"),
        device="cpu",
        gradcam_layer=8,
        half_precision=True,  # ignored on CPU
        first_token="enc",  # a BLIP option: ignored
        max_text_tokens=35,
    )
    assert again.model is b.model and again.dtype == torch.float32


def test_node_model_check_accepts_an_albef_checkpoint_folder(tiny_albef_dir, tmp_path):
    from iterprime_ros.models import check_model_folder

    assert check_model_folder("vlp_model", str(tiny_albef_dir), "vlp", "albef_itm") == "albef"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        check_model_folder("vlp_model", str(tmp_path / "none"), "vlp", "albef_itm")


def test_layers_without_cross_attention_are_refused(tiny_albef_dir):
    with pytest.raises(ValueError, match="fusion layers are 6..11"):
        AlbefITMBackend(tiny_albef_dir, device="cpu", gradcam_layer=5)


def test_checkpoint_problems_are_one_line_errors(tmp_path, official_state, tiny_albef_dir):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        AlbefITMBackend(tmp_path / "nowhere", device="cpu")
    with pytest.raises(ModelNotFoundError, match="0 .pth files"):
        AlbefITMBackend(tmp_path, device="cpu")

    bad = tmp_path / "pickled"
    bad.mkdir()
    # an arbitrary pickled class instance: torch.load(weights_only=True) refuses to build it
    torch.save({"model": dict(official_state), "extra": Fraction(1, 3)}, bad / "ALBEF.pth")
    with pytest.raises(ModelNotFoundError, match="weights_only=True") as err:
        AlbefITMBackend(bad, device="cpu")
    assert "\n" not in str(err.value)

    cut = tmp_path / "cut"
    cut.mkdir()
    partial = {k: v for k, v in official_state.items() if "layer.9.crossattention" not in k}
    torch.save({"model": partial}, cut / "ALBEF.pth")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (cut / f).write_bytes((tiny_albef_dir / f).read_bytes())
    with pytest.raises(ModelNotFoundError, match="do not fit"):
        AlbefITMBackend(cut, device="cpu")


# ---------------------------------------------------------------- preprocessing and prompt
def test_preprocess_squashes_to_256_bicubic_with_clip_mean_std(tiny_albef):
    flat = np.full((90, 300, 3), (200, 100, 50), np.uint8)
    x = tiny_albef.preprocess(flat)
    assert x.shape == (1, 3, 256, 256)
    mean = (0.48145466, 0.4578275, 0.40821073)
    std = (0.26862954, 0.26130258, 0.27577711)
    for c, v in enumerate((200, 100, 50)):
        assert torch.allclose(x[0, c], torch.tensor((v / 255 - mean[c]) / std[c]), atol=1e-5)
    # a squash, not a crop: the left third stays the left third
    img = np.zeros((90, 300, 3), np.uint8)
    img[:, :100] = 255
    x = tiny_albef.preprocess(img)
    assert x[0, 0, :, :80].min() > 1.5 and x[0, 0, :, 90:].max() < -1.5


def test_prompt_tokens_are_cls_then_the_text_with_no_sep(tiny_albef):
    text, start = build_prompt(SegmenterSettings().prompt_template, "red cup")
    assert text == "there is a red cup" and start == 11
    offsets = tiny_albef.token_offsets(text)
    assert offsets[0] is None and None not in offsets[1:]
    assert [text[s:e] for s, e in offsets[1:]] == ["there", "is", "a", "red", "cup"]
    assert tiny_albef.token_valid(text).tolist() == [True] * 6


# ALBEF's own BertTokenizer (models/tokenization_bert.py of the ALBEF release) documents its
# single-sequence input as "[CLS] X" (the pair form "[CLS] A [SEP] B [SEP]" is unused): lower
# case, WordPiece, no [SEP] at the end. Expected token strings written out by hand for the tiny
# vocabulary (tiny_models.TINY_WORDS, letter pieces for unknown words).
OFFICIAL_ALBEF_TOKENS = [
    ("there is a red cup", ["[CLS]", "there", "is", "a", "red", "cup"]),
    ("there is a man on the left", ["[CLS]", "there", "is", "a", "man", "on", "the", "left"]),
    ("There is a Big Dog.", ["[CLS]", "there", "is", "a", "big", "dog", "."]),
    ("there is a zebra", ["[CLS]", "there", "is", "a", "z", "##e", "##b", "##r", "##a"]),
    ("there is a man's cup", ["[CLS]", "there", "is", "a", "man", "'", "s", "cup"]),
    ("there is a second one", ["[CLS]", "there", "is", "a", "second", "one"]),
]


@pytest.mark.parametrize("text, tokens", OFFICIAL_ALBEF_TOKENS)
def test_the_model_is_fed_the_official_albef_token_sequence(
    tiny_albef, sample_image, text, tokens
):
    fed = []
    embeddings = tiny_albef.model.text_encoder.embeddings
    handle = embeddings.register_forward_pre_hook(
        lambda m, args, kwargs: fed.append(kwargs["input_ids"].clone()), with_kwargs=True
    )
    try:
        tiny_albef.text_pass(tiny_albef.encode_image(sample_image), text)
    finally:
        handle.remove()
    ids = fed[0][0].tolist()
    assert tiny_albef.tokenizer.convert_ids_to_tokens(ids) == tokens
    assert tiny_albef.tokenizer.sep_token_id not in ids
    assert len(tiny_albef.token_offsets(text)) == len(tokens)


def test_text_past_the_position_table_is_cut_to_it_with_a_warning(tiny_albef, caplog):
    # the tiny model has 64 positions; the official code would fail past them
    text = "there is a " + "red " * 80 + "cup"
    with caplog.at_level("WARNING", logger="iterprime_ros.models.albef"):
        offsets = tiny_albef.token_offsets(text)
    assert len(offsets) == tiny_albef.max_text_tokens == 64
    assert any("cut to the model's 64 positions" in r.message for r in caplog.records)
    # an ordinary expression is never cut: 40 tokens pass whole (the old cut was at 35)
    long = "there is a " + " ".join(["red"] * 36) + " cup"
    assert len(tiny_albef.token_offsets(long)) == 1 + 3 + 36 + 1


def _copy_checkpoint(src, dst):
    dst.mkdir()
    (dst / "ALBEF.pth").symlink_to(src / "ALBEF.pth")
    return dst


def test_a_folder_with_only_vocab_txt_loads_the_whole_vocabulary(tiny_albef_dir, tmp_path):
    from iterprime_ros.tools.tiny_models import tiny_vocab

    folder = _copy_checkpoint(tiny_albef_dir, tmp_path / "vocab_only")
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    b = AlbefITMBackend(folder, device="cpu")
    assert len(b.tokenizer) == len(tiny_vocab())
    ids = b._tokens("there is a red cup").input_ids[0].tolist()
    assert b.tokenizer.unk_token_id not in ids
    assert ids[0] == tiny_vocab().index("[CLS]")


def test_a_tokenizer_short_of_the_model_vocabulary_is_refused_naming_the_folder(
    tiny_albef_dir, tmp_path
):
    from iterprime_ros.tools.tiny_models import tiny_vocab

    folder = _copy_checkpoint(tiny_albef_dir, tmp_path / "short")
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()[:100]) + "\n")
    with pytest.raises(ModelNotFoundError, match="100 tokens, fewer than") as err:
        AlbefITMBackend(folder, device="cpu")
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_a_tokenizer_that_knows_no_english_word_is_refused(tiny_albef_dir, tmp_path):
    from iterprime_ros.tools.tiny_models import tiny_vocab

    vocab = tiny_vocab()
    # same size as the model's table, but every whole word replaced by a nonsense token
    # and no letter pieces: English text can only become [UNK]
    special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    odd = [t if t in special else f"[unused{i}]" for i, t in enumerate(vocab)]
    folder = _copy_checkpoint(tiny_albef_dir, tmp_path / "no_english")
    (folder / "vocab.txt").write_text("\n".join(odd) + "\n")
    with pytest.raises(ModelNotFoundError, match=r"to \[UNK\] only") as err:
        AlbefITMBackend(folder, device="cpu")
    assert str(folder) in str(err.value)


# ---------------------------------------------------------------- the forward pass itself
def reference_albef(sd, pixels, input_ids, heads, layer, keep=None):
    """ALBEF's ITM forward from the official keys, written out with torch.nn.functional
    (timm ViT, xbert BertModel in multi-modal mode). Returns logits, A and dA at `layer`.
    """
    x = F.conv2d(pixels, sd["visual_encoder.patch_embed.proj.weight"], stride=16)
    x = x + sd["visual_encoder.patch_embed.proj.bias"][None, :, None, None]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual_encoder.cls_token"], x], dim=1) + sd["visual_encoder.pos_embed"]
    d = x.shape[-1]

    def ln(h, p, eps):
        return F.layer_norm(h, (h.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], eps)

    def lin(h, p):
        return F.linear(h, sd[p + ".weight"], sd[p + ".bias"])

    def split(h):
        return h.view(1, h.shape[1], heads, -1).transpose(1, 2)

    n_blocks = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("visual_encoder.blocks"))
    for b in range(n_blocks):
        p = f"visual_encoder.blocks.{b}."
        qkv = lin(ln(x, p + "norm1", 1e-6), p + "attn.qkv")
        q, k, v = (split(t) for t in qkv.split(d, dim=-1))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        x = x + lin((a @ v).transpose(1, 2).reshape(1, -1, d), p + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, p + "norm2", 1e-6), p + "mlp.fc1")), p + "mlp.fc2")
    image = ln(x, "visual_encoder.norm", 1e-6)

    t = "text_encoder.bert."
    n = input_ids.shape[1]
    h = (
        sd[t + "embeddings.word_embeddings.weight"][input_ids]
        + sd[t + "embeddings.position_embeddings.weight"][:n]
        + sd[t + "embeddings.token_type_embeddings.weight"][0]
    )
    h = ln(h, t + "embeddings.LayerNorm", 1e-12)
    mask = torch.zeros(image.shape[1])
    if keep is not None:
        mask[1:][~keep] = -1e30
    captured = {}

    def attend(h, src, p, key_mask=None):
        q, k = split(lin(h, p + "self.query")), split(lin(src, p + "self.key"))
        v = split(lin(src, p + "self.value"))
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        a = torch.softmax(s if key_mask is None else s + key_mask, dim=-1)
        if p.endswith(f"layer.{layer}.crossattention."):
            a = a.detach().requires_grad_(True)
            captured["A"] = a
        out = lin((a @ v).transpose(1, 2).reshape(1, n, -1), p + "output.dense")
        return ln(out + h, p + "output.LayerNorm", 1e-12)

    n_layers = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith(t + "encoder.layer."))
    for i in range(n_layers):
        p = f"{t}encoder.layer.{i}."
        h = attend(h, h, p + "attention.")
        if p + "crossattention.self.key.weight" in sd:
            h = attend(h, image, p + "crossattention.", mask)
        ff = lin(F.gelu(lin(h, p + "intermediate.dense")), p + "output.dense")
        h = ln(ff + h, p + "output.LayerNorm", 1e-12)
    logits = lin(h[:, 0], "itm_head")[0]
    (grad,) = torch.autograd.grad(logits[1], captured["A"])
    return logits.detach(), captured["A"].detach()[0], grad[0]


@pytest.mark.parametrize("masked", [False, True])
def test_backend_matches_the_written_out_albef_forward(
    tiny_albef, official_state, sample_image, masked
):
    text = "there is a red cup on the left"
    keep = None
    if masked:
        keep = torch.ones(256, dtype=torch.bool)
        keep[40:120] = False
    out = tiny_albef.text_pass(tiny_albef.encode_image(sample_image), text, keep)
    pixels = tiny_albef.preprocess(sample_image)
    ids = tiny_albef._tokens(text).input_ids
    sd = {k: v.float() for k, v in official_state.items()}
    logits, a, g = reference_albef(sd, pixels, ids, heads=2, layer=8, keep=keep)
    assert out.attention.shape == (2, ids.shape[1], 257)
    assert torch.allclose(out.itm_logits, logits, atol=1e-4)
    assert torch.allclose(out.attention, a, atol=1e-5)
    assert torch.allclose(out.gradient, g, atol=1e-5, rtol=1e-3)
    assert out.gradient.abs().sum() > 0


def test_masked_patches_get_zero_attention_in_every_fusion_layer(tiny_albef, sample_image):
    emb = tiny_albef.encode_image(sample_image)
    text = "there is a red cup"
    keep = torch.ones(256, dtype=torch.bool)
    keep[:128] = False
    seen = []

    def record(module, args):
        seen.append(args[0].detach())

    cores = [
        layer.crossattention.self
        for layer in tiny_albef.model.text_encoder.encoder.layer
        if hasattr(layer, "crossattention")
    ]
    handles = [c.probs.register_forward_pre_hook(record) for c in cores]
    try:
        masked = tiny_albef.itm_logits(emb, text, keep)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == 6  # fusion layers 6..11
    for a in seen:
        assert a[..., 1:129].abs().max() == 0.0 and a[..., 0].min() > 0
    full = tiny_albef.itm_logits(emb, text)
    assert not torch.allclose(full, masked)
    assert torch.allclose(full, tiny_albef.text_pass(emb, text).itm_logits, atol=1e-5)


def test_segmenter_runs_end_to_end_on_albef_random_weights(
    tiny_albef_dir, tiny_proposals, sample_image
):
    """Settings -> registry -> official .pth -> ALBEF -> PWEM/IGRS -> selection. Random
    weights: plumbing only.
    """
    # random proposals rarely cover a random heat peak: best_heat makes the answer a mask
    s = SegmenterSettings(
        device="cpu",
        vlp_backend="albef_itm",
        vlp_model=str(tiny_albef_dir),
        empty_selection="best_heat",
    )
    seg = Segmenter(s, proposals=tiny_proposals, raise_unexpected=True)
    # gradcam_layer -1 (the default) takes ALBEF's own layer, the paper's 8, not BLIP's 6
    assert s.gradcam_layer == -1
    assert seg.vlp.grid == 16 and seg.vlp.gradcam_layer == 8
    r = seg.segment(sample_image, "pick up the red cup on the left")
    assert r.success, r.error
    assert r.expression == "the red cup on the left"
    assert r.mask.shape == sample_image.shape[:2] and r.mask.any()
    assert r.heatmap.shape == sample_image.shape[:2]
    assert 1 <= r.iterations <= 3 and 0 < r.itm_score < 1


def test_half_precision_pass_is_finite_and_close(tiny_albef, sample_image):
    """fp16 (as the node runs on CUDA), emulated on CPU with an fp16 copy of the model: the
    dtype-min key mask and the captured attention stay finite. Random weights: plumbing only.
    """
    from iterprime_ros.tools.bench.precision import half_copy

    half = half_copy(tiny_albef)
    keep = torch.ones(256, dtype=torch.bool)
    keep[::3] = False
    text = "there is a red cup"
    out16 = half.text_pass(half.encode_image(sample_image), text, keep)
    out32 = tiny_albef.text_pass(tiny_albef.encode_image(sample_image), text, keep)
    for t in (out16.attention, out16.gradient, out16.itm_logits):
        assert torch.isfinite(t).all()
    assert out16.attention[..., 1:][..., ~keep].abs().max() == 0.0
    assert torch.allclose(out16.itm_logits, out32.itm_logits, atol=0.05)
    assert torch.allclose(out16.attention, out32.attention, atol=0.01)


def test_live_gradcam_layer_must_cross_attend(tiny_albef_dir, tiny_proposals):
    """A live gradcam_layer change is checked against ALBEF's fusion layers (6..11 here), not
    just the layer count: layer 3 has no cross-attention and would break the next command.
    -1 goes back to the backend's own layer.
    """
    s = SegmenterSettings(device="cpu", vlp_backend="albef_itm", vlp_model=str(tiny_albef_dir))
    seg = Segmenter(s, proposals=tiny_proposals, raise_unexpected=True)
    with pytest.raises(ValueError, match="gradcam_layer 3 has no cross-attention.*6..11"):
        seg.update_settings(s.replace(gradcam_layer=3))
    assert seg.vlp.gradcam_layer == 8 and seg.settings.gradcam_layer == -1
    seg.update_settings(s.replace(gradcam_layer=10))
    assert seg.vlp.gradcam_layer == 10
    seg.update_settings(s.replace(gradcam_layer=-1))
    assert seg.vlp.gradcam_layer == 8
