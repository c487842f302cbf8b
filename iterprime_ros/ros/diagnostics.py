"""The node's health as one diagnostic_msgs status: what a robot's monitoring reads and acts on.

Why a module of its own: the rule that turns the node's state into OK / WARN / ERROR / STALE is
the contract for monitoring (docs/design.md "Diagnostics"); here it is a pure function of a
snapshot, tested without ROS. The node fills the snapshot and publishes the status on a timer.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# diagnostic_msgs/DiagnosticStatus levels (the message's constants, without importing it here)
OK, WARN, ERROR, STALE = 0, 1, 2, 3
QUEUE_WARN_FRACTION = 0.8  # a queue this full warns: commands are about to be dropped


@dataclass(frozen=True)
class Snapshot:
    """What the node knows about itself at one moment."""

    state: str  # lifecycle: unconfigured | inactive | active | finalized | (a transition)
    enabled: bool
    models_ready: bool
    unavailable: str | None  # why the last configure/activate failed
    device: str
    queue_depth: int
    queue_size: int
    running: bool
    images_received: int
    image_rate_hz: float
    image_age_s: float | None  # None: no image yet
    max_image_age_s: float
    latencies_s: tuple[float, ...]  # recent commands run by the models
    succeeded: int
    failed: int
    received: int
    gpu_memory_mb: float | None = None
    image_gap_max_s: float = 0.0  # longest gap between two images since the last status
    prefetch: dict[str, Any] | None = None  # Prefetcher.status(); None when prefetch is off


@dataclass(frozen=True)
class Status:
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


def assess(s: Snapshot) -> Status:
    """The level and one-line message for a snapshot, with every figure as a key/value."""
    if s.unavailable:
        level, message = ERROR, s.unavailable
    elif s.state == "finalized":
        level, message = ERROR, "shut down (lifecycle finalized)"
    elif s.state != "active":
        level, message = WARN, f"{s.state}: not answering commands"
    elif not s.enabled:
        level, message = WARN, "disabled (~/enable false): not answering commands"
    elif s.image_age_s is None:
        level, message = STALE, "no camera image received yet"
    elif s.image_age_s > s.max_image_age_s:
        level, message = STALE, f"no camera image for {s.image_age_s:.1f} s"
    elif s.queue_depth >= QUEUE_WARN_FRACTION * s.queue_size:
        level, message = WARN, f"queue nearly full ({s.queue_depth} of {s.queue_size})"
    else:
        level, message = OK, "active"
    values = {
        "lifecycle state": s.state,
        "enabled": str(s.enabled).lower(),
        "models": "loaded" if s.models_ready else "not loaded",
        "device": s.device,
        "queue depth": str(s.queue_depth),
        "queue size": str(s.queue_size),
        "running a command": str(s.running).lower(),
        "images received": str(s.images_received),
        "image rate (Hz)": f"{s.image_rate_hz:.1f}",
        "image age (s)": "none" if s.image_age_s is None else f"{s.image_age_s:.2f}",
        "longest image gap since last status (s)": f"{s.image_gap_max_s:.3f}",
        "commands received": str(s.received),
        "answered succeeded": str(s.succeeded),
        "answered failed": str(s.failed),
    }
    if s.latencies_s:
        p50, p95 = np.percentile(np.asarray(s.latencies_s), [50, 95])
        values["command latency p50 (s)"] = f"{p50:.3f}"
        values["command latency p95 (s)"] = f"{p95:.3f}"
    values.update(_prefetch_values(s.prefetch))
    if s.gpu_memory_mb is not None:
        values["GPU memory allocated (MB)"] = f"{s.gpu_memory_mb:.0f}"
    return Status(level, message, values)


def _prefetch_values(p: dict[str, Any] | None) -> dict[str, str]:
    """Whether a frame is prepared and how old, and what the prefetcher did (prefetch.py)."""
    if p is None:
        return {"prefetch": "off"}
    age = p.get("prepared_age_s")
    return {
        "prefetch": p["state"],
        "prepared frame age (s)": "none" if age is None else f"{age:.2f}",
        "frames prepared": str(p["prepared"]),
        "frames skipped (same scene)": str(p["skipped"]),
        "prefetch busy share": f"{p['busy_share']:.2f}",
    }


class Latencies:
    """The latencies of the last `size` commands the models ran (thread-safe)."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def values(self) -> tuple[float, ...]:
        with self._lock:
            return tuple(self._values)


def gpu_memory_mb(device: str) -> float | None:
    """Memory torch holds on the GPU (None on CPU or without torch.cuda)."""
    try:
        import torch

        if device.startswith("cpu") or not torch.cuda.is_available():
            return None
        return torch.cuda.memory_allocated() / 2**20
    except Exception:  # noqa: BLE001 - a figure, never a failure
        return None
