"""Pick one proposal mask with the heat map (method.md §4, Eq. 8–10), and variants of it.

Why: the heat map is coarse; the answer is the proposal that contains the heat peak and is
hottest on average, excluding fragmented masks (too many connected components).

Beyond the paper (switches; ``score="reference"`` with the prior off is the paper's rule,
bit-identical to it):
- ``score="coverage"``: the F-measure of heat precision (mean heat inside the mask) and heat
  recall (heat mass inside / all heat), so a mask must cover the heat, not only sit on its
  hottest part: the whole object beats a half of it that holds the peak.
- ``score="whole"``: the reference's choice, then climb to a valid proposal that contains it
  and keeps nearly its mean heat (the whole object over its parts).
- ``spatial_prior=True`` with cues from core.spatial ("the leftmost cup"): proposals about as
  hot as the best valid one, even off the peak, are candidates, and each candidate's score is
  weighted by how far it lies in the named direction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .device_masks import DeviceMasks
from .mask_sums import _areas, _covers, _heat_sums, count_components
from .spatial import SpatialCue

EMPTY_SELECTION = ("fail", "best_heat")
SELECTION_SCORES = ("reference", "coverage", "whole")


@dataclass(frozen=True)
class SelectionSettings:
    """The selection variant (module doc). The numbers are the variants' only knobs, chosen on
    the world's validation split (docs/world_results.md), not on real photographs.

    beta: coverage's F_beta (1: precision and recall alike; < 1 favours precision; 0 would be
    the reference's ranking). 0.2: at 1 the recall pulls in merged pairs and the table.
    whole_containment: share of the current choice's area that a containing proposal must hold.
    whole_heat_ratio: the containing proposal's mean heat must be at least this times the
    mean heat of the first choice ("nearly its mean heat").
    spatial_weight: the candidate placed least in the cue's direction keeps (1 - this) of its
    score, the one placed most keeps all of it (linear in between).
    spatial_candidates: with the prior, a proposal off the peak is a candidate when its mean
    heat is at least this times the best valid proposal's mean heat.
    """

    score: str = "reference"
    spatial_prior: bool = False
    beta: float = 0.2
    whole_containment: float = 0.9
    whole_heat_ratio: float = 0.85
    spatial_weight: float = 0.3
    spatial_candidates: float = 0.5

    def __post_init__(self) -> None:
        if self.score not in SELECTION_SCORES:
            raise ValueError(
                f"selection_score must be one of {SELECTION_SCORES}, not {self.score!r}"
            )
        if not isinstance(self.spatial_prior, bool):
            raise ValueError(f"spatial_prior must be true or false, not {self.spatial_prior!r}")
        if not self.beta > 0:
            raise ValueError("beta must be positive")
        for name in ("whole_containment", "whole_heat_ratio", "spatial_weight"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]")
        if not 0.0 <= self.spatial_candidates <= 1.0:
            raise ValueError("spatial_candidates must be in [0, 1]")


REFERENCE = SelectionSettings()


@dataclass
class Selection:
    """index: chosen proposal (None: nothing valid); score: its s_i; scores: s for every proposal
    (0 for invalid ones); flagged: chosen by the best_heat fallback; reason: why (or why not).
    """

    index: int | None
    score: float
    scores: np.ndarray
    flagged: bool
    reason: str
    valid: np.ndarray | None = None  # (N,) bools: covers a peak pixel and few enough components


def _reference_scores(area: np.ndarray, heat_sum: np.ndarray) -> np.ndarray:
    """Eq. 10: s = Σ m(1 + O) / (Σ m + 1e-5) = 1 + mean heat."""
    return (area + heat_sum) / (area + 1e-5)


def _coverage_scores(
    area: np.ndarray, heat_sum: np.ndarray, total_heat: float, beta: float
) -> np.ndarray:
    """F_beta of heat precision P = Σ m·O / Σ m and heat recall R = Σ m·O / Σ O."""
    precision = heat_sum / (area + 1e-5)
    recall = heat_sum / total_heat if total_heat > 0 else np.zeros_like(heat_sum)
    b2 = beta * beta
    denom = b2 * precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(denom > 0, (1 + b2) * precision * recall / denom, 0.0)
    return f


def _cue_positions(cue: SpatialCue, masks: np.ndarray, area: np.ndarray) -> np.ndarray:
    """How far each mask lies in the cue's direction (larger = further), from its bounding
    box: the extreme edge for left/right/top/bottom (a half of an object and the whole object
    share it, so the prior does not favour halves), the centroid's distance from the image
    centre for middle, the lowest row for nearest (a camera looking down at a table), the area
    for biggest/smallest.
    """
    h, w = masks.shape[1:]
    out = np.zeros(len(masks), np.float64)
    for k, m in enumerate(masks):
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        if len(rows) == 0:
            out[k] = -np.inf
            continue
        if cue.kind == "left":
            out[k] = -cols[0] / w
        elif cue.kind == "right":
            out[k] = cols[-1] / w
        elif cue.kind == "top":
            out[k] = -rows[0] / h
        elif cue.kind in ("bottom", "nearest"):
            out[k] = rows[-1] / h
        elif cue.kind == "farthest":
            out[k] = -rows[0] / h
        elif cue.kind == "middle":
            ys, xs = np.nonzero(m)
            out[k] = -np.hypot(xs.mean() / w - 0.5, ys.mean() / h - 0.5)
        elif cue.kind == "biggest":
            out[k] = float(area[k])
        elif cue.kind == "smallest":
            out[k] = -float(area[k])
    return out


def _spatial_weights(
    cues: Sequence[SpatialCue], masks: np.ndarray, area: np.ndarray, weight: float
) -> np.ndarray:
    """Product over cues of (1 - weight) + weight · p̂, p̂ = the positions min-max scaled over
    the candidates (all alike: 1).
    """
    total = np.ones(len(masks), np.float64)
    for cue in cues:
        pos = _cue_positions(cue, masks, area)
        finite = np.isfinite(pos)
        lo, hi = (pos[finite].min(), pos[finite].max()) if finite.any() else (0.0, 0.0)
        scaled = np.where(finite, (pos - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
        total *= (1.0 - weight) + weight * scaled
    return total


def _climb_to_whole(
    start: int,
    candidates: np.ndarray,
    props: np.ndarray,
    area: dict[int, int],
    mean_heat: dict[int, float],
    scores: dict[int, float],
    settings: SelectionSettings,
) -> int:
    """From `start`, move to the best-scoring candidate that contains the current choice
    (holds ≥ whole_containment of its area), is larger, and has a mean heat of at least
    whole_heat_ratio × start's; repeat until none does (each step grows the area).
    """
    floor = settings.whole_heat_ratio * mean_heat[start]
    current = start
    while True:
        cur = props[current]
        best, best_score = None, -np.inf
        for c in candidates:
            c = int(c)
            if c == current or area[c] <= area[current] or mean_heat[c] < floor:
                continue
            inside = np.count_nonzero(props[c] & cur)
            if inside < settings.whole_containment * area[current]:
                continue
            if scores[c] > best_score:
                best, best_score = c, scores[c]
        if best is None:
            return current
        current = best


def select_proposal(
    heatmap: np.ndarray,
    proposals: np.ndarray,
    max_components: int = 12,
    empty_selection: str = "fail",
    connectivity: int = 4,
    proposals_tensor: torch.Tensor | None = None,
    component_cache: dict[tuple[int, int], int] | None = None,
    area_cache: dict[int, int] | None = None,
    settings: SelectionSettings | None = None,
    cues: Sequence[SpatialCue] = (),
    heat_tensor: torch.Tensor | None = None,
) -> Selection:
    """Choose the proposal for the heat map O (H x W) among N x H x W bool proposals.

    Peak set = pixels where O equals its maximum (ties included). Valid: covers a peak pixel and
    has ≤ max_components components (counted only for the few peak-covering proposals). Score
    s_i = Σ m_i(1 + O) / (Σ m_i + 1e-5); invalid → 0; argmax, ties → lowest index. Nothing
    valid: index None with the reason, or with empty_selection="best_heat" the fallback of
    _best_heat (flagged). settings: the variant (default the reference); cues: core.spatial's,
    used only with settings.spatial_prior. proposals_tensor / heat_tensor: the same on the device
    that computes the sums (the GPU path; proposals may be DeviceMasks). component_cache and
    area_cache are filled as computed and reused by later commands on the same frame.
    """
    cfg = settings or REFERENCE
    heat, props = _checked_inputs(heatmap, proposals, proposals_tensor, empty_selection)
    n = props.shape[0]
    scores, valid = np.zeros(n, np.float64), np.zeros(n, bool)
    if n == 0:
        return Selection(None, 0.0, scores, False, "there are no proposals", valid)

    components = functools.partial(_components, props, connectivity, component_cache)
    peak_idx = np.flatnonzero(heat == heat.max())
    covers = _covers(props, peak_idx, proposals_tensor)
    for i in np.flatnonzero(covers):  # few: only proposals that cover the peak
        valid[i] = components(i) <= max_components

    if valid.any():
        # only valid proposals can score above 0: their sums are the only ones needed
        which = np.flatnonzero(valid)
        area = _areas(props, which, proposals_tensor, area_cache)
        heat_sum = _heat_sums(props, heat, which, proposals_tensor, np.float64, heat_tensor)
        use_prior = cfg.spatial_prior and len(cues) > 0
        if cfg.score in ("reference", "whole") and not use_prior:
            scores[which] = _reference_scores(area, heat_sum)
            best = int(np.argmax(scores))  # first maximum = lowest index on ties
            if cfg.score == "whole":
                best = _whole(best, which, area, heat_sum, props, scores, cfg)
            return Selection(best, float(scores[best]), scores, False, "ok", valid)
        return _variant(
            heat,
            props,
            which,
            area,
            heat_sum,
            valid,
            scores,
            cfg,
            cues,
            use_prior,
            proposals_tensor,
            area_cache,
            components,
            max_components,
        )

    reason = (
        f"every proposal covering the heat-map peak has more than {max_components} connected "
        "components"
        if covers.any()
        else "no proposal covers the heat-map peak"
    )
    if empty_selection == "best_heat":
        fallback = _best_heat(props, heat, proposals_tensor, area_cache, heat_tensor)
        if fallback is not None:
            best, score = fallback
            why = f"{reason}; fell back to the proposal with the highest mean heat"
            return Selection(best, score, scores, True, why, valid)
        reason += "; no non-empty proposal to fall back to"
    return Selection(None, 0.0, scores, False, reason, valid)


def _components(
    props: Any, connectivity: int, cache: dict[tuple[int, int], int] | None, i: int
) -> int:
    """Connected components of proposal i, from the frame's cache when it was counted before
    (a count does not depend on the heat map).
    """
    key = (int(i), connectivity)
    count = cache.get(key) if cache is not None else None
    if count is None:
        count = count_components(props[i], connectivity)
        if cache is not None:
            cache[key] = count
    return count


def _checked_inputs(
    heatmap: np.ndarray,
    proposals: Any,
    proposals_tensor: torch.Tensor | None,
    empty_selection: str,
) -> tuple[np.ndarray, Any]:
    """(heat map, proposals) after the checks select_proposal makes before any work: a known
    empty_selection, shapes that match, a finite heat map. Host proposals become bool; masks on
    the device (DeviceMasks) stay there, only those read by index come to the host.
    """
    if empty_selection not in EMPTY_SELECTION:
        raise ValueError(
            f"empty_selection must be one of {EMPTY_SELECTION}, not {empty_selection!r}"
        )
    heat = np.asarray(heatmap)
    props: Any = proposals if isinstance(proposals, DeviceMasks) else np.asarray(proposals)
    if props.ndim != 3 or props.shape[1:] != heat.shape:
        raise ValueError(f"proposals {props.shape} do not match the heat map {heat.shape}")
    if not np.all(np.isfinite(heat)):
        raise ValueError("the heat map contains NaN or inf")
    if not isinstance(props, DeviceMasks):
        props = props.astype(bool, copy=False)
    if proposals_tensor is not None and tuple(proposals_tensor.shape) != props.shape:
        raise ValueError(
            f"proposals_tensor {tuple(proposals_tensor.shape)} differs from proposals "
            f"{props.shape}"
        )
    return heat, props


def _best_heat(
    props: Any,
    heat: np.ndarray,
    proposals_tensor: torch.Tensor | None,
    area_cache: dict[int, int] | None,
    heat_tensor: torch.Tensor | None,
) -> tuple[int, float] | None:
    """The empty_selection="best_heat" fallback: (index, score) of the non-empty proposal with
    the highest mean heat, chosen on float32 sums over every proposal and scored in float64;
    None when every proposal is empty.
    """
    every = np.arange(props.shape[0])
    area = _areas(props, every, proposals_tensor, area_cache)
    heat_sum32 = _heat_sums(props, heat, every, proposals_tensor, np.float32, heat_tensor)
    nonempty = area > 0
    if not nonempty.any():
        return None
    mean_heat = np.where(nonempty, heat_sum32 / np.maximum(area, 1), -np.inf)
    best = int(np.argmax(mean_heat))
    exact = _heat_sums(props, heat, np.array([best]), proposals_tensor, np.float64, heat_tensor)[0]
    return best, float((area[best] + exact) / (area[best] + 1e-5))


def _whole(
    best: int,
    which: np.ndarray,
    area: np.ndarray,
    heat_sum: np.ndarray,
    props: np.ndarray,
    scores: np.ndarray,
    cfg: SelectionSettings,
) -> int:
    """The "whole" variant's climb among the proposals `which` (arrays aligned with it)."""
    a = {int(i): int(x) for i, x in zip(which, area)}
    mh = {int(i): float(s) / max(int(x), 1) for i, s, x in zip(which, heat_sum, area)}
    sc = {int(i): float(scores[i]) for i in which}
    return _climb_to_whole(best, which, props, a, mh, sc, cfg)


