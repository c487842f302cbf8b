"""Mask2Former's multi-scale deformable attention sum, written as one weighted gather for CPUs.

Why: in the pixel decoder every one of ~18,000 feature positions (at 800 x 1067 px) samples 4
points on each of 3 levels for each of 8 heads, and `transformers` does it in plain PyTorch:
one ``grid_sample`` per level into a tensor of every sampled value, a stack of the levels, a
product with the attention weights and a sum. On a CPU that is most of the pixel decoder's
time (2.3 of 3.4 s per frame, measured with the profiler on the Swin-L benchmark model),
because ``grid_sample`` walks 32 channels with a stride of a whole feature map and the stack
writes 55 M values only to sum them again.

The same sum is a sparse product: each output row is sum_k w_k * value[i_k] over the 4
bilinear corners of every sampled point (48 per head and position), where w_k is the
attention weight times the corner's bilinear weight. ``torch.nn.functional.embedding_bag``
computes exactly that over rows of contiguous channels. Each level's map gets a one-pixel zero
border, so a corner outside the map reads a zero instead of needing a mask, as
``grid_sample``'s ``padding_mode="zeros"`` does; coordinates are clamped to that border first,
which gives a point far outside the same zero. The arithmetic is the one ``grid_sample``
(``align_corners=False``) does, summed in another order: results agree to float32 rounding
(a test compares the two), so this costs no accuracy.

It is used only on CPUs and only inside the backend's forward pass (``cpu_deformable_sampling``
swaps the library's function for the duration and puts it back), so nothing else in the
process sees a changed library. On CUDA the library's ``grid_sample`` path is already fast.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

_SWAP_LOCK = threading.Lock()


def deformable_attention_sum(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The contract of transformers' ``multi_scale_deformable_attention``.

    value: B x S x H x D (S = sum of h*w over the levels); sampling_locations: B x Q x H x L x P
    x 2 as (x, y) in [0, 1] of each level; attention_weights: B x Q x H x L x P. Returns
    B x Q x (H*D) in the value's dtype, as the library's path does. The sum itself runs in
    float32 whatever that dtype, so half-precision values lose nothing more here.
    """
    batch, _, heads, depth = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    device = value.device
    table, starts, widths, per_head = _bordered_table(value.float(), spatial_shapes)
    size = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=torch.float32, device=device)
    # Pixel coordinates as grid_sample computes them with align_corners=False, clamped to the
    # zero border: a point further out reads zeros either way.
    pix = sampling_locations.float() * size.view(levels, 1, 2) - 0.5
    pix = torch.minimum(pix, size.view(levels, 1, 2)).clamp_(min=-1.0).nan_to_num_(nan=-1.0)
    corner = pix.floor()
    frac = pix - corner
    cell = corner.to(torch.int64) + 1  # the top-left corner in the bordered map
    row = torch.tensor(widths, dtype=torch.int64, device=device).view(levels, 1)
    start = torch.tensor(starts, dtype=torch.int64, device=device).view(levels, 1)
    head = torch.arange(batch * heads, dtype=torch.int64, device=device) * per_head
    top_left = head.view(batch, 1, heads, 1, 1) + start + cell[..., 1] * row + cell[..., 0]
    fx, fy = frac[..., 0], frac[..., 1]
    lower = attention_weights.float() * fy
    upper = attention_weights.float() - lower
    index = torch.empty((*top_left.shape, 4), dtype=torch.int64, device=device)
    weight = torch.empty((*top_left.shape, 4), dtype=torch.float32, device=device)
    index[..., 0] = top_left
    torch.add(top_left, 1, out=index[..., 1])
    torch.add(top_left, row, out=index[..., 2])
    torch.add(index[..., 2], 1, out=index[..., 3])
    torch.mul(upper, fx, out=weight[..., 1])
    torch.sub(upper, weight[..., 1], out=weight[..., 0])
    torch.mul(lower, fx, out=weight[..., 3])
    torch.sub(lower, weight[..., 3], out=weight[..., 2])
    bags = batch * queries * heads
    out = F.embedding_bag(
        index.view(bags, -1), table, per_sample_weights=weight.view(bags, -1), mode="sum"
    )
    return out.view(batch, queries, heads * depth).to(value.dtype)


def _bordered_table(
    value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, list[int], list[int], int]:
    """Rows of D channels: every head's levels, each with a one-pixel zero border, then spare
    zero rows. Returns the table, each level's first row and row width within a head, and the
    rows per head.

    The spare rows are there because a corner with zero weight just past the last head's
    last map may still be indexed; it must land on a row that exists.
    """
    batch, _, heads, depth = value.shape
    by_head = value.permute(0, 2, 1, 3)  # B x H x S x D
    parts, starts, widths = [], [], []
    first = offset = 0
    for h, w in spatial_shapes:
        level = by_head[:, :, offset : offset + h * w].reshape(batch * heads, h, w, depth)
        parts.append(F.pad(level, (0, 0, 1, 1, 1, 1)).reshape(batch * heads, -1, depth))
        starts.append(first)
        widths.append(w + 2)
        first += (h + 2) * (w + 2)
        offset += h * w
    spare = value.new_zeros(max(widths) + 2, depth)
    table = torch.cat([torch.cat(parts, 1).reshape(-1, depth), spare])
    return table, starts, widths, first


@contextmanager
def cpu_deformable_sampling(device: torch.device) -> Iterator[None]:
    """Within the block, Mask2Former's pixel decoder on a CPU uses `deformable_attention_sum`.

    The library looks its function up by module name at every call, so swapping the name for
    the block is enough; it is put back afterwards, also on an error. The swap is held under a
    lock, so two backends never interleave their swaps. Other devices, or a library without the
    function (a renamed internal), run the library's own path.
    """
    if device.type != "cpu":
        yield
        return
    try:
        from transformers.models.mask2former import modeling_mask2former as library
    except ImportError:  # pragma: no cover - transformers without Mask2Former
        yield
        return
    original = getattr(library, "multi_scale_deformable_attention", None)
    if original is None:  # pragma: no cover - a future transformers renamed it
        yield
        return
    with _SWAP_LOCK:
        library.multi_scale_deformable_attention = deformable_attention_sum
        try:
            yield
        finally:
            library.multi_scale_deformable_attention = original
