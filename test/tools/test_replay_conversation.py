"""`iterprime replay` answers a recorded conversation as the node does (docs/voice.md "Offline").

A real bag (rosbags) holds a world scene at 1 Hz and a spoken exchange; the replay answers it on
the synthetic world (the world's trained model and ORACLE proposals without distractors, so every
candidate is one whole object of a known scene). The exchange is checked against the candidates
the replay itself offered, not the model's accuracy. The dialogue state follows the bag's
recording time, not the wall clock: a reply recorded long after its question (past
dialogue_timeout_s) is a new command, even though the replay reaches it within a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iterprime_ros.ros.conversions import (
    STATUS_AMBIGUOUS,
    STATUS_ANSWERED,
    STATUS_PLURAL,
    image_to_rgb,
    rgb_to_fields,
)
from iterprime_ros.tools.bags import (
    BagReader,
    BagWriter,
    header,
    image_message,
    partial_name,
    string_message,
)
from iterprime_ros.tools.replay import (
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    RESULT_TOPIC,
    ReplayConfig,
    replay_bag,
)
from iterprime_ros.tools.world.fallback import world_segmenter
from iterprime_ros.tools.world.scenes import generate_scene

pytestmark = pytest.mark.slow

SEED = 30_003_765  # six objects, three of them small cups
START = 1_700_000_000 * 1_000_000_000
TIMEOUT_S = 60.0
# (seconds after START, utterance)
EXCHANGE = (
    (1.5, "the cup"),
    (2.5, "the left one"),
    (3.5, "no, the other one"),
    (4.5, "all the cups"),
    (5.5, "the cup"),
    (5.5 + TIMEOUT_S + 10.0, "the left one"),  # long after: the question has expired
)


def _write(path: Path, scene) -> None:
    fields = rgb_to_fields(scene.image, "rgb8")
    with BagWriter(path, overwrite=True) as bag:
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image", qos="sensor")
        bag.add_topic(COMMAND_TOPIC, "std_msgs/msg/String", qos="reliable")
        frames = sorted({int(t) for t, _ in EXCHANGE} | {int(t) + 1 for t, _ in EXCHANGE})
        rows = [(START + k * 1_000_000_000, "image", None) for k in frames]
        rows += [(START + int(t * 1e9), "command", text) for t, text in EXCHANGE]
        for t, kind, text in sorted(rows, key=lambda r: r[0]):
            if kind == "image":
                bag.write(IMAGE_TOPIC, image_message(fields, header(t, "world_camera")), t)
            else:
                bag.write(COMMAND_TOPIC, string_message(text), t)


def _which(msg_mask, scene) -> int:
    mask = image_to_rgb(msg_mask)[:, :, 0] > 0
    for i, truth in enumerate(scene.masks):
        if (mask & truth).sum() / max(1, (mask | truth).sum()) >= 0.9:
            return i
    return -1


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dialogue")
    scene = generate_scene(SEED)
    _write(folder / "talk.mcap", scene)
    summary = replay_bag(
        folder / "talk.mcap", folder / "out.mcap", _segmenter(scene), ReplayConfig()
    )
    with BagReader(folder / "out.mcap") as bag:
        results = [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]
    return summary, results, scene


def test_the_replay_answers_the_conversation_like_the_node(replayed):
    summary, results, scene = replayed
    assert [r.command for r in results] == [text for _, text in EXCHANGE]
    asked, chosen, other, plural, asked_again, late = results
    assert asked.status == STATUS_AMBIGUOUS and not asked.success and asked.question
    offered = [_which(c.mask, scene) for c in asked.candidates]
    assert len(offered) >= 2 and -1 not in offered
    leftmost = offered[int(np.argmin([c.centroid_px.x for c in asked.candidates]))]
    assert chosen.success and chosen.status == STATUS_ANSWERED
    assert chosen.in_reply_to == asked.command_id and _which(chosen.mask, scene) == leftmost
    assert other.success and other.in_reply_to == chosen.command_id
    assert _which(other.mask, scene) in set(offered) - {leftmost}
    assert plural.status == STATUS_PLURAL and plural.in_reply_to == 0
    found = [_which(o.mask, scene) for o in plural.objects]
    assert len(found) >= 2 and -1 not in found
    xs = [o.centroid_px.x for o in plural.objects]
    assert xs == sorted(xs)
    assert asked_again.status == STATUS_AMBIGUOUS
    # recorded 70 s after the question: expired on the bag's clock, so a new command
    assert late.in_reply_to == 0


def test_replaying_twice_gives_the_same_answers(replayed, tmp_path):
    summary, results, scene = replayed
    again = replay_bag(
        Path(summary.output).parent / "talk.mcap",
        tmp_path / "again.mcap",
        _segmenter(scene),
        ReplayConfig(),
    )
    with BagReader(again.output) as bag:
        second = [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]
    keys = ("status", "success", "in_reply_to", "question", "confidence")
    assert [[getattr(r, k) for k in keys] for r in second] == [
        [getattr(r, k) for k in keys] for r in results
    ]
    for a, b in zip(results, second):
        assert np.array_equal(a.mask.data, b.mask.data)


@pytest.mark.parametrize("stop_after", [1, 2, 5])
def test_an_interrupted_replay_resumes_the_conversation_where_it_stood(
    replayed, tmp_path, stop_after
):
    """Interrupted after the question (1), after the answer to its reply (2: the correction
    must still refuse it) or after the second question (5: its late reply has still expired),
    the resumed replay answers the rest as the uninterrupted one did.
    """
    summary, results, scene = replayed
    source = Path(summary.output).parent / "talk.mcap"
    out = tmp_path / "resumed.mcap"
    answered: list[bool] = []

    def interrupt(line: str) -> None:
        if line.startswith("["):
            answered.append(True)
        if len(answered) == stop_after:  # Ctrl-C right after that answer
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay_bag(source, out, _segmenter(scene), ReplayConfig(), echo=interrupt)
    with BagReader(partial_name(out)) as bag:
        kept = [bag.deserialize(m).command_id for m in bag.messages([RESULT_TOPIC])]
    assert kept == list(range(1, stop_after + 1))
    resumed = replay_bag(source, out, _segmenter(scene), ReplayConfig(), echo=lambda _: None)
    assert resumed.resumed == stop_after
    with BagReader(out) as bag:
        second = [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]
    keys = ("command_id", "status", "success", "in_reply_to", "question", "expression")
    assert [[getattr(r, k) for k in keys] for r in second] == [
        [getattr(r, k) for k in keys] for r in results
    ]
    for a, b in zip(results, second):
        assert np.array_equal(a.mask.data, b.mask.data)


def _segmenter(scene):
    """The world segmenter as the conversation test's node runs it (test/helpers/world_node.py)."""
    segmenter = world_segmenter()
    segmenter.proposals.distractors = False
    segmenter.proposals.register(scene)
    segmenter.update_settings(
        segmenter.settings.replace(
            hold_ambiguous=True,
            plural_commands=True,
            dialogue_timeout_s=TIMEOUT_S,
            empty_selection="best_heat",
        )
    )
    return segmenter
