"""Finding model weights on disk, choosing a device, and loading each model once per process.

Run time never touches the network: a Hugging Face id is looked up in the local cache
(``local_files_only=True``); weights that are not there give a ModelNotFoundError that
names the model and the command that fetches it (``iterprime download``) on a machine
with internet. A local folder is used as it is.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

DEFAULT_VLP_MODEL = "Salesforce/blip-itm-base-coco"
DEFAULT_PROPOSAL_MODEL = "facebook/mask2former-swin-large-coco-panoptic"

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# Which `iterprime download` flag fetches a model of each kind.
_DOWNLOAD_FLAG = {"vlp": "--vlp", "proposals": "--proposals"}


class ModelNotFoundError(FileNotFoundError):
    """The weights of a model are neither a local folder nor in the Hugging Face cache."""


class DeviceUnavailableError(RuntimeError):
    """The requested device is not on this machine (no CUDA, or no GPU with that index)."""


def download_hint(name: str, kind: str | None) -> str:
    flag = _DOWNLOAD_FLAG.get(kind or "")
    return f"iterprime download {flag} {name}" if flag else "iterprime download"


def _check_folder(folder: Path, name: str, kind: str | None, required: tuple[str, ...]) -> Path:
    missing = [f for f in required if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append("model weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
    if missing:
        raise ModelNotFoundError(
            f"model folder {folder} for {name!r} is incomplete: missing {', '.join(missing)}"
        )
    return folder


def resolve(
    name_or_folder: str | os.PathLike[str],
    kind: str | None = None,
    required: tuple[str, ...] = ("config.json",),
) -> Path:
    """Turn a Hugging Face id or a local folder into a local folder holding config and weights.

    kind ("vlp" | "proposals") only shapes the error message's download command.
    Raises ModelNotFoundError with a one-line reason and the fix.
    """
    name = os.fspath(name_or_folder)
    path = Path(name).expanduser()
    if path.is_dir():
        return _check_folder(path.resolve(), name, kind, required)
    if path.exists():
        raise ModelNotFoundError(
            f"{name!r} is a file, not a model folder or a Hugging Face model id"
        )
    if not _REPO_ID.match(name):  # "/abs", "./rel", "a/b/c", "~/x": a path, never a Hub id
        raise ModelNotFoundError(f"model folder {name!r} does not exist")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelNotFoundError(
            f"cannot look up {name!r}: huggingface_hub is not installed"
        ) from exc
    try:
        folder = Path(snapshot_download(repo_id=name, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"{name!r} is not a local folder and its weights are not in the Hugging Face cache "
            f"({_hf_cache_dir()}); fetch them on a "
            f"machine with internet with `{download_hint(name, kind)}` (or pass a local model "
            "folder)"
        ) from exc
    try:
        return _check_folder(folder, name, kind, required)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"{exc}; fetch it again with `{download_hint(name, kind)}`"
        ) from None


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def read_json(folder: Path, filename: str) -> dict[str, Any]:
    """A JSON config from a model folder, or {} when the file is absent."""
    p = folder / filename
    if not p.is_file():
        return {}
    return json.loads(p.read_text())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Device "auto" -> cuda when available, else cpu.

    "cuda" without a GPU is an error, not a silent fallback.
    """
    if isinstance(device, torch.device):
        return device
    d = (device or "auto").strip().lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(d)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {device!r} requested but CUDA is not available; use device cpu or auto"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {device!r} requested but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return dev


def resolve_dtype(device: torch.device, half_precision: bool) -> torch.dtype:
    """fp16 only on CUDA (CPU half kernels are slow or missing); fp32 otherwise."""
    return torch.float16 if (half_precision and device.type == "cuda") else torch.float32


@dataclass
class LoadedModel:
    """A model loaded once, with what its backends share: tokenizer/configs and a lock.

    Backends register hooks for the length of a call; the lock keeps two backends that share
    the same cached model (or two threads) from interleaving those calls.
    """

    model: Any
    folder: Path
    device: torch.device
    dtype: torch.dtype
    extras: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


_CACHE: dict[tuple[str, str, str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(
    kind: str,
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    loader: Callable[[], LoadedModel],
) -> LoadedModel:
    """Process-wide cache keyed by (kind, folder, device, dtype): models load once and are
    reused.
    """
    key = (kind, str(folder), str(device), str(dtype))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            log.info("loading %s model from %s on %s (%s)", kind, folder, device, dtype)
            hit = loader()
            _CACHE[key] = hit
        return hit


def clear_model_cache() -> None:
    """Drop every cached model (tests, or to free GPU memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def quiet_transformers() -> None:
    """No progress bars or info chatter from transformers/huggingface_hub (CLI and node output)."""
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:  # pragma: no cover
        pass
