"""Candidates, confidence, ambiguity, descriptions and reply words on crafted heat maps and
masks (pure functions: no models).
"""

from __future__ import annotations

import numpy as np
import pytest

from iterprime_ros.core.candidates import (
    confidence,
    confidence_features,
    distinct_objects,
    is_ambiguous,
    mean_heat,
)
from iterprime_ros.core.describe import colour_name, describe, look_at, question
from iterprime_ros.core.replies import (
    choice_words,
    choose,
    is_correction,
    is_relative,
    plural_request,
    singles_out,
)


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _scene():
    """Three objects (left, middle, right), a left half of the first, and the table."""
    h, w = 40, 60
    left, mid, right = (
        _box(h, w, 10, 30, 2, 14),
        _box(h, w, 10, 30, 24, 36),
        _box(h, w, 10, 30, 46, 58),
    )
    half = _box(h, w, 10, 30, 2, 8)
    table = np.ones((h, w), bool)
    return np.stack([left, mid, right, half, table])


def test_mean_heat_is_the_mean_inside_each_mask():
    props = _scene()
    heat = np.zeros(props.shape[1:], np.float32)
    heat[props[0]] = 0.8
    heat[props[2]] = 0.4
    m = mean_heat(heat, props)
    assert m[0] == pytest.approx(0.8) and m[1] == 0.0 and m[2] == pytest.approx(0.4)
    assert m[4] == pytest.approx((0.8 * props[0].sum() + 0.4 * props[2].sum()) / props[4].size)


def test_distinct_objects_put_the_answer_first_and_skip_its_parts_and_the_table():
    props = _scene()
    scores = np.array([0.5, 0.6, 0.2, 0.9, 0.7])  # the half and the table score high
    ranked = distinct_objects(props, scores, first=1, limit=5)
    assert [r.index for r in ranked][:1] == [1]
    # the half (3) outranks its whole (0) and is offered once; the table (4) never
    assert [r.index for r in ranked] == [1, 3, 2]


def test_a_part_is_offered_as_its_whole_object_when_the_whole_keeps_its_heat():
    props = _scene()
    scores = np.array([0.8, 0.3, 0.2, 0.9, 0.7])  # the half holds the peak, the whole nearly
    assert [r.index for r in distinct_objects(props, scores, 3, 3)] == [0, 1, 2]
    assert [r.index for r in distinct_objects(props, scores, 3, 3, complete=False)] == [3, 1, 2]
    cool = np.array([0.5, 0.3, 0.2, 0.9, 0.7])  # the rest of the object is cold: keep the part
    assert [r.index for r in distinct_objects(props, cool, 3, 3)][0] == 3


def test_ambiguity_is_a_close_runner_up():
    props = _scene()
    close = distinct_objects(props, np.array([0.8, 0.75, 0.1, 0.0, 0.3]), 0, 3)
    clear = distinct_objects(props, np.array([0.8, 0.3, 0.1, 0.0, 0.3]), 0, 3)
    assert is_ambiguous(close, 0.25) and not is_ambiguous(clear, 0.25)
    assert not is_ambiguous(close[:1], 0.25)


def test_confidence_ranks_a_clear_answer_above_a_split_one():
    props = _scene()
    clear = np.zeros(props.shape[1:], np.float32)
    clear[props[0]] = 1.0
    split = clear.copy()
    split[props[1]] = 0.95
    scores_clear, scores_split = mean_heat(clear, props), mean_heat(split, props)
    f_clear = confidence_features(
        clear, props[0], distinct_objects(props, scores_clear, 0, 3), 0.9
    )
    f_split = confidence_features(
        split, props[0], distinct_objects(props, scores_split, 0, 3), 0.9
    )
    assert f_clear[1] == pytest.approx(1.0) and f_split[1] < 0.1  # the lead
    assert f_clear[2] == pytest.approx(1.0) and f_split[2] < 0.6  # the share of the heat
    c_clear, c_split = confidence(f_clear), confidence(f_split)
    assert 0.0 <= c_split < c_clear <= 1.0


