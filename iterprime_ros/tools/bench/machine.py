"""The CPU a figure was measured on, in one line, for every benchmark's header.

Why: the same command takes 9 s on one 2-core machine and 16 s on another, and the difference
is mostly which vector instructions the CPU has (AVX-512, native bf16, VNNI); a figure without
them cannot be compared with the next one. /proc/cpuinfo is read (models/precision.py,
which also decides bf16 from it), not a library, because only its model name and a handful of
flags matter here.
"""

from __future__ import annotations

import os
import platform

from ...models.precision import parse_cpuinfo, read_cpuinfo

# The flags that change which kernels oneDNN and torch pick, in the order they are printed.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags_and_model(cpuinfo: str) -> tuple[str, list[str]]:
    """(model name, the SPEED_FLAGS present) from the text of /proc/cpuinfo."""
    model, flags = parse_cpuinfo(cpuinfo)
    return model, [f for f in SPEED_FLAGS if f in flags]


def cpu_description() -> str:
    """E.g. "AMD EPYC (avx2 fma avx512f avx512_vnni avx512_bf16), 2 CPUs"."""
    model, present = read_cpuinfo()
    flags = [f for f in SPEED_FLAGS if f in present]
    listed = f" ({' '.join(flags)})" if flags else ""
    return f"{model or platform.processor() or platform.machine()}{listed}, {os.cpu_count()} CPUs"
