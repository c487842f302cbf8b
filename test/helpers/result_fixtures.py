"""Hand-made answers for the tests of what leaves the node (message builders, conversation
values, the source-size rescaling): real Candidate and SegmentationResult objects, so the
builders are checked on the types the pipeline returns, with box masks whose geometry a test can
state exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iterprime_ros.result import Candidate, SegmentationResult


def box_candidate(
    index: int,
    cols: tuple[int, int],
    rows: tuple[int, int],
    shape: tuple[int, int],
    score: float = 0.5,
    description: str = "",
) -> Candidate:
    """Proposal `index` as a box mask (columns cols[0]..cols[1]-1, rows rows[0]..rows[1]-1) in
    an image of `shape`, with the bbox, centroid and grasp point the pipeline gives a box.
    """
    (x0, x1), (y0, y1) = cols, rows
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return Candidate(
        proposal_index=index,
        mask=mask,
        bbox=(x0, y0, x1 - x0, y1 - y0),
        centroid=((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2),
        grasp_point=((x0 + x1) // 2, (y0 + y1) // 2),
        score=score,
        description=description,
    )


def answer(chosen: Candidate, **fields: Any) -> SegmentationResult:
    """A successful answer that chose `chosen` (its mask and geometry, and it as the only
    candidate); `fields` set or override any other field.
    """
    base: dict[str, Any] = dict(
        success=True,
        error="",
        command="",
        mask=chosen.mask,
        bbox=chosen.bbox,
        centroid=chosen.centroid,
        grasp_point=chosen.grasp_point,
        candidates=[chosen],
    )
    base.update(fields)
    return SegmentationResult(**base)
