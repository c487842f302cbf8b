"""The latest camera data, held for the worker; callbacks only store, never convert.

Why: image callbacks run on the executor thread at camera rate; converting or copying there
would compete with the model work for nothing (most frames are never segmented). The worker
converts only the frame a command uses. Depth and camera_info keep a few frames so the ones
whose stamps match the chosen colour image can be found (depth often arrives a little after
colour).

SensorCache.match is the one rule for which depth frame and camera_info go with a colour
image, used by the node's commands, its tracker, the offline replay and the replay's tracker
alike, so a bag replayed offline locates an answer from the same depth frame the live node
would. It follows message_filters' ApproximateTime policy (all stamps of the set within the
tolerance of each other, the candidates nearest the image first); the node parameter
depth_sync_tolerance_s (and the replay setting of the same name) is that tolerance.
message_filters' synchroniser itself is not used even where it is installed: it only fires
for complete sets, and a command must be answered in 2-D from an image that has no depth.
No rclpy here: messages are duck-typed.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from .names import stamp_ns  # noqa: F401 - re-exported: the node and tests import it here


@dataclass(frozen=True)
class Frame:
    """A received image and when it arrived (node clock, ns: sim time when use_sim_time is set)."""

    msg: Any
    received_ns: int


@dataclass(frozen=True)
class Match:
    """The depth and camera_info matched to an image, or the reason there are none."""

    depth: Any
    info: Any
    reason: str = ""


class SensorCache:
    """Thread-safe store of the latest image, recent depth frames and the latest camera info."""

    def __init__(self, depth_frames: int = 10) -> None:
        self._lock = threading.Lock()
        self._image: Frame | None = None
        self._depth: deque[Any] = deque(maxlen=depth_frames)
        self._infos: deque[Any] = deque(maxlen=depth_frames)

    def set_image(self, msg: Any, received_ns: int) -> None:
        with self._lock:
            self._image = Frame(msg, received_ns)

    def latest_image(self) -> Frame | None:
        with self._lock:
            return self._image

    def add_depth(self, msg: Any) -> None:
        with self._lock:
            self._depth.append(msg)

    def set_camera_info(self, msg: Any) -> None:
        with self._lock:
            self._infos.append(msg)

    def camera_info(self) -> Any:
        """The latest camera_info (None before the first)."""
        with self._lock:
            return self._infos[-1] if self._infos else None

    def match(self, image_header: Any, tolerance_s: float) -> Match:
        """Depth and camera_info for the image, by message_filters' ApproximateTime rule.

        Candidates are the frames within tolerance_s of the image, nearest first (newest on a
        tie); the first (depth, info) pair whose stamps and the image's all lie within
        tolerance_s of each other is the match. No match says which stream had nothing close
        enough.
        """
        target = stamp_ns(image_header)
        limit_ns = int(round(tolerance_s * 1e9))
        with self._lock:
            streams = {"depth": list(self._depth), "camera_info": list(self._infos)}
        near: dict[str, list[Any]] = {}
        for name, frames in streams.items():
            if not frames:
                return Match(None, None, f"no {name} received")
            ranked = sorted(reversed(frames), key=lambda m: abs(stamp_ns(m.header) - target))
            close = [m for m in ranked if abs(stamp_ns(m.header) - target) <= limit_ns]
            if not close:
                gap = abs(stamp_ns(ranked[0].header) - target) / 1e9
                return Match(
                    None,
                    None,
                    f"no {name} within {tolerance_s:g} s of the image stamp (nearest is "
                    f"{gap:.3f} s away; depth_sync_tolerance_s sets the limit)",
                )
            near[name] = close
        for depth, info in itertools.product(near["depth"], near["camera_info"]):
            stamps = (target, stamp_ns(depth.header), stamp_ns(info.header))
            if max(stamps) - min(stamps) <= limit_ns:
                return Match(depth, info)
        return Match(
            None,
            None,
            f"depth and camera_info near the image are more than {tolerance_s:g} s apart from "
            "each other",
        )

    @property
    def has_depth(self) -> bool:
        with self._lock:
            return bool(self._depth)