@pytest.mark.parametrize(
    "rgb, name",
    [
        ((210, 35, 35), "red"),
        ((40, 160, 60), "green"),
        ((40, 80, 215), "blue"),
        ((235, 205, 30), "yellow"),
        ((145, 60, 185), "purple"),
        ((245, 245, 245), "white"),
        ((20, 20, 20), "black"),
        ((128, 128, 128), "grey"),
    ],
)
def test_colour_names_from_pixels(rgb, name):
    pixels = np.tile(np.array(rgb, np.uint8), (50, 1))
    pixels[:5] = (128, 128, 128)  # a few off pixels do not change the median
    assert colour_name(pixels) == name


def test_descriptions_and_question_from_the_image_and_masks():
    props = _scene()
    image = np.full(props.shape[1:] + (3,), 150, np.uint8)
    image[props[0]] = (210, 35, 35)
    image[props[2]] = (40, 80, 215)
    looks = look_at(image, [props[0], props[2]])
    texts = [describe(x) for x in looks]
    assert texts == ["the red one on the left", "the blue one on the right"]
    assert (
        question("cup", texts)
        == "Which cup: the red one on the left or the blue one on the right?"
    )
    # fewer than two options: no bare "Which cup?", but words a person can act on
    for few in ([], ["the red one on the left"]):
        assert question("cup", few, "yellow") == (
            "I'm not sure I see the yellow cup you mean; can you describe it another way?"
        )
    assert question("", []).startswith("I'm not sure I see the one you mean")
    three = [describe(x) for x in look_at(image, [props[0], props[1], props[2]])]
    assert three[1] == "the grey one in the middle"
    small = _box(40, 60, 12, 18, 24, 30)
    sizes = [x.size for x in look_at(image, [props[0], small])]
    assert sizes == ["big", "small"]


def test_reply_words_choose_by_colour_place_order_and_size():
    colours = ["red", "blue", "red"]
    centroids = [(10.0, 20.0), (30.0, 20.0), (50.0, 20.0)]
    areas = [100, 400, 100]
    pick = lambda text: choose(choice_words(text), colours, centroids, areas)  # noqa: E731
    assert pick("the blue one") == 1
    assert pick("the left one") == 0
    assert pick("the one on the right") == 2
    assert pick("the second one") == 1
    assert pick("the last one") == 2
    assert pick("the big one") == 1
    assert pick("the red one on the right") == 2
    assert pick("the red one") is None  # two red ones: the words do not settle it
    assert pick("that one") is None


def test_corrections_relatives_and_plurals_are_told_apart():
    for text in ("no, the other one", "not that one", "No. Wrong one", "the other one please"):
        assert is_correction(text), text
    for text in ("the red one", "the one on the left", "grab the cup", "the cup next to it"):
        assert not is_correction(text), text
    assert is_relative("the one next to it") and not is_relative("the cup next to the box")
    assert plural_request("both cups").count == 2
    assert plural_request("both cups").singular == "the cup"
    assert plural_request("the two boxes").singular == "the box"
    req = plural_request("all the red blocks")
    assert req.count is None and req.singular == "the red block"
    assert plural_request("the three balls on the left").singular == "the ball on the left"
    assert plural_request("the cup between two boxes") is None
    assert plural_request("the red cup") is None


def test_words_that_single_one_out_need_no_question():
    colours = ["red", "blue", "red"]
    centroids = [(10.0, 20.0), (30.0, 20.0), (50.0, 20.0)]
    areas = [100, 100, 100]
    assert singles_out("the leftmost cup", colours, centroids, areas)
    assert singles_out("the blue cup", colours, centroids, areas)
    assert singles_out("the cup left of the green box", colours, centroids, areas)
    assert singles_out("the cup near the green box", colours, centroids, areas)
    assert not singles_out("the red cup", colours, centroids, areas)  # two red ones
    assert not singles_out("the cup", colours, centroids, areas)
