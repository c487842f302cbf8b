"""The "mask image" variant of IGRS (paper Table 4), as a VLP backend wrapper.

The method hides the already-attended patches from the cross-attention keys ("mask feature",
method.md §3). The paper's ablation compares that with hiding them in the *image*: paint the
dropped patches with the preprocessing mean (zero after normalisation, the usual "blank") and
run the vision encoder again on each pass. The wrapper keeps the core unchanged: it implements
the ``VLPBackend`` protocol (core/backend.py) around any other backend --

* ``encode_image`` keeps the raw image next to the inner embedding;
* ``text_pass(embedding, text, keep)`` with keep=None is the inner pass on the original
  embedding; with a keep mask it paints the dropped patches, re-encodes that copy (cached per
  mask) and runs the inner pass on it with *every* key visible.

Patch geometry: the backend squashes the image to its square input (BLIP: S x S, g x g patches
of S/g pixels). When the inner backend exposes ``input_size`` (BLIP does) the image is first
resized to exactly that size (bicubic, as BLIP's preprocessing) and the patches are painted on
the exact patch grid; the inner backend's own resize is then the identity. Otherwise the patch
rectangles are painted at the original resolution (edges blur by a pixel in the resize).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...core.backend import PassOutput, VLPBackend
from ...models.pixel_norm import CLIP_MEAN


@dataclass
class MaskedImageEmbedding:
    """The inner embedding of the untouched image plus what re-encoding a masked copy needs."""

    inner: Any
    image: (
        np.ndarray
    )  # the image the patch grid is painted on (resized to the backend input when known)
    masked: OrderedDict[bytes, Any] = field(default_factory=OrderedDict)


class ImageMaskingBackend:
    """VLPBackend wrapper: IGRS masks the image pixels instead of the cross-attention keys.

    fill: RGB uint8 fill for dropped patches; default the inner backend's normalisation mean
    (``image_mean`` or BLIP's ``_mean``; CLIP's mean otherwise). cache_size: masked encodings
    kept per image (one per IGRS pass, so 4 covers T = 5).
    """

    def __init__(
        self, inner: VLPBackend, fill: tuple[int, int, int] | None = None, cache_size: int = 4
    ) -> None:
        self.inner = inner
        self.grid = int(inner.grid)
        if fill is None:
            mean = getattr(inner, "image_mean", None)
            if mean is None:
                mean = getattr(inner, "_mean", CLIP_MEAN)
            fill = tuple(
                int(round(float(m) * 255))
                for m in np.asarray(mean, dtype=np.float64).reshape(-1)[:3]
            )
        self.fill = np.asarray(fill, dtype=np.uint8)
        self.cache_size = cache_size
        self.encodes = 0  # vision-encoder runs on masked copies (tests, timing)

    # Text-side helpers pass through; anything taking an embedding must go through this class.
    _FORWARDED = frozenset({"token_valid", "tokens", "input_size", "device", "dtype", "name"})

    def __getattr__(self, name: str) -> Any:
        if name in ImageMaskingBackend._FORWARDED:
            return getattr(self.inner, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def encode_image(self, image: np.ndarray) -> MaskedImageEmbedding:
        size = getattr(self.inner, "input_size", None)
        work = image
        if size is not None:
            h, w = (int(v) for v in size)
            if image.shape[:2] != (h, w):
                work = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
        return MaskedImageEmbedding(inner=self.inner.encode_image(work), image=work)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        return self.inner.token_offsets(text)

    def paint(self, image: np.ndarray, keep: torch.Tensor) -> np.ndarray:
        """A copy of `image` with the patches where keep is False filled with `self.fill`."""
        g = self.grid
        keep_grid = torch.as_tensor(keep).reshape(g, g).cpu().numpy().astype(bool)
        h, w = image.shape[:2]
        rows = np.round(np.linspace(0, h, g + 1)).astype(int)
        cols = np.round(np.linspace(0, w, g + 1)).astype(int)
        out = image.copy()
        for i, j in zip(*np.nonzero(~keep_grid)):
            out[rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = self.fill
        return out

    def text_pass(
        self, image_embedding: MaskedImageEmbedding, text: str, keep: torch.Tensor | None
    ) -> PassOutput:
        if keep is None:
            return self.inner.text_pass(image_embedding.inner, text, None)
        keep = torch.as_tensor(keep).reshape(-1).to(torch.bool).cpu()
        if keep.numel() != self.grid**2:
            raise ValueError(f"keep has {keep.numel()} entries, expected g*g = {self.grid**2}")
        if bool(keep.all()):
            return self.inner.text_pass(image_embedding.inner, text, None)
        key = np.packbits(keep.numpy()).tobytes()
        cache = image_embedding.masked
        emb = cache.get(key)
        if emb is None:
            emb = self.inner.encode_image(self.paint(image_embedding.image, keep))
            self.encodes += 1
            cache[key] = emb
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return self.inner.text_pass(emb, text, None)
