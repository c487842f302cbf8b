"""SegmentationResult: the answer to one command, as every entry point returns it.

Why a module of its own: the node's messages, the replay, the tracker and the evaluations
build or read results without needing the segmenter and its models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


@dataclass
class Candidate:
    """One distinct object the words may refer to, as a listener and a grasp planner need it.

    proposal_index: the proposal mask it is; mask: H x W bool; bbox: (x, y, w, h); centroid:
    (u, v) float pixels; grasp_point: (u, v) int pixels inside the mask; score: its mean
    Grad-CAM heat (how strongly the words point at it, the signal candidates are ranked by);
    description: a short phrase built from its pixels and its place among the other candidates
    ("the red one on the left"), which a person can repeat to choose it.
    """

    proposal_index: int
    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    grasp_point: tuple[int, int]
    score: float
    description: str = ""
    colour: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the mask as its area)."""
        return {
            "proposal_index": self.proposal_index,
            "bbox": list(self.bbox),
            "centroid": list(self.centroid),
            "grasp_point": list(self.grasp_point),
            "score": self.score,
            "description": self.description,
            "colour": self.colour,
            "mask_area": int(self.mask.sum()),
        }


@dataclass
class SegmentationResult:
    """The answer to one command. On failure `error` says why and the arrays may be None.

    centroid: (u, v) float pixels (column, row); grasp_point: (u, v) int pixels inside the mask;
    bbox: (x, y, w, h); score: selection score (1 + mean heat in the mask); itm_score: ITM match
    probability of the IGRS pass whose heat map was used (the last pass run, except when the
    soft_itm rule stops and returns the previous pass); timings: seconds per stage (stages served
    from the frame cache are absent; see frame_cached).

    The dialogue fields (appended; with their defaults a result means what it always meant):
    confidence in [0, 1] ranks answers by how likely they are right (answers.py). sure is
    confidence >= settings.min_confidence; an answer that is not sure keeps its mask and
    candidates but has success False and an error starting "not sure:", so a planner that reads
    only success never takes it for a target. candidates: the few best distinct objects, best
    first, the chosen one first. ambiguous: the words fit more than one of them about equally;
    question: then a sentence ready to speak ("Which cup: the red one on the left or the blue
    one on the right?"). objects: for a plural command ("both cups", "all the red blocks")
    every matching object, left to right; for a singular command the one answer.
    in_reply_to: the id of the command this one answered (a reply or correction in a
    conversation), empty for a command that stands alone.
    """

    success: bool
    error: str
    command: str
    expression: str = ""
    primary_word: str = ""
    mask: np.ndarray | None = None  # H x W bool
    centroid: tuple[float, float] | None = None
    grasp_point: tuple[int, int] | None = None
    bbox: tuple[int, int, int, int] | None = None
    score: float = 0.0
    itm_score: float = 0.0
    iterations: int = 0
    heatmap: np.ndarray | None = None  # H x W float32 in [0, 1]
    timings: dict[str, float] = field(default_factory=dict)
    # diagnostics
    parser: str = ""
    proposal_index: int | None = None
    num_proposals: int = 0
    flagged: bool = False  # chosen by the empty_selection="best_heat" fallback
    itm_scores: list[float] = field(default_factory=list)
    stop_reason: str = ""
    frame_cached: bool = False  # proposals and image embedding came from the frame cache
    prefetched: bool = False  # ... and were computed ahead of the command (prepare_frame)
    image_size: tuple[int, int] | None = None
    confidence: float = 0.0
    sure: bool = True
    candidates: list[Candidate] = field(default_factory=list)
    ambiguous: bool = False
    question: str = ""
    objects: list[Candidate] = field(default_factory=list)
    plural: bool = False
    in_reply_to: str = ""

    @property
    def latency_s(self) -> float:
        return self.timings.get("total", 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays; the mask as its area)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("mask", "heatmap"):
                continue
            v = getattr(self, f.name)
            if f.name in ("candidates", "objects"):
                v = [c.to_dict() for c in v]
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out["mask_area"] = int(self.mask.sum()) if self.mask is not None else 0
        out["latency_s"] = self.latency_s
        return out
