"""Names the node, its launch file and the offline tools share (no ROS import: replay uses it).

Why one place: the launch file's default remaps, the replay's default topics and the node's own
name used to be written out in three files and could drift apart.
"""

from __future__ import annotations

from typing import Any

NODE_NAME = "iterprime_segmenter"

# The node's input topics (relative names) and the topics the launch file and the offline replay
# map them to by default (a RealSense-style camera and the voice front end's topic).
DEFAULT_INPUT_TOPICS: dict[str, str] = {
    "image": "/camera/color/image_raw",
    "command": "/iterprime/command",
    "depth": "/camera/aligned_depth_to_color/image_raw",
    "camera_info": "/camera/color/camera_info",
}


def output_topic(name: str, namespace: str = "") -> str:
    """A node output topic by its relative name ('result', 'mask', ...), e.g. /ns/<node>/result."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{NODE_NAME}/{name}"


def stamp_ns(header: Any) -> int:
    """builtin_interfaces/Time of a header (rclpy or rosbags message) as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
