"""Spoken command -> referring expression (method.md §6).

Why: a voice front end sends "could you pick up the red cup on the left please", but the
method was built for referring expressions ("the red cup on the left"); the politeness and
the imperative verb would otherwise become "effective words" and pull the heat map.

Rules (on whole words, case-insensitive; the kept words keep their original case):
1. Unicode NFC; typographic apostrophes -> "'"; emoji and other symbols removed; other
   punctuation becomes a space, except "'" and "-" inside a word, "." and "," inside a
   number, and "&". Whitespace collapsed.
2. Empty -> EmptyCommandError. Language check (simple heuristic, documented): more than half
   of the letters non-ASCII, no letter at all, or two or more words of which none is an
   English function word (a built-in list of function/spatial/colour/common-object words,
   and the words of the phrase lists and spaCy's English stop words that are not stop words
   of French/Spanish/German/Italian/Portuguese/Dutch too) and not every word is an English
   word (those, spaCy's English stop words, or a dictionary word: english.py; a number or
   an acronym such as "USB" is neutral)
   -> NonEnglishCommandError. So "the red cup" and "fire hydrant" pass, "ramasse la tasse
   rouge" does not ("ramasse" is no English word). A single ASCII word passes.
3. Repeatedly drop a leading politeness phrase (or a vocative such as "robot" when one of
   those or a verb follows), then one imperative verb phrase (longest match), then
   repeatedly drop trailing phrases ("for me", "please", "thanks", ...), then a particle
   left by a split verb ("pick the cup up", "give the cup to me"), then trailing phrases again.
4. Nothing left, or only words that name no object (determiners, pronouns, numbers,
   prepositions and other spaCy English stop words, position words, ordinals: "the", "it",
   "that one", "left", "the far right") -> EmptyCommandError (no object was named). An
   adjective or a noun is enough ("the red one", "cup"), and so is "one" with a position
   word ("the one on the left", "the left one": the object at that place).
An expression that is just a noun phrase passes through unchanged (bar rule 1).
With enabled=False only rule 1, the checks of rule 2 (check_language) and the empty check run
(no rule 4: dataset expressions such as RefCOCO's "left" are passed on as they are).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .english import (
    SPATIAL_WORDS,
    english_function_words,
    is_dictionary_word,
    no_object_words,
    other_function_words,
    unambiguous_function_words,
)

# Longest command the node and the replay accept: one spoken sentence is far shorter, and a
# megabyte of text would only cost tokeniser time. ros/node.py uses too_long() as well.
MAX_COMMAND_CHARS = 1000


def too_long(text: str) -> str | None:
    """The node's refusal for an over-long command, or None when the length is fine."""
    if len(text) <= MAX_COMMAND_CHARS:
        return None
    return (
        f"the command is too long ({len(text)} characters; at most {MAX_COMMAND_CHARS}): "
        "send one spoken sentence"
    )


class CommandError(ValueError):
    """The command cannot be turned into a referring expression."""


class EmptyCommandError(CommandError):
    """The command is empty, or names no object once the phrases are removed."""


class NonEnglishCommandError(CommandError):
    """The command does not look like English (the models only understand English)."""


LEADING_PHRASES: tuple[str, ...] = (
    "hey robot",
    "hi robot",
    "hello robot",
    "ok robot",
    "okay robot",
    "hey",
    "hi",
    "hello",
    "ok",
    "okay",
    "um",
    "uh",
    "so",
    "now",
    "then",
    "also",
    "and",
    "just",
    "please",
    "kindly",
    "could you",
    "can you",
    "would you",
    "will you",
    "would you mind",
    "do you mind",
    "could you possibly",
    "i need you to",
    "i want you to",
    "i would like you to",
    "i'd like you to",
    "try to",
    "go ahead and",
    "go and",
)

VERBS: tuple[str, ...] = (
    "pick up",
    "pick out",
    "pick",
    "lift up",
    "lift",
    "grab",
    "grasp",
    "hold",
    "hand me",
    "hand over",
    "give me",
    "give",
    "bring me",
    "bring",
    "pass me",
    "show me",
    "show",
    "find me",
    "find",
    "point to",
    "point at",
    "point out",
    "get me",
    "get",
    "fetch me",
    "fetch",
    "take",
    "look at",
    "where is",
    "where's",
    "where are",
    "locate",
    "select",
    "choose",
    "segment",
    "highlight",
    "identify",
    "touch",
    "i want",
    "i need",
    "i would like",
    "i'd like",
    "can i have",
    "can i get",
    "may i have",
)

# Addressing the robot by name: dropped only when a politeness phrase or a verb follows,
# because "robot on the left" is itself a referring expression.
VOCATIVES: tuple[str, ...] = ("robot",)