def _variant(
    heat: np.ndarray,
    props: np.ndarray,
    which: np.ndarray,
    area: np.ndarray,
    heat_sum: np.ndarray,
    valid: np.ndarray,
    scores: np.ndarray,
    cfg: SelectionSettings,
    cues: Sequence[SpatialCue],
    use_prior: bool,
    proposals_tensor: torch.Tensor | None,
    area_cache: dict[int, int] | None,
    components,
    max_components: int,
) -> Selection:
    """The coverage score and/or the spatial prior (the reference path stays in the caller)."""
    total_heat = float(heat.sum(dtype=np.float64))
    if use_prior:
        # candidates off the peak: about as hot as the best valid proposal, few components
        n = props.shape[0]
        every = np.arange(n)
        all_area = _areas(props, every, proposals_tensor, area_cache)
        all_sum = _heat_sums(props, heat, every, proposals_tensor, np.float32).astype(np.float64)
        all_sum[which] = heat_sum  # the valid ones keep their exact sums
        mean = np.where(all_area > 0, all_sum / np.maximum(all_area, 1), -np.inf)
        floor = cfg.spatial_candidates * float(mean[which].max())
        extra = [
            int(i)
            for i in np.flatnonzero((mean >= floor) & ~valid & (all_area > 0))
            if components(i) <= max_components
        ]
        cand = np.union1d(which, np.asarray(extra, np.int64)).astype(np.int64)
        area, heat_sum = all_area[cand], all_sum[cand]
    else:
        cand = which
    if cfg.score == "coverage":
        base = _coverage_scores(area, heat_sum, total_heat, cfg.beta)
    elif use_prior:
        # the mean heat itself, not 1 + it: the prior's weight then compares with heat ratios
        base = heat_sum / (area + 1e-5)
    else:
        base = _reference_scores(area, heat_sum)
    if use_prior:
        base = base * _spatial_weights(cues, props[cand], area, cfg.spatial_weight)
    scores[cand] = base
    best = int(cand[int(np.argmax(base))])  # cand is sorted: ties → lowest index
    if cfg.score == "whole":
        best = _whole(best, cand, area, heat_sum, props, scores, cfg)
    reason = (
        "ok" if not use_prior else "ok (spatial prior: " + ", ".join(c.kind for c in cues) + ")"
    )
    return Selection(best, float(scores[best]), scores, False, reason, valid)
