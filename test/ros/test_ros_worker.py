"""The bounded command queue and the worker thread (iterprime_ros/ros/worker.py), without ROS."""

from __future__ import annotations

import threading
import time

import pytest

from iterprime_ros.ros.worker import JobQueue, Worker

WAIT = 60.0  # bound on waiting for a thread to act: never reached by a passing test


def test_overflow_pushes_out_the_oldest_waiting():
    q: JobQueue[int] = JobQueue(2)
    assert q.put(1) == [] and q.put(2) == []
    assert q.put(3) == [1]
    assert q.put(4) == [2]
    assert len(q) == 2 and q.get(0) == 3 and q.get(0) == 4 and q.get(0.01) is None


def test_closed_queue_hands_back_waiting_and_new_jobs():
    q: JobQueue[str] = JobQueue(3)
    q.put("a")
    q.put("b")
    assert q.close() == ["a", "b"]
    assert q.put("c") == ["c"], "a job refused by a closed queue comes back to be answered"
    assert q.get(0.01) is None and q.closed


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError):
        JobQueue(0)


def test_worker_answers_every_job_once_in_order_even_when_one_raises():
    q: JobQueue[int] = JobQueue(10)
    done: list[tuple[str, int]] = []
    lock = threading.Lock()
    gate = threading.Event()

    def handle(job: int) -> None:
        gate.wait(WAIT)
        if job == 2:
            raise RuntimeError("boom")
        with lock:
            done.append(("ok", job))

    def on_error(job: int, exc: BaseException) -> None:
        with lock:
            done.append((f"error {exc}", job))

    w = Worker(q, handle, on_error, setup=lambda: time.sleep(0.05))
    w.start()
    for i in range(4):
        assert q.put(i) == []
    assert w.ready.wait(WAIT)
    gate.set()
    deadline = time.monotonic() + WAIT
    while len(done) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == [("ok", 0), ("ok", 1), ("error boom", 2), ("ok", 3)]
    assert w.stop() == []


def test_failed_setup_still_runs_jobs():
    q: JobQueue[int] = JobQueue(2)
    seen: list[int] = []

    def setup() -> None:
        raise OSError("no weights")

    w = Worker(q, seen.append, lambda j, e: None, setup=setup)
    w.start()
    q.put(7)
    deadline = time.monotonic() + WAIT
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.ready.is_set() and seen == [7]
    w.stop()


def test_stop_returns_jobs_never_run():
    q: JobQueue[int] = JobQueue(5)
    started, release = threading.Event(), threading.Event()

    def handle(job: int) -> None:
        started.set()
        release.wait(WAIT)

    w = Worker(q, handle, lambda j, e: None)
    w.start()
    q.put(1)
    assert started.wait(WAIT) and w.busy
    q.put(2)
    q.put(3)
    release.set()
    left = w.stop()
    assert left == [2, 3] or left == [3]  # 2 may have been taken just before the queue closed


def test_run_after_stop_says_closed_instead_of_raising():
    """A lifecycle transition that waits on the worker while a signal stops it (activate loading
    the models) gets the `closed` answer, not QueueClosedError and a traceback in the log.
    """
    q: JobQueue[str] = JobQueue(4)
    w = Worker(q, lambda job: None, lambda j, e: None)
    w.start()
    assert w.run(lambda: "loaded") == "loaded"
    w.stop()
    assert w.run(lambda: "loaded", "the node is shutting down") == "the node is shutting down"
    assert w.run(lambda: "unloaded") is None