TRAILING_PHRASES: tuple[str, ...] = (
    "for me",
    "please",
    "thanks",
    "thank you",
    "thank you very much",
    "now",
    "right now",
    "if you can",
    "if you could",
    "if possible",
    "quickly",
    "would you",
    "could you",
    "will you",
)

# (verb phrase, particle phrase): the particle is dropped from the end only after that verb,
# so "give the stapler to me" loses "to me" while "the cup closest to me" keeps it.
SEPARABLE_PARTICLES: tuple[tuple[str, str], ...] = (
    ("pick", "up"),
    ("pick", "out"),
    ("lift", "up"),
    ("hand", "over"),
    ("point", "out"),
    ("give", "to me"),
    ("bring", "to me"),
    ("hand", "to me"),
    ("pass", "to me"),
    ("take", "to me"),
    ("get", "for me"),
    ("pass", "over"),
)

# Words whose presence says "this is English" (rule 2), besides spaCy's unambiguous English
# stop words. Deliberately leaves out short words shared with other European languages
# ("a", "in", "me", "on", "die", "de", "la", "son").
_ENGLISH_HINTS = frozenset(
    """
the an this that these those it its my your his her their our one ones two three four five
first second third last next to of with without near behind between beside besides under
over above below at from by for into onto front back left right middle center centre top
bottom side corner closest nearest farthest furthest leftmost rightmost big bigger biggest
small smaller smallest large larger largest tall short long little half empty full open
closed is are which who what where there here and or not
red green blue yellow orange purple pink brown black white gray grey silver gold dark light
man men woman women person people guy girl boy lady kid child baby player
cup mug glass bottle bowl plate box can jar knife fork spoon sponge book phone remote laptop
keyboard mouse chair table couch sofa bed dog cat bird horse sheep cow elephant bear zebra
giraffe car truck bus bike bicycle motorcycle train boat plane umbrella bag backpack suitcase
ball kite toy banana apple sandwich pizza donut cake carrot broccoli hat shirt jacket tie
scissors clock vase tv screen towel block door window wall floor sink oven fridge
""".split()
)

_APOSTROPHES = dict.fromkeys(map(ord, "\u2019\u2018\u02bc\u00b4`"), "'")


@dataclass(frozen=True)
class NormaliserSettings:
    """Phrase lists (lower case, space-separated words) and switches for normalise_command."""

    enabled: bool = True
    leading_phrases: tuple[str, ...] = LEADING_PHRASES
    trailing_phrases: tuple[str, ...] = TRAILING_PHRASES
    verbs: tuple[str, ...] = VERBS
    vocatives: tuple[str, ...] = VOCATIVES
    separable_particles: tuple[tuple[str, str], ...] = SEPARABLE_PARTICLES
    check_language: bool = True


def clean_text(text: str) -> str:
    """Rule 1: drop emoji/symbols, turn punctuation into spaces (keeping in-word ' and -)."""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        prev_ok = i > 0 and text[i - 1].isalnum()
        next_ok = i + 1 < n and text[i + 1].isalnum()
        cat = unicodedata.category(ch)
        if ch.isalnum():
            out.append(ch)
        elif cat.startswith("M") and not _is_emoji_mark(ch) and out and out[-1] != " ":
            out.append(ch)  # a combining accent left after NFC stays on its letter
        elif ch.isspace():
            out.append(" ")
        elif ch in "'-" and prev_ok and next_ok:
            out.append(ch)
        elif ch in ".," and i > 0 and text[i - 1].isdigit() and next_ok and text[i + 1].isdigit():
            out.append(ch)
        elif ch == "&":
            out.append(" & ")
        else:
            out.append(" ")  # punctuation, emoji, other symbols, control/format characters
    return " ".join("".join(out).split())


def _is_emoji_mark(ch: str) -> bool:
    """Variation selectors and the keycap mark belong to emoji, not to words."""
    o = ord(ch)
    return 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF or o == 0x20E3


def _looks_english(words: list[str], settings: NormaliserSettings) -> str | None:
    """Rule 2: the reason the text is not English, or None."""
    letters = [c for w in words for c in w if c.isalpha()]
    if not letters:
        return "it contains no letters"
    non_ascii = sum(1 for c in letters if not c.isascii())
    if non_ascii * 2 > len(letters):
        return "most of its letters are not English (non-ASCII)"
    if len(words) >= 2:
        phrase_words: set[str] = set()
        for phrase in (
            settings.leading_phrases
            + settings.trailing_phrases
            + settings.verbs
            + settings.vocatives
        ):
            phrase_words.update(phrase.lower().split())
        # a phrase word shared with another language ("me" of "give me") is no evidence
        strong = (
            set(_ENGLISH_HINTS)
            | unambiguous_function_words()
            | (phrase_words - other_function_words())
        )
        keys = [_key(w) for w in words]
        if any(k in strong for k in keys):
            return None
        shouting = all(w.isupper() for w in words if any(c.isalpha() for c in w))
        for w, k in zip(words, keys):
            if not shouting and _acronym(w):
                continue  # "USB cable", "LED lamp": an acronym is neutral, like a number
            if not _is_english_word(k, strong):
                return f"it has no English function word and {k!r} is not an English word"
    return None


