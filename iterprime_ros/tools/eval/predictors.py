"""What the evaluation loop calls: (image, expression) -> predicted mask, one per configuration.

Why a small protocol instead of the Segmenter itself: the loop's bookkeeping (resume, metrics,
the Position/Others split) is tested with a scripted fake that returns known masks, and a
second predictor (another method, a baseline) can be evaluated the same way.

Several ablation rows on one dataset share the expensive per-image work: the proposals do not
depend on the row, and the image embedding only on the masking variant. ``SharedImageCache``
wraps the proposal and VLP backends with a small per-image memo (content hash), so running 15
rows costs one Mask2Former pass per image, not 15.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Protocol

import numpy as np
import torch

from ...core.backend import PassOutput, ProposalBackend, VLPBackend
from ...models.lru import LruCache
from .ablations import AblationConfig
from .image_masking import ImageMaskingBackend


@dataclass
class Prediction:
    """One answer. mask None = no answer (counted as an empty mask, IoU 0, as in the reference)."""

    mask: np.ndarray | None
    error: str = ""
    iterations: int = 0
    time_s: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


class Predictor(Protocol):
    def predict(
        self, image: np.ndarray, expression: str, frame_id: Hashable | None = None
    ) -> Prediction:
        """Segment `expression` in `image` (H x W x 3 uint8 RGB). frame_id: a stable id of the
        image.
        """


class SegmenterPredictor:
    """Adapter: pipeline.Segmenter -> Predictor. Failures become mask=None with the reason."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter

    def predict(
        self, image: np.ndarray, expression: str, frame_id: Hashable | None = None
    ) -> Prediction:
        r = self.segmenter.segment(image, expression, frame_id=frame_id)
        extras = {
            "primary_word": r.primary_word,
            "itm_score": float(r.itm_score),
            "stop_reason": r.stop_reason,
            "score": float(r.score),
        }
        if r.flagged:
            extras["flagged"] = True
        return Prediction(
            mask=r.mask if r.success else None,
            error="" if r.success else r.error,
            iterations=int(r.iterations),
            time_s=float(r.timings.get("total", 0.0)),
            extras=extras,
        )


def _image_key(image: np.ndarray) -> str:
    from ...pipeline import image_key

    return image_key(image)


class _Memo(LruCache[str, Any]):
    """An LRU keyed by image content (the loop visits images one after another)."""

    def get(self, image: np.ndarray, compute: Callable[[], Any]) -> Any:
        return self.get_or_make(_image_key(image), compute)


class CachedProposals:
    """ProposalBackend wrapper: the same image gets the same (shared, read-only) proposal array."""

    def __init__(self, inner: ProposalBackend, size: int = 1) -> None:
        self.inner = inner
        self.memo = _Memo(size)

    def propose(self, image: np.ndarray) -> np.ndarray:
        def compute() -> np.ndarray:
            props = np.asarray(self.inner.propose(image), dtype=bool)
            props.setflags(write=False)
            return props

        return self.memo.get(image, compute)


class CachedVLP:
    """VLPBackend wrapper: encode_image memoised per image; text passes go straight through."""

    _FORWARDED = frozenset(
        {"token_valid", "tokens", "input_size", "image_mean", "_mean", "device", "dtype", "name"}
    )

    def __init__(self, inner: VLPBackend, size: int = 2) -> None:
        self.inner = inner
        self.grid = int(inner.grid)
        self.memo = _Memo(size)

    def __getattr__(self, name: str) -> Any:
        if name in CachedVLP._FORWARDED:
            return getattr(self.inner, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def encode_image(self, image: np.ndarray) -> Any:
        return self.memo.get(image, lambda: self.inner.encode_image(image))

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        return self.inner.token_offsets(text)

    def text_pass(self, image_embedding: Any, text: str, keep: torch.Tensor | None) -> PassOutput:
        return self.inner.text_pass(image_embedding, text, keep)


@dataclass
class SharedBackends:
    """The backends every configuration's Segmenter is built from."""

    vlp: CachedVLP
    proposals: CachedProposals

    @classmethod
    def wrap(cls, vlp: VLPBackend, proposals: ProposalBackend) -> "SharedBackends":
        # VLP memo of 2: the plain image and its resized copy for the mask-image variant
        return cls(CachedVLP(vlp, size=2), CachedProposals(proposals, size=1))

    def vlp_for(self, config: AblationConfig) -> VLPBackend:
        return (
            ImageMaskingBackend(self.vlp) if config.normalised().masking == "image" else self.vlp
        )


def eval_settings(settings: Any) -> Any:
    """Dataset expressions are already referring expressions: no command normalisation, no
    language check (typos in RefCOCO would trip it), one cached frame per configuration.
    """
    return settings.replace(normalize_commands=False, check_language=False, frame_cache_size=1)


def build_segmenter_predictors(
    base_settings: Any,
    configs: dict[str, AblationConfig],
    backends: SharedBackends,
    raise_unexpected: bool = False,
) -> dict[str, SegmenterPredictor]:
    """One Segmenter per configuration key, all on the shared backends."""
    from ...pipeline import Segmenter

    base = eval_settings(base_settings)
    parser = None
    out: dict[str, SegmenterPredictor] = {}
    for key, config in configs.items():
        settings = base.replace(**config.settings_changes())
        seg = Segmenter.from_backends(
            backends.vlp_for(config),
            backends.proposals,
            settings,
            parser=parser,
            raise_unexpected=raise_unexpected,
        )
        parser = seg.parser  # one parser (and its expression cache) for every configuration
        out[key] = SegmenterPredictor(seg)
    return out


def timed(fn: Callable[[], Prediction]) -> Prediction:
    """Run a prediction and fill time_s when the predictor did not."""
    t0 = time.perf_counter()
    p = fn()
    if not p.time_s:
        p.time_s = time.perf_counter() - t0
    return p
