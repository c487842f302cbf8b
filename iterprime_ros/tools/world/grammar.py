"""Referring expressions for the tabletop world, their meaning, and ITM hard negatives.

Grammar (surface forms; synonyms chosen at random):

    DESC     := "the" [SIZE] [COLOUR] NOUN
    ATTR     := DESC                          "the small blue mug"
    ABSOLUTE := "the" SUPER [SIZE] [COLOUR] NOUN
                                              "the leftmost ball"
              | DESC PLACE                    "the one at the top"
    RELATION := DESC REL DESC                 "the cup left of the red box",
                                              "the block next to the bowl"
    COMMAND  := VERB EXPR [please]            "grab the ...", "could you pick up the ... please"

    SIZE:  big | large | small | little       NOUN:  a shape or "one"
    SUPER: leftmost | rightmost | topmost | bottommost
    PLACE: on the left | on the right | at the top | at the bottom
    REL:   left of | to the left of | right of | to the right of | above | below | next to |
           near | beside

Meaning (pixels of a 128 px scene; margins scale with the image):
- a DESC's candidates are the objects with its shape (any for "one") and the stated colour/size;
- SUPER: the candidate extreme along the axis, ahead of every other candidate by a margin;
- PLACE: as SUPER, and in that half of the image (with a margin); a lone candidate only needs
  the half;
- REL left/right/above/below: centroid beyond the anchor's centroid by a margin on that axis;
  near: the gap between the two bounding boxes is small and every other candidate is clearly
  farther.
Each test has a strict form (used to state a positive) and a lenient form (what a listener
might still accept). An expression is only emitted when exactly one object satisfies the
strict form and no other object satisfies the lenient form, so it refers to exactly one
object. A hard negative is only used when no object satisfies even the lenient form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np

from .scenes import COLOURS, SHAPES, SIZES, Scene

SIZE_WORDS: dict[str, tuple[str, ...]] = {"big": ("big", "large"), "small": ("small", "little")}
SUPERLATIVES: dict[str, str] = {
    "left": "leftmost",
    "right": "rightmost",
    "top": "topmost",
    "bottom": "bottommost",
}
PLACES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below",),
    "near": ("next to", "near", "beside"),
}
OPPOSITE: dict[str, str] = {
    "left": "right",
    "right": "left",
    "top": "bottom",
    "bottom": "top",
    "above": "below",
    "below": "above",
}
COMMAND_TEMPLATES: tuple[str, ...] = (
    "grab {}",
    "pick up {}",
    "could you pick up {} please",
    "hand me {}",
    "bring me {}",
    "get {}",
    "please grab {}",
    "pick {} up",
    "can you get me {}",
    "find {}",
)
KINDS: tuple[str, ...] = ("attribute", "absolute", "relation")

# Every word the grammar (and its command forms) can produce, for the tokenizer's vocabulary.
GRAMMAR_WORDS: tuple[str, ...] = tuple(
    sorted(
        set(
            "the one there is a an".split()
            + list(SHAPES)
            + list(COLOURS)
            + [w for ws in SIZE_WORDS.values() for w in ws]
            + list(SUPERLATIVES.values())
            + " ".join(PLACES.values()).split()
            + " ".join(w for ws in RELATION_WORDS.values() for w in ws).split()
            + " ".join(t.replace("{}", "") for t in COMMAND_TEMPLATES).split()
        )
    )
)


@dataclass(frozen=True)
class Desc:
    """A noun phrase: NOUN is a shape or "one"; colour/size None when not stated."""

    noun: str
    colour: str | None = None
    size: str | None = None
    size_word: str | None = None  # the surface word for `size` (big/large/small/little)

    def words(self) -> list[str]:
        out = []
        if self.size is not None:
            out.append(self.size_word or self.size)
        if self.colour is not None:
            out.append(self.colour)
        out.append(self.noun)
        return out

    def matches(self, obj) -> bool:
        return (
            (self.noun == "one" or self.noun == obj.shape)
            and (self.colour is None or self.colour == obj.colour)
            and (self.size is None or self.size == obj.size)
        )


@dataclass(frozen=True)
class Expr:
    """A referring expression's structure; `text` renders it."""

    kind: str  # attribute | absolute | relation
    target: Desc
    direction: str | None = (
        None  # absolute: left/right/top/bottom; relation: left/right/above/below/near
    )
    form: str | None = None  # absolute: "super" | "place"; relation: the surface phrase
    anchor: Desc | None = None

    @property
    def text(self) -> str:
        if self.kind == "attribute":
            return "the " + " ".join(self.target.words())
        if self.kind == "absolute":
            if self.form == "super":
                return "the " + " ".join([SUPERLATIVES[self.direction]] + self.target.words())
            return "the " + " ".join(self.target.words()) + " " + PLACES[self.direction]
        assert self.anchor is not None
        return (
            "the "
            + " ".join(self.target.words())
            + " "
            + str(self.form)
            + " the "
            + " ".join(self.anchor.words())
        )


