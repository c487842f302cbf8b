"""Grad-CAM (Eq. 1–2) and PWEM (Eq. 3–4) on hand-computed tensors.

Patch order inside a g x g = 2 x 2 grid is row-major: p0 p1 / p2 p3.
"""

import pytest
import torch

from iterprime_ros.core.gradcam import gradcam, to_grid
from iterprime_ros.core.pwem import aggregate, global_tokens, local_maps
from iterprime_ros.core.text import TokenRoles


def grid(values):
    """[p0, p1, p2, p3] -> 2 x 2 tensor."""
    return torch.tensor(values, dtype=torch.float32).reshape(2, 2)


# ---------------------------------------------------------------- Grad-CAM
def test_gradcam_drops_key0_applies_relu_and_reshapes_row_major():
    # key 0 (image CLS) holds 100 / -100: if it leaked into the grid the numbers would show it.
    attention = torch.tensor([[[100.0, 0.1, 0.2, 0.3, 0.4]]])  # K=1, L=1, 1+2*2 keys
    gradient = torch.tensor([[[-100.0, 2.0, -1.0, 0.5, 0.0]]])
    g = gradcam(attention, gradient)
    assert g.shape == (1, 1, 2, 2)
    # [0.1*2, 0.2*relu(-1)=0, 0.3*0.5, 0.4*0]
    assert torch.allclose(g[0, 0], grid([0.2, 0.0, 0.15, 0.0]))


def test_to_grid_rejects_non_square_key_count_and_casts_half():
    with pytest.raises(ValueError):
        to_grid(torch.zeros(1, 1, 4))  # 3 patches is not g*g
    with pytest.raises(ValueError):
        to_grid(torch.zeros(1, 4))
    assert to_grid(torch.zeros(2, 3, 10, dtype=torch.float16)).dtype == torch.float32
    assert to_grid(torch.zeros(2, 3, 10)).shape == (2, 3, 3, 3)


# ---------------------------------------------------------------- the worked example
# Tokens: 0 [CLS] · 1 "is" (prompt word, valid, not effective) · 2 primary word · 3 context word ·
#         4 trailing [SEP] (invalid: huge values that would wreck every mean if used).
# E = (2, 3), P = (2,). Each row: [image-CLS key, p0, p1, p2, p3].
ATT = torch.tensor(
    [
        [  # head 0
            [0.5, 0.1, 0.2, 0.3, 0.4],
            [0.5, 0.3, 0.3, 0.3, 0.3],
            [0.5, 0.4, 0.2, 0.1, 0.3],
            [0.5, 0.1, 0.2, 0.3, 0.4],
            [0.5, 5.0, 5.0, 5.0, 5.0],
        ],
        [  # head 1
            [0.5, 0.0, 0.0, 0.0, 0.0],
            [0.5, 0.1, 0.1, 0.1, 0.1],
            [0.5, 0.2, 0.2, 0.2, 0.2],
            [0.5, 0.4, 0.0, 0.2, 0.1],
            [0.5, 5.0, 5.0, 5.0, 5.0],
        ],
    ]
)
GRAD = torch.tensor(
    [
        [
            [9.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 2.0, -1.0, 1.0, 0.0],  # relu -> [2, 0, 1, 0]
            [9.0, 1.0, 1.0, -2.0, 1.0],  # relu -> [1, 1, 0, 1]
            [9.0, 7.0, 7.0, 7.0, 7.0],
        ],
        [
            [9.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 7.0, 7.0, 7.0, 7.0],
        ],
    ]
)
VALID = torch.tensor([True, True, True, True, False])
ROLES = TokenRoles(effective=(2, 3), primary=(2,), valid=VALID)
# Per-token Grad-CAM G = A ⊙ relu(∇A):
#   head 0: G0 = [.1 .2 .3 .4]  Gis = [.3 .3 .3 .3]  G2 = [.8 0 .1 0]  G3 = [.1 .2 0 .4]
#   head 1: G0 = [0 0 0 0]      Gis = [.1 .1 .1 .1]  G2 = [.2 .2 .2 .2] G3 = [.4 0 .2 .1]


