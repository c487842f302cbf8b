"""What BLIP's text encoder gets once per loaded model: the mask hook, the capture hook and a
cross-attention forward that reuses the image's keys and values (models/blip.py explains why
each is needed). One state object per model says what they apply during the current call, so
no hook is registered or module swapped per pass.
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch


class HookState:
    """What the hooks installed once on a loaded model apply during the current call.

    mask: additive 1 x 1 x 1 x K mask for every cross-attention layer (None: no masking);
    capture_layer: the layer whose attention probabilities become the Grad-CAM leaf (None: no
    capture); captured: that leaf after the forward pass; kv / kv_source: the image's cached
    cross-attention keys and values per layer and the embedding they were projected from (None:
    every layer projects its keys and values itself).
    """

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None
        self.capture_layer: int | None = None
        self.captured: torch.Tensor | None = None
        self.kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None
        self.kv_source: torch.Tensor | None = None

    @classmethod
    def install(cls, layers: Any) -> "HookState":
        """Register the two hooks on every text layer (once per loaded model)."""
        state = cls()
        for index, layer in enumerate(layers):
            layer.crossattention.self.register_forward_pre_hook(
                state._mask_hook(), with_kwargs=True
            )
            layer.crossattention.self.dropout.register_forward_pre_hook(state._capture(index))
            state._reuse_kv(layer.crossattention.self, index)
        return state

    def _reuse_kv(self, core: torch.nn.Module, index: int) -> None:
        """Give one cross-attention core a forward that takes the image's keys and values from
        ``kv`` when the call's image tokens are ``kv_source``, and otherwise runs transformers'
        own. Set once per loaded model: no module is swapped per pass, the key/value Linear
        modules stay in place (and are simply not called).

        The maths is BlipTextSelfAttention's (transformers 5), step by step, with the key and
        value projections replaced by the cached ones; a test compares it with transformers'
        forward on the same inputs to the bit, so a change upstream is noticed.
        """
        state = self

        def forward(
            module: torch.nn.Module,
            hidden_states: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            encoder_hidden_states: torch.Tensor | None = None,
            encoder_attention_mask: torch.Tensor | None = None,
            **kwargs: Any,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            kv = state.kv
            if kv is None or encoder_hidden_states is not state.kv_source or kwargs.get("cache"):
                return type(module).forward(  # transformers' own, on this very module
                    module,
                    hidden_states,
                    attention_mask=attention_mask,
                    encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask,
                    **kwargs,
                )
            size = module.attention_head_size
            query = module.query(hidden_states).view(*hidden_states.shape[:-1], -1, size)
            key, value = (t.view(*t.shape[:-1], -1, size).transpose(1, 2) for t in kv[index])
            scores = torch.matmul(query.transpose(1, 2), key.transpose(-1, -2))
            scores = scores / math.sqrt(size)
            if encoder_attention_mask is not None:
                scores = scores + encoder_attention_mask.to(scores.device)
            probs = torch.nn.Softmax(dim=-1)(scores)
            context = torch.matmul(module.dropout(probs), value)
            context = context.permute(0, 2, 1, 3).contiguous()
            return context.view(*context.size()[:-2], module.all_head_size), probs

        core.forward = types.MethodType(forward, core)

    def _mask_hook(self) -> Any:
        # a closure, not a bound method: a deep copy of the model (fp16 emulation) keeps
        # reading this state, the one its backend sets
        state = self

        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            if state.mask is None:
                return None
            kwargs = dict(kwargs)
            kwargs["encoder_attention_mask"] = state.mask
            return args, kwargs

        return hook

    def _capture(self, index: int) -> Any:
        def hook(module: torch.nn.Module, args: tuple) -> Any:
            if self.capture_layer != index:
                return None
            # args[0] = softmax output before dropout; the forward pass continues from a
            # grad-requiring copy, so the graph starts here
            probs = args[0].detach().requires_grad_(True)
            self.captured = probs
            return (probs, *args[1:])

        return hook
