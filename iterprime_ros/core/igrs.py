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
from .pwem import MODES, NO_PRIMARY, AggregationPlan, apply_plan, plan_aggregation
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
    # apply the stop rule after the passes instead of after each one (run_igrs); None: on
    # CUDA, where a per-pass check would wait for the device
    defer_stop: bool | None = None

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
    # O on the device of the passes (the GPU's copy for selection; `heatmap` is the host one)
    heatmap_tensor: torch.Tensor | None = None


def minmax(x: torch.Tensor) -> torch.Tensor:
    """(x − min) / (max − min); no division when the range is 0 (returns x − min = zeros).

    The choice is made on the device (a division by 1 where the range is 0), never by reading
    the range back to the host: on a GPU that read would wait for every queued kernel.
    """
    lo, hi = x.min(), x.max()
    shifted = x - lo
    rng = hi - lo
    return shifted / torch.where(rng > 0, rng, torch.ones_like(rng))


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


@dataclass
class _Passes:
    """What the loop keeps per pass, as tensors on the passes' device (read back once)."""

    probabilities: list[torch.Tensor] = field(default_factory=list)  # p_t, 0-dim
    logits: list[torch.Tensor] = field(default_factory=list)  # match logit, 0-dim
    blends: list[torch.Tensor] = field(default_factory=list)  # R_t, g x g
    kept: list[torch.Tensor] = field(default_factory=list)  # any patch left after pass t
    unmasked: list[torch.Tensor] = field(default_factory=list)  # mean(1 − O_t) (soft_itm)
    heat: dict[int, torch.Tensor] = field(default_factory=dict)  # O_t where computed

    def host(self) -> tuple[list[float], list[float], list[bool], list[float]]:
        """Every per-pass scalar in one read from the device: the only wait for it."""
        n = len(self.probabilities)
        parts = [*self.probabilities, *self.logits, *self.kept, *self.unmasked]
        flat = torch.stack([x.to(torch.float64) for x in parts])
        values = flat.cpu().tolist()
        k = len(self.kept)
        return (
            values[:n],
            values[n : 2 * n],
            [v > 0 for v in values[2 * n : 2 * n + k]],
            (values[2 * n + k :]),
        )


def stop_point(
    probabilities: list[float],
    kept: list[bool],
    unmasked: list[float],
    passes: int,
    stop_rule: str,
    enabled: bool = True,
) -> tuple[int, int, str] | None:
    """Where IGRS stops, from the per-pass scalars known so far: (passes run, returned pass,
    reason), or None when it goes on (method.md §3, step 6).

    One rule for both ways the loop runs: checked after every pass (the CPU, where a pass is
    slow and stopping early saves it) or once after a fixed number of passes (the GPU, where
    reading a score back after each pass would stall the device queue).
    """
    prev_soft = 0.0
    for t, p in enumerate(probabilities):
        if t >= 1:
            if stop_rule == "reference" and p < probabilities[t - 1]:
                return t + 1, t, "itm_drop"
            if stop_rule == "soft_itm":
                soft = p * unmasked[t - 1]
                if soft < prev_soft:
                    return t + 1, t - 1, "itm_drop"
                prev_soft = soft
        else:
            prev_soft = p  # r_0 = 1
        if t == passes - 1:
            return t + 1, t, "max_iterations" if enabled else "disabled"
        if t < len(kept) and not kept[t]:
            return t + 1, t, "degenerate"
    return None


