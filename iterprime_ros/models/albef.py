"""ALBEF image-text matching (ITM) as the VLP backend: the model the IteRPrimE paper reports.

Why a second backend: the paper's Table 1 comes from ALBEF (14M pre-training), not BLIP.
The authors' code loads the official ALBEF ``.pth`` into ALBEF's own xbert/vit classes; here
the same architecture is assembled from ``transformers`` parts and the official state dict
is read by its own key names (``torch.load(weights_only=True)``: no pickled code runs).

Architecture (ALBEF ``configs/config_bert.json`` + ``models/vit.py``):

* ``visual_encoder``: ViT-B/16 at 256 px (16 x 16 patches + CLS), LayerNorm eps 1e-6, built as
  a ``transformers`` ViTModel; timm's fused ``attn.qkv`` is split into q/k/v on load.
* ``text_encoder``: BERT embeddings, layers 0..fusion-1 self-attention only (the text encoder),
  layers fusion..N-1 self-attention + cross-attention to the image tokens (the fusion encoder);
  official sizes: 12 layers, fusion layer 6. Built from ``transformers`` Bert parts, with the
  xbert parameter names (``encoder.layer.{i}.crossattention.self.key`` ...).
* ``itm_head``: Linear(768, 2) on the first ([CLS]) token of the last layer.

Grad-CAM on ``text_encoder.encoder.layer[8].crossattention`` (the 3rd fusion layer, as in the
paper and the authors' code). The cross-attention core is a small subclass of transformers'
``BertCrossAttention`` with an explicit softmax -> dropout path; its attention
probabilities (post-softmax, pre-dropout) become a grad-requiring leaf when the core's
``capture`` flag is set, the same capture as models/blip.py. Patch masking for IGRS: every
cross-attention core adds the additive key mask the backend sets on it for one call (0 kept,
dtype-min dropped), so masked patches get exactly zero attention in every fusion layer. No
hook is registered per pass and the pass results stay on the model's device.

Architecture sizes are read from the checkpoint's shapes (widths, depths, fusion layer, image
size); only the head count is not in the shapes (default width // 64, i.e. 12 for ALBEF).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from ..core.backend import PassOutput
from .albef_model import (
    AlbefITM,
    CrossAttentionCore,
    infer_architecture,
    official_to_module,
)
from .loading import (
    LoadedModel,
    ModelNotFoundError,
    cached_model,
    check_tokenizer,
    resolve_device,
    resolve_dtype,
)
from .lru import LruCache
from .pixel_norm import CLIP_MEAN, CLIP_STD

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_NAMES = ("ALBEF.pth", "ALBEF_14M.pth", "ALBEF_4M.pth")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an official ALBEF ``.pth`` (``{"model": ...}`` or a bare state dict),
    read with ``weights_only=True`` (no pickled code is executed).
    """
    try:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # an old (non-zip) file cannot be memory-mapped
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # refused class (UnpicklingError), truncated or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"{path} cannot be read with torch.load(weights_only=True): {first}"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelNotFoundError(f"{path} does not hold an ALBEF state dict")
    return dict(obj)


