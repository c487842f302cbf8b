"""Prefetch as a robot sees it: the node in its own process, a camera streaming over DDS.

Why: what prefetch is worth (or costs) depends on the camera rate, the proposal time and how
often the person speaks; the in-process bench cannot show a prefetcher that never goes idle or
a command that waits for a stage in flight. This drives ``python -m iterprime_ros.ros.entry`` with
a camera publisher (sensor-data QoS, the node's default best-effort subscription) at each rate,
once with ``prefetch: off`` and once with ``latest``, and prints side by side: command latency
p50 / p95 (published command to received result), the share answered on a prepared frame, the
frame age the answers report, and the node's CPU while idle with the camera streaming; "node
p50" is the answers' own latency_s (arrival at the node to the answer), without DDS delivery.
The voice side is a plain front end (rclpy's default QoS, the middleware's default participant);
each round trip is split into its two DDS legs on the host's clock, and the kernel's UDP drop
counters of both processes say which side lost datagrams, so a slow round trip names its leg.

Commands are sent one at a time, each at least ``--gap`` seconds after the last answer (the
issue's condition: a command one proposal time or more after the previous one). The scene is
still (one photograph with fresh sensor noise per frame); ``--scene-period S`` swaps between two
views every S seconds to exercise the scene-change rule. Random-weight models (timing only).

    python -m iterprime_ros.tools.bench.node_stream --rates 2 15 --commands 6
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...ros.names import output_topic
from .architectures import (
    PROPOSAL_ARCHS,
    VLP_ARCHS,
    bench_image,
    build_once,
    build_proposals,
    build_vlp,
)
from .machine import cpu_description

NAMESPACE = "stream_bench"
TICK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(f"[bench-stream] {text}", file=sys.stderr, flush=True)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def socket_drops(pid: int) -> dict[int, int]:
    """Datagrams the kernel dropped at each UDP port of a process (its receive buffer was full),
    from /proc/net/udp: which side lost samples, and on which port, without asking DDS.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    drops: dict[int, int] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = (
                line.split()
            )  # sl local remote st tx:rx tr:when retr uid timeout inode ref ptr drops
            if len(f) >= 13 and f[9] in inodes:
                port = int(f[1].rsplit(":", 1)[1], 16)
                drops[port] = drops.get(port, 0) + int(f[12])
    return drops


