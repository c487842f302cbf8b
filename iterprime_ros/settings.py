"""SegmenterSettings: every knob of the pipeline, in one place that the node, the CLI, the Python
API, the replay and the evaluations all read.

Why a module of its own: the node's parameter declarations (ros/params.py) and the YAML file
take their names and defaults from these fields, so the rule for each knob is written once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .core.igrs import IGRSSettings
from .core.selection import SelectionSettings
from .core.text import NormaliserSettings
from .models.loading import DEFAULT_PROPOSAL_MODEL, DEFAULT_VLP_MODEL


@dataclass
class SegmenterSettings:
    """Every knob of the pipeline; field names match config/segment.yaml (the node's
    parameters).
    """

    # compute
    device: str = "auto"  # auto | cuda | cpu
    half_precision: bool = True  # fp16 weights on CUDA when autocast is off; ignored on CPU
    # mixed precision with fp32 weights (models/precision.py): auto = fp16 on CUDA, bf16 on a CPU
    # with native bf16 (AVX512-BF16/AMX), else off; off | bf16 | fp16
    autocast: str = "auto"
    # models (Hugging Face id resolved from the local cache, or a local folder)
    vlp_model: str = DEFAULT_VLP_MODEL
    proposal_model: str = DEFAULT_PROPOSAL_MODEL
    vlp_backend: str = "blip_itm"  # registry name (models/__init__.py)
    proposal_backend: str = "mask2former"
    # VLP / Grad-CAM
    # -1: the backend's own layer, 6 for BLIP (LAVIS compute_gradcam), 8 for ALBEF (method.md §1)
    gradcam_layer: int = -1
    prompt_template: str = "there is a {}"
    first_token: str = "enc"  # "enc": BLIP's [ENC] as the ITM's first token; "cls": keep [CLS]
    max_text_tokens: int = 35
    # PWEM / IGRS
    aggregation: str = "pwem"  # pwem | global | local | gvlp | mean
    no_primary: str = "reference"  # reference | gvlp
    igrs_iterations: int = 3  # 1 turns IGRS off
    igrs_alpha: float = 0.2
    binarize_threshold: float = 0.5
    stop_rule: str = "reference"  # reference | soft_itm | none (no early stop; benchmarks)
    # proposals and selection
    proposal_threshold: float = 0.35
    proposal_shortest_edge: int = 800
    proposal_longest_edge: int = 1333
    max_components: int = 12
    empty_selection: str = "fail"  # fail | best_heat
    selection_score: str = "reference"  # reference | coverage | whole (core/selection.py)
    spatial_prior: bool = False  # weigh proposals by the expression's spatial words
    # text
    primary_tags: tuple[str, ...] = ("NN",)
    parser: str = "auto"  # auto | benepar | spacy
    normalize_commands: bool = True
    extra_command_phrases: tuple[
        str, ...
    ] = ()  # more leading phrases to strip ("robot", names ...)
    check_language: bool = True
    # caches
    frame_cache_size: int = 2  # frames whose proposals + image embedding are kept
    # dialogue (answers.py, conversation.py): with min_confidence 0 and hold_ambiguous off the
    # answer's mask and success are the paper's; the other fields only add information
    min_confidence: float = 0.0  # below it an answer is "not sure": success False, no target
    max_candidates: int = 3  # distinct objects offered with each answer
    # the runner-up's mean heat within this share of the best's, and the words do not single one
    # out: ambiguous (chosen for detection F1 on the world's validation split)
    ambiguity_margin: float = 0.76
    hold_ambiguous: bool = False  # an ambiguous answer is not a target (success False) either
    plural_commands: bool = False  # "both cups": every matching object, heat for "the cup"
    dialogue_timeout_s: float = 60.0  # a question or answer older than this is forgotten

    def __post_init__(self) -> None:
        self.primary_tags = tuple(self.primary_tags)
        self.extra_command_phrases = tuple(
            p for p in self.extra_command_phrases if p and p.strip()
        )
        if "{}" not in self.prompt_template:
            raise ValueError(f"prompt_template {self.prompt_template!r} has no '{{}}' placeholder")
        if self.empty_selection not in ("fail", "best_heat"):
            raise ValueError(
                f"empty_selection must be fail or best_heat, not {self.empty_selection!r}"
            )
        if self.gradcam_layer < -1:
            raise ValueError(
                f"gradcam_layer must be -1 (the backend's own) or a layer index, "
                f"not {self.gradcam_layer}"
            )
        if self.max_components < 1:
            raise ValueError("max_components must be at least 1")
        if self.frame_cache_size < 1:
            raise ValueError("frame_cache_size must be at least 1")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], not {self.min_confidence}")
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")
        if not 0.0 <= self.ambiguity_margin < 1.0:
            raise ValueError(f"ambiguity_margin must be in [0, 1), not {self.ambiguity_margin}")
        if not self.dialogue_timeout_s > 0:
            raise ValueError("dialogue_timeout_s must be positive")
        from .models.precision import AUTOCAST_MODES

        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(
                f"autocast must be one of {', '.join(AUTOCAST_MODES)}, not {self.autocast!r}"
            )
        self.igrs_settings()  # validates aggregation, stop rule, alpha, iterations
        self.selection_settings()  # validates the selection variant

    def backend_gradcam_layer(self) -> int | None:
        """The layer to build a VLP backend with; None lets the backend take its own default."""
        return None if self.gradcam_layer < 0 else self.gradcam_layer

    def igrs_settings(self) -> IGRSSettings:
        return IGRSSettings(
            max_iterations=self.igrs_iterations,
            alpha=self.igrs_alpha,
            threshold=self.binarize_threshold,
            stop_rule=self.stop_rule,
            mode=self.aggregation,
            no_primary=self.no_primary,
            enabled=self.igrs_iterations > 1,
        )

    def selection_settings(self) -> SelectionSettings:
        return SelectionSettings(score=self.selection_score, spatial_prior=self.spatial_prior)

    def normaliser_settings(self) -> NormaliserSettings:
        base = NormaliserSettings()
        return NormaliserSettings(
            enabled=self.normalize_commands,
            leading_phrases=tuple(base.leading_phrases) + self.extra_command_phrases,
            check_language=self.check_language,
        )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], ignore_unknown: bool = False
    ) -> "SegmenterSettings":
        """Settings from a mapping (ROS parameters, YAML); lists become tuples.

        ignore_unknown: skip keys that are not settings (the node's own parameters such as
        queue_size); otherwise they raise ValueError, so a typo is not silently ignored.
        """
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown and not ignore_unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        )

    def replace(self, **changes: Any) -> "SegmenterSettings":
        values = asdict(self)
        values.update(changes)
        return SegmenterSettings(**values)


def gradcam_layer_for(vlp: Any, requested: int) -> int | None:
    """The layer a loaded VLP backend should explain for the gradcam_layer setting.

    -1 is the backend's own default. ValueError (one line) when the layer has no
    cross-attention in this model, so a live change never breaks the next command. None for a
    backend without a Grad-CAM layer (a caller-supplied stand-in).
    """
    if not hasattr(vlp, "gradcam_layer"):
        return None
    layer = (
        getattr(vlp, "default_gradcam_layer", vlp.gradcam_layer) if requested < 0 else requested
    )
    layers = getattr(vlp, "gradcam_layers", None)
    if layers is not None and layer not in layers:
        raise ValueError(
            f"gradcam_layer {layer} has no cross-attention in the loaded model: its "
            f"cross-attention layers are {layers.start}..{layers.stop - 1}"
        )
    return int(layer)
