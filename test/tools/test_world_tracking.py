"""World sequences (true masks per frame) and the tracker evaluation built on them."""

from __future__ import annotations

import numpy as np
import pytest

from iterprime_ros.tools.cli import main as cli_main
from iterprime_ros.tools.world.oracle import oracle_proposals
from iterprime_ros.tools.world.sequences import (
    FRAME_H,
    FRAME_W,
    KINDS,
    generate_sequence,
    sequence_seeds,
)
from iterprime_ros.tools.world.tracking_eval import SETUPS, run_sequence
from iterprime_ros.tracking import TrackerSettings

SEED = sequence_seeds("val", 1)[0]


@pytest.fixture(scope="module")
def sequences():
    return {k: generate_sequence(k, SEED) for k in KINDS}


def test_sequences_are_deterministic_and_masks_exact(sequences):
    again = generate_sequence("occluder", SEED)
    seq = sequences["occluder"]
    assert np.array_equal(again.frames, seq.frames) and np.array_equal(again.masks, seq.masks)
    for s in sequences.values():
        assert s.frames.shape == (30, FRAME_H, FRAME_W, 3)
        assert s.masks.shape[:2] == (30, len(s.objects))
        assert (s.masks.sum(axis=1) <= 1).all(), "visible masks must not overlap"
        assert s.masks[0, s.target].any(), "the target is in the first frame"


def test_each_kind_does_what_it_says(sequences):
    area = {k: s.masks[:, s.target].sum(axis=(1, 2)) for k, s in sequences.items()}
    leave = area["leave"]
    gone = np.flatnonzero(leave == 0)
    assert gone.size >= 5 and leave[-1] > 0.8 * leave[0], "leaves the image and comes back"
    occ = area["occluder"]
    assert occ.min() < 0.6 * occ[0] and occ[-1] > 0.8 * occ[0], "an occluder passes over it"
    z = area["zoom"]
    assert z.max() / z.min() > 1.5, "zooming changes the target's size"
    for kind in ("pan", "move"):
        s = sequences[kind]
        ys0, xs0 = np.nonzero(s.masks[0, s.target])
        ys1, xs1 = np.nonzero(s.masks[-1, s.target])
        assert np.hypot(xs1.mean() - xs0.mean(), ys1.mean() - ys0.mean()) > 20, kind


def test_per_frame_scene_feeds_the_oracle(sequences):
    seq = sequences["leave"]
    t = int(np.flatnonzero(seq.masks[:, seq.target].sum(axis=(1, 2)) == 0)[0])
    scene, ids = seq.scene(t)
    assert seq.target not in ids  # out of the image: not offered
    oset = oracle_proposals(scene)
    assert all(
        np.array_equal(oset.masks[oset.index_of_object(j)], seq.masks[t, ids[j]])
        for j in range(len(ids))
    )


def test_reassociation_recovers_what_propagation_alone_cannot(sequences):
    by_name = {s.name: s for s in SETUPS}
    settings = TrackerSettings()
    for kind in ("leave", "occluder"):
        seq = sequences[kind]
        flow_only = run_sequence(seq, by_name["propagation (DIS)"], settings)
        both = run_sequence(seq, by_name["both (DIS), every frame"], settings)
        miou = lambda r: r["iou_visible_sum"] / r["visible"]  # noqa: E731
        assert miou(both) > miou(flow_only) + 0.2, kind
        assert both["lost_visible"] < flow_only["lost_visible"], kind
        assert flow_only["shown_absent"] == 0, "a track must not show a mask of a hidden object"


def test_cli_prints_the_tracking_table(capsys, tmp_path):
    out = tmp_path / "tracking.json"
    code = cli_main(
        ["eval", "--world", "--tracking", "--sequences-per-kind", "1", "--json-out", str(out)]
    )
    assert code == 0
    text = capsys.readouterr().out
    for setup in SETUPS:
        assert setup.name in text
    assert "CPU cost per frame" in text
    assert out.is_file()
