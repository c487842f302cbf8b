"""The robustness suite's harness: the real segmenter node in its own process, and a test node
that streams a camera and sends commands over real DDS (this session's ROS_DOMAIN_ID).

Each node process gets its own namespace, so several can run at once without hearing each
other. The node's stdout/stderr is collected (log), and its resident memory can be read from
/proc (rss_mb). Random-weight tiny models: the plumbing is tested, never the masks.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID, before rclpy starts)
import yaml
from ros_helpers import EVENT_TIMEOUT_S, ros_env, spin_until

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "segment.yaml"
FAULT_NODE = Path(__file__).resolve().parent / "fault_node.py"
from iterprime_ros.ros.names import NODE_NAME  # noqa: E402


def tiny_params(tiny_model_dirs: Any, **overrides: Any) -> dict[str, Any]:
    """Parameters for a node on the tiny models: CPU, small proposal input, always select
    something.
    """
    params = {
        "vlp_model": str(tiny_model_dirs.blip),
        "proposal_model": str(tiny_model_dirs.mask2former),
        "device": "cpu",
        "proposal_shortest_edge": 128,
        "proposal_longest_edge": 256,
        "proposal_threshold": 0.7,
        "empty_selection": "best_heat",
        "max_components": 10000,  # random weights: always select something
        "publish_debug_image": False,
        # these tests pin down what a command does with the newest image; prefetching (which
        # answers on a prepared frame) is tested on its own in test_node_prefetch.py
        "prefetch": "off",
        # these tests send independent commands; random weights make close heats, and a question
        # left pending would turn the next command into a reply (the conversation is tested on
        # the world model in test_node_conversation.py, with the node's own margin)
        "ambiguity_margin": 0.0,
    }
    params.update(overrides)
    return params


class NodeProcess:
    """A segmenter node in a child process: `python -m iterprime_ros.ros.entry` or, with
    fault_node, the test-only launcher that wraps the backends with the fault injector
    (test/helpers/fault_node.py). Tests start one through the `start_node` fixture (conftest.py).

    namespace "" runs the node in the root namespace, as `ros2 run` does; topics is either the
    input names (each remapped to /NAMESPACE/cam/NAME) or a dict of input name to topic.
    """

    started = 0  # node processes started in this test process (printed at the end of a run)

    def __init__(
        self,
        namespace: str,
        params: dict[str, Any],
        folder: Path,
        *,
        fault_node: bool = False,
        topics: Iterable[str] | dict[str, str] = ("image", "command", "depth", "camera_info"),
        cwd: Path | None = None,
        program: list[str] | None = None,
        **env: str,
    ) -> None:
        self.namespace = namespace.strip("/")
        prefix = f"/{self.namespace}" if self.namespace else ""
        self.out = f"{prefix}/{NODE_NAME}"
        if isinstance(topics, dict):
            self.topics = dict(topics)
        else:
            self.topics = {name: f"{prefix}/cam/{name}" for name in topics}
        override = folder / f"{self.namespace or 'root'}_params.yaml"
        override.write_text(yaml.safe_dump({self.out: {"ros__parameters": params}}))
        remaps = [a for name, topic in self.topics.items() for a in ("-r", f"{name}:={topic}")]
        if program is None:  # another test-only launcher may be given (e.g. frame_node.py)
            program = [str(FAULT_NODE)] if fault_node else ["-m", "iterprime_ros.ros.entry"]
        args = [
            *program,
            "--ros-args",
            "--params-file",
            str(CONFIG),
            "--params-file",
            str(override),
            *(["-r", f"__ns:=/{self.namespace}"] if self.namespace else []),
            *remaps,
        ]
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONPATH", str(ROOT))  # cwd may be elsewhere; import this checkout
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            env=ros_env(**env),
            cwd=str(cwd) if cwd else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        NodeProcess.started += 1
        self.lines: list[str] = []
        self._interrupted = False
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def rss_mb(self) -> float:
        """The node process's resident memory (VmRSS), in MiB."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) / 1024.0

    def interrupt(self) -> None:
        """SIGINT (as Ctrl-C), without waiting: stop several nodes at once, then stop() each."""
        if self.proc.poll() is None and not self._interrupted:
            self.proc.send_signal(signal.SIGINT)
            self._interrupted = True

    def stop(self, timeout: float = 20.0) -> str:
        """SIGINT and wait (kill after `timeout`); returns the whole log (the node logs its stats
        line at shutdown).
        """
        self.interrupt()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        return self.log

    def stats(self) -> dict[str, float]:
        """The numbers of the node's shutdown stats line (after stop())."""
        m = re.search(
            r"stats: (\d+) commands received, (\d+) answered \((\d+) succeeded, (\d+) failed\); "
            r"(\d+) images received, image callback max ([\d.]+) ms, longest gap between images "
            r"(\d+) ms",
            self.log,
        )
        assert m, "no stats line in the node's log:\n" + self.log[-3000:]
        keys = (
            "commands_received",
            "answered",
            "succeeded",
            "failed",
            "images_received",
            "image_callback_max_ms",
            "max_image_gap_ms",
        )
        return {k: float(v) for k, v in zip(keys, m.groups())}


@contextlib.contextmanager
def connected(
    rclpy: Any, node: NodeProcess, name: str, rate_hz: float = 10.0
) -> Iterator[Harness]:
    """A Harness on `node` for the block, rclpy started for it; after the block (whatever it
    raised) the harness is closed and rclpy shut down.
    """
    rclpy.init()
    h = Harness(rclpy, node, name, rate_hz=rate_hz)
    try:
        yield h
    finally:
        h.close()
        rclpy.shutdown()


