#!/usr/bin/env python3
"""Test-only launcher: the real segmenter node, with a FAULT INJECTOR wrapped around its backends.

Why a launcher and not a switch in the node: the product has no way to inject a fault, neither
from a command nor from a parameter nor from the environment. Only this script (in test/, never
installed) wraps the backend classes before it calls the node's own main().

A fault fires when the command being run contains one of these words (the pipeline's own
normaliser keeps them: lower-case letters only):

    faultoompass       torch.cuda.OutOfMemoryError from the VLP's text pass (as CUDA raises it)
    faultoomproposals  torch.cuda.OutOfMemoryError from the proposal network
    faulterrorpass     RuntimeError from inside a text pass (a bug or a broken model)
    faultcrash         RuntimeError from Segmenter.segment itself, past the pipeline's own handling
    faultoomcrash      torch.cuda.OutOfMemoryError from Segmenter.segment itself (outside any
    stage)

    python test/helpers/fault_node.py --ros-args ...   (the arguments of iterprime_ros.ros.node)
"""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from iterprime_ros import pipeline  # noqa: E402
from iterprime_ros.models.blip import BlipITMBackend  # noqa: E402
from iterprime_ros.models.mask2former import Mask2FormerProposals  # noqa: E402
from iterprime_ros.ros import node  # noqa: E402

_current = threading.local()  # the command the worker thread is running
INJECTED = "(fault injected by test/helpers/fault_node.py)"


def _armed(word: str) -> bool:
    return word in (getattr(_current, "command", "") or "").split()


def _oom(where: str) -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(
        f"CUDA out of memory. Tried to allocate 2.00 GiB in {where} {INJECTED}"
    )


def _with_faults(method, **faults: Callable[[], BaseException]):
    """`method`, raising faults[word]() instead when the running command contains that word (the
    words checked in the order given).
    """

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        for word, fault in faults.items():
            if _armed(word):
                raise fault()
        return method(self, *args, **kwargs)

    return wrapped


def _wrap_segment(segment):
    """Segmenter.segment, noting the command for the wrapped backends (and its own faults)."""
    checked = _with_faults(
        segment,
        faultcrash=lambda: RuntimeError(f"segment crashed {INJECTED}"),
        faultoomcrash=lambda: _oom("Segmenter.segment"),
    )

    @functools.wraps(segment)
    def wrapped(self, image, command, *args, **kwargs):
        _current.command = command if isinstance(command, str) else ""
        try:
            return checked(self, image, command, *args, **kwargs)
        finally:
            _current.command = ""

    return wrapped


def install() -> None:
    pipeline.Segmenter.segment = _wrap_segment(pipeline.Segmenter.segment)
    BlipITMBackend.text_pass = _with_faults(
        BlipITMBackend.text_pass,
        faultoompass=lambda: _oom("the text pass"),
        faulterrorpass=lambda: RuntimeError(f"text pass failed {INJECTED}"),
    )
    Mask2FormerProposals.propose = _with_faults(
        Mask2FormerProposals.propose, faultoomproposals=lambda: _oom("the proposal network")
    )


if __name__ == "__main__":
    install()
    print("fault injector installed (test/helpers/fault_node.py)", flush=True)
    node.main(sys.argv)
