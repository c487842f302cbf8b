"""The world dialogue evaluation: its items are what they claim (by the grammar), its figures
are computed as documented, and a short run goes through the real world model.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from iterprime_ros.core.replies import plural_request
from iterprime_ros.tools.world import dialogue
from iterprime_ros.tools.world.grammar import Desc, candidates, referents


def test_items_are_ambiguous_unique_and_plural_by_the_grammar():
    scenes, items = dialogue.dialogue_set(12, "val")
    kinds = {it.kind for it in items}
    assert kinds == {"unique", "ambiguous", "plural"}
    for it in items:
        scene = scenes[it.scene_index]
        if it.kind == "ambiguous":
            words = it.command.split()[1:]
            desc = Desc(
                words[-1],
                colour=next(
                    (
                        w
                        for w in words
                        if w in ("red", "green", "blue", "yellow", "purple", "white")
                    ),
                    None,
                ),
                size=next((w for w in words if w in ("big", "small")), None),
            )
            assert candidates(desc, scene) == list(it.targets) and len(it.targets) >= 2
            assert it.meant in it.targets and it.reply
        elif it.kind == "plural":
            req = plural_request(it.command)
            assert req is not None and len(it.targets) >= 2
            assert req.count in (None, len(it.targets))
        else:
            assert len(it.targets) == 1


def test_reply_phrases_refer_to_the_meant_object_only():
    from iterprime_ros.tools.world.grammar import make_expression

    scenes, items = dialogue.dialogue_set(6, "val")
    for it in (i for i in items if i.kind == "ambiguous"):
        scene = scenes[it.scene_index]
        rng = np.random.default_rng(0)
        # the reply was produced by the generator for the meant object: it is one of its forms
        found = [make_expression(scene, it.meant, k, rng) for k in ("attribute", "absolute")]
        assert any(f is not None for f in found) or " of " in it.reply or "near" in it.reply
        for f in found:
            if f is not None:
                assert referents(f.expr, scene) == [it.meant]


def test_figures_from_records():
    recs = [
        {
            "kind": "ambiguous",
            "ambiguous": True,
            "hit": False,
            "in_candidates": True,
            "group_recall": 1.0,
            "round_trip": True,
            "corrected": True,
            "confidence": 0.2,
        },
        {
            "kind": "ambiguous",
            "ambiguous": False,
            "hit": True,
            "in_candidates": True,
            "group_recall": 0.5,
            "round_trip": True,
            "confidence": 0.9,
        },
        {
            "kind": "unique",
            "ambiguous": True,
            "hit": False,
            "in_candidates": False,
            "group_recall": 0.0,
            "corrected": False,
            "confidence": 0.1,
        },
        {
            "kind": "unique",
            "ambiguous": False,
            "hit": True,
            "in_candidates": True,
            "group_recall": 1.0,
            "confidence": 0.8,
        },
        {"kind": "plural", "tp": 2, "predicted": 3, "truth": 2},
    ]
    s = dialogue.summarise(recs)
    assert s["ambiguity"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert s["round_trip"] == 1.0 and s["correction"] == 0.5 and s["corrections"] == 2
    assert s["plural"]["precision"] == pytest.approx(2 / 3) and s["plural"]["recall"] == 1.0
    assert s["p50"] == {"50%": 1.0, "80%": 0.5, "100%": 0.5}
    curve = dialogue.risk_coverage([0.9, 0.1, 0.5, 0.7], [True, False, False, True])
    assert [p for _, p in curve] == [1.0, 1.0, pytest.approx(2 / 3), 0.5]


def test_fit_chooses_the_margin_that_separates_and_refuses_the_test_split():
    recs = [{"kind": "ambiguous", "runner_ratio": r, "specific": False} for r in (0.9, 0.8, 0.75)]
    recs += [{"kind": "unique", "runner_ratio": r, "specific": False} for r in (0.2, 0.4, 0.6)]
    # an expression whose words single one object out is never ambiguous, however close
    recs += [{"kind": "unique", "runner_ratio": 0.95, "specific": True}]
    margin = dialogue.fit_margin(recs)
    assert 0.25 <= margin <= 0.4
    args = argparse.Namespace(fit=True, world_split="test")
    assert dialogue.run_dialogue_eval(args) == 2


def test_a_short_run_through_the_world_model(tmp_path):
    from iterprime_ros.pipeline import SegmenterSettings
    from iterprime_ros.tools.world.fallback import world_segmenter

    seg = world_segmenter(SegmenterSettings(plural_commands=True))
    scenes, items = dialogue.dialogue_set(2, "val")
    records = dialogue.run_items(seg, scenes, items)
    dialogue.rescore(records, 0.3, (0.0, 1.0, 1.0, 1.0, 1.0))
    assert [r["kind"] for r in records] == [it.kind for it in items]
    for r in records:
        if r["kind"] == "plural":
            assert r["predicted"] >= 1 and r["truth"] >= 2
        else:
            assert 0.0 <= r["confidence"] <= 1.0 and len(r["features"]) == 4
    s = dialogue.summarise(records)
    dialogue.plot_risk_coverage(s["curve"], tmp_path / "rc.png", "test")
    assert (tmp_path / "rc.png").stat().st_size > 1000


def test_rescore_applies_a_margin_and_weights_as_the_pipeline_would():
    base = {"features": [1.0, 1.0, 1.0, 1.0], "hit": False, "reply_hit": True}
    recs = [
        {**base, "kind": "ambiguous", "runner_ratio": 0.9, "specific": False},
        {**base, "kind": "ambiguous", "runner_ratio": 0.9, "specific": True},
        {**base, "kind": "ambiguous", "runner_ratio": 0.5, "specific": False},
    ]
    dialogue.rescore(recs, 0.2, (0.0, 0.0, 0.0, 0.0, 0.0))
    assert [r["ambiguous"] for r in recs] == [True, False, False]
    assert [r["round_trip"] for r in recs] == [True, False, False]
    assert all(r["confidence"] == 0.5 for r in recs)
