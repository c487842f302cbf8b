"""The benchmark's models and input: real-size architectures built from their configs with
random weights (timing does not depend on weight values), saved and loaded through the
project's own loading code, and the photograph they are timed on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

# name -> (description, config overrides); BlipConfig() defaults are BLIP ITM base (ViT-B/16, 384
# px).
VLP_ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("BLIP ITM base (ViT-B/16 384 px, BERT-base text, 12 cross-attention layers)", {}),
    "large": (
        "BLIP ITM large (ViT-L/16 384 px, BERT-base text)",
        {
            "vision_config": {
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
            },
            "text_config": {"encoder_hidden_size": 1024},
        },
    ),
    "tiny": ("tiny random BLIP (models/tiny.py, 96 px, width 32; CI only)", {}),
}


def _swin(image_size: int, embed_dim: int, stage3_depth: int) -> dict[str, Any]:
    """SwinConfig fields of a released Swin: 32-wide heads, doubling per stage; window 12 at
    384 px, 7 at 224 px (one rule for the four backbones, so they cannot drift apart).
    """
    heads = embed_dim // 32
    return dict(
        patch_size=4,
        mlp_ratio=4.0,
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        image_size=image_size,
        embed_dim=embed_dim,
        depths=[2, 2, stage3_depth, 2],
        num_heads=[heads, 2 * heads, 4 * heads, 8 * heads],
        window_size=12 if image_size == 384 else 7,
    )


# name -> (description, SwinConfig fields, num_queries); the COCO-panoptic checkpoints' shapes.
PROPOSAL_ARCHS: dict[str, tuple[str, dict[str, Any], int]] = {
    "swin-l": ("Mask2Former Swin-L (COCO panoptic shape, 200 queries)", _swin(384, 192, 18), 200),
    "swin-b": ("Mask2Former Swin-B (100 queries)", _swin(384, 128, 18), 100),
    "swin-s": ("Mask2Former Swin-S (100 queries)", _swin(224, 96, 18), 100),
    "swin-t": ("Mask2Former Swin-T (100 queries)", _swin(224, 96, 6), 100),
    "swin-tiny-test": ("tiny random Mask2Former (models/tiny.py, 8 queries; CI only)", {}, 8),
}


def bench_vocab(size: int) -> list[str]:
    """The tiny word-level vocabulary padded with BERT's "[unusedN]" fillers to `size` tokens,
    with BLIP's [DEC]/[ENC] last as in a checkpoint.

    Why padded: the model keeps the real embedding table (BERT-base's 30,524 rows), and the
    loading code refuses a tokenizer whose size differs from that table, as it would for a
    checkpoint folder missing its vocabulary. The commands still tokenize into the same
    number of tokens as with BERT's vocabulary, because the tiny one knows every word of them.
    """
    from .. import tiny_models as tiny

    words = [t for t in tiny.tiny_vocab() if t not in tiny.BLIP_EXTRA_TOKENS]
    fillers = [f"[unused{i}]" for i in range(size - len(words) - len(tiny.BLIP_EXTRA_TOKENS))]
    return [*words, *fillers, *tiny.BLIP_EXTRA_TOKENS]


def save_bench_tokenizer(folder: Path) -> list[str]:
    """Save the real-size BLIP folder's tokenizer (`bench_vocab` at BERT-base's size); return
    its vocabulary for the token ids of the config.
    """
    from transformers import BlipConfig

    from .. import tiny_models as tiny

    vocab = bench_vocab(int(BlipConfig().text_config.vocab_size))
    tiny.blip_tokenizer(vocab, max_length=512).save_pretrained(str(folder))
    return vocab


def build_vlp(folder: Path, arch: str, seed: int = 0) -> Path:
    """Save a random-weight BLIP ITM of `arch` (config, weights, tokenizer, preprocessor) into
    folder.
    """
    import torch

    from .. import tiny_models as tiny

    if arch not in VLP_ARCHS:
        raise ValueError(f"unknown --arch {arch!r}; known: {', '.join(VLP_ARCHS)}")
    if arch == "tiny":
        return tiny.build_tiny_blip(folder, seed=seed)
    from transformers import BlipConfig, BlipForImageTextRetrieval

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    over = VLP_ARCHS[arch][1]
    vocab = save_bench_tokenizer(folder)
    text = {**tiny.blip_token_ids(vocab), **over.get("text_config", {})}
    # BlipVisionConfig's default initializer range (1e-10) makes every image embedding equal and
    # the heat map flat (IGRS would stop as degenerate after one pass); 0.02 as the text side.
    vision = {"initializer_range": 0.02, **over.get("vision_config", {})}
    config = BlipConfig(text_config=text, vision_config=vision)
    model = BlipForImageTextRetrieval(config).eval()
    model.save_pretrained(str(folder))
    pre = tiny.blip_preprocessor_config(int(config.vision_config.image_size))
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    (folder / "RANDOM_WEIGHTS.txt").write_text(f"Random weights ({arch}): for benchmarks only.\n")
    return folder


def build_proposals(
    folder: Path, arch: str, seed: int = 0, num_queries: int | None = None
) -> Path:
    """Save a random-weight Mask2Former of `arch` with its preprocessor config into folder."""
    import torch

    from .. import tiny_models as tiny

    if arch not in PROPOSAL_ARCHS:
        raise ValueError(f"unknown --proposal-arch {arch!r}; known: {', '.join(PROPOSAL_ARCHS)}")
    if arch == "swin-tiny-test":
        return tiny.build_tiny_mask2former(folder, seed=seed, num_queries=num_queries or 8)
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    _, swin, queries = PROPOSAL_ARCHS[arch]
    labels = {i: f"class_{i}" for i in range(133)}  # COCO panoptic: 133 classes
    config = Mask2FormerConfig(
        backbone_config=SwinConfig(**swin),
        num_queries=num_queries or queries,
        num_labels=len(labels),
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = Mask2FormerForUniversalSegmentation(config).eval()
    scale, coverage = _calibrate_mask_head(model, MASK_COVERAGE)
    model.save_pretrained(str(folder))
    pre = tiny.mask2former_preprocessor_config()
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    (folder / "RANDOM_WEIGHTS.txt").write_text(
        f"Random weights ({arch}): for benchmarks only. Mask head scaled by {scale:.4g}: mean "
        "mask area "
        f"{coverage:.1%} on the calibration image.\n"
    )
    return folder


MASK_COVERAGE = (
    0.08  # mean area of a random-weight proposal after calibration (a trained model: a few %)
)


def _calibrate_mask_head(model: Any, target: float) -> tuple[float, float]:
    """Scale the mask head so the thresholded random masks cover `target` of the image on average.

    A random mask head gives logits near 0, so every query passes sigmoid > 0.35 almost everywhere
    (200 full-image masks, all covering the heat peak); scaled up a lot, nearly every
    mask is empty.
    Scaling the head's last layer scales the logits exactly; the scale is searched on one forward
    pass of a small version of the benchmark photograph. Timing does not depend on it; what the
    selection step has to do does.
    """
    import math

    import torch

    params = dict(model.named_parameters())
    weight = params["model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight"]
    bias = params["model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.bias"]
    image = bench_image((256, 192)).astype(np.float32) / 255.0
    pixels = torch.from_numpy((image - 0.45) / 0.225).permute(2, 0, 1)[None]
    with torch.no_grad():
        logits = model(pixel_values=pixels).masks_queries_logits[0].float()
    cut = math.log(0.35 / 0.65)
    lo, hi = 1e-3, 1e4
    for _ in range(60):  # coverage falls as the scale grows (towards the share of positive logits)
        mid = math.sqrt(lo * hi)
        if float((logits * mid > cut).float().mean()) > target:
            lo = mid
        else:
            hi = mid
    scale = math.sqrt(lo * hi)
    with torch.no_grad():
        weight.mul_(scale)
        bias.mul_(scale)
    return scale, float((logits * scale > cut).float().mean())


def build_once(root: Path, name: str, builder: Callable[[Path], Path]) -> tuple[Path, bool]:
    """A model folder under root, built once (reused by later runs with the same --model-dir)."""
    folder = root / name
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder, True
    return builder(folder), False


def bench_image(size: tuple[int, int]) -> np.ndarray:
    """Skimage's coffee photograph (cups, spoon, plate on a table) resized to W x H, RGB uint8."""
    import cv2
    from skimage import data

    w, h = size
    return np.ascontiguousarray(cv2.resize(data.coffee(), (w, h), interpolation=cv2.INTER_AREA))


def frame_variant(image: np.ndarray, k: int) -> np.ndarray:
    """A different frame of the same scene (one pixel changed): a new frame for the frame cache."""
    out = image.copy()
    out[0, 0, 0] = (int(out[0, 0, 0]) + 1 + k) % 256
    out[0, 1, 0] = k % 256
    return out
