"""What `iterprime bench` runs: its settings, the commands it times, the stages it reports.

One place for these, because the run (run.py), the report (report.py), the device report
(extras.py) and the command line (command.py) all read them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

# Commands an operator might say about the coffee picture (every word is in the tiny vocabulary).
COMMANDS: tuple[str, ...] = (
    "pick up the red cup on the left",
    "the white plate",
    "could you grab the spoon next to the cup please",
    "the cup in the middle of the table",
    "bring me the small spoon on the right",
    "the big white bowl",
    "give me the cup near the plate",
    "the brown table",
)

STAGES: tuple[str, ...] = (
    "wait",
    "normalise",
    "parse",
    "proposals",
    "image_encoding",
    "igrs_pass_0",
    "igrs_pass_1",
    "igrs_pass_2",
    "igrs",
    "selection",
    "conversion",
    "total",
    "end_to_end",
)
STAGE_NOTES = {
    "igrs": "passes + PWEM",
    "total": "segment()",
    "end_to_end": "+ conversion",
}
# Warm-up commands: not among COMMANDS, so the timed first commands parse a new expression.
WARMUP_COMMANDS: tuple[str, ...] = ("find the bottle on the table", "the glass next to the phone")


@dataclass
class BenchConfig:
    arch: str = "base"
    proposal_arch: str = "swin-l"
    device: str = "auto"
    size: tuple[int, int] = (640, 480)  # W x H
    commands: int = 8  # sustained: commands in a row on one frame
    frames: int = 3  # new frames (first command + a second command on each)
    warmup: int = 1  # untimed commands first (lazy init, allocator, cuDNN)
    naive: bool = True
    naive_commands: int = 1
    fp32: bool = False  # full precision: no autocast, no fp16 weights
    autocast: str = "auto"  # auto | off | bf16 | fp16 (SegmenterSettings.autocast)
    prefetched: bool = True  # also time a command on a prefetched frame
    compare: bool = False  # the previous CPU path (fp32, two-step resize) side by side
    knobs: bool = False  # the speed-knob table
    smaller_arch: str | None = None  # --report: the smaller backbone (default: swin-t)
    threads: int | None = None  # torch intra-op threads (default: torch's / OMP_NUM_THREADS)
    queries: int | None = None  # Mask2Former queries (default: the architecture's)
    model_dir: Path | None = None  # keep the built models here (reused by later runs)
    overrides: tuple[str, ...] = ()  # KEY=VALUE SegmenterSettings, as `iterprime segment --set`
    seed: int = 0


@dataclass
class Phase:
    """The records of one timed phase (first command, same frame, sustained, ...)."""

    records: list[dict[str, Any]] = field(default_factory=list)


def stage_stats(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage: mean and median ms over the records (a stage a record skipped counts as 0 ms)."""
    names = [s for s in STAGES if any(s in r["timings_ms"] for r in records)]
    extra = sorted({k for r in records for k in r["timings_ms"]} - set(STAGES))
    out: dict[str, dict[str, float]] = {}
    for name in names + extra:
        values = [r["timings_ms"].get(name, 0.0) for r in records]
        out[name] = {
            "mean_ms": round(statistics.fmean(values), 2),
            "median_ms": round(statistics.median(values), 2),
            "n": len(values),
        }
    return out


def jemalloc_active() -> bool:
    """True when jemalloc is mapped into this process (preloaded by the entry point)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="ignore") as f:
            return "jemalloc" in f.read()
    except OSError:  # pragma: no cover - not Linux
        return False
