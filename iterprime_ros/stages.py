"""What runs around each stage of a command: progress reports, cancellation, and the failures a
robot can meet (out of GPU memory, a model that will not load, a bad image).

Why: the segmenter turns every one of these into a reason on a failed result, except a
cancellation, which must reach the caller; keeping the kinds here lets the node and the
tools tell them apart without importing the segmenter.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .models.loading import DeviceUnavailableError, ModelNotFoundError


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, whichever way torch reports it."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cuda_cache() -> None:
    """Give the CUDA caching allocator's free blocks back after an OOM, so the next command
    starts from what is really in use (a no-op without CUDA).
    """
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelLoadError(RuntimeError):
    """A model is there but cannot be loaded (corrupt weights, a broken config...); names which
    one.
    """


@contextmanager
def loading(what: str, name: str) -> Iterator[None]:
    """Say which model failed: a truncated safetensors file alone does not."""
    try:
        yield
    except (ModelNotFoundError, DeviceUnavailableError):  # already say what to do
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ModelLoadError(
            f"cannot load the {what} model {name!r}: {type(exc).__name__}: {detail}"
        ) from exc


class CommandFailed(Exception):
    """Internal: stop the current command with a reason (becomes success=False)."""


class CommandCancelled(Exception):
    """Raised by a progress callback to stop the command (an action goal cancelled); it passes
    through Segmenter.segment to the caller instead of becoming a failure result.
    """


Progress = Callable[[str, int], None]  # (stage, IGRS pass number from 1; 0 outside IGRS)


class ReportingVLP:
    """The VLP backend with a progress report before each IGRS text pass."""

    def __init__(self, vlp: Any, report: Progress) -> None:
        self._vlp, self._report, self._passes = vlp, report, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vlp, name)

    def text_pass(self, *args: Any, **kwargs: Any) -> Any:
        self._passes += 1
        self._report("igrs", self._passes)
        return self._vlp.text_pass(*args, **kwargs)


def check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"the image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"the image must be H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}"
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"the image is too small ({image.shape[1]} x {image.shape[0]})")
    return image
