"""The latest camera data, held for the worker; callbacks only store, never convert.

Why: image callbacks run on the executor thread at camera rate; converting or copying there
would compete with the model work for nothing (most frames are never segmented). The worker
converts only the frame a command uses. Depth keeps a few frames so the one whose stamp
matches the chosen colour image can be found (depth often arrives a little after colour).
No rclpy here: messages are duck-typed.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.geometry import centroid_3d, depth_to_metres
from .conversions import ImageConversionError, depth_to_array


def stamp_ns(header: Any) -> int:
    """builtin_interfaces/Time of a header as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass(frozen=True)
class Frame:
    """A received image and when it arrived (node clock, ns: sim time when use_sim_time is set)."""

    msg: Any
    received_ns: int


class SensorCache:
    """Thread-safe store of the latest image, recent depth frames and the latest camera info."""

    def __init__(self, depth_frames: int = 10) -> None:
        self._lock = threading.Lock()
        self._image: Frame | None = None
        self._depth: deque[Any] = deque(maxlen=depth_frames)
        self._info: Any = None

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
            self._info = msg

    def camera_info(self) -> Any:
        with self._lock:
            return self._info

    def depth_for(self, image_header: Any, tolerance_s: float) -> Any | None:
        """The depth frame whose stamp is closest to the image's, if within tolerance_s (newest on
        a tie).
        """
        target = stamp_ns(image_header)
        with self._lock:
            frames = list(self._depth)
        if not frames:
            return None
        best = min(reversed(frames), key=lambda m: abs(stamp_ns(m.header) - target))
        return best if abs(stamp_ns(best.header) - target) <= tolerance_s * 1e9 else None

    @property
    def has_depth(self) -> bool:
        with self._lock:
            return bool(self._depth)


def intrinsics_for(info: Any, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) from CameraInfo K, scaled when the info's resolution differs from the
    image's
    (a driver publishing a resized stream with the full-resolution calibration).
    """
    from .conversions import camera_info_intrinsics

    fx, fy, cx, cy = camera_info_intrinsics(info)
    iw, ih = int(getattr(info, "width", 0) or 0), int(getattr(info, "height", 0) or 0)
    if iw > 0 and ih > 0 and (iw, ih) != (width, height):
        sx, sy = width / iw, height / ih
        # pixel centres at integers: u' = (u + 0.5) * s - 0.5
        fx, cx = fx * sx, (cx + 0.5) * sx - 0.5
        fy, cy = fy * sy, (cy + 0.5) * sy - 0.5
    return fx, fy, cx, cy


@dataclass(frozen=True)
class Centroid3D:
    """A 3-D centroid, or None with the reason (logged; the result still succeeds in 2-D)."""

    point: tuple[float, float, float] | None
    reason: str = ""


def compute_centroid_3d(mask: np.ndarray, depth_msg: Any, info: Any, erode_px: int) -> Centroid3D:
    """Median valid depth over the eroded mask, back-projected through the camera intrinsics.

    The documented rule is core.geometry.centroid_3d; this adds the message handling: depth
    units by encoding (16UC1 mm, 32FC1 m), size checks and the reasons for no answer.
    """
    if depth_msg is None:
        return Centroid3D(None, "no depth frame matching the image")
    if info is None:
        return Centroid3D(None, "no camera_info received")
    try:
        depth_m = depth_to_metres(depth_to_array(depth_msg), str(depth_msg.encoding))
        h, w = mask.shape
        if depth_m.shape != (h, w):
            return Centroid3D(
                None,
                f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but the image is {w}x{h} "
                "(use depth aligned to the colour image)",
            )
        fx, fy, cx, cy = intrinsics_for(info, w, h)
    except (ImageConversionError, ValueError) as exc:
        return Centroid3D(None, str(exc))
    point = centroid_3d(mask, depth_m, fx, fy, cx, cy, erode_px=erode_px)
    return Centroid3D(point, "" if point is not None else "no valid depth inside the mask")
