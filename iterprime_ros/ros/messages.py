"""Building the node's output messages from a pipeline result.

Why separate from the node: the field-by-field mapping (SegmentationResult -> Segmentation,
PointStamped, mono8 mask) is the public contract and is easier to read and test here than
between callbacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..pipeline import SegmentationResult
from .conversions import mask_to_fields, rgb_to_bgr8
from iterprime_ros.msg import Segmentation


@dataclass(frozen=True)
class Answer:
    """Everything a Segmentation message says beyond the pipeline result."""

    command_id: int
    command: str
    header: Header
    latency_s: float
    centroid_3d: tuple[float, float, float] | None = None


def copy_header(header: Any) -> Header:
    """A fresh std_msgs/Header with the same stamp and frame_id (messages must not share one)."""
    out = Header()
    out.stamp.sec, out.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    out.frame_id = str(header.frame_id)
    return out


def mask_image(mask: Any, header: Header) -> Image:
    """mono8 Image, 255 = object, with the source image's header."""
    msg = Image(**mask_to_fields(mask))
    msg.header = copy_header(header)
    return msg


def debug_image(overlay_bgr: Any, header: Header) -> Image:
    """bgr8 Image from an H x W x 3 BGR overlay (render_overlay's output)."""
    msg = Image(**rgb_to_bgr8(overlay_bgr[:, :, ::-1]))
    msg.header = copy_header(header)
    return msg


def failure(answer: Answer, error: str, expression: str = "", primary_word: str = "") -> Segmentation:
    """A failure result: success false, the error, no mask."""
    msg = Segmentation()
    msg.header = copy_header(answer.header)
    msg.command_id = answer.command_id
    msg.command = answer.command
    msg.expression = expression
    msg.primary_word = primary_word
    msg.success = False
    msg.error = error or "failed"
    msg.latency_s = float(answer.latency_s)
    return msg


def segmentation(result: SegmentationResult, answer: Answer) -> Segmentation:
    """Segmentation message for a pipeline result (success or failure)."""
    if not result.success or result.mask is None:
        msg = failure(answer, result.error, result.expression, result.primary_word)
        msg.score, msg.itm_score, msg.iterations = float(result.score), float(result.itm_score), result.iterations
        return msg
    msg = Segmentation()
    msg.header = copy_header(answer.header)
    msg.command_id = answer.command_id
    msg.command = answer.command
    msg.expression = result.expression
    msg.primary_word = result.primary_word
    msg.success = True
    msg.error = ""
    msg.mask = mask_image(result.mask, answer.header)
    if result.bbox is not None:
        x, y, w, h = result.bbox
        msg.bbox.x_offset, msg.bbox.y_offset, msg.bbox.width, msg.bbox.height = int(x), int(y), int(w), int(h)
    if result.centroid is not None:
        msg.centroid_px.x, msg.centroid_px.y = float(result.centroid[0]), float(result.centroid[1])
    if result.grasp_point is not None:
        msg.grasp_point_px.x, msg.grasp_point_px.y = float(result.grasp_point[0]), float(result.grasp_point[1])
    if answer.centroid_3d is not None:
        msg.has_centroid_3d = True
        msg.centroid_3d.x, msg.centroid_3d.y, msg.centroid_3d.z = (float(v) for v in answer.centroid_3d)
    msg.score = float(result.score)
    msg.itm_score = float(result.itm_score)
    msg.iterations = max(0, min(255, int(result.iterations)))
    msg.latency_s = float(answer.latency_s)
    return msg


def centroid_point(msg: Segmentation) -> PointStamped | None:
    """The 3-D centroid as a PointStamped in the source image's frame, or None without one."""
    if not msg.has_centroid_3d:
        return None
    out = PointStamped()
    out.header = copy_header(msg.header)
    out.point.x, out.point.y, out.point.z = msg.centroid_3d.x, msg.centroid_3d.y, msg.centroid_3d.z
    return out
