"""`iterprime replay --track`: a bag of a moving world scene produces the track after a command.

The bag holds a world sequence (tools/world/sequences.py: the camera pans until the target
leaves the image, then back) at 30 fps and one command on the first frame. The segmenter is a
STAND-IN that answers with the target's true mask (the replay, not the method, is under test;
the real models run in test_replay.py and the node tests). What the tracker then writes on
/iterprime_segmenter/track is compared with the sequence's true masks.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_bags import COMMAND, IMAGE, SAMPLE, T0, S, image_msg, write_bag

from iterprime_ros.pipeline import SegmentationResult
from iterprime_ros.tools.bags import BagReader, string_message
from iterprime_ros.tools.replay import RESULT_TOPIC, ReplayConfig, replay_bag
from iterprime_ros.tools.replay_track import TRACK_TOPIC
from iterprime_ros.tools.world.sequences import generate_sequence, sequence_seeds
from iterprime_ros.tracking import TrackerSettings, TrackStatus

FRAME_NS = S // 30


class TrueMaskStandIn:
    """STAND-IN segmenter: answers with the true target mask of the frame it is given."""

    def __init__(self, seq) -> None:
        self.seq = seq

    def segment(self, image: np.ndarray, command: str) -> SegmentationResult:
        t = next(i for i in range(len(self.seq)) if np.array_equal(self.seq.frames[i], image))
        mask = self.seq.masks[t, self.seq.target]
        return SegmentationResult(
            success=True, error="", command=command, expression=command, mask=mask,
            centroid=(1.0, 1.0), grasp_point=(1, 1), bbox=(0, 0, 1, 1), score=1.5,
        )  # fmt: skip


def test_replay_writes_the_track_and_ends_it_when_the_target_leaves(tmp_path):
    seq = generate_sequence("leave", sequence_seeds("val", 1)[0])
    times = [T0 + t * FRAME_NS for t in range(len(seq))]
    events = [(t_ns, IMAGE, image_msg(t_ns, frame)) for t_ns, frame in zip(times, seq.frames)]
    events.append((T0 + FRAME_NS // 2, COMMAND, string_message("the object")))
    bag = write_bag(tmp_path / "in.mcap", events)
    cfg = ReplayConfig(track=True, track_settings=TrackerSettings(max_lost_s=0.1))
    summary = replay_bag(
        bag, tmp_path / "out.mcap", TrueMaskStandIn(seq), cfg, echo=lambda _: None
    )
    assert summary.succeeded == 1

    with BagReader(tmp_path / "out.mcap") as out:
        results = [out.deserialize(m) for m in out.messages([RESULT_TOPIC])]
        track = [out.deserialize(m) for m in out.messages([TRACK_TOPIC])]
    assert len(results) == 1 and results[0].track_status == 0  # ~/result: one, not a track
    assert track, "no track messages"
    assert {m.track_id for m in track} == {1}
    # one message per later frame until the track ends, each with its own image's stamp
    stamps = [m.header.stamp.sec * S + m.header.stamp.nanosec for m in track]
    assert stamps == [T0 + t * FRAME_NS for t in range(1, len(track) + 1)]
    statuses = [m.track_status for m in track]
    first_gone = int(np.flatnonzero(seq.masks[:, seq.target].sum(axis=(1, 2)) == 0)[0])
    tracked = [i for i, s in enumerate(statuses, start=1) if s == TrackStatus.TRACKING]
    assert tracked and tracked[0] == 1 and max(tracked) < first_gone
    for m in track:
        if m.track_status == TrackStatus.TRACKING:
            t = stamps[track.index(m)] // FRAME_NS - T0 // FRAME_NS
            truth = seq.masks[t, seq.target]
            got = np.frombuffer(bytes(m.mask.data), np.uint8).reshape(truth.shape) > 0
            assert (got & truth).sum() / (got | truth).sum() > 0.6
            assert m.success and m.expression == "the object"
    assert statuses[-1] == TrackStatus.ENDED
    assert track[-1].track_reason.startswith("lost for more than 0.1 s: left the image")
    lost = [m for m in track if m.track_status == TrackStatus.LOST]
    assert lost and all(m.track_reason == "left the image" and not m.success for m in lost)


@pytest.mark.slow
def test_cli_replay_track_with_tiny_models_and_proposals(tiny_model_dirs, tmp_path, capsys):
    """`iterprime replay --track --track-proposals-every 2` end to end on the sample bag with the
    real Segmenter (tiny random weights: plumbing only): every successful command starts a track
    that ends (replaced, or at the end of the bag) and every track message has its own image's
    stamp, with re-association (Segmenter.frame_proposals) switched on.
    """
    from iterprime_ros.tools.cli import main

    out = tmp_path / "tracked.mcap"
    code = main(
        ["replay", str(SAMPLE), str(out), "--vlp", str(tiny_model_dirs.blip),
         "--proposals", str(tiny_model_dirs.mask2former), "--device", "cpu",
         "--set", "proposal_shortest_edge=120", "--set", "proposal_longest_edge=160",
         "--set", "empty_selection=best_heat", "--track", "--track-proposals-every", "2"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().out
    with BagReader(out) as bag:
        results = [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]
        track = [bag.deserialize(m) for m in bag.messages([TRACK_TOPIC])]
        images = set(_image_stamps(SAMPLE))
    ok = [r.command_id for r in results if r.success]
    assert ok, "the tiny models answered nothing"
    ended = [m.track_id for m in track if m.track_status == TrackStatus.ENDED]
    assert sorted(ended) == sorted(ok)  # every track ends exactly once
    assert {m.track_id for m in track} == set(ok)
    per_frame = [m for m in track if m.track_status != TrackStatus.ENDED]
    assert all(m.header.stamp.sec * S + m.header.stamp.nanosec in images for m in per_frame)


def _image_stamps(path):
    with BagReader(path) as bag:
        return [
            (lambda h: h.stamp.sec * S + h.stamp.nanosec)(bag.deserialize(m).header)
            for m in bag.messages([IMAGE])
        ]
