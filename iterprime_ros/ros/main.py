"""How the node's process runs: help text, parameter files checked, signals, the executor, and the
shutdown that answers every command before the process exits.

Why our own signal handling: rclpy's would shut the context down at once, before the commands
still waiting could be answered. A signal only sets a flag; the main thread then stops taking
new work, answers what is pending (node.close), lets the last answers and the commands still in
DDS go out, logs the stats line and shuts everything down in order.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, MutableMapping

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from . import dds_profile
from .entry import stop_event
from .names import NODE_NAME
from .params import (
    PARAMETERS,
    ParameterError,
    check_params_files,
    params_files,
    read_params_file,
)

EXECUTOR_THREADS = 6  # camera, commands, lifecycle and parameter services, with room to spare
FLUSH_QUIET_S = 0.5  # at shutdown: spin until no command has arrived for this long ...
FLUSH_MAX_S = 3.0  # ... but no longer than this
THREADS_JOIN_S = 10.0  # then the worker, prefetch and track threads end their stage in flight
# A signal to process exit, at most: the flush, the threads, the executor's own 1 s.
SHUTDOWN_BOUND_S = FLUSH_MAX_S + THREADS_JOIN_S + 1.0


def usage(doc: str) -> str:
    """The node's help: its docstring and the parameter table."""
    lines = [doc.strip(), "", "Parameters (config/segment.yaml; -p name:=value):"]
    for p in PARAMETERS:
        live = " [live]" if p.live else ""
        lines.append(
            f"  {p.name:<24} {p.description}{live}; {p.allowed} (default {p.ros_default()!r})"
        )
    return "\n".join(lines)


def keep_torch_caches_out_of_tmp(env: MutableMapping[str, str] | None = None) -> str:
    """Point torch's compiler cache at the user's cache folder, unless the user chose one.

    Why: importing torch._dynamo (transformers does while loading Mask2Former) creates
    ``$TMPDIR/torchinductor_$USER`` even though the node never compiles anything, and the node
    keeps its working folder and TMPDIR clean (docs/robustness.md). The user's cache folder is
    where such a folder belongs; nothing is written into it unless something compiles.
    """
    env = os.environ if env is None else env
    if not env.get("TORCHINDUCTOR_CACHE_DIR"):
        cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "torch", "inductor")
    return env["TORCHINDUCTOR_CACHE_DIR"]


def run(make_node: Callable[[], Any], argv: list[str], doc: str) -> None:
    """Run the node made by make_node() until SIGINT/SIGTERM; SystemExit(2) on a bad parameter.

    A signal at any moment (idle, mid-command, during a lifecycle transition, while the node is
    still being made) ends the process with exit code 0 within SHUTDOWN_BOUND_S, every command
    that reached the node answered.
    """
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own or "--help" in own:
        print(usage(doc))
        return
    stop = stop_event()  # set by the first signal, also one during the imports (entry.py)
    if stop.is_set():
        return
    files = params_files(argv)
    try:
        for path in files:  # rcl would answer a malformed file with a traceback
            read_params_file(path)
    except ParameterError as exc:
        print(f"[FATAL] [{NODE_NAME}]: bad parameters: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    dds = dds_profile.apply()  # before rclpy starts: big camera frames arrive (dds_profile.py)
    keep_torch_caches_out_of_tmp()
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    rclpy.logging.get_logger(NODE_NAME).debug(dds)
    try:
        node = make_node()
        check_params_files(files, node.get_fully_qualified_name())  # every file, not the merge
    except ParameterError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"bad parameters: {exc}")
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        _shut_down(node, executor)


def _shut_down(node: Any, executor: MultiThreadedExecutor) -> None:
    """Answer everything, let the answers out, wait for the threads, then close ROS in order.

    A thread the bound could not wait for (a model load that a lifecycle transition waits on,
    a stage that outlasts THREADS_JOIN_S) would be killed inside the models by the interpreter's
    exit (an abort, not exit 0), and the executor would wait for the transition that waits for
    it: the process then leaves at once with os._exit(0), every answer already out.
    """
    node.close()  # every command not yet answered gets "shutting down"; no new one is taken
    _flush(node, executor)
    node.log_stats()  # after the flush: commands taken from DDS meanwhile were answered too
    running = node.stop_threads(THREADS_JOIN_S)
    if running:
        print(
            f"[WARN] [{NODE_NAME}]: still running after {THREADS_JOIN_S:g} s: "
            f"{', '.join(running)}; exiting without waiting for them",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(0)
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown()


def _flush(node: Any, executor: MultiThreadedExecutor) -> None:
    """Service responses of the last answers go out, and commands still in DDS are taken and
    answered "shutting down": spin until none has come for FLUSH_QUIET_S (at most FLUSH_MAX_S).
    """
    start = quiet_since = time.monotonic()
    seen = node.commands_received
    try:
        while rclpy.ok() and time.monotonic() - quiet_since < FLUSH_QUIET_S:
            if time.monotonic() - start > FLUSH_MAX_S:
                break
            executor.spin_once(timeout_sec=0.05)
            if node.commands_received != seen:
                seen, quiet_since = node.commands_received, time.monotonic()
    except Exception:  # noqa: BLE001 - best effort at exit
        pass
