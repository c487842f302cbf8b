"""How many camera frames of a size reach a subscriber on the same host, per QoS.

Why: a raw 1920x1080 rgb8 frame is 6.2 MB, a 4000x3000 one 36 MB. DDS cuts such a sample into
fragments; with a best-effort subscription one lost fragment loses the frame, and a reliable
subscription does not match a camera driver's best-effort (sensor-data) publisher at all. This
measures, with two processes as a driver and the node would be: frames published, frames
received, the longest gap between received frames, and the time the receiving callback took.

    python -m iterprime_ros.tools.bench.qos_delivery --sizes 640x480 1920x1080 4000x3000

Each case: a publisher process (sensor-data QoS, or reliable with ``--publisher reliable``) at
``--rate`` Hz for ``--seconds`` s, and a subscriber process with the node's image subscription
(``image_qos`` best_effort or reliable, iterprime_ros.ros.camera's profile).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .machine import cpu_description

TOPIC = "/qos_delivery/image"


def _size(text: str) -> tuple[int, int]:
    w, h = (int(x) for x in text.lower().split("x"))
    return w, h


def publish(size: tuple[int, int], rate: float, seconds: float, reliable: bool) -> None:
    """The camera driver: publish frames of `size` at `rate` Hz (sensor-data QoS by default)."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ...ros.conversions import rgb_to_fields
    from ...ros.messages import image_message

    rclpy.init()
    node = rclpy.create_node("qos_delivery_camera")
    qos = qos_profile_sensor_data
    if reliable:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, TOPIC, qos)
    w, h = size
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    msg = image_message(rgb_to_fields(rgb))
    msg.header.frame_id = "camera"
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # discovery (a reliable subscriber never matches a best-effort writer)
    time.sleep(1.0)
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        sent += 1
        next_at = start + sent / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(json.dumps({"sent": sent}), flush=True)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def subscribe(image_qos: str, seconds: float, profile: bool) -> None:
    """The node's side: its DDS profile and image subscription; counts, gaps, callback times."""
    from ...ros import dds_profile

    if profile:
        dds_profile.apply()
    else:
        os.environ[dds_profile.SWITCH] = "off"
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    from ...ros.image_qos import image_qos_profile

    rclpy.init()
    node = rclpy.create_node("qos_delivery_node")
    times: list[float] = []
    spent: list[float] = []

    def on_image(msg: Image) -> None:
        t0 = time.monotonic()
        times.append(t0)
        spent.append(time.monotonic() - t0)

    node.create_subscription(Image, TOPIC, on_image, image_qos_profile(image_qos))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    try:  # until the run stops it (SIGINT) once the publisher is done
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # rclpy's own SIGINT handler may end the context first: either way, report
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(
        json.dumps(
            {
                "received": len(times),
                "max_gap_s": max(gaps) if gaps else None,
                "callback_ms_max": 1000 * max(spent) if spent else None,
            }
        ),
        flush=True,
    )
    node.destroy_node()
    rclpy.try_shutdown()


def run_case(size: tuple[int, int], image_qos: str, args: argparse.Namespace) -> dict[str, Any]:
    me = [sys.executable, "-m", "iterprime_ros.tools.bench.qos_delivery"]
    env = dict(os.environ)
    if args.sub_env:
        env.update(dict(kv.split("=", 1) for kv in args.sub_env))
    sub = subprocess.Popen(
        [*me, "--role", "sub", "--image-qos", image_qos, "--seconds", str(args.seconds + 300)]
        + ["--node-profile", args.node_profile],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert sub.stdout is not None and sub.stdout.readline().strip() == "ready"
    pub_cmd = [*me, "--role", "pub", "--sizes", f"{size[0]}x{size[1]}"]
    pub_cmd += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
    if args.publisher == "reliable":
        pub_cmd += ["--publisher", "reliable"]
    pub = subprocess.run(pub_cmd, capture_output=True, text=True, timeout=args.seconds + 120)
    sub.send_signal(signal.SIGINT)
    out, _ = sub.communicate(timeout=60)
    sent = json.loads(pub.stdout.strip().splitlines()[-1])["sent"]
    got = json.loads(out.strip().splitlines()[-1])
    return {
        "size": f"{size[0]}x{size[1]}",
        "image_qos": image_qos,
        "sent": sent,
        **got,
        "delivered": got["received"] / max(1, sent),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=("run", "pub", "sub"), default="run")
    p.add_argument("--sizes", nargs="+", default=["640x480", "1920x1080", "4000x3000"])
    p.add_argument("--image-qos", nargs="+", default=["best_effort", "reliable"])
    p.add_argument("--publisher", choices=("sensor_data", "reliable"), default="sensor_data")
    p.add_argument("--rate", type=float, default=15.0)
    p.add_argument(
        "--node-profile",
        choices=("on", "off"),
        default="on",
        help="the node's DDS profile (ros/dds_profile.py) on the subscriber, or the defaults",
    )
    p.add_argument("--sub-env", nargs="*", default=[], help="NAME=VALUE for the subscriber only")
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    if "ITERPRIME_TEST_DOMAIN" in os.environ:
        os.environ.setdefault("ROS_DOMAIN_ID", os.environ["ITERPRIME_TEST_DOMAIN"])
    if args.role == "pub":
        publish(_size(args.sizes[0]), args.rate, args.seconds, args.publisher == "reliable")
        return 0
    if args.role == "sub":
        subscribe(args.image_qos[0], args.seconds, args.node_profile == "on")
        return 0
    print(
        f"node DDS profile {args.node_profile}, publisher {args.publisher}, {args.rate:g} Hz, "
        f"{args.seconds:g} s, load {os.getloadavg()[0]:.1f}, CPU {cpu_description()}"
    )
    print(
        f"{'size':>10} {'image_qos':>12} {'sent':>5} {'received':>8} {'delivered':>9} "
        f"{'max gap':>8} {'callback':>9}"
    )
    for size in args.sizes:
        for qos in args.image_qos:
            r = run_case(_size(size), qos, args)
            gap = "-" if r["max_gap_s"] is None else f"{r['max_gap_s']:.2f}s"
            cb = "-" if r["callback_ms_max"] is None else f"{r['callback_ms_max']:.2f}ms"
            print(
                f"{r['size']:>10} {qos:>12} {r['sent']:>5} {r['received']:>8} "
                f"{100 * r['delivered']:>8.0f}% {gap:>8} {cb:>9}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