def drops_between(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    """New drops per port (ports with none left out)."""
    return {p: n - before.get(p, 0) for p, n in after.items() if n - before.get(p, 0) > 0}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Camera:
    """Frames of one scene (or two, swapped every `scene_period` s) with fresh noise."""

    def __init__(self, size: tuple[int, int], scene_period: float, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        base = bench_image(size).astype(np.int16)
        views = [base, base[:, ::-1]]  # the second view: the table seen mirrored
        self.frames = [
            [np.clip(v + rng.integers(-3, 4, v.shape), 0, 255).astype(np.uint8) for _ in range(6)]
            for v in views
        ]
        self.scene_period = scene_period
        self.count = 0
        self.start = time.monotonic()

    def next(self) -> np.ndarray:
        view = 0
        if self.scene_period > 0:
            view = int((time.monotonic() - self.start) / self.scene_period) % 2
        self.count += 1
        return self.frames[view][self.count % len(self.frames[view])]


class Driver:
    """The bench's own rclpy node: camera publisher, command publisher, result subscriber."""

    def __init__(self, rate_hz: float, camera: Camera, image_qos: str) -> None:
        import rclpy
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from ...msg import Segmentation
        from ...ros.conversions import rgb_to_fields
        from ...ros.messages import image_message

        self._image_message = lambda rgb: image_message(rgb_to_fields(rgb))
        self.node = rclpy.create_node("stream_bench_driver", namespace=NAMESPACE)
        camera_qos = qos_profile_sensor_data
        if image_qos == "reliable":
            camera_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", camera_qos)
        # The voice side is a plain front end: rclpy's default QoS (reliable, keep last 10) on
        # both topics and the middleware's default participant, so the figures are what any
        # front end gets, not what a tuned one would.
        self.command_pub = self.node.create_publisher(String, "command", 10)
        self.results: list[tuple[float, Any, dict[str, Any]]] = []
        self._got = threading.Condition()
        # The camera and the front end are separate programs on a robot: each gets its own
        # callback group, so a camera tick never holds back the result callback.
        self.node.create_subscription(
            Segmentation,
            output_topic("result", NAMESPACE),
            self._on_result,
            10,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.camera = camera
        self.node.create_timer(
            1.0 / rate_hz, self._tick, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        self._string = String

    def _tick(self) -> None:
        msg = self._image_message(self.camera.next())
        msg.header.frame_id = "camera"
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.image_pub.publish(msg)

    def _on_result(self, msg: Any, info: Any) -> None:
        with self._got:
            self.results.append((time.monotonic(), msg, {**info, "taken": time.time()}))
            self._got.notify_all()

    def command(self, text: str, timeout: float) -> tuple[float, Any, dict[str, float]] | None:
        """Publish a command; (seconds to its result, the result, the legs) or None on timeout.
        Results are matched by their command text (an earlier command may be answered late).

        The legs split the round trip on the host's clock: "to node" from the publish to the
        command's arrival at the node (the result's DDS source timestamp minus its latency_s),
        "to client" from the result's publish to this callback, of which "callback wait" is
        the part after DDS handed the sample over (its reception timestamp). A sample lost and
        repaired late shows as seconds in its own leg.
        """
        sent, sent_wall = time.monotonic(), time.time()
        self.command_pub.publish(self._string(data=text))

        def mine() -> tuple[float, Any, Any] | None:
            hits = ((t, m, i) for t, m, i in self.results if m.command == text and t >= sent)
            return next(hits, None)

        with self._got:
            if not self._got.wait_for(lambda: mine() is not None, timeout):
                return None
            at, msg, info = mine()  # type: ignore[misc]
        published = info["source_timestamp"] * 1e-9
        legs = {
            "to_node_s": published - float(msg.latency_s) - sent_wall,
            "to_client_s": info["taken"] - published,
            "callback_wait_s": info["taken"] - info["received_timestamp"] * 1e-9,
        }
        return at - sent, msg, legs

    def first_answer(
        self, node: subprocess.Popen, timeout: float
    ) -> tuple[float, Any, dict[str, float]] | None:
        """The first successful answer once the node is up: wait for discovery (a command sent
        before it is lost), then one command at a time with the whole timeout, again only after
        a failure answer (no camera frame yet).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and node.poll() is None:
            if self.command_pub.get_subscription_count() > 0 and self.node.count_publishers(
                output_topic("result", NAMESPACE)
            ):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # the node's result writer matches our reader too
        attempt = 0
        while time.monotonic() < deadline and node.poll() is None:
            attempt += 1
            answer = self.command(f"the cup {attempt}", deadline - time.monotonic())
            if answer is None or answer[1].success:
                return answer
            log(f"warm-up answer: {answer[1].error}")
            time.sleep(1.0)
        return None

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


def _node_command(params: dict[str, Any]) -> list[str]:
    cmd = [sys.executable, "-m", "iterprime_ros.ros.entry", "--ros-args"]
    cmd += ["-r", f"__ns:=/{NAMESPACE}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


def _timed_commands(
    driver: Driver, rate_hz: float, prefetch: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The timed commands of one case, one at a time, `--gap` s after each answer: the figures."""
    latencies, at_node, prepared, ages, failed = [], [], 0, [], 0
    to_node, to_client = [], []
    for k in range(args.commands):
        answer = driver.command(f"the cup on the left {k}", args.command_timeout)
        if answer is None or not answer[1].success:
            failed += 1
            continue
        latencies.append(answer[0])
        at_node.append(float(answer[1].latency_s))  # arrival at the node to its answer
        prepared += int(answer[1].prefetched)
        ages.append(float(getattr(answer[1], "frame_age_s", float("nan"))))
        to_node.append(answer[2]["to_node_s"])
        to_client.append(answer[2]["to_client_s"])
        log(
            f"{rate_hz:g} Hz prefetch {prefetch}: command {k + 1}/{args.commands} "
            f"{answer[0]:.2f} s (to node {answer[2]['to_node_s']:.3f} s, at node "
            f"{answer[1].latency_s:.2f} s, to client {answer[2]['to_client_s']:.3f} s, "
            f"callback wait {answer[2]['callback_wait_s']:.3f} s) "
            f"prefetched={answer[1].prefetched}"
        )
        time.sleep(args.gap)
    return dict(
        p50_s=_percentile(latencies, 50),
        p95_s=_percentile(latencies, 95),
        node_p50_s=_percentile(at_node, 50),
        to_node_p50_s=_percentile(to_node, 50),
        to_client_p50_s=_percentile(to_client, 50),
        prepared_share=prepared / max(1, len(latencies)),
        age_p50_s=_percentile(ages, 50),
        failed=failed,
    )


def run_case(
    rate_hz: float, prefetch: str, params: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """One node process at one camera rate with one prefetch setting: its figures."""
    from rclpy.serialization import serialize_message

    camera = Camera(args.size, args.scene_period)
    driver = Driver(rate_hz, camera, args.image_qos)
    full = {**params, "prefetch": prefetch, "image_qos": args.image_qos}
    node_log = tempfile.NamedTemporaryFile(
        "w+", prefix=f"stream_bench_{rate_hz:g}hz_{prefetch}_", suffix=".log", delete=False
    )
    node = subprocess.Popen(_node_command(full), stdout=node_log, stderr=subprocess.STDOUT)
    log(f"{rate_hz:g} Hz prefetch {prefetch}: node log {node_log.name}")
    row: dict[str, Any] = {"rate_hz": rate_hz, "prefetch": prefetch}
    try:
        warm = driver.first_answer(node, args.start_timeout)
        if warm is None:
            node_log.seek(0)
            tail = node_log.read()[-2000:]
            raise RuntimeError(f"the node did not answer (exit {node.poll()}):\n{tail}")
        row["first_s"] = warm[0]
        row["result_bytes"] = len(serialize_message(warm[1]))
        log(f"a result sample is {row['result_bytes'] / 1e3:.0f} kB serialized")
        time.sleep(args.settle)  # the prefetcher may prepare the current frame meanwhile
        cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
        time.sleep(args.idle)
        row["idle_cpu_cores"] = (cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)
        drops0 = socket_drops(node.pid), socket_drops(os.getpid())
        row.update(_timed_commands(driver, rate_hz, prefetch, args))
        row["node_drops"] = drops_between(drops0[0], socket_drops(node.pid))
        row["client_drops"] = drops_between(drops0[1], socket_drops(os.getpid()))
        row["frames_sent"] = camera.count
        log(
            f"{rate_hz:g} Hz prefetch {prefetch}: datagrams dropped by the kernel per port: "
            f"node {row['node_drops'] or 'none'}, bench {row['client_drops'] or 'none'}"
        )
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        driver.close()
    return row


def format_table(rows: list[dict[str, Any]], conditions: str) -> str:
    """Every case side by side. "to node" and "to client" are the p50 of the two DDS legs
    (command publish to its arrival at the node; result publish to its reception here), and
    "dropped" the datagrams the kernel dropped at the node's / the bench's UDP sockets while
    the timed commands ran: a sample lost there and repaired late shows in its leg.
    """
    nan = float("nan")
    head = (
        f"{'camera':>7} {'prefetch':>8} {'first':>7} {'p50':>7} {'p95':>7} {'node p50':>8} "
        f"{'to node':>8} {'to client':>9} {'prepared':>9} {'age p50':>8} {'idle CPU':>9} "
        f"{'dropped':>9} {'failed':>6}"
    )
    lines = [f"iterprime node stream bench -- {conditions}", head]
    for r in rows:
        dropped = (
            f"{sum(r.get('node_drops', {}).values())}/{sum(r.get('client_drops', {}).values())}"
        )
        lines.append(
            f"{r['rate_hz']:>5g}Hz {r['prefetch']:>8} {r['first_s']:>6.2f}s {r['p50_s']:>6.2f}s "
            f"{r['p95_s']:>6.2f}s {r.get('node_p50_s', nan):>7.2f}s "
            f"{r.get('to_node_p50_s', nan):>7.3f}s {r.get('to_client_p50_s', nan):>8.3f}s "
            f"{100 * r['prepared_share']:>8.0f}% {r['age_p50_s']:>7.2f}s "
            f"{r['idle_cpu_cores']:>6.2f} c. {dropped:>9} {r['failed']:>6}"
        )
    return "\n".join(lines)


def _models(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.model_dir or tempfile.mkdtemp(prefix="iterprime_stream_bench_"))
    vlp, _ = build_once(root, f"vlp_{args.vlp}", lambda f: build_vlp(f, args.vlp))
    props, _ = build_once(
        root, f"prop_{args.proposals}", lambda f: build_proposals(f, args.proposals)
    )
    return {
        "vlp_model": str(vlp),
        "proposal_model": str(props),
        "device": "cpu",
        "proposal_shortest_edge": args.shortest_edge,
        "proposal_longest_edge": max(args.shortest_edge, 2 * args.shortest_edge),
        "empty_selection": "best_heat",
        "max_components": 10000,  # random weights: always select something
        "stop_rule": "none",
        "publish_debug_image": False,
        "track": False,
        "queue_size": 5,
    }


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rates", type=float, nargs="+", default=[2.0, 15.0], help="camera Hz")
    p.add_argument("--prefetch", nargs="+", default=["off", "latest"])
    p.add_argument("--commands", type=int, default=6, help="timed commands per case")
    p.add_argument("--gap", type=float, default=4.0, help="s between an answer and the next")
    p.add_argument("--idle", type=float, default=8.0, help="s of idle CPU measurement")
    p.add_argument("--settle", type=float, default=4.0, help="s after the first command")
    p.add_argument(
        "--size", type=lambda s: tuple(int(x) for x in s.split("x")), default=(640, 480)
    )
    p.add_argument("--scene-period", type=float, default=0.0, help="swap views every S s")
    p.add_argument("--image-qos", default="best_effort", choices=("best_effort", "reliable"))
    p.add_argument("--vlp", default="tiny", choices=sorted(VLP_ARCHS))
    p.add_argument("--proposals", default="swin-t", choices=list(PROPOSAL_ARCHS))
    p.add_argument("--shortest-edge", type=int, default=192, help="proposal input size")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the node")
    p.add_argument("--model-dir", help="build the random models here once (reused)")
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--command-timeout", type=float, default=120.0)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if "ITERPRIME_TEST_DOMAIN" in os.environ:
        os.environ.setdefault("ROS_DOMAIN_ID", os.environ["ITERPRIME_TEST_DOMAIN"])
    params = _models(args)
    import rclpy

    rclpy.init()
    rows = []
    try:
        for rate in args.rates:
            for prefetch in args.prefetch:
                rows.append(run_case(rate, prefetch, params, args))
    finally:
        rclpy.shutdown()
    load = os.getloadavg()[0]
    conditions = (
        f"{args.vlp} BLIP + {args.proposals} Mask2Former (random weights), "
        f"{args.size[0]}x{args.size[1]}, proposals at {args.shortest_edge} px, "
        f"{args.threads} threads, image QoS {args.image_qos}, {args.commands} commands "
        f"{args.gap:g} s apart, CPU {cpu_description()}, load {load:.1f}"
    )
    print(format_table(rows, conditions))
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Register `iterprime bench-stream` (cli.py calls this)."""
    p = subparsers.add_parser(
        "bench-stream",
        help="the node over DDS with a streaming camera: command latency with prefetch on/off",
        description=__doc__.split("\n\n")[0],
    )
    _arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
