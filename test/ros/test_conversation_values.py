"""The conversation's message values (ros/conversions.py): which answers a planner may take.

Pure values on hand-made results (no models, no ROS), so every rule is checked exactly: success
is true only for a sure answer, the question is passed on whenever the method asks one, and the
candidates and plural objects keep their order and geometry.
"""

from __future__ import annotations

import numpy as np
import pytest
from result_fixtures import answer, box_candidate

from iterprime_ros.result import Candidate, SegmentationResult
from iterprime_ros.ros.conversions import (
    STATUS_AMBIGUOUS,
    STATUS_ANSWERED,
    STATUS_NONE,
    STATUS_NOT_SURE,
    STATUS_PLURAL,
    answer_status,
    conversation_values,
    reply_id,
    segmentation_values,
)

ROWS, SHAPE = (5, 10), (20, 30)


def _mask(x0: int, x1: int) -> np.ndarray:
    return box_candidate(0, (x0, x1), ROWS, SHAPE).mask


def _object(index: int, x0: int, x1: int, description: str, score: float) -> Candidate:
    return box_candidate(index, (x0, x1), ROWS, SHAPE, score, description)


def _result(**fields) -> SegmentationResult:
    defaults = dict(
        expression="the cup",
        primary_word="cup",
        score=1.4,
        itm_score=0.9,
        iterations=1,
        confidence=0.9,
    )
    # the rest as SegmentationResult defaults: sure, not ambiguous, no question, not a reply
    return answer(_object(3, 2, 8, "the red cup on the left", 1.4), **{**defaults, **fields})


def test_a_sure_single_answer_is_a_target():
    assert answer_status(_result()) == (STATUS_ANSWERED, True, "")
    c = conversation_values(_result(objects=[_object(3, 2, 8, "the red cup", 1.4)]))
    assert c["sure"] and [o["proposal_index"] for o in c["objects"]] == [3]


def test_a_not_sure_answer_is_never_a_target_even_if_marked_success():
    # the method marks it success False; a result that says success but not sure is refused too
    for success in (False, True):
        result = _result(
            success=success,
            sure=False,
            confidence=0.3,
            error="not sure: confidence 0.30 is below min_confidence 0.50" if not success else "",
            question="Is it the red cup on the left?",
            objects=[_object(3, 2, 8, "the red cup on the left", 1.4)],
        )
        c = conversation_values(result)
        assert c["status"] == STATUS_NOT_SURE and not c["success"] and not c["sure"]
        assert c["error"].startswith("not sure") and "0.30" in c["error"]
        assert c["question"] == "Is it the red cup on the left?"
        assert [k["proposal_index"] for k in c["candidates"]] == [3]  # what it saw is still said
        assert c["objects"] == []  # no target
        # the top-level geometry a planner reads is empty
        v = segmentation_values(result, (0.1, 0.2, 0.5), c["error"])
        assert not v["success"] and v["bbox"] == (0, 0, 0, 0) and not v["has_centroid_3d"]
        assert v["centroid_px"] == (0.0, 0.0) and v["error"] == c["error"]


def test_a_held_ambiguous_answer_asks_and_gives_no_target():
    q = "Which cup: the red one on the left or the blue one on the right?"
    result = _result(
        success=False,
        error="ambiguous: " + q,
        confidence=0.99,
        ambiguous=True,
        question=q,
        candidates=[
            _object(3, 2, 8, "the red cup", 1.4),
            _object(5, 20, 26, "the blue cup", 1.39),
        ],
    )
    c = conversation_values(result)
    assert c["status"] == STATUS_AMBIGUOUS and c["ambiguous"] and not c["success"]
    assert c["sure"] and c["question"] == q and q in c["error"]
    assert [k["description"] for k in c["candidates"]] == ["the red cup", "the blue cup"]


def test_an_ambiguous_answer_that_is_not_held_is_a_target_and_still_asks():
    q = "Which cup: the red one or the blue one?"
    c = conversation_values(_result(ambiguous=True, question=q))
    assert c["status"] == STATUS_ANSWERED and c["success"] and c["ambiguous"]
    assert c["question"] == q


def test_a_failure_stays_a_failure_with_its_error():
    c = conversation_values(_result(success=False, mask=None, error="no image"))
    assert (c["status"], c["success"], c["error"], c["sure"]) == (
        STATUS_NONE,
        False,
        "no image",
        False,
    )


def test_plural_objects_keep_their_order_geometry_and_3d():
    objects = [_object(1, 2, 8, "the left cup", 1.3), _object(4, 20, 26, "the right cup", 1.2)]
    result = _result(objects=objects, plural=True, in_reply_to="7")
    c = conversation_values(result, objects_3d=[(0.1, 0.0, 0.6), None])
    assert c["status"] == STATUS_PLURAL and c["success"] and c["in_reply_to"] == 7
    first, second = c["objects"]
    assert first["proposal_index"] == 1 and first["bbox"] == (2, 5, 6, 5)
    assert first["centroid_px"] == (4.5, 7.0) and first["grasp_point_px"] == (5.0, 7.0)
    assert first["has_centroid_3d"] and first["centroid_3d"] == (0.1, 0.0, 0.6)
    assert not second["has_centroid_3d"] and second["centroid_3d"] == (0.0, 0.0, 0.0)
    assert np.array_equal(second["mask"], _mask(20, 26))


@pytest.mark.parametrize("value, expected", [("", 0), ("12", 12), ("x3", 0), (None, 0), (5, 5)])
def test_in_reply_to_reads_the_methods_text_ids(value, expected):
    assert reply_id(value) == expected


@pytest.mark.parametrize("confidence, expected", [(-0.5, 0.0), (1.7, 1.0), (0.25, 0.25)])
def test_confidence_is_reported_in_zero_to_one(confidence, expected):
    assert conversation_values(_result(confidence=confidence))["confidence"] == expected