class Spinning:
    """spin() and until() on `self.executor`, for the tests' own nodes."""

    executor: Any
    spin_step_s = 0.02  # how long one spin_once may wait

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=self.spin_step_s)

    def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout)


class Harness(Spinning):
    """The test's side for one node: publishes a camera stream on a timer (image, optional depth
    and camera_info) and collects the node's results (and masks).
    """

    def __init__(self, rclpy: Any, node: NodeProcess, name: str, rate_hz: float = 10.0) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from iterprime_ros.msg import Segmentation
        from iterprime_ros.srv import Segment

        self.target = node
        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        n = self.node
        self.results: list[Any] = []
        self.arrivals: list[float] = []
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        n.create_subscription(Segmentation, f"{node.out}/result", self._on_result, reliable)
        self.image_pub = n.create_publisher(Image, node.topics["image"], qos_profile_sensor_data)
        self.depth_pub = n.create_publisher(Image, node.topics["depth"], qos_profile_sensor_data)
        self.info_pub = n.create_publisher(
            CameraInfo, node.topics["camera_info"], qos_profile_sensor_data
        )
        self.command_pub = n.create_publisher(String, node.topics["command"], reliable)
        self.client = n.create_client(Segment, f"{node.out}/segment")
        self.String = String
        self.image: Any = None  # streamed while set
        self.depth: Any = None
        self.info: Any = None
        self.published = 0
        self.sent = 0  # commands sent (topic and service)
        self.restamp = False  # give every published image (and depth) the current time
        self.timer = n.create_timer(1.0 / rate_hz, self.publish)

    def _on_result(self, msg: Any) -> None:
        self.results.append(msg)
        self.arrivals.append(time.monotonic())

    def publish(self) -> None:
        if self.image is None:
            return
        if self.restamp:
            now = self.node.get_clock().now().to_msg()
            self.image.header.stamp = now
            if self.depth is not None:
                self.depth.header.stamp = now
        self.image_pub.publish(self.image)
        self.published += 1
        if self.depth is not None:
            self.depth_pub.publish(self.depth)
        if self.info is not None:
            self.info.header.stamp = self.image.header.stamp  # as drivers stamp camera_info
            self.info_pub.publish(self.info)

    def show(
        self,
        image: Any,
        depth: Any = None,
        info: Any = None,
        settle: float = 0.5,
        subscribed: bool = True,
    ) -> None:
        """Stream these messages from now on and give DDS time to deliver them.

        subscribed: the node is active, so first wait for its camera subscription to match (an
        event: a frame sent before discovery completes is simply lost). False for a node that
        has none (not yet active).
        """
        self.image, self.depth, self.info = image, depth, info
        if subscribed:
            assert self.until(
                lambda: self.image_pub.get_subscription_count() > 0, EVENT_TIMEOUT_S
            ), "the node never subscribed to the camera:\n" + self.target.log[-3000:]
        self.publish()
        self.spin(settle)

    def wait_ready(self, timeout: float = 60.0) -> None:
        ok = self.until(
            lambda: (
                self.command_pub.get_subscription_count() > 0
                and self.node.count_publishers(f"{self.target.out}/result") > 0
            ),
            timeout,
        )
        assert ok, "node did not come up:\n" + self.target.log
        # Seeing the node's writer does not mean the node's writer has matched our reader yet
        # (discovery is symmetric, not simultaneous); a node that fails fast (bad models) would
        # publish its first answer into that gap, and a volatile topic does not resend it.
        self.spin(1.0)

    def send(self, text: str) -> int:
        """Publish a command; returns how many results had arrived before it (for result_after)."""
        before = len(self.results)
        self.command_pub.publish(self.String(data=text))
        self.sent += 1
        return before

    def result_after(self, before: int, text: str, timeout: float = 90.0) -> Any:
        def found() -> bool:
            return any(r.command == text for r in self.results[before:])

        assert self.until(found, timeout), (
            f"no result for {text[:80]!r}:\n" + self.target.log[-4000:]
        )
        return next(r for r in self.results[before:] if r.command == text)

    def command(self, text: str, timeout: float = 90.0) -> Any:
        """Publish a spoken command and wait for its result."""
        return self.result_after(self.send(text), text, timeout)

    def call(self, text: str, image: Any = None, timeout: float = 90.0) -> Any:
        """The ~/segment service; returns its Segmentation."""
        from iterprime_ros.srv import Segment

        assert self.client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S)
        request = Segment.Request(text=text)
        if image is not None:
            request.image = image
        future = self.client.call_async(request)
        self.sent += 1
        assert self.until(future.done, timeout), f"no service answer for {text!r}"
        return future.result().result

    def results_for(self, text: str) -> list[Any]:
        return [r for r in self.results if r.command == text]

    def set_parameter(self, name: str, value: Any) -> Any:
        """Set one parameter of the running node through its set_parameters service, as `ros2
        param set` would; returns the SetParametersResult (successful, reason). `value` is a
        Python value, or a ParameterValue message to send a value of a chosen (wrong) type.
        """
        from rcl_interfaces.msg import Parameter, ParameterValue
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter as P

        client = self.node.create_client(SetParameters, f"{self.target.out}/set_parameters")
        assert client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S)
        if not isinstance(value, ParameterValue):
            value = P(name, value=value).to_parameter_msg().value
        future = client.call_async(
            SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        )
        assert self.until(future.done, EVENT_TIMEOUT_S)
        return future.result().results[0]

    def close(self) -> None:
        self.node.destroy_node()


def percentiles(values: list[float], qs: Iterable[float] = (50, 90, 99)) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    out = {f"p{q:g}": float(np.percentile(values, q)) for q in qs}
    out["max"] = float(max(values))
    return out
