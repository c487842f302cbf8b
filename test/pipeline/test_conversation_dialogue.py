"""Conversation: a question, its reply, corrections, "the one next to it", timeouts, and the
paper's answer kept when the dialogue options are off.

The segmenter is the real pipeline.Segmenter with a hand-made VLP (a stand-in whose attention
peaks on chosen patches, so the heat over the objects is known) and fixed proposals: this tests
the dialogue's rules, not accuracy (the world evaluation measures that).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iterprime_ros.conversation import CHOICE, CORRECTION, NEW, Conversation
from iterprime_ros.core.backend import PassOutput
from iterprime_ros.core.command import normalise_command
from iterprime_ros.core.selection import select_proposal
from iterprime_ros.pipeline import Segmenter, SegmenterSettings

H, W, G = 40, 40, 4


class PeaksVLP:
    """Hand-made VLP: every token attends to the patches in `hot` with the given weights."""

    grid = G

    def __init__(self, hot: dict[int, float]):
        self.hot = hot

    def encode_image(self, image):
        return float(image.mean())

    def token_offsets(self, text):
        import re

        return [None] + [(m.start(), m.end()) for m in re.finditer(r"\S+", text)] + [None]

    def text_pass(self, emb, text, keep):
        n = len(self.token_offsets(text))
        att = torch.full((2, n, G * G + 1), 0.01)
        for patch, weight in self.hot.items():
            att[:, :, 1 + patch] = weight
        att = att / att.sum(-1, keepdim=True)
        valid = torch.ones(n, dtype=torch.bool)
        valid[-1] = False
        return PassOutput(torch.tensor([0.0, 1.0]), att, torch.ones_like(att), valid)


class Proposals:
    def __init__(self, masks):
        self.masks = masks

    def propose(self, image):
        return self.masks


def _world():
    """A red cup on the left (patch 5), a blue cup on the right (patch 7), a green box below
    the red one (patch 9), and the table.
    """
    masks = np.zeros((4, H, W), bool)
    masks[0, 11:19, 11:19] = True
    masks[1, 11:19, 31:39] = True
    masks[2, 21:29, 11:19] = True
    masks[3] = True
    image = np.full((H, W, 3), 140, np.uint8)
    image[masks[0]] = (210, 35, 35)
    image[masks[1]] = (40, 80, 215)
    image[masks[2]] = (40, 160, 60)
    return image, masks


def _segmenter(hot, **settings):
    _, masks = _world()
    s = SegmenterSettings(**{"igrs_iterations": 1, "parser": "spacy", **settings})
    return Segmenter.from_backends(PeaksVLP(hot), Proposals(masks), s, raise_unexpected=True)


def test_an_even_heat_asks_which_one_and_the_reply_chooses_without_the_models():
    image, masks = _world()
    seg = _segmenter({5: 1.0, 7: 1.0, 9: 0.2})
    talk = Conversation(timeout_s=30)
    first = talk.answer("c1", "the cup", image, seg, now=0.0)
    assert first.success and first.ambiguous and first.in_reply_to == ""
    assert first.question.startswith("Which cup: ")
    # the same heat with words that single one out: no question
    assert not seg.segment(image, "the leftmost cup").ambiguous
    assert not seg.segment(image, "the blue cup").ambiguous
    assert (
        "the red one on the left" in first.question
        and "the blue one on the right" in first.question
    )
    assert talk.pending_question == first.question
    runs = seg.stats["commands"]
    reply = talk.answer("c2", "the blue one", image, seg, now=5.0)
    assert seg.stats["commands"] == runs  # chosen among the candidates, models not run
    assert reply.success and reply.in_reply_to == "c1" and not reply.ambiguous
    assert np.array_equal(reply.mask, masks[1]) and reply.proposal_index == 1
    assert reply.confidence == 1.0
    # a correction after that answer gives the other cup, never the refused blue one
    fixed = talk.answer("c3", "no, the other one", image, seg, now=6.0)
    assert fixed.in_reply_to == "c2" and fixed.success
    assert fixed.proposal_index != 1
    again = talk.answer("c4", "not that one", image, seg, now=7.0)
    assert again.proposal_index not in (1, fixed.proposal_index)


class WordsVLP(PeaksVLP):
    """The hand-made VLP with a second heat for texts that contain a given word."""

    def __init__(self, hot, word, hot_for_word):
        super().__init__(hot)
        self.word, self.hot_for_word, self.default = word, hot_for_word, hot

    def text_pass(self, emb, text, keep):
        self.hot = self.hot_for_word if self.word in text.split() else self.default
        return super().text_pass(emb, text, keep)


def test_a_reply_the_words_cannot_settle_runs_the_models_once_among_the_candidates():
    image, masks = _world()
    s = SegmenterSettings(igrs_iterations=1, parser="spacy")
    vlp = WordsVLP({5: 1.0, 7: 1.0}, "above", {5: 1.0, 9: 0.6})
    seg = Segmenter.from_backends(vlp, Proposals(masks), s, raise_unexpected=True)
    talk = Conversation()
    first = talk.answer("a", "the cup", image, seg, now=0.0)
    assert first.ambiguous
    runs = seg.stats["commands"]
    reply = talk.answer("b", "the cup above the green box", image, seg, now=1.0)
    assert seg.stats["commands"] == runs + 1
    assert reply.in_reply_to == "a" and reply.proposal_index == 0


def test_the_left_one_and_the_second_one_choose_by_place_and_order():
    image, masks = _world()
    for text, index in (("the left one", 0), ("the one on the right", 1)):
        seg = _segmenter({5: 1.0, 7: 1.0})
        talk = Conversation()
        first = talk.answer("a", "the cup", image, seg, now=0.0)
        assert first.ambiguous
        assert talk.answer("b", text, image, seg, now=1.0).proposal_index == index
    seg = _segmenter({5: 1.0, 7: 1.0})
    talk = Conversation()
    first = talk.answer("a", "the cup", image, seg, now=0.0)
    second = first.candidates[1].proposal_index
    assert talk.answer("b", "the second one", image, seg, now=1.0).proposal_index == second


def test_correction_never_returns_a_refused_object_and_ends_with_a_clear_failure():
    image, _ = _world()
    seg = _segmenter({5: 1.0, 9: 0.3}, max_candidates=2)
    talk = Conversation()
    first = talk.answer("a", "the red cup", image, seg, now=0.0)
    assert first.success and not first.ambiguous and first.proposal_index == 0
    assert talk.interpret("not that one", now=1.0).kind == CORRECTION
    second = talk.answer("b", "not that one", image, seg, now=1.0)
    assert second.success and second.proposal_index == first.candidates[1].proposal_index != 0
    third = talk.answer("c", "no, the other one", image, seg, now=2.0)
    assert not third.success and "no other candidate" in third.error
    assert third.in_reply_to == "b"


def test_the_one_next_to_it_uses_the_last_answer_as_anchor():
    image, _ = _world()
    seg = _segmenter({5: 1.0, 7: 0.3, 9: 0.3})
    talk = Conversation()
    first = talk.answer("a", "the red cup", image, seg, now=0.0)
    assert first.proposal_index == 0
    near = talk.answer("b", "the one next to it", image, seg, now=1.0)
    assert near.in_reply_to == "a" and near.proposal_index in (1, 2)


def test_timeout_new_commands_and_replies_with_nothing_pending():
    image, _ = _world()
    seg = _segmenter({5: 1.0, 7: 1.0})
    talk = Conversation(timeout_s=10)
    assert talk.interpret("the left one", now=0.0).kind == NEW  # nothing pending
    first = talk.answer("a", "the cup", image, seg, now=0.0)
    assert first.ambiguous
    assert talk.interpret("the left one", now=5.0).kind == CHOICE
    assert talk.interpret("grab the green box", now=5.0).kind == NEW  # unrelated: a new command
    assert talk.interpret("the left one", now=11.0).kind == NEW  # the question timed out
    assert talk.reset_reason == "timeout"
    talk.answer("b", "the cup", image, seg, now=20.0)
    talk.reset("lifecycle transition")
    assert talk.pending_question == "" and talk.interpret("the left one", 21.0).kind == NEW


def test_not_sure_answers_keep_their_candidates_but_are_no_target():
    image, masks = _world()
    seg = _segmenter({5: 1.0, 7: 1.0}, min_confidence=0.99)
    r = seg.segment(image, "the cup")
    assert not r.success and not r.sure and r.error.startswith("not sure:")
    assert r.mask is not None and len(r.candidates) >= 2
    held = _segmenter({5: 1.0, 7: 1.0}, hold_ambiguous=True).segment(image, "the cup")
    assert not held.success and held.error.startswith("ambiguous: Which cup")


def test_plural_commands_return_every_matching_object_left_to_right():
    image, masks = _world()
    seg = _segmenter({5: 1.0, 7: 0.9, 9: 0.05}, plural_commands=True)
    r = seg.segment(image, "both cups")
    assert r.success and r.plural and r.expression == "both cups"
    assert [o.proposal_index for o in r.objects] == [0, 1]
    assert r.objects[0].centroid[0] < r.objects[1].centroid[0]
    reds = seg.segment(image, "all the red cups")
    assert [o.proposal_index for o in reds.objects] == [0]  # the stated colour, from pixels
    single = seg.segment(image, "the red cup")
    assert not single.plural and len(single.objects) == 1


def test_the_paper_answer_is_unchanged_with_the_dialogue_options_off():
    image, masks = _world()
    default = SegmenterSettings()
    assert (default.min_confidence, default.hold_ambiguous, default.plural_commands) == (
        0.0,
        False,
        False,
    )
    for hot in ({5: 1.0, 7: 1.0}, {5: 1.0, 9: 0.4}, {7: 1.0}, {9: 1.0, 5: 0.8}):
        seg = _segmenter(hot)
        for text in ("the cup", "please grab both cups", "the red one"):
            r = seg.segment(image, text)
            sel = select_proposal(r.heatmap, masks)
            assert r.success and r.proposal_index == sel.index
            assert np.array_equal(r.mask, masks[sel.index])
            assert r.objects[0].proposal_index == sel.index


def test_an_already_normalised_expression_is_used_as_is():
    image, _ = _world()
    seg = _segmenter({5: 1.0})
    settings = seg.settings.normaliser_settings()
    text = "robot, could you please pick up the red cup"
    expression = normalise_command(text, settings)
    given = seg.segment(image, text, expression=expression)
    own = seg.segment(image, text)
    assert given.expression == own.expression == expression
    assert "normalise" not in given.timings and "normalise" in own.timings
    assert given.proposal_index == own.proposal_index
    odd = seg.segment(image, text, expression="the blue cup")
    assert odd.command == text and odd.expression == "the blue cup"


@pytest.mark.parametrize(
    "bad", [{"min_confidence": 1.5}, {"max_candidates": 0}, {"ambiguity_margin": 1.0}]
)
def test_dialogue_settings_are_checked(bad):
    with pytest.raises(ValueError):
        SegmenterSettings(**bad)


def test_a_new_command_while_a_question_is_pending_is_a_new_command():
    """After "Which cup?", a command that names another object is not an answer to it, however
    short ("the bowl"); one whose words fit no candidate but say the noun ("find the white cup")
    is a whole expression the models answer; a plural command is new too. Only commands whose
    object words are all the question's noun choose among the candidates.
    """
    image, _ = _world()
    seg = _segmenter({5: 1.0, 7: 1.0, 9: 0.2})
    talk = Conversation(timeout_s=30)
    assert talk.answer("a", "the cup", image, seg, now=0.0).ambiguous
    for command in ("the bowl", "grab the green box", "the bowl next to the cup", "both cups"):
        assert talk.interpret(command, now=1.0).kind == NEW, command
    for command in ("the red cup", "the left one", "second", "the cup above the green box"):
        assert talk.interpret(command, now=1.0).kind == CHOICE, command
    runs = seg.stats["commands"]
    white = talk.answer("b", "find the white cup", image, seg, now=2.0)
    assert seg.stats["commands"] == runs + 1 and white.in_reply_to == ""
    assert "did not pick" not in white.error


def test_names_other_object_reads_the_head_of_the_command():
    from iterprime_ros.core.replies import mentions_noun, names_other_object

    assert names_other_object("the bowl", "cup")
    assert names_other_object("could you grab the blue box please", "cup")
    assert not names_other_object("could you pick up the red cups please", "cup")
    assert not names_other_object("no, the other one", "cup")
    assert not names_other_object("the cup left of the bowl", "cup")
    assert mentions_noun("find the white balls", "ball") and not mentions_noun("it", "ball")


def _offered(result) -> list[str]:
    """The candidates' descriptions that the question names."""
    return [c.description for c in result.candidates if c.description in result.question]


