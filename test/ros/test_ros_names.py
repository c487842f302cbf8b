"""One definition of the node's name, default topics and stamp arithmetic (ros/names.py)."""

import ast
from pathlib import Path
from types import SimpleNamespace

from iterprime_ros.ros import names

ROOT = Path(__file__).resolve().parents[2]


def test_output_topics_follow_the_node_name_and_namespace():
    assert names.output_topic("result") == f"/{names.NODE_NAME}/result"
    assert names.output_topic("mask", "/robot1/") == f"/robot1/{names.NODE_NAME}/mask"


def test_stamp_ns_of_any_header():
    header = SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=5))
    assert names.stamp_ns(header) == 3_000_000_005


def test_replay_bags_sensors_and_launch_use_the_one_definition():
    from iterprime_ros.ros import sensors
    from iterprime_ros.tools import bags, replay

    assert sensors.stamp_ns is names.stamp_ns and bags.stamp_ns is names.stamp_ns
    assert replay.IMAGE_TOPIC == names.DEFAULT_INPUT_TOPICS["image"]
    assert replay.RESULT_TOPIC == names.output_topic("result")
    launch = (ROOT / "launch" / "segment.launch.py").read_text()
    assert "from iterprime_ros.ros.names import DEFAULT_INPUT_TOPICS, NODE_NAME" in launch
    # nowhere else is a topic default or the node name written out
    for path in [*(ROOT / "iterprime_ros").rglob("*.py"), ROOT / "launch" / "segment.launch.py"]:
        if path.name == "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in (
                names.NODE_NAME,
                *names.DEFAULT_INPUT_TOPICS.values(),
            ):
                raise AssertionError(f"{path.relative_to(ROOT)} spells out {node.value!r}")
