"""A downscaled frame's conversation answer comes back at the source size: every candidate and
answered object, not only the chosen mask, so a client never mixes two sizes in one answer.
"""

from __future__ import annotations

import numpy as np
from result_fixtures import answer, box_candidate

from iterprime_ros.image_size import SizePlan, result_to_source
from iterprime_ros.result import Candidate


def _candidate(index: int, x0: int) -> Candidate:
    return box_candidate(index, (x0, x0 + 4), (2, 6), (10, 20))


def test_candidates_and_objects_are_brought_to_the_source_size():
    left, right = _candidate(1, 2), _candidate(2, 12)
    result = answer(left, command="both cups", candidates=[left, right], objects=[left, right])
    size = SizePlan(40, 80, 0.25)  # the models saw 10 x 20
    out = result_to_source(result, size)
    for group in (out.candidates, out.objects):
        assert [c.proposal_index for c in group] == [1, 2]
        assert all(c.mask.shape == (40, 80) for c in group)
    r = out.candidates[1]
    assert r.bbox == (48, 8, 16, 16) and r.mask[r.grasp_point[1], r.grasp_point[0]]
    assert abs(r.centroid[0] - 55.5) < 1e-6 and abs(r.centroid[1] - 15.5) < 1e-6
    assert np.array_equal(out.objects[0].mask, out.mask)
    assert result.candidates[1].mask.shape == (10, 20)  # the model-size result is unchanged