@pytest.mark.parametrize("command", ["the yellow cup", "the cup"])
def test_a_question_names_two_options_or_asks_for_other_words(command):
    """A question a person can answer: it names at least two of the candidates, or, when the
    words leave fewer than two to offer ("the yellow cup" when no close candidate is yellow),
    it asks for other words instead of a bare "Which cup?". It holds for not-sure answers too.
    """
    image, _ = _world()
    for settings in ({}, {"min_confidence": 0.99}, {"hold_ambiguous": True}):
        seg = _segmenter({5: 1.0, 7: 1.0, 9: 0.2}, **settings)
        r = seg.segment(image, command)
        assert r.ambiguous and r.question, (command, settings)
        if len(_offered(r)) < 2:
            assert not r.question.startswith("Which"), r.question
            assert "describe" in r.question and command.split()[-1] in r.question
        if "yellow" in command:  # no close candidate is yellow: nothing to offer
            assert _offered(r) == [] and "yellow cup" in r.question, r.question
        else:
            assert len(_offered(r)) == 2 and r.question.startswith("Which cup: ")
        if settings.get("hold_ambiguous"):
            assert r.error == f"ambiguous: {r.question}"


def _moved_camera():
    """The same objects after the camera moved (same image size): another wall behind them,
    the blue cup now on the left (where the red one was) and the red cup on the right.
    """
    image, masks = _world()
    moved = np.full_like(image, 70)
    moved[masks[0]] = (40, 80, 215)
    moved[masks[1]] = (210, 35, 35)
    moved[masks[2]] = (40, 160, 60)
    return moved


