"""Instruments for the prefetch tests (test/pipeline/test_prefetch*.py): the real tiny models,
wrapped so a test sees which network call ran for which frame and can hold a proposal stage open.

Why wrappers and not mocks: the models still run (random weights, plumbing only); the wrappers
only log each call and, on demand, keep one call in flight, so the order of stages a command
and the prefetcher run can be asserted without timing.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from iterprime_ros.pipeline import Segmenter, SegmenterSettings

COMMAND = "the red cup on the left"


def variant(image: np.ndarray, k: int) -> np.ndarray:
    """The image with its first pixel set from k: another frame of the same scene, and the log
    entries (the first pixel's red value) say which frame a call was for.
    """
    out = image.copy()
    out[0, 0] = (k * 37) % 256, k % 256, 7
    return out


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class GatedProposals:
    """Test instrument around the real tiny Mask2Former: logs every call and, while armed, holds
    a call open until the test releases it (to have a prefetch stage in flight on demand).
    """

    def __init__(self, real, log):
        self.real = real
        self.log = log
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def propose(self, image):
        self.log.append(("proposals", int(image[0, 0, 0])))
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.release.wait(60)
        return self.real.propose(image)


class LoggedVLP:
    """Test instrument around the real tiny BLIP: logs image encodings, delegates everything."""

    def __init__(self, real, log):
        self.real = real
        self.log = log
        self.grid = real.grid

    def encode_image(self, image):
        self.log.append(("image_encoding", int(image[0, 0, 0])))
        return self.real.encode_image(image)

    def __getattr__(self, name):
        return getattr(self.real, name)


def instrumented_segmenter(tiny_blip, tiny_proposals) -> tuple[Segmenter, GatedProposals, list]:
    """(segmenter on the instrumented tiny models, its gated proposals, the shared call log)."""
    log: list[tuple[str, int]] = []
    props = GatedProposals(tiny_proposals, log)
    seg = Segmenter.from_backends(
        LoggedVLP(tiny_blip, log),
        props,
        SegmenterSettings(device="cpu", parser="spacy", empty_selection="best_heat"),
    )
    return seg, props, log
