"""The message side of the bag tools: a typestore that knows this package's Segmentation,
the rosbags message objects the tools write, and the one exception every bag tool raises.

Why a module of its own: offline replay, the live bag player, the sample-bag script and the
tests all build the same messages and need a typestore that also knows
``iterprime_ros/msg/Segmentation`` (so output bags embed its definition and ``ros2 bag
info``/``play`` can decode them). Nothing here imports rclpy.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from ..ros.names import stamp_ns

__all__ = ["stamp_ns"]  # re-exported for the tools: one definition

PACKAGE = "iterprime_ros"
SEGMENTATION_TYPE = "iterprime_ros/msg/Segmentation"
CANDIDATE_TYPE = "iterprime_ros/msg/Candidate"
CANDIDATE_FILE = "msg/Candidate.msg"
# Single-file suffixes rosbag2 (and rosbags) open without a metadata.yaml.
STORAGE_IDS: dict[str, str] = {".mcap": "mcap", ".db3": "sqlite3"}


class BagError(RuntimeError):
    """A bag cannot be opened, read or written; the message is one line meant for a person."""


class BagWriteError(BagError):
    """The output cannot be written (a full disk, a name taken during the run): unlike damage
    in an input, nothing more can be done in this run.
    """


# --------------------------------------------------------------------------------------
# Type store


def _interface_dirs() -> Iterator[Path]:
    """Where msg/ may be: the source tree first, then every plausible installed share/."""
    here = Path(__file__).resolve().parents[1]  # the iterprime_ros package folder
    yield here.parent  # source checkout or editable install: <repo>/msg
    try:  # a sourced ROS workspace (colcon install, apt install)
        from ament_index_python.packages import get_package_share_directory

        yield Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - not installed / not a ROS environment
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            yield Path(prefix) / "share" / PACKAGE
    yield Path(sys.prefix) / "share" / PACKAGE  # scripts/setup.sh builds msg/ into the venv
    # colcon install: <prefix>/lib/pythonX.Y/site-packages/iterprime_ros ->
    # <prefix>/share/iterprime_ros
    for parent in here.parents[:5]:
        yield parent / "share" / PACKAGE


def find_interface_file(relative: str = "msg/Segmentation.msg") -> Path:
    """Path of one of this package's interface files, in the source tree or an install."""
    tried: list[str] = []
    for folder in _interface_dirs():
        candidate = folder / relative
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    raise BagError(
        f"cannot find {PACKAGE}/{relative}; looked in: {', '.join(dict.fromkeys(tried))}"
    )


@lru_cache(maxsize=1)
def typestore() -> Any:
    """ROS 2 Kilted typestore with iterprime_ros/msg/Segmentation registered (built once)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    # Candidate first: Segmentation's definition refers to it.
    for name, msgtype in (
        (CANDIDATE_FILE, CANDIDATE_TYPE),
        ("msg/Segmentation.msg", SEGMENTATION_TYPE),
    ):
        path = find_interface_file(name)
        try:
            store.register(get_types_from_msg(path.read_text(encoding="utf-8"), msgtype))
        except Exception as exc:  # noqa: BLE001 - a parse error in the .msg is a packaging bug
            raise BagError(f"cannot register {msgtype} from {path}: {exc}") from exc
    return store


def appended_segmentation_fields() -> dict[str, Any]:
    """The fields appended to Segmentation after the first release (target frame, prefetch,
    tracking, frame age, conversation), empty: rosbags message classes have no defaults, so a
    message built offline starts from these and replay overwrites the ones it decides.
    """
    types = typestore().types
    point = types["geometry_msgs/msg/Point"]
    stamped = types["geometry_msgs/msg/PointStamped"]
    return {
        "depth_stamp": types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
        "has_target_point": False,
        "centroid_target": stamped(header=header(0, ""), point=point(0.0, 0.0, 0.0)),
        "grasp_point_target": stamped(header=header(0, ""), point=point(0.0, 0.0, 0.0)),
        "extent_3d": types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        "error_3d": "",
        "prefetched": False,
        "track_id": 0,
        "track_status": 0,
        "track_reason": "",
        "frame_age_s": -1.0,
        "status": 0,
        "confidence": 0.0,
        "sure": False,
        "ambiguous": False,
        "question": "",
        "in_reply_to": 0,
        "candidates": [],
        "objects": [],
    }


def message_fields(cls: type) -> list[str]:
    """The data fields of a rosbags message class (not its constants nor ``__msgtype__``)."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if not f.name.startswith("__") and not str(f.type).startswith("ClassVar")
    ]


def current_segmentation(message: Any) -> Any:
    """A Segmentation read from any bag, as this version's message (for writing it again).

    A bag keeps the definition it was written with; results written before fields were appended
    lack them, and copying their bytes under today's definition would make a bag no reader can
    decode. Fields the old message has are kept; the appended ones take their empty values.
    """
    cls = typestore().types[SEGMENTATION_TYPE]
    empty = appended_segmentation_fields()
    names = message_fields(cls)
    return cls(**{n: getattr(message, n) if hasattr(message, n) else empty[n] for n in names})


def qos_profile(kind: str) -> Qos:
    """The QoS a publisher of this kind offers, as rosbags records it in bag metadata.

    "sensor": best effort, keep last 5 (rclpy's qos_profile_sensor_data); "reliable":
    reliable, keep last 10, volatile (the node's command/result QoS).
    """
    zero = QosTime(0, 0)
    if kind == "sensor":
        reliability, depth = QosReliability.BEST_EFFORT, 5
    elif kind == "reliable":
        reliability, depth = QosReliability.RELIABLE, 10
    else:
        raise ValueError(f"unknown QoS kind {kind!r} (sensor | reliable)")
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        reliability,
        QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


# --------------------------------------------------------------------------------------
# Building rosbags message objects (the fields come from ros/conversions.py)


def header(stamp_ns: int, frame_id: str = "") -> Any:
    """std_msgs/Header for a time in nanoseconds."""
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](
        sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)
    )
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(fields: dict[str, Any], hdr: Any) -> Any:
    """sensor_msgs/Image from conversions.*_to_fields() output (bytes data -> uint8 array)."""
    import numpy as np

    data = np.frombuffer(bytes(fields["data"]), dtype=np.uint8)
    return typestore().types["sensor_msgs/msg/Image"](
        header=hdr,
        height=int(fields["height"]),
        width=int(fields["width"]),
        encoding=str(fields["encoding"]),
        is_bigendian=int(fields["is_bigendian"]),
        step=int(fields["step"]),
        data=data,
    )


def string_message(text: str) -> Any:
    return typestore().types["std_msgs/msg/String"](data=text)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
