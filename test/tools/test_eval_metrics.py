"""Metrics on hand-computed cases (method.md §7)."""

import math

import numpy as np
import pytest

from iterprime_ros.tools.eval.metrics import (
    EPS,
    MetricAccumulator,
    intersection_union,
    iou,
    is_position,
    is_position_expression,
    mean_iou,
    overall_iou,
    precision_at,
)


def _mask(h, w, cells):
    m = np.zeros((h, w), bool)
    for y, x in cells:
        m[y, x] = True
    return m


def test_iou_hand_computed():
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:2] = True  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert intersection_union(pred, gt) == (1, 7)
    assert iou(pred, gt) == pytest.approx((1 + 1e-6) / (7 + 1e-6))
    assert iou(gt, gt) == pytest.approx(1.0)


def test_iou_empty_cases():
    empty = np.zeros((3, 3), bool)
    gt = _mask(3, 3, [(0, 0), (1, 1)])
    assert iou(empty, empty) == 1.0  # (0 + eps) / (0 + eps)
    assert iou(empty, gt) == pytest.approx(EPS / (2 + EPS))
    assert iou(None, gt) == iou(empty, gt)  # a failure counts as an empty prediction
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((2, 2), bool), gt)


def test_miou_oiou_precision():
    ious = [0.5, 0.55, 0.9, 0.95, 0.2]
    assert mean_iou(ious) == pytest.approx(0.62)
    # strict ">": 0.5 is not above 0.5; 0.9 is not above 0.9
    assert precision_at(ious) == pytest.approx({0.5: 0.6, 0.6: 0.4, 0.7: 0.4, 0.8: 0.4, 0.9: 0.2})
    assert overall_iou([1, 3, 0], [2, 4, 4]) == pytest.approx(4 / 10)
    assert math.isnan(overall_iou([0], [0]))
    assert math.isnan(mean_iou([]))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("the cup on the left", True),
        ("the leftmost ball", True),
        ("the one at the top", True),
        ("man in the upper right corner", True),
        ("the guy going up the stairs", True),
        ("the bottom plate", True),
        ("the red cup", False),  # "cup" contains "up" but is not the word "up"
        ("bright shirt", False),  # "bright" contains "right"
        ("a mug above the bowl", False),  # above/below are not in the paper's list
        ("Top-Left dog", True),
    ],
)
def test_position_expressions_are_told_from_the_others(text, expected):
    assert is_position_expression(text) is expected
    assert is_position(text) is expected


def test_the_accumulator_reports_the_position_and_others_splits():
    acc = MetricAccumulator()
    gt = np.zeros((2, 5), bool)
    gt[0, :4] = True  # 4 pixels
    full = gt.copy()
    half = np.zeros_like(gt)
    half[0, :2] = True  # I=2, U=4
    acc.add(full, gt, "the leftmost cup", kind="absolute")  # position, IoU 1
    acc.add(half, gt, "the red cup", kind="attribute")  # others, IoU 0.5
    acc.add(None, gt, "the cup at the bottom", kind="absolute")  # position, failure -> ~0
    s = acc.summary(key="kind")
    assert s["overall"].count == 3
    assert s["overall"].miou == pytest.approx((1 + (2 + EPS) / (4 + EPS) + EPS / (4 + EPS)) / 3)
    assert s["overall"].oiou == pytest.approx((4 + 2 + 0) / 12)
    assert s["position"].count == 2 and s["others"].count == 1
    assert s["position"].miou == pytest.approx((1 + EPS / (4 + EPS)) / 2)
    # (2 + eps) / (4 + eps) is a hair above 0.5: the eps of the IoU definition counts
    assert s["others"].precision[0.5] == 1.0 and s["others"].precision[0.6] == 0.0
    assert s["kind=absolute"].count == 2
    d = s["overall"].as_dict()
    assert d["count"] == 3 and "Prec@0.5" in d and "oIoU" in d
