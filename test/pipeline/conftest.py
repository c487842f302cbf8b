"""Fixtures the pipeline tests share."""

from __future__ import annotations

import pytest
from prefetch_instruments import instrumented_segmenter


@pytest.fixture
def instrumented(tiny_blip, tiny_proposals):
    """A segmenter on the tiny models whose calls are logged and whose proposal stage can be
    held open: (segmenter, gated proposals, log).
    """
    return instrumented_segmenter(tiny_blip, tiny_proposals)
