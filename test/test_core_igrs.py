"""IGRS (Eq. 5–7) driven through the VLPBackend protocol by a scripted fake backend."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iterprime_ros.core.backend import PassOutput, VLPBackend
from iterprime_ros.core.igrs import (
    IGRSSettings,
    keep_from_map,
    minmax,
    run_igrs,
    steep_sigmoid,
    upsample,
)
from iterprime_ros.core.text import TokenRoles


def grid(values):
    return torch.tensor(values, dtype=torch.float64).reshape(2, 2)


class ScriptedFakeBackend:
    """A VLPBackend that returns, pass by pass, maps and ITM probabilities chosen by the test.

    One head, one valid token ([CLS]) plus a trailing [SEP]; the [CLS] attention is the scripted
    map (scaled and shifted, so minmax has work to do) and its gradient is 1, so the
    aggregated map G̃_t is exactly the scripted map. Records the keep mask of every pass.
    """

    grid = 2

    def __init__(self, maps, probabilities):
        self.maps = [torch.as_tensor(m, dtype=torch.float32).flatten() for m in maps]
        self.probabilities = probabilities
        self.keeps = []
        self.texts = []

    def encode_image(self, image):
        return "embedding"

    def token_offsets(self, text):
        return [None, None]

    def text_pass(self, image_embedding, text, keep):
        assert image_embedding == "embedding"
        t = len(self.keeps)
        self.keeps.append(None if keep is None else keep.clone())
        self.texts.append(text)
        p = self.probabilities[t]
        logits = torch.tensor([0.0, float(np.log(p / (1 - p)))])  # softmax(logits)[1] == p
        cls_row = torch.cat([torch.tensor([0.7]), 3.0 * self.maps[t] + 0.5])
        sep_row = torch.full((5,), 9.0)  # must never take part
        attention = torch.stack([cls_row, sep_row])[None]
        gradient = torch.ones_like(attention)
        return PassOutput(logits, attention, gradient, torch.tensor([True, False]))


ROLES = TokenRoles(effective=(), primary=(), valid=torch.tensor([True, True]))
SETTINGS = IGRSSettings(mode="mean")

# Maps already spanning [0, 1], so N_t = the map.
N0 = [[1.0, 0.6], [0.2, 0.0]]  # keep B_0 = [N < .5] = [F F / T T]
N1 = [[0.0, 1.0], [0.7, 0.3]]  # B_1 = [T F / F T] -> M = B_0 ∧ B_1 = [F F / F T]
N2 = [[0.5, 0.0], [1.0, 0.25]]


def test_fake_backend_satisfies_protocol():
    assert isinstance(ScriptedFakeBackend([N0], [0.5]), VLPBackend)


def test_blend_weights_and_keep_masks_over_three_passes():
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.6, 0.7])  # rising ITM: no stop
    res = run_igrs(fake, "embedding", "there is a cup", ROLES, (2, 2), SETTINGS)
    # R_2 = 0.64 N0 + 0.16 N1 + 0.2 N2 = [.64+0+.1, .384+.16+0, .128+.112+.2, 0+.048+.05]
    #     = [.74 .544 .44 .098]; O = minmax = (R − .098)/.642 = [1, .694704, .532710, 0]
    # (same-size bicubic with align_corners=False is the identity)
    expected = (np.array([0.74, 0.544, 0.44, 0.098]) - 0.098) / 0.642
    assert np.allclose(res.heatmap.ravel(), expected, atol=1e-5)
    assert res.heatmap.dtype == np.float32
    assert res.iterations == 3 and res.returned_pass == 2 and res.stop_reason == "max_iterations"
    assert fake.texts == ["there is a cup"] * 3
    assert fake.keeps[0] is None
    assert fake.keeps[1].dtype == torch.bool and fake.keeps[1].tolist() == [
        False,
        False,
        True,
        True,
    ]
    assert fake.keeps[2].tolist() == [False, False, False, True]
    assert res.itm_scores == pytest.approx([0.5, 0.6, 0.7])
    assert res.itm_logits == pytest.approx([np.log(1.0), np.log(0.6 / 0.4), np.log(0.7 / 0.3)])
    assert len(res.pass_times_s) == 3


def test_reference_stop_returns_current_map_when_itm_drops():
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.4, 0.9])
    res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), SETTINGS)
    # stops at t = 1 (0.4 < 0.5) and returns O_1 = minmax(0.8 N0 + 0.2 N1)
    # R_1 = [.8, .48+.2, .16+.14, .06] = [.8 .68 .30 .06] -> (R − .06)/.74 = [1 .837838 .324324 0]
    assert len(fake.keeps) == 2
    assert np.allclose(res.heatmap.ravel(), [1.0, 0.837838, 0.324324, 0.0], atol=1e-5)
    assert (res.iterations, res.returned_pass, res.stop_reason) == (2, 1, "itm_drop")


def test_reference_stop_at_third_pass():
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.95, 0.9])
    res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), SETTINGS)
    assert (res.iterations, res.returned_pass) == (3, 2)
    assert np.allclose(
        res.heatmap.ravel(), (np.array([0.74, 0.544, 0.44, 0.098]) - 0.098) / 0.642, atol=1e-5
    )


def test_soft_itm_stop_returns_previous_map():
    # S_0 = p_0 = .5; S_1 = p_1 · mean(1 − O_0) = .8 · (1 − 1.8/4) = .8 · .55 = .44 < .5
    # -> stop, return O_0 = N0 (the reference rule would go on: .8 > .5)
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.8, 0.9])
    res = run_igrs(
        fake, "embedding", "t", ROLES, (2, 2), IGRSSettings(mode="mean", stop_rule="soft_itm")
    )
    assert np.allclose(res.heatmap, np.array(N0), atol=1e-6)
    assert (res.iterations, res.returned_pass, res.stop_reason) == (2, 0, "itm_drop")
    ref = run_igrs(
        ScriptedFakeBackend([N0, N1, N2], [0.5, 0.8, 0.9]),
        "embedding",
        "t",
        ROLES,
        (2, 2),
        SETTINGS,
    )
    assert ref.iterations == 3


def test_soft_itm_second_step():
    # S_1 = .95 · .55 = .5225 ≥ .5 goes on; O_1 = [1 .837838 .324324 0], mean(1 − O_1) = 1 −
    # 2.162162/4 = .459459; S_2 = .9 · .459459 = .413514 < .5225 -> stop, return O_1
    # (reference returns O_2).
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.95, 0.9])
    res = run_igrs(
        fake, "embedding", "t", ROLES, (2, 2), IGRSSettings(mode="mean", stop_rule="soft_itm")
    )
    assert np.allclose(res.heatmap.ravel(), [1.0, 0.837838, 0.324324, 0.0], atol=1e-5)
    assert (res.iterations, res.returned_pass) == (3, 1)


def test_degenerate_all_zero_map_masks_everything_and_stops():
    flat = [[0.3, 0.3], [0.3, 0.3]]  # minmax of a constant map is all zero
    fake = ScriptedFakeBackend([flat, N1, N2], [0.5, 0.6, 0.7])
    res = run_igrs(fake, "embedding", "t", ROLES, (3, 5), SETTINGS)
    assert len(fake.keeps) == 1
    assert res.stop_reason == "degenerate" and res.iterations == 1
    assert res.heatmap.shape == (3, 5) and not res.heatmap.any()


def test_empty_keep_intersection_stops():
    a = [[1.0, 0.0], [1.0, 1.0]]  # B = [F T / F F]
    b = [[0.0, 1.0], [1.0, 1.0]]  # B = [T F / F F] -> M = nothing
    fake = ScriptedFakeBackend([a, b, N2], [0.5, 0.6, 0.7])
    res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), SETTINGS)
    assert len(fake.keeps) == 2 and res.stop_reason == "degenerate" and res.returned_pass == 1


def test_disabled_runs_one_pass_and_max_iterations_is_respected():
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.6, 0.7])
    res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), IGRSSettings(mode="mean", enabled=False))
    assert len(fake.keeps) == 1 and res.stop_reason == "disabled"
    assert np.allclose(res.heatmap, sigmoid_stretched(N0), atol=1e-6)
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.6, 0.7])
    run_igrs(fake, "embedding", "t", ROLES, (2, 2), IGRSSettings(mode="mean", max_iterations=2))
    assert len(fake.keeps) == 2


def test_steep_sigmoid_max_normalisation_shifts_the_cut():
    # S(x) = σ(20(x−.5))/σ(10) when max N = 1. S(.499999) = .4999949/.9999546 = .500018 ≥ .5 ->
    # dropped, although .499999 < .5; S(.49999) = .4999500/.9999546 = .499973 < .5 -> kept.
    n = torch.tensor([[1.0, 0.49999], [0.499999, 0.0]])
    assert keep_from_map(n).tolist() == [False, True, False, True]
    s = steep_sigmoid(torch.tensor([0.0, 0.5, 1.0]))
    sig10 = 1 / (1 + np.exp(-10))
    assert s.tolist() == pytest.approx([(1 / (1 + np.exp(10))) / sig10, 0.5 / sig10, 1.0])
    assert steep_sigmoid(torch.zeros(3)).tolist() == [
        1.0,
        1.0,
        1.0,
    ]  # all-zero map: S = 1 everywhere


def test_minmax_constant_map_is_zero_not_nan():
    assert minmax(torch.full((2, 2), 7.0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert minmax(torch.tensor([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]


def test_upsample_is_torch_bicubic_align_corners_false():
    r = torch.tensor([[0.0, 1.0], [0.25, 0.5]])
    up = upsample(r, (6, 8))
    ref = F.interpolate(r[None, None], size=(6, 8), mode="bicubic", align_corners=False)[0, 0]
    assert up.shape == (6, 8) and torch.allclose(up, ref)
    assert not torch.allclose(
        up, F.interpolate(r[None, None], size=(6, 8), mode="bicubic", align_corners=True)[0, 0]
    )
    assert not torch.allclose(
        up, F.interpolate(r[None, None], size=(6, 8), mode="bilinear", align_corners=False)[0, 0]
    )


def test_heatmap_at_image_size_is_in_unit_range():
    fake = ScriptedFakeBackend([N0, N1, N2], [0.5, 0.6, 0.7])
    res = run_igrs(fake, "embedding", "t", ROLES, (48, 64), SETTINGS)
    assert res.heatmap.shape == (48, 64)
    assert res.heatmap.min() == 0.0 and res.heatmap.max() == pytest.approx(1.0)


def test_settings_are_validated():
    with pytest.raises(ValueError):
        IGRSSettings(stop_rule="paper")
    with pytest.raises(ValueError):
        IGRSSettings(max_iterations=0)
    with pytest.raises(ValueError):
        IGRSSettings(mode="max")


def test_default_settings_are_the_papers_constants():
    s = IGRSSettings()
    assert (
        s.max_iterations,
        s.alpha,
        s.threshold,
        s.steepness,
        s.stop_rule,
        s.mode,
        s.no_primary,
        s.enabled,
    ) == (3, 0.2, 0.5, 20.0, "reference", "pwem", "reference", True)


def test_steepness_reaches_the_keep_mask_in_run_igrs():
    # .49999 stays visible with steepness 20 (S = .499973) but not with 10 (S = σ(−1e-4)/σ(5) =
    # .50334)
    near = [[1.0, 0.49999], [0.2, 0.0]]
    fake = ScriptedFakeBackend([near, N1], [0.5, 0.6])
    run_igrs(fake, "embedding", "t", ROLES, (2, 2), IGRSSettings(mode="mean", max_iterations=2))
    assert fake.keeps[1].tolist() == [False, True, True, True]
    fake = ScriptedFakeBackend([near, N1], [0.5, 0.6])
    run_igrs(
        fake,
        "embedding",
        "t",
        ROLES,
        (2, 2),
        IGRSSettings(mode="mean", max_iterations=2, steepness=10.0),
    )
    assert fake.keeps[1].tolist() == [False, False, True, True]


def test_default_mode_is_pwem_on_the_worked_example():
    # The hand-computed PWEM map of test_core_pwem.py is [5.0 1.2 1.3 1.7]/12; N_0 = minmax = (x −
    # 1.2)/3.8.
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "_pwem_example", Path(__file__).with_name("test_core_pwem.py")
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    ATT, GRAD, PWEM_ROLES = example.ATT, example.GRAD, example.ROLES

    class ScriptedFixedPassBackend(ScriptedFakeBackend):
        def text_pass(self, image_embedding, text, keep):
            self.keeps.append(keep)
            return PassOutput(torch.tensor([0.0, 1.0]), ATT, GRAD, torch.ones(5, dtype=torch.bool))

    fake = ScriptedFixedPassBackend([], [])
    one_pass = IGRSSettings(enabled=False, single_pass="plain")
    res = run_igrs(fake, "embedding", "t", PWEM_ROLES, (2, 2), one_pass)
    assert np.allclose(res.heatmap.ravel(), [1.0, 0.0, 0.1 / 3.8, 0.5 / 3.8], atol=1e-5)


def test_grid_mismatch_is_reported():
    fake = ScriptedFakeBackend([N0], [0.5])
    fake.grid = 3
    with pytest.raises(ValueError, match="grid"):
        run_igrs(fake, "embedding", "t", ROLES, (2, 2), SETTINGS)


def sigmoid_stretched(m):
    """S(x) = σ(20(x − 0.5)) / max σ, written out with math.exp (independent of steep_sigmoid)."""
    flat = [1.0 / (1.0 + math.exp(-20.0 * (x - 0.5))) for row in m for x in row]
    top = max(flat)
    return np.array([v / top for v in flat]).reshape(len(m), -1)


def test_one_pass_returns_the_steep_sigmoid_of_the_first_map():
    # N0 = [1 .6 / .2 0]: σ(20(x − .5)) = [σ(10) σ(2) / σ(−6) σ(−10)], over σ(10)
    # ≈ [1 .88084 / .0024727 .0000454]: the reference's T = 1 output (w/o IGRS rows).
    expected = np.array([[1.0, 0.880837], [0.0024727, 0.0000454]])
    assert np.allclose(sigmoid_stretched(N0), expected, atol=1e-6)
    for settings in (
        IGRSSettings(mode="mean", max_iterations=1),
        IGRSSettings(mode="mean", enabled=False),
    ):
        fake = ScriptedFakeBackend([N0], [0.5])
        res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), settings)
        assert res.iterations == 1
        assert np.allclose(res.heatmap, expected, atol=1e-5)
    # the switch keeps O_0 itself
    fake = ScriptedFakeBackend([N0], [0.5])
    plain = IGRSSettings(mode="mean", max_iterations=1, single_pass="plain")
    res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), plain)
    assert np.allclose(res.heatmap, np.array(N0), atol=1e-6)
    with pytest.raises(ValueError, match="single_pass"):
        IGRSSettings(single_pass="stretch")


def test_several_passes_never_stretch_the_returned_map():
    # T = 3 stopping at pass 1 returns O_1 = minmax(.8 N0 + .2 N1), not its sigmoid.
    fake = ScriptedFakeBackend([N0, N1, N2], [0.6, 0.5, 0.7])
    res = run_igrs(fake, "embedding", "t", ROLES, (2, 2), SETTINGS)
    blend = 0.8 * np.array(N0) + 0.2 * np.array(N1)
    blend = (blend - blend.min()) / (blend.max() - blend.min())
    assert res.returned_pass == 1 and np.allclose(res.heatmap, blend, atol=1e-5)