def test_a_reply_after_the_camera_moved_is_answered_on_the_new_frame():
    """The candidates belong to the frame they were found on. A reply on another scene (same
    image size) is answered by the models on the new frame, the reply said as a whole
    expression, never by the old frame's candidates; a small change of the same scene (sensor
    noise) still chooses among them without the models.
    """
    image, masks = _world()
    rng = np.random.default_rng(0)
    noisy = np.clip(image.astype(int) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
    vlp = WordsVLP({5: 1.0, 7: 1.0}, "blue", {5: 1.0})  # "blue": heat on the left place
    s = SegmenterSettings(igrs_iterations=1, parser="spacy")
    seg = Segmenter.from_backends(vlp, Proposals(masks), s, raise_unexpected=True)
    talk = Conversation(timeout_s=30)
    assert talk.answer("a", "the cup", image, seg, now=0.0).ambiguous
    runs = seg.stats["commands"]
    same = talk.answer("b", "the right one", noisy, seg, now=1.0)
    assert seg.stats["commands"] == runs and same.proposal_index == 1  # no model pass
    assert talk.answer("c", "the cup", image, seg, now=2.0).ambiguous
    runs = seg.stats["commands"]
    moved = _moved_camera()
    reply = talk.answer("d", "the blue one", moved, seg, now=3.0)
    assert seg.stats["commands"] == runs + 1, "the reply must run the models on the new frame"
    assert reply.in_reply_to == "c" and reply.success, reply.error
    assert reply.expression == "the blue cup"
    assert np.array_equal(reply.mask, masks[0])  # the blue cup where it is now, on the left
    assert [c.colour for c in reply.candidates][:1] == ["blue"]


def test_a_correction_after_the_camera_moved_says_the_scene_changed():
    image, masks = _world()
    seg = _segmenter({5: 1.0, 9: 0.3})
    talk = Conversation(timeout_s=30)
    first = talk.answer("a", "the red cup", image, seg, now=0.0)
    assert first.success and first.proposal_index == 0
    runs = seg.stats["commands"]
    for k, said in enumerate(("no, the other one", "the one next to it")):
        talk.answer(f"r{k}", "the red cup", image, seg, now=1.0 + k)
        wrong = talk.answer(f"w{k}", said, _moved_camera(), seg, now=1.5 + k)
        assert not wrong.success and wrong.in_reply_to == f"r{k}"
        assert "scene changed" in wrong.error and wrong.mask is None, wrong.error
        assert talk.interpret("no, the other one", now=1.6 + k).kind == NEW  # the state is void
    assert seg.stats["commands"] == runs + 2  # only the two "the red cup" commands ran
