"""Prefetch (iterprime_ros/prefetch.py) and Segmenter.prepare_frame on tiny random-weight models.

Random weights: plumbing only (which stages run when, what the result says). No timing
assertions: that a command waits for at most one stage in flight is checked by the order of the
network calls, with a gate that holds the prefetch's proposal stage open until a command waits.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from prefetch_instruments import COMMAND, variant, wait_until

from iterprime_ros.prefetch import REPEAT_LOG_S, FailureLog, Prefetcher, PrefetchPolicy


def test_policy_parse_and_choice():
    assert PrefetchPolicy.parse("off") == PrefetchPolicy("off")
    assert not PrefetchPolicy.parse("OFF").enabled
    assert PrefetchPolicy.parse(" latest ").wants(7)
    every = PrefetchPolicy.parse("every:3")
    assert every == PrefetchPolicy("every", 3) == PrefetchPolicy.parse("every_3")
    assert [i for i in range(8) if every.wants(i)] == [0, 3, 6]
    assert str(every) == "every:3" and str(PrefetchPolicy()) == "latest"
    assert not PrefetchPolicy("off").wants(0)
    for bad in ("sometimes", "every:0", "every:x", ""):
        with pytest.raises(ValueError, match="off, latest or every:N"):
            PrefetchPolicy.parse(bad)


def test_prepared_frame_answers_with_prefetched_and_without_per_frame_stages(
    instrumented, sample_image
):
    seg, _, log = instrumented
    out = seg.prepare_frame(sample_image)
    assert out.complete and out.computed and not out.yielded
    assert set(out.timings) == {"proposals", "image_encoding"}
    again = seg.prepare_frame(sample_image)
    assert again.complete and not again.computed  # nothing left to do
    result = seg.segment(sample_image, COMMAND)
    assert result.success, result.error
    assert result.prefetched and result.frame_cached
    assert "proposals" not in result.timings and "image_encoding" not in result.timings
    assert "wait" in result.timings
    # a frame a command computed itself is not "prefetched", also for its second command
    fresh = variant(sample_image, 1)
    first = seg.segment(fresh, COMMAND)
    second = seg.segment(fresh, "the white plate")
    assert first.success and not first.prefetched and not first.frame_cached
    assert second.frame_cached and not second.prefetched
    assert [k for k, _ in log].count("proposals") == 2


def test_prefetcher_prepares_the_latest_offered_frame(instrumented, sample_image):
    seg, _, log = instrumented
    prepared = []
    pf = Prefetcher(seg, "latest", on_prepared=lambda fid, t: prepared.append((fid, set(t))))
    with pf.command():  # hold the thread back while three frames arrive: only the last counts
        pf.start()
        for k in range(3):
            assert pf.offer(variant(sample_image, k), frame_id=k)
    assert pf.wait_idle(60)
    assert prepared == [(2, {"proposals", "image_encoding"})]
    assert pf.stats.offered == 3 and pf.stats.replaced == 2 and pf.stats.prepared == 1
    assert log == [("proposals", 2 * 37 % 256), ("image_encoding", 2 * 37 % 256)]
    with pf.command():
        result = seg.segment(variant(sample_image, 2), COMMAND, frame_id=2)
    assert result.success and result.prefetched
    pf.stop(10)
    assert not pf.running


def test_every_nth_frame_and_off(instrumented, sample_image):
    seg, _, _ = instrumented
    pf = Prefetcher(seg, PrefetchPolicy("every", 2))
    taken = [pf.offer(variant(sample_image, k), frame_id=k) for k in range(5)]
    assert taken == [True, False, True, False, True]
    off = Prefetcher(seg, "off").start()
    assert not off.running and not off.offer(sample_image)


def test_a_command_waits_for_at_most_the_stage_in_flight(instrumented, sample_image):
    """Prefetch is inside its proposal stage when a command on another frame arrives: the
    command waits for that stage only; the prefetch gives way before its image encoding and
    finishes the frame after the command.
    """
    seg, props, log = instrumented
    pf = Prefetcher(seg, "latest").start()
    props.armed = True
    prefetch_frame, command_frame = variant(sample_image, 3), variant(sample_image, 4)
    pf.offer(prefetch_frame, frame_id="a")
    assert props.entered.wait(60)  # the prefetch's proposal stage is in flight
    results = []
    worker = threading.Thread(
        target=lambda: results.append(seg.segment(command_frame, COMMAND, frame_id="b"))
    )
    worker.start()
    assert wait_until(lambda: seg._waiting == 1)  # the command waits for the lock
    props.release.set()
    worker.join(60)
    assert results and results[0].success, results and results[0].error
    assert pf.wait_idle(60)
    a, b = 3 * 37 % 256, 4 * 37 % 256
    # prefetch proposals (in flight) -> the command's own stages -> the rest of the prefetch
    assert log == [
        ("proposals", a),
        ("proposals", b),
        ("image_encoding", b),
        ("image_encoding", a),
    ]
    assert pf.stats.yielded == 1 and pf.stats.prepared == 1
    # the frame's stage times, both halves (before and after the command)
    assert set(pf.stats.last_timings) == {"proposals", "image_encoding"}
    assert seg.stats["prefetch_yields"] == 1
    assert results[0].timings["wait"] > 0 and not results[0].prefetched
    with pf.command():
        later = seg.segment(prefetch_frame, COMMAND, frame_id="a")
    assert later.prefetched
    pf.stop(10)


def test_a_bad_frame_does_not_stop_the_prefetcher(instrumented, sample_image):
    seg, _, _ = instrumented
    pf = Prefetcher(seg, "latest").start()
    pf.offer(np.zeros((4, 4), np.uint8), frame_id="bad")
    assert pf.wait_idle(30)
    assert pf.stats.errors == 1 and "H x W x 3" in pf.stats.last_error
    pf.offer(sample_image, frame_id="good")
    assert pf.wait_idle(60) and pf.stats.prepared == 1 and pf.running
    pf.stop(10)


def test_convert_in_the_thread_and_idle_holds_frames_back(instrumented, sample_image):
    """What the node offers (a camera message) is converted in the prefetch thread; while the
    owner says it is not idle (commands queued) no frame is started.
    """
    seg, _, log = instrumented
    busy = threading.Event()
    busy.set()
    prepared = []
    pf = Prefetcher(
        seg,
        "latest",
        on_prepared=lambda fid, t: prepared.append(fid),
        convert=lambda msg, fid: (msg["rgb"], ("cam", fid)),
        idle=lambda: not busy.is_set(),
    ).start()
    pf.offer({"rgb": variant(sample_image, 9)}, frame_id=42)
    assert not pf.wait_idle(0.5)  # held back: the owner is busy
    assert log == []
    busy.clear()
    assert pf.wait_idle(60)
    assert prepared == [42] and any(k[1] == ("cam", 42) for k in seg._frames)
    result = seg.segment(variant(sample_image, 9), COMMAND, frame_id=("cam", 42))
    assert result.prefetched
    pf.stop(10)


class BigFrame:
    """A camera message stand-in whose repr is the size of a frame's data (what the node offers:
    logging it would write megabytes per frame).
    """

    def __repr__(self) -> str:
        return "Frame(data=[" + "94, " * 200_000 + "])"


def test_a_stream_of_unusable_frames_is_logged_once_in_short_lines(
    instrumented, sample_image, caplog
):
    """A camera whose every frame fails (wrong encoding): one short warning, not one per frame
    with the frame's data in it; the count of failures is still kept.
    """
    seg, _, _ = instrumented

    def convert(msg, fid):
        raise ValueError("unsupported image encoding '16UC1'")

    pf = Prefetcher(seg, "latest", convert=convert).start()
    caplog.set_level(logging.WARNING, logger="iterprime_ros.prefetch")
    for i in range(20):
        pf.offer(BigFrame(), frame_id=BigFrame())
        assert pf.wait_idle(30)
    pf.stop(10)
    lines = [r.getMessage() for r in caplog.records]
    assert pf.stats.errors == 20
    assert len(lines) == 1, lines[:3]
    assert "unsupported image encoding '16UC1'" in lines[0] and len(lines[0]) < 400


def test_failure_log_repeats_with_a_count_and_names_a_new_failure():
    now = [0.0]
    logger = logging.getLogger("test_failure_log")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Keep())
    logger.propagate = False
    fl = FailureLog(logger, "prefetch", clock=lambda: now[0])
    assert fl.report("bad encoding")
    for _ in range(5):
        now[0] += 1.0
        assert not fl.report("bad encoding")
    now[0] += REPEAT_LOG_S
    assert fl.report("bad encoding")  # again after the interval, with the count
    assert seen[-1] == "prefetch: bad encoding (5 more like it not logged)"
    assert not fl.report("bad encoding")
    assert fl.report("too large")  # another failure at once, closing the run of repeats
    assert seen[-2:] == ["prefetch: 1 more times: bad encoding", "prefetch: too large"]