def test_pwem_worked_example():
    # Local term (Eq. 3), C = unique(E) \ P = (3,):
    #  head 0: A_m = A2 = [.4 .2 .1 .3], g_m = [2 0 1 0]; D = A_m − A3 = [.3 0 −.2 −.1].
    # One context word: normalising across the context axis gives D̂ = sign(D) = [1 0 −1 −1]
    #          (a spatial L2 norm would give D/0.374 instead). G_loc = D̂·g_m·(A_m·g_m)
    #          = [1·2·.8, 0, −1·1·.1, −1·0·0] = [1.6 0 −.1 0].
    #  head 1: A_m = [.2 .2 .2 .2], g_m = 1; D = [−.2 .2 0 .1] -> D̂ = [−1 1 0 1];
    #          G_loc = D̂·1·.2 = [−.2 .2 0 .2].
    # Global (Eq. 4): E' = E + |E|=2 copies of P = (2, 3, 2, 2).
    # Per head: [G0], [G_loc], G2, G3, G2, G2 -> 6 maps.
    #  head 0 sum: [.1+1.6+3·.8+.1, .2+0+0+.2, .3−.1+3·.1+0, .4+0+0+.4] = [4.2 .4 .5 .8]
    #  head 1 sum: [0−.2+3·.2+.4, .2+.6+0, 0+.6+.2, .2+.6+.1]          = [.8 .8 .8 .9]
    # mean over 6 tokens then over 2 heads = (sum0 + sum1) / 12 = [5.0 1.2 1.3 1.7] / 12.
    out = aggregate(ATT, GRAD, ROLES, mode="pwem")
    assert out.shape == (2, 2)
    assert torch.allclose(out, grid([5.0, 1.2, 1.3, 1.7]) / 12, atol=1e-6)


@pytest.mark.parametrize(
    "mode, expected",
    [
        # mean (Eq. 2): all valid tokens 0..3 (not the [SEP]): head0 sum [1.3 .7 .7 1.1]/4,
        #   head1 sum [.7 .3 .5 .4]/4 -> [2.0 1.0 1.2 1.5]/8
        ("mean", [2.0 / 8, 1.0 / 8, 1.2 / 8, 1.5 / 8]),
        # gvlp: [CLS] ∪ E = (0, 2, 3): head0 [1.0 .4 .4 .8]/3, head1 [.6 .2 .4 .3]/3 -> [1.6 .6 .8
        # 1.1]/6
        ("gvlp", [1.6 / 6, 0.6 / 6, 0.8 / 6, 1.1 / 6]),
        # global: [CLS] + E' = (0, 2, 3, 2, 2): head0 [2.6 .4 .6 .8]/5, head1 [1.0 .6 .8 .7]/5 ->
        # /10
        ("global", [3.6 / 10, 1.0 / 10, 1.4 / 10, 1.5 / 10]),
        # local: [CLS] + G_loc + E = (0, loc, 2, 3): head0 [2.6 .4 .3 .8]/4, head1 [.4 .4 .4 .5]/4
        # -> /8
        ("local", [3.0 / 8, 0.8 / 8, 0.7 / 8, 1.3 / 8]),
    ],
)
def test_each_aggregation_mode_gives_its_hand_computed_map(mode, expected):
    assert torch.allclose(aggregate(ATT, GRAD, ROLES, mode=mode), grid(expected), atol=1e-6)


def test_no_primary_reference_multiplies_head_means_over_all_valid_tokens():
    # Reference (released code): (mean_k relu ∇A) ⊙ (mean_k A) per token, then the mean over
    # all valid tokens 0..3 (not the [SEP]), even though E = (2, 3) is non-empty.
    #  mean_k A:   t0 [.05 .1 .15 .2]  t1 [.2 .2 .2 .2]  t2 [.3 .2 .15 .25]  t3 [.25 .1 .25 .25]
    #  mean_k g+:  t0 [1 1 1 1]        t1 [1 1 1 1]      t2 [1.5 .5 1 .5]    t3 [1 1 .5 1]
    #  products:   t0 [.05 .1 .15 .2]  t1 [.2 .2 .2 .2]  t2 [.45 .1 .15 .125] t3 [.25 .1 .125 .25]
    #  sum [.95 .5 .625 .775] / 4 tokens. (Per-head products would give [2.0 1.0 1.2 1.5] / 8.)
    roles = TokenRoles(effective=(2, 3), primary=(), valid=VALID)
    for mode in ("pwem", "global", "local"):
        assert torch.allclose(
            aggregate(ATT, GRAD, roles, mode=mode),
            grid([0.95, 0.5, 0.625, 0.775]) / 4,
            atol=1e-6,
        )
        # the switch: per-head mean over [CLS] ∪ E (the gvlp mode's map)
        assert torch.allclose(
            aggregate(ATT, GRAD, roles, mode=mode, no_primary="gvlp"),
            grid([1.6, 0.6, 0.8, 1.1]) / 6,
            atol=1e-6,
        )


