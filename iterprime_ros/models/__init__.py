"""Model backends behind the core's protocols, and a registry that picks them by name.

Registered: VLP "blip_itm" (BLIP ITM, transformers), "albef_itm" (ALBEF ITM from the official
.pth, the paper's model); proposals "mask2former" (transformers Mask2Former). The registry is
the seam for other networks -- a detectron2 Mask2Former or a SAM-family proposal generator --
which implement ``ProposalBackend`` /
``VLPBackend`` (core/backend.py) and call ``register_proposal_backend`` /
``register_vlp_backend``; nothing else changes. transformers is imported only when a model is
loaded (after its folder was found), so missing weights are reported quickly.
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.backend import ProposalBackend, VLPBackend
from .albef import AlbefImageEmbedding, AlbefITMBackend
from .blip import BlipImageEmbedding, BlipITMBackend
from .loading import (
    DEFAULT_PROPOSAL_MODEL,
    DEFAULT_VLP_MODEL,
    ModelNotFoundError,
    clear_model_cache,
    resolve,
    resolve_device,
)
from .mask2former import Mask2FormerProposals

VLPFactory = Callable[..., VLPBackend]
ProposalFactory = Callable[..., ProposalBackend]

_VLP: dict[str, VLPFactory] = {}
_PROPOSALS: dict[str, ProposalFactory] = {}


def register_vlp_backend(name: str, factory: VLPFactory) -> None:
    """factory(model=..., device=..., half_precision=..., **options) -> VLPBackend."""
    _VLP[name] = factory


def register_proposal_backend(name: str, factory: ProposalFactory) -> None:
    """factory(model=..., device=..., half_precision=..., **options) -> ProposalBackend."""
    _PROPOSALS[name] = factory


def vlp_backends() -> list[str]:
    return sorted(_VLP)


def proposal_backends() -> list[str]:
    return sorted(_PROPOSALS)


def create_vlp_backend(name: str, **kwargs: Any) -> VLPBackend:
    try:
        factory = _VLP[name]
    except KeyError:
        raise ValueError(
            f"unknown VLP backend {name!r}; known: {', '.join(vlp_backends())}"
        ) from None
    return factory(**kwargs)


def create_proposal_backend(name: str, **kwargs: Any) -> ProposalBackend:
    try:
        factory = _PROPOSALS[name]
    except KeyError:
        raise ValueError(
            f"unknown proposal backend {name!r}; known: {', '.join(proposal_backends())}"
        ) from None
    return factory(**kwargs)


register_vlp_backend("blip_itm", BlipITMBackend)
register_vlp_backend("albef_itm", AlbefITMBackend)
register_proposal_backend("mask2former", Mask2FormerProposals)

__all__ = [
    "AlbefITMBackend",
    "AlbefImageEmbedding",
    "BlipITMBackend",
    "BlipImageEmbedding",
    "Mask2FormerProposals",
    "DEFAULT_PROPOSAL_MODEL",
    "DEFAULT_VLP_MODEL",
    "ModelNotFoundError",
    "clear_model_cache",
    "create_proposal_backend",
    "create_vlp_backend",
    "proposal_backends",
    "register_proposal_backend",
    "register_vlp_backend",
    "resolve",
    "resolve_device",
    "vlp_backends",
]
