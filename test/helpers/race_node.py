#!/usr/bin/env python3
"""Test-only launcher: the real segmenter node with the cancel window HELD OPEN by a test hook.

rclpy marks a goal as cancelling only after the node's cancel callback has returned ACCEPT; the
worker may answer the goal inside that gap (at its next stage boundary, or with its result).
By chance that gap is microseconds wide; this launcher (in test/, never installed) wraps the
node's cancel callback so that it waits HOLD_S after accepting, which makes the worker answer
inside the gap every time. Nothing in a command, parameter or the environment can do this.

    python test/race_node.py --ros-args ...     (the same arguments as iterprime_ros.ros.node)
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rclpy.action import CancelResponse  # noqa: E402

from iterprime_ros.ros import commands, node  # noqa: E402

HOLD_S = 1.0  # longer than a tiny-model stage, even on a loaded machine


def install() -> None:
    accept = commands.Commands.on_cancel

    @functools.wraps(accept)
    def held(self, goal_handle):  # noqa: ANN001, ANN202 - rclpy's cancel callback
        response = accept(self, goal_handle)
        if response == CancelResponse.ACCEPT:
            time.sleep(HOLD_S)
        return response

    commands.Commands.on_cancel = held


if __name__ == "__main__":
    install()
    print("cancel window held open (test/race_node.py)", flush=True)
    node.main(sys.argv)
