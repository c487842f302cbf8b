"""The conversation in offline replay: the same fields the live node publishes, in rosbags'
message classes.

Why a module of its own: replay.py reads bags and writes results; what a conversation adds to a
result (status, confidence, candidates, plural objects, the command it answers) is one mapping,
ros.conversions.conversation_values, shared with the node, and only wrapped here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..ros.conversions import conversation_values, mask_to_fields
from .bags import CANDIDATE_TYPE, header, image_message, typestore


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
