"""How much work selection has, and selection timed as it would be with a trained model.

Why apart from the run: random-weight masks are fragmented and seldom under the heat peak, so
the timed commands take the best_heat fallback (sums of every proposal). These probes say how
much selection work a timed command had, and time selection on coherent synthetic masks, the
shape a trained proposal network gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .measure import Clock
from .naive import naive_select


def selection_diagnostics(segmenter: Any, result: Any) -> dict[str, Any]:
    """Proposals covering the heat peak, valid ones, and whether the best_heat fallback chose
    (then every proposal's sums are needed); computed outside the timed region.
    """
    from ...core.selection import select_proposal

    out: dict[str, Any] = {"flagged": bool(result.flagged)}
    frame = next(reversed(segmenter._frames.values()), None) if segmenter._frames else None
    if frame is None or frame.proposals is None or result.heatmap is None:
        return out
    sel = select_proposal(
        result.heatmap,
        frame.proposals,
        segmenter.settings.max_components,
        segmenter.settings.empty_selection,
        component_cache=dict(frame.components),
    )
    peak = result.heatmap == result.heatmap.max()
    out["covering_peak"] = int(
        frame.proposals.reshape(len(frame.proposals), -1)[:, np.flatnonzero(peak)]
        .any(axis=1)
        .sum()
    )
    out["valid"] = int(sel.valid.sum()) if sel.valid is not None else None
    out["mean_mask_area"] = round(float(frame.proposals.mean()), 4)
    return out


def synthetic_proposals(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """N coherent elliptical masks, one in ten around the image centre (like a trained model's
    several queries on one object), for timing selection where random-weight masks are
    unrealistic.
    """
    rng = np.random.default_rng(seed)
    props = np.zeros((n, height, width), bool)
    yy, xx = np.ogrid[:height, :width]
    for i in range(n):
        if i % 10 == 0:
            cy = height // 2 + int(rng.integers(-height // 20, height // 20 + 1))
            cx = width // 2 + int(rng.integers(-width // 20, width // 20 + 1))
            ry, rx = (
                int(rng.integers(height // 8, height // 3)),
                int(rng.integers(width // 8, width // 3)),
            )
        else:
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            ry, rx = int(rng.integers(2, height // 4)), int(rng.integers(2, width // 4))
        props[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return props


def selection_probe(segmenter: Any, heatmap: np.ndarray, n: int, clock: Clock) -> dict[str, Any]:
    """Selection on n coherent synthetic masks at the image size, with the command's heat map
    whose peak is moved to the image centre: the batched selection with cold and with cached
    component counts (on the GPU copy under CUDA), and the naive per-mask loop.
    """
    import torch

    from ...core.selection import select_proposal

    s = segmenter.settings
    h, w = heatmap.shape
    props = synthetic_proposals(n, h, w)
    heat = heatmap.copy()
    heat[h // 2, w // 2] = float(heat.max()) + 0.5
    device = segmenter._selection_device
    tensor = torch.from_numpy(props).to(device) if device is not None else None
    cache: dict[tuple[int, int], int] = {}

    def select() -> Any:
        return select_proposal(
            heat,
            props,
            s.max_components,
            s.empty_selection,
            proposals_tensor=tensor,
            component_cache=cache,
        )

    t0 = clock()
    sel = select()
    t1 = clock()
    select()
    t2 = clock()
    naive_index = naive_select(heat, props, s.max_components, s.empty_selection)
    t3 = clock()
    return {
        "proposals": n,
        "covering_peak": int(props[:, h // 2, w // 2].sum()),
        "valid": int(sel.valid.sum()) if sel.valid is not None else 0,
        "same_as_naive": naive_index == sel.index,
        "batched_ms": round((t1 - t0) * 1000, 2),
        "batched_cached_components_ms": round((t2 - t1) * 1000, 2),
        "naive_loop_ms": round((t3 - t2) * 1000, 2),
    }
