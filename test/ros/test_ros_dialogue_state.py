"""The node's dialogue state (ros/dialogue.py), on the synthetic world's model and ORACLE
proposals without distractors, so the question and the reply are real.

What the node adds to the method's Conversation: its own clock (or the bag's), the timeout read
from the settings at each command, a reset on lifecycle transitions, and a new conversation when
the camera's image changes size (the candidates' masks would not fit the new image).
"""

from __future__ import annotations

import pytest

from iterprime_ros.ros.dialogue import Dialogue, may_be_reply
from iterprime_ros.tools.world.fallback import world_segmenter
from iterprime_ros.tools.world.scenes import generate_scene

pytestmark = pytest.mark.slow

SEED = 30_003_765  # "the cup" fits several objects here (test_node_conversation.py)


@pytest.fixture(scope="module")
def world():
    scene, bigger = generate_scene(SEED), generate_scene(SEED, 160, 192)
    segmenter = world_segmenter()
    segmenter.proposals.distractors = False
    segmenter.proposals.register(scene)
    segmenter.proposals.register(bigger)
    segmenter.update_settings(
        segmenter.settings.replace(
            hold_ambiguous=True, empty_selection="best_heat", dialogue_timeout_s=30.0
        )
    )
    return segmenter, scene, bigger


def _asked(talk: Dialogue, segmenter, image, now: float):
    first = talk.answer(1, "the cup", image, segmenter, now=now)
    assert first.ambiguous and first.question and not first.success
    return first


def test_a_reply_within_the_timeout_is_answered_from_the_question(world):
    segmenter, scene, _ = world
    talk = Dialogue()
    _asked(talk, segmenter, scene.image, now=100.0)
    reply = talk.answer(2, "the left one", scene.image, segmenter, now=129.0)
    assert reply.success and reply.in_reply_to == "1"


def test_the_timeout_is_the_settings_and_read_at_each_command(world):
    segmenter, scene, _ = world
    talk = Dialogue()
    _asked(talk, segmenter, scene.image, now=100.0)
    assert talk.answer(2, "the left one", scene.image, segmenter, now=131.0).in_reply_to == ""
    segmenter.update_settings(segmenter.settings.replace(dialogue_timeout_s=300.0))
    try:
        _asked(talk, segmenter, scene.image, now=200.0)
        assert talk.answer(2, "the left one", scene.image, segmenter, now=400.0).in_reply_to == "1"
    finally:
        segmenter.update_settings(segmenter.settings.replace(dialogue_timeout_s=30.0))


def test_reset_and_a_new_image_size_end_the_conversation(world):
    segmenter, scene, bigger = world
    talk = Dialogue()
    _asked(talk, segmenter, scene.image, now=0.0)
    talk.reset("lifecycle transition (on_deactivate)")
    assert talk.answer(2, "the left one", scene.image, segmenter, now=1.0).in_reply_to == ""
    _asked(talk, segmenter, scene.image, now=2.0)
    other = talk.answer(2, "the left one", bigger.image, segmenter, now=3.0)
    assert other.in_reply_to == "" and other.mask is not None
    assert other.mask.shape == bigger.image.shape[:2]


@pytest.mark.parametrize(
    "text, reply",
    [
        ("no, the other one", True),
        ("not that one", True),
        ("the one next to it", True),
        ("the second one", True),
        ("please", False),
        ("could you pick it up please", False),
    ],
)
def test_replies_are_recognised_by_their_words(text, reply):
    assert may_be_reply(text) is reply


class _Spy:
    """Records what segment() is given (a stand-in segmenter: only the call is checked)."""

    settings = None

    def __init__(self, answer) -> None:
        self.calls: list[dict] = []
        self.answer = answer

    def segment(self, image, command, **options):
        self.calls.append({"command": command, **options})
        return self.answer


def test_the_intake_expression_reaches_the_models_as_is(world):
    """The node normalises a command once, at intake; the models take that expression and
    never normalise it again (Segmenter.segment(expression=...)).
    """
    segmenter, scene, _ = world
    real = segmenter.segment(scene.image, "the cup")
    spy = _Spy(real)
    talk = Dialogue(clock=lambda: 0.0)
    talk.answer(7, "could you grab the cup please", scene.image, spy, expression="the cup")
    assert spy.calls[-1]["command"] == "could you grab the cup please"
    assert spy.calls[-1]["expression"] == "the cup"
    talk.reset("test")
    talk.answer(8, "the cup", scene.image, spy)  # no intake expression: none is passed on
    assert "expression" not in spy.calls[-1]
