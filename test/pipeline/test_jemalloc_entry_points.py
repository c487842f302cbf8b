"""The allocator setting reaches every entry point (iterprime_ros/jemalloc.py): a Segmenter built
through the Python API keeps freed memory in the process (glibc mallopt when jemalloc is not
preloaded), and the console scripts run with jemalloc preloaded when it is installed.

Real processes and real page-fault counts from the kernel (getrusage); the Segmenter gets
stand-in backends (named as such) because only its construction is under test here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iterprime_ros import jemalloc

ROOT = Path(__file__).resolve().parents[2]
REAL = jemalloc.find_library({})

PROBE = """
import resource, sys
sys.path.insert(0, {root!r})
import torch

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):  # a frame's worth of big temporaries (proposal masks), made and freed
        a = torch.ones(50, 480, 640)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
plain = faults()
from iterprime_ros.pipeline import Segmenter
class StandIn:  # stand-in backends: only the constructor is under test
    pass
Segmenter(vlp=StandIn(), proposals=StandIn())
faults()
after = faults()
from iterprime_ros.jemalloc import retain_freed_memory
print(plain, after, retain_freed_memory())
"""


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITERPRIME_JEMALLOC")}
    env.pop("LD_PRELOAD", None)
    env.update(changes)
    return env


def test_a_segmenter_from_python_keeps_freed_memory(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(root=str(ROOT)))
    out = subprocess.run(
        [sys.executable, str(script)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    plain, after, how = out.stdout.split(maxsplit=2)
    assert "mallopt" in how
    # 4 x 61 MB touched: about 60000 page faults with glibc's mmap for big blocks; reused after
    assert int(plain) > 30_000, out.stdout
    assert int(after) < int(plain) // 20, out.stdout

    out = subprocess.run(
        [sys.executable, str(script)],
        env=_env(**{jemalloc.SWITCH: "off"}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    plain, after, how = out.stdout.split(maxsplit=2)
    assert "unchanged" in how and int(after) > 30_000, out.stdout


@pytest.mark.skipif(REAL is None, reason="libjemalloc2 is not installed here")
@pytest.mark.parametrize("script", ["iterprime", "iterprime-node"])
def test_console_scripts_run_with_jemalloc(script):
    """`--help` exits early, after the entry point chose its allocator: the check prints the
    maps of the process that answers.
    """
    exe = Path(sys.executable).with_name(script)
    if not exe.exists():
        pytest.skip(f"{script} is not installed in this environment")
    code = (
        "import runpy, sys, atexit\n"
        "maps = lambda: 'jemalloc' in open('/proc/self/maps').read()\n"
        "atexit.register(lambda: print('JEMALLOC', maps()))\n"
        f"sys.argv = [{str(exe)!r}, '--help']\n"
        f"runpy.run_path({str(exe)!r}, run_name='__main__')\n"
    )
    env = _env(PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert "JEMALLOC True" in out.stdout, (out.stdout[-500:], out.stderr[-500:])
