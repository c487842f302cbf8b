"""Building the node's output messages from a pipeline result.

Why separate from the node: the field-by-field mapping (SegmentationResult -> Segmentation,
PointStamped, mono8 mask) is the public contract and is easier to read and test here than
between callbacks.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from iterprime_ros.msg import Candidate, Segmentation

from ..pipeline import SegmentationResult
from .conversions import (
    conversation_values,
    mask_to_fields,
    rgb_to_bgr8,
    segmentation_values,
)


@dataclass(frozen=True)
class Answer:
    """Everything a Segmentation message says beyond the pipeline result."""

    command_id: int
    command: str
    header: Header
    latency_s: float
    centroid_3d: tuple[float, float, float] | None = None
    # the conversation (docs/voice.md): each answered object's 3-D centroid, and whether
    # candidates carry their masks (publish_candidate_masks)
    objects_3d: tuple[tuple[float, float, float] | None, ...] = ()
    candidate_masks: bool = True


def copy_header(header: Any) -> Header:
    """A fresh std_msgs/Header with the same stamp and frame_id (messages must not share one)."""
    out = Header()
    out.stamp.sec, out.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    out.frame_id = str(header.frame_id)
    return out


def image_message(fields: dict[str, Any]) -> Image:
    """sensor_msgs/Image from conversions' fields, its data as array('B').

    Why: the generated setter checks a bytes value element by element in Python (seconds and
    hundreds of MB for an 8000 x 8000 mask); an array('B') is taken as it is.
    """
    data = fields["data"]
    if not isinstance(data, array.array):
        data = array.array("B", data)
    return Image(**{**fields, "data": data})


def mask_image(mask: Any, header: Header) -> Image:
    """mono8 Image, 255 = object, with the source image's header."""
    msg = image_message(mask_to_fields(mask))
    msg.header = copy_header(header)
    return msg


def debug_image(overlay_bgr: Any, header: Header) -> Image:
    """bgr8 Image from an H x W x 3 BGR overlay (render_overlay's output)."""
    msg = image_message(rgb_to_bgr8(overlay_bgr[:, :, ::-1]))
    msg.header = copy_header(header)
    return msg


def failure(
    answer: Answer, error: str, expression: str = "", primary_word: str = ""
) -> Segmentation:
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
    """Segmentation message for a pipeline result (success or failure); fields:
    segmentation_values.
    """
    c = conversation_values(result, answer.objects_3d)
    v = segmentation_values(result, answer.centroid_3d, "" if c["success"] else c["error"])
    msg = failure(answer, v["error"], v["expression"], v["primary_word"])
    fill_conversation(msg, c, answer)
    msg.success, msg.error = v["success"], v["error"]
    if v["success"]:
        msg.mask = mask_image(result.mask, answer.header)
    msg.bbox.x_offset, msg.bbox.y_offset, msg.bbox.width, msg.bbox.height = v["bbox"]
    msg.centroid_px.x, msg.centroid_px.y = v["centroid_px"]
    msg.grasp_point_px.x, msg.grasp_point_px.y = v["grasp_point_px"]
    msg.has_centroid_3d = v["has_centroid_3d"]
    msg.centroid_3d.x, msg.centroid_3d.y, msg.centroid_3d.z = v["centroid_3d"]
    msg.score, msg.itm_score, msg.iterations = v["score"], v["itm_score"], v["iterations"]
    return msg


def candidate(values: dict[str, Any], header: Header, with_mask: bool = True) -> Candidate:
    """Candidate message from conversions.candidate_values (no mask when with_mask is false)."""
    msg = Candidate()
    msg.proposal_index, msg.description = values["proposal_index"], values["description"]
    msg.score = values["score"]
    msg.bbox.x_offset, msg.bbox.y_offset, msg.bbox.width, msg.bbox.height = values["bbox"]
    if with_mask and values["mask"] is not None:
        msg.mask = mask_image(values["mask"], header)
    msg.centroid_px.x, msg.centroid_px.y = values["centroid_px"]
    msg.grasp_point_px.x, msg.grasp_point_px.y = values["grasp_point_px"]
    msg.has_centroid_3d = values["has_centroid_3d"]
    msg.centroid_3d.x, msg.centroid_3d.y, msg.centroid_3d.z = values["centroid_3d"]
    return msg


def fill_conversation(msg: Segmentation, values: dict[str, Any], answer: Answer) -> None:
    """Set the conversation fields of msg from conversions.conversation_values.

    Plural objects always carry their masks (each is an answer); candidates only when the node's
    publish_candidate_masks parameter asks for them, since each is a full-size image.
    """
    msg.status, msg.confidence = values["status"], values["confidence"]
    msg.sure, msg.ambiguous = values["sure"], values["ambiguous"]
    msg.question, msg.in_reply_to = values["question"], values["in_reply_to"]
    msg.candidates = [
        candidate(c, answer.header, answer.candidate_masks) for c in values["candidates"]
    ]
    msg.objects = [candidate(o, answer.header) for o in values["objects"]]


def centroid_point(msg: Segmentation) -> PointStamped | None:
    """The 3-D centroid as a PointStamped in the source image's frame, or None without one."""
    if not msg.has_centroid_3d:
        return None
    out = PointStamped()
    out.header = copy_header(msg.header)
    out.point.x, out.point.y, out.point.z = msg.centroid_3d.x, msg.centroid_3d.y, msg.centroid_3d.z
    return out
