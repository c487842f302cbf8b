"""Pick one proposal mask with the heat map (method.md §4, Eq. 8–10).

Why: the heat map is coarse; the answer is the proposal that contains the heat peak and is
hottest on average, excluding fragmented masks (too many connected components).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

EMPTY_SELECTION = ("fail", "best_heat")
_BLOCK = 16  # masks per vectorised block: bounds the float64 copy to 16 x H x W


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


def count_components(mask: np.ndarray, connectivity: int = 4) -> int:
    """Foreground connected components of a binary mask (4-connectivity: diagonal pixels are
    apart).
    """
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
    return int(n) - 1


def _covers(
    proposals: np.ndarray, peak_idx: np.ndarray, proposals_tensor: torch.Tensor | None
) -> np.ndarray:
    """(N,) bools: which proposals contain at least one peak pixel (reads only the peak pixels)."""
    n = proposals.shape[0]
    if proposals_tensor is not None:
        flat_t = proposals_tensor.reshape(n, -1)
        idx = torch.from_numpy(peak_idx).to(flat_t.device)
        return flat_t.index_select(1, idx).any(dim=1).cpu().numpy()
    return proposals.reshape(n, -1)[:, peak_idx].any(axis=1)


def _sums(
    proposals: np.ndarray,
    heat: np.ndarray,
    which: np.ndarray,
    proposals_tensor: torch.Tensor | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Area Σm (int64) and heat Σm·O (float64) of the proposals listed in `which`.

    Vectorised over blocks of masks (memory stays at one block's float copy); on the tensor
    copy's device when one is given (the GPU), with the same float64 arithmetic.
    """
    n = proposals.shape[0]
    area = np.zeros(len(which), np.int64)
    heat_sum = np.zeros(len(which), np.float64)
    if len(which) == 0:
        return area, heat_sum
    if proposals_tensor is not None:
        flat_t = proposals_tensor.reshape(n, -1)
        heat_t = torch.from_numpy(np.ascontiguousarray(heat.reshape(-1), dtype=np.float64)).to(
            flat_t.device
        )
        idx_t = torch.from_numpy(np.asarray(which, np.int64)).to(flat_t.device)
        block = _BLOCK * 4
        for b in range(0, len(which), block):
            part = flat_t.index_select(0, idx_t[b : b + block])
            area[b : b + block] = part.sum(dim=1, dtype=torch.int64).cpu().numpy()
            heat_sum[b : b + block] = (part.to(torch.float64) @ heat_t).cpu().numpy()
        return area, heat_sum
    flat = proposals.reshape(n, -1)
    heat_flat = heat.reshape(-1).astype(np.float64)
    for b in range(0, len(which), _BLOCK):
        part = flat[which[b : b + _BLOCK]]
        area[b : b + _BLOCK] = np.count_nonzero(part, axis=1)
        heat_sum[b : b + _BLOCK] = part.astype(np.float64) @ heat_flat
    return area, heat_sum


def select_proposal(
    heatmap: np.ndarray,
    proposals: np.ndarray,
    max_components: int = 12,
    empty_selection: str = "fail",
    connectivity: int = 4,
    proposals_tensor: torch.Tensor | None = None,
    component_cache: dict[tuple[int, int], int] | None = None,
) -> Selection:
    """Choose the proposal for the heat map O (H x W) among N x H x W bool proposals.

    Peak set = pixels where O equals its exact maximum (ties included). Valid: covers ≥ 1 peak
    pixel and has ≤ max_components components (counted only for peak-covering proposals).
    Cost: the peak pixels of every proposal are read, whole masks only for the few that cover
    the peak (components, then the float64 sums of the valid ones), all batched.
    Score s_i = Σ m_i(1 + O) / (Σ m_i + 1e-5); invalid → 0; argmax, ties → lowest index.
    Nothing valid: index None with the reason, or with empty_selection="best_heat" the non-empty
    proposal with the highest mean heat (flagged=True).

    proposals_tensor: the same proposals as an N x H x W bool torch tensor on the device that
    should
    compute the per-proposal sums (the pipeline keeps one on the GPU per frame); the connected
    components still come from `proposals` (CPU), for the few proposals that cover the peak.
    component_cache: {(proposal index, connectivity): count}, filled as counts are computed; a
    proposal's component count does not depend on the heat map, so later commands on the same
    frame (same proposals) reuse it.
    """
    if empty_selection not in EMPTY_SELECTION:
        raise ValueError(
            f"empty_selection must be one of {EMPTY_SELECTION}, not {empty_selection!r}"
        )
    heat = np.asarray(heatmap)
    props = np.asarray(proposals)
    if props.ndim != 3 or props.shape[1:] != heat.shape:
        raise ValueError(f"proposals {props.shape} do not match the heat map {heat.shape}")
    if not np.all(np.isfinite(heat)):
        raise ValueError("the heat map contains NaN or inf")
    props = props.astype(bool, copy=False)
    n = props.shape[0]
    scores = np.zeros(n, np.float64)
    valid = np.zeros(n, bool)
    if n == 0:
        return Selection(None, 0.0, scores, False, "there are no proposals", valid)

    if proposals_tensor is not None and tuple(proposals_tensor.shape) != props.shape:
        raise ValueError(
            f"proposals_tensor {tuple(proposals_tensor.shape)} differs from proposals "
            f"{props.shape}"
        )
    peak_idx = np.flatnonzero(heat == heat.max())
    covers = _covers(props, peak_idx, proposals_tensor)
    for i in np.flatnonzero(covers):  # few: only proposals that cover the peak
        key = (int(i), connectivity)
        count = component_cache.get(key) if component_cache is not None else None
        if count is None:
            count = count_components(props[i], connectivity)
            if component_cache is not None:
                component_cache[key] = count
        valid[i] = count <= max_components

    if valid.any():
        # only valid proposals can score above 0: their sums are the only ones needed
        which = np.flatnonzero(valid)
        area, heat_sum = _sums(props, heat, which, proposals_tensor)
        scores[which] = (area + heat_sum) / (area + 1e-5)
        best = int(np.argmax(scores))  # first maximum = lowest index on ties
        return Selection(best, float(scores[best]), scores, False, "ok", valid)

    if not covers.any():
        reason = "no proposal covers the heat-map peak"
    else:
        reason = (
            f"every proposal covering the heat-map peak has more than {max_components} "
            f"connected components"
        )
    if empty_selection == "best_heat":
        area, heat_sum = _sums(props, heat, np.arange(n), proposals_tensor)
        nonempty = area > 0
        if nonempty.any():
            mean_heat = np.where(nonempty, heat_sum / np.maximum(area, 1), -np.inf)
            best = int(np.argmax(mean_heat))
            return Selection(
                best,
                float((area[best] + heat_sum[best]) / (area[best] + 1e-5)),
                scores,
                True,
                f"{reason}; fell back to the proposal with the highest mean heat",
                valid,
            )
        reason += "; no non-empty proposal to fall back to"
    return Selection(None, 0.0, scores, False, reason, valid)
