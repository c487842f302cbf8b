"""Candidates, confidence and ambiguity from the Grad-CAM heat over the proposals.

Why: the heat map says where the words point. The paper keeps only the proposal that holds its
peak; the same map also says which other objects the words fit (their mean heat), how far the
chosen one stands above the next distinct object (a small gap means the words fit both: ask
"which one?"), and how much of the heat the answer explains (a weak answer leaves most of it
elsewhere). Those numbers become the candidates, the ambiguity flag and the confidence.

Everything here is a pure function of arrays. Proposals may also be core.device_masks'
DeviceMasks (the GPU path): their per-proposal sums stay on the device, and a mask is read to
the host only for a proposal looked at. The weights of the confidence were fitted on the
world's validation scenes (tools/world/dialogue.py), never on its test scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .device_masks import DeviceMasks
from .mask_sums import count_components

# Two masks are the same object when the smaller one lies this much inside the other (a part
# and its whole, two proposals of one object, a merged pair and its member).
SAME_OBJECT_OVERLAP = 0.3
# A proposal covering more than this share of the image is a surface (the table), not an object
# a person asks a robot for; it is never offered as another candidate.
MAX_CANDIDATE_AREA = 0.5
# A part is completed to the whole object that holds this share of it and keeps this share of
# its mean heat (the same numbers as core.selection's "whole" variant).
WHOLE_CONTAINMENT = 0.9
WHOLE_HEAT_RATIO = 0.85
# Logistic weights of the confidence over the features of ``confidence_features`` (bias
# first), fitted by ``iterprime eval --world --dialogue --fit-confidence`` on validation scenes.
CONFIDENCE_WEIGHTS: tuple[float, ...] = (-2.216, 1.905, 2.05, -0.538, -0.082)


@dataclass(frozen=True)
class RankedObject:
    """One distinct object: its proposal index and its mean heat (the ranking score)."""

    index: int
    score: float


def mean_heat(heat: np.ndarray, proposals: np.ndarray) -> np.ndarray:
    """(N,) mean heat inside each proposal (0 for an empty one), in float64.

    One float32 matrix product over the flattened masks: the per-proposal sums the candidates
    need cost about as much as the selection's own sums.
    """
    if len(proposals) == 0:
        return np.zeros(0, np.float64)
    sums = _products(proposals, np.asarray(heat, np.float32).reshape(-1))
    area = _areas(proposals)
    return np.where(area > 0, sums.astype(np.float64) / np.maximum(area, 1), 0.0)


def _areas(proposals: np.ndarray | DeviceMasks) -> np.ndarray:
    """(N,) pixel count of each proposal (computed where the masks live)."""
    if isinstance(proposals, DeviceMasks):
        return proposals.tensor.reshape(len(proposals), -1).sum(dim=1).cpu().numpy()
    props = np.asarray(proposals, dtype=bool)
    return props.reshape(props.shape[0], -1).sum(axis=1)


def _products(proposals: np.ndarray | DeviceMasks, values: np.ndarray) -> np.ndarray:
    """(N,) float32 sum of `values` (a flat H*W vector) inside each proposal."""
    if isinstance(proposals, DeviceMasks):
        flat = proposals.tensor.reshape(len(proposals), -1)
        vec = torch.from_numpy(np.ascontiguousarray(values, np.float32)).to(flat.device)
        return (flat.to(torch.float32) @ vec).cpu().numpy()
    props = np.asarray(proposals, dtype=bool)
    return props.reshape(props.shape[0], -1).astype(np.float32) @ values


def same_object(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two masks show the same object: the smaller lies mostly inside the larger."""
    small = min(int(a.sum()), int(b.sum()))
    if small == 0:
        return False
    return np.count_nonzero(a & b) >= SAME_OBJECT_OVERLAP * small


