"""Mixed precision for the backends: which autocast dtype a device gets, and the context for it.

Why autocast and not weight casts: autocast keeps the weights (and every reduction, softmax and
norm that autocast lists as fp32) in float32 and runs only the matmuls and convolutions in 16
bits, so masks and Grad-CAM gradients drift far less than with bf16/fp16 weights (measured in
the bench: ``iterprime bench --precision-check``). On a CPU, bf16 pays only where the hardware
has bf16 dot products (AVX512-BF16 or AMX); elsewhere it is emulated and slower, so "auto"
leaves such CPUs in float32.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

AUTOCAST_MODES = ("auto", "off", "bf16", "fp16")


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN runs bf16 matmuls natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _cpu_flags_have_bf16()
    except Exception:  # pragma: no cover - a torch without the mkldnn op
        return False


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in the text of /proc/cpuinfo."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def read_cpuinfo() -> tuple[str, set[str]]:
    """parse_cpuinfo of this machine; ("", set()) where there is no /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return parse_cpuinfo(f.read())
    except OSError:  # pragma: no cover - not Linux
        return "", set()


def _cpu_flags_have_bf16() -> bool:
    """Native bf16 flags: oneDNN also "supports" bf16 by slow emulation on plain AVX512."""
    return bool(read_cpuinfo()[1] & {"avx512_bf16", "amx_bf16"})


def resolve_autocast(device: torch.device, mode: str) -> torch.dtype | None:
    """Autocast dtype for `device` under setting `mode` (auto | off | bf16 | fp16); None: fp32.

    auto: fp16 on CUDA, bf16 on a CPU with native bf16, off otherwise. fp16 on a CPU is refused
    (few CPU fp16 kernels; slower than fp32).
    """
    mode = (mode or "auto").strip().lower()
    if mode not in AUTOCAST_MODES:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, not {mode!r}")
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError("autocast fp16 needs CUDA; on a CPU use bf16 or off")
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for the device, or a no-op context when dtype is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def dtype_name(dtype: torch.dtype | None) -> str:
    """'bf16' / 'fp16' / 'fp32' (for logs and reports)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")  # type: ignore[arg-type]
