"""The conversation in offline replay: commands answered through the same dialogue state as the
live node, keyed on bag time, and the same result fields in rosbags' message classes.

Why a module of its own: replay.py reads bags and writes results; the conversation adds one
rule (conversation.Conversation answers every command, with the bag's recording time as its
clock, so a recorded exchange replays as it happened whatever the replay's speed) and one
mapping (ros.conversions.conversation_values, shared with the node), both only wrapped here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..conversation import Conversation
from ..ros.conversions import conversation_values, mask_to_fields
from .bags import CANDIDATE_TYPE, header, image_message, typestore


class _Segment:
    """The replay's segmenter as the conversation calls it: options it leaves unset are not
    passed on, so any object with segment(image, command) can answer a bag.
    """

    def __init__(self, segmenter: Any) -> None:
        self._segmenter = segmenter

    def segment(self, image: Any, command: str, **options: Any) -> Any:
        given = {k: v for k, v in options.items() if v is not None}
        return self._segmenter.segment(image, command, **given)


class ReplayDialogue:
    """The dialogue state across one bag's commands (the node keeps one per node)."""

    def __init__(self) -> None:
        self._conversation = Conversation()

    def answer(self, command_id: int, text: str, image: Any, segmenter: Any, t_ns: int) -> Any:
        """The result for command `command_id` spoken at bag time t_ns (nanoseconds)."""
        settings = getattr(segmenter, "settings", None)
        timeout_s = getattr(settings, "dialogue_timeout_s", self._conversation.timeout_s)
        self._conversation.timeout_s = float(timeout_s)
        return self._conversation.answer(
            str(command_id), text, image, _Segment(segmenter), t_ns / 1e9
        )


def _empty_image(stamp_ns: int, frame_id: str) -> Any:
    import numpy as np

    return typestore().types["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id),
        height=0,
        width=0,
        encoding="",
        is_bigendian=0,
        step=0,
        data=np.zeros(0, np.uint8),
    )


def _candidate(values: dict[str, Any], stamp_ns: int, frame_id: str) -> Any:
    types = typestore().types
    point = types["geometry_msgs/msg/Point"]
    x, y, w, h = values["bbox"]
    mask = values["mask"]
    return types[CANDIDATE_TYPE](
        proposal_index=values["proposal_index"],
        description=values["description"],
        score=values["score"],
        bbox=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=x, y_offset=y, height=h, width=w, do_rectify=False
        ),
        mask=image_message(mask_to_fields(mask), header(stamp_ns, frame_id))
        if mask is not None
        else _empty_image(stamp_ns, frame_id),
        centroid_px=point(*values["centroid_px"], 0.0),
        grasp_point_px=point(*values["grasp_point_px"], 0.0),
        has_centroid_3d=values["has_centroid_3d"],
        centroid_3d=point(*values["centroid_3d"]),
    )


def conversation_fields(
    result: Any,
    stamp_ns: int,
    frame_id: str,
    objects_3d: tuple[tuple[float, float, float] | None, ...] = (),
) -> dict[str, Any]:
    """The Segmentation conversation fields of a result as rosbags values (candidates with their
    masks, as the node's default publish_candidate_masks gives them).
    """
    v = conversation_values(result, list(objects_3d))
    return {
        "status": v["status"],
        "confidence": v["confidence"],
        "sure": v["sure"],
        "ambiguous": v["ambiguous"],
        "question": v["question"],
        "in_reply_to": v["in_reply_to"],
        "candidates": [_candidate(c, stamp_ns, frame_id) for c in v["candidates"]],
        "objects": [_candidate(o, stamp_ns, frame_id) for o in v["objects"]],
    }


def with_conversation(
    msg: Any, result: Any, objects_3d: tuple[tuple[float, float, float] | None, ...] = ()
) -> Any:
    """A replay Segmentation with the conversation's fields filled in from `result`."""
    stamp = msg.header.stamp
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return dataclasses.replace(
        msg, **conversation_fields(result, stamp_ns, str(msg.header.frame_id), objects_3d)
    )
