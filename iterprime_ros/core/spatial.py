"""Spatial words of a referring expression -> positional cues for selection (beyond the paper).

Why: about half of RefCOCO's expressions say where the object is ("the leftmost cup", "the one
at the top", "the biggest box"), and a Grad-CAM heat map often lights up every look-alike.
The cue lets selection (core.selection, ``spatial_prior=True``) prefer, among similarly hot
proposals, the one that lies furthest in the named direction. Pure text: no tagger, so it is
cheap and deterministic.

Only *absolute* uses are cues. A relation to another object ("left of the box", "to the
right of", "closest to the plate", "bigger than") names a direction relative to an anchor
whose place selection does not know, so it gives no cue; words that only ever relate
("above", "below", "behind", "next to", "near") are never cues.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import _word_key

# the axis a cue ranks proposals on; core.selection turns each into a position in [0, 1]
CUE_KINDS: tuple[str, ...] = (
    "left",
    "right",
    "top",
    "bottom",
    "middle",
    "nearest",  # nearest the camera: lowest in the image (a camera looking down at a table)
    "farthest",
    "biggest",
    "smallest",
)

_CUE_OF_WORD: dict[str, str] = {
    "left": "left",
    "leftmost": "left",
    "right": "right",
    "rightmost": "right",
    "top": "top",
    "topmost": "top",
    "upper": "top",
    "uppermost": "top",
    "highest": "top",
    "bottom": "bottom",
    "bottommost": "bottom",
    "lower": "bottom",
    "lowest": "bottom",
    "middle": "middle",
    "center": "middle",
    "centre": "middle",
    "central": "middle",
    "nearest": "nearest",
    "closest": "nearest",
    "front": "nearest",
    "farthest": "farthest",
    "furthest": "farthest",
    "biggest": "biggest",
    "largest": "biggest",
    "bigger": "biggest",
    "larger": "biggest",
    "smallest": "smallest",
    "tiniest": "smallest",
    "smaller": "smallest",
}
# a cue word followed by one of these relates the target to an anchor: "left of the box",
# "closest to the plate", "bigger than the cup", "in front of"
_RELATING_NEXT: frozenset[str] = frozenset({"of", "to", "than", "from"})


@dataclass(frozen=True)
class SpatialCue:
    """kind: one of CUE_KINDS; word: the expression's word that gave it (for logs/tests)."""

    kind: str
    word: str


def _words(expression: str) -> list[str]:
    # hyphens join directions ("top-left"); core.text's word key strips the punctuation
    pieces = re.split(r"[\s\-/]+", expression)
    return [k for k in (_word_key(p) for p in pieces) if k]


def spatial_cues(expression: str) -> tuple[SpatialCue, ...]:
    """The absolute spatial cues of `expression`, in order, one per kind (first word wins).

    "the cup on the top left" -> (top, left); "the leftmost ball" -> (left,);
    "the cup left of the box" -> () (a relation); "in front of the box" -> () (a relation).
    """
    words = _words(expression)
    cues: list[SpatialCue] = []
    seen: set[str] = set()
    for i, w in enumerate(words):
        kind = _CUE_OF_WORD.get(w)
        if kind is None or kind in seen:
            continue
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if nxt in _RELATING_NEXT:
            continue
        if w == "front" and (i == 0 or words[i - 1] != "the"):
            continue  # "in front of" is caught above; only "the front (one)" is absolute
        seen.add(kind)
        cues.append(SpatialCue(kind, w))
    return tuple(cues)
