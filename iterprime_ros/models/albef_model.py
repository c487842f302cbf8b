"""The ALBEF ITM network and the official checkpoint's key names (models/albef.py loads it).

Why apart from the backend: the architecture (its sizes read from a state dict's shapes, the
official-to-module key mapping and the transformers-built modules) is one job; loading a
checkpoint, the tokenizer and the Grad-CAM passes are another (albef.py). See albef.py's
module docstring for the architecture and why each part is built as it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch

# Official keys the ITM pass does not use (pre-training heads, momentum encoders, queues).
IGNORED_PREFIXES = (
    "visual_encoder_m.",
    "text_encoder_m.",
    "vision_proj",
    "text_proj",
    "temp",
    "image_queue",
    "text_queue",
    "idx_queue",
    "queue_ptr",
    "text_encoder.cls.",
    "text_encoder.pooler.",
)


@dataclass(frozen=True)
class AlbefArchitecture:
    """The sizes of an ALBEF ITM model, read from a state dict's shapes."""

    vision_width: int
    vision_layers: int
    patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    fusion_layer: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    vision_heads: int
    text_heads: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def text_key(key: str) -> str:
    """Official text-encoder key -> this module's: ``text_encoder.bert.X`` -> ``text_encoder.X``
    (the pre-training checkpoint wraps BERT in BertForMaskedLM; retrieval ones do not).
    """
    return key.replace("text_encoder.bert.", "text_encoder.", 1)


