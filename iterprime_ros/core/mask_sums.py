"""Per-proposal counts and sums over many masks at once: components, peak cover, area, heat.

Why a module of its own: selection reads these numbers for a few proposals per command and the
candidates for all of them; both want them batched (blocks of _BLOCK masks bound the float
copy), computed where the masks live (a torch tensor on the GPU, or DeviceMasks), and cached per
frame where they do not depend on the heat map (areas, component counts).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

_BLOCK = 16  # masks per vectorised block: bounds the float copy to 16 x H x W


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


def _areas(
    proposals: np.ndarray,
    which: np.ndarray,
    proposals_tensor: torch.Tensor | None,
    area_cache: dict[int, int] | None,
) -> np.ndarray:
    """Area Σm (int64) of the proposals in `which`; from `area_cache` where known (an area does
    not depend on the heat map, so later commands on the same frame reuse it), else counted.
    """
    area = np.zeros(len(which), np.int64)
    missing = []
    for k, i in enumerate(which):
        known = area_cache.get(int(i)) if area_cache is not None else None
        if known is None:
            missing.append(k)
        else:
            area[k] = known
    if not missing:
        return area
    todo = np.asarray(which)[missing]
    n = proposals.shape[0]
    if proposals_tensor is not None:
        flat_t = proposals_tensor.reshape(n, -1)
        idx_t = torch.from_numpy(np.asarray(todo, np.int64)).to(flat_t.device)
        counts = flat_t.index_select(0, idx_t).sum(dim=1, dtype=torch.int64).cpu().numpy()
    else:
        flat = proposals.reshape(n, -1)
        counts = np.concatenate(
            [
                np.count_nonzero(flat[todo[b : b + _BLOCK]], axis=1)
                for b in range(0, len(todo), _BLOCK)
            ]
        )
    area[missing] = counts
    if area_cache is not None:
        area_cache.update({int(i): int(c) for i, c in zip(todo, counts)})
    return area


def _heat_sums(
    proposals: np.ndarray,
    heat: np.ndarray,
    which: np.ndarray,
    proposals_tensor: torch.Tensor | None,
    dtype: type = np.float64,
    heat_tensor: torch.Tensor | None = None,
) -> np.ndarray:
    """Heat Σm·O of the proposals listed in `which`, in `dtype`.

    heat_tensor: the same heat map already on the device (IGRS made it there), used instead of
    uploading `heat` again.
    Vectorised over blocks of masks (memory stays at one block's float copy); on the tensor
    copy's device when one is given (the GPU), with the same arithmetic. float64 for the few
    valid proposals (the reference's exact scores), float32 where every proposal is summed
    (half the memory traffic; only the choice is read from it).
    """
    n = proposals.shape[0]
    heat_sum = np.zeros(len(which), dtype)
    if len(which) == 0:
        return heat_sum
    if proposals_tensor is not None:
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        flat_t = proposals_tensor.reshape(n, -1)
        if heat_tensor is not None:
            heat_t = heat_tensor.reshape(-1).to(flat_t.device, tdtype)
        else:
            heat_t = torch.from_numpy(np.ascontiguousarray(heat.reshape(-1), dtype=dtype)).to(
                flat_t.device
            )
        idx_t = torch.from_numpy(np.asarray(which, np.int64)).to(flat_t.device)
        block = _BLOCK * 4
        for b in range(0, len(which), block):
            part = flat_t.index_select(0, idx_t[b : b + block])
            heat_sum[b : b + block] = (part.to(tdtype) @ heat_t).cpu().numpy()
        return heat_sum
    flat = proposals.reshape(n, -1)
    heat_flat = heat.reshape(-1).astype(dtype)
    for b in range(0, len(which), _BLOCK):
        part = flat[which[b : b + _BLOCK]]
        heat_sum[b : b + _BLOCK] = part.astype(dtype) @ heat_flat
    return heat_sum
