"""The seam between the method (core) and the models that feed it.

The core never imports a model class: a vision-language backend and a proposal
backend hand it plain tensors through these protocols, so the maths can be tested
on hand-made tensors and a second VLP (ALBEF) or proposal network (SAM,
detectron2 Mask2Former) can plug in without touching the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch


@dataclass(frozen=True)
class PassOutput:
    """One text/fusion pass of the VLP's image-text-matching head.

    attention / gradient: layer-l cross-attention probabilities (after softmax,
    before dropout) and d(match logit)/d(attention), shape K x L x (1 + g*g); key 0
    is the image CLS token. token_valid: L bools, False for padding and the
    trailing [SEP] (they never take part). itm_logits: (2,) = (no-match, match).
    """

    itm_logits: torch.Tensor
    attention: torch.Tensor
    gradient: torch.Tensor
    token_valid: torch.Tensor

    @property
    def match_logit(self) -> float:
        return float(self.itm_logits[1])

    @property
    def match_probability(self) -> float:
        return float(torch.softmax(self.itm_logits.float(), dim=-1)[1])


@runtime_checkable
class VLPBackend(Protocol):
    """What IGRS needs from a vision-language model with cross-attention."""

    grid: int  # g: the image is seen as g x g patches

    def encode_image(self, image: np.ndarray) -> Any:
        """H x W x 3 uint8 RGB -> an opaque image embedding, computed once per image (no
        gradient).
        """

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span in `text` of each text token the pass will use; None for special/pad
        tokens.
        """

    def text_pass(self, image_embedding: Any, text: str, keep: torch.Tensor | None) -> PassOutput:
        """Run the text/fusion encoder on `text` with only the patches where keep (g*g bools) is
        True visible to every cross-attention layer (None: all visible).
        """


@runtime_checkable
class ProposalBackend(Protocol):
    """What the selection step needs from a mask-proposal network."""

    def propose(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> N x H x W bool instance-mask proposals at the original
        resolution.
        """


def words_of_tokens(
    offsets: Sequence[tuple[int, int] | None], word_spans: Sequence[tuple[int, int]]
) -> list[int | None]:
    """Map each token to the index of the word whose character span contains it (None if none).

    A word split into several subword tokens owns all of them.
    """
    out: list[int | None] = []
    for span in offsets:
        owner = None
        if span is not None and span[1] > span[0]:
            for w, (ws, we) in enumerate(word_spans):
                if span[0] < we and span[1] > ws:
                    owner = w
                    break
        out.append(owner)
    return out
