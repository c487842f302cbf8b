"""jemalloc for the node and the CLI: preload it with retained memory, switchable.

Why: a new frame allocates and frees gigabytes of short-lived tensors (Mask2Former's
full-resolution temporaries). glibc returns them to the kernel and faults them back in on the
next frame: 4-6 s of system time per Swin-L frame on a 2-core CPU. jemalloc with
``dirty_decay_ms:-1,muzzy_decay_ms:-1`` keeps freed pages for reuse instead (measured in
docs/performance.md). The library has to be loaded before the process starts (LD_PRELOAD), so
the entry points re-execute themselves once with it (``maybe_reexec``); ``python -m
iterprime_ros.jemalloc -- CMD ...`` runs any other command that way.

Where a process cannot re-execute (the Python API inside someone else's program, a launch file
that starts the node some other way), ``retain_freed_memory`` does the same job in-process:
building a ``Segmenter`` sets glibc's ``mallopt`` so that big blocks come from the heap instead
of fresh ``mmap`` pages (``M_MMAP_MAX`` 0) and freed memory is not trimmed back to the kernel
(``M_TRIM_THRESHOLD``), which removes the page faults and the system time as jemalloc does
(docs/performance.md has both figures). Every entry point therefore runs with one or the other.

Switch: ``ITERPRIME_JEMALLOC`` = auto (default: use it when installed), on (use it; warn when
missing), off. ``ITERPRIME_JEMALLOC_LIB`` names the library file. A ``MALLOC_CONF`` already set
is kept. Debian/Ubuntu: ``apt-get install libjemalloc2`` (scripts/setup.sh offers it).
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

SWITCH = "ITERPRIME_JEMALLOC"
LIBRARY = "ITERPRIME_JEMALLOC_LIB"
REEXECED = "ITERPRIME_JEMALLOC_REEXEC"  # set in the re-executed process: never loop
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
SEARCH = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


@dataclass(frozen=True)
class JemallocPlan:
    """What to do: use (re-execute with env_changes) or not, and why, in one line."""

    use: bool
    reason: str
    library: Path | None = None
    env_changes: dict[str, str] = field(default_factory=dict)


def find_library(env: Mapping[str, str], search: Sequence[str] = SEARCH) -> Path | None:
    """The jemalloc shared library: ITERPRIME_JEMALLOC_LIB, the usual paths, then ldconfig's."""
    named = env.get(LIBRARY, "").strip()
    if named:
        return Path(named) if Path(named).is_file() else None
    for candidate in search:
        if Path(candidate).is_file():
            return Path(candidate)
    found = ctypes.util.find_library("jemalloc")
    if found:
        for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"):
            if (Path(folder) / found).is_file():
                return Path(folder) / found
    return None


def is_preloaded(env: Mapping[str, str]) -> bool:
    return "jemalloc" in env.get("LD_PRELOAD", "")


def plan(env: Mapping[str, str], search: Sequence[str] = SEARCH) -> JemallocPlan:
    """Decide from the environment alone (testable without starting a process)."""
    switch = env.get(SWITCH, "auto").strip().lower() or "auto"
    if switch in ("0", "off", "false", "no"):
        return JemallocPlan(False, f"jemalloc off ({SWITCH}={switch})")
    if switch not in ("auto", "1", "on", "true", "yes"):
        return JemallocPlan(False, f"jemalloc off: {SWITCH}={switch!r} is not auto, on or off")
    if is_preloaded(env):
        return JemallocPlan(False, "jemalloc already preloaded")
    if env.get(REEXECED):
        return JemallocPlan(False, "jemalloc: re-executed once already, not again")
    library = find_library(env, search)
    if library is None:
        hint = "install libjemalloc2 (apt-get install libjemalloc2) or set " + LIBRARY
        return JemallocPlan(False, f"jemalloc not found; {hint}")
    preload = env.get("LD_PRELOAD", "").strip()
    changes = {
        "LD_PRELOAD": f"{library}:{preload}" if preload else str(library),
        "MALLOC_CONF": env.get("MALLOC_CONF") or MALLOC_CONF,
        REEXECED: "1",
    }
    return JemallocPlan(True, f"jemalloc {library} ({changes['MALLOC_CONF']})", library, changes)


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's malloc.h
TOP_PAD = 64 << 20  # grow the heap in 64 MB steps: fewer brk calls for frame-sized tensors
_retained: str | None = None


def jemalloc_mapped() -> bool:
    """True when jemalloc is loaded into this process (preloaded by an entry point)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            return "jemalloc" in fh.read()
    except OSError:
        return False


def retain_freed_memory(env: Mapping[str, str] | None = None) -> str:
    """Keep freed memory in the process for reuse; what was done, in words (idempotent).

    jemalloc when the entry point preloaded it; else glibc's mallopt settings above, applied
    once to this process. Nothing when ITERPRIME_JEMALLOC is off or the C library is not glibc.
    """
    global _retained
    if _retained is not None:
        return _retained
    env = os.environ if env is None else env
    switch = env.get(SWITCH, "auto").strip().lower()
    if switch in ("0", "off", "false", "no"):
        _retained = f"allocator unchanged ({SWITCH}={switch})"
    elif jemalloc_mapped():
        _retained = "jemalloc (preloaded)"
    else:
        _retained = _glibc_retain()
    return _retained


def _glibc_retain() -> str:
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = (
            libc.mallopt(M_MMAP_MAX, 0) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
            and libc.mallopt(M_TOP_PAD, TOP_PAD) == 1
        )
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return "allocator unchanged (no glibc mallopt)"
    return "glibc mallopt: no mmap, no trim" if ok else "allocator unchanged (mallopt refused)"


def maybe_reexec(argv: Sequence[str] | None = None) -> JemallocPlan:
    """Re-execute this Python process with jemalloc preloaded when the plan says so.

    argv: the interpreter arguments to run again (default: this process's, ``sys.orig_argv``).

    Returns only when it does not re-execute (off, missing, already preloaded); a plan asked
    for with ITERPRIME_JEMALLOC=on but impossible is reported on stderr.
    """
    p = plan(os.environ)
    switch = os.environ.get(SWITCH, "auto").strip().lower()
    if not p.use:
        if switch in ("1", "on", "true", "yes") and "already" not in p.reason:
            print(f"[iterprime] {p.reason}", file=sys.stderr)
        return p
    env = dict(os.environ)
    env.update(p.env_changes)
    # the interpreter's own command line (script or -m module, flags included) once more
    args = list(sys.orig_argv[1:] if argv is None else argv)
    os.execve(sys.executable, [sys.executable, *args], env)
    raise AssertionError("unreachable")  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iterprime_ros.jemalloc [--check] [-- CMD ...]``: say what would happen, or
    run CMD with jemalloc preloaded (when the switch and the library allow).
    """
    ap = argparse.ArgumentParser(prog="python -m iterprime_ros.jemalloc", description=__doc__)
    ap.add_argument("--check", action="store_true", help="print the plan and whether it is on")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    p = plan(os.environ)
    if args.check or not command:
        active = is_preloaded(os.environ)
        print(f"{p.reason}; active in this process: {'yes' if active else 'no'}")
        return 0
    env = dict(os.environ)
    env.update(p.env_changes)
    env.pop(REEXECED, None)
    os.execvpe(command[0], command, env)
    return 127  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
