"""Tiny random-weight models with the real architectures, for plumbing tests only.

The weights are random: these models know nothing about images or language, so a
test that uses them checks shapes, wiring, caching, masking and error paths -- never
segmentation quality. They are saved with ``save_pretrained`` (plus tokenizer and
preprocessor configs) so that tests load them back through the same loading code
the real checkpoints go through.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Iterable

import torch

from ..models.pixel_norm import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

# Words the tiny tokenizer knows as whole tokens; anything else still tokenizes (into
# letter pieces "w ##o ##r ##d"), which exercises the subword-to-word mapping.
TINY_WORDS: tuple[str, ...] = (
    "there is a an the this that of on in at to with and or for me please could you can would "
    "pick up grab get give bring hand take find show point fetch "
    "left right top bottom middle center front back behind near next far closest "
    "red blue green yellow white black orange brown pink purple gray grey small big large tall "
    "man woman person people guy girl boy lady child kid men women "
    "cup mug bottle glass bowl plate fork knife spoon box book phone laptop chair table couch "
    "dog cat car bus bike horse banana apple orange pizza cake sandwich donut "
    "shirt jacket hat umbrella bag ball teddy bear two one three second first last "
    "holding wearing sitting standing "
).split()

# Subword pieces shared by many words, so the tiny vocab splits words the way BERT does.
TINY_PIECES: tuple[str, ...] = ("##s", "##es", "##ed", "##ing", "##er", "##est", "##'", "##ly")

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BLIP_EXTRA_TOKENS: tuple[str, ...] = (
    "[DEC]",
    "[ENC]",
)  # BLIP's decoder-BOS and encoder (ITM) tokens


def wordpiece_vocab(words: Iterable[str], pieces: Iterable[str]) -> list[str]:
    """Special tokens, `words`, `pieces`, single letters/digits (whole and ##), punctuation, then
    BLIP's [DEC]/[ENC] last (as BLIP adds them after the BERT vocab); no duplicates, order kept.
    """
    letters = [t for ch in string.ascii_lowercase + string.digits for t in (ch, "##" + ch)]
    ordered = [*SPECIAL_TOKENS, *words, *pieces, *letters, *string.punctuation, *BLIP_EXTRA_TOKENS]
    return list(dict.fromkeys(ordered))


def tiny_vocab() -> list[str]:
    return wordpiece_vocab(TINY_WORDS, TINY_PIECES)


def blip_tokenizer(vocab: list[str], max_length: int) -> Any:
    """A lower-casing BERT WordPiece tokenizer over `vocab` with the BLIP release's special
    tokens (bos "[DEC]", additional "[ENC]"), so models/blip.py finds them as in a checkpoint.
    """
    from transformers import BertTokenizer  # tokenizers-backed in transformers 5

    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    tok.model_max_length = max_length
    return tok


def blip_token_ids(vocab: list[str]) -> dict[str, int]:
    """BlipTextConfig's pad/bos/sep ids for a `wordpiece_vocab` (bos is BLIP's "[DEC]")."""
    return {
        "pad_token_id": vocab.index("[PAD]"),
        "bos_token_id": vocab.index("[DEC]"),
        "sep_token_id": vocab.index("[SEP]"),
    }


def blip_preprocessor_config(size: int) -> dict[str, Any]:
    """preprocessor_config.json of a BLIP checkpoint at `size` px (bicubic squash, CLIP
    normalisation), as models/blip.py reads it.
    """
    return {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "image_processor_type": "BlipImageProcessor",
        "processor_class": "BlipProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": size, "width": size},
    }


def mask2former_preprocessor_config() -> dict[str, Any]:
    """preprocessor_config.json of the COCO Mask2Former checkpoints (800/1333 px, ImageNet
    normalisation), as models/mask2former.py reads it.
    """
    return {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "image_processor_type": "Mask2FormerImageProcessor",
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 800, "longest_edge": 1333},
        "size_divisor": 32,
        "ignore_index": 255,
    }


def _save_tiny_tokenizer(folder: Path) -> int:
    vocab = tiny_vocab()
    blip_tokenizer(vocab, max_length=64).save_pretrained(str(folder))
    return len(vocab)


def build_tiny_blip(
    folder: str | Path,
    seed: int = 0,
    *,
    image_size: int = 96,
    patch_size: int = 16,
    text_layers: int = 12,
) -> Path:
    """Save a random-weight BlipForImageTextRetrieval (hidden 32) with tokenizer and preprocessor
    config.

    Random weights: plumbing tests only. The text encoder keeps BLIP-base's 12 layers (each with
    cross-attention) so the node's default Grad-CAM layer (8) exists; at hidden size 32 they cost
    nothing. The vision initializer range is set to 0.02: BlipVisionConfig's default (1e-10) makes
    every image embedding the same, which would hide image-dependence bugs.
    """
    from transformers import BlipConfig, BlipForImageTextRetrieval

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab_size = _save_tiny_tokenizer(folder)
    vocab = tiny_vocab()
    config = BlipConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=text_layers,
            num_attention_heads=4,
            max_position_embeddings=64,
            **blip_token_ids(vocab),
            attention_probs_dropout_prob=0.0,
            hidden_dropout_prob=0.0,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=patch_size,
            initializer_range=0.02,
        ),
        image_text_hidden_size=16,
    )
    model = BlipForImageTextRetrieval(config).eval()
    model.save_pretrained(str(folder))
    preprocessor = blip_preprocessor_config(image_size)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (folder / "TINY_RANDOM_WEIGHTS.txt").write_text("Random weights: for plumbing tests only.\n")
    return folder


def build_tiny_mask2former(folder: str | Path, seed: int = 0, *, num_queries: int = 8) -> Path:
    """Save a random-weight Mask2FormerForUniversalSegmentation (tiny Swin) with a preprocessor
    config.

    Random weights: plumbing tests only. Small enough (embed dim 8, one block per stage, 8 queries)
    to run at the method's full 800/1333 input size in about 0.3 s on a CPU core.
    """
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,  # GroupNorm(32) needs 32
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=num_queries,
        num_labels=3,
        id2label={0: "thing", 1: "stuff", 2: "other"},
        label2id={"thing": 0, "stuff": 1, "other": 2},
    )
    model = Mask2FormerForUniversalSegmentation(config).eval()
    # At init the mask logits are ~0 +- 0.1, so every query passes sigmoid > 0.35 everywhere.
    # Scaling the mask embedder's last layer gives masks with some structure
    # (holes, several components).
    head = dict(model.named_parameters())[
        "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight"
    ]
    with torch.no_grad():
        head.mul_(30.0)
    model.save_pretrained(str(folder))
    preprocessor = mask2former_preprocessor_config()
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (folder / "TINY_RANDOM_WEIGHTS.txt").write_text("Random weights: for plumbing tests only.\n")
    return folder


Shapes = dict[str, tuple[int, ...]]


def _albef_vit_shapes(d: int, layers: int, patch_size: int, image_size: int) -> Shapes:
    """The timm ViT of ALBEF's visual encoder (models/vit.py), its keys without a prefix."""
    g = image_size // patch_size
    vis: Shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + g * g, d),
        "patch_embed.proj.weight": (d, 3, patch_size, patch_size),
        "patch_embed.proj.bias": (d,),
    }
    for b in range(layers):
        p = f"blocks.{b}."
        vis.update(
            {
                p + "norm1.weight": (d,),
                p + "norm1.bias": (d,),
                p + "attn.qkv.weight": (3 * d, d),
                p + "attn.qkv.bias": (3 * d,),
                p + "attn.proj.weight": (d, d),
                p + "attn.proj.bias": (d,),
                p + "norm2.weight": (d,),
                p + "norm2.bias": (d,),
                p + "mlp.fc1.weight": (4 * d, d),
                p + "mlp.fc1.bias": (4 * d,),
                p + "mlp.fc2.weight": (d, 4 * d),
                p + "mlp.fc2.bias": (d,),
            }
        )
    vis.update({"norm.weight": (d,), "norm.bias": (d,)})
    return vis


