"""A signal while the node's program is still importing ends it with exit code 0, quietly.

Why: importing the node takes seconds (torch, transformers, spaCy). Before entry.py installed
its handlers first, a Ctrl-C in that time printed a KeyboardInterrupt traceback from inside an
import (exit 130) and a SIGTERM killed the process (exit -15), so a supervisor saw a crash. The
program is started as users start it (the console script's module, `python -m
iterprime_ros.ros.entry`); the signal is sent as soon as the process shows its SIGTERM handler
installed in /proc, which is before the heavy imports, and the test checks that the node had
not started (no log line), so it is the import window that was tested.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _catches(pid: int, sig: signal.Signals) -> bool:
    """True once the process has its own handler for `sig` (the SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (int(sig) - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("jemalloc", ["auto", "off"], ids=["jemalloc", "no-jemalloc"])
@pytest.mark.parametrize("delay_s", [0.0, 0.5], ids=["at-once", "mid-import"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_during_the_imports_exits_0_without_a_traceback(sig, delay_s, jemalloc, tmp_path):
    """With jemalloc the program re-executes itself once (jemalloc.py): a signal caught before
    that exec must not be forgotten by the new image.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), ITERPRIME_JEMALLOC=jemalloc)
    proc = subprocess.Popen(
        [sys.executable, "-m", "iterprime_ros.ros.entry", "--ros-args", "-r", "__ns:=/imports"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _catches(proc.pid, signal.SIGTERM):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the program never installed its handlers"
            time.sleep(0.005)
        time.sleep(delay_s)  # importing the node takes seconds: still inside the imports
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "[INFO]" not in out + err, "the node had started: the import window was missed"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert proc.returncode == 0, (proc.returncode, err)
