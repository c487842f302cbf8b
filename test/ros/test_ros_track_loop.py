"""The node's tracking thread (ros/track_loop.py) without DDS: frames in, track results out.

Frames are the crafted moving squares of test_tracking.py handed over as numpy arrays (the
node hands over Image messages and a converter; here the converter is the identity).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Iterator

import numpy as np
from test_tracking import RED, background, frame, square_mask

from iterprime_ros.ros.track_loop import TrackFrame, TrackLoop
from iterprime_ros.tracking import TrackerSettings, TrackStatus, mask_iou

WAIT = 30.0  # seconds: an event that does not come fails the test; never a timing assertion


@contextlib.contextmanager
def tracking_loop(**kwargs) -> Iterator[tuple[TrackLoop, queue.Queue]]:
    """A TrackLoop whose results (result, frame, command) go to a queue, for the block; closed
    after it.
    """
    out: queue.Queue = queue.Queue()
    loop = TrackLoop(
        TrackerSettings(max_lost_s=0.1), lambda rgb: rgb, lambda r, f, c: out.put((r, f, c)),
        **kwargs,
    )  # fmt: skip
    try:
        yield loop, out
    finally:
        loop.close()


def test_each_offered_frame_gets_a_result_with_its_own_stamp():
    bg = background()
    with tracking_loop() as (loop, out):
        loop.start(TrackFrame(None, 1.0, frame(bg, (square_mask(30, 40), RED))),
                   square_mask(30, 40), 7, "cmd")  # fmt: skip
        for i in range(1, 6):
            truth = square_mask(30 + 3 * i, 40)
            loop.offer(frame(bg, (truth, RED)), 1.0 + i / 30)
            r, f, command = out.get(timeout=WAIT)  # one at a time: nothing is dropped
            assert r.status == TrackStatus.TRACKING and r.track_id == 7 and command == "cmd"
            assert f.stamp_s == 1.0 + i / 30 and mask_iou(r.mask, truth) > 0.8
        loop.offer(frame(bg, (square_mask(30, 40), RED)), 0.5)  # older than the command's frame
        assert loop.end("cancelled")
        r, f, _ = out.get(timeout=WAIT)
        assert r.status == TrackStatus.ENDED and r.reason == "cancelled" and f is None
        assert out.empty() and not loop.end("again")


def test_a_new_command_ends_the_running_track_first():
    bg = background()
    with tracking_loop() as (loop, out):
        img = frame(bg, (square_mask(30, 40), RED))
        loop.start(TrackFrame(None, 1.0, img), square_mask(30, 40), 1, "first")
        loop.start(TrackFrame(None, 2.0, img), square_mask(30, 40), 2, "second")
        r, _, command = out.get(timeout=WAIT)
        assert (r.track_id, r.status, r.reason) == (1, TrackStatus.ENDED, "replaced by command 2")
        assert loop.active and loop.tracker.track_id == 2


def test_leaving_the_image_ends_the_track_and_stops_taking_frames():
    bg = background()
    with tracking_loop() as (loop, out):
        loop.start(TrackFrame(None, 0.0, frame(bg, (square_mask(100, 50), RED))),
                   square_mask(100, 50), 3, None)  # fmt: skip
        statuses = []
        for i in range(1, 40):
            loop.offer(frame(bg, (square_mask(100 + 5 * i, 50), RED)), i / 30)
            r, _, _ = out.get(timeout=WAIT)
            statuses.append(r.status)
            if r.status == TrackStatus.ENDED:
                break
        assert TrackStatus.LOST in statuses and statuses[-1] == TrackStatus.ENDED
        assert "left the image" in r.reason and not loop.active
        loop.offer(bg, 5.0)  # no track: ignored
        assert out.empty()


def test_slow_consumer_gets_the_newest_frame_not_a_backlog():
    bg = background()
    gate = threading.Event()
    out: queue.Queue = queue.Queue()

    def publish(r, f, c):
        out.put((r, f))
        gate.wait(WAIT)  # hold the loop until every frame has been offered

    loop = TrackLoop(TrackerSettings(), lambda rgb: rgb, publish)
    try:
        img = frame(bg, (square_mask(30, 40), RED))
        loop.start(TrackFrame(None, 0.0, img), square_mask(30, 40), 1, None)
        loop.offer(img, 0.1)
        first, f1 = out.get(timeout=WAIT)  # the loop is now inside publish for frame 0.1
        for k in range(2, 10):
            loop.offer(img, k / 10)
        gate.set()
        second, f2 = out.get(timeout=WAIT)
        assert f1.stamp_s == 0.1 and f2.stamp_s == 0.9  # the frames between were dropped
        assert loop.stats["dropped"] == 7
    finally:
        gate.set()
        loop.close()


def test_proposals_are_asked_for_at_most_every_period():
    bg = background()
    calls = []

    def proposals(rgb):
        calls.append(rgb.shape)
        return np.stack([square_mask(30, 40)])

    with tracking_loop(proposals=proposals, proposals_period_s=3600.0) as (loop, out):
        img = frame(bg, (square_mask(30, 40), RED))
        loop.start(TrackFrame(None, 0.0, img), square_mask(30, 40), 1, None)
        for k in range(1, 4):
            loop.offer(img, k / 30)
            out.get(timeout=WAIT)
        assert calls == []  # the period (an hour) has not passed
    with tracking_loop(proposals=proposals, proposals_period_s=1e-6) as (loop, out):
        loop.start(TrackFrame(None, 0.0, img), square_mask(30, 40), 1, None)
        loop.offer(img, 1 / 30)
        r, _, _ = out.get(timeout=WAIT)
        assert calls and r.source == "proposal"


def test_a_camera_that_stops_ends_the_track_and_a_live_one_does_not():
    """The loop's clock is the test's: the camera counts as stopped only when the test says
    time has passed without a frame (no sleeps, no timing on a loaded machine).
    """
    bg = background()
    now = [100.0]
    with tracking_loop(camera_timeout_s=0.5, clock=lambda: now[0]) as (loop, out):
        loop.start(TrackFrame(None, 1.0, frame(bg, (square_mask(30, 40), RED))),
                   square_mask(30, 40), 4, "cmd")  # fmt: skip
        for i in range(1, 4):  # 1.2 s in all, a frame every 0.4 s: alive
            now[0] += 0.4
            loop.offer(frame(bg, (square_mask(30 + 2 * i, 40), RED)), 1.0 + i / 30)
            r, _, _ = out.get(timeout=WAIT)
            assert r.status == TrackStatus.TRACKING, r.reason
        now[0] += 0.6  # then silence longer than the timeout
        r, f, _ = out.get(timeout=WAIT)
        assert r.status == TrackStatus.ENDED and f is None
        assert r.reason == "the camera stopped: no frame for 0.5 s" and r.track_id == 4
        assert not loop.active and out.empty()
