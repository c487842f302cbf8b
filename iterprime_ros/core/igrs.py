"""IGRS: iterative Grad-CAM refinement by masking the salient patches (method.md §3, Eq. 5–7).

Why: one Grad-CAM pass lights up the most discriminative part of the object; hiding those
patches from the cross-attention and re-running the text pass reveals the rest, and the blend
R_t accumulates the passes. The ITM probability says when hiding started to hurt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .backend import VLPBackend
from .pwem import MODES, NO_PRIMARY, aggregate
from .text import TokenRoles

STOP_RULES = ("reference", "soft_itm", "none")
SINGLE_PASS = ("sigmoid", "plain")


@dataclass(frozen=True)
class IGRSSettings:
    """Switches and constants of IGRS. enabled=False runs a single pass (no refinement)."""

    max_iterations: int = 3
    alpha: float = 0.2  # weight of the new map; the paper's λ = 0.8 = 1 − α
    threshold: float = 0.5
    steepness: float = 20.0
    stop_rule: str = (
        "reference"  # "reference" | "soft_itm" | "none" (always max_iterations; benchmarks)
    )
    mode: str = "pwem"
    no_primary: str = "reference"
    enabled: bool = True
    # one pass only (enabled=False or max_iterations=1): "sigmoid" returns S(O_0), the
    # reference's steep-sigmoid stretch of the first map; "plain" returns O_0 itself
    single_pass: str = "sigmoid"

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        if self.stop_rule not in STOP_RULES:
            raise ValueError(f"stop_rule must be one of {STOP_RULES}, not {self.stop_rule!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.no_primary not in NO_PRIMARY:
            raise ValueError(f"no_primary must be one of {NO_PRIMARY}, not {self.no_primary!r}")
        if self.single_pass not in SINGLE_PASS:
            raise ValueError(f"single_pass must be one of {SINGLE_PASS}, not {self.single_pass!r}")


@dataclass
class HeatmapResult:
    """The refined heat map O (H x W float32 in [0, 1]) and per-pass diagnostics.

    iterations: text passes run (= len(itm_scores)); returned_pass: index of the pass whose
    map O_t was returned (soft_itm returns the previous one); stop_reason: "max_iterations",
    "itm_drop", "degenerate" or "disabled".
    """

    heatmap: np.ndarray
    iterations: int
    itm_scores: list[float]
    itm_logits: list[float]
    pass_times_s: list[float]
    returned_pass: int = 0
    stop_reason: str = "max_iterations"
    keep_masks: list[torch.Tensor | None] = field(default_factory=list)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """(x − min) / (max − min); no division when the range is 0 (returns x − min = zeros)."""
    lo, hi = x.min(), x.max()
    shifted = x - lo
    rng = hi - lo
    return shifted / rng if rng > 0 else shifted


def steep_sigmoid(x: torch.Tensor, steepness: float = 20.0, centre: float = 0.5) -> torch.Tensor:
    """Eq. 6: S(x) = σ(s(x − c)) / max σ(s(x − c)) (max over the map), in float64.

    The max normalisation matters: an all-zero map gives S = 1 everywhere (everything dropped).
    """
    s = torch.sigmoid(steepness * (x.double() - centre))
    return s / s.max()


def keep_from_map(
    n: torch.Tensor, threshold: float = 0.5, steepness: float = 20.0
) -> torch.Tensor:
    """B_t = [S(N_t) < 0.5] with S centred on `threshold` (≈ N_t < threshold), flattened to g*g
    bools (True = patch stays visible). The cut at 0.5 is S's midpoint, not a setting.
    """
    return (steep_sigmoid(n, steepness, threshold) < 0.5).flatten()


def upsample(r: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """G x g -> H x W with torch bicubic interpolation, align_corners=False."""
    return F.interpolate(
        r[None, None].float(), size=tuple(size), mode="bicubic", align_corners=False
    )[0, 0]


def run_igrs(
    backend: VLPBackend,
    image_embedding: Any,
    text: str,
    roles: TokenRoles,
    out_size: tuple[int, int],
    settings: IGRSSettings | None = None,
) -> HeatmapResult:
    """Up to T text passes with the keep mask, blended into the heat map O (method.md §3).

    t = 0 passes keep=None (all patches). Stop rules: "reference" — t ≥ 1 and p_t < p_{t−1}:
    return O_t; "soft_itm" — S_t = p_t·r_t, r_t = mean(1 − O_{t−1}), r_0 = 1; S_t < S_{t−1}:
    return O_{t−1}; "none" — never stops early (a fixed pass count, for benchmarks). A keep
    mask with no patch left (e.g. an all-zero map) stops the loop. One pass (T = 1) returns
    S(O_0), the steep sigmoid of the first map over its maximum (the reference), unless
    single_pass="plain".
    """
    s = settings or IGRSSettings()
    passes = s.max_iterations if s.enabled else 1
    keep: torch.Tensor | None = None
    r_map: torch.Tensor | None = None
    prev_o: torch.Tensor | None = None
    prev_soft = 0.0
    result = HeatmapResult(np.zeros(tuple(out_size), np.float32), 0, [], [], [])

    def finish(o: torch.Tensor, t: int, reason: str) -> HeatmapResult:
        result.heatmap = o.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
        result.returned_pass, result.stop_reason = t, reason
        result.iterations = len(result.itm_scores)
        return result

    for t in range(passes):
        result.keep_masks.append(None if keep is None else keep.clone())
        t0 = time.perf_counter()
        out = backend.text_pass(image_embedding, text, keep)
        result.pass_times_s.append(time.perf_counter() - t0)
        p = out.match_probability
        result.itm_scores.append(p)
        result.itm_logits.append(out.match_logit)

        valid = (
            torch.as_tensor(roles.valid, dtype=torch.bool).flatten().cpu()
            & torch.as_tensor(out.token_valid, dtype=torch.bool).flatten().cpu()
        )
        g_map = aggregate(
            out.attention, out.gradient, replace(roles, valid=valid), s.mode, s.no_primary
        )
        grid = getattr(backend, "grid", None)
        if grid is not None and tuple(g_map.shape) != (grid, grid):
            raise ValueError(
                f"backend.grid is {grid} but its attention gives a {tuple(g_map.shape)} map"
            )
        n = minmax(g_map)
        r_map = n if r_map is None else (1.0 - s.alpha) * r_map + s.alpha * n
        # O_t (an H x W upsample) only when it is returned or soft_itm needs its mean next pass
        r_t = r_map
        o_t = lambda: minmax(upsample(r_t, out_size))  # noqa: E731

        if t >= 1:
            if s.stop_rule == "reference" and p < result.itm_scores[t - 1]:
                return finish(o_t(), t, "itm_drop")
            if s.stop_rule == "soft_itm":
                assert prev_o is not None
                soft = p * float((1.0 - prev_o).mean())
                if soft < prev_soft:
                    return finish(prev_o, t - 1, "itm_drop")
                prev_soft = soft
        else:
            prev_soft = p  # r_0 = 1
        if t == passes - 1:
            o = o_t()
            if passes == 1 and s.single_pass == "sigmoid":
                o = steep_sigmoid(o, s.steepness, s.threshold)  # the reference's T = 1 output
            return finish(o, t, "max_iterations" if s.enabled else "disabled")
        if s.stop_rule == "soft_itm":
            prev_o = o_t()

        b = keep_from_map(n, s.threshold, s.steepness).cpu()
        keep = b if keep is None else keep & b
        if not bool(keep.any()):
            return finish(o_t(), t, "degenerate")
    raise AssertionError("unreachable")
