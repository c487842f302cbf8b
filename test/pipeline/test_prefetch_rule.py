"""The prefetch rule (iterprime_ros/prefetch.py): prepare only a frame worth it, at a bounded
share of idle time, and a command takes the prepared frame, or the one in flight, or the newest.

The rule's decisions are pure functions of times and thumbnails (checked directly); the
prefetcher runs the real tiny random-weight models (plumbing only: which stages run for which
frame, never how good the masks are).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prefetch_instruments import COMMAND, variant, wait_until

from iterprime_ros.prefetch import (
    FrameInfo,
    Prefetcher,
    PrefetchPolicy,
    PrefetchRule,
    scene_difference,
    thumbnail,
)

RULE = PrefetchRule(
    PrefetchPolicy("latest"), max_age_s=30.0, min_interval_s=1.0, scene_change=0.02, cpu_share=0.5
)


def _scene(k: int) -> np.ndarray:
    """Two clearly different scenes (k even / odd) of a 64x48 camera, with sensor noise."""
    rng = np.random.default_rng(k)
    base = np.zeros((48, 64, 3), np.uint8)
    if k % 2:
        base[:, :32] = 200
    else:
        base[24:, :] = 120
    noise = rng.integers(0, 6, base.shape, dtype=np.uint8)
    return base + noise


def _info(k: int, received: float) -> FrameInfo:
    return FrameInfo(f"frame{k}", received, thumbnail(_scene(k)))


def test_thumbnails_see_a_new_scene_not_sensor_noise():
    same = scene_difference(thumbnail(_scene(0)), thumbnail(_scene(2)))
    other = scene_difference(thumbnail(_scene(0)), thumbnail(_scene(1)))
    assert same is not None and other is not None
    assert same < RULE.scene_change <= other


def test_worth_preparing_new_scene_refresh_and_never_too_old():
    prepared = _info(0, 100.0)
    assert RULE.worth(_info(2, 101.0), None, 101.0)  # nothing prepared yet
    assert not RULE.worth(_info(2, 101.0), prepared, 101.0)  # same scene: keep it
    assert RULE.worth(_info(1, 101.0), prepared, 101.0)  # the scene changed
    assert RULE.worth(_info(2, 116.0), prepared, 116.0)  # half the command's age limit: refresh
    assert not RULE.worth(_info(1, 100.0), prepared, 131.0)  # older than any command takes
    every = PrefetchRule(PrefetchPolicy("latest"))  # a library user's loop: every frame
    assert every.worth(_info(2, 101.0), prepared, 101.0)


def test_a_command_takes_prepared_then_in_flight_then_newest():
    newest = _info(2, 110.0)
    prepared = _info(0, 100.0)
    assert RULE.choose(newest, prepared, None, 110.0).source == "prepared"
    choice = RULE.choose(newest, prepared, _info(4, 108.0), 110.0)
    assert choice.source == "prepared" and choice.frame == "frame0" and choice.age_s == 10.0
    moved = _info(1, 110.0)  # the scene changed since the prepared frame
    assert RULE.choose(moved, prepared, None, 110.0).source == "newest"
    assert RULE.choose(moved, prepared, _info(3, 109.0), 110.0).frame == "frame3"
    assert RULE.choose(newest, prepared, None, 131.0).source == "newest"  # too old
    assert RULE.choose(newest, _info(0, 100.0), None, 130.0).source == "prepared"  # age limit
    assert PrefetchRule(max_age_s=0.0).choose(newest, prepared, None, 110.0).source == "newest"


def test_the_cpu_share_and_interval_bound_the_next_start():
    assert RULE.pause_after(10.0, 3.0) == pytest.approx(16.0)  # 3 s work, 3 s rest at 0.5
    assert RULE.pause_after(10.0, 0.2) == pytest.approx(11.0)  # the interval
    quarter = PrefetchRule(cpu_share=0.25)
    assert quarter.pause_after(0.0, 2.0) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        PrefetchRule(cpu_share=0.0)


def test_a_still_scene_is_prepared_once(instrumented, sample_image):
    seg, _, log = instrumented
    rule = PrefetchRule(PrefetchPolicy("latest"), min_interval_s=0.0, scene_change=0.02)
    pf = Prefetcher(seg, rule).start()
    for k in range(1, 6):  # one scene, five frames: new stamps, one pixel of noise each
        pf.offer(variant(sample_image, k), frame_id=k)
        assert pf.wait_idle(60)
    assert pf.stats.prepared == 1 and pf.stats.skipped == 4, pf.stats
    assert [e for e in log if e[0] == "proposals"] == [("proposals", 37)]
    status = pf.status()
    assert status["state"] == "idle" and status["prepared_age_s"] >= 0
    pf.offer(255 - sample_image, frame_id="moved")  # the scene changed
    assert pf.wait_idle(60) and pf.stats.prepared == 2
    pf.stop(10)


def test_a_command_during_a_preparation_finishes_that_work(instrumented, sample_image):
    """The frame in flight is the command's frame: its proposals are computed once."""
    seg, props, log = instrumented
    pf = Prefetcher(seg, PrefetchRule(PrefetchPolicy("latest"), scene_change=0.02)).start()
    frame = variant(sample_image, 3)
    props.armed = True
    pf.offer(frame, frame_id="a")
    assert props.entered.wait(60)  # the prefetch proposal stage is in flight
    newest = variant(sample_image, 4)  # a newer frame of the same scene
    choice = pf.choose("b", received_s=pf.clock(), thumb=thumbnail(newest))
    assert choice.source == "in_flight" and choice.frame == "a"
    results = []

    def command():
        with pf.command():
            results.append(seg.segment(frame, COMMAND, frame_id="a"))

    worker = threading.Thread(target=command)
    worker.start()
    assert wait_until(lambda: seg._waiting > 0 or not worker.is_alive())
    props.release.set()
    worker.join(60)
    assert results and results[0].success
    assert [e for e in log if e[0] == "proposals"] == [("proposals", 111)]  # once, not again
    assert pf.wait_idle(60)
    pf.stop(10)
