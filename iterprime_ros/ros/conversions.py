"""sensor_msgs/Image and CameraInfo <-> numpy, without cv_bridge and without rclpy.

Why here and not cv_bridge: ROS's cv_bridge is not pip-installable and the registry's port
breaks with numpy 2. Why duck-typed: the same functions serve the live node (rclpy
messages, whose ``data`` is an ``array.array``) and offline bag replay (rosbags messages,
whose ``data`` is a numpy array). Only the fields height, width, encoding, is_bigendian,
step and data are read; outputs are fresh contiguous arrays that never alias the message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "ImageConversionError",
    "camera_info_intrinsics",
    "compressed_to_rgb",
    "check_image",
    "depth_to_array",
    "depth_to_fields",
    "image_to_rgb",
    "mask_to_fields",
    "rgb_to_bgr8",
    "rgb_to_fields",
    "answer_status",
    "candidate_values",
    "conversation_values",
    "segmentation_values",
]


class ImageConversionError(ValueError):
    """A message cannot be turned into an array (unsupported encoding, bad step/size, empty
    image).
    """


# encoding -> (channels, channel order as indices into the source to produce RGB)
_COLOR: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8UC1": (1, (0, 0, 0)),  # what some drivers call mono8
}
COLOR_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")

# encoding -> numpy little-endian dtype string ("mono16" is 16UC1 under another name)
_DEPTH: dict[str, str] = {"16UC1": "<u2", "mono16": "<u2", "32FC1": "<f4"}
DEPTH_ENCODINGS: tuple[str, ...] = ("16UC1", "32FC1")


def _raw_bytes(data: Any) -> np.ndarray:
    """The message's data as a flat uint8 array (bytes, array.array, list or numpy)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _rows(msg: Any, bytes_per_pixel: int) -> tuple[np.ndarray, int, int]:
    """Validate geometry and return (H x row_bytes array without padding, height, width)."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = str(msg.encoding)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height}, encoding {encoding!r})")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width {width} x {bytes_per_pixel} bytes = {row_bytes} "
            f"for encoding {encoding!r}"
        )
    raw = _raw_bytes(msg.data)
    expected = step * height
    if raw.size < expected:
        raise ImageConversionError(
            f"data has {raw.size} bytes, expected step {step} x height {height} = {expected} "
            f"({width}x{height} {encoding})"
        )
    # Trailing bytes beyond step*height are tolerated (some drivers over-allocate).
    rows = raw[:expected].reshape(height, step)[:, :row_bytes]
    return rows, height, width


def image_to_rgb(msg: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> H x W x 3 uint8 RGB (alpha
    dropped).

    size (height, width): resize on the way (INTER_AREA, straight from the message's bytes), so a
    huge frame is never copied at full size (image_size.py decides the size).
    """
    encoding = str(msg.encoding)
    if encoding not in _COLOR:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(COLOR_ENCODINGS)}"
        )
    channels, order = _COLOR[encoding]
    rows, height, width = _rows(msg, channels)
    pixels = rows.reshape(height, width, channels)
    if size is not None and tuple(size) != (height, width):
        import cv2

        pixels = cv2.resize(
            pixels if channels > 1 else pixels[:, :, 0],
            (int(size[1]), int(size[0])),
            interpolation=cv2.INTER_AREA,
        ).reshape(int(size[0]), int(size[1]), channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG: what OpenCV's imdecode reads) -> H x W x 3 RGB.

    One decoder for the live node (image_transport "compressed") and offline bag replay.
    """
    import cv2

    data = _raw_bytes(msg.data)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageConversionError(
            f"compressed image ({str(msg.format) or 'unknown format'}) cannot be decoded"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_image(msg: Any) -> None:
    """Raise ImageConversionError if image_to_rgb would: the checks only, without copying pixels.

    Why: an explicit image in a service or action request is checked when the request arrives,
    so a malformed one is answered at once, about that image.
    """
    encoding = str(msg.encoding)
    if encoding not in _COLOR:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(COLOR_ENCODINGS)}"
        )
    _rows(msg, _COLOR[encoding][0])


def depth_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image depth -> H x W array in native byte order.

    16UC1: uint16 millimetres; 32FC1: float32 metres (the unit is kept: turn it into metres
    with core.geometry.depth_to_metres(array, msg.encoding)). is_bigendian is honoured.
    """
    encoding = str(msg.encoding)
    if encoding not in _DEPTH:
        raise ImageConversionError(
            f"unsupported depth encoding {encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}"
        )
    dtype = np.dtype(_DEPTH[encoding])
    if bool(msg.is_bigendian):
        dtype = dtype.newbyteorder(">")
    rows, height, width = _rows(msg, dtype.itemsize)
    values = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
    return values.astype(dtype.newbyteorder("="), copy=True)


def _fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(array.strides[0]),
        "data": array.tobytes(),
    }


