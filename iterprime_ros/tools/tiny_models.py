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
from typing import Iterable

import torch

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

# CLIP normalisation, as the BLIP checkpoints' preprocessor_config.json carries it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def wordpiece_vocab(words: Iterable[str], pieces: Iterable[str]) -> list[str]:
    """Special tokens, `words`, `pieces`, single letters/digits (whole and ##), punctuation, then
    BLIP's [DEC]/[ENC] last (as BLIP adds them after the BERT vocab); no duplicates, order kept.
    """
    letters = [t for ch in string.ascii_lowercase + string.digits for t in (ch, "##" + ch)]
    ordered = [*SPECIAL_TOKENS, *words, *pieces, *letters, *string.punctuation, *BLIP_EXTRA_TOKENS]
    return list(dict.fromkeys(ordered))


def tiny_vocab() -> list[str]:
    return wordpiece_vocab(TINY_WORDS, TINY_PIECES)


def _save_tiny_tokenizer(folder: Path) -> int:
    from transformers import BertTokenizer  # tokenizers-backed in transformers 5

    vocab = tiny_vocab()
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    # Same special-token setup as the BLIP release: bos "[DEC]", additional "[ENC]".
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    tok.model_max_length = 64
    tok.save_pretrained(str(folder))
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
            pad_token_id=vocab.index("[PAD]"),
            bos_token_id=vocab.index("[DEC]"),
            sep_token_id=vocab.index("[SEP]"),
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
    preprocessor = {
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
        "size": {"height": image_size, "width": image_size},
    }
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
    # Scaling
    # the mask embedder's last layer gives masks with some structure (holes, several components).
    head = dict(model.named_parameters())[
        "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight"
    ]
    with torch.no_grad():
        head.mul_(30.0)
    model.save_pretrained(str(folder))
    preprocessor = {
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
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (folder / "TINY_RANDOM_WEIGHTS.txt").write_text("Random weights: for plumbing tests only.\n")
    return folder
