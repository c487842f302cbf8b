"""Reading and writing rosbag2 files (.mcap, .db3, bag directories) without a ROS install.

Why a module of its own: offline replay, the live bag player, the sample-bag script and the
tests all need the same things -- a rosbags typestore that also knows
``iterprime_ros/msg/Segmentation`` (bag_types), one reader that checks what it reads and turns
every failure into a one-line ``BagError`` (bag_reader, bag_check), and one writer that keeps the
output promises (bag_writer). This module is the one name the tools import them by. Nothing
here imports rclpy.
"""

from __future__ import annotations

from .bag_check import ReadLimits, read_limit_bytes
from .bag_lock import LOCK_SUFFIX, OutputLock
from .bag_reader import BagMessage, BagReader, bag_summary
from .bag_types import (
    CANDIDATE_TYPE,
    PACKAGE,
    SEGMENTATION_TYPE,
    STORAGE_IDS,
    BagError,
    BagWriteError,
    appended_segmentation_fields,
    current_segmentation,
    find_interface_file,
    header,
    image_message,
    message_fields,
    qos_profile,
    stamp_ns,
    string_message,
    typestore,
)
from .bag_writer import (
    MAGIC,
    TEMP_SUFFIX,
    BagWriter,
    check_replaceable,
    clean_stale_temps,
    partial_name,
)

__all__ = [
    "CANDIDATE_TYPE",
    "LOCK_SUFFIX",
    "MAGIC",
    "PACKAGE",
    "SEGMENTATION_TYPE",
    "STORAGE_IDS",
    "TEMP_SUFFIX",
    "BagError",
    "BagWriteError",
    "BagMessage",
    "BagReader",
    "BagWriter",
    "OutputLock",
    "ReadLimits",
    "appended_segmentation_fields",
    "bag_summary",
    "check_replaceable",
    "clean_stale_temps",
    "current_segmentation",
    "find_interface_file",
    "header",
    "image_message",
    "message_fields",
    "partial_name",
    "qos_profile",
    "read_limit_bytes",
    "stamp_ns",
    "string_message",
    "typestore",
]