def infer_architecture(
    shapes: Mapping[str, tuple[int, ...]], num_heads: int | None = None
) -> AlbefArchitecture:
    """Sizes from official key shapes (pass {key: tuple(tensor.shape)}). KeyError: not ALBEF."""
    s = {text_key(k): tuple(v) for k, v in shapes.items()}
    pos = s["visual_encoder.pos_embed"]
    patch = s["visual_encoder.patch_embed.proj.weight"]
    g = math.isqrt(pos[1] - 1)
    if g * g != pos[1] - 1:
        raise ValueError(f"visual_encoder.pos_embed has {pos[1]} tokens, not 1 + g*g")
    v_layers = 1 + max(
        int(m.group(1)) for k in s if (m := re.match(r"visual_encoder\.blocks\.(\d+)\.", k))
    )
    t_ids = {
        int(m.group(1)) for k in s if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", k))
    }
    cross = [
        i for i in t_ids if f"text_encoder.encoder.layer.{i}.crossattention.self.key.weight" in s
    ]
    if not cross:
        raise ValueError("the checkpoint's text encoder has no cross-attention layer")
    vw, tw = pos[2], s["text_encoder.embeddings.word_embeddings.weight"][1]
    return AlbefArchitecture(
        vision_width=vw,
        vision_layers=v_layers,
        patch_size=patch[2],
        image_size=g * patch[2],
        text_width=tw,
        text_layers=1 + max(t_ids),
        fusion_layer=min(cross),
        intermediate_size=s["text_encoder.encoder.layer.0.intermediate.dense.weight"][0],
        vocab_size=s["text_encoder.embeddings.word_embeddings.weight"][0],
        max_positions=s["text_encoder.embeddings.position_embeddings.weight"][0],
        type_vocab_size=s["text_encoder.embeddings.token_type_embeddings.weight"][0],
        vision_heads=num_heads or max(1, vw // 64),
        text_heads=num_heads or max(1, tw // 64),
    )


def official_to_module(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official ALBEF state dict -> this module's state dict, and the official keys not used.

    Vision: timm names -> transformers ViT names, fused qkv split into q/k/v (rows q, k, v).
    Text: ``.bert`` dropped; names otherwise identical (xbert keeps BERT's). Buffers
    (``position_ids``) and IGNORED_PREFIXES are left out.
    """
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    vis = {
        "visual_encoder.cls_token": "visual_encoder.embeddings.cls_token",
        "visual_encoder.pos_embed": "visual_encoder.embeddings.position_embeddings",
        "visual_encoder.patch_embed.proj.weight": (
            "visual_encoder.embeddings.patch_embeddings.projection.weight"
        ),
        "visual_encoder.patch_embed.proj.bias": (
            "visual_encoder.embeddings.patch_embeddings.projection.bias"
        ),
        "visual_encoder.norm.weight": "visual_encoder.layernorm.weight",
        "visual_encoder.norm.bias": "visual_encoder.layernorm.bias",
    }
    block = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for key, value in state.items():
        if key in vis:
            out[vis[key]] = value
            continue
        m = re.match(r"visual_encoder\.blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m:
            i, name, kind = m.groups()
            prefix = f"visual_encoder.layers.{i}."
            if name == "attn.qkv":
                for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{prefix}attention.{part}.{kind}"] = chunk
            elif name in block:
                out[f"{prefix}{block[name]}.{kind}"] = value
            else:
                unused.append(key)
            continue
        if key.startswith(IGNORED_PREFIXES) or key.endswith("position_ids"):
            unused.append(key)
            continue
        if key.startswith(("text_encoder.", "itm_head.")):
            out[text_key(key)] = value
            continue
        unused.append(key)
    return out, unused


class CrossAttentionCore(torch.nn.Module):
    """transformers' BertCrossAttention maths with an explicit softmax -> ``probs`` -> dropout
    path, so the probabilities (post-softmax, pre-dropout) are a hookable module input.
    Same parameters (query/key/value) and names as xbert's ``crossattention.self``.
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        from transformers.models.bert.modeling_bert import BertCrossAttention

        base = BertCrossAttention(config)
        self.num_heads = base.num_attention_heads
        self.head_size = base.attention_head_size
        self.scaling = base.scaling
        self.query, self.key, self.value, self.dropout = (
            base.query,
            base.key,
            base.value,
            base.dropout,
        )
        self.probs = torch.nn.Identity()  # where the probabilities leave (a hook point)
        # set by the backend for the length of one call, under the model's lock: the additive
        # key mask of IGRS (None: every key) and whether this layer's probabilities become the
        # Grad-CAM leaf (then left in `captured`)
        self.key_mask: torch.Tensor | None = None
        self.capture = False
        self.captured: torch.Tensor | None = None

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert encoder_hidden_states is not None
        b, n = hidden_states.shape[:2]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, x.shape[1], self.num_heads, self.head_size).transpose(1, 2)

        q = heads(self.query(hidden_states))
        k = heads(self.key(encoder_hidden_states))
        v = heads(self.value(encoder_hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling
        if attention_mask is None:
            attention_mask = self.key_mask
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores, dim=-1)
        if self.capture:  # the graph of d(match)/dA starts here (post-softmax, pre-dropout)
            probs = probs.detach().requires_grad_(True)
            self.captured = probs
        probs = self.probs(probs)
        context = torch.matmul(self.dropout(probs), v).transpose(1, 2).reshape(b, n, -1)
        return context, probs


class _AlbefLayer(torch.nn.Module):
    """One xbert layer: self-attention, cross-attention (fusion layers only), feed-forward."""

    def __init__(self, config: Any, cross: bool) -> None:
        super().__init__()
        from transformers.models.bert.modeling_bert import (
            BertAttention,
            BertIntermediate,
            BertOutput,
        )

        self.attention = BertAttention(config)
        if cross:
            self.crossattention = BertAttention(config, is_cross_attention=True)
            self.crossattention.self = CrossAttentionCore(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self, hidden: torch.Tensor, image: torch.Tensor, image_mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden = self.attention(hidden)[0]  # one unpadded text: no self-attention mask
        if hasattr(self, "crossattention"):
            hidden = self.crossattention(
                hidden, encoder_hidden_states=image, encoder_attention_mask=image_mask
            )[0]
        return self.output(self.intermediate(hidden), hidden)


class _AlbefEncoder(torch.nn.Module):
    def __init__(self, config: Any, fusion_layer: int) -> None:
        super().__init__()
        self.layer = torch.nn.ModuleList(
            _AlbefLayer(config, i >= fusion_layer) for i in range(config.num_hidden_layers)
        )


class _AlbefText(torch.nn.Module):
    """BERT embeddings + the text and fusion layers (xbert's BertModel, multi-modal mode)."""

    def __init__(self, config: Any, fusion_layer: int) -> None:
        super().__init__()
        from transformers.models.bert.modeling_bert import BertEmbeddings

        self.embeddings = BertEmbeddings(config)
        self.encoder = _AlbefEncoder(config, fusion_layer)

    def forward(
        self, input_ids: torch.Tensor, image: torch.Tensor, image_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = self.embeddings(input_ids=input_ids)
        for layer in self.encoder.layer:
            hidden = layer(hidden, image, image_mask)
        return hidden


class AlbefITM(torch.nn.Module):
    """The ALBEF ITM model (VL_Transformer_ITM in the authors' code) from transformers parts."""

    def __init__(self, arch: AlbefArchitecture) -> None:
        super().__init__()
        from transformers import BertConfig, ViTConfig, ViTModel

        vit = ViTConfig(
            hidden_size=arch.vision_width,
            num_hidden_layers=arch.vision_layers,
            num_attention_heads=arch.vision_heads,
            intermediate_size=4 * arch.vision_width,
            image_size=arch.image_size,
            patch_size=arch.patch_size,
            layer_norm_eps=1e-6,
            qkv_bias=True,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        vit._attn_implementation = "eager"
        bert = BertConfig(
            vocab_size=arch.vocab_size,
            hidden_size=arch.text_width,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads,
            intermediate_size=arch.intermediate_size,
            max_position_embeddings=arch.max_positions,
            type_vocab_size=arch.type_vocab_size,
            layer_norm_eps=1e-12,
            hidden_act="gelu",
        )
        bert._attn_implementation = "eager"
        self.arch = arch
        self.visual_encoder = ViTModel(vit, add_pooling_layer=False)
        self.text_encoder = _AlbefText(bert, arch.fusion_layer)
        self.itm_head = torch.nn.Linear(arch.text_width, 2)