# Two heads whose [CLS] gradients differ, so "head means first" and "per head" disagree.
CLS_ATT = torch.tensor(
    [
        [[0.1, 0.2, 0.4, 0.0, 0.6], [0.1, 9.0, 9.0, 9.0, 9.0], [0.0, 9.0, 9.0, 9.0, 9.0]],
        [[0.1, 0.6, 0.0, 0.2, 0.2], [0.1, 7.0, 7.0, 7.0, 7.0], [0.0, 7.0, 7.0, 7.0, 7.0]],
    ]
)
CLS_GRAD = torch.tensor(
    [
        [[5.0, 1.0, 0.0, 2.0, 1.0], [5.0, 1.0, 1.0, 1.0, 1.0], [5.0, 1.0, 1.0, 1.0, 1.0]],
        [[5.0, 3.0, 1.0, 0.0, -1.0], [5.0, 1.0, 1.0, 1.0, 1.0], [5.0, 1.0, 1.0, 1.0, 1.0]],
    ]
)
CLS_VALID = torch.tensor([True, True, False])  # token 1: a prompt word; token 2: [SEP]


def test_no_effective_word_reference_uses_the_cls_map_alone():
    # [CLS]: mean_k A = [.4 .2 .1 .4], mean_k relu ∇A = [2 .5 1 .5] -> [.8 .1 .1 .2].
    # (Per head: h0 [.2 0 0 .6], h1 [1.8 0 0 0] -> [1.0 0 0 .3]; the prompt word's huge maps
    # would dominate any mean over tokens.)
    roles = TokenRoles(effective=(), primary=(), valid=CLS_VALID)
    for mode in ("pwem", "global", "local"):
        out = aggregate(CLS_ATT, CLS_GRAD, roles, mode=mode)
        assert torch.allclose(out, grid([0.8, 0.1, 0.1, 0.2]), atol=1e-6)


def test_no_effective_word_overall_mean_in_mean_and_gvlp_modes_and_gvlp_switch():
    # mean over valid tokens 0, 1 per head: h0 ([.2 0 0 .6] + 9·[1 1 1 1]) / 2,
    # h1 ([1.8 0 0 0] + 7·[1 1 1 1]) / 2 -> ([2.0 0 0 .6] + 16) / 4
    overall = (grid([2.0, 0.0, 0.0, 0.6]) + 16.0) / 4
    roles = TokenRoles(effective=(), primary=(), valid=CLS_VALID)
    for mode, no_primary in (("mean", "reference"), ("gvlp", "reference"), ("pwem", "gvlp")):
        out = aggregate(CLS_ATT, CLS_GRAD, roles, mode=mode, no_primary=no_primary)
        assert torch.allclose(out, overall, atol=1e-6)


def test_empty_context_uses_one_all_zero_context_map():
    # E = P = (2,): C empty -> the reference's one zero context: D = A_m, D̂ = 1 where A_m > 0,
    # G_loc = g_m ⊙ g_m ⊙ A_m. head0: A2 [.4 .2 .1 .3], g2 [2 0 1 0] -> [1.6 0 .1 0];
    # head1: A2 = .2, g = 1 -> [.2 .2 .2 .2].
    # pwem per head: [G0, G_loc, G2, G2] (E' = (2, 2)):
    #  head0 sum [.1+1.6+1.6, .2+0+0, .3+.1+.2, .4+0+0] = [3.3 .2 .6 .4]; head1 [.6 .6 .6 .6]
    #  -> [3.9 .8 1.2 1.0] / 8 (a zero local map would give [2.1 .6 .9 .8] / 8)
    roles = TokenRoles(effective=(2,), primary=(2,), valid=VALID)
    out = aggregate(ATT, GRAD, roles, mode="pwem")
    assert torch.allclose(out, grid([3.9, 0.8, 1.2, 1.0]) / 8, atol=1e-6)


def test_local_map_without_context_is_gm_squared_am_with_eps_at_tiny_attention():
    # One head, primary = token 1, no context. A_m = [.5 0 5e-9 .2], g_m = [2 3 1 0].
    # D̂ = A_m / max(|A_m|, 1e-8) = [1 0 .5 1]; G_loc = D̂·g_m·(A_m·g_m) = [2 0 2.5e-9 0].
    a = torch.stack([grid([0.0] * 4), grid([0.5, 0.0, 5e-9, 0.2])])[None]
    g = torch.stack([grid([0.0] * 4), grid([2.0, 3.0, 1.0, 0.0])])[None]
    loc = local_maps(a, g, primary=(1,), context=())
    assert loc.shape == (1, 1, 2, 2)
    assert torch.allclose(loc[0, 0], grid([2.0, 0.0, 2.5e-9, 0.0]), atol=1e-12, rtol=1e-5)


