"""A reply that the offered candidates cannot satisfy: the models run once on the reply said as a
whole expression, and their answer joins the candidates, so an object that was not offered can
still be chosen.

The segmenter is the real pipeline.Segmenter with a hand-made VLP whose attention peaks on chosen
patches (the heat over each object is known), and fixed proposals: the rule is tested, not
accuracy (the world evaluation measures that).
"""

from __future__ import annotations

from test_conversation_dialogue import Proposals, WordsVLP, _world

from iterprime_ros.conversation import Conversation, combined_expression
from iterprime_ros.pipeline import Segmenter, SegmenterSettings


def _talk(word, hot_for_word, **options):
    image, masks = _world()
    s = SegmenterSettings(igrs_iterations=1, parser="spacy", max_candidates=2)
    vlp = WordsVLP({5: 1.0, 7: 1.0}, word, hot_for_word)
    seg = Segmenter.from_backends(vlp, Proposals(masks), s, raise_unexpected=True)
    talk = Conversation(**options)
    first = talk.answer("a", "the cup", image, seg, now=0.0)
    assert first.ambiguous and {c.proposal_index for c in first.candidates} == {0, 1}
    return talk, seg, image


def test_combined_expression_puts_the_questions_noun_in_place_of_one():
    assert combined_expression("the green one", "cup") == "the green cup"
    assert combined_expression("The cup on the LEFT", "cup") == "the cup on the left"
    assert combined_expression("left", "cup") == "left cup"
    assert combined_expression("the green one", "") == "the green one"


def test_an_object_that_was_not_offered_is_found_from_the_replys_words():
    talk, seg, image = _talk("green", {9: 1.0})
    runs = seg.stats["commands"]
    reply = talk.answer("b", "the green one", image, seg, now=1.0)
    assert seg.stats["commands"] == runs + 1
    assert reply.success and reply.in_reply_to == "a" and reply.proposal_index == 2
    assert reply.candidates[0].proposal_index == 2
    # the rule off: the reply can only choose among what was offered, and nothing fits green
    talk, seg, image = _talk("green", {9: 1.0}, reply_models=False)
    assert talk.answer("b", "the green one", image, seg, now=1.0).proposal_index != 2


def test_the_words_win_over_the_models_when_they_settle_it():
    # the models heat the green box for "the red cup", but the words fit the red cup alone
    talk, seg, image = _talk("red", {9: 1.0})
    reply = talk.answer("b", "the red cup", image, seg, now=1.0)
    assert reply.success and reply.proposal_index == 0


def test_a_reply_settled_by_words_that_names_no_noun_does_not_run_the_models():
    talk, seg, image = _talk("blue", {9: 1.0})
    runs = seg.stats["commands"]
    assert talk.answer("b", "the blue one", image, seg, now=1.0).proposal_index == 1
    assert seg.stats["commands"] == runs
