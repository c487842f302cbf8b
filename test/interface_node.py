#!/usr/bin/env python3
"""Test-only launcher: the real segmenter node, which also prints the QoS of every topic
endpoint it creates, one `ENDPOINT {json}` line each.

Why: DDS discovery carries reliability and durability but not history and depth (a peer sees
them as UNKNOWN), and docs/ros_interface.md promises all four. Wrapping rclpy's own
Node.create_publisher/create_subscription sees every endpoint whichever module of the node
creates it, so the check does not depend on how the node's code is split into files.

    python test/interface_node.py --ros-args ...   (the same arguments as iterprime_ros.ros.node)
"""

from __future__ import annotations

import json
import runpy
import sys
from importlib.metadata import entry_points
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _report(kind: str, create):
    def wrapper(self, msg_type, topic, qos_profile, *args, **kwargs):
        endpoint = create(self, msg_type, topic, qos_profile, *args, **kwargs)
        qos = endpoint.qos_profile
        line = {
            "kind": kind,
            "topic": endpoint.topic_name,
            "history": qos.history.name,
            "depth": qos.depth,
            "reliability": qos.reliability.name,
            "durability": qos.durability.name,
        }
        print("ENDPOINT " + json.dumps(line), flush=True)
        return endpoint

    return wrapper


def main() -> None:
    from rclpy.node import Node

    Node.create_publisher = _report("pub", Node.create_publisher)
    Node.create_subscription = _report("sub", Node.create_subscription)
    sys.argv[0] = "iterprime-node"
    # the installed console entry (`iterprime-node`), wherever the node's main() lives
    entry = [e for e in entry_points(group="console_scripts") if e.name == "iterprime-node"]
    if entry:
        raise SystemExit(entry[0].load()())
    runpy.run_module("iterprime_ros.ros.node", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