def _bert_attention_shapes(p: str, t: int, key_width: int) -> Shapes:
    """One BERT attention block (self- or cross-attention: keys and values of key_width)."""
    return {
        p + "self.query.weight": (t, t),
        p + "self.query.bias": (t,),
        p + "self.key.weight": (t, key_width),
        p + "self.key.bias": (t,),
        p + "self.value.weight": (t, key_width),
        p + "self.value.bias": (t,),
        p + "output.dense.weight": (t, t),
        p + "output.dense.bias": (t,),
        p + "output.LayerNorm.weight": (t,),
        p + "output.LayerNorm.bias": (t,),
    }


def _albef_bert_shapes(
    t: int,
    d: int,
    layers: int,
    fusion_layer: int,
    i_size: int,
    vocab_size: int,
    max_positions: int,
) -> Shapes:
    """ALBEF's BERT (models/xbert.py) without a prefix: the layers from fusion_layer on also
    cross-attend to the image (keys of the vision width d).
    """
    bert: Shapes = {
        "embeddings.position_ids": (1, max_positions),
        "embeddings.word_embeddings.weight": (vocab_size, t),
        "embeddings.position_embeddings.weight": (max_positions, t),
        "embeddings.token_type_embeddings.weight": (2, t),
        "embeddings.LayerNorm.weight": (t,),
        "embeddings.LayerNorm.bias": (t,),
    }
    for n in range(layers):
        p = f"encoder.layer.{n}."
        bert.update(_bert_attention_shapes(p + "attention.", t, t))
        if n >= fusion_layer:
            bert.update(_bert_attention_shapes(p + "crossattention.", t, d))
        bert.update(
            {
                p + "intermediate.dense.weight": (i_size, t),
                p + "intermediate.dense.bias": (i_size,),
                p + "output.dense.weight": (t, i_size),
                p + "output.dense.bias": (t,),
                p + "output.LayerNorm.weight": (t,),
                p + "output.LayerNorm.bias": (t,),
            }
        )
    return bert