@dataclass(frozen=True)
class Referring:
    """One evaluation/training item: an expression that refers to exactly one object."""

    text: str  # the referring expression
    command: str  # what a user would say (the expression itself, or a spoken command around it)
    target: int  # index of the referred object in scene.objects / scene.masks
    kind: str
    expr: Expr
    anchor: int | None = None

    @property
    def is_command(self) -> bool:
        return self.command != self.text


# ----------------------------------------------------------------------------- meaning
@dataclass(frozen=True)
class Margins:
    """Margins (pixels at 128 px; scaled by the scene size)."""

    extreme: float = 8.0  # SUPER/PLACE: ahead of the next candidate by this much
    half: float = 6.0  # PLACE: this far inside its half of the image
    relation: float = 10.0  # left/right/above/below: beyond the anchor's centroid by this much
    lenient_relation: float = 3.0  # lenient: beyond the anchor's centroid by more than -this
    near: float = 14.0  # near: box gap at most this much ...
    near_others: float = 12.0  # ... and every other candidate's gap larger by at least this much
    lenient_near: float = 24.0  # lenient near: box gap at most this much


def _scale(scene: Scene) -> float:
    return min(scene.height, scene.width) / 128.0


def _key(obj, direction: str) -> float:
    """Smaller is further in `direction`."""
    cx, cy = obj.centroid
    return {"left": cx, "right": -cx, "top": cy, "bottom": -cy}[direction]


def _gap(a, b) -> float:
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    dx = max(bx0 - ax1, ax0 - bx1, 0)
    dy = max(by0 - ay1, ay0 - by1, 0)
    return math.hypot(dx, dy)


def candidates(desc: Desc, scene: Scene, exclude: Iterable[int] = ()) -> list[int]:
    ex = set(exclude)
    return [i for i, o in enumerate(scene.objects) if i not in ex and desc.matches(o)]


def _in_half(obj, direction: str, scene: Scene, margin: float) -> bool:
    cx, cy = obj.centroid
    w, h = scene.width, scene.height
    return {
        "left": cx <= w / 2 - margin,
        "right": cx >= w / 2 + margin,
        "top": cy <= h / 2 - margin,
        "bottom": cy >= h / 2 + margin,
    }[direction]


def _relation_holds(o, a, relation: str, strict: bool, m: Margins, s: float) -> bool:
    if relation == "near":
        return _gap(o, a) <= (m.near if strict else m.lenient_near) * s
    d = (m.relation if strict else -m.lenient_relation) * s
    (ox, oy), (ax, ay) = o.centroid, a.centroid
    return {
        "left": ox <= ax - d,
        "right": ox >= ax + d,
        "above": oy <= ay - d,
        "below": oy >= ay + d,
    }[relation]


def referents(
    expr: Expr, scene: Scene, strict: bool = True, margins: Margins = Margins()
) -> list[int]:
    """Indices of the objects that satisfy `expr` (strict or lenient reading)."""
    s, m, objs = _scale(scene), margins, scene.objects
    if expr.kind == "attribute":
        return candidates(expr.target, scene)
    if expr.kind == "absolute":
        cands = candidates(expr.target, scene)
        if not cands:
            return []
        keys = {i: _key(objs[i], expr.direction) for i in cands}
        out = []
        for i in cands:
            others = [keys[j] for j in cands if j != i]
            if strict:
                extreme = all(k >= keys[i] + m.extreme * s for k in others)
            else:
                extreme = all(k > keys[i] - m.extreme * s / 2 for k in others)
            if expr.form == "place":
                half_margin = m.half * s if strict else -m.half * s
                extreme = extreme and _in_half(objs[i], expr.direction, scene, half_margin)
            elif strict and not others:
                extreme = False  # "the leftmost ball" needs two balls to compare
            if extreme:
                out.append(i)
        return out
    # relation: any anchor candidate will do (a positive's anchor is unique by construction)
    assert expr.anchor is not None
    anchors = candidates(expr.anchor, scene)
    out = []
    for a in anchors:
        cands = candidates(expr.target, scene, exclude=[a])
        for i in cands:
            if not _relation_holds(objs[i], objs[a], expr.direction, strict, m, s):
                continue
            if strict and expr.direction == "near":
                gi = _gap(objs[i], objs[a])
                if any(_gap(objs[j], objs[a]) < gi + m.near_others * s for j in cands if j != i):
                    continue
            if i not in out:
                out.append(i)
    return out


