"""The conversation's message values (ros/conversions.py): which answers a planner may take.

Pure values on hand-made results (no models, no ROS), so every rule is checked exactly: success
is true only for a sure answer, the question is spoken only when no target is given, and the
candidates and plural objects keep their order and geometry.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from iterprime_ros.ros.conversions import (
    STATUS_AMBIGUOUS,
    STATUS_ANSWERED,
    STATUS_NONE,
    STATUS_NOT_SURE,
    STATUS_PLURAL,
    answer_status,
    conversation_values,
    segmentation_values,
)


def _mask(x0: int, x1: int) -> np.ndarray:
    m = np.zeros((20, 30), bool)
    m[5:10, x0:x1] = True
    return m


def _object(index: int, x0: int, x1: int, description: str, score: float) -> SimpleNamespace:
    return SimpleNamespace(
        proposal_index=index,
        description=description,
        score=score,
        confidence=score / 2,
        mask=_mask(x0, x1),
        bbox=(x0, 5, x1 - x0, 5),
        centroid=((x0 + x1 - 1) / 2, 7.0),
        grasp_point=((x0 + x1) // 2, 7),
    )


def _result(**fields) -> SimpleNamespace:
    base = dict(
        success=True,
        error="",
        expression="the cup",
        primary_word="cup",
        mask=_mask(2, 8),
        bbox=(2, 5, 6, 5),
        centroid=(4.5, 7.0),
        grasp_point=(5, 7),
        score=1.4,
        itm_score=0.9,
        iterations=1,
        confidence=0.9,
        ambiguous=False,
        question="",
        candidates=[_object(3, 2, 8, "the red cup on the left", 1.4)],
        objects=[],
    )
    base.update(fields)
    return SimpleNamespace(**base)


def test_a_sure_single_answer_is_a_target():
    status, success, error = answer_status(_result(), min_confidence=0.5)
    assert (status, success, error) == (STATUS_ANSWERED, True, "")


def test_an_answer_under_the_threshold_is_not_a_target_and_says_not_sure():
    result = _result(confidence=0.3, question="Is it the red cup on the left?")
    c = conversation_values(result, min_confidence=0.5)
    assert c["status"] == STATUS_NOT_SURE and not c["success"] and not c["sure"]
    assert c["error"].startswith("not sure") and "0.30" in c["error"]
    assert c["question"] == "Is it the red cup on the left?"
    assert [k["proposal_index"] for k in c["candidates"]] == [3]  # what it saw is still said
    # the top-level geometry a planner reads is empty
    v = segmentation_values(result, (0.1, 0.2, 0.5), c["error"])
    assert not v["success"] and v["bbox"] == (0, 0, 0, 0) and not v["has_centroid_3d"]
    assert v["centroid_px"] == (0.0, 0.0) and v["error"] == c["error"]


def test_the_threshold_is_inclusive_and_zero_keeps_every_answer():
    assert answer_status(_result(confidence=0.5), 0.5)[1]
    assert answer_status(_result(confidence=0.0), 0.0)[1]


def test_an_ambiguous_answer_is_never_a_target_even_when_confident():
    q = "Which cup: the red one on the left or the blue one on the right?"
    result = _result(
        confidence=0.99,
        ambiguous=True,
        question=q,
        candidates=[
            _object(3, 2, 8, "the red cup", 1.4),
            _object(5, 20, 26, "the blue cup", 1.39),
        ],
    )
    c = conversation_values(result, min_confidence=0.0)
    assert c["status"] == STATUS_AMBIGUOUS and c["ambiguous"] and not c["success"]
    assert c["question"] == q and q in c["error"]
    assert [k["description"] for k in c["candidates"]] == ["the red cup", "the blue cup"]


def test_a_sure_answer_carries_no_question():
    c = conversation_values(_result(question="left over?"), 0.5)
    assert c["success"] and c["question"] == ""


def test_a_failure_stays_a_failure_with_its_error():
    c = conversation_values(_result(success=False, mask=None, error="no image"), 0.0)
    assert (c["status"], c["success"], c["error"]) == (STATUS_NONE, False, "no image")


def test_plural_objects_keep_their_order_geometry_and_3d():
    objects = [_object(1, 2, 8, "the left cup", 1.3), _object(4, 20, 26, "the right cup", 1.2)]
    result = _result(objects=objects)
    c = conversation_values(result, 0.5, in_reply_to=7, objects_3d=[(0.1, 0.0, 0.6), None])
    assert c["status"] == STATUS_PLURAL and c["success"] and c["in_reply_to"] == 7
    first, second = c["objects"]
    assert first["proposal_index"] == 1 and first["bbox"] == (2, 5, 6, 5)
    assert first["centroid_px"] == (4.5, 7.0) and first["grasp_point_px"] == (5.0, 7.0)
    assert first["has_centroid_3d"] and first["centroid_3d"] == (0.1, 0.0, 0.6)
    assert not second["has_centroid_3d"] and second["centroid_3d"] == (0.0, 0.0, 0.0)
    assert np.array_equal(second["mask"], _mask(20, 26))


def test_a_plural_answer_that_is_not_sure_gives_no_objects():
    objects = [_object(1, 2, 8, "a", 1.3), _object(4, 20, 26, "b", 1.2)]
    c = conversation_values(_result(objects=objects, confidence=0.1), 0.5)
    assert c["status"] == STATUS_NOT_SURE and c["objects"] == []


@pytest.mark.parametrize("confidence, expected", [(-0.5, 0.0), (1.7, 1.0), (0.25, 0.25)])
def test_confidence_is_reported_in_zero_to_one(confidence, expected):
    assert conversation_values(_result(confidence=confidence), 0.0)["confidence"] == expected
