"""Shared helpers for tests that use real rclpy nodes and DDS across processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from typing import Callable

# How long a test waits for an event (a message, a service answer, a discovery) before it fails.
# A bound only, never a timing assertion: passing tests never wait it out, so it is generous
# for a machine busy with other work (three loaded runs in a row).
EVENT_TIMEOUT_S = 60.0

# The DDS domains a Fast DDS participant can use with its default ports.
MAX_DOMAIN_ID = 232
# Parallel workers (pytest-xdist) of one run sit this far apart, wrapped into 1..MAX_DOMAIN_ID:
# 101 shares no factor with 232, so up to 232 workers of one run never share a domain.
WORKER_DOMAIN_STRIDE = 101


def session_domain_id() -> int:
    """The DDS domain of this test process, so that test runs (and the parallel workers of one
    run) on the same machine never see each other's topics.

    The base is ITERPRIME_TEST_DOMAIN when set (give each person or job its own), otherwise a
    number drawn per run. Worker k of a pytest-xdist run takes base + 101 k (wrapped into
    1..232), so a run with workers never talks to itself across workers.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base = os.environ.get("ITERPRIME_TEST_DOMAIN")
    if base is None:
        seed = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
        base = str(random.Random(seed).randint(1, 100))
    if not base.isdigit() or not 0 <= int(base) <= MAX_DOMAIN_ID:
        raise ValueError(
            f"ITERPRIME_TEST_DOMAIN={base!r}: expected a number in 0..{MAX_DOMAIN_ID}"
        )
    return (
        (int(base) + WORKER_DOMAIN_STRIDE * index - 1) % MAX_DOMAIN_ID + 1 if index else int(base)
    )


DOMAIN_ID = str(session_domain_id())
os.environ["ROS_DOMAIN_ID"] = DOMAIN_ID
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def ros_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that must join this test's DDS domain."""
    env = dict(os.environ)
    env.update(extra)
    return env


def spawn_python(args: list[str], **extra_env: str) -> subprocess.Popen:
    """Start `python ARGS...` as a separate process in this test's domain."""
    return subprocess.Popen(
        [sys.executable, *args],
        env=ros_env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def spin_until(executor_or_node, predicate: Callable[[], bool], timeout: float) -> bool:
    """Spin until predicate() is true or the timeout passes; returns predicate()."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if hasattr(executor_or_node, "spin_once") and not hasattr(executor_or_node, "get_name"):
            executor_or_node.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(executor_or_node, timeout_sec=0.05)
    return predicate()


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """Interrupt a child process (as Ctrl-C would) and return what it printed."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""
