"""The world's BLIP-architecture image-text-matching model: tokenizer, builder, saving.

The model is a ``transformers`` BlipForImageTextRetrieval (ViT image encoder; BERT text
encoder with cross-attention to the image in every layer; ITM head on the first token), the
class the real backend loads, only much smaller. It is saved with ``save_pretrained`` next
to a BERT WordPiece tokenizer (BLIP's [DEC]/[ENC] special tokens included) and a
BlipImageProcessor-style preprocessor_config.json, so models/loading.py and models/blip.py
load it from its folder exactly like a real checkpoint.

First token: the BLIP authors' ITM replaces [CLS] by [ENC] (``input_ids[:, 0] =
enc_token_id``). The model is trained that way; at save time the [CLS] embedding row is set
to the [ENC] row, so a backend that keeps the tokenizer's [CLS] gets the same result.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...models.pixel_norm import CLIP_MEAN, CLIP_STD
from ..tiny_models import (
    blip_preprocessor_config,
    blip_token_ids,
    blip_tokenizer,
    wordpiece_vocab,
)
from .grammar import GRAMMAR_WORDS

# Words outside the grammar that commands and tests commonly use, so they stay whole tokens
# (the model never saw them in training: they carry no meaning for it).
EXTRA_WORDS: tuple[str, ...] = tuple(
    "this that it of in with and or for you would show point take give fetch lift hold "
    "middle center front back behind far closest nearest two three".split()
)
PIECES: tuple[str, ...] = ("##s", "##es", "##most", "##er", "##est")


@dataclass(frozen=True)
class WorldModelConfig:
    """Architecture of the world model (defaults: the committed checkpoint)."""

    image_size: int = 128
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    vision_intermediate: int = 256
    text_hidden: int = 64
    text_layers: int = (
        12  # BLIP-base has 12, with cross-attention in each: Grad-CAM layer 8 exists
    )
    text_heads: int = 4
    text_intermediate: int = 128
    max_positions: int = 40
    itc_dim: int = 64

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def world_vocab() -> list[str]:
    return wordpiece_vocab(GRAMMAR_WORDS + EXTRA_WORDS, PIECES)


def build_tokenizer(max_length: int = 40) -> Any:
    return blip_tokenizer(world_vocab(), max_length)


def build_model(cfg: WorldModelConfig, seed: int = 0):
    """A freshly initialised BlipForImageTextRetrieval of this architecture."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    vocab = world_vocab()
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=cfg.text_hidden,
            encoder_hidden_size=cfg.vision_hidden,
            intermediate_size=cfg.text_intermediate,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=cfg.max_positions,
            **blip_token_ids(vocab),
            attention_probs_dropout_prob=0.0,
            hidden_dropout_prob=0.0,
        ),
        vision_config=dict(
            hidden_size=cfg.vision_hidden,
            intermediate_size=cfg.vision_intermediate,
            num_hidden_layers=cfg.vision_layers,
            num_attention_heads=cfg.vision_heads,
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            initializer_range=0.02,
            attention_dropout=0.0,
        ),
        image_text_hidden_size=cfg.itc_dim,
    )
    model = BlipForImageTextRetrieval(config)
    return model


def preprocess(
    images: np.ndarray | list[np.ndarray], size: int, mean=CLIP_MEAN, std=CLIP_STD
) -> torch.Tensor:
    """B x H x W x 3 uint8 -> B x 3 x size x size float, as BlipImageProcessor (bicubic squash,
    1/255, mean/std). World scenes are rendered at the model size, so the resize is a no-op.
    """
    arr = np.stack(list(images)) if isinstance(images, list) else images
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[1] != size or arr.shape[2] != size:
        from PIL import Image

        arr = np.stack(
            [np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)) for a in arr]
        )
    x = torch.from_numpy(arr).float().div_(255.0).permute(0, 3, 1, 2)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def save_world_model(
    model,
    tokenizer,
    folder: str | Path,
    cfg: WorldModelConfig,
    card: str | None = None,
    extra: dict | None = None,
    tie_cls_to_enc: bool = True,
) -> Path:
    """save_pretrained + tokenizer + preprocessor_config.json (+ training summary, model card).

    tie_cls_to_enc: copy the [ENC] embedding into [CLS] (only when [CLS] was not trained for
    the contrastive head), so an ITM pass that keeps [CLS] first behaves like one with [ENC].
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tie_cls_to_enc:
        enc = tokenizer.convert_tokens_to_ids("[ENC]")
        cls = tokenizer.convert_tokens_to_ids("[CLS]")
        with torch.no_grad():
            emb = model.text_encoder.embeddings.word_embeddings.weight
            emb[cls].copy_(emb[enc])
    model.config.iterprime_world = {
        "gradcam_layer_recommended": (extra or {}).get("gradcam_layer"),
        "note": "trained on the synthetic tabletop world only (MODEL_CARD.md)",
    }
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    pre = blip_preprocessor_config(cfg.image_size)
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    (folder / "world_config.json").write_text(
        json.dumps({"architecture": asdict(cfg), **(extra or {})}, indent=2) + "\n"
    )
    if card is not None:
        (folder / "MODEL_CARD.md").write_text(card)
    return folder


def load_world_model(folder: str | Path):
    """(model, tokenizer) from a saved world-model folder (eval mode, fp32)."""
    from transformers import BertTokenizer, BlipForImageTextRetrieval

    model = BlipForImageTextRetrieval.from_pretrained(str(folder)).eval()
    tok = BertTokenizer.from_pretrained(str(folder))
    return model, tok