def find_checkpoint(model: str | Path) -> tuple[Path, Path]:
    """A ``.pth`` file, or a folder holding one -> (checkpoint, folder with the tokenizer)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path, path.parent
    if not path.is_dir():
        raise ModelNotFoundError(
            f"ALBEF checkpoint {str(model)!r} does not exist (a .pth file or a folder holding "
            "one; README: 'ALBEF backend')"
        )
    for name in DEFAULT_CHECKPOINT_NAMES:
        if (path / name).is_file():
            return path / name, path
    found = sorted(path.glob("*.pth"))
    if len(found) != 1:
        raise ModelNotFoundError(
            f"ALBEF folder {path} holds {len(found)} .pth files; name one "
            f"({' or '.join(DEFAULT_CHECKPOINT_NAMES)}) or pass the file"
        )
    return found[0], path


def _load_tokenizer(folder: Path, vocab_size: int) -> Any:
    """The BERT tokenizer next to the checkpoint, checked against the model's vocabulary.

    A folder with only ``vocab.txt`` is read through ``from_pretrained`` (which finds the file
    by its name in every transformers version), never by a constructor argument whose name
    changed between versions and was then silently ignored.
    """
    from transformers import AutoTokenizer, BertTokenizer

    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(folder))
    elif (folder / "vocab.txt").is_file():
        tok = BertTokenizer.from_pretrained(str(folder), do_lower_case=True)
    else:
        raise ModelNotFoundError(
            f"{folder} has no BERT tokenizer (vocab.txt of bert-base-uncased, or tokenizer.json) "
            "next to the ALBEF checkpoint"
        )
    if not getattr(tok, "is_fast", False):
        raise ModelNotFoundError(f"{folder}: a fast tokenizer is needed for character offsets")
    check_tokenizer(tok, folder, vocab_size)
    return tok


def _load_albef(
    checkpoint: Path,
    tokenizer_folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    num_heads: int | None,
) -> LoadedModel:
    state = read_checkpoint(checkpoint)
    try:
        arch = infer_architecture({k: tuple(v.shape) for k, v in state.items()}, num_heads)
    except KeyError as exc:
        raise ModelNotFoundError(f"{checkpoint} is not an ALBEF checkpoint (no {exc})") from None
    mapped, unused = official_to_module(state)
    model = AlbefITM(arch)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ModelNotFoundError(
            f"{checkpoint}: ALBEF weights do not fit the ITM model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    log.info(
        "ALBEF %s: %d official keys used, %d not needed", checkpoint, len(mapped), len(unused)
    )
    model.eval().requires_grad_(False).to(device=device, dtype=dtype)
    return LoadedModel(
        model=model,
        folder=checkpoint,
        device=device,
        dtype=dtype,
        extras={
            "tokenizer": _load_tokenizer(tokenizer_folder, arch.vocab_size),
            "unused_keys": unused,
        },
    )


@dataclass(frozen=True)
class AlbefImageEmbedding:
    """Vision-encoder output for one image (1 x (1 + g*g) x D), reused by every text pass."""

    embeds: torch.Tensor
    image_size: tuple[int, int]


@dataclass(frozen=True)
class _Tokens:
    input_ids: torch.Tensor
    offsets: tuple[tuple[int, int] | None, ...]
    valid: torch.Tensor


class AlbefITMBackend:
    """VLPBackend on the ALBEF ITM model (see the module docstring).

    model: an official ALBEF ``.pth`` (e.g. ALBEF.pth, the 14M pre-training checkpoint) or a
    folder holding it, with the bert-base-uncased tokenizer (vocab.txt) beside it.
    gradcam_layer: None takes 8 (the paper's); it must be a fusion layer, 6..11 for ALBEF.
    max_text_tokens: the longest input, capped by the model's position table (512 for ALBEF).
    The official Grad-CAM path tokenizes an expression without any cut; only text longer than
    the position table, where the official code would stop with an index error, is cut here
    (with a warning) so the command still gets an answer.
    """

    name = "albef_itm"
    default_gradcam_layer = 8

    @staticmethod
    def check_model(model: str | Path) -> str:
        """Cheap check before loading (node configure): the checkpoint exists; returns "albef".
        ModelNotFoundError (one line) otherwise. Not a transformers folder: no config.json.
        """
        find_checkpoint(model)
        return "albef"

    def __init__(
        self,
        model: str | Path,
        device: str | torch.device = "auto",
        gradcam_layer: int | None = None,
        half_precision: bool = False,
        max_text_tokens: int = 512,
        num_heads: int | None = None,
        token_cache_size: int = 64,
        **_ignored: Any,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, half_precision)
        checkpoint, tok_folder = find_checkpoint(model)
        self.folder = checkpoint
        self._loaded = cached_model(
            "albef_itm",
            checkpoint,
            self.device,
            self.dtype,
            lambda: _load_albef(checkpoint, tok_folder, self.device, self.dtype, num_heads),
        )
        self.model: AlbefITM = self._loaded.model
        self.tokenizer = self._loaded.extras["tokenizer"]
        arch = self.model.arch
        self.num_layers = arch.text_layers
        self.fusion_layer = arch.fusion_layer
        self.num_heads = arch.text_heads
        self.gradcam_layers = range(arch.fusion_layer, arch.text_layers)  # cross-attending
        if gradcam_layer is None:
            gradcam_layer = self.default_gradcam_layer
        if gradcam_layer not in self.gradcam_layers:
            raise ValueError(
                f"gradcam_layer {gradcam_layer} has no cross-attention: ALBEF's fusion layers "
                f"are {arch.fusion_layer}..{arch.text_layers - 1}"
            )
        if gradcam_layer != 8:
            log.warning("ALBEF Grad-CAM on layer %d; the paper uses layer 8", gradcam_layer)
        self.gradcam_layer = gradcam_layer
        self.grid: int = arch.grid
        self.input_size = (arch.image_size, arch.image_size)
        self.max_text_tokens = min(max_text_tokens, arch.max_positions)
        self._mean = np.asarray(CLIP_MEAN, np.float32)
        self._std = np.asarray(CLIP_STD, np.float32)
        self._token_cache: LruCache[str, _Tokens] = LruCache(token_cache_size)

    # ------------------------------------------------------------------ image
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 RGB -> 1 x 3 x S x S: bicubic squash to S = 256, /255, CLIP mean/std
        (ALBEF's test transform).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}"
            )
        h, w = self.input_size
        resized = Image.fromarray(image).resize((w, h), resample=Image.Resampling.BICUBIC)
        x = (np.asarray(resized, dtype=np.float32) / 255.0 - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    def encode_image(self, image: np.ndarray) -> AlbefImageEmbedding:
        """Vision encoder once per image, without gradient."""
        pixels = self.preprocess(image).to(self.device, self.dtype)
        with self._loaded.lock, torch.no_grad():
            embeds = self.model.visual_encoder(pixel_values=pixels).last_hidden_state.detach()
        return AlbefImageEmbedding(embeds=embeds, image_size=image.shape[:2])

    # ------------------------------------------------------------------ text
    def _tokens(self, text: str) -> _Tokens:
        return self._token_cache.get_or_make(text, lambda: self._tokenize(text))

    def _tokenize(self, text: str) -> _Tokens:
        """ALBEF's own input: ``[CLS] X`` with no ``[SEP]``, as its BertTokenizer builds a single
        sequence (the model was trained and evaluated on that), cut to the position table.
        """
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        body = list(enc["input_ids"])
        spans = list(enc["offset_mapping"])
        room = self.max_text_tokens - 1  # [CLS] takes one position
        if len(body) > room:
            log.warning(
                "ALBEF text of %d tokens cut to the model's %d positions: %r",
                len(body) + 1,
                self.max_text_tokens,
                text,
            )
            body, spans = body[:room], spans[:room]
        ids = [self.tokenizer.cls_token_id, *body]
        offsets = (None,) + tuple(None if e <= s else (int(s), int(e)) for s, e in spans)
        return _Tokens(
            input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
            offsets=offsets,
            valid=torch.ones(len(ids), dtype=torch.bool),
        )

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Char span of each token; None for [CLS]."""
        return list(self._tokens(text).offsets)

    def token_valid(self, text: str) -> torch.Tensor:
        return self._tokens(text).valid.clone()

    # ------------------------------------------------------------------ passes
    def _cross_cores(self) -> list[CrossAttentionCore]:
        return [
            layer.crossattention.self
            for layer in self.model.text_encoder.encoder.layer
            if hasattr(layer, "crossattention")
        ]

    @contextmanager
    def masked_cross_attention(self, keep: torch.Tensor | None, n_keys: int) -> Iterator[None]:
        """Within the block, every cross-attention layer sees only the image keys where keep is
        True (the image CLS key always); keep=None: no-op.

        The additive mask (0 kept, dtype-min dropped) is built where the model runs and handed
        to the cross-attention cores as an attribute: no hook is registered per pass and
        nothing is copied to the host.
        """
        if keep is None:
            yield
            return
        keep = torch.as_tensor(keep).reshape(-1)
        if keep.numel() != n_keys - 1:
            raise ValueError(f"keep has {keep.numel()} entries, expected g*g = {n_keys - 1}")
        keep = keep.to(self.device, torch.bool, non_blocking=True)
        full = torch.cat([torch.ones(1, dtype=torch.bool, device=self.device), keep])
        additive = torch.zeros(n_keys, dtype=self.dtype, device=self.device)
        additive = additive.masked_fill(~full, torch.finfo(self.dtype).min)
        cores = self._cross_cores()
        for core in cores:
            core.key_mask = additive.view(1, 1, 1, n_keys)
        try:
            yield
        finally:
            for core in cores:
                core.key_mask = None

    def text_pass(
        self, image_embedding: AlbefImageEmbedding, text: str, keep: torch.Tensor | None = None
    ) -> PassOutput:
        """ITM logits, layer-l cross-attention probabilities A (K x L x (1+g*g)) and
        d(match logit)/dA, left on the model's device (IGRS and PWEM continue there).
        """
        toks = self._tokens(text)
        embeds = image_embedding.embeds
        core = self.model.text_encoder.encoder.layer[self.gradcam_layer].crossattention.self
        with self._loaded.lock, self.masked_cross_attention(keep, embeds.shape[1]):
            core.capture, core.captured = True, None
            try:
                with torch.enable_grad():
                    hidden = self.model.text_encoder(toks.input_ids, embeds)
                    logits = self.model.itm_head(hidden[:, 0, :])[0]
                    attention = core.captured
                    assert attention is not None
                    (gradient,) = torch.autograd.grad(logits[1], attention)
            finally:
                core.capture, core.captured = False, None
        return PassOutput(
            itm_logits=logits.detach().float(),
            attention=attention.detach()[0].float(),
            gradient=gradient.detach()[0].float(),
            token_valid=toks.valid.clone(),
        )

    def itm_logits(
        self, image_embedding: AlbefImageEmbedding, text: str, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(no-match, match) logits without gradients, with the same patch masking."""
        toks = self._tokens(text)
        embeds = image_embedding.embeds
        with (
            self._loaded.lock,
            self.masked_cross_attention(keep, embeds.shape[1]),
            torch.no_grad(),
        ):
            hidden = self.model.text_encoder(toks.input_ids, embeds)
            return self.model.itm_head(hidden[:, 0, :])[0].float()
