"""jemalloc switch (iterprime_ros/jemalloc.py): the plan from the environment, and a real
re-execution of a Python process with the library preloaded (skipped where libjemalloc2 is not
installed; scripts/setup.sh offers it).
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


@pytest.fixture
def lib(tmp_path):
    """A file standing in for the library (the plan only checks that it exists)."""
    path = tmp_path / "libjemalloc.so.2"
    path.write_bytes(b"stand-in")
    return path


def test_plan_uses_the_library_with_retained_memory(lib):
    p = jemalloc.plan({jemalloc.LIBRARY: str(lib)})
    assert p.use and p.library == lib
    assert p.env_changes["LD_PRELOAD"] == str(lib)
    assert p.env_changes["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    assert p.env_changes[jemalloc.REEXECED] == "1"  # the re-executed process does not loop
    # an existing preload and a user's MALLOC_CONF are kept
    p = jemalloc.plan(
        {jemalloc.LIBRARY: str(lib), "LD_PRELOAD": "/x/libfoo.so", "MALLOC_CONF": "narenas:2"}
    )
    assert p.env_changes["LD_PRELOAD"] == f"{lib}:/x/libfoo.so"
    assert p.env_changes["MALLOC_CONF"] == "narenas:2"


@pytest.mark.parametrize("value", ["off", "0", "false", "OFF"])
def test_jemalloc_switched_off_is_not_preloaded(lib, value):
    p = jemalloc.plan({jemalloc.SWITCH: value, jemalloc.LIBRARY: str(lib)})
    assert not p.use and "off" in p.reason


def test_no_loop_no_double_preload_bad_switch_missing_library(lib, tmp_path):
    assert not jemalloc.plan({jemalloc.LIBRARY: str(lib), jemalloc.REEXECED: "1"}).use
    p = jemalloc.plan({jemalloc.LIBRARY: str(lib), "LD_PRELOAD": "/usr/lib/libjemalloc.so.2"})
    assert not p.use and "already" in p.reason
    p = jemalloc.plan({jemalloc.SWITCH: "maybe", jemalloc.LIBRARY: str(lib)})
    assert not p.use and "'maybe'" in p.reason
    p = jemalloc.plan({jemalloc.LIBRARY: str(tmp_path / "none.so")})
    assert not p.use and "libjemalloc2" in p.reason
    assert jemalloc.find_library({}, search=(str(lib),)) == lib or REAL is not None


def _probe(tmp_path: Path, env: dict[str, str]) -> str:
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from iterprime_ros.jemalloc import maybe_reexec\n"
        "maybe_reexec()\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('mapped' if 'jemalloc' in maps else 'absent', os.environ.get('MALLOC_CONF'),"
        " sys.argv[1:])\n"
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("ITERPRIME_JEMALLOC")}
    full.pop("LD_PRELOAD", None)
    full.update(env)
    out = subprocess.run(
        [sys.executable, str(script), "x", "y"], env=full, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(REAL is None, reason="libjemalloc2 is not installed here")
def test_a_real_process_reexecutes_once_with_jemalloc(tmp_path):
    assert _probe(tmp_path, {}) == "mapped dirty_decay_ms:-1,muzzy_decay_ms:-1 ['x', 'y']"
    assert _probe(tmp_path, {jemalloc.SWITCH: "off"}) == "absent None ['x', 'y']"


def test_switch_on_without_the_library_says_so(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from iterprime_ros.jemalloc import maybe_reexec\n"
        "print(maybe_reexec().use)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITERPRIME_JEMALLOC")}
    env.update({jemalloc.SWITCH: "on", jemalloc.LIBRARY: str(tmp_path / "missing.so")})
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    assert "jemalloc not found" in out.stderr and "libjemalloc2" in out.stderr


def _setup(tmp_path: Path, present: bool, allow: str, apt: bool) -> tuple[str, list[str]]:
    """Run scripts/jemalloc_setup.sh with a stand-in apt-get (records its arguments) on PATH."""
    tmp_path.mkdir()
    lib = tmp_path / "libjemalloc.so.2"
    if present:
        lib.write_bytes(b"stand-in")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    calls = tmp_path / "apt-calls"
    if apt:
        stand_in = bindir / "apt-get"
        stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
        stand_in.chmod(0o755)
    for tool in ("id", "sudo"):  # id says root: no sudo needed
        src = bindir / tool
        src.write_text("#!/bin/sh\necho 0\n" if tool == "id" else "#!/bin/sh\nexit 1\n")
        src.chmod(0o755)
    env = {
        "PATH": f"{bindir}:/bin:/usr/bin" if apt else f"{bindir}:/nonexistent",
        "JEMALLOC_PATHS": str(lib),
        "ITERPRIME_INSTALL_JEMALLOC": allow,
    }
    out = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "jemalloc_setup.sh")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout, calls.read_text().splitlines() if calls.exists() else []


def test_setup_offers_the_package_only_when_absent_and_allowed(tmp_path):
    text, calls = _setup(tmp_path / "a", present=True, allow="1", apt=True)
    assert "jemalloc: " in text and "ITERPRIME_JEMALLOC=off" in text and calls == []
    text, calls = _setup(tmp_path / "b", present=False, allow="0", apt=True)
    assert "skipped" in text and calls == []
    text, calls = _setup(tmp_path / "c", present=False, allow="1", apt=False)
    assert "no apt-get" in text and calls == []
    text, calls = _setup(tmp_path / "d", present=False, allow="1", apt=True)
    assert (
        calls == ["install -y libjemalloc2"] and "failed" in text
    )  # the stand-in installs nothing
    assert "jemalloc_setup.sh" in (ROOT / "scripts" / "setup.sh").read_text()
