"""docs/ros_interface.md is checked against the running node, so the page cannot drift.

The real segmenter node runs as its own process (tiny random-weight models: only its interface
is looked at, never a mask) and a probe in this process reads what it offers over DDS and its
parameter services (test/interface_probe.py). Each table of the page is parsed by its column
names, so adding a row is adding a line in the same format; a row the node lacks, or an endpoint
or parameter the page lacks, fails with the value the node has.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ros_interface.md"

# What every rclpy node, lifecycle node or action server has: not part of this node's page.
RCLPY_OWN_TOPICS = {"/rosout", "/parameter_events"}
RCLPY_OWN_SERVICES = {
    "describe_parameters",
    "get_parameter_types",
    "get_parameters",
    "list_parameters",
    "set_parameters",
    "set_parameters_atomically",
    "get_type_description",
}
RCLPY_OWN_PARAMETERS = {"use_sim_time", "start_type_description_service"}


def page_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every Markdown table of the page under its `## ` heading, as rows keyed by column name
    (cells without their backticks).
    """
    tables: dict[str, list[dict[str, str]]] = {}
    heading, header = "", None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not all(set(c) <= set("-: ") for c in cells):
            row = {name: cell.replace("`", "") for name, cell in zip(header, cells)}
            row["_raw"] = line
            tables.setdefault(heading, []).append(row)
    return tables


TABLES = page_tables(PAGE.read_text())


def qos_words(row: dict[str, str]) -> tuple[str, str, str, int]:
    """`reliable, keep last 10` -> (reliability, durability, history, depth)."""
    parts = [p.strip() for p in row["QoS"].split(",")]
    reliability = parts[0].replace(" ", "_")
    durability = "transient_local" if "transient local" in parts else "volatile"
    history = parts[-1]
    m = re.fullmatch(r"keep last (\d+)", history)
    assert m or history == "keep all", f"QoS not understood: {row['_raw']}"
    return reliability, durability, "keep last" if m else "keep all", int(m.group(1)) if m else 0


def full_type(name: str) -> str:
    """`sensor_msgs/Image` and `sensor_msgs/msg/Image` both name sensor_msgs/msg/Image."""
    parts = name.split("/")
    return name if len(parts) == 3 else f"{parts[0]}/msg/{parts[1]}"


def test_page_has_every_table():
    """The parser finds the tables the other tests compare (a renamed heading would make them
    compare nothing).
    """
    for heading, columns in {
        "Topics": {"kind", "name", "type", "QoS", "exists"},
        "Services": {"name", "type"},
        "Actions": {"name", "type"},
        "Parameters": {"name", "default", "allowed", "live"},
        "Launch arguments": {"argument", "default"},
    }.items():
        assert TABLES.get(heading), f"no table under '## {heading}' in {PAGE}"
        assert columns <= set(TABLES[heading][0]), (heading, sorted(TABLES[heading][0]))
    assert len(TABLES["Parameters"]) >= 40


# ---- the running node --------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_interface(tiny_model_dirs, tmp_path_factory):
    """The node with every parameter at its own default except the two model folders, active."""
    from interface_probe import probe

    params = {
        "vlp_model": str(tiny_model_dirs.blip),
        "proposal_model": str(tiny_model_dirs.mask2former),
    }
    return probe(params, tmp_path_factory.mktemp("iface"), "iface_raw")


def vision_msgs_importable() -> bool:
    return importlib.util.find_spec("vision_msgs") is not None


def expected(row: dict[str, str], transport: str) -> bool:
    """Whether the row's `exists` conditions hold for an active node with `transport`."""
    for condition in (c.strip() for c in row["exists"].split(",")):
        if condition.startswith("image_transport:"):
            if condition.split(":", 1)[1].strip() != transport:
                return False
        elif condition == "vision_msgs":
            if not vision_msgs_importable():
                return False
        else:
            assert condition in ("always", "active"), f"unknown condition: {row['_raw']}"
    return True


def check_topics(found: Any, transport: str) -> None:
    rows = {(r["kind"], found.resolve(r["name"])): r for r in TABLES["Topics"]}
    offered = {
        key: e
        for key, e in found.topics.items()
        if key[1] not in RCLPY_OWN_TOPICS and "/_action/" not in key[1]
    }
    missing = [f"{k} {e.type}" for k, e in offered.items() if k not in rows]
    assert not missing, f"the node has endpoints the page lacks: {missing}"
    for key, row in rows.items():
        if not expected(row, transport):
            assert key not in offered, f"the page says this does not exist here: {row['_raw']}"
            continue
        assert key in offered, f"the node has no such endpoint: {row['_raw']}\n{found.log[-2000:]}"
        endpoint = offered[key]
        assert full_type(row["type"]) == endpoint.type, (row["_raw"], endpoint.type)
        reliability, durability, history, depth = qos_words(row)
        assert (reliability, durability) == (endpoint.reliability, endpoint.durability), (
            row["_raw"],
            endpoint,
        )
        if endpoint.history:  # endpoints rcl creates itself (lifecycle) do not report it
            assert history == endpoint.history, (row["_raw"], endpoint)
            if history == "keep last":
                assert depth == endpoint.depth, (row["_raw"], endpoint)


