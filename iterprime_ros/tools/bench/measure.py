"""Measuring tools of the benchmark: clocks that wait for the GPU, memory, call counters, and
the node's own message conversion (what it adds around the pipeline).
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any, Callable

import numpy as np


def mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # pragma: no cover - psutil is optional
        return None


class Calls:
    """Counts forward calls of the networks (vision encoder, text encoder, proposal model) and
    parses.
    """

    def __init__(self) -> None:
        self.counts = {"vision_encoder": 0, "text_encoder": 0, "proposal_model": 0, "parse": 0}
        self._handles: list[Any] = []

    def attach(self, segmenter: Any) -> "Calls":
        def counter(name: str) -> Callable[..., None]:
            def hook(*_: Any) -> None:
                self.counts[name] += 1

            return hook

        vlp_model = getattr(segmenter.vlp, "model", None)
        prop_model = getattr(segmenter.proposals, "model", None)
        if vlp_model is not None:
            self._handles.append(
                vlp_model.vision_model.register_forward_hook(counter("vision_encoder"))
            )
            self._handles.append(
                vlp_model.text_encoder.register_forward_hook(counter("text_encoder"))
            )
        if prop_model is not None:
            self._handles.append(prop_model.register_forward_hook(counter("proposal_model")))
        return self

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def since(self, before: dict[str, int]) -> dict[str, int]:
        return {k: self.counts[k] - before.get(k, 0) for k in self.counts}

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def counting_parser(calls: Calls, **kwargs: Any) -> Any:
    """The pipeline's ExpressionParser, counting the parses it really runs (cache misses)."""
    from ...core.text import ExpressionParser

    class CountingParser(ExpressionParser):
        def parse(self, expression: str) -> Any:
            if expression not in self._cache:
                calls.counts["parse"] += 1
            return super().parse(expression)

    return CountingParser(**kwargs)


class Clock:
    """perf_counter that waits for the GPU first (so asynchronous kernels are counted where they
    run).
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


class Conversion:
    """What the node does around the pipeline: image message -> array; result -> messages."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from ...ros import conversions

        self._conv = conversions
        self._ns = SimpleNamespace
        try:
            from std_msgs.msg import Header

            from ...ros import messages

            self._messages, self._header = messages, Header()
            self.kind = "ros messages (Segmentation + mono8 mask)"
        except Exception:  # pragma: no cover - depends on the ROS message packages
            self._messages = None
            self.kind = "message fields only (ROS message packages not importable)"

    def image_message(self, rgb: np.ndarray) -> Any:
        return self._ns(**self._conv.rgb_to_fields(rgb, "bgr8"))

    def incoming(self, msg: Any) -> np.ndarray:
        return self._conv.image_to_rgb(msg)

    def outgoing(self, result: Any, command: str) -> Any:
        if self._messages is not None:
            answer = self._messages.Answer(
                command_id=1, command=command, header=self._header, latency_s=result.latency_s
            )
            return self._messages.segmentation(result, answer)
        return self._conv.mask_to_fields(result.mask) if result.mask is not None else None
