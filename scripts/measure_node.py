#!/usr/bin/env python3
"""Figures for the node as a robot component (docs/robustness.md "The node never blocks").

1. commands sent during a long ~/segment service request (a W x H explicit image): when the node
   took each one (its "command N" log line, system clock) and when its answer came, and the longest
   gap between camera frames the node received while the request ran (a separate camera process
   publishes 640 x 480 at 10 Hz);
2. a burst of N commands (keep-all publisher) -> results counted;
3. the node's peak resident memory (VmHWM) before and after the big request.

Tiny random-weight models on the CPU (plumbing and memory, not quality):

    PYTHONPATH=$PWD ITERPRIME_TEST_DOMAIN=14 python scripts/measure_node.py --size 4000x3000
    PYTHONPATH=$PWD ITERPRIME_TEST_DOMAIN=14 python scripts/measure_node.py --size 8000x8000 \
        --burst 1000
    ... --max-image-pixels 0      (no size limit: what the limit saves)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

import ros_helpers  # noqa: E402,F401  (ROS_DOMAIN_ID before rclpy)
from node_harness import Harness, NodeProcess, tiny_params  # noqa: E402

CAMERA = r"""
import sys, time, numpy as np, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from iterprime_ros.ros.conversions import rgb_to_fields
from iterprime_ros.ros.messages import image_message
rclpy.init()
node = rclpy.create_node("measure_camera")
pub = node.create_publisher(Image, sys.argv[1], qos_profile_sensor_data)
rng = np.random.default_rng(1)
msg = image_message(rgb_to_fields(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)))
msg.header.frame_id = "camera"
def tick():
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
node.create_timer(0.1, tick)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def vm(pid: int, key: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4000x3000", help="W x H of the service request's image")
    ap.add_argument("--burst", type=int, default=0, help="commands in a burst (0: none)")
    ap.add_argument("--max-image-pixels", type=int, default=None)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import numpy as np
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from iterprime_ros.msg import Segmentation
    from iterprime_ros.ros.conversions import rgb_to_fields
    from iterprime_ros.ros.messages import image_message
    from iterprime_ros.srv import Segment
    from iterprime_ros.tools.tiny_models import build_tiny_blip, build_tiny_mask2former

    tmp = Path(tempfile.mkdtemp(prefix="measure_node_"))

    class Dirs:
        blip = build_tiny_blip(tmp / "blip", seed=0)
        mask2former = build_tiny_mask2former(tmp / "m2f", seed=0)

    extra = {"queue_size": 1000, "max_image_age_s": 30.0, "diagnostics_period_s": 0.5}
    if args.max_image_pixels is not None:
        extra["max_image_pixels"] = args.max_image_pixels
    node = NodeProcess("measure", tiny_params(Dirs, **extra), tmp)
    camera = subprocess.Popen(
        [sys.executable, "-c", CAMERA, node.topics["image"]], env=ros_helpers.ros_env()
    )
    keep_all = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    h = Harness(rclpy, node, "measure_client")
    results: list[Segmentation] = []
    h.node.create_subscription(Segmentation, f"{node.out}/result", results.append, keep_all)
    pub = h.node.create_publisher(String, node.topics["command"], keep_all)
    from diagnostic_msgs.msg import DiagnosticArray

    gaps: list[tuple[float, float]] = []  # (receive time, longest image gap in that status)

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith(node.out + ":"):
                v = {kv.key: kv.value for kv in st.values}
                gaps.append((time.time(), float(v["longest image gap since last status (s)"])))

    h.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    try:
        h.wait_ready()
        warm = h.command("the cup", timeout=300)
        print(f"warm-up: {'success' if warm.success else warm.error}")
        t_idle = time.time()
        h.spin(5.0)  # idle window: the camera's own regularity on this machine
        hwm_before, rss_before = vm(node.pid, "VmHWM"), vm(node.pid, "VmRSS")
        rng = np.random.default_rng(2)
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        big = np.ascontiguousarray(small.repeat(16, 0).repeat(16, 1)[:height, :width])
        request = Segment.Request(text="the red cup in the big image")
        request.image = image_message(rgb_to_fields(big))
        del big, small
        t_call = time.time()
        future = h.client.call_async(request)
        sent: dict[str, float] = {}
        texts = ["", "the cup during the request", "", "the bowl during the request"]
        i = 0
        while not future.done():
            h.spin(0.5)
            if i < len(texts) * 3:
                base = texts[i % len(texts)]
                text = f"{base} {i}" if base else " " * (i + 1)  # empty: fails at once
                pub.publish(String(data=text))
                sent[text] = time.time()
                i += 1
        service_s = time.time() - t_call
        t_done = time.time()
        h.spin(1.0)
        res = future.result().result
        h.until(lambda: len(results) >= 1 + len(sent), 600)
        hwm_after, rss_after = vm(node.pid, "VmHWM"), vm(node.pid, "VmRSS")
        burst_got = None
        if args.burst:
            before = len(results)
            t0 = time.time()
            for k in range(args.burst):
                pub.publish(String(data=f"the red cup burst {k}"))
            h.until(lambda: len(results) - before >= args.burst, 1800)
            h.spin(2.0)
            burst_got = (len(results) - before, time.time() - t0)
    finally:
        h.close()
        rclpy.shutdown()
        camera.send_signal(2)
        camera.wait(10)
        log = node.stop()
    stamps = re.findall(r"\[(\d+\.\d+)\] \[measure\.iterprime_segmenter\]: command (\d+): ", log)
    taken: dict[int, float] = {}
    for t, cid in stamps:  # the first line of a command is its arrival
        taken.setdefault(int(cid), float(t))
    print(
        f"\nservice request {width}x{height}: {service_s:.2f} s, "
        f"{'success' if res.success else 'failure: ' + res.error}, mask {res.mask.width}x"
        f"{res.mask.height}"
    )
    by_text = {r.command: r for r in results}
    for text, t in sent.items():
        r = by_text.get(text)
        if r is None:
            print(f"  command {text!r}: no result")
            continue
        took = (taken.get(r.command_id, float("nan")) - t) * 1e3
        outcome = "success" if r.success else "failure"
        print(
            f"  command {r.command_id} {text.strip() or '(empty)'!r}: taken by the node "
            f"{took:.0f} ms after sending, answered {r.latency_s:.3f} s after arrival ({outcome})"
        )
    idle = [g for t, g in gaps if t_idle + 0.6 < t <= t_call]
    busy = [g for t, g in gaps if t_call < t <= t_done + 0.6]
    if idle and busy:
        print(
            f"  longest gap between camera images at the node (10 Hz camera): idle "
            f"{max(idle) * 1e3:.0f} ms, during the request {max(busy) * 1e3:.0f} ms"
        )
    print(f"  node stats: {node.stats()}")
    print(
        f"memory: VmHWM {hwm_before:.0f} MB before, {hwm_after:.0f} MB after the request "
        f"(VmRSS {rss_before:.0f} -> {rss_after:.0f} MB)"
    )
    if burst_got is not None:
        print(f"burst of {args.burst}: {burst_got[0]} results in {burst_got[1]:.1f} s")


if __name__ == "__main__":
    main()
