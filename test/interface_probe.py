"""What the running segmenter node offers, seen from outside: topics, services, actions, QoS and
parameters (test_docs_ros_interface.py compares this with docs/ros_interface.md).

The node runs as its own process (test/interface_node.py: the real node, which also prints the
history and depth of each endpoint it creates, since DDS discovery does not carry them); this
process joins the graph with a probe node and asks: the endpoints by node, the reliability and
durability each publisher/subscription announces, and the parameters through the node's
list/describe/get parameter services. Nothing reads the node's source, so the check holds
however the node's code is arranged in files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID, before rclpy starts)
import yaml
from ros_helpers import EVENT_TIMEOUT_S, spawn_python, spin_until, stop

from iterprime_ros.ros.names import NODE_NAME

LAUNCHER = Path(__file__).resolve().parent / "interface_node.py"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Endpoint:
    """One topic endpoint of the node: its type and its QoS in the words the table uses."""

    kind: str  # "pub" | "sub"
    topic: str
    type: str
    reliability: str = ""
    durability: str = ""
    history: str = ""  # "" where the node process did not report it (endpoints rcl creates)
    depth: int = 0


@dataclass
class Interface:
    namespace: str
    topics: dict[tuple[str, str], Endpoint] = field(default_factory=dict)  # (kind, topic)
    services: dict[str, str] = field(default_factory=dict)  # full name -> type
    actions: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)  # value, constraints ...
    log: str = ""

    def resolve(self, name: str) -> str:
        """A name as written in the table (`image`, `~/result`, `/diagnostics`) as the graph
        shows it for this node.
        """
        if name.startswith("/"):
            return name
        if name.startswith("~/"):
            return f"/{self.namespace}/{NODE_NAME}/{name[2:]}"
        return f"/{self.namespace}/{name}"


def _qos_words(profile: Any) -> tuple[str, str]:
    return profile.reliability.name.lower(), profile.durability.name.lower()


def probe(params: dict[str, Any], folder: Path, namespace: str) -> Interface:
    """Start the node with `params` (and nothing else: every other parameter keeps the node's
    own default), wait until it is active, and read its interface.
    """
    import rclpy
    import rclpy.executors
    from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters
    from rclpy.action import graph as action_graph
    from rclpy.parameter import parameter_value_to_python

    override = folder / f"{namespace}_params.yaml"
    override.write_text(yaml.safe_dump({f"/{namespace}/{NODE_NAME}": {"ros__parameters": params}}))
    proc = spawn_python(
        [str(LAUNCHER), "--ros-args", "--params-file", str(override), "-r", f"__ns:=/{namespace}"],
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),  # this checkout, whatever the working directory
    )
    found = Interface(namespace=namespace)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"interface_probe_{namespace}", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    ns = f"/{namespace}"
    try:
        # active: the camera subscription exists only then
        camera = "image/compressed" if params.get("image_transport") == "compressed" else "image"
        image = found.resolve(camera)
        if not spin_until(executor, lambda: node.count_subscribers(image) > 0, EVENT_TIMEOUT_S):
            raise AssertionError("the node never became active:\n" + stop(proc)[-3000:])
        _wait_until_graph_settles(node, executor, ns)
        for kind, lookup, info in (
            ("pub", node.get_publisher_names_and_types_by_node, node.get_publishers_info_by_topic),
            (
                "sub",
                node.get_subscriber_names_and_types_by_node,
                node.get_subscriptions_info_by_topic,
            ),
        ):
            for topic, types in lookup(NODE_NAME, ns):
                endpoint = Endpoint(kind, topic, ",".join(types))
                for entry in info(topic):
                    if entry.node_name == NODE_NAME and entry.node_namespace == ns:
                        endpoint.reliability, endpoint.durability = _qos_words(entry.qos_profile)
                found.topics[(kind, topic)] = endpoint
        found.services = {
            name: ",".join(types)
            for name, types in node.get_service_names_and_types_by_node(NODE_NAME, ns)
        }
        found.actions = {
            name: ",".join(types)
            for name, types in action_graph.get_action_server_names_and_types_by_node(
                node, NODE_NAME, ns
            )
        }
        found.parameters = _parameters(
            node,
            executor,
            f"{ns}/{NODE_NAME}",
            ListParameters,
            DescribeParameters,
            GetParameters,
            parameter_value_to_python,
        )
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        found.log = stop(proc, timeout=20.0)
    for line in found.log.splitlines():
        if line.startswith("ENDPOINT "):
            reported = json.loads(line[len("ENDPOINT ") :])
            endpoint = found.topics.get((reported["kind"], reported["topic"]))
            if endpoint is not None:
                endpoint.history = reported["history"].lower().replace("_", " ")
                endpoint.depth = reported["depth"]
    return found


def _wait_until_graph_settles(node: Any, executor: Any, ns: str) -> None:
    """Until the graph knows the node by name and what it shows of the node has not changed for
    a second (discovery is not simultaneous on a loaded machine).
    """
    from rclpy.node import NodeNameNonExistentError

    def seen() -> tuple[int, int, int] | None:
        try:
            return (
                len(node.get_publisher_names_and_types_by_node(NODE_NAME, ns)),
                len(node.get_subscriber_names_and_types_by_node(NODE_NAME, ns)),
                len(node.get_service_names_and_types_by_node(NODE_NAME, ns)),
            )
        except NodeNameNonExistentError:  # its endpoints can be seen before its name
            return None

    last, since = seen(), time.monotonic()
    deadline = since + EVENT_TIMEOUT_S
    while time.monotonic() < deadline and (last is None or time.monotonic() - since < 1.0):
        executor.spin_once(timeout_sec=0.1)
        now = seen()
        if now != last:
            last, since = now, time.monotonic()
    assert last is not None, f"the graph never listed {ns}/{NODE_NAME}"


def _call(executor: Any, client: Any, request: Any) -> Any:
    assert client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S), client.srv_name
    future = client.call_async(request)
    assert spin_until(executor, future.done, EVENT_TIMEOUT_S), client.srv_name
    return future.result()


def _parameters(
    node, executor, full_name, ListParameters, DescribeParameters, GetParameters, to_python
):
    names = list(
        _call(
            executor,
            node.create_client(ListParameters, f"{full_name}/list_parameters"),
            ListParameters.Request(),
        ).result.names
    )
    described = _call(
        executor,
        node.create_client(DescribeParameters, f"{full_name}/describe_parameters"),
        DescribeParameters.Request(names=names),
    ).descriptors
    values = _call(
        executor,
        node.create_client(GetParameters, f"{full_name}/get_parameters"),
        GetParameters.Request(names=names),
    ).values
    return {
        name: {
            "value": to_python(value),
            "constraints": d.additional_constraints,
            "description": d.description,
        }
        for name, d, value in zip(names, described, values)
    }
