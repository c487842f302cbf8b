"""Short spoken descriptions of candidate objects, and the question that tells them apart.

Why: when the words fit several objects the robot must ask in words a person can answer with.
The words come from what the robot sees: a colour name from the mask's pixels, the place of
each candidate among the others (left, middle, right; top, bottom when they stand in a column),
and its size when sizes differ clearly. A person answers "the red one" or "the left one", and
core.replies maps that answer back onto the same attributes.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

COLOUR_NAMES: tuple[str, ...] = (
    "red",
    "orange",
    "brown",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "white",
    "grey",
    "black",
)
# Sizes "differ clearly" when the larger area is at least this many times the smaller one.
SIZE_RATIO = 1.6


def colour_name(pixels: np.ndarray) -> str:
    """The plain colour name of RGB pixels (K x 3 uint8): the median colour read by hue, with
    low-saturation colours named by brightness (white, grey, black).
    """
    px = np.asarray(pixels).reshape(-1, 3)
    if len(px) == 0:
        return ""
    r, g, b = (float(v) / 255.0 for v in np.median(px, axis=0))
    hue, sat, val = colorsys.rgb_to_hsv(r, g, b)
    hue *= 360.0
    if val < 0.2:
        return "black"
    if sat < 0.2:
        return "white" if val > 0.8 else "grey"
    if hue < 15 or hue >= 345:
        return "red"
    if hue < 40:
        return "brown" if val < 0.6 else "orange"
    if hue < 70:
        return "yellow"
    if hue < 170:
        return "green"
    if hue < 260:
        return "blue"
    if hue < 320:
        return "purple"
    return "pink"


@dataclass(frozen=True)
class Look:
    """What a listener can tell a candidate by: colour, place among the others, size."""

    colour: str
    place: str  # "on the left", "in the middle", "on the right", "at the top", ... or ""
    size: str  # "big", "small" or ""


def _places(centroids: Sequence[tuple[float, float]]) -> list[str]:
    """Each candidate's place among the others, along the axis they spread more on."""
    n = len(centroids)
    if n < 2:
        return [""] * n
    xs = np.array([c[0] for c in centroids])
    ys = np.array([c[1] for c in centroids])
    horizontal = np.ptp(xs) >= np.ptp(ys)
    keys = xs if horizontal else ys
    low, high = ("on the left", "on the right") if horizontal else ("at the top", "at the bottom")
    order = np.argsort(keys, kind="stable")
    out = [""] * n
    for rank, i in enumerate(order):
        if rank == 0:
            out[i] = low
        elif rank == n - 1:
            out[i] = high
        elif n == 3:
            out[i] = "in the middle"
        else:
            side = "left" if horizontal else "top"
            out[i] = f"{_ordinal(rank + 1)} from the {side}"
    return out


def _ordinal(k: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(k, f"{k}th")


def _sizes(areas: Sequence[int]) -> list[str]:
    """big/small only when the sizes differ clearly; the rest say nothing about size."""
    if len(areas) < 2 or min(areas) <= 0 or max(areas) < SIZE_RATIO * min(areas):
        return [""] * len(areas)
    lo, hi = min(areas), max(areas)
    return [
        "big" if a >= SIZE_RATIO * lo else "small" if hi >= SIZE_RATIO * a else "" for a in areas
    ]


def look_at(image: np.ndarray, masks: Sequence[np.ndarray]) -> list[Look]:
    """The colour, place and size of each mask, told relative to the other masks."""
    centroids = []
    areas = []
    colours = []
    for m in masks:
        ys, xs = np.nonzero(m)
        centroids.append((float(xs.mean()), float(ys.mean())) if len(xs) else (0.0, 0.0))
        areas.append(int(len(xs)))
        colours.append(colour_name(image[m]))
    return [Look(c, p, s) for c, p, s in zip(colours, _places(centroids), _sizes(areas))]


def describe(look: Look) -> str:
    """A candidate in a few words: "the red one on the left", "the big blue one"."""
    words = ["the"] + [w for w in (look.size, look.colour) if w] + ["one"]
    if look.place:
        words.append(look.place)
    return " ".join(words)


def question(noun: str, descriptions: Sequence[str], said: str = "") -> str:
    """The question to speak: "Which cup: the red one on the left or the blue one on the right?".

    Why one sentence: a voice front end says it as it is, and the listener hears every choice.
    A "which" question needs at least two options to choose from: with fewer (the colour the
    person said, `said`, fits none or one of the close candidates) "Which cup?" would leave
    the person nothing to answer, so the robot says what it cannot find and asks for other
    words instead ("I'm not sure I see the yellow cup you mean; can you describe it another
    way?").
    """
    items = [d for d in descriptions if d]
    if len(items) < 2:
        thing = " ".join(w for w in (said, noun or "one") if w)
        return f"I'm not sure I see the {thing} you mean; can you describe it another way?"
    return f"Which {noun or 'one'}: {', '.join(items[:-1])} or {items[-1]}?"
