"""PWEM: combine the per-head, per-token Grad-CAM maps into one g x g map (method.md §2, Eq. 2–4).

Why: the plain mean over tokens (Eq. 2) lets function words and context nouns pull the map;
PWEM emphasises the primary word globally (extra copies) and locally (how much more the
primary word attends a patch than each context word does).

"All tokens" means the *valid* tokens: [CLS] (position 0), the prompt words and the
expression, but never padding or the trailing [SEP] (roles.valid). The edges follow the
authors' released code (the reference, method.md §2): no context word -> one all-zero
context map; no primary word -> head means multiplied, over all valid tokens (E non-empty)
or over [CLS] alone (E empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .gradcam import attention_maps
from .text import TokenRoles

MODES = ("mean", "gvlp", "global", "local", "pwem")
NO_PRIMARY = ("reference", "gvlp")
EPS = 1e-8


def local_maps(
    a: torch.Tensor,
    g_pos: torch.Tensor,
    primary: Sequence[int] | torch.Tensor,
    context: Sequence[int] | torch.Tensor | None,
) -> torch.Tensor:
    """Eq. 3 for every head: K x max(|C|, 1) x g x g.

    a, g_pos: K x L x g x g attention and positive gradient. A_m, g_m: means over P.
    D_c = A_m − A_c is normalised per patch across the context axis (not spatially):
    D̂_c = D_c / max(‖D_·‖₂, 1e-8). G^loc_c = D̂_c ⊙ g_m ⊙ (A_m ⊙ g_m). May be negative.
    C empty: the reference's one all-zero context map, so D = A_m, D̂ = 1 where A_m > 0 and
    the single local map is g_m ⊙ g_m ⊙ A_m (why: every one-noun expression lands here).
    """
    k, _, gh, gw = a.shape
    p = primary if isinstance(primary, torch.Tensor) else list(primary)
    a_m = a[:, p].mean(dim=1, keepdim=True)  # K x 1 x g x g
    g_m = g_pos[:, p].mean(dim=1, keepdim=True)  # K x 1 x g x g
    if isinstance(context, torch.Tensor):
        a_c = a[:, context.to(a.device)]
    else:
        a_c = a[:, list(context)] if context else a.new_zeros(k, 1, gh, gw)
    d = a_m - a_c  # K x |C| x g x g
    norm = d.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(EPS)  # across the context axis
    return (d / norm) * g_m * (a_m * g_m)


def global_tokens(effective: Sequence[int], primary: Sequence[int]) -> list[int]:
    """Eq. 4 token list E' = E followed by |E| copies of P (duplicates kept)."""
    return list(effective) + list(primary) * len(effective)


@dataclass(frozen=True)
class AggregationPlan:
    """Which tokens each part of the map reads, as index tensors on the device of the passes.

    Why a plan: the token bookkeeping (valid tokens, E, P, the context C, E') depends on the
    text only, not on a pass; made once per command before the IGRS loop, every pass then
    aggregates with device-side indexing alone (no Python lists turned into index tensors, no
    reading a tensor back to the host per pass). kind: "overall" (mean over `tokens`),
    "subset" (mean over `tokens`), "head_means" (the reference's no-primary map over
    `tokens`) or "parts" ([CLS], the local maps when `local`, then `tokens` = E' or E).
    """

    kind: str
    n_tokens: int
    tokens: torch.Tensor
    primary: torch.Tensor | None = None
    context: torch.Tensor | None = None  # None: the reference's one all-zero context
    local: bool = False


