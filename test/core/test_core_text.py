"""Token roles: effective words, primary word on real spaCy parses, prompt and subword mapping."""

import logging
import types

import pytest
import torch

from iterprime_ros.core import text as text_mod
from iterprime_ros.core.text import (
    ExpressionParser,
    ParsedExpression,
    TokenRoles,
    Word,
    assemble,
    benepar_tree,
    build_prompt,
    spacy_tree,
    token_roles,
)
from iterprime_ros.core.tree import parse_tree


@pytest.fixture(scope="module")
def parser():
    return ExpressionParser(parser="spacy")


# ---------------------------------------------------------------- spaCy fallback, real parses
@pytest.mark.parametrize(
    "expression, primary, effective",
    [
        ("the red cup on the left", "cup", ["red", "cup", "left"]),
        ("guy in blue shirt", "guy", ["guy", "blue", "shirt"]),  # leftmost noun chunk wins
        ("the coffee cup", "cup", ["coffee", "cup"]),  # rightmost NN in the chunk
        (
            "woman holding an umbrella",
            "woman",
            ["woman", "holding", "umbrella"],
        ),  # VERB is effective
        ("the man's hat", "hat", ["man's", "hat"]),  # "man's": one word, effective
        ("the 2 bananas", "bananas", ["2", "bananas"]),  # NNS only through the NOUN fallback
        ("blue", None, ["blue"]),
    ],
)
def test_spacy_fallback_real_parses(parser, expression, primary, effective):
    parsed = parser.parse(expression)
    assert parsed.parser == "spacy"
    assert parsed.primary_word == primary
    assert [parsed.words[i].text for i in parsed.effective] == effective


def test_spacy_two_men_on_the_left(parser):
    # spaCy tags "left" JJ and makes only "two men" a noun chunk (NNS, not NN); the fallback's
    # correction makes "the left" an NP with "left" as NN, as a constituency parse has it
    # (test_core_tree.py), so Algorithm 1 gives "left" like the reference.
    assert parser.parse("two men on the left").primary_word == "left"
    plural = ExpressionParser(primary_tags=("NN", "NNS"), parser="spacy")
    assert plural.parse("two men on the left").primary_word == "men"


def test_spacy_tree_shape_and_extra_whitespace(parser):
    nlp = text_mod.load_spacy()
    tree, leaves = spacy_tree(nlp("the red cup on the left"))
    assert str(tree).startswith("(S (NP (DT the) (JJ red) (NN cup)) (IN on)")
    assert leaves == [0, 1, 2, 3, 4, 5]
    parsed = parser.parse("the  big   dog")
    assert [w.text for w in parsed.words] == ["the", "big", "dog"]
    assert [(w.start, w.end) for w in parsed.words] == [(0, 3), (5, 8), (11, 14)]
    assert parsed.primary_word == "dog"


def test_parse_is_cached_and_words_carry_tags(parser):
    a = parser.parse("the red cup on the left")
    assert parser.parse("the red cup on the left") is a
    assert a.words[2] == Word("cup", 8, 11, "NOUN", "NN")


def test_auto_parser_falls_back_to_spacy_and_logs_it(caplog):
    if text_mod._load_benepar()[0] is not None:
        pytest.skip("benepar model installed here")
    with caplog.at_level(logging.INFO, logger="iterprime_ros.core.text"):
        p = ExpressionParser()
        assert p.kind == "spacy"
    assert any(
        "spaCy" in r.message and "benepar_en3 not installed" in r.message for r in caplog.records
    )
    with pytest.raises(RuntimeError):
        ExpressionParser(parser="benepar").parse("the cup")
    with pytest.raises(ValueError):
        ExpressionParser(parser="constituency")


# ---------------------------------------------------------------- pure assembly (no spaCy)
def test_assemble_merges_tagger_pieces_into_whitespace_words():
    # "the man's hat": tagger pieces the / man / 's / hat; tree's innermost NP "the man 's" holds
    # NN man
    pieces = [
        (0, "the", "DET", "DT"),
        (4, "man", "NOUN", "NN"),
        (7, "'s", "PART", "POS"),
        (10, "hat", "NOUN", "NN"),
    ]
    tree = parse_tree("(NP (NP (DT the) (NN man) (POS 's)) (NN hat))")
    parsed = assemble("the man's hat", pieces, tree, [0, 1, 2, 3], ("NN",), "benepar")
    assert [w.text for w in parsed.words] == ["the", "man's", "hat"]
    assert parsed.effective == (1, 2)
    assert parsed.primary == 1 and parsed.primary_word == "man's"
    assert parsed.words[1] == Word("man's", 4, 9, "NOUN", "NN")  # representative = effective piece