def run_igrs(
    backend: VLPBackend,
    image_embedding: Any,
    text: str,
    roles: TokenRoles,
    out_size: tuple[int, int],
    settings: IGRSSettings | None = None,
    defer_stop: bool | None = None,
) -> HeatmapResult:
    """Up to T text passes with the keep mask, blended into the heat map O (method.md §3).

    t = 0 passes keep=None (all patches). Stop rules: "reference" — t ≥ 1 and p_t < p_{t−1}:
    return O_t; "soft_itm" — S_t = p_t·r_t, r_t = mean(1 − O_{t−1}), r_0 = 1; S_t < S_{t−1}:
    return O_{t−1}; "none" — never stops early (a fixed pass count, for benchmarks). A keep
    mask with no patch left (e.g. an all-zero map) stops the loop. One pass (T = 1) returns
    S(O_0), the steep sigmoid of the first map over its maximum (the reference), unless
    single_pass="plain".

    defer_stop (None: the settings' defer_stop, else on when the backend runs on CUDA): run
    the passes without reading
    anything back to the host and apply the stop rule once at the end, to the same per-pass
    scores, so the result is the same; a stop that would have come early costs the passes
    after it (a few milliseconds each on a GPU), where a read-back per pass would stall it.
    Inside the loop nothing waits for the device either way except the early-stop check.
    """
    s = settings or IGRSSettings()
    passes = s.max_iterations if s.enabled else 1
    device = getattr(backend, "device", None)
    if defer_stop is None:
        defer_stop = s.defer_stop
    if defer_stop is None:
        defer_stop = getattr(device, "type", None) == "cuda"
    plan = _plan(backend, text, roles, s, device)
    result = HeatmapResult(np.zeros(tuple(out_size), np.float32), 0, [], [], [])
    state = _Passes()
    keep: torch.Tensor | None = None
    stop: tuple[int, int, str] | None = None
    for t in range(passes):
        result.keep_masks.append(None if keep is None else keep.clone())
        t0 = time.perf_counter()
        out = backend.text_pass(image_embedding, text, keep)
        result.pass_times_s.append(time.perf_counter() - t0)
        if plan is None:  # a backend that says its valid tokens only through its passes
            plan = _plan_from_pass(out, roles, s)
        logits = out.itm_logits
        state.probabilities.append(torch.softmax(logits.float(), dim=-1)[1])
        state.logits.append(logits[1])
        g_map = apply_plan(out.attention, out.gradient, plan)
        grid = getattr(backend, "grid", None)
        if grid is not None and tuple(g_map.shape) != (grid, grid):
            raise ValueError(
                f"backend.grid is {grid} but its attention gives a {tuple(g_map.shape)} map"
            )
        n = minmax(g_map)
        r_map = n if t == 0 else (1.0 - s.alpha) * state.blends[-1] + s.alpha * n
        state.blends.append(r_map)
        if t < passes - 1:
            if s.stop_rule == "soft_itm":  # r_{t+1} needs O_t's mean
                state.heat[t] = minmax(upsample(r_map, out_size))
                state.unmasked.append((1.0 - state.heat[t]).mean())
            b = keep_from_map(n, s.threshold, s.steepness)
            keep = b if keep is None else keep & b
            state.kept.append(keep.any())
        if not defer_stop:
            p, _, kept, unmasked = state.host()
            stop = stop_point(p, kept, unmasked, passes, s.stop_rule, s.enabled)
            if stop is not None:
                break
    return _finish(result, state, stop, passes, s, out_size)


def _finish(
    result: HeatmapResult,
    state: _Passes,
    stop: tuple[int, int, str] | None,
    passes: int,
    s: IGRSSettings,
    out_size: tuple[int, int],
) -> HeatmapResult:
    """Read the per-pass scores once, apply the stop rule if the loop did not, build O."""
    p, logit, kept, unmasked = state.host()
    stop = stop or stop_point(p, kept, unmasked, passes, s.stop_rule, s.enabled)
    assert stop is not None
    run, returned, reason = stop
    o = state.heat.get(returned)
    if o is None:
        o = minmax(upsample(state.blends[returned], out_size))
    if passes == 1 and s.single_pass == "sigmoid":
        o = steep_sigmoid(o, s.steepness, s.threshold)  # the reference's T = 1 output
    result.heatmap_tensor = o.clamp(0.0, 1.0).to(torch.float32)
    result.heatmap = result.heatmap_tensor.cpu().numpy()
    result.itm_scores, result.itm_logits = p[:run], logit[:run]
    del result.keep_masks[run:], result.pass_times_s[run:]
    result.iterations, result.returned_pass, result.stop_reason = run, returned, reason
    return result


def _plan(
    backend: VLPBackend, text: str, roles: TokenRoles, s: IGRSSettings, device: Any
) -> AggregationPlan | None:
    """The command's token plan, before any pass, when the backend tells its valid tokens."""
    token_valid = getattr(backend, "token_valid", None)
    if not callable(token_valid):
        return None
    valid = _valid(roles, token_valid(text))
    return plan_aggregation(
        replace(roles, valid=valid), valid.numel(), s.mode, s.no_primary, device
    )


def _plan_from_pass(out: Any, roles: TokenRoles, s: IGRSSettings) -> AggregationPlan:
    valid = _valid(roles, out.token_valid)
    plan_roles = replace(roles, valid=valid)
    return plan_aggregation(plan_roles, valid.numel(), s.mode, s.no_primary, out.attention.device)


def _valid(roles: TokenRoles, token_valid: Any) -> torch.Tensor:
    return (
        torch.as_tensor(roles.valid, dtype=torch.bool).flatten().cpu()
        & torch.as_tensor(token_valid, dtype=torch.bool).flatten().cpu()
    )
