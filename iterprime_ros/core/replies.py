"""What a short utterance in a conversation is: a reply choosing a candidate, a correction, a
reference to the last answer, a plural request, or none of these (an ordinary command).

Why here, as pure text functions: the node, the replay and the evaluation all decide the same
way (conversation.py calls these), and the rules can be tested without models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from .command import CommandError, normalise_command
from .describe import COLOUR_NAMES
from .english import no_object_words

_WORD = re.compile(r"[a-z]+")
ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "last": -1}
PLACES = {
    "left": "left",
    "leftmost": "left",
    "right": "right",
    "rightmost": "right",
    "middle": "middle",
    "center": "middle",
    "centre": "middle",
    "top": "top",
    "topmost": "top",
    "upper": "top",
    "bottom": "bottom",
    "bottommost": "bottom",
    "lower": "bottom",
}
SIZES = {"big": "big", "large": "big", "bigger": "big", "larger": "big", "biggest": "big"}
SIZES.update({"small": "small", "little": "small", "smaller": "small", "smallest": "small"})
_CORRECTION = (
    re.compile(r"^(no|nope|wrong)\b"),
    re.compile(r"\bnot (that|this|the) ?(one|it)?\b"),
    re.compile(r"\b(the )?other one\b"),
    re.compile(r"\banother one\b"),
    re.compile(r"\bwrong one\b"),
)
RELATION_WORDS = ("of", "next to", "near", "beside", "above", "below", "by", "under", "behind")
_RELATIVE = re.compile(r"\b(next to|beside|near|by|left of|right of|above|below) (it|that)\b")
_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "both": 2}
_PLURAL_HEAD = re.compile(
    r"^(?:the )?(both|all|every|each|two|three|four|five|six)\b(?: of)?(?: the)?\s*"
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def is_correction(text: str) -> bool:
    """Whether the last answer was refused ("no, the other one", "not that one", "wrong one")."""
    t = " ".join(words(text))
    return any(p.search(t) for p in _CORRECTION)


def is_relative(text: str) -> bool:
    """Whether the last answer is the anchor ("the one next to it")."""
    return bool(_RELATIVE.search(" ".join(words(text))))


@dataclass(frozen=True)
class Choice:
    """The attributes a reply names: colour, place, size, ordinal (an index, -1 = last)."""

    colour: str = ""
    place: str = ""
    size: str = ""
    ordinal: int | None = None

    @property
    def empty(self) -> bool:
        return not (self.colour or self.place or self.size) and self.ordinal is None


def choice_words(text: str) -> Choice:
    """The choosing words of a reply ("the second one", "the red one on the left")."""
    w = words(text)
    colour = next((x for x in w if x in COLOUR_NAMES), "")
    place = next((PLACES[x] for x in w if x in PLACES), "")
    size = next((SIZES[x] for x in w if x in SIZES), "")
    ordinal = next((ORDINALS[x] for x in w if x in ORDINALS), None)
    return Choice(colour, place, size, ordinal)


def choose(
    choice: Choice,
    colours: Sequence[str],
    centroids: Sequence[tuple[float, float]],
    areas: Sequence[int],
) -> int | None:
    """The one candidate the reply's attributes fit best, or None when none or several do.

    Each named attribute is checked against every candidate: the colour name as seen, the
    place among the candidates (extreme centroid; middle = nearest the candidates' mean), the
    size (largest/smallest area), the ordinal in the order the question listed them.
    """
    n = len(colours)
    if n == 0 or choice.empty:
        return None
    score = [0] * n
    named = 0
    if choice.ordinal is not None:
        named += 1
        k = choice.ordinal if choice.ordinal >= 0 else n - 1
        if k < n:
            score[k] += 1
    if choice.colour:
        named += 1
        for i, c in enumerate(colours):
            score[i] += c == choice.colour
    if choice.place:
        named += 1
        xs = [c[0] for c in centroids]
        ys = [c[1] for c in centroids]
        if choice.place == "middle":
            mx = sum(xs) / n
            pick = min(range(n), key=lambda i: abs(xs[i] - mx))
        else:
            key = {"left": xs, "right": [-x for x in xs], "top": ys, "bottom": [-y for y in ys]}
            vals = key[choice.place]
            pick = min(range(n), key=lambda i: vals[i])
        score[pick] += 1
    if choice.size:
        named += 1
        pick = max(range(n), key=lambda i: areas[i] * (1 if choice.size == "big" else -1))
        score[pick] += 1
    best = max(score)
    if best == 0 or score.count(best) > 1:
        return None
    return score.index(best)


def names_a_relation(text: str) -> bool:
    """Whether the words place the object by another one ("the cup left of the box")."""
    said = f" {' '.join(words(text))} "
    return any(f" {r} " in said for r in RELATION_WORDS)


def singles_out(
    text: str,
    colours: Sequence[str],
    centroids: Sequence[tuple[float, float]],
    areas: Sequence[int],
) -> bool:
    """Whether the words already pick one object among the candidates, so asking "which one?"
    would be pointless: they relate it to another object, or their colour, place, size or
    order fits exactly one candidate ("the leftmost cup", "the red cup" beside a blue one).
    """
    if names_a_relation(text):
        return True
    return choose(choice_words(text), colours, centroids, areas) is not None


@dataclass(frozen=True)
class PluralRequest:
    """A command for several objects: how many (None: all that match) and the singular phrase
    the heat map is computed for ("all the red blocks" -> "the red block").
    """

    count: int | None
    singular: str


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def plural_request(expression: str) -> PluralRequest | None:
    """Whether an expression asks for several objects ("both cups", "the two boxes", "all the
    red blocks"); None for a singular one. Only a quantifier at the start counts, so "the cup
    between two boxes" stays singular.
    """
    text = " ".join(words(expression))
    m = _PLURAL_HEAD.match(text)
    if not m:
        return None
    rest = text[m.end() :].split()
    if not rest:
        return None
    quant = m.group(1)
    count = _NUMBERS.get(quant)
    # the head noun: the last word before a relation or place phrase
    stop = next(
        (
            k
            for k, w in enumerate(rest)
            if w in ("on", "at", "in", "left", "right", "near", "next")
        ),
        len(rest),
    )
    if stop == 0:
        return None
    rest[stop - 1] = _singular(rest[stop - 1])
    return PluralRequest(count, "the " + " ".join(rest))


# Words of a reply that choose or fill but name no object ("no, the other one please").
_REPLY_WORDS = frozenset(
    {"one", "ones", "it", "other", "please", "yes", "no", "not", "that", "this", "thanks"}
)


def names_other_object(text: str, noun: str) -> bool:
    """Whether `text` names an object other than `noun` (the pending question's noun).

    Why: after "Which cup?" the person may answer ("the red one", "the left cup", "the second
    one") or move on ("the bowl", "grab the blue box"); only a command whose every object word
    is the question's noun can be an answer. Leading command words ("find", "could you grab")
    are stripped by the command normaliser first, so they do not count as objects, and an
    object after a relation word is only a landmark ("the cup above the green box").
    """
    try:
        expression = normalise_command(text)
    except CommandError:  # "the left one", "it": a reply names no object of its own
        expression = text
    none = no_object_words()
    chooser = set(COLOUR_NAMES) | PLACES.keys() | SIZES.keys() | ORDINALS.keys()
    for w in _head(words(expression)):
        if w in none or w in chooser or w in _REPLY_WORDS:
            continue
        if not noun or _singular(w) != _singular(noun.lower()):
            return True
    return False


def _head(said: list[str]) -> list[str]:
    """The words before the first relation word: "the cup above the green box" is about a cup
    (the box is only where it is), so only "the cup" says what the command asks for.
    """
    text = " ".join(said)
    cuts = [m.start() for r in RELATION_WORDS for m in re.finditer(rf"\b{r}\b", text)]
    return text[: min(cuts)].split() if cuts else said


def mentions_noun(text: str, noun: str) -> bool:
    """Whether `text` says `noun` (singular or plural): "find the white balls" says "ball"."""
    target = _singular(noun.lower())
    return bool(target) and any(_singular(w) == target for w in words(text))
