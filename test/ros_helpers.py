"""Shared helpers for tests that use real rclpy nodes and DDS across processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from typing import Callable

# One DDS domain per test session, so parallel test runs on the same machine never
# see each other's topics; discovery stays on this host.
# How long a test waits for an event (a message, a service answer, a discovery) before it fails.
# A bound only, never a timing assertion: passing tests never wait it out, so it is generous
# for a machine busy with other work (three loaded runs in a row).
EVENT_TIMEOUT_S = 60.0

DOMAIN_ID = str(
    int(os.environ.get("ITERPRIME_TEST_DOMAIN", random.Random(os.getpid()).randint(1, 100)))
)
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
