"""Robustness, part 2: faults. The node keeps answering every command through them.

- Models missing or corrupt at start (a folder that does not exist, a Hub id not in the cache,
  a truncated safetensors file, a config.json that is not JSON): the node starts, logs why, and
  answers every command -- topic or service, with or without an image -- with a failure naming
  the model and the fix.
- CUDA out of memory (in the text pass, in the proposal network, or outside any pipeline stage),
  an exception inside a pass, and one past the pipeline's own handling: that command fails with
  the reason, the next one works. The faults are raised on CPU by test/helpers/fault_node.py, a
  test-only launcher that wraps the backends (the node itself has no way to inject a fault).
- The camera stopping and restarting.

Five node processes start at once for the module (the four broken ones never load a model).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_harness import Harness
from ros_helpers import EVENT_TIMEOUT_S

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from iterprime_ros.ros.conversions import rgb_to_fields  # noqa: E402

pytestmark = pytest.mark.slow

H, W = 48, 64
LOAD_TIMEOUT = 180.0
MAX_AGE = 2.0
TABLE: list[dict[str, Any]] = []


def image_msg(sec: int) -> Image:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    img[10:30, 12:40] = (220, 30, 30)
    msg = Image(**rgb_to_fields(img))
    msg.header.stamp.sec, msg.header.frame_id = sec, "camera_color_optical_frame"
    return msg


def record(kind: str, what: str, res: Any, next_res: Any = None) -> None:
    row = {"kind": kind, "fault": what, "success": bool(res.success), "error": res.error}
    if next_res is not None:
        row["next_command"] = "success" if next_res.success else f"failure: {next_res.error}"
    TABLE.append(row)


BROKEN = {
    # name: (how the models are broken, text the failure must contain)
    "missing": ("vlp_model is a folder that does not exist", "does not exist"),
    "hub": (
        "vlp_model is a Hub id not in the local cache",
        "iterprime download --vlp nobody-xyz/not-a-model",
    ),
    "truncated": (
        "proposal model.safetensors cut to half its size",
        "cannot load the proposal model",
    ),
    "garbage": ("VLP config.json is not JSON", "cannot load the VLP model"),
}


@pytest.fixture(scope="module")
def nodes(start_node, tiny_model_dirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("robustness_faults")
    truncated = Path(shutil.copytree(tiny_model_dirs.mask2former, folder / "m2f_truncated"))
    weights = truncated / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(os.path.getsize(weights) // 2)
    garbage = Path(shutil.copytree(tiny_model_dirs.blip, folder / "blip_garbage"))
    (garbage / "config.json").write_text('{"model_type": "blip", this is not json\n')
    params = {
        "missing": dict(vlp_model=str(folder / "no_such_model")),
        "hub": dict(vlp_model="nobody-xyz/not-a-model"),
        "truncated": dict(proposal_model=str(truncated)),
        "garbage": dict(vlp_model=str(garbage)),
    }
    procs = {
        "faults": start_node(
            "rob_faults", dict(max_image_age_s=MAX_AGE, queue_size=100), fault_node=True
        )
    }
    procs.update({name: start_node(f"rob_{name}", p) for name, p in params.items()})
    yield procs
    for p in procs.values():
        p.interrupt()
    for p in procs.values():
        p.stop()


@pytest.fixture(scope="module")
def harnesses(nodes, tmp_path_factory):
    rclpy.init()
    hs = {name: Harness(rclpy, proc, f"robustness_faults_{name}") for name, proc in nodes.items()}
    try:
        yield hs
        for h in hs.values():
            h.spin(0.2)
        sent, received = sum(h.sent for h in hs.values()), sum(len(h.results) for h in hs.values())
        out = tmp_path_factory.getbasetemp() / "robustness_faults.json"
        out.write_text(
            json.dumps(
                {"commands_sent": sent, "results_received": received, "cases": TABLE}, indent=1
            )
        )
        print(
            f"\n=== faults ({len(TABLE)} cases; {sent} commands sent, {received} results "
            f"received; {out}) ==="
        )
        for row in TABLE:
            nxt = f"; next command: {row['next_command'][:40]}" if "next_command" in row else ""
            outcome = "success" if row["success"] else f"failure: {row['error'][:150]}"
            print(f"  {row['kind']:<7} {row['fault'][:48]:<50} -> {outcome}{nxt}")
    finally:
        for h in hs.values():
            h.close()
        rclpy.shutdown()


@pytest.fixture(scope="module")
def faulty(harnesses, nodes):
    h = harnesses["faults"]
    h.wait_ready()
    assert "fault injector installed" in nodes["faults"].log or h.until(
        lambda: "fault injector installed" in nodes["faults"].log, 10.0
    )
    h.show(image_msg(1))
    warm = h.command("the cup", timeout=LOAD_TIMEOUT)
    assert warm.success, warm.error + "\n" + nodes["faults"].log
    return h


# ---------------------------------------------------------------- models broken at start
@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_models_at_start(harnesses, nodes, name):
    how, reason = BROKEN[name]
    h, proc = harnesses[name], nodes[name]
    h.wait_ready()
    assert h.until(lambda: "models not loaded" in proc.log, LOAD_TIMEOUT), proc.log
    error_line = next(line for line in proc.lines if "models not loaded" in line)
    assert "[ERROR]" in error_line and reason in error_line, error_line
    answers = [h.command("the red cup without an image")]
    h.show(image_msg(10), subscribed=False)  # models failed: the node never activated
    answers.append(h.command("the red cup with an image"))
    answers.append(h.call("the red cup by service"))
    answers.append(h.command(""))  # a bad command still gets its own, clearer answer
    for res in answers[:3]:
        assert (
            not res.success and res.error.startswith("models not loaded") and reason in res.error
        ), res.error
        assert res.latency_s < 1.0, "answered at once, not queued"
    assert not answers[3].success and "empty" in answers[3].error
    if name in ("truncated", "garbage"):
        assert "iterprime download" in answers[0].error, "the fix is named"
    record("models", how, answers[1])
    assert proc.proc.poll() is None, "the node keeps running"
    assert [r.command_id for r in h.results] == [1, 2, 3, 4]


# ---------------------------------------------------------------- faults during a command
FAULTS = [
    # (word in the command, what it does, expected error text)
    ("faultoompass", "CUDA out of memory in a text pass", "out of GPU memory during igrs"),
    (
        "faultoomproposals",
        "CUDA out of memory in the proposal network",
        "out of GPU memory during proposals",
    ),
    (
        "faultoomcrash",
        "CUDA out of memory outside any pipeline stage",
        "out of GPU memory: CUDA out of memory",
    ),
    (
        "faulterrorpass",
        "RuntimeError inside a text pass",
        "internal error: RuntimeError: text pass failed",
    ),
    (
        "faultcrash",
        "RuntimeError past the pipeline's own handling",
        "internal error: RuntimeError: segment crashed",
    ),
]


@pytest.mark.parametrize("word, what, expected", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_fails_that_command_and_the_next_works(faulty, word, what, expected):
    sec = 100 + len(TABLE)
    faulty.show(image_msg(sec), settle=0.3)  # a new frame: the proposals run again
    res = faulty.command(f"the red cup {word}")
    assert not res.success and expected in res.error, res.error
    assert "fault injected by test/helpers/fault_node.py" in res.error
    nxt = faulty.command(f"the red cup after fault {sec}")
    record("fault", what, res, nxt)
    assert nxt.success, nxt.error
    assert nxt.header.stamp.sec == sec


def test_faults_in_a_row(faulty, nodes):
    """Every fault three times over, interleaved with good commands: all answered, good ones work.

    (Not the proposal fault: one frame is used, so its proposals come from the frame cache.)
    """
    faulty.show(image_msg(200), settle=0.3)
    sent = []
    before = len(faulty.results)
    words = [w for w, _, _ in FAULTS if w != "faultoomproposals"]
    for round_ in range(3):
        for word in words:
            sent += [
                f"the red cup {word} round {round_}",
                f"the blue cup round {round_} after {len(sent)}",
            ]
    for text in sent:
        faulty.send(text)
    assert faulty.until(lambda: len(faulty.results) - before >= len(sent), 120.0), nodes[
        "faults"
    ].log[-3000:]
    faulty.spin(0.5)
    got = faulty.results[before:]
    assert [r.command for r in got] == sent, "one result per command, in order"
    assert all(not r.success for r in got[0::2]) and all(r.success for r in got[1::2])
    TABLE.append(
        {
            "kind": "fault",
            "fault": f"{len(words)} faults x 3, interleaved with good commands",
            "success": True,
            "error": "",
            "next_command": f"{len(got)} results for {len(sent)} commands",
        }
    )


def test_camera_stops_and_restarts(faulty):
    faulty.show(image_msg(300), settle=0.3)
    assert faulty.command("the red cup before the stop").success
    faulty.image = None  # the camera stops
    faulty.spin(MAX_AGE + 0.5)
    res = faulty.command("the red cup while stopped", timeout=EVENT_TIMEOUT_S)
    assert not res.success and f"no image newer than {MAX_AGE:g} s" in res.error, res.error
    assert res.latency_s < 1.0, "answered at once"
    faulty.show(image_msg(301), settle=0.3)  # ... and comes back
    nxt = faulty.command("the red cup after the restart")
    record("camera", f"stream stopped for {MAX_AGE + 0.5:g} s, then restarted", res, nxt)
    assert nxt.success and nxt.header.stamp.sec == 301


def test_fault_node_survived_everything(faulty, nodes):
    proc = nodes["faults"]
    assert proc.proc.poll() is None, proc.log
    ids = [r.command_id for r in faulty.results]
    assert ids == list(range(1, len(ids) + 1)), "every command answered once, in order"
    assert len(ids) == faulty.sent
    assert not re.search(r"answered twice", proc.log)
