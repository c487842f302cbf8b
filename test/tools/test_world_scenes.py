"""The world generator, grammar, hard negatives and oracle proposals (no model needed)."""

import numpy as np
import pytest

from iterprime_ros.tools.world.grammar import (
    COMMAND_TEMPLATES,
    Desc,
    Expr,
    hard_negative,
    hard_negative_expr,
    is_false,
    referents,
    refers_uniquely,
    scene_expressions,
)
from iterprime_ros.tools.world.oracle import OracleProposals, oracle_proposals
from iterprime_ros.tools.world.scenes import COLOURS, SHAPES, generate_scene, scene_seeds

SEEDS = list(range(40))


def test_same_seed_same_scene_and_expressions():
    a, b = generate_scene(1234), generate_scene(1234)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert a.objects == b.objects
    ea = scene_expressions(a, np.random.default_rng(5), per_scene=3)
    eb = scene_expressions(b, np.random.default_rng(5), per_scene=3)
    assert [(e.command, e.target) for e in ea] == [(e.command, e.target) for e in eb]
    c = generate_scene(1235)
    assert not np.array_equal(a.image, c.image)


def test_seed_splits_are_disjoint():
    train = set(scene_seeds("train", 1000, offset=9_000_000))
    val, test = set(scene_seeds("val", 1000)), set(scene_seeds("test", 1000))
    assert not (train & val) and not (train & test) and not (val & test)


@pytest.mark.parametrize("seed", SEEDS[:20])
def test_masks_are_exact(seed):
    s = generate_scene(seed)
    n = len(s.objects)
    assert 3 <= n <= 6 and s.masks.shape == (n, 128, 128) and s.masks.dtype == bool
    assert s.masks.sum(axis=0).max() <= 1  # disjoint
    for obj, m in zip(s.objects, s.masks):
        ys, xs = np.nonzero(m)
        assert obj.area == int(m.sum()) == len(xs) > 0  # pixel counts
        assert obj.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert obj.centroid == pytest.approx((xs.mean() + 0.5, ys.mean() + 0.5))
        assert obj.shape in SHAPES and obj.colour in COLOURS
        # the object's pixels carry its colour (noise +-~12, shading <= 15 %), the ring around it
        # does not
        rgb = s.image[m].astype(float).mean(axis=0)
        target = np.asarray(COLOURS[obj.colour], float)
        assert np.abs(rgb - target).max() < 45
    table = ~s.masks.any(axis=0)
    assert (
        np.abs(s.image[table].astype(float).mean(axis=0) - np.asarray(s.table, float)).max() < 25
    )


def test_ball_mask_is_a_disc():
    # A ball's mask is a disc: area ~ pi r^2 with r from the bbox, filled, no holes.
    for seed in range(200):
        s = generate_scene(seed)
        for obj, m in zip(s.objects, s.masks):
            if obj.shape == "ball":
                x0, y0, x1, y1 = obj.bbox
                r = (x1 - x0) / 2
                assert abs(obj.area - np.pi * r * r) / (np.pi * r * r) < 0.12
                assert abs((x1 - x0) - (y1 - y0)) <= 1
                return
    pytest.fail("no ball in 200 scenes")


@pytest.mark.parametrize("seed", SEEDS)
def test_expressions_refer_to_exactly_one_object(seed):
    s = generate_scene(seed)
    rng = np.random.default_rng(seed)
    exprs = scene_expressions(s, rng, per_scene=4, command_prob=0.5)
    assert exprs, "every scene yields expressions"
    for r in exprs:
        assert refers_uniquely(r.expr, s, r.target)
        assert referents(r.expr, s, strict=True) == [r.target]
        assert set(referents(r.expr, s, strict=False)) == {r.target}
        assert r.expr.text == r.text
        if r.is_command:
            assert any(t.format(r.text) == r.command for t in COMMAND_TEMPLATES)
        if r.kind == "relation":
            assert r.anchor is not None and r.anchor != r.target


def test_uniqueness_is_checked_by_meaning():
    # Two red balls: "the red ball" is ambiguous and never emitted; position tells them apart.
    for seed in range(500):
        s = generate_scene(seed)
        reds = [i for i, o in enumerate(s.objects) if (o.shape, o.colour) == ("ball", "red")]
        if len(reds) == 2:
            e = Expr("attribute", Desc("ball", "red"))
            assert sorted(referents(e, s)) == sorted(reds)
            assert not refers_uniquely(e, s, reds[0]) and not refers_uniquely(e, s, reds[1])
            left = min(reds, key=lambda i: s.objects[i].centroid[0])
            right = max(reds, key=lambda i: s.objects[i].centroid[0])
            lm = Expr("absolute", Desc("ball", "red"), "left", "super")
            if s.objects[right].centroid[0] - s.objects[left].centroid[0] >= 8:
                assert refers_uniquely(lm, s, left)
            return
    pytest.fail("no scene with two red balls")


