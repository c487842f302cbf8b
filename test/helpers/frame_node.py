#!/usr/bin/env python3
"""Test-only launcher: the real segmenter node with StandInTransformBuffer, a STAND-IN for
tf2_ros.Buffer (tf2_ros is not installable in the wheel-only environment).

Why a launcher: the product takes a transform buffer only from code that embeds the node
(SegmenterNode(transform_buffer=...)); nothing in a command, parameter or the environment can
swap it. This script (in test/, never installed) gives it the stand-in holding one fixed
transform, CAMERA_FRAME -> base_link (TRANSLATION, ROTATION_XYZW), then runs the node's own main().

    python test/helpers/frame_node.py --ros-args ...   (the arguments of iterprime_ros.ros.node)
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

CAMERA_FRAME = "camera_color_optical_frame"
TARGET_FRAME = "base_link"
TRANSLATION = (0.35, -0.12, 0.74)
# a camera tilted down toward the table: optical z forward-down, x to the robot's right
ROTATION_XYZW = (-0.6830127, 0.6830127, -0.1830127, 0.1830127)


def main() -> None:
    from tf_stand_in import StandInTransformBuffer, transform_msg

    from iterprime_ros.ros import node

    buffer = StandInTransformBuffer()
    buffer.add(transform_msg(TARGET_FRAME, CAMERA_FRAME, TRANSLATION, ROTATION_XYZW))
    node.SegmenterNode = functools.partial(node.SegmenterNode, transform_buffer=buffer)
    node.main()


if __name__ == "__main__":
    main()
