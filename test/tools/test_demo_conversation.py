"""`make demo`'s conversation on the committed world model (models/world_blip): the exchange a
voice front end would have, replayed from a bag through the same Conversation as the node.

The world is the only place where the answers can be checked: the scene's true masks say which
object each answer is. The figures are the world model's, never real photographs'.
"""

from __future__ import annotations

import re

import pytest

from iterprime_ros.pipeline import SegmenterSettings
from iterprime_ros.tools.demo_dialogue import EXCHANGE, read_results, run_conversation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    out = tmp_path_factory.mktemp("conversation")
    lines = run_conversation(out, SegmenterSettings(device="cpu"))
    return out, lines, read_results(out / "results.mcap")


def test_one_result_per_utterance_with_overlays(talk):
    out, lines, results = talk
    assert [r.command for r in results] == [u.text for u in EXCHANGE]
    assert len(list((out / "overlays").glob("00[1-5]_*.png"))) >= len(EXCHANGE)
    for k, r in enumerate(results, start=1):
        if not r.success:  # a question or a doubt: its candidates are drawn for the person
            assert (out / "overlays" / f"{k:03d}_candidates.png").is_file()


def test_the_question_the_reply_the_correction_and_the_plural_answer(talk):
    out, lines, results = talk
    text = "\n".join(lines)
    asked = re.search(r'robot asks: "(Which bowl: [^"]+\?)"', text)
    assert asked and asked.group(1) == results[0].question
    assert 'takes "the red one on the left" (confidence 1.00, in reply to command 1, IoU' in text
    ious = [
        float(v)
        for v in re.findall(r"IoU with the object\(s\) meant ([\d. ]+)\)", text)[0].split()
    ]
    assert ious == [1.0]
    assert "in reply to command 2" in text  # the correction resolves the answer refused
    plural = [line for line in lines if "the red one" in line and " and " in line]
    assert plural and plural[0].endswith("meant 1.00 1.00)")


def test_the_weak_answer_is_reported_not_sure(talk):
    out, lines, results = talk
    weak = results[-1]
    assert not weak.success and not weak.sure and weak.mask.width == 0
    assert any(line.startswith('robot: "I am not sure."') for line in lines)
