"""What a replay writes for one answer: the Segmentation message, the centroid point, the
overlay file names and the line printed per command.

Why a module of its own: the command answers and the track replay (replay_track.py) build the
same message, and the overlay naming rule is shared with the overlay-folder check.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..ros.conversions import (
    mask_to_fields,
    segmentation_values,
)
from .bags import (
    SEGMENTATION_TYPE,
    appended_segmentation_fields,
    header,
    image_message,
    typestore,
)
from .replay_config import ReplayError, _Job

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- messages


def segmentation_message(
    result: Any,
    command_id: int,
    command: str,
    stamp: int,
    frame_id: str,
    latency_s: float,
    centroid_3d: tuple[float, float, float] | None,
) -> Any:
    """Rosbags iterprime_ros/msg/Segmentation for a pipeline result: the live node's fields
    (ros.conversions.segmentation_values) in rosbags' classes. A failure has an empty mask.
    """
    types = typestore().types
    point = types["geometry_msgs/msg/Point"]
    v = segmentation_values(result, centroid_3d)
    if v["success"]:
        mask = image_message(mask_to_fields(result.mask), header(stamp, frame_id))
    else:
        mask = empty_image(stamp, frame_id)
    x, y, w, h = v["bbox"]
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=x, y_offset=y, height=h, width=w, do_rectify=False
    )
    return types[SEGMENTATION_TYPE](
        header=header(stamp, frame_id),
        command_id=int(command_id),
        command=command,
        expression=v["expression"],
        primary_word=v["primary_word"],
        success=v["success"],
        error=v["error"],
        mask=mask,
        bbox=roi,
        centroid_px=point(*v["centroid_px"], 0.0),
        grasp_point_px=point(*v["grasp_point_px"], 0.0),
        has_centroid_3d=v["has_centroid_3d"],
        centroid_3d=point(*v["centroid_3d"]),
        score=v["score"],
        itm_score=v["itm_score"],
        iterations=v["iterations"],
        latency_s=float(latency_s),
        **appended_segmentation_fields(),
    )


def _point_stamped(msg: Any) -> Any:
    types = typestore().types
    return types["geometry_msgs/msg/PointStamped"](header=msg.header, point=msg.centroid_3d)


OVERLAY_TEMP_SUFFIX = ".iterprime-tmp.png"  # an overlay being written, renamed when done
_OVERLAY_NAME = re.compile(r"\d{3,}_[a-z0-9_]+\.png")


def overlay_name(index: int, text: str) -> str:
    """File name of command `index`'s overlay: 007_the_red_cup.png."""
    return f"{index:03d}_{_slug(text)}.png"


def check_overlay_folder(folder: Path | None, force: bool, resuming: bool) -> None:
    """ReplayError unless the overlays may go into `folder` without replacing anyone's file.

    A folder that is missing or empty is fine; a non-empty one only with ``force`` (which then
    replaces files named like overlays when this run writes the same name, never touches the
    others) or when resuming an interrupted run (whose overlays it holds; existing files are
    still not replaced without ``force``).
    """
    if folder is None:
        return
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise ReplayError(f"--overlays {folder} is not a folder")
    if not folder.exists() or force or resuming:
        return
    entries = sorted(e.name for e in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        ours = sum(bool(_OVERLAY_NAME.fullmatch(e)) for e in entries)
        raise ReplayError(
            f"overlay folder {folder} is not empty ({len(entries)} entries: {shown}; {ours} "
            "named like overlays); choose a new or empty folder, or add --force to replace "
            "overlays of the same name (NNN_command.png; other files are never touched)"
        )


def _one_line_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "command"


def _line(job: _Job, t_s: float, result: Any, latency: float, point: Any, note: str) -> str:
    head = f"[{job.index:3d}] +{t_s:.2f} s {job.text!r}"
    if not result.success:
        return f"{head} -> FAILED: {result.error}"
    u, v = result.centroid
    where = f"centroid ({u:.0f}, {v:.0f}) px"
    if point is not None:
        where += f", ({point[0]:+.2f}, {point[1]:+.2f}, {point[2]:.2f}) m"
    elif note:
        where += f" (no 3-D: {note})"
    return (
        f"{head} -> {result.expression!r}: mask {int(result.mask.sum())} px, {where}, "
        f"score {result.score:.3f}, {latency:.2f} s"
    )


def empty_image(stamp_ns: int, frame_id: str) -> Any:
    """An Image with no pixels: the mask field of a result that has none."""
    return typestore().types["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id),
        height=0,
        width=0,
        encoding="",
        is_bigendian=0,
        step=0,
        data=np.zeros(0, np.uint8),
    )