def refers_uniquely(expr: Expr, scene: Scene, target: int, margins: Margins = Margins()) -> bool:
    """Exactly `target` satisfies the strict reading and nothing else satisfies the lenient one."""
    if referents(expr, scene, True, margins) != [target]:
        return False
    if set(referents(expr, scene, False, margins)) != {target}:
        return False
    if expr.kind == "relation":  # the anchor itself must be named unambiguously
        return len(candidates(expr.anchor, scene)) == 1
    return True


def is_false(expr: Expr, scene: Scene, margins: Margins = Margins()) -> bool:
    """No object satisfies even the lenient reading: a safe ITM negative."""
    return not referents(expr, scene, False, margins)


# ----------------------------------------------------------------------------- generation
def _desc(
    rng: np.random.Generator, obj, colour: bool, size: bool, noun: str | None = None
) -> Desc:
    sz = obj.size if size else None
    return Desc(
        noun=noun or obj.shape,
        colour=obj.colour if colour else None,
        size=sz,
        size_word=str(rng.choice(SIZE_WORDS[sz])) if sz else None,
    )


def _all_descs(rng: np.random.Generator, obj, allow_bare_one: bool) -> list[Desc]:
    out = []
    for c in (False, True):
        for s in (False, True):
            out.append(_desc(rng, obj, c, s))
            if (c or s or allow_bare_one) and rng.random() < 0.25:
                out.append(_desc(rng, obj, c, s, noun="one"))
    return out


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))] if items else None


def _attribute(scene: Scene, t: int, rng: np.random.Generator) -> Expr | None:
    descs = [d for d in _all_descs(rng, scene.objects[t], False) if candidates(d, scene) == [t]]
    return Expr("attribute", _pick(rng, descs)) if descs else None


def _absolute(scene: Scene, t: int, rng: np.random.Generator) -> Expr | None:
    obj = scene.objects[t]
    options = []
    for d in _all_descs(rng, obj, True):
        for direction in ("left", "right", "top", "bottom"):
            for form in ("super", "place"):
                if form == "super" and d.noun == "one":
                    # "the leftmost one" is fine English but rare; keep "the one on the left"
                    continue
                e = Expr("absolute", d, direction, form)
                if refers_uniquely(e, scene, t):
                    options.append(e)
    if not options:
        return None
    needed = [
        e for e in options if len(candidates(e.target, scene)) >= 2
    ]  # the position is needed
    return _pick(rng, needed if needed and rng.random() < 0.85 else options)


def _relation(scene: Scene, t: int, rng: np.random.Generator) -> Expr | None:
    options = []
    for a, aobj in enumerate(scene.objects):
        if a == t:
            continue
        anchors = [
            d
            for d in _all_descs(rng, aobj, False)
            if candidates(d, scene) == [a] and d.noun != "one"
        ]
        if not anchors:
            continue
        anchor = min(anchors, key=lambda d: len(d.words()) + rng.random())  # a short unique name
        for d in _all_descs(rng, scene.objects[t], False):
            for rel in ("left", "right", "above", "below", "near"):
                e = Expr("relation", d, rel, str(rng.choice(RELATION_WORDS[rel])), anchor)
                if refers_uniquely(e, scene, t):
                    options.append((e, a))
    if not options:
        return None
    needed = [o for o in options if len(candidates(o[0].target, scene, exclude=[o[1]])) >= 2]
    e, _ = _pick(rng, needed if needed and rng.random() < 0.7 else options)
    return e


def make_expression(
    scene: Scene, target: int, kind: str, rng: np.random.Generator, command_prob: float = 0.0
) -> Referring | None:
    """An expression of `kind` for object `target`, or None if this scene allows none."""
    fn = {"attribute": _attribute, "absolute": _absolute, "relation": _relation}[kind]
    e = fn(scene, target, rng)
    if e is None:
        return None
    text = e.text
    command = (
        str(rng.choice(COMMAND_TEMPLATES)).format(text) if rng.random() < command_prob else text
    )
    anchor = None
    if e.kind == "relation":
        anchor = candidates(e.anchor, scene)[0]
    return Referring(text=text, command=command, target=target, kind=e.kind, expr=e, anchor=anchor)


