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


class ModelCheckError(ModelNotFoundError, ValueError):
    """A model folder cannot serve its backend; the message names the parameter and the fix.

    A ModelNotFoundError too (the model asked for is not in that folder), so every entry point
    that already reports a missing model in one line reports this one the same way.
    """


class ModelTypeError(ModelCheckError):
    """The folder holds another kind of model (its config.json model_type)."""


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


def check_model_type(
    folder: Path, name: str, parameter: str, backend: str, expected: tuple[str, ...], kind: str
) -> str:
    """Refuse a folder whose config.json names another kind of model; returns its model_type.

    Why: `transformers` loads a folder of the wrong kind (a BLIP folder given as the proposal
    model) with random weights and only a warning, and the command then "succeeds" with a
    meaningless mask. Every backend calls this before loading, so the node, the CLI, the Python
    API, replay and eval refuse such a folder with this one message. Reads one small file.
    """
    what = "VLP" if kind == "vlp" else "proposal"
    try:
        model_type = str(read_json(folder, "config.json").get("model_type", ""))
    except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError
        detail = (str(exc).splitlines() or [""])[0]
        raise ModelCheckError(
            f"cannot load the {what} model {name!r} (parameter {parameter!r}): config.json "
            f"is not readable JSON ({detail})"
        ) from None
    if expected and model_type not in expected:
        found = repr(model_type) if model_type else "no model_type"
        raise ModelTypeError(
            f"parameter {parameter!r} = {name!r}: the folder holds a {found} model; the "
            f"{backend} backend needs model_type {' or '.join(map(repr, expected))}"
        )
    return model_type


# A plain English phrase every English tokenizer must know some word of.
TOKENIZER_PROBE = "there is a man on the left holding a red cup"


def check_tokenizer(tokenizer: Any, folder: Path, vocab_size: int) -> None:
    """Refuse a tokenizer that would feed the model silently wrong ids; say what it lacks.

    Two ways a folder gives a tokenizer that loads and yet is wrong: it knows fewer tokens
    than the model's embedding table has rows (a vocabulary file that was not read, leaving
    only the special tokens), or it maps a plain English phrase to nothing but [UNK]. Either
    would run the model on meaningless input without an error, so loading stops here. A
    tokenizer with more tokens than the table is refused too: its ids would run past it.
    """
    size = len(tokenizer)
    if size != vocab_size:
        relation = "fewer" if size < vocab_size else "more"
        raise ModelNotFoundError(
            f"{folder}: the tokenizer loads with {size} tokens, {relation} than the model's "
            f"vocabulary of {vocab_size}; the folder lacks the model's own tokenizer files "
            "(tokenizer.json, or vocab.txt with every one of its tokens)"
        )
    ids = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    if not ids or all(i == unk for i in ids):
        raise ModelNotFoundError(
            f"{folder}: the tokenizer maps the English phrase {TOKENIZER_PROBE!r} to [UNK] "
            "only; the folder lacks an English vocabulary (vocab.txt or tokenizer.json of the "
            "model's own tokenizer)"
        )


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