def test_grammar_covers_all_forms():
    kinds, words = set(), set()
    for seed in range(150):
        s = generate_scene(seed)
        for r in scene_expressions(s, np.random.default_rng(seed), per_scene=3, command_prob=0.5):
            kinds.add(r.kind)
            words.update(r.command.split())
    assert kinds == {"attribute", "absolute", "relation"}
    for w in (
        "leftmost",
        "rightmost",
        "top",
        "bottom",
        "left",
        "right",
        "next",
        "above",
        "below",
        "grab",
        "one",
    ):
        assert w in words, w


@pytest.mark.parametrize("seed", SEEDS)
def test_hard_negatives_are_false_and_differ(seed):
    s = generate_scene(seed)
    rng = np.random.default_rng(seed + 1)
    seen = set()
    for r in scene_expressions(s, rng, per_scene=3):
        for types in (
            ("colour",),
            ("shape",),
            ("size",),
            ("relation", "roles"),
            ("position",),
            None,
        ):
            got = (
                hard_negative_expr(r.expr, s, rng)
                if types is None
                else hard_negative_expr(r.expr, s, rng, types)
            )
            if got is None:
                continue
            neg, kind = got
            seen.add(kind)
            assert neg.text != r.text and neg != r.expr
            assert types is None or kind in types
            assert referents(neg, s, strict=False) == [] and is_false(neg, s)
            if kind in ("colour", "shape", "size") and neg.kind == "attribute":
                # independent check: no object has all the stated attributes
                d = neg.target
                assert not any(
                    (d.noun in ("one", o.shape))
                    and d.colour in (None, o.colour)
                    and d.size in (None, o.size)
                    for o in s.objects
                )
            if kind == "relation":
                assert neg.direction != r.expr.direction
    assert seen


def test_negative_kinds_all_occur():
    kinds = set()
    for seed in range(80):
        s = generate_scene(seed)
        rng = np.random.default_rng(seed)
        for r in scene_expressions(s, rng, per_scene=3):
            special = {"relation": ("relation", "roles"), "absolute": ("position",)}.get(
                r.kind, ()
            )
            for types in [special] if special else []:
                got = hard_negative(r.expr, s, rng, types)
                if got:
                    kinds.add(got[1])
            got = hard_negative(r.expr, s, rng)
            if got:
                kinds.add(got[1])
    assert kinds == {"colour", "shape", "size", "relation", "roles", "position"}


def test_oracle_proposals_hold_true_masks_and_named_distractors():
    s = generate_scene(7)
    o = oracle_proposals(s)
    n = len(s.objects)
    assert o.masks.shape[1:] == (128, 128) and len(o.names) == len(o.kinds) == o.masks.shape[0]
    for i in range(n):
        assert np.array_equal(o.masks[o.index_of_object(i)], s.masks[i])
    kinds = set(o.kinds)
    assert kinds == {"object", "merged", "partial", "table"}
    for m, name, kind, objs in zip(o.masks, o.names, o.kinds, o.objects):
        if kind == "merged":
            assert name.startswith("merged") and np.array_equal(
                m, s.masks[objs[0]] | s.masks[objs[1]]
            )
        if kind == "partial":
            assert (
                "half" in name
                and (m & ~s.masks[objs[0]]).sum() == 0
                and 0 < m.sum() < s.masks[objs[0]].sum()
            )
        if kind == "table":
            assert not (m & s.masks.any(0)).any()
    assert any(o.kinds[k] != "object" for k in range(n))  # shuffled: distractors among the first n
    assert oracle_proposals(s).names == o.names  # deterministic

    backend = OracleProposals()
    backend.register(s)
    got = backend.propose(s.image.copy())
    assert np.array_equal(got, o.masks) and got.dtype == bool
    with pytest.raises(KeyError, match="not a registered world scene"):
        backend.propose(generate_scene(8).image)


def test_oracle_implements_proposal_protocol():
    from iterprime_ros.core.backend import ProposalBackend

    assert isinstance(OracleProposals(), ProposalBackend)