def plan_aggregation(
    roles: TokenRoles,
    n_tokens: int,
    mode: str = "pwem",
    no_primary: str = "reference",
    device: torch.device | str | None = None,
) -> AggregationPlan:
    """The AggregationPlan for `roles` over passes of n_tokens text tokens (see aggregate)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if no_primary not in NO_PRIMARY:
        raise ValueError(f"no_primary must be one of {NO_PRIMARY}, not {no_primary!r}")
    valid = torch.as_tensor(roles.valid, dtype=torch.bool).flatten().tolist()
    if len(valid) != n_tokens:
        raise ValueError(f"roles.valid has {len(valid)} entries, attention has {n_tokens} tokens")
    effective = [j for j in roles.effective if valid[j]]
    primary = [j for j in roles.primary if valid[j]]
    for j in effective + primary:
        if not 0 < j < n_tokens:
            raise ValueError(f"token position {j} outside 1..{n_tokens - 1}")

    def index(tokens: Sequence[int]) -> torch.Tensor:
        return torch.tensor(list(tokens), dtype=torch.long, device=device)

    every_valid = [j for j, v in enumerate(valid) if v]
    if mode == "mean":
        return AggregationPlan("overall", n_tokens, index(every_valid))
    if mode == "gvlp" or (not primary and no_primary == "gvlp"):
        if effective:
            return AggregationPlan("subset", n_tokens, index([0] + effective))
        return AggregationPlan("overall", n_tokens, index(every_valid))
    if not primary:  # reference behaviour
        return AggregationPlan("head_means", n_tokens, index(every_valid if effective else [0]))
    local = mode in ("local", "pwem")
    p_set = set(primary)
    context = [j for j in dict.fromkeys(effective) if j not in p_set]  # unique(E) \ P, in order
    tokens = global_tokens(effective, primary) if mode in ("global", "pwem") else effective
    return AggregationPlan(
        "parts",
        n_tokens,
        index([0] + list(tokens)),
        primary=index(primary),
        context=index(context) if context else None,
        local=local,
    )


def apply_plan(
    attention: torch.Tensor, gradient: torch.Tensor, plan: AggregationPlan
) -> torch.Tensor:
    """One g x g map from a pass's cross-attention and gradient, by the plan's token indices.

    Only tensor operations on the passes' device: nothing is read back to the host.
    """
    a, g_pos = attention_maps(attention, gradient)
    if a.shape[1] != plan.n_tokens:
        raise ValueError(f"the plan is for {plan.n_tokens} tokens, attention has {a.shape[1]}")
    tokens = plan.tokens.to(a.device)
    if plan.kind == "head_means":
        # the reference's no-primary map: head means of [∇A]₊ and A, multiplied, token mean
        return (g_pos[:, tokens].mean(dim=0) * a[:, tokens].mean(dim=0)).mean(dim=0)
    cam = a * g_pos  # K x L x g x g
    if plan.kind in ("overall", "subset"):
        return cam[:, tokens].mean(dim=1).mean(dim=0)
    parts = [cam[:, tokens[:1]]]
    if plan.local:
        assert plan.primary is not None
        parts.append(local_maps(a, g_pos, plan.primary.to(a.device), plan.context))
    parts.append(cam[:, tokens[1:]])
    return torch.cat(parts, dim=1).mean(dim=1).mean(dim=0)


def aggregate(
    attention: torch.Tensor,
    gradient: torch.Tensor,
    roles: TokenRoles,
    mode: str = "pwem",
    no_primary: str = "reference",
) -> torch.Tensor:
    """One g x g map from a pass's cross-attention and its gradient.

    mode: mean (Eq. 2, all valid tokens) | gvlp ([CLS] ∪ E) | global ([CLS] + E') |
    local ([CLS] + local maps + E) | pwem ([CLS] + local maps + E', the default).
    Each map list is averaged over tokens per head, then over heads.
    no_primary (P empty, modes global/local/pwem): "reference" reproduces the released code:
    (mean_k [∇A]₊) ⊙ (mean_k A) -- head means first -- averaged over all valid tokens when E
    is non-empty, the [CLS] token's alone when E is empty; "gvlp" uses the per-head mean over
    [CLS] ∪ E (the overall mean when E is empty). gvlp mode with E empty: the overall mean.
    """
    if attention.dim() != 3:
        attention_maps(attention, gradient)  # the shape error, in its own words
    plan = plan_aggregation(roles, attention.shape[1], mode, no_primary, attention.device)
    return apply_plan(attention, gradient, plan)
