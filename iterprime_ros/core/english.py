"""English word sets for the command checks (command.py rules 2 and 4).

Why: the language check must accept any ordinary object name ("fire hydrant", "toothbrush
holder"), and the object check must tell an object word from a determiner, pronoun or
position word. Both come from spaCy's own English data, already installed for the parser,
instead of hand-written lists:

- dictionary words: the English lemmatizer's lemma index (WordNet's nouns, verbs, adjectives
  and adverbs, about 83,000) with its exception table and suffix rules for inflected forms
  ("knives", "skis", "potted");
- function words: spaCy's English stop words; those that are also stop words of the other
  languages spaCy ships for French, Spanish, German, Italian, Portuguese and Dutch ("a",
  "in", "me", "on", "de") are not evidence of English.

Everything is loaded on first use and kept for the process (the stop-word lists are tiny;
the lemma tables come with the English pipeline nlp_models.load_spacy() loads anyway).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import logging
from pathlib import Path

from .nlp_models import load_spacy

log = logging.getLogger(__name__)

# Position words (text.py keeps them effective whatever their tag; command.py: a command made
# only of these and function words names no object).
SPATIAL_WORDS = frozenset(
    "left right top bottom front back middle center centre near far upper lower behind "
    "closest nearest farthest furthest leftmost rightmost topmost side corner edge "
    "up down above below".split()
)

# Languages whose stop words share short words with English (rule 2's ambiguity).
OTHER_LANGUAGES = ("fr", "es", "de", "it", "pt", "nl")

# Stop words that can name an object or one of its properties ("the can", "the empty one").
OBJECT_STOP_WORDS = frozenset({"can", "empty", "full", "whole", "well", "mine", "part", "name"})

# Ordinal words spaCy's stop list lacks ("the second one" picks a position, not an object).
ORDINALS = frozenset(
    "second fourth fifth sixth seventh eighth ninth tenth 1st 2nd 3rd 4th 5th".split()
)


def _stop_words(lang: str) -> frozenset[str]:
    """The words of spacy/lang/<lang>/stop_words.py, read as data (its STOP_WORDS string and,
    for English, its contractions with each apostrophe), never run: importing
    spacy.lang.<lang> would load the language's whole package (about 2 s for six languages),
    and the node runs no code it reads (docs/robustness.md).
    """
    spec = importlib.util.find_spec("spacy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("spaCy is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "lang" / lang / "stop_words.py"
    words: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names = [t.id for t in getattr(node, "targets", ()) if isinstance(t, ast.Name)]
        if not {"STOP_WORDS", "contractions"} & set(names):
            continue
        # English adds its contractions with each of three apostrophes
        marks = ("'", "\u2018", "\u2019") if "contractions" in names else ("'",)
        for const in ast.walk(node.value):  # type: ignore[attr-defined]
            if isinstance(const, ast.Constant) and isinstance(const.value, str):
                for word in const.value.split():
                    words.update(word.replace("'", mark) for mark in marks)
    if not words:
        raise ValueError(f"no STOP_WORDS found in {path}")
    return frozenset(w.lower() for w in words)


@functools.cache
def english_function_words() -> frozenset[str]:
    """The English stop words of spaCy (lower case)."""
    return _stop_words("en")


@functools.cache
def other_function_words() -> frozenset[str]:
    """Stop words of the other languages spaCy ships (OTHER_LANGUAGES), lower case."""
    return frozenset().union(*(_stop_words(lang) for lang in OTHER_LANGUAGES))


@functools.cache
def unambiguous_function_words() -> frozenset[str]:
    """English stop words that are not stop words of another language spaCy ships."""
    return english_function_words() - other_function_words()


@functools.cache
def no_object_words() -> frozenset[str]:
    """Words that name no object: function words (determiners, pronouns, prepositions, numbers,
    auxiliaries, a few verbs), position words and ordinals.
    """
    english = english_function_words()
    return (english - OBJECT_STOP_WORDS) | SPATIAL_WORDS | ORDINALS | {"ones"}


class _Dictionary:
    """The English lemmatizer's tables, to tell whether a (maybe inflected) word is English."""

    def __init__(self, index: dict[str, frozenset[str]], exc: dict, rules: dict) -> None:
        self.index = index
        self.words = frozenset().union(*index.values()) if index else frozenset()
        self.exc = exc
        self.rules = rules

    def __contains__(self, word: str) -> bool:
        if word in self.words:
            return True
        for table in self.exc.values():
            if any(lemma in self.words for lemma in table.get(word, ())):
                return True
        for rules in self.rules.values():
            for old, new in rules:
                if word.endswith(old) and len(word) > len(old):
                    if word[: len(word) - len(old)] + new in self.words:
                        return True
        return False


@functools.cache  # loaded once (the node's warm-up calls it before any command)
def _load_dictionary() -> _Dictionary:
    try:
        lookups = load_spacy().get_pipe("lemmatizer").lookups
        index, exc, rules = (
            lookups.get_table(t) for t in ("lemma_index", "lemma_exc", "lemma_rules")
        )
        pos = ("noun", "verb", "adj", "adv")
        return _Dictionary(
            {p: frozenset(index.get(p, ())) for p in pos},
            {p: dict(exc.get(p, {})) for p in pos},
            {p: list(rules.get(p, ())) for p in pos},
        )
    except Exception as exc:  # no spaCy model: the check falls back to the function words
        log.warning("English dictionary unavailable (%r): language check uses word lists", exc)
        return _Dictionary({}, {}, {})


def is_dictionary_word(word: str) -> bool:
    """True for a lower-case English dictionary word or an inflected form of one."""
    return word in _load_dictionary()


def is_noun_never_adverb(word: str) -> bool:
    """True for a lower-case word the dictionary lists as a noun and never as an adverb.

    Why: the small English tagger calls some object nouns at the start of a phrase adverbs
    ("surfboard leaning on the wall"); a word the dictionary knows only as a noun, never as an
    adverb, is then a noun whatever the tagger said.
    """
    index = _load_dictionary().index
    return word in index.get("noun", ()) and word not in index.get("adv", ())


def warm_up() -> None:
    """Load every word set now (the node's warm-up), not on the first command."""
    no_object_words()
    unambiguous_function_words()
    is_dictionary_word("cup")
