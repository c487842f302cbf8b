"""The rule that turns the node's state into a diagnostic level (ros/diagnostics.py)."""

from __future__ import annotations

from dataclasses import replace

from iterprime_ros.ros.diagnostics import ERROR, OK, STALE, WARN, Latencies, Snapshot, assess

GOOD = Snapshot(
    state="active",
    enabled=True,
    models_ready=True,
    unavailable=None,
    device="cpu",
    queue_depth=0,
    queue_size=5,
    running=False,
    images_received=100,
    image_rate_hz=30.0,
    image_age_s=0.03,
    max_image_age_s=2.0,
    latencies_s=(0.1, 0.2, 0.3, 0.4, 1.0),
    succeeded=4,
    failed=1,
    received=5,
)


def test_levels_a_monitor_can_act_on():
    assert assess(GOOD).level == OK
    cases = [
        (dict(unavailable="models not loaded: x"), ERROR, "models not loaded"),
        (dict(state="finalized"), ERROR, "shut down"),
        (dict(state="inactive"), WARN, "inactive"),
        (dict(state="unconfigured", models_ready=False), WARN, "unconfigured"),
        (dict(enabled=False), WARN, "disabled"),
        (dict(image_age_s=None), STALE, "no camera image received yet"),
        (dict(image_age_s=2.5), STALE, "no camera image for 2.5 s"),
        (dict(queue_depth=4), WARN, "queue nearly full (4 of 5)"),
    ]
    for change, level, words in cases:
        status = assess(replace(GOOD, **change))
        assert status.level == level and words in status.message, (change, status)


def test_every_figure_is_reported():
    values = assess(replace(GOOD, gpu_memory_mb=812.0)).values
    assert values["command latency p50 (s)"] == "0.300"
    assert values["command latency p95 (s)"] == "0.880"
    assert values["answered succeeded"] == "4" and values["answered failed"] == "1"
    assert values["image rate (Hz)"] == "30.0" and values["image age (s)"] == "0.03"
    assert values["queue depth"] == "0" and values["models"] == "loaded"
    assert values["GPU memory allocated (MB)"] == "812"
    assert "command latency p50 (s)" not in assess(replace(GOOD, latencies_s=())).values


def test_latencies_keep_the_most_recent():
    lat = Latencies(size=3)
    for v in (1.0, 2.0, 3.0, 4.0):
        lat.add(v)
    assert lat.values() == (2.0, 3.0, 4.0)
