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

from typing import Sequence

import torch

from .gradcam import attention_maps
from .text import TokenRoles

MODES = ("mean", "gvlp", "global", "local", "pwem")
NO_PRIMARY = ("reference", "gvlp")
EPS = 1e-8


def local_maps(
    a: torch.Tensor, g_pos: torch.Tensor, primary: Sequence[int], context: Sequence[int]
) -> torch.Tensor:
    """Eq. 3 for every head: K x max(|C|, 1) x g x g.

    a, g_pos: K x L x g x g attention and positive gradient. A_m, g_m: means over P.
    D_c = A_m − A_c is normalised per patch across the context axis (not spatially):
    D̂_c = D_c / max(‖D_·‖₂, 1e-8). G^loc_c = D̂_c ⊙ g_m ⊙ (A_m ⊙ g_m). May be negative.
    C empty: the reference's one all-zero context map, so D = A_m, D̂ = 1 where A_m > 0 and
    the single local map is g_m ⊙ g_m ⊙ A_m (why: every one-noun expression lands here).
    """
    k, _, gh, gw = a.shape
    p = list(primary)
    a_m = a[:, p].mean(dim=1, keepdim=True)  # K x 1 x g x g
    g_m = g_pos[:, p].mean(dim=1, keepdim=True)  # K x 1 x g x g
    a_c = a[:, list(context)] if context else a.new_zeros(k, 1, gh, gw)
    d = a_m - a_c  # K x |C| x g x g
    norm = d.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(EPS)  # across the context axis
    return (d / norm) * g_m * (a_m * g_m)


def global_tokens(effective: Sequence[int], primary: Sequence[int]) -> list[int]:
    """Eq. 4 token list E' = E followed by |E| copies of P (duplicates kept)."""
    return list(effective) + list(primary) * len(effective)


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
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if no_primary not in NO_PRIMARY:
        raise ValueError(f"no_primary must be one of {NO_PRIMARY}, not {no_primary!r}")
    a, g_pos = attention_maps(attention, gradient)
    cam = a * g_pos  # K x L x g x g
    n_tokens = cam.shape[1]
    valid = torch.as_tensor(roles.valid, dtype=torch.bool).flatten()
    if valid.numel() != n_tokens:
        raise ValueError(
            f"roles.valid has {valid.numel()} entries, attention has {n_tokens} tokens"
        )
    effective = [j for j in roles.effective if valid[j]]
    primary = [j for j in roles.primary if valid[j]]
    for j in effective + primary:
        if not 0 < j < n_tokens:
            raise ValueError(f"token position {j} outside 1..{n_tokens - 1}")

    def mean_of(maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=1).mean(dim=0)

    def overall() -> torch.Tensor:
        idx = torch.nonzero(valid.to(cam.device)).flatten()
        return mean_of(cam[:, idx])

    def head_means_first(tokens: torch.Tensor) -> torch.Tensor:
        # the reference's no-primary map: head means of [∇A]₊ and A, multiplied, token mean
        return (g_pos[:, tokens].mean(dim=0) * a[:, tokens].mean(dim=0)).mean(dim=0)

    if mode == "mean":
        return overall()
    if mode == "gvlp" or (not primary and no_primary == "gvlp"):
        return mean_of(cam[:, [0] + effective]) if effective else overall()
    if not primary:  # reference behaviour
        if effective:
            return head_means_first(torch.nonzero(valid.to(cam.device)).flatten())
        return head_means_first(torch.tensor([0], device=cam.device))

    parts = [cam[:, [0]]]
    if mode in ("local", "pwem"):
        p_set = set(primary)
        context = [
            j for j in dict.fromkeys(effective) if j not in p_set
        ]  # unique(E) \ P, in order
        parts.append(local_maps(a, g_pos, primary, context))
    parts.append(
        cam[:, global_tokens(effective, primary) if mode in ("global", "pwem") else effective]
    )
    return mean_of(torch.cat(parts, dim=1))
