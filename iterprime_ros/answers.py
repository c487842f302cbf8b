"""From a selection to an answer a person and a planner can act on: confidence, the distinct
candidates with their descriptions, whether to ask "which one?", and every object of a plural
command.

Why apart from the segmenter: this is the dialogue's reading of one heat map, the same for the
node, the replay and the evaluations, and it changes neither the chosen mask nor (with
min_confidence 0 and hold_ambiguous off) success, so the paper's answer stays as it was.
"""

from __future__ import annotations

import numpy as np

from .core.candidates import (
    confidence,
    confidence_features,
    distinct_objects,
    is_ambiguous,
    mean_heat,
)
from .core.describe import describe, look_at, question
from .core.geometry import grasp_point, mask_bbox, mask_centroid
from .core.replies import PluralRequest, choice_words, singles_out
from .result import Candidate, SegmentationResult
from .settings import SegmenterSettings

# With a plural command, an object counts as matching when its mean heat is at least this share
# of the best one's (chosen on the world's validation scenes).
PLURAL_SHARE = 0.1
MAX_PLURAL_OBJECTS = 8


def make_candidate(proposals: np.ndarray, index: int, score: float) -> Candidate:
    mask = np.asarray(proposals[index], bool).copy()
    return Candidate(
        proposal_index=int(index),
        mask=mask,
        bbox=mask_bbox(mask),
        centroid=mask_centroid(mask),
        grasp_point=grasp_point(mask),
        score=float(score),
    )


def describe_candidates(image: np.ndarray, candidates: list[Candidate]) -> None:
    """Fill each candidate's colour and description, told relative to the others."""
    for c, look in zip(candidates, look_at(image, [c.mask for c in candidates])):
        c.colour = look.colour
        c.description = describe(look)


def fill_answer(
    result: SegmentationResult,
    image: np.ndarray,
    heat: np.ndarray,
    proposals: np.ndarray,
    settings: SegmenterSettings,
    plural: PluralRequest | None = None,
) -> None:
    """Add confidence, candidates, ambiguity, question and objects to a selected result.

    Ambiguous: the best distinct candidates score within ambiguity_margin of each other and
    the words do not already single one out (core.replies.singles_out). Not sure (confidence <
    min_confidence), or ambiguous with hold_ambiguous: success False with the reason in error,
    mask and candidates kept.
    """
    scores = mean_heat(heat, proposals)
    chosen = result.proposal_index
    ranked = distinct_objects(proposals, scores, chosen, settings.max_candidates)
    result.candidates = [make_candidate(proposals, r.index, r.score) for r in ranked]
    describe_candidates(image, result.candidates)
    result.confidence = confidence(
        confidence_features(heat, result.mask, ranked, result.itm_score)
    )
    cands = result.candidates
    specific = singles_out(
        result.expression,
        [c.colour for c in cands],
        [c.centroid for c in cands],
        [int(c.mask.sum()) for c in cands],
    )
    result.ambiguous = (
        plural is None and not specific and is_ambiguous(ranked, settings.ambiguity_margin)
    )
    if result.ambiguous:
        said = choice_words(result.expression).colour
        top = max(r.score for r in ranked)
        close = [
            c.description
            for c in cands
            if c.score >= (1.0 - settings.ambiguity_margin) * top
            and (not said or c.colour == said)
        ]
        result.question = question(result.primary_word, close, said)
    if plural is not None:
        result.plural = True
        result.objects = plural_objects(image, proposals, scores, chosen, plural)
    else:
        result.objects = result.candidates[:1]
    result.sure = result.confidence >= settings.min_confidence
    if not result.sure:
        result.success = False
        result.error = (
            f"not sure: confidence {result.confidence:.2f} is below min_confidence "
            f"{settings.min_confidence:.2f}"
        )
    elif result.ambiguous and settings.hold_ambiguous:
        result.success = False
        result.error = f"ambiguous: {result.question}"


def plural_objects(
    image: np.ndarray,
    proposals: np.ndarray,
    scores: np.ndarray,
    chosen: int | None,
    plural: PluralRequest,
) -> list[Candidate]:
    """Every distinct object the singular phrase fits (count of them when stated), left to
    right.
    """
    best = float(scores[chosen]) if chosen is not None else float(scores.max(initial=0.0))
    ranked = distinct_objects(
        proposals, scores, chosen, plural.count or MAX_PLURAL_OBJECTS, PLURAL_SHARE * best
    )
    objects = [make_candidate(proposals, r.index, r.score) for r in ranked]
    objects.sort(key=lambda c: c.centroid[0])
    describe_candidates(image, objects)
    said = choice_words(plural.singular).colour  # "all the red blocks": only the red ones
    if said and any(o.colour == said for o in objects):
        objects = [o for o in objects if o.colour == said]
    return objects
