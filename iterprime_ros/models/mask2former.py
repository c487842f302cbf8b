"""Mask2Former (transformers) as the proposal backend: every query mask, thresholded, at full
resolution.

Follows the reference (method.md §5), which used detectron2's Mask2Former: resize so the
shortest edge is 800 and the longest at most 1333, ImageNet normalisation, zero-pad bottom/right
to a multiple of 32. The mask logits come at 1/4 of the padded input; they are upsampled to the
padded size, the padding is cropped, the valid region is resized to H x W (bilinear on logits,
as detectron2's ``sem_seg_postprocess``), and ``sigmoid > 0.35`` gives one binary mask per
query. No class filter, no NMS: selection (core/selection.py) decides.

The two resizes (x4 to the padded input, then the valid region to H x W) are linear and
separable, so they are done as one: per axis, the matrix of the composed map is built once per
image size by pushing the identity through the very same two ``F.interpolate`` calls (exact by
linearity) and applied as banded matrix products. Same masks as the two-step path (a test
checks), without the 800 x 1088 intermediate of every query (about 0.2 s of 0.4 s per VGA frame
for 200 queries on one core).

The transformers image processor is not used (its fast variant needs torchvision, and it
stretches the image to a multiple of 32 instead of padding). The resize sizes are settings
(not read from the checkpoint's preprocessor config) so the proposal resolution is the
method's whichever checkpoint is chosen; mean/std and the pad multiple come from the config.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .deformable_sampling import cpu_deformable_sampling
from .loading import (
    DEFAULT_PROPOSAL_MODEL,
    LoadedModel,
    cached_model,
    check_model_type,
    read_json,
    resolve,
    resolve_device,
    resolve_dtype,
)
from .pixel_norm import IMAGENET_MEAN, IMAGENET_STD
from .precision import autocast, resolve_autocast

log = logging.getLogger(__name__)


def resized_shape(
    height: int, width: int, shortest_edge: int, longest_edge: int
) -> tuple[int, int]:
    """(h, w) after scaling the shortest edge to `shortest_edge` with the longest capped at
    `longest_edge`.
    """
    scale = shortest_edge / min(height, width)
    if max(height, width) * scale > longest_edge:
        scale = longest_edge / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


@dataclass(frozen=True)
class AxisResize:
    """The composed x4-upsample -> crop -> resize of one axis as a matrix, cut into row blocks.

    blocks: (output slice, input slice, weights out x in) -- each block of output rows reads
    only the few logit rows its bilinear taps reach, so the products stay small.
    """

    n_in: int
    n_out: int
    blocks: tuple[tuple[slice, slice, torch.Tensor], ...]

    @classmethod
    def build(
        cls, n_in: int, n_padded: int, n_valid: int, n_out: int, block: int = 64
    ) -> "AxisResize":
        """The matrix of x4-upsample to n_padded, crop to n_valid, resize to n_out (1-D)."""
        eye = torch.eye(n_in, dtype=torch.float32)[None, None]  # rows = unit logit impulses
        up = F.interpolate(eye, size=(n_in, n_padded), mode="bilinear", align_corners=False)
        out = F.interpolate(
            up[..., :n_valid], size=(n_in, n_out), mode="bilinear", align_corners=False
        )
        matrix = out[0, 0].T.contiguous()  # n_out x n_in
        blocks = []
        for start in range(0, n_out, block):
            rows = matrix[start : start + block]
            used = torch.nonzero(rows.abs().sum(0) > 0).flatten()
            lo, hi = (int(used.min()), int(used.max()) + 1) if used.numel() else (0, 1)
            blocks.append(
                (slice(start, start + rows.shape[0]), slice(lo, hi), rows[:, lo:hi].contiguous())
            )
        return cls(n_in=n_in, n_out=n_out, blocks=tuple(blocks))

    def to(self, device: torch.device) -> "AxisResize":
        return AxisResize(
            self.n_in, self.n_out, tuple((o, i, w.to(device)) for o, i, w in self.blocks)
        )

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """Resize dim -2 of x (... x n_in x W) -> ... x n_out x W."""
        out = x.new_empty(*x.shape[:-2], self.n_out, x.shape[-1])
        for o, i, w in self.blocks:
            torch.matmul(w, x[..., i, :], out=out[..., o, :])
        return out

    def cols(self, x: torch.Tensor) -> torch.Tensor:
        """Resize dim -1 of x (... x H x n_in) -> ... x H x n_out."""
        out = x.new_empty(*x.shape[:-1], self.n_out)
        for o, i, w in self.blocks:
            out[..., o] = torch.matmul(x[..., i], w.T)
        return out


def _load_mask2former(folder: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import Mask2FormerForUniversalSegmentation

    model = Mask2FormerForUniversalSegmentation.from_pretrained(str(folder), dtype=dtype)
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(model=model, folder=folder, device=device, dtype=dtype)


class Mask2FormerProposals:
    """ProposalBackend on ``Mask2FormerForUniversalSegmentation`` (see the module docstring).

    threshold: sigmoid cut for each query mask (reference 0.35). chunk: queries post-processed at
    once, bounding the memory of full-resolution float logits. autocast: auto | off | bf16 | fp16
    (models/precision.py) for the network's forward pass; with autocast on, the weights stay
    float32 whatever half_precision says. direct_resize=False keeps the two-step resize (the
    bench compares both).
    """

    name = "mask2former"
    model_types = ("mask2former",)  # config.json model_type of the folders it can load

    def __init__(
        self,
        model: str | Path = DEFAULT_PROPOSAL_MODEL,
        device: str | torch.device = "auto",
        threshold: float = 0.35,
        shortest_edge: int = 800,
        longest_edge: int = 1333,
        half_precision: bool = False,
        chunk: int = 25,
        autocast: str = "off",
        direct_resize: bool = True,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_autocast(self.device, autocast)
        self.dtype = resolve_dtype(self.device, half_precision and self.autocast_dtype is None)
        self.direct_resize = direct_resize
        self._resizers: dict[tuple[int, ...], tuple[AxisResize, AxisResize]] = {}
        folder = resolve(model, kind="proposals")
        check_model_type(
            folder, str(model), "proposal_model", self.name, self.model_types, "proposals"
        )
        self.folder = folder
        self._loaded = cached_model(
            "mask2former",
            folder,
            self.device,
            self.dtype,
            lambda: _load_mask2former(folder, self.device, self.dtype),
        )
        self.model = self._loaded.model
        self.num_queries = int(self.model.config.num_queries)
        self.set_threshold(threshold)
        self.shortest_edge = shortest_edge
        self.longest_edge = longest_edge
        self.chunk = max(1, chunk)
        pp = read_json(folder, "preprocessor_config.json")
        self._divisor = int(pp.get("size_divisor", pp.get("size_divisibility", 32)) or 1)
        self._rescale = (
            float(pp.get("rescale_factor", 1 / 255)) if pp.get("do_rescale", True) else 1.0
        )
        normalise = pp.get("do_normalize", True)
        self._mean = np.asarray(
            pp.get("image_mean", IMAGENET_MEAN) if normalise else (0, 0, 0), np.float32
        )
        self._std = np.asarray(
            pp.get("image_std", IMAGENET_STD) if normalise else (1, 1, 1), np.float32
        )
        self._resample = Image.Resampling(int(pp.get("resample", Image.Resampling.BILINEAR)))

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """-> (1 x 3 x Hp x Wp normalised, zero-padded pixels; (h, w) of the valid resized
        region).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}"
            )
        h, w = resized_shape(image.shape[0], image.shape[1], self.shortest_edge, self.longest_edge)
        resized = Image.fromarray(image).resize((w, h), resample=self._resample)
        x = (np.asarray(resized, dtype=np.float32) * self._rescale - self._mean) / self._std
        d = self._divisor
        hp, wp = -(-h // d) * d, -(-w // d) * d
        padded = np.zeros((3, hp, wp), np.float32)
        padded[:, :h, :w] = x.transpose(2, 0, 1)
        return torch.from_numpy(padded)[None], (h, w)

    def mask_logits(
        self, image: np.ndarray
    ) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Raw query mask logits (Q x Hp/4 x Wp/4, float32), the padded size and the valid size."""
        pixels, valid = self.preprocess(image)
        if self.device.type == "cuda":  # pinned host memory: an asynchronous upload
            pixels = pixels.pin_memory()
        with (
            self._loaded.lock,
            torch.inference_mode(),
            autocast(self.device, self.autocast_dtype),
            cpu_deformable_sampling(self.device),
        ):
            out = self.model(pixel_values=pixels.to(self.device, self.dtype, non_blocking=True))
        return out.masks_queries_logits[0].float(), tuple(pixels.shape[-2:]), valid

    def set_threshold(self, threshold: float) -> None:
        """The sigmoid cut for each query mask (also changed at run time by the node)."""
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self._logit_threshold = math.log(threshold / (1.0 - threshold))  # sigmoid(x) > t

    def propose(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> Q x H x W bool: every query's mask at sigmoid > threshold."""
        return self.propose_tensor(image).cpu().numpy()

    def propose_tensor(self, image: np.ndarray) -> torch.Tensor:
        """As propose, as a bool tensor left on the model's device (no copy to the host)."""
        logits, padded, valid = self.mask_logits(image)
        with torch.inference_mode():
            if self.direct_resize:
                return self._masks_direct(logits, padded, valid, image.shape[:2])
            return self._masks_two_step(logits, padded, valid, image.shape[:2])

    def _resizer(
        self, logits: torch.Tensor, padded: tuple[int, int], valid: tuple[int, int], out: tuple
    ) -> tuple[AxisResize, AxisResize]:
        key = (*logits.shape[-2:], *padded, *valid, *out)
        hit = self._resizers.get(key)
        if hit is None:
            hl, wl = logits.shape[-2:]
            hit = (
                AxisResize.build(hl, padded[0], valid[0], out[0]).to(logits.device),
                AxisResize.build(wl, padded[1], valid[1], out[1]).to(logits.device),
            )
            self._resizers = {key: hit}  # one camera, one size: keep the latest only
        return hit

    def _masks_direct(
        self, logits: torch.Tensor, padded: tuple[int, int], valid: tuple, out: tuple
    ) -> torch.Tensor:
        """One composed resize per axis (see the module docstring), then the threshold."""
        rows, cols = self._resizer(logits, padded, valid, tuple(out))
        masks = torch.empty((logits.shape[0], *out), dtype=torch.bool, device=logits.device)
        for start in range(0, logits.shape[0], self.chunk):
            part = cols.cols(logits[start : start + self.chunk])
            masks[start : start + part.shape[0]] = rows.rows(part) > self._logit_threshold
        return masks

    def _masks_two_step(
        self, logits: torch.Tensor, padded: tuple[int, int], valid: tuple, out: tuple
    ) -> torch.Tensor:
        """The reference post-processing: x4 to the padded size, crop, resize to H x W."""
        h, w = valid
        out_h, out_w = out
        masks = torch.empty(
            (logits.shape[0], out_h, out_w), dtype=torch.bool, device=logits.device
        )
        for start in range(0, logits.shape[0], self.chunk):
            part = logits[start : start + self.chunk][None]
            part = F.interpolate(part, size=padded, mode="bilinear", align_corners=False)
            part = part[:, :, :h, :w]  # crop the padding before going back to the original size
            part = F.interpolate(part, size=(out_h, out_w), mode="bilinear", align_corners=False)
            masks[start : start + part.shape[1]] = part[0] > self._logit_threshold
        return masks