def _mlm_head_shapes(t: int, vocab_size: int) -> Shapes:
    """BertForMaskedLM's prediction head (``cls.*``), which the pre-training checkpoint keeps."""
    return {
        "cls.predictions.bias": (vocab_size,),
        "cls.predictions.transform.dense.weight": (t, t),
        "cls.predictions.transform.dense.bias": (t,),
        "cls.predictions.transform.LayerNorm.weight": (t,),
        "cls.predictions.transform.LayerNorm.bias": (t,),
        "cls.predictions.decoder.weight": (vocab_size, t),
        "cls.predictions.decoder.bias": (vocab_size,),
    }


def albef_official_shapes(
    *,
    vision_width: int = 768,
    vision_layers: int = 12,
    patch_size: int = 16,
    image_size: int = 256,
    text_width: int = 768,
    text_layers: int = 12,
    fusion_layer: int = 6,
    intermediate_size: int = 3072,
    vocab_size: int = 30522,
    max_positions: int = 512,
    embed_dim: int = 256,
    queue_size: int = 65536,
) -> Shapes:
    """Key -> shape of an official ALBEF pre-training checkpoint's ``model`` state dict
    (ALBEF.pth, 14M; defaults = the official sizes), written from ALBEF's code
    (models/model_pretrain.py, models/vit.py, models/xbert.py, configs/config_bert.json):
    timm ViT, BertForMaskedLM text encoder (``text_encoder.bert.*`` + ``text_encoder.cls.*``),
    projections, ITM head, momentum copies and queues.
    """
    d, t = vision_width, text_width
    vis = _albef_vit_shapes(d, vision_layers, patch_size, image_size)
    bert = _albef_bert_shapes(
        t, d, text_layers, fusion_layer, intermediate_size, vocab_size, max_positions
    )
    mlm = _mlm_head_shapes(t, vocab_size)
    out: Shapes = {}
    for suffix in ("", "_m"):  # the model and its momentum copy
        out.update({f"visual_encoder{suffix}.{k}": v for k, v in vis.items()})
        out.update({f"text_encoder{suffix}.bert.{k}": v for k, v in bert.items()})
        out.update({f"text_encoder{suffix}.{k}": v for k, v in mlm.items()})
        out.update(
            {
                f"vision_proj{suffix}.weight": (embed_dim, d),
                f"vision_proj{suffix}.bias": (embed_dim,),
                f"text_proj{suffix}.weight": (embed_dim, t),
                f"text_proj{suffix}.bias": (embed_dim,),
            }
        )
    out.update(
        {
            "temp": (),
            "itm_head.weight": (2, t),
            "itm_head.bias": (2,),
            "image_queue": (embed_dim, queue_size),
            "text_queue": (embed_dim, queue_size),
            "queue_ptr": (1,),
        }
    )
    return out


def build_tiny_albef(folder: str | Path, seed: int = 0, *, width: int = 128) -> Path:
    """Save a random ALBEF checkpoint with the official key names (albef_official_shapes) at a
    tiny width (2 heads of 64), the official 256 px / 16 px patches, 12 text layers with fusion
    from layer 6, as ``ALBEF.pth`` (``{"model": state_dict}``) plus a tiny BERT tokenizer.

    Random weights: plumbing tests only.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    vocab_size = len(tiny_vocab())
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab={t: i for i, t in enumerate(tiny_vocab())}, do_lower_case=True)
    tok.model_max_length = 64
    tok.save_pretrained(str(folder))
    shapes = albef_official_shapes(
        vision_width=width,
        vision_layers=2,
        text_width=width,
        intermediate_size=2 * width,
        vocab_size=vocab_size,
        max_positions=64,
        embed_dim=16,
        queue_size=8,
    )
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("position_ids"):
            state[key] = torch.arange(shape[1]).reshape(shape)
        elif "LayerNorm.weight" in key or _is_norm_weight(key):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=gen)
    torch.save({"model": state, "epoch": 29}, folder / "ALBEF.pth")
    (folder / "TINY_RANDOM_WEIGHTS.txt").write_text("Random weights: for plumbing tests only.\n")
    return folder


def _is_norm_weight(key: str) -> bool:
    """LayerNorm weights (timm norm1/norm2/norm) start near 1, like trained ones."""
    return key.endswith(("norm1.weight", "norm2.weight", "norm.weight"))