def scene_expressions(
    scene: Scene,
    rng: np.random.Generator,
    per_scene: int = 2,
    kind_weights: tuple[float, float, float] = (0.34, 0.33, 0.33),
    command_prob: float = 0.3,
) -> list[Referring]:
    """Up to `per_scene` expressions for distinct targets, kinds drawn by `kind_weights`."""
    out: list[Referring] = []
    order = list(rng.permutation(len(scene.objects)))
    p = np.asarray(kind_weights, float) / sum(kind_weights)
    for t in order:
        if len(out) >= per_scene:
            break
        first = KINDS[int(rng.choice(3, p=p))]
        for kind in [first] + [k for k in KINDS if k != first]:
            r = make_expression(scene, int(t), kind, rng, command_prob)
            if r is not None:
                out.append(r)
                break
    return out


# ----------------------------------------------------------------------------- negatives
NEGATIVE_TYPES: tuple[str, ...] = ("colour", "shape", "size", "relation", "roles", "position")


def _scene_values(scene: Scene, attr: str, exclude: str | None) -> list[str]:
    vals = sorted({getattr(o, attr) for o in scene.objects} - {exclude})
    return vals


def _negative_candidates(
    expr: Expr, scene: Scene, kind: str, rng: np.random.Generator
) -> list[Expr]:
    """Edits of `expr` of one negative type (not yet checked to be false)."""
    out: list[Expr] = []
    descs = [("target", expr.target)] + (
        [("anchor", expr.anchor)] if expr.anchor is not None else []
    )
    for role, d in descs:
        if kind == "colour":
            present = _scene_values(
                scene, "colour", d.colour
            )  # colours in the scene: a binding test
            others = [c for c in COLOURS if c != d.colour]
            for c in present + others:
                out.append(replace(expr, **{role: replace(d, colour=c)}))
        elif kind == "shape" and d.noun != "one":
            present = _scene_values(scene, "shape", d.noun)
            for sh in present + [s for s in SHAPES if s != d.noun]:
                out.append(replace(expr, **{role: replace(d, noun=sh)}))
        elif kind == "size":
            flip = "big" if d.size == "small" else "small"
            if d.size is None:
                flip = str(rng.choice(SIZES))
            out.append(
                replace(
                    expr,
                    **{role: replace(d, size=flip, size_word=str(rng.choice(SIZE_WORDS[flip])))},
                )
            )
    if kind == "relation" and expr.kind == "relation" and expr.direction in OPPOSITE:
        opp = OPPOSITE[expr.direction]
        out.append(replace(expr, direction=opp, form=str(rng.choice(RELATION_WORDS[opp]))))
    if kind == "relation" and expr.kind == "relation" and expr.direction == "near":
        for rel in ("left", "right", "above", "below"):
            out.append(replace(expr, direction=rel, form=str(rng.choice(RELATION_WORDS[rel]))))
    if kind == "roles" and expr.kind == "relation":
        out.append(replace(expr, target=expr.anchor, anchor=expr.target))
    if kind == "position" and expr.kind == "absolute":
        out.append(replace(expr, direction=OPPOSITE[expr.direction]))
        if expr.form == "super":
            out.append(replace(expr, direction=OPPOSITE[expr.direction], form="place"))
    return out


def hard_negative_expr(
    expr: Expr, scene: Scene, rng: np.random.Generator, types: tuple[str, ...] = NEGATIVE_TYPES
) -> tuple[Expr, str] | None:
    """(edited expression, type): an edit of `expr` that no object of `scene` satisfies, or None.

    Types are tried in the given order when it is given, else in a random order; within a type,
    edits that use a colour/shape present in the scene come first most of the time (so the
    model must bind attributes to the right object, not just spot a colour).
    """
    order = (
        types
        if types is not NEGATIVE_TYPES
        else tuple(types[i] for i in rng.permutation(len(types)))
    )
    for kind in order:
        cands = _negative_candidates(expr, scene, kind, rng)
        if kind in ("colour", "shape") and len(cands) > 1:
            k = max(1, len(cands) // 2)
            head = [cands[i] for i in rng.permutation(k)] if rng.random() < 0.8 else []
            cands = head + [cands[i] for i in rng.permutation(len(cands))]
        for c in cands:
            if c.text != expr.text and is_false(c, scene):
                return c, kind
    return None


def hard_negative(
    expr: Expr, scene: Scene, rng: np.random.Generator, types: tuple[str, ...] = NEGATIVE_TYPES
) -> tuple[str, str] | None:
    """(text, type) of hard_negative_expr, or None."""
    got = hard_negative_expr(expr, scene, rng, types)
    return (got[0].text, got[1]) if got else None
