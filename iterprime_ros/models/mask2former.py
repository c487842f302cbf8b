"""Mask2Former (transformers) as the proposal backend: every query mask, thresholded, at full
resolution.

Follows the reference (method.md §5), which used detectron2's Mask2Former: resize so the
shortest edge is 800 and the longest at most 1333, ImageNet normalisation, zero-pad bottom/right
to a multiple of 32. The mask logits come at 1/4 of the padded input; they are upsampled to the
padded size, the padding is cropped, the valid region is resized to H x W (bilinear on logits,
as detectron2's ``sem_seg_postprocess``), and ``sigmoid > 0.35`` gives one binary mask per
query. No class filter, no NMS: selection (core/selection.py) decides.

The transformers image processor is not used (its fast variant needs torchvision, and it
stretches the image to a multiple of 32 instead of padding). The resize sizes are settings
(not read from the checkpoint's preprocessor config) so the proposal resolution is the
method's whichever checkpoint is chosen; mean/std and the pad multiple come from the config.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .loading import (
    DEFAULT_PROPOSAL_MODEL,
    LoadedModel,
    cached_model,
    read_json,
    resolve,
    resolve_device,
    resolve_dtype,
)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _load_mask2former(folder: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import Mask2FormerForUniversalSegmentation

    model = Mask2FormerForUniversalSegmentation.from_pretrained(str(folder), dtype=dtype)
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(model=model, folder=folder, device=device, dtype=dtype)


class Mask2FormerProposals:
    """ProposalBackend on ``Mask2FormerForUniversalSegmentation`` (see the module docstring).

    threshold: sigmoid cut for each query mask (reference 0.35). chunk: queries post-processed at
    once, bounding the memory of full-resolution float logits.
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
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, half_precision)
        folder = resolve(model, kind="proposals")
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
        with self._loaded.lock, torch.no_grad():
            out = self.model(pixel_values=pixels.to(self.device, self.dtype))
        return out.masks_queries_logits[0].float(), tuple(pixels.shape[-2:]), valid

    def set_threshold(self, threshold: float) -> None:
        """The sigmoid cut for each query mask (also changed at run time by the node)."""
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self._logit_threshold = math.log(threshold / (1.0 - threshold))  # sigmoid(x) > t

    def propose(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> Q x H x W bool: every query's mask at sigmoid > threshold."""
        logits, padded, (h, w) = self.mask_logits(image)
        out_h, out_w = image.shape[:2]
        masks = np.zeros((logits.shape[0], out_h, out_w), dtype=bool)
        with torch.no_grad():
            for start in range(0, logits.shape[0], self.chunk):
                part = logits[start : start + self.chunk][None]
                part = F.interpolate(part, size=padded, mode="bilinear", align_corners=False)
                part = part[
                    :, :, :h, :w
                ]  # crop the padding before going back to the original size
                part = F.interpolate(
                    part, size=(out_h, out_w), mode="bilinear", align_corners=False
                )
                masks[start : start + part.shape[1]] = (
                    (part[0] > self._logit_threshold).cpu().numpy()
                )
        return masks