def mask_to_fields(mask: np.ndarray) -> dict[str, Any]:
    """H x W bool/0-1 mask -> sensor_msgs/Image fields, mono8 with 255 = object."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ImageConversionError(f"mask must be H x W, got shape {mask.shape}")
    return _fields(np.where(mask > 0, 255, 0).astype(np.uint8), "mono8")


def rgb_to_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """H x W x 3 uint8 RGB -> sensor_msgs/Image fields in rgb8, bgr8, rgba8, bgra8 or mono8."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected H x W x 3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = rgb[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        color = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        out = np.concatenate([color, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        weights = np.array([0.299, 0.587, 0.114])
        out = np.clip(np.rint(rgb @ weights), 0, 255).astype(np.uint8)
    else:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(COLOR_ENCODINGS)}"
        )
    return _fields(out, encoding)


def rgb_to_bgr8(rgb: np.ndarray) -> dict[str, Any]:
    """H x W x 3 uint8 RGB -> bgr8 Image fields (the debug overlay; bgr8 is what image viewers
    expect).
    """
    return rgb_to_fields(rgb, "bgr8")


def depth_to_fields(depth: np.ndarray, encoding: str = "32FC1") -> dict[str, Any]:
    """H x W depth -> Image fields: 16UC1 (values taken as millimetres) or 32FC1 (metres).

    Used to publish synthetic depth in tests and to write depth into bags.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(
            f"unsupported depth encoding {encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}"
        )
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ImageConversionError(f"depth must be H x W, got shape {depth.shape}")
    if encoding == "16UC1":
        values = np.nan_to_num(depth, nan=0.0)
        return _fields(np.clip(np.rint(values), 0, 65535).astype("<u2"), encoding)
    return _fields(depth.astype("<f4"), encoding)


def camera_info_intrinsics(msg: Any) -> tuple[float, float, float, float]:
    """sensor_msgs/CameraInfo -> (fx, fy, cx, cy) from K; an uncalibrated (zero) K is an error."""
    k = [float(v) for v in msg.k]
    if len(k) != 9:
        raise ImageConversionError(f"camera_info K must have 9 values, got {len(k)}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, cx, cy]).all()):
        raise ImageConversionError(
            f"camera_info K has no valid focal lengths (fx={fx}, fy={fy}): uncalibrated camera"
        )
    return fx, fy, cx, cy


def segmentation_values(
    result: Any, centroid_3d: tuple[float, float, float] | None = None, refused: str = ""
) -> dict[str, Any]:
    """The Segmentation fields a pipeline result decides, as plain values.

    One mapping for the live node (rclpy messages) and offline replay (rosbags messages), which
    each wrap these values in their own message classes. A failure (or a result without a mask)
    has success false, its error ("failed" if none), and zeros for the geometry. refused: why
    the conversation gives no target for an answer the pipeline found (answer_status), so the
    answer is published as a failure with that error and no geometry a planner could take.
    """
    ok = bool(result.success) and result.mask is not None and not refused

    def pair(p: Any) -> tuple[float, float]:
        return (float(p[0]), float(p[1])) if ok and p is not None else (0.0, 0.0)

    c3 = tuple(float(v) for v in centroid_3d) if ok and centroid_3d is not None else None
    return {
        "expression": str(result.expression or ""),
        "primary_word": str(result.primary_word or ""),
        "success": ok,
        "error": "" if ok else (refused or str(result.error) or "failed"),
        "bbox": tuple(int(v) for v in result.bbox)
        if ok and result.bbox is not None
        else (0, 0, 0, 0),
        "centroid_px": pair(result.centroid),
        "grasp_point_px": pair(result.grasp_point),
        "has_centroid_3d": c3 is not None,
        "centroid_3d": c3 or (0.0, 0.0, 0.0),
        "score": float(result.score),
        "itm_score": float(result.itm_score),
        "iterations": max(0, min(255, int(result.iterations))),
    }


# Segmentation.status values (msg/Segmentation.msg): kept here as plain numbers so offline replay,
# which has no rclpy, builds the same messages.
STATUS_NONE, STATUS_ANSWERED, STATUS_NOT_SURE, STATUS_AMBIGUOUS, STATUS_PLURAL = range(5)


def answer_status(result: Any) -> tuple[int, bool, str]:
    """(status, success, error) of a pipeline result, as the message states them.

    The method decides sure and success (min_confidence, hold_ambiguous); this reads them and
    keeps the one promise a planner relies on: success is never true for an answer that is not
    sure, so a planner that reads nothing but success never takes a weak answer for a target.
    """
    if result.mask is None:
        return STATUS_NONE, False, str(result.error) or "failed"
    if not bool(getattr(result, "sure", True)):
        confidence = float(getattr(result, "confidence", 0.0))
        return (
            STATUS_NOT_SURE,
            False,
            str(result.error) or f"not sure: confidence {confidence:.2f}",
        )
    if not bool(result.success):
        ambiguous = bool(getattr(result, "ambiguous", False))
        return (
            (STATUS_AMBIGUOUS if ambiguous else STATUS_NONE),
            False,
            str(result.error) or "failed",
        )
    if bool(getattr(result, "plural", False)):
        return STATUS_PLURAL, True, ""
    return STATUS_ANSWERED, True, ""


def reply_id(value: Any) -> int:
    """The command id a result answers, as Segmentation.in_reply_to's number (0 for none).

    The method keeps ids as text (its conversations also run offline, keyed by anything); the
    node and replay give it their running command numbers, so anything else reads as none.
    """
    text = str(value or "").strip()
    return int(text) if text.isdigit() and int(text) < 2**32 else 0


def candidate_values(
    candidate: Any, centroid_3d: tuple[float, float, float] | None = None
) -> dict[str, Any]:
    """The Candidate fields of one candidate or answered object, as plain values (mask as an
    array).

    One mapping for the node and offline replay, like segmentation_values. The method's object
    gives proposal_index, description, score, mask, bbox, centroid and grasp_point.
    """
    bbox = getattr(candidate, "bbox", None)
    centroid = getattr(candidate, "centroid", None)
    grasp = getattr(candidate, "grasp_point", None)
    c3 = tuple(float(v) for v in centroid_3d) if centroid_3d is not None else None
    return {
        "proposal_index": max(0, int(getattr(candidate, "proposal_index", 0) or 0)),
        "description": str(getattr(candidate, "description", "") or ""),
        "score": float(getattr(candidate, "score", 0.0)),
        "bbox": tuple(int(v) for v in bbox) if bbox is not None else (0, 0, 0, 0),
        "mask": getattr(candidate, "mask", None),
        "centroid_px": (float(centroid[0]), float(centroid[1]))
        if centroid is not None
        else (0.0, 0.0),
        "grasp_point_px": (float(grasp[0]), float(grasp[1])) if grasp is not None else (0.0, 0.0),
        "has_centroid_3d": c3 is not None,
        "centroid_3d": c3 or (0.0, 0.0, 0.0),
    }


def conversation_values(
    result: Any, objects_3d: list[tuple[float, float, float] | None] | None = None
) -> dict[str, Any]:
    """The Segmentation fields the conversation decides, as plain values (see answer_status).

    objects_3d: each answered object's 3-D centroid (None where depth gives none), in objects'
    order. Objects are given only with a target (success): one for a singular command, every
    match left to right for a plural one. The question is the method's, given whenever the
    words fit several objects, so a voice front end speaks every non-empty question.
    """
    status, success, error = answer_status(result)
    objects = list(getattr(result, "objects", None) or []) if success else []
    points = list(objects_3d or []) + [None] * len(objects)
    return {
        "status": status,
        "success": success,
        "error": error,
        "confidence": min(1.0, max(0.0, float(getattr(result, "confidence", 0.0)))),
        "sure": status not in (STATUS_NONE, STATUS_NOT_SURE),
        "ambiguous": bool(getattr(result, "ambiguous", False)),
        "question": str(getattr(result, "question", "") or ""),
        "in_reply_to": reply_id(getattr(result, "in_reply_to", "")),
        "candidates": [candidate_values(c) for c in getattr(result, "candidates", None) or []],
        "objects": [candidate_values(o, p) for o, p in zip(objects, points)],
    }
