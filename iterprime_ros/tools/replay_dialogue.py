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

from ..ros.conversions import conversation_values, mask_to_fields
from ..ros.dialogue import Dialogue
from .bags import CANDIDATE_TYPE, header, image_message, typestore
from .replay_output import empty_image


class ReplayDialogue:
    """The dialogue state across one bag's commands, on the bag's clock (the node keeps one
    per node, on its steady clock: ros.dialogue.Dialogue, the same rule).
    """

    def __init__(self) -> None:
        self._dialogue = Dialogue()

    def answer(self, command_id: int, text: str, image: Any, segmenter: Any, t_ns: int) -> Any:
        """The result for command `command_id` spoken at bag time t_ns (nanoseconds)."""
        return self._dialogue.answer(command_id, text, image, segmenter, now=t_ns / 1e9)


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
        else empty_image(stamp_ns, frame_id),
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