def test_benepar_tree_from_parse_strings():
    def tok(i, space=False):
        return types.SimpleNamespace(i=i, is_space=space)

    def sent(s):
        return types.SimpleNamespace(_=types.SimpleNamespace(parse_string=s))

    class FakeDoc:
        sents = [sent("(NP (DT the) (NN cup))"), sent("(NP (DT a) (NN plate))")]

        def __iter__(self):
            return iter([tok(0), tok(1), tok(2, True), tok(3), tok(4)])

        def __len__(self):
            return 5

    tree, leaves = benepar_tree(FakeDoc())
    assert tree.label == "ROOT" and tree.leaves() == ["the", "cup", "a", "plate"]
    assert leaves == [0, 1, 3, 4]
    FakeDoc.sents = [sent("(NP (DT the) (NN cup))")]
    with pytest.raises(ValueError):
        benepar_tree(FakeDoc())


# ---------------------------------------------------------------- prompt and token roles
def test_the_prompt_places_the_expression_and_gives_its_offset():
    assert build_prompt("there is a {}", "the red cup") == ("there is a the red cup", 11)
    assert build_prompt("{} in the image", "cup") == ("cup in the image", 0)
    with pytest.raises(ValueError):
        build_prompt("there is a", "cup")


def bert_like_offsets(full_text, pieces, pad=2):
    """[CLS] + spans of the given substrings in order + [SEP] + padding (None for specials)."""
    out, at = [None], 0
    for p in pieces:
        s = full_text.index(p, at)
        out.append((s, s + len(p)))
        at = s + len(p)
    return out + [None] * (1 + pad)


def hand_parsed(expression, effective, primary):
    words = []
    for k, w in enumerate(expression.split()):
        start = expression.index(w, words[-1].end if words else 0)
        words.append(Word(w, start, start + len(w), "NOUN", "NN"))
    return ParsedExpression(expression, tuple(words), tuple(effective), primary, "spacy")


def test_token_roles_with_subwords_and_split_words():
    text, start = build_prompt("there is a {}", "the man's hat")
    # BERT-like: there is a the man ' s ha ##t   ("hat" split into two subwords)
    offsets = bert_like_offsets(text, ["there", "is", "a", "the", "man", "'", "s", "ha", "t"])
    valid = [True] * 10 + [False] * 3  # [CLS] + 9 tokens valid; [SEP] and 2 pads not
    parsed = hand_parsed("the man's hat", effective=(1, 2), primary=2)
    roles = token_roles(parsed, offsets, start, valid)
    assert roles.effective == (5, 6, 7, 8, 9)  # man ' s (one word) + ha ##t
    assert roles.primary == (8, 9)  # both subwords of "hat"
    assert roles.valid.tolist() == valid
    derived = token_roles(parsed, offsets, start, None)
    assert derived.valid.tolist() == [True] * 10 + [False] * 3
    assert isinstance(roles, TokenRoles)


def test_primary_subwords_are_the_last_occurrence():
    text, start = build_prompt("there is a {}", "the cup next to the cup")
    offsets = bert_like_offsets(
        text, ["there", "is", "a", "the", "cup", "next", "to", "the", "cup"]
    )
    parsed = hand_parsed(
        "the cup next to the cup", effective=(1, 5), primary=1
    )  # Algorithm 1: first "cup"
    roles = token_roles(parsed, offsets, start, None)
    assert roles.effective == (5, 9)
    assert roles.primary == (9,)


def test_truncated_primary_word_gives_no_primary_and_cls_is_never_effective():
    text, start = build_prompt("{}", "red cup")
    offsets = [
        (0, 3),
        (4, 7),
        None,
    ]  # a backend that reports a span for position 0 still has CLS = 0
    parsed = hand_parsed("red cup", effective=(0, 1), primary=1)
    roles = token_roles(parsed, offsets, start, [True, False, False])
    assert roles.effective == () and roles.primary == ()
    with pytest.raises(ValueError):
        token_roles(parsed, offsets, start, [True, True])


def test_end_to_end_roles_from_a_real_parse(parser):
    parsed = parser.parse("the red cup on the left")
    text, start = build_prompt("there is a {}", parsed.expression)
    offsets = bert_like_offsets(
        text, ["there", "is", "a", "the", "red", "cup", "on", "the", "left"]
    )
    roles = token_roles(parsed, offsets, start, torch.tensor([True] * 10 + [False] * 3))
    assert roles.effective == (5, 6, 9) and roles.primary == (6,)


def test_word_is_effective_if_any_tagger_piece_is():
    # whitespace word '"red"' = pieces " / red / "  (the effective piece is not the first one)
    pieces = [
        (0, '"', "PUNCT", "``"),
        (1, "red", "ADJ", "JJ"),
        (4, '"', "PUNCT", "''"),
        (6, "cup", "NOUN", "NN"),
    ]
    tree = parse_tree("(NP (`` \") (JJ red) ('' \") (NN cup))")
    parsed = assemble('"red" cup', pieces, tree, [0, 1, 2, 3], ("NN",), "spacy")
    assert parsed.effective == (0, 1)
    assert parsed.words[0] == Word('"red"', 0, 5, "ADJ", "JJ")
    assert parsed.primary_word == "cup"


def test_real_parse_quoted_word_is_effective(parser):
    parsed = parser.parse('the "big" dog')
    assert [parsed.words[i].text for i in parsed.effective] == ['"big"', "dog"]
