"""Robustness, part 3: load. A 30 Hz 1280x720 rgb8 camera stream while 100 commands arrive in
10 bursts of 10 (real node in its own process, real DDS, tiny models, CPU).

Checked (behaviour, never speed): every command gets exactly one result, in command-id order,
and all succeed (queue_size 100 holds every burst: nothing is dropped); the node's resident
memory grows by less than RSS_GROWTH_MB;
the image callback never waits for model work (the node's own figure, logged at shutdown: the
longest time spent in it). How many frames reach the node is reported, not asserted: on a loaded
2-core machine best-effort DDS loses many 2.8 MB frames whether or not the node is working.
A second node with queue_size 2 gets a burst of 20 under the same stream: the queue must
overflow (checked), and every command still gets exactly one answer.
Reported, with -s and in robustness_load.json under pytest's temp
folder: commands sent, results received, RSS at start/end/peak, latency percentiles, images
published and received, the longest gap between two received images.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from node_harness import Harness, NodeProcess, connected, percentiles

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from iterprime_ros.ros.conversions import rgb_to_fields  # noqa: E402

# serial: the figures of a node under load mean something only with no parallel worker beside it
pytestmark = [pytest.mark.slow, pytest.mark.serial]

H, W = 720, 1280
RATE_HZ = 30.0
BURSTS = int(os.environ.get("ITERPRIME_LOAD_BURSTS", "10"))  # more for a soak run
PER_BURST, BURST_GAP_S = 10, 1.0
RSS_GROWTH_MB = 300.0
CALLBACK_MAX_MS = 50.0
LOAD_TIMEOUT = 180.0
ALL_RESULTS_TIMEOUT = 240.0


def frame() -> Image:
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, size=(H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    img[200:500, 300:700] = (220, 30, 30)
    msg = Image(**rgb_to_fields(img))
    msg.header.frame_id = "camera_color_optical_frame"
    return msg


@pytest.fixture(scope="module")
def node(start_node):
    # max_image_age_s 10: best-effort 2.8 MB frames are often lost in transport on a loaded machine
    # (docs/robustness.md), and a stale-image failure would say nothing about the node under load.
    proc = start_node("rob_load", dict(queue_size=100, max_image_age_s=10.0))
    yield proc
    proc.stop()


def _stream_and_warm_up(h: Harness, node: NodeProcess, retry_on: str) -> int:
    """Stream frame() restamped at RATE_HZ and send "the cup" until it succeeds (the first loads
    the models); returns how many warm-up commands were sent. Raw 2.8 MB best-effort frames can
    all be lost for a while on a loaded machine (docs/robustness.md), so the node may not have a
    frame yet: an answer whose error says `retry_on` is retried until LOAD_TIMEOUT.
    """
    h.wait_ready()
    h.restamp = True
    h.show(frame(), settle=1.0)
    warmups, deadline = 0, time.monotonic() + LOAD_TIMEOUT
    while True:
        warm = h.command("the cup", timeout=LOAD_TIMEOUT)
        warmups += 1
        if warm.success or retry_on not in warm.error or time.monotonic() > deadline:
            break
        h.spin(1.0)
    assert warm.success, warm.error + "\n" + node.log
    return warmups


def test_stream_and_bursts(node, tmp_path_factory):
    with connected(rclpy, node, "robustness_load_test", rate_hz=RATE_HZ) as h:
        warmups = _stream_and_warm_up(h, node, retry_on="no image received")
        h.spin(1.0)
        rss = [node.rss_mb()]  # start, then after each burst's gap, then the end
        published_before = h.published
        t_start = time.monotonic()

        texts = [
            f"the red cup number {b * PER_BURST + i}"
            for b in range(BURSTS)
            for i in range(PER_BURST)
        ]
        before = len(h.results)
        for b in range(BURSTS):
            for text in texts[b * PER_BURST : (b + 1) * PER_BURST]:
                h.send(text)
            h.spin(BURST_GAP_S)
            rss.append(node.rss_mb())
        h.until(lambda: len(h.results) - before >= len(texts), ALL_RESULTS_TIMEOUT)
        wall = time.monotonic() - t_start
        h.spin(1.0)  # anything extra would arrive now
        rss.append(node.rss_mb())
        published = h.published - published_before
        published_total = h.published
        h.image = None
        results = h.results[before:]
    log = node.stop()
    stats = node.stats()

    latencies = [r.latency_s for r in results]
    ids = [r.command_id for r in results]
    report = {
        "stream": f"{W}x{H} rgb8 at {RATE_HZ:g} Hz ({W * H * 3 / 1e6:.1f} MB per frame)",
        "commands_sent": len(texts),
        "results_received": len(results),
        "succeeded": sum(r.success for r in results),
        "failed": sum(not r.success for r in results),
        "failures": sorted({r.error for r in results if not r.success}),
        "wall_s": round(wall, 1),
        "rss_mb": {
            "start": round(rss[0], 1),
            "end": round(rss[-1], 1),
            "peak": round(max(rss), 1),
            "growth": round(rss[-1] - rss[0], 1),
            "growth_second_half": round(rss[-1] - rss[BURSTS // 2], 1),
            "after_each_burst": [round(v) for v in rss[1:-1]],
        },
        "latency_s": {k: round(v, 3) for k, v in percentiles(latencies).items()},
        "images_published_during_commands": published,
        "images_published_total": published_total,
        "images_received_by_node_total": int(stats["images_received"]),
        "image_callback_max_ms": stats["image_callback_max_ms"],
        "longest_gap_between_images_ms": stats["max_image_gap_ms"],
        "node_stats": {
            k: stats[k] for k in ("commands_received", "answered", "succeeded", "failed")
        },
    }
    out = tmp_path_factory.getbasetemp() / "robustness_load.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\n=== load ({out}) ===")
    for k, v in report.items():
        print(f"  {k:<36} {v}")

    assert sorted(r.command for r in results) == sorted(texts), "exactly one result per command"
    assert [r.command for r in results] == texts, "results in the order the commands were sent"
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "command ids increase"
    assert all(r.success for r in results), report["failures"]
    assert stats["answered"] == stats["commands_received"] == len(texts) + warmups
    assert report["rss_mb"]["growth"] < RSS_GROWTH_MB, report["rss_mb"]
    assert stats["image_callback_max_ms"] < CALLBACK_MAX_MS, (
        "the image callback must never wait for model work"
    )
    assert stats["images_received"] > 0
    assert "Traceback" not in log


OVERFLOW_QUEUE, OVERFLOW_BURST = 2, 20


@pytest.fixture(scope="module")
def small_queue_node(start_node):
    proc = start_node("rob_overflow", dict(queue_size=OVERFLOW_QUEUE, max_image_age_s=10.0))
    yield proc
    proc.stop()


def test_overflow_under_load_answers_every_command_once(small_queue_node):
    """The same 30 Hz stream, and a burst of 20 commands into a queue of 2: the queue must
    overflow (the test checks it did), and still every command gets exactly one answer -- the
    pushed-out ones a 'queue full' failure, the newest ones a result.
    """
    node = small_queue_node
    with connected(rclpy, node, "robustness_overflow_test", rate_hz=RATE_HZ) as h:
        _stream_and_warm_up(h, node, retry_on="no image")
        texts = [f"the red cup number {i}" for i in range(OVERFLOW_BURST)]
        before = len(h.results)
        for text in texts:
            h.send(text)
        h.until(lambda: len(h.results) - before >= len(texts), ALL_RESULTS_TIMEOUT)
        h.spin(1.0)  # anything extra would arrive now
        results = h.results[before:]
        h.image = None
    log = node.stop()
    stats = node.stats()
    assert sorted(r.command for r in results) == sorted(texts), "exactly one answer per command"
    dropped = [r for r in results if not r.success]
    assert dropped, "the burst must overflow the queue, else this test checks nothing"
    assert all("queue full" in r.error for r in dropped), {r.error for r in dropped}
    # How many the worker takes while the burst arrives depends on the machine's load (a fixed
    # bound failed once in a clean-clone run: 14 dropped where 15 were assumed); what does not:
    # the queue keeps the newest, so only commands with a full queue behind them are dropped.
    by_text = {r.command: r for r in results}
    assert all(by_text[t].success for t in texts[-OVERFLOW_QUEUE:]), "the newest are kept"
    last_dropped = max(texts.index(r.command) for r in dropped)
    assert last_dropped <= len(texts) - 1 - OVERFLOW_QUEUE, "a command dropped with no newer ones"
    assert stats["answered"] == stats["commands_received"]
    assert "Traceback" not in log
