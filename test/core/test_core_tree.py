"""Algorithm 1 (primary word) on written-out constituency trees."""

import pytest

from iterprime_ros.core.tree import Tree, innermost_nps, parse_tree, primary_leaf


def primary_word(text, primary_tags=("NN",)):
    tree = parse_tree(text)
    leaf = primary_leaf(tree, primary_tags)
    return None if leaf is None else tree.leaves()[leaf]


def test_parse_tree_round_trip_and_wrappers():
    text = "(NP (NP (DT the) (NN man)) (PP (IN on) (NP (DT the) (NN left))))"
    tree = parse_tree(text)
    assert str(tree) == text
    assert tree.leaves() == ["the", "man", "on", "the", "left"]
    assert tree.tags() == ["DT", "NN", "IN", "DT", "NN"]
    assert parse_tree("( (S (NP (DT the) (NN cup))))").label == "S"
    assert parse_tree("(TOP (S (NP (DT the) (NN cup))))").label == "S"
    for bad in ["", "(NP (DT the)", "(NP (DT the))) x", "(NN cup mug)"]:
        with pytest.raises(ValueError):
            parse_tree(bad)


def test_leftmost_innermost_np_not_the_outer_one():
    # The outer NP's rightmost NN is "plate"; the leftmost innermost NP is "the cup".
    assert (
        primary_word("(NP (NP (DT the) (NN cup)) (PP (IN near) (NP (DT the) (NN plate))))")
        == "cup"
    )
    assert (
        primary_word("(NP (NP (DT the) (NN man)) (PP (IN on) (NP (DT the) (NN left))))") == "man"
    )


def test_rightmost_nn_inside_the_np():
    assert (
        primary_word("(NP (DT the) (NN coffee) (NN cup) (PP (IN on) (NP (DT the) (NN table))))")
        == "table"
    )
    assert (
        primary_word(
            "(NP (NP (DT the) (NN coffee) (NN cup)) (PP (IN on) (NP (DT the) (NN table))))"
        )
        == "cup"
    )
    # an NN deeper inside the innermost NP (under a non-NP phrase) still counts
    assert primary_word("(NP (DT the) (ADJP (NN olive) (JJ green)) (NNS chairs))") == "olive"


def test_nns_does_not_count_under_the_reference_switch():
    two_men = "(NP (NP (CD two) (NNS men)) (PP (IN on) (NP (DT the) (NN left))))"
    assert primary_word(two_men) == "left"
    assert primary_word(two_men, ("NN", "NNS")) == "men"


def test_leftmost_np_without_nn_is_skipped():
    tree = (
        "(S (NP (NP (NNS people)) (PP (IN near) (NP (DT a) (JJ red) (NN car))))"
        " (VP (VBG waiting)))"
    )
    assert primary_word(tree) == "car"
    starts = [start for start, _ in innermost_nps(parse_tree(tree))]
    assert starts == [0, 2]


def test_function_tags_are_stripped_from_np_labels():
    assert primary_word("(S (NP-SBJ (DT the) (NN dog)) (VP (VBZ sits)))") == "dog"


def test_fallback_last_noun_then_none():
    # no NN anywhere: the last NOUN (NNS maps to NOUN) is the fallback
    assert (
        primary_word(
            "(S (VP (VB stand) (PP (IN on) (NP (DT the) (NNS stairs) (CC and) (NNS rails)))))"
        )
        == "rails"
    )
    assert primary_word("(S (ADJP (JJ blue)))") is None
    # tagger UPOS overrides the PTB-derived one in the fallback
    tree = parse_tree("(S (VP (VBN left)))")
    assert primary_leaf(tree, ("NN",), upos=["NOUN"]) == 0
    assert primary_leaf(tree, ("NN",)) is None


def test_tree_type_preterminals():
    t = Tree("NP", (Tree("DT", ("the",)), Tree("NN", ("cup",))))
    assert [p.label for p in t.preterminals()] == ["DT", "NN"]
    assert t.children[1].is_preterminal and not t.is_preterminal
