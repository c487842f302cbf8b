"""BLIP image-text matching (ITM) as the VLP backend: cross-attention maps and their gradients.

What this module does to the `transformers` BLIP text encoder, and why (checked against
transformers 5.24, ``models/blip/modeling_blip_text.py``):

* **Capturing A.** ``BlipTextSelfAttention.forward`` computes
  ``attention_probs = Softmax(scores)`` and then calls its ``self.dropout`` submodule on it
  before multiplying with the values. A forward *pre-hook on that dropout module* of layer
  l's cross-attention therefore sees exactly the post-softmax, pre-dropout probabilities.
  The hook swaps them for a detached copy that requires grad and hands the copy on, so the
  rest of the forward pass is built on that tensor: ``torch.autograd.grad(match_logit, A)``
  then differentiates through the layers above l only. Model weights have
  ``requires_grad=False`` and the image embedding is computed under ``no_grad``, so no
  parameter gradients and nothing below layer l ever enters the graph.
* **Masking patches.** ``BlipTextLayer`` passes ``encoder_attention_mask`` to the
  cross-attention as ``attention_mask`` and ``BlipTextAttention`` drops it, so the
  ``encoder_attention_mask`` that ``BlipTextSelfAttention`` actually reads is always None:
  the text cross-attention ignores any image-token mask. IGRS needs the mask, so a forward
  pre-hook (with kwargs) on *every* layer's cross-attention ``BlipTextSelfAttention`` injects
  an additive mask (0 kept, dtype-min dropped) as ``encoder_attention_mask``; the module adds
  it to the scores before the softmax, so dropped keys get exactly zero probability. A test
  (``test_models_blip.py``) proves zero attention and a changed ITM logit, so an upstream
  change in this code path is noticed. The mask hook and the capture hook are installed once
  per loaded model (``HookState``) and read the current call's mask / capture layer from it:
  no hook is registered or removed per pass.
* **[ENC].** The original BLIP ITM replaces the first token ([CLS]) by ``[ENC]``
  (``tokenizer.enc_token_id``) -- the weights were trained that way. transformers'
  ``BlipForImageTextRetrieval.forward`` feeds the tokenizer's ids unchanged. We follow the
  original training (``first_token="enc"``) when the tokenizer knows ``[ENC]`` and fall back
  to [CLS] (``first_token="cls"``, the transformers behaviour) otherwise, with a warning.

* **Cross-attention keys and values, once per image.** Every cross-attention layer projects
  the 1 + g*g image tokens to keys and values (``key``/``value`` Linear on the image
  embedding) -- for BLIP base 12 layers x 2 x 577 x 768 x 768, several times the work of
  the text itself (about 10 tokens). They depend on the image only, so ``encode_image``
  computes them once (``BlipImageEmbedding.cross_kv``); each cross-attention core gets, once
  per loaded model, a forward that takes them from the hook state for the length of a call
  (no module is swapped per pass, the Linear modules are simply not called). The patch mask acts
  on the scores, not on the keys, so the cached values serve every IGRS pass and every
  command on the frame; the result is the same computation (a test checks equality).

* **Precision.** ``autocast`` (models/precision.py) runs the vision encoder (and, on CUDA, the
  text passes) under ``torch.autocast`` with float32 weights instead of casting the weights:
  the Grad-CAM gradient then drifts little from fp32 (a test compares the maps). On a CPU the
  text passes stay fp32 by default: their 10-row products stream the weights, and autocast
  would recast every weight in every pass.

The hook state is set for the length of one call and reset in ``finally``; a per-model lock
keeps concurrent calls on a shared cached model apart. On CUDA
the pass results stay on the device (no copy to the host per pass).
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
from .blip_hooks import HookState
from .loading import (
    DEFAULT_VLP_MODEL,
    LoadedModel,
    ModelNotFoundError,
    cached_model,
    check_model_type,
    check_tokenizer,
    read_json,
    resolve,
    resolve_device,
    resolve_dtype,
)
from .lru import LruCache
from .pixel_norm import CLIP_MEAN, CLIP_STD
from .precision import autocast, resolve_autocast

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class BlipImageEmbedding:
    """Vision-encoder output for one image, reused by every text pass on that image."""

    embeds: torch.Tensor  # 1 x (1 + g*g) x D on the model's device and dtype; key 0 = image CLS
    image_size: tuple[int, int]  # original H, W
    # per text layer: (key, value) projections of `embeds` by that layer's cross-attention
    # (1 x (1 + g*g) x D' each); None: computed inside every pass (e.g. a hand-made embedding)
    cross_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass(frozen=True)
class _Tokens:
    input_ids: torch.Tensor  # 1 x L (first token already replaced by [ENC] when used)
    attention_mask: torch.Tensor  # 1 x L
    # 1 x 1 x L x L additive self-attention mask, ready-made: transformers then uses it as it is
    # instead of testing a 0/1 mask for padding, a read of the mask on the host every pass
    self_mask: torch.Tensor
    offsets: tuple[tuple[int, int] | None, ...]
    valid: torch.Tensor  # L bools: False for padding and the trailing [SEP]
    tokens: tuple[str, ...]


def _load_blip(folder: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoTokenizer, BlipForImageTextRetrieval

    model = BlipForImageTextRetrieval.from_pretrained(str(folder), dtype=dtype)
    model.eval().requires_grad_(False).to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(
            f"{folder}: a fast (tokenizers) tokenizer is needed for character offsets"
        )
    check_tokenizer(tokenizer, folder, int(model.config.text_config.vocab_size))
    return LoadedModel(
        model=model, folder=folder, device=device, dtype=dtype, extras={"tokenizer": tokenizer}
    )


class BlipITMBackend:
    """VLPBackend on ``BlipForImageTextRetrieval`` (the ITM head), see the module docstring.

    gradcam_layer: the text-encoder layer whose cross-attention is explained (0-based; BLIP
    has cross-attention in all 12 layers). None takes 6: the BLIP authors' own Grad-CAM
    (LAVIS compute_gradcam, block_num=6) explains that layer (method.md §1).
    max_text_tokens: the longest prompt, capped by the text encoder's position table (512).
    The BLIP authors' Grad-CAM path tokenizes the expression without a cut (their ITM training
    cut captions at 35 tokens, their per-expression Grad-CAM does not); only text longer than
    the position table, where their code would stop with an index error, is cut (with a
    warning; token_offsets shows what was kept).
    """

    name = "blip_itm"
    model_types = ("blip",)  # config.json model_type of the folders this backend can load
    default_gradcam_layer = 6

    def __init__(
        self,
        model: str | Path = DEFAULT_VLP_MODEL,
        device: str | torch.device = "auto",
        gradcam_layer: int | None = None,
        half_precision: bool = False,
        first_token: str = "enc",
        max_text_tokens: int = 512,
        token_cache_size: int = 64,
        autocast: str = "off",
        autocast_text: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_autocast(self.device, autocast)
        # text passes under autocast: on CUDA by default; on a CPU only when asked (see module doc)
        if autocast_text is None:
            autocast_text = self.device.type == "cuda"
        self.text_autocast_dtype = self.autocast_dtype if autocast_text else None
        self.dtype = resolve_dtype(self.device, half_precision and self.autocast_dtype is None)
        folder = resolve(model, kind="vlp")
        check_model_type(folder, str(model), "vlp_model", self.name, self.model_types, "vlp")
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            raise ModelNotFoundError(
                f"model folder {folder} has no tokenizer ({' or '.join(TOKENIZER_FILES)})"
            )
        self.folder = folder
        self._loaded = cached_model(
            "blip_itm",
            folder,
            self.device,
            self.dtype,
            lambda: _load_blip(folder, self.device, self.dtype),
        )
        self.model = self._loaded.model
        self.tokenizer = self._loaded.extras["tokenizer"]
        with self._loaded.lock:
            if "hooks" not in self._loaded.extras:
                self._loaded.extras["hooks"] = HookState.install(self._layers())
        self._hooks: HookState = self._loaded.extras["hooks"]
        cfg = self.model.config
        self.num_layers: int = int(cfg.text_config.num_hidden_layers)
        self.num_heads: int = int(cfg.text_config.num_attention_heads)
        self.gradcam_layers = range(self.num_layers)  # every BLIP text layer cross-attends
        if gradcam_layer is None:
            gradcam_layer = self.default_gradcam_layer
        if gradcam_layer not in self.gradcam_layers:
            raise ValueError(
                f"gradcam_layer {gradcam_layer} out of range: the BLIP text encoder in {folder} "
                f"has layers 0..{self.num_layers - 1}"
            )
        self.gradcam_layer = gradcam_layer
        self.max_text_tokens = min(max_text_tokens, int(cfg.text_config.max_position_embeddings))
        self._read_preprocessing(folder)
        self._choose_first_token(first_token, folder)
        self._token_cache: LruCache[str, _Tokens] = LruCache(token_cache_size)

    def _read_preprocessing(self, folder: Path) -> None:
        """The checkpoint's own preprocessing (resize + rescale + CLIP normalise), read from its
        preprocessor_config.json, and the patch grid it gives.
        """
        vc = self.model.config.vision_config
        pp = read_json(folder, "preprocessor_config.json")
        size = pp.get("size") or {}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        self.input_size: tuple[int, int] = (
            int(size.get("height", vc.image_size)),
            int(size.get("width", vc.image_size)),
        )
        patch = int(vc.patch_size)
        if self.input_size[0] != self.input_size[1] or self.input_size[0] % patch:
            raise ValueError(
                f"{folder}: BLIP input {self.input_size} is not a square multiple of patch {patch}"
            )
        self.grid: int = self.input_size[0] // patch
        # A preprocessing size other than the trained one needs interpolated position embeddings.
        self._interpolate_pos = self.input_size[0] != int(vc.image_size)
        self._resample = int(pp.get("resample", Image.Resampling.BICUBIC))
        self._rescale = (
            float(pp.get("rescale_factor", 1 / 255)) if pp.get("do_rescale", True) else 1.0
        )
        normalise = pp.get("do_normalize", True)
        self._mean = np.asarray(
            pp.get("image_mean", CLIP_MEAN) if normalise else (0, 0, 0), np.float32
        )
        self._std = np.asarray(
            pp.get("image_std", CLIP_STD) if normalise else (1, 1, 1), np.float32
        )

    def _choose_first_token(self, first_token: str, folder: Path) -> None:
        """[ENC] as in the original BLIP ITM when asked and the tokenizer has it, else [CLS]."""
        if first_token not in ("enc", "cls"):
            raise ValueError(f"first_token must be 'enc' or 'cls', not {first_token!r}")
        self.first_token_id: int | None = None
        if first_token == "enc":
            enc_id = self.tokenizer.convert_tokens_to_ids("[ENC]")
            if enc_id is None or enc_id == self.tokenizer.unk_token_id:
                log.warning(
                    "tokenizer in %s has no [ENC] token; the ITM pass keeps [CLS] first", folder
                )
            else:
                self.first_token_id = int(enc_id)
        self.first_token = "enc" if self.first_token_id is not None else "cls"

    # ------------------------------------------------------------------ image
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 RGB -> 1 x 3 x S x S normalised pixels (the checkpoint's resize and
        mean/std).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}"
            )
        h, w = self.input_size
        resized = Image.fromarray(image).resize((w, h), resample=Image.Resampling(self._resample))
        x = np.asarray(resized, dtype=np.float32) * self._rescale
        x = (x - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    def encode_image(self, image: np.ndarray) -> BlipImageEmbedding:
        """Vision encoder once per image, without gradient (IGRS never needs one through it).

        ``no_grad``, not ``inference_mode``: the text passes build a graph on these tensors,
        which inference tensors forbid. Under autocast the outputs are cast back to the
        weights' dtype, which the text passes run in.
        """
        pixels = self.preprocess(image)
        if self.device.type == "cuda":  # pinned host memory: an asynchronous upload
            pixels = pixels.pin_memory()
        pixels = pixels.to(self.device, self.dtype, non_blocking=True)
        with self._loaded.lock, torch.no_grad():
            with autocast(self.device, self.autocast_dtype):
                out = self.model.vision_model(
                    pixel_values=pixels, interpolate_pos_encoding=self._interpolate_pos
                )
            embeds = out.last_hidden_state.detach().to(self.dtype)
            # the keys/values at the text passes' precision: the same as a pass computing them
            with autocast(self.device, self.text_autocast_dtype):
                cross_kv = tuple(
                    (
                        layer.crossattention.self.key(embeds),
                        layer.crossattention.self.value(embeds),
                    )
                    for layer in self._layers()
                )
        return BlipImageEmbedding(embeds=embeds, image_size=image.shape[:2], cross_kv=cross_kv)

    # ------------------------------------------------------------------ text
    def _tokens(self, text: str) -> _Tokens:
        return self._token_cache.get_or_make(text, lambda: self._tokenize(text))

    def _tokenize(self, text: str) -> _Tokens:
        enc = self.tokenizer(
            text,
            truncation=True,
            max_length=self.max_text_tokens,
            return_offsets_mapping=True,
            return_attention_mask=True,
        )
        ids = list(enc["input_ids"])
        att = list(enc["attention_mask"])
        if getattr(enc, "encodings", None) and enc.encodings[0].overflowing:
            log.warning("BLIP text cut to the model's %d positions: %r", len(ids), text)
        special = set(self.tokenizer.all_special_ids)
        offsets: list[tuple[int, int] | None] = []
        for i, (tid, (s, e)) in enumerate(zip(ids, enc["offset_mapping"])):
            offsets.append(None if (tid in special or e <= s or att[i] == 0) else (int(s), int(e)))
        valid = [bool(a) for a in att]
        last = max((i for i, a in enumerate(att) if a), default=-1)
        if last > 0 and ids[last] == self.tokenizer.sep_token_id:
            valid[last] = False
        if self.first_token_id is not None:
            ids[0] = self.first_token_id
        toks = _Tokens(
            input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
            attention_mask=torch.tensor([att], dtype=torch.long, device=self.device),
            self_mask=self._self_mask(att),
            offsets=tuple(offsets),
            valid=torch.tensor(valid, dtype=torch.bool),
            tokens=tuple(self.tokenizer.convert_ids_to_tokens(ids)),
        )
        return toks

    def _self_mask(self, att: list[int]) -> torch.Tensor:
        """0 where a token may be attended, the dtype's minimum for padding, in the dtype the
        attention scores have (autocast's when the text passes run under it).
        """
        dtype = self.text_autocast_dtype or self.dtype
        keys = torch.tensor(att, dtype=torch.bool)
        row = torch.zeros(len(att), dtype=dtype).masked_fill(~keys, torch.finfo(dtype).min)
        return row.expand(1, 1, len(att), len(att)).contiguous().to(self.device)

    def _self_mask_of(self, toks: _Tokens) -> torch.Tensor:
        """The cached mask in the dtype of this backend's scores (a copy sharing the token cache
        may run in another precision); no work when it already is.
        """
        return toks.self_mask.to(self.text_autocast_dtype or self.dtype)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Char span of each token the pass uses; None for [ENC]/[CLS], [SEP] and padding."""
        return list(self._tokens(text).offsets)

    def token_valid(self, text: str) -> torch.Tensor:
        """L bools, as PassOutput.token_valid will be (known before any pass, for token roles)."""
        return self._tokens(text).valid.clone()

    def tokens(self, text: str) -> list[str]:
        """Token strings as fed to the encoder (debugging, logs)."""
        return list(self._tokens(text).tokens)

    # ------------------------------------------------------------------ passes
    def _key_mask(self, keep: torch.Tensor | None, n_keys: int) -> torch.Tensor | None:
        if keep is None:
            return None
        keep = torch.as_tensor(keep).reshape(-1)
        if keep.numel() != n_keys - 1:
            raise ValueError(f"keep has {keep.numel()} entries, expected g*g = {n_keys - 1}")
        # built where the model runs (no host copy per pass); the image CLS key is always kept
        keep = keep.to(self.device, torch.bool, non_blocking=True)
        full = torch.cat([torch.ones(1, dtype=torch.bool, device=self.device), keep])
        additive = torch.zeros(n_keys, dtype=self.dtype, device=self.device)
        additive = additive.masked_fill(~full, torch.finfo(self.dtype).min)  # a fill, no copy
        return additive.view(1, 1, 1, n_keys)

    def _layers(self) -> Any:
        return self.model.text_encoder.encoder.layer

    @contextmanager
    def cached_cross_kv(self, image_embedding: BlipImageEmbedding) -> Iterator[None]:
        """Within the block, the cross-attention key/value projections of `image_embedding.embeds`
        come from ``image_embedding.cross_kv`` instead of being recomputed (no-op without it).
        The cores read them from the hook state installed with the model: nothing is swapped.
        """
        kv = image_embedding.cross_kv
        if kv is None:
            yield
            return
        n_layers = len(self._layers())
        if len(kv) != n_layers:
            raise ValueError(
                f"the image embedding has cross-attention keys for {len(kv)} layers, "
                f"the model has {n_layers}"
            )
        previous = self._hooks.kv, self._hooks.kv_source
        self._hooks.kv, self._hooks.kv_source = kv, image_embedding.embeds
        try:
            yield
        finally:
            self._hooks.kv, self._hooks.kv_source = previous

    @contextmanager
    def masked_cross_attention(
        self, keep: torch.Tensor | None, n_keys: int | None = None
    ) -> Iterator[None]:
        """Within the block, every text cross-attention layer sees only the image keys where keep
        is True.

        Patches the transformers bug described in the module docstring: the hook installed once
        per model injects an additive mask (0 kept / dtype-min dropped) as
        BlipTextSelfAttention's ``encoder_attention_mask``. keep=None: no-op.
        """
        additive = self._key_mask(keep, n_keys if n_keys is not None else self.grid**2 + 1)
        if additive is None:
            yield
            return
        previous = self._hooks.mask
        self._hooks.mask = additive
        try:
            yield
        finally:
            self._hooks.mask = previous

    def text_pass(
        self, image_embedding: BlipImageEmbedding, text: str, keep: torch.Tensor | None = None
    ) -> PassOutput:
        """ITM logits, layer-l cross-attention probabilities A (K x L x (1+g*g)) and d(match
        logit)/dA.
        """
        toks = self._tokens(text)
        embeds = image_embedding.embeds
        hooks = self._hooks
        with (
            self._loaded.lock,
            self.masked_cross_attention(keep, embeds.shape[1]),
            self.cached_cross_kv(image_embedding),
        ):
            hooks.capture_layer, hooks.captured = self.gradcam_layer, None
            try:
                with torch.enable_grad(), autocast(self.device, self.text_autocast_dtype):
                    out = self.model.text_encoder(
                        input_ids=toks.input_ids,
                        attention_mask=self._self_mask_of(toks),
                        encoder_hidden_states=embeds,
                        return_dict=True,
                    )
                    logits = self.model.itm_head(out.last_hidden_state[:, 0, :])[0]
                    attention = hooks.captured
                    if attention is None:
                        raise RuntimeError(
                            "the cross-attention hook did not fire: transformers' BLIP text "
                            "encoder changed; see iterprime_ros/models/blip.py"
                        )
                    (gradient,) = torch.autograd.grad(logits[1], attention)
            finally:
                hooks.capture_layer, hooks.captured = None, None
        # on CUDA the results stay on the device: IGRS and PWEM continue there without a copy
        return PassOutput(
            itm_logits=logits.detach().float(),
            attention=attention.detach()[0].float(),
            gradient=gradient.detach()[0].float(),
            token_valid=toks.valid.clone(),
        )

    def itm_logits(
        self, image_embedding: BlipImageEmbedding, text: str, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(no-match, match) logits without gradients, with the same patch masking (scoring,
        benches).
        """
        toks = self._tokens(text)
        embeds = image_embedding.embeds
        with (
            self._loaded.lock,
            self.masked_cross_attention(keep, embeds.shape[1]),
            self.cached_cross_kv(image_embedding),
            torch.inference_mode(),
            autocast(self.device, self.text_autocast_dtype),
        ):
            out = self.model.text_encoder(
                input_ids=toks.input_ids,
                attention_mask=self._self_mask_of(toks),
                encoder_hidden_states=embeds,
                return_dict=True,
            )
            return self.model.itm_head(out.last_hidden_state[:, 0, :])[0].float()
