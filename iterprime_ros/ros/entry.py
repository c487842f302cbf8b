"""The node's program: signal handlers first, then the heavy imports, then the node.

Why a module of its own: importing the node takes seconds (torch, transformers, spaCy). A
Ctrl-C or a SIGTERM in that time would land in Python's default handling, a KeyboardInterrupt
traceback from inside an import or a kill by SIGTERM, while the node promises exit code 0 at
any moment (docs/robustness.md). So this module imports nothing heavy: it installs the handlers
that only record the signal (`stop_event`, the same ones main.run keeps), re-executes with
jemalloc when it should, and imports the node only then. A signal that arrived meanwhile ends
the program with exit code 0 before ROS starts; later ones are handled by main.run.

Every way a user starts the node comes here: `iterprime-node`, `ros2 run iterprime_ros
segmenter` (and so `ros2 launch`), and `python -m iterprime_ros.ros.entry`.
"""

from __future__ import annotations

import signal
import sys
import threading

_STOP = threading.Event()
_INSTALLED = False


def stop_event() -> threading.Event:
    """The process's stop flag, with SIGINT and SIGTERM handlers that set it (installed once).

    The first signal sets it; later ones change nothing. Called from the main thread only, as
    ``signal.signal`` requires.
    """
    global _INSTALLED
    if not _INSTALLED:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: _STOP.set())
        _INSTALLED = True
    return _STOP


def _reexec_keeping_signals(stop: threading.Event) -> None:
    """Re-execute with jemalloc (jemalloc.maybe_reexec) without losing a signal.

    A new program image starts with Python's default handlers and an empty stop flag, so a
    signal handled just before the exec would be forgotten and the node would start anyway.
    The signals are blocked across the exec instead: the blocked set and a pending signal
    survive it, and the new image delivers it once its own handlers are installed, in the
    same unblock as here when nothing was re-executed.
    """
    from ..jemalloc import maybe_reexec

    watched = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        if not stop.is_set():
            maybe_reexec()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)


def main(args: list[str] | None = None) -> None:
    """Console entry: the handlers, jemalloc, then the node (exit 2 on a bad parameter)."""
    stop = stop_event()
    argv = sys.argv if args is None else args
    if args is None:  # the program itself (not a call from Python): jemalloc first
        _reexec_keeping_signals(stop)
    if stop.is_set():
        return
    from .node import main as node_main

    if stop.is_set():  # a signal during the imports: nothing was started, nothing to answer
        return
    node_main(argv)


if __name__ == "__main__":
    main()
