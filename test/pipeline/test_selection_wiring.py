"""The selection variants reach the pipeline, the node's parameters and the world CLI.

The pipeline runs with a hand-made VLP whose heat peaks on one patch (test_pipeline.FakeVLP, a
stand-in for a model: plumbing only) and crafted proposals: an object's hot core and the whole
object around it.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_pipeline import FakeProposals, FakeVLP

from iterprime_ros.core.selection import select_proposal
from iterprime_ros.core.spatial import spatial_cues
from iterprime_ros.pipeline import Segmenter, SegmenterSettings
from iterprime_ros.ros.params import ParameterError, validate


def _masks():
    h = w = 40
    core = np.zeros((h, w), bool)
    core[10:20, 10:20] = True  # exactly the hot patch (row 1, col 1 of the 4 x 4 grid)
    whole = np.zeros((h, w), bool)
    whole[9:21, 9:21] = True  # the object around it: 0.89 of the core's mean heat
    other = np.zeros((h, w), bool)
    other[28:36, 2:10] = True
    return np.stack([core, whole, other])


def _segment(**settings):
    s = SegmenterSettings(**{"igrs_iterations": 1, "parser": "spacy", **settings})
    seg = Segmenter.from_backends(FakeVLP(), FakeProposals(_masks()), s, raise_unexpected=True)
    image = np.full((40, 40, 3), 100, np.uint8)
    return seg, seg.segment(image, "pick up the cup on the left please")


def test_pipeline_default_is_the_reference_and_whole_changes_the_choice():
    _, ref = _segment()
    assert ref.success and ref.proposal_index == 0  # the hot core, the paper's rule
    _, whole = _segment(selection_score="whole")
    assert whole.success and whole.proposal_index == 1


@pytest.mark.parametrize(
    "score, prior", [("reference", True), ("coverage", False), ("whole", True)]
)
def test_pipeline_hands_its_settings_and_the_expression_cues_to_selection(score, prior):
    seg, r = _segment(selection_score=score, spatial_prior=prior)
    assert r.success and r.expression == "the cup on the left"
    cues = spatial_cues(r.expression) if prior else ()
    assert [c.kind for c in spatial_cues(r.expression)] == ["left"]
    direct = select_proposal(
        r.heatmap, _masks(), settings=seg.settings.selection_settings(), cues=cues
    )
    assert r.proposal_index == direct.index and r.score == direct.score


def test_settings_and_node_parameters_refuse_unknown_variants():
    with pytest.raises(ValueError, match="selection_score"):
        SegmenterSettings(selection_score="best")
    p = validate({"selection_score": "coverage", "spatial_prior": True})
    assert p.segmenter.selection_score == "coverage" and p.segmenter.spatial_prior is True
    assert validate({}).segmenter.selection_score == "reference"
    assert validate({}).segmenter.spatial_prior is False
    with pytest.raises(ParameterError, match="selection_score"):
        validate({"selection_score": "best"})
    with pytest.raises(ParameterError, match="spatial_prior"):
        validate({"spatial_prior": "on"})


def test_eval_cli_variant_flags_apply_to_dataset_runs_too():
    from iterprime_ros.tools.cli import build_parser
    from iterprime_ros.tools.eval.cli import _base_settings

    args = build_parser().parse_args(
        ["eval", "--selection-score", "coverage", "--spatial-prior", "on"]
    )
    s = _base_settings(args)
    assert s.selection_score == "coverage" and s.spatial_prior is True
    plain = _base_settings(build_parser().parse_args(["eval"]))
    assert plain.selection_score == "reference" and plain.spatial_prior is False