def _acronym(word: str) -> bool:
    return 2 <= len(word) <= 5 and word.isascii() and word.isalpha() and word.isupper()


def _key(word: str) -> str:
    return word.lower().strip("'-")


def _parts(key: str) -> list[str]:
    """The letter parts of a word key: "left-most" -> left, most; "man's" -> man, s."""
    return [p for p in re.split(r"['-]", key) if p]


def _is_english_word(key: str, strong: set[str]) -> bool:
    """A word with a digit or no letter is neutral; else every part is a known English word."""
    if any(c.isdigit() for c in key) or not any(c.isalpha() for c in key):
        return True
    function = english_function_words()
    return all(
        p in strong or p in function or is_dictionary_word(p) or p in _CLITICS for p in _parts(key)
    )


def names_no_object(words: list[str]) -> bool:
    """Rule 4: no word names an object. Function words (spaCy's English stop words: determiners,
    pronouns, prepositions, numbers ...), position words and ordinals name none; "one"/"ones"
    with a position word does ("the one on the left": the object there, as the world grammar
    says it), a bare position or pronoun does not ("left", "that one", "it").
    """
    none = no_object_words()
    parts = [p for k in map(_key, words) if any(c.isalpha() for c in k) for p in _parts(k)]
    if any(p not in none and p not in _CLITICS for p in parts):
        return False
    return not (
        any(p in ("one", "ones") for p in parts) and any(p in SPATIAL_WORDS for p in parts)
    )


_CLITICS = frozenset({"s", "t", "d", "ll", "re", "ve", "m"})


def _match_start(lower: list[str], phrases: list[list[str]]) -> int:
    """Length of the longest phrase matching at the start of `lower` (0: none)."""
    for p in phrases:  # longest first
        if len(p) <= len(lower) and lower[: len(p)] == p:
            return len(p)
    return 0


def normalise_command(text: str, settings: NormaliserSettings | None = None) -> str:
    """Turn a spoken command into the referring expression the method expects (module doc)."""
    settings = settings or NormaliserSettings()
    if text is None or not text.strip():
        raise EmptyCommandError("the command is empty")
    cleaned = clean_text(text)
    if not cleaned:
        raise EmptyCommandError(f"the command {text!r} contains no words")
    words = cleaned.split(" ")
    if settings.check_language:
        reason = _looks_english(words, settings)
        if reason:
            raise NonEnglishCommandError(
                f"the command {text!r} does not look like English: {reason}"
            )
    if not settings.enabled:
        return cleaned

    def prepare(phrases: tuple[str, ...]) -> list[list[str]]:
        return sorted((p.lower().split() for p in phrases if p.strip()), key=len, reverse=True)

    leading, trailing, verbs = (
        prepare(settings.leading_phrases),
        prepare(settings.trailing_phrases),
        prepare(settings.verbs),
    )
    vocatives = prepare(settings.vocatives)
    lower = [w.lower() for w in words]
    lo, hi = 0, len(words)

    def strip_trailing() -> None:
        nonlocal hi
        changed = True
        while changed and hi > lo:
            changed = False
            for p in trailing:
                if hi - lo >= len(p) and lower[hi - len(p) : hi] == p:
                    hi -= len(p)
                    changed = True
                    break

    # Leading politeness and vocatives (repeated), then one verb phrase, then "please" again.
    while lo < hi:
        if k := _match_start(lower[lo:hi], leading):
            lo += k
            continue
        k = _match_start(lower[lo:hi], vocatives)
        if k and (
            _match_start(lower[lo + k : hi], leading) or _match_start(lower[lo + k : hi], verbs)
        ):
            lo += k
            continue
        break
    verb: list[str] = []
    if lo < hi and (k := _match_start(lower[lo:hi], verbs)):
        verb = lower[lo : lo + k]
        lo += k
        while lo < hi and lower[lo] == "please":
            lo += 1
    strip_trailing()
    if verb:
        for v, particle in settings.separable_particles:
            part = particle.lower().split()
            if (
                verb == v.lower().split()
                and hi - lo > len(part)
                and lower[hi - len(part) : hi] == part
            ):
                hi -= len(part)
                strip_trailing()
                break
    if lo >= hi or names_no_object(words[lo:hi]):
        raise EmptyCommandError(f"the command {text!r} names no object")
    return " ".join(words[lo:hi])