def distinct_objects(
    proposals: np.ndarray,
    scores: np.ndarray,
    first: int | None,
    limit: int,
    floor: float = 0.0,
    complete: bool = True,
) -> list[RankedObject]:
    """The best `limit` distinct objects, `first` (the chosen answer) first, then by score.

    A proposal is skipped when it is empty, covers more than MAX_CANDIDATE_AREA of the image,
    scores below `floor`, or shows an object already taken (same_object), so a part, a merged
    pair or a second proposal of the answer is never offered as "another one". When the answer
    itself is a surface (the paper's rule can pick the table) it stays first, and the objects
    on it are still offered. With `complete`, a part is offered as its whole object
    (whole_object), so the first candidate may be larger than the paper's answer.
    """
    props = proposals if isinstance(proposals, DeviceMasks) else np.asarray(proposals, bool)
    if len(props) == 0 or limit < 1:
        return []
    pixels = props.shape[1] * props.shape[2]
    areas = _areas(props)
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    if first is not None:
        order = [first] + [i for i in order if i != first]
    taken: list[RankedObject] = []
    objects: list[int] = []  # taken proposals that are objects, not a surface
    for i in order:
        area = int(areas[i])
        if area == 0:
            continue
        surface = area > MAX_CANDIDATE_AREA * pixels
        if i != first and (surface or scores[i] < floor):
            continue
        if any(same_object(props[i], props[t]) for t in objects):
            continue
        if not surface and complete:
            i = whole_object(i, props, scores)
        taken.append(RankedObject(i, float(scores[i])))
        if not surface:  # an answer that is the table hides none of the objects on it
            objects.append(i)
        if len(taken) >= limit:
            break
    return taken


def whole_object(index: int, proposals: np.ndarray, scores: np.ndarray) -> int:
    """The whole object a proposal is part of: the largest one-piece proposal that holds at
    least WHOLE_CONTAINMENT of it and keeps WHOLE_HEAT_RATIO of its mean heat (else itself).

    Why: the peak often sits on a part of an object (a half, a handle), and the paper's rule
    then answers with the part; an object offered to a person, or handed over after a reply,
    should be the whole thing. One piece: a merged pair of two objects is not one object.
    """
    props = proposals if isinstance(proposals, DeviceMasks) else np.asarray(proposals, bool)
    own = np.asarray(props[index], dtype=np.float32).reshape(-1)
    area = _areas(props)
    inside = _products(props, own)
    pixels = own.shape[0]
    ok = (
        (area > area[index])
        & (inside >= WHOLE_CONTAINMENT * area[index])
        & (area <= MAX_CANDIDATE_AREA * pixels)
        & (scores >= WHOLE_HEAT_RATIO * scores[index])
    )
    for j in sorted(np.flatnonzero(ok), key=lambda k: -int(area[k])):
        if count_components(props[j]) == 1:
            return int(j)
    return int(index)


def is_ambiguous(ranked: Sequence[RankedObject], margin: float) -> bool:
    """The words fit more than one object: the runner-up's score is within `margin` (a share)
    of the best distinct object's score.
    """
    if len(ranked) < 2:
        return False
    best = max(r.score for r in ranked)
    others = sorted((r.score for r in ranked), reverse=True)
    return best > 0 and others[1] >= (1.0 - margin) * best


def confidence_features(
    heat: np.ndarray, chosen_mask: np.ndarray, ranked: Sequence[RankedObject], itm_score: float
) -> np.ndarray:
    """The signals the confidence weighs, each in [0, 1].

    1. the chosen mask's mean heat (how strongly the words point at it);
    2. its lead over the next distinct object (1 - runner-up / chosen; 1 with no runner-up);
    3. the share of the whole heat that falls inside it (an answer that explains little of the
       heat is likely a part, or the wrong object);
    4. the ITM match probability of the pass whose map was used.
    """
    h = np.asarray(heat, np.float64)
    m = np.asarray(chosen_mask, bool)
    area = int(m.sum())
    inside = float(h[m].sum()) if area else 0.0
    mean = inside / area if area else 0.0
    total = float(h.sum())
    share = inside / total if total > 0 else 0.0
    chosen = ranked[0].score if ranked else mean
    runner = max((r.score for r in ranked[1:]), default=0.0)
    lead = 1.0 - runner / chosen if chosen > 0 else 0.0
    return np.clip(np.array([mean, lead, share, float(itm_score)]), 0.0, 1.0)


def confidence(features: np.ndarray, weights: Sequence[float] = CONFIDENCE_WEIGHTS) -> float:
    """A logistic model of P(answer right | features), in [0, 1]."""
    w = np.asarray(weights, np.float64)
    z = float(w[0] + np.dot(w[1:], np.asarray(features, np.float64)))
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