def test_topics_and_qos_match_the_node(node_interface):
    check_topics(node_interface, "raw")
    # the QoS that DDS cannot tell was reported by the node process for the node's own topics
    assert node_interface.topics[("sub", node_interface.resolve("command"))].history == "keep all"


def test_compressed_input_row_matches_the_node(tiny_model_dirs, tmp_path_factory):
    """The `image_transport: compressed` rows, with a second node that takes compressed input."""
    from interface_probe import probe

    params = {
        "vlp_model": str(tiny_model_dirs.blip),
        "proposal_model": str(tiny_model_dirs.mask2former),
        "image_transport": "compressed",
    }
    check_topics(probe(params, tmp_path_factory.mktemp("iface"), "iface_jpeg"), "compressed")


@pytest.mark.parametrize("table,attribute", [("Services", "services"), ("Actions", "actions")])
def test_services_and_actions_match_the_node(node_interface, table, attribute):
    offered = {
        name: kind
        for name, kind in getattr(node_interface, attribute).items()
        if "/_action/" not in name and name.rsplit("/", 1)[-1] not in RCLPY_OWN_SERVICES
    }
    rows = {node_interface.resolve(r["name"]): r for r in TABLES[table]}
    assert sorted(offered) == sorted(rows), f"{table}: node {sorted(offered)}, page {sorted(rows)}"
    for name, row in rows.items():
        assert row["type"] == offered[name], (row["_raw"], offered[name])


def documented_default(row: dict[str, str]) -> Any:
    value = yaml.safe_load(row["default"])
    return [] if value == [""] else value


def test_parameters_match_the_node(node_interface):
    from iterprime_ros.ros.params import SPECS

    offered = {
        name: p
        for name, p in node_interface.parameters.items()
        if name not in RCLPY_OWN_PARAMETERS and not name.startswith("qos_overrides")
    }
    rows = {r["name"]: r for r in TABLES["Parameters"]}
    assert sorted(offered) == sorted(rows), (
        f"node has, page lacks: {sorted(set(offered) - set(rows))}; "
        f"page has, node lacks: {sorted(set(rows) - set(offered))}"
    )
    for name, row in rows.items():
        got = offered[name]
        value = [] if got["value"] == [""] else got["value"]
        if name in ("vlp_model", "proposal_model"):  # the probe points these at tiny models
            value = SPECS[name].default
        default = documented_default(row)
        assert default == value and type(default) is type(value), (row["_raw"], value)
        assert row["allowed"] == got["constraints"], (row["_raw"], got["constraints"])
        live = "read at configure" not in got["description"]
        assert row["live"] == ("yes" if live else "no"), (row["_raw"], got["description"])


# ---- the launch file (launch/launch_ros are not installable here) ---------------------------


class StandInArgument:
    """STAND-IN for launch.actions.DeclareLaunchArgument (launch is not installable here): it
    only records the name and default the launch file declares.
    """

    def __init__(self, name: str, default_value: str = "", description: str = "") -> None:
        self.name, self.default_value, self.description = name, default_value, description


def declared_launch_arguments() -> dict[str, str]:
    stand_ins = {
        "launch": types.SimpleNamespace(LaunchDescription=lambda items: items),
        "launch.actions": types.SimpleNamespace(
            DeclareLaunchArgument=StandInArgument, OpaqueFunction=lambda function: None
        ),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=None),
    }
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)  # type: ignore[arg-type]
    try:
        spec = importlib.util.spec_from_file_location(
            "segment_launch", ROOT / "launch" / "segment.launch.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module._default_config = lambda: "the package's config/segment.yaml"
        items = module.generate_launch_description()
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return {a.name: a.default_value for a in items if isinstance(a, StandInArgument)}


def test_launch_arguments_match_the_launch_file():
    declared = declared_launch_arguments()
    rows = {r["argument"]: r for r in TABLES["Launch arguments"]}
    assert sorted(rows) == sorted(declared)
    for name, default in declared.items():
        documented = rows[name]["default"]
        if name == "config_file":
            assert "config/segment.yaml" in documented
        else:
            assert documented == (default or "(empty)"), (rows[name]["_raw"], default)
