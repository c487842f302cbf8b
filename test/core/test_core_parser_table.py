"""Primary word and effective words on a table of expressions, per parser path.

The table (parser_table.py) gives the primary word a constituency parse yields; the spaCy
fallback is measured against it (real spaCy, en_core_web_sm). stanza and benepar paths run
only where their models are installed (none can be downloaded here): they skip with a reason.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from parser_table import PRIMARY_TABLE, TABLE_BY_CATEGORY

from iterprime_ros.core.command import EmptyCommandError, NormaliserSettings, normalise_command
from iterprime_ros.core.text import (
    SPATIAL_WORDS,
    ExpressionParser,
    _load_benepar,
    _load_stanza,
    assemble,
    stanza_parse,
)

# Measured on this table with the spaCy fallback's corrections: 146 of 146 (robot commands
# 40/40, RefCOCO-style 68/68, compound and adjectival heads 20/20, "one" and ordinals 18/18;
# without the head-noun, dictionary-noun and "one" corrections 126 of 146). The test keeps the
# measured floor, not a per-row list.
SPACY_MIN_HITS = 146


def expression_of(text: str) -> str:
    """The normalised command; a position-only dataset phrase ("the far right"), which the
    command check refuses as naming no object, is parsed as the evaluation passes it (no
    normaliser).
    """
    try:
        return normalise_command(text)
    except EmptyCommandError:
        return normalise_command(text, NormaliserSettings(enabled=False))


def hit_rate(parser: ExpressionParser, table=PRIMARY_TABLE) -> tuple[int, list[str]]:
    misses = []
    for text, want in table:
        got = parser.parse(expression_of(text)).primary_word
        if got != want:
            misses.append(f"{text!r}: got {got!r}, want {want!r}")
    return len(table) - len(misses), misses


def test_table_is_large_enough_and_mixes_commands_and_phrases():
    assert len(PRIMARY_TABLE) >= 80
    assert len({t for t, _ in PRIMARY_TABLE}) == len(PRIMARY_TABLE)
    expressions = [expression_of(t) for t, _ in PRIMARY_TABLE]
    assert sum(e != t for e, (t, _) in zip(expressions, PRIMARY_TABLE)) >= 30  # commands


def test_spacy_fallback_hit_rate_is_at_least_the_measured_one():
    parser = ExpressionParser(parser="spacy")
    hits, misses = hit_rate(parser)
    assert hits >= SPACY_MIN_HITS, f"{hits}/{len(PRIMARY_TABLE)}; misses: {misses}"


@pytest.mark.parametrize("category", sorted(TABLE_BY_CATEGORY))
def test_spacy_fallback_agrees_on_every_category(category):
    rows = TABLE_BY_CATEGORY[category]
    hits, misses = hit_rate(ExpressionParser(parser="spacy"), rows)
    assert hits == len(rows), f"{category}: {hits}/{len(rows)}; misses: {misses}"


@pytest.mark.parametrize("kind", ["stanza", "benepar"])
def test_constituency_parser_hit_rate(kind):
    nlp, why = (_load_stanza if kind == "stanza" else _load_benepar)()
    if nlp is None:
        pytest.skip(f"{kind} path not available here: {why}")
    parser = ExpressionParser(parser=kind)
    assert parser.kind == kind
    hits, misses = hit_rate(parser)
    # the table is hand-derived; a real parser may read a few phrases differently
    assert hits >= 0.9 * len(PRIMARY_TABLE), f"{hits}/{len(PRIMARY_TABLE)}; misses: {misses}"


@pytest.mark.parametrize(
    "text, primary",
    [
        ("the red cup", "cup"),  # spaCy: red/cup PROPN NNP
        ("the green ball", "ball"),
        ("kid", "kid"),
        ("two men on the left", "left"),  # "left" JJ in spaCy, NN in a constituency parse
        ("the far right", "right"),
        ("bottom left donut", "donut"),  # spaCy: bottom NN, left VBD -> both modify donut
        ("surfboard leaning on the wall", "surfboard"),  # spaCy: surfboard ADV
        ("left one", "one"),  # spaCy: one CD, no noun chunk
        ("second from right", "second"),  # spaCy: second RB
        ("the one next to the bottle and the cup", "one"),  # spaCy's own NN "one" kept
        ("elephant second from left", "elephant"),  # a named object wins over the ordinal
    ],
)
def test_issue_examples_get_the_constituency_primary_word(text, primary):
    assert ExpressionParser(parser="spacy").parse(text).primary_word == primary


@pytest.mark.parametrize(
    "text, spatial",
    [
        ("person in back", "back"),  # spaCy: ADV
        ("guy with glasses on right", "right"),  # spaCy: ADV
        ("far right", "right"),
        ("left one", "left"),  # spaCy: VBD
        ("right", "right"),  # spaCy: INTJ
    ],
)
def test_position_words_stay_effective_whatever_their_tag(text, spatial):
    parsed = ExpressionParser(parser="spacy").parse(text)
    effective = {parsed.words[i].text for i in parsed.effective}
    assert spatial in effective and spatial in SPATIAL_WORDS


def test_capitalised_proper_nouns_stay_proper_nouns():
    parsed = ExpressionParser(parser="spacy").parse("the cup near Obama")
    obama = parsed.words[3]
    assert obama.upos == "PROPN" and obama.tag == "NNP"
    assert parsed.primary_word == "cup"


def test_assemble_spatial_switch_is_off_for_the_reference_path():
    pieces = [(0, "guy", "NOUN", "NN"), (4, "on", "ADP", "IN"), (7, "right", "ADV", "RB")]
    from iterprime_ros.core.tree import parse_tree

    tree = parse_tree("(S (NP (NN guy)) (IN on) (RB right))")
    off = assemble("guy on right", pieces, tree, [0, 1, 2], ("NN",), "stanza")
    on = assemble(
        "guy on right", pieces, tree, [0, 1, 2], ("NN",), "spacy", spatial_effective=True
    )
    assert off.effective == (0,) and on.effective == (0, 2)
    assert off.primary_word == on.primary_word == "guy"


class StanzaDocStandIn:
    """Stand-in for a stanza Document (stanza is not installed here): the attributes
    stanza_parse reads -- sentences, tokens with start_char, words with text/upos/xpos, and a
    constituency tree whose str() is the bracketed parse.
    """

    def __init__(self, text: str, tagged: list[tuple[str, str, str]], bracketed: str) -> None:
        tokens, at = [], 0
        for word, upos, xpos in tagged:
            at = text.index(word, at)
            w = SimpleNamespace(text=word, upos=upos, xpos=xpos, start_char=at)
            tokens.append(SimpleNamespace(words=[w], start_char=at))
            at += len(word)
        self.sentences = [SimpleNamespace(tokens=tokens, constituency=bracketed)]


def test_stanza_parse_feeds_algorithm_1():
    text = "two men on the left"
    doc = StanzaDocStandIn(
        text,
        [
            ("two", "NUM", "CD"),
            ("men", "NOUN", "NNS"),
            ("on", "ADP", "IN"),
            ("the", "DET", "DT"),
            ("left", "NOUN", "NN"),
        ],
        "(ROOT (NP (NP (CD two) (NNS men)) (PP (IN on) (NP (DT the) (NN left)))))",
    )
    pieces, tree = stanza_parse(doc)
    assert pieces[4] == (15, "left", "NOUN", "NN")
    parsed = assemble(text, pieces, tree, list(range(5)), ("NN",), "stanza")
    assert parsed.primary_word == "left" and parsed.effective == (0, 1, 4)
    bad = StanzaDocStandIn(text, [("two", "NUM", "CD")], "(ROOT (NP (CD two) (NNS men)))")
    with pytest.raises(ValueError, match="leaves"):
        stanza_parse(bad)


def test_stanza_requested_without_stanza_is_a_clear_error():
    nlp, why = _load_stanza()
    if nlp is not None:
        pytest.skip("stanza and its model are installed here")
    with pytest.raises(RuntimeError, match="parser='stanza' requested but stanza"):
        ExpressionParser(parser="stanza").parse("the cup")
    assert ExpressionParser(parser="auto").kind in ("benepar", "spacy")