def test_invalid_tokens_never_take_part_even_if_listed():
    roles = TokenRoles(effective=(2, 3, 4), primary=(2,), valid=VALID)  # 4 is the [SEP]
    assert torch.allclose(aggregate(ATT, GRAD, roles), grid([5.0, 1.2, 1.3, 1.7]) / 12, atol=1e-6)


def test_local_maps_normalise_across_context_axis_mean_over_subwords_and_eps():
    # One head; tokens 1, 2 = primary subwords, 3, 4 = context words.
    a = torch.stack(
        [
            grid([0.0, 0.0, 0.0, 0.0]),
            grid([0.6, 0.2, 0.3, 0.5]),  # primary subword 1
            grid([0.4, 0.2, 0.5, 0.3]),  # primary subword 2  -> A_m = [.5 .2 .4 .4]
            grid([0.2, 0.2, 0.1, 0.4]),  # context a -> D_a = [.3 0 .3 0]
            grid([0.1, 0.2, 0.4, 0.1]),  # context b -> D_b = [.4 0 0 .3]
        ]
    )[None]
    g_raw = torch.stack(
        [
            grid([0.0, 0.0, 0.0, 0.0]),
            grid([2.0, 1.0, 4.0, -1.0]),  # relu first: [2 1 4 0]
            grid(
                [0.0, 1.0, 0.0, 1.0]
            ),  # -> g_m = mean of relu'd = [1 1 2 .5] (relu after the mean: p3 = 0)
            grid([5.0, 5.0, 5.0, 5.0]),
            grid([5.0, 5.0, 5.0, 5.0]),
        ]
    )[None]
    loc = local_maps(a, torch.relu(g_raw), primary=(1, 2), context=(3, 4))
    # ‖D‖ across context = [.5, 0 (→1e-8), .3, .3] -> D̂_a = [.6 0 1 0], D̂_b = [.8 0 0 1]
    # g_m·(A_m·g_m) = [1·.5·1, 1·.2·1, 2·.4·2, .5·.4·.5] = [.5 .2 1.6 .1]
    # G_loc_a = [.3 0 1.6 0], G_loc_b = [.4 0 0 .1]
    assert loc.shape == (1, 2, 2, 2)
    assert torch.allclose(loc[0, 0], grid([0.3, 0.0, 1.6, 0.0]), atol=1e-6)
    assert torch.allclose(loc[0, 1], grid([0.4, 0.0, 0.0, 0.1]), atol=1e-6)
    assert torch.isfinite(loc).all()


def test_global_tokens_keep_duplicates():
    assert global_tokens((3, 4, 5), (4, 5)) == [3, 4, 5, 4, 5, 4, 5, 4, 5]
    assert global_tokens((), (2,)) == []


def test_aggregate_validates_arguments():
    with pytest.raises(ValueError):
        aggregate(ATT, GRAD, ROLES, mode="max")
    with pytest.raises(ValueError):
        aggregate(ATT, GRAD, ROLES, no_primary="bug")
    with pytest.raises(ValueError):
        aggregate(ATT, GRAD, TokenRoles((2,), (2,), torch.ones(3, dtype=torch.bool)))
    with pytest.raises(ValueError):
        aggregate(ATT, GRAD[:, :, :4], ROLES)


def test_local_eps_is_1e_minus_8():
    # One 1 x 1 patch, tiny attentions: A_m = 2e-9, A_c = 1e-9 -> D = 1e-9, ‖D‖ = 1e-9 < 1e-8,
    # so D̂ = 1e-9 / 1e-8 = 0.1 (1.0 with a smaller eps, 1e-3 with eps 1e-6).
    # G_loc = D̂ · g_m · (A_m · g_m) = 0.1 · 1 · 2e-9 = 2e-10.
    a = torch.tensor([0.0, 2e-9, 1e-9]).reshape(1, 3, 1, 1)
    g = torch.ones(1, 3, 1, 1)
    loc = local_maps(a, g, primary=(1,), context=(2,))
    assert torch.allclose(loc.flatten(), torch.tensor([2e-10]), rtol=1e-4, atol=0)
