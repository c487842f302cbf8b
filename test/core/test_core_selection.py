"""Proposal selection (Eq. 8–10) on crafted masks."""

import time

import numpy as np
import pytest

from iterprime_ros.core import selection
from iterprime_ros.core.selection import count_components, select_proposal


def blank(h=10, w=10):
    return np.zeros((h, w), bool)


def heat_with_peak(h=10, w=10, at=(5, 5)):
    heat = np.full((h, w), 0.1, np.float32)
    heat[at] = 1.0
    return heat


def test_score_formula_with_its_epsilon():
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0], heat[0, 1] = 1.0, 0.5
    m = blank(4, 4)
    m[0, 0] = m[0, 1] = True
    sel = select_proposal(heat, m[None])
    # s = Σ m(1 + O) / (Σ m + 1e-5) = (2 + 1.5) / 2.00001 = 1.7499912...  (1.75 without the
    # epsilon)
    assert sel.index == 0
    assert sel.score == pytest.approx(3.5 / 2.00001, abs=1e-12)
    assert abs(sel.score - 1.75) > 5e-6


def test_must_cover_the_exact_peak():
    heat = heat_with_peak()
    heat[0:3, 0:3] = 0.999999  # hot area, but not the exact maximum
    hot = blank()
    hot[0:3, 0:3] = True
    cover = blank()
    cover[4:7, 4:7] = True  # covers the peak, mean heat (1 + 8·.1)/9 = .2
    sel = select_proposal(heat, np.stack([hot, cover]))
    assert sel.index == 1
    assert sel.scores[0] == 0.0
    assert sel.scores[1] == pytest.approx((9 + 1.8) / (9 + 1e-5))
    assert sel.valid.tolist() == [False, True]


def test_peak_ties_all_count():
    heat = np.zeros((6, 6), np.float32)
    heat[0, 0] = heat[5, 5] = 1.0
    a = blank(6, 6)
    a[5, 4:6] = True  # covers peak (5, 5): mean heat .5
    b = blank(6, 6)
    b[0, 0] = True  # covers peak (0, 0): mean heat 1
    sel = select_proposal(heat, np.stack([a, b]))
    assert sel.valid.tolist() == [True, True] and sel.index == 1


def isolated_pixels(count, h=12, w=12):
    m = blank(h, w)
    coords = [(r, c) for r in range(0, h, 2) for c in range(0, w, 2)][:count]
    for r, c in coords:
        m[r, c] = True
    return m


@pytest.mark.parametrize("n_components, ok", [(12, True), (13, False)])
def test_at_most_twelve_components(n_components, ok):
    m = isolated_pixels(n_components)
    heat = np.zeros(m.shape, np.float32)
    heat[0, 0] = 1.0  # the first isolated pixel is the peak
    assert count_components(m) == n_components
    sel = select_proposal(heat, m[None])
    assert (sel.index == 0) is ok
    if not ok:
        assert "12 connected components" in sel.reason


def test_four_connectivity_diagonal_pixels_are_two_components():
    m = blank(4, 4)
    m[1, 1] = m[2, 2] = True
    assert count_components(m, 4) == 2 and count_components(m, 8) == 1
    heat = np.zeros((4, 4), np.float32)
    heat[1, 1] = 1.0
    assert select_proposal(heat, m[None], max_components=1).index is None
    assert select_proposal(heat, m[None], max_components=1, connectivity=8).index == 0


def test_ties_go_to_the_lowest_index():
    heat = heat_with_peak()
    m = blank()
    m[4:7, 4:7] = True
    other = blank()
    other[0, 0] = True
    sel = select_proposal(heat, np.stack([other, m, m.copy(), m.copy()]))
    assert sel.index == 1
    assert sel.scores[1] == sel.scores[2] == sel.scores[3]


def test_nothing_valid_fails_with_reason_or_falls_back_to_best_heat():
    heat = heat_with_peak()
    empty = blank()
    warm = blank()
    warm[0:2, 0:2] = True
    heat[0:2, 0:2] = 0.6
    cool = blank()
    cool[8:10, 8:10] = True
    props = np.stack([empty, cool, warm])
    sel = select_proposal(heat, props)
    assert sel.index is None and not sel.flagged
    assert "no proposal covers the heat-map peak" in sel.reason
    assert sel.scores.tolist() == [0.0, 0.0, 0.0]
    fb = select_proposal(heat, props, empty_selection="best_heat")
    assert fb.index == 2 and fb.flagged
    assert fb.score == pytest.approx((4 + 2.4) / (4 + 1e-5))
    only_empty = select_proposal(heat, empty[None], empty_selection="best_heat")
    assert only_empty.index is None


def test_no_proposals_and_bad_input():
    sel = select_proposal(heat_with_peak(), np.zeros((0, 10, 10), bool))
    assert sel.index is None and sel.scores.shape == (0,)
    with pytest.raises(ValueError):
        select_proposal(heat_with_peak(), np.zeros((2, 9, 10), bool))
    with pytest.raises(ValueError):
        select_proposal(heat_with_peak(), np.zeros((2, 10, 10), bool), empty_selection="maybe")
    bad = heat_with_peak()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        select_proposal(bad, np.zeros((1, 10, 10), bool))


def test_components_counted_only_for_peak_covering_proposals(monkeypatch):
    calls = []
    real = selection.count_components
    monkeypatch.setattr(
        selection, "count_components", lambda m, c=4: calls.append(1) or real(m, c)
    )
    rng = np.random.default_rng(0)
    props = rng.random((200, 48, 64)) > 0.7
    props[:, 20, 30] = False
    props[[5, 17, 150], 20, 30] = True  # only these cover the peak
    heat = rng.random((48, 64)).astype(np.float32) * 0.5
    heat[20, 30] = 1.0
    t0 = time.perf_counter()
    sel = select_proposal(heat, props, max_components=10_000)
    assert time.perf_counter() - t0 < 2.0
    assert len(calls) == 3
    assert sel.valid.sum() == 3 and sel.index in (5, 17, 150)
    # the vectorised score equals the per-mask formula
    i = sel.index
    expect = (props[i].sum() + heat[props[i]].astype(np.float64).sum()) / (props[i].sum() + 1e-5)
    assert sel.score == pytest.approx(expect, rel=1e-12)
