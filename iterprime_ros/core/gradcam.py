"""Grad-CAM on one cross-attention layer, per head and per text token (method.md §1, Eq. 1).

Why per head and token (not averaged here): PWEM needs the individual maps G_{k,j} and also
the raw attention A and positive gradient [∇A]₊ separately for its local term.
"""

from __future__ import annotations

import math

import torch


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """K x L x (1+g*g) -> K x L x g x g: drop the image-CLS key column (key 0), reshape row-major.

    Computed in float32 whatever the input precision (half precision on CUDA).
    """
    if x.dim() != 3:
        raise ValueError(f"expected K x L x (1+g*g), got shape {tuple(x.shape)}")
    k, length, n = x.shape
    g = math.isqrt(n - 1) if n > 1 else 0
    if g * g != n - 1 or g == 0:
        raise ValueError(f"{n} keys is not 1 + g*g for an integer g")
    return x[:, :, 1:].float().reshape(k, length, g, g)


def attention_maps(
    attention: torch.Tensor, gradient: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, [∇A]₊) on the patch grid, each K x L x g x g."""
    if attention.shape != gradient.shape:
        raise ValueError(
            f"attention {tuple(attention.shape)} and gradient {tuple(gradient.shape)} differ"
        )
    return to_grid(attention), torch.relu(to_grid(gradient))


def gradcam(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """G_{k,j} = A_{k,j} ⊙ [∇A_{k,j}]₊ for every head k and token j: K x L x g x g."""
    a, g_pos = attention_maps(attention, gradient)
    return a * g_pos
