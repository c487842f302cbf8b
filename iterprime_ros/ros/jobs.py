"""What the node keeps per command and per camera stream, apart from the node's wiring.

Job is one command on its way to exactly one answer; ImageStats is the evidence that the image
callback never waits for model work.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from iterprime_ros.msg import Segmentation

LOG_TEXT_CHARS = 200  # commands are quoted in the log up to this length
# Answers any command may get wherever it is on its way (waiting, running, being cancelled).
SHUTTING_DOWN = "the node is shutting down"
CANCELLED = "cancelled: the action goal was cancelled by its client"


def quote_command(text: str) -> str:
    """A command quoted for the log, cut to LOG_TEXT_CHARS characters."""
    if len(text) <= LOG_TEXT_CHARS:
        return repr(text)
    return f"{text[:LOG_TEXT_CHARS]!r}... ({len(text)} characters)"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message: one-line answers and log lines."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class ImageStats:
    """What the image callback costs and how regularly images arrive (camera group only).

    Why: the image callback must never wait for model work; the longest time spent in it and the
    longest gap between two images are the evidence, logged at shutdown (docs/robustness.md).
    """

    def __init__(self) -> None:
        self.count = 0
        self.max_callback_s = 0.0
        self.max_gap_s = 0.0
        self.window_gap_s = 0.0  # longest gap since the last diagnostics status
        self._last: float | None = None

    def record(self, start: float, end: float) -> None:
        self.count += 1
        self.max_callback_s = max(self.max_callback_s, end - start)
        if self._last is not None:
            gap = start - self._last
            self.max_gap_s = max(self.max_gap_s, gap)
            self.window_gap_s = max(self.window_gap_s, gap)
        self._last = start

    def take_window_gap(self) -> float:
        """The longest gap since the last call, then start a new window (diagnostics)."""
        gap, self.window_gap_s = self.window_gap_s, 0.0
        return gap

    def summary(self) -> str:
        return (
            f"{self.count} images received, image callback max {self.max_callback_s * 1e3:.2f} "
            "ms, "
            f"longest gap between images {self.max_gap_s * 1e3:.0f} ms"
        )


@dataclass
class Job:
    """One command waiting for (or getting) its answer."""

    command_id: int
    text: str
    arrived_ns: int  # node clock
    arrived_mono: float  # for latency
    image: Any = None  # sensor_msgs/Image: chosen on arrival, or when the models are ready
    use_depth: bool = True  # False for an image that came with a request
    on_answer: Callable[[Segmentation], None] | None = None  # service/action: hand the answer on
    feedback: Callable[[str, int, int], None] | None = None  # action: (stage, IGRS pass, place)
    cancelled: threading.Event | None = None  # action: the client cancelled the goal
    ran: bool = False  # the models ran it (its latency counts in /diagnostics)
    frame: Any = None  # the camera frame (sensors.Frame) it runs on; None for a request image
    frame_source: str = ""  # prefetch: prepared | in_flight | newest
    frame_age_s: float = -1.0  # how old that frame was when chosen (node clock)
    expression: str | None = None  # the command normalised at intake (None: maybe a reply)
    answered: bool = False
