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
    (0 for invalid ones); flagged: chosen by the best_heat fallback; reason: why (or why not)."""

    index: int | None
    score: float
    scores: np.ndarray
    flagged: bool
    reason: str
    valid: np.ndarray | None = None  # (N,) bools: covers a peak pixel and few enough components


def count_components(mask: np.ndarray, connectivity: int = 4) -> int:
    """Foreground connected components of a binary mask (4-connectivity: diagonal pixels are apart)."""
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
    return int(n) - 1


def _sums(proposals: np.ndarray, heat: np.ndarray, peak: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per proposal: area Σm, heat Σm·O (float64) and whether it covers a peak pixel.

    Vectorised over blocks of masks, so memory stays at one block's float copy."""
    n = proposals.shape[0]
    flat = proposals.reshape(n, -1)
    heat_flat = heat.reshape(-1).astype(np.float64)
    peak_idx = np.flatnonzero(peak)
    area = flat.sum(axis=1, dtype=np.int64)
    heat_sum = np.empty(n, np.float64)
    covers = np.empty(n, bool)
    for b in range(0, n, _BLOCK):
        block = flat[b:b + _BLOCK]
        heat_sum[b:b + _BLOCK] = block.astype(np.float64) @ heat_flat
        covers[b:b + _BLOCK] = block[:, peak_idx].any(axis=1)
    return area, heat_sum, covers


def _sums_torch(proposals: torch.Tensor, heat: np.ndarray,
                peak: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_sums on a copy of the proposals held as a torch tensor (e.g. on the GPU): same float64 sums."""
    n = proposals.shape[0]
    flat = proposals.reshape(n, -1)
    heat_t = torch.from_numpy(np.ascontiguousarray(heat.reshape(-1), dtype=np.float64)).to(flat.device)
    peak_idx = torch.from_numpy(np.flatnonzero(peak)).to(flat.device)
    area = flat.sum(dim=1, dtype=torch.int64)
    heat_sum = torch.empty(n, dtype=torch.float64, device=flat.device)
    block = _BLOCK * 4
    for b in range(0, n, block):
        heat_sum[b:b + block] = flat[b:b + block].to(torch.float64) @ heat_t
    covers = flat.index_select(1, peak_idx).any(dim=1)
    return area.cpu().numpy(), heat_sum.cpu().numpy(), covers.cpu().numpy()


def select_proposal(heatmap: np.ndarray, proposals: np.ndarray, max_components: int = 12,
                    empty_selection: str = "fail", connectivity: int = 4,
                    proposals_tensor: torch.Tensor | None = None) -> Selection:
    """Choose the proposal for the heat map O (H x W) among N x H x W bool proposals.

    Peak set = pixels where O equals its exact maximum (ties included). Valid: covers ≥ 1 peak
    pixel and has ≤ max_components components (counted only for peak-covering proposals).
    Score s_i = Σ m_i(1 + O) / (Σ m_i + 1e-5); invalid → 0; argmax, ties → lowest index.
    Nothing valid: index None with the reason, or with empty_selection="best_heat" the non-empty
    proposal with the highest mean heat (flagged=True).

    proposals_tensor: the same proposals as an N x H x W bool torch tensor on the device that should
    compute the per-proposal sums (the pipeline keeps one on the GPU per frame); the connected
    components still come from `proposals` (CPU), for the few proposals that cover the peak.
    """
    if empty_selection not in EMPTY_SELECTION:
        raise ValueError(f"empty_selection must be one of {EMPTY_SELECTION}, not {empty_selection!r}")
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

    peak = heat == heat.max()
    if proposals_tensor is not None:
        if tuple(proposals_tensor.shape) != props.shape:
            raise ValueError(f"proposals_tensor {tuple(proposals_tensor.shape)} differs from proposals {props.shape}")
        area, heat_sum, covers = _sums_torch(proposals_tensor, heat, peak)
    else:
        area, heat_sum, covers = _sums(props, heat, peak)
    for i in np.flatnonzero(covers):  # few: only proposals that cover the peak
        valid[i] = count_components(props[i], connectivity) <= max_components
    all_scores = (area + heat_sum) / (area + 1e-5)
    scores[valid] = all_scores[valid]

    if valid.any():
        best = int(np.argmax(scores))  # first maximum = lowest index on ties
        return Selection(best, float(scores[best]), scores, False, "ok", valid)

    if not covers.any():
        reason = "no proposal covers the heat-map peak"
    else:
        reason = (f"every proposal covering the heat-map peak has more than {max_components} "
                  f"connected components")
    if empty_selection == "best_heat":
        nonempty = area > 0
        if nonempty.any():
            mean_heat = np.where(nonempty, heat_sum / np.maximum(area, 1), -np.inf)
            best = int(np.argmax(mean_heat))
            return Selection(best, float(all_scores[best]), scores, True,
                             f"{reason}; fell back to the proposal with the highest mean heat", valid)
        reason += "; no non-empty proposal to fall back to"
    return Selection(None, 0.0, scores, False, reason, valid)
