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
    ModelCheckError,
    ModelNotFoundError,
    ModelTypeError,
    check_model_type,
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


def _create(kind: str, registry: dict[str, Callable[..., Any]], name: str, kwargs: dict) -> Any:
    if name not in registry:
        raise ValueError(f"unknown {kind} backend {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name](**kwargs)


def create_vlp_backend(name: str, **kwargs: Any) -> VLPBackend:
    return _create("VLP", _VLP, name, kwargs)


def create_proposal_backend(name: str, **kwargs: Any) -> ProposalBackend:
    return _create("proposal", _PROPOSALS, name, kwargs)


def check_model_folder(parameter: str, name: str, kind: str, backend: str) -> str:
    """Find the folder of a model parameter and check its config.json model_type; returns it.

    Why before loading: `transformers` loads a folder of the wrong kind (a BLIP folder given as
    the proposal model) with random weights and only a warning; this refuses it by name, reading
    one small file (the backends run the same check when they load, so every entry point
    refuses such a folder alike). Raises ModelNotFoundError (missing weights) or
    ModelCheckError.
    """
    registry = _VLP if kind == "vlp" else _PROPOSALS
    factory = registry.get(backend)
    if factory is None:
        raise ModelCheckError(f"parameter {parameter!r}: unknown backend {backend!r}")
    own_check = getattr(factory, "check_model", None)
    if callable(own_check):  # not a transformers folder (ALBEF: an official .pth)
        return str(own_check(name))
    folder = resolve(name, kind=kind)
    expected = tuple(getattr(factory, "model_types", ()) or ())
    return check_model_type(folder, name, parameter, backend, expected, kind)


register_vlp_backend("blip_itm", BlipITMBackend)
register_vlp_backend("albef_itm", AlbefITMBackend)
register_proposal_backend("mask2former", Mask2FormerProposals)

__all__ = [
    "AlbefITMBackend",
    "AlbefImageEmbedding",
    "ModelCheckError",
    "ModelTypeError",
    "check_model_folder",
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
