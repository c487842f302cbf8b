"""The short dialogue about one object: a question and its reply, a correction, "the one next to
it", and the rule that turns any command into exactly one answer.

Why one class: the node and the offline replay must answer a conversation the same way, so the
rule lives here once (``Conversation.answer``). The state is small and forgets itself: a
question or an answer older than ``timeout_s``, a new unrelated command, or a lifecycle
transition (the caller's ``reset``) ends it. Time comes from the caller (``now``, seconds on
any monotonic clock), so tests and the replay decide what time it is.

What each kind of command does:
- a reply to a pending question ("the left one", "the red one", "the second one") chooses among
  that question's candidates by their colour, place, size or order, without running the models;
  a reply that names the question's noun ("the red cup"), or whose words fit no single
  candidate, runs the models once on the reply said as a whole expression, and their answer
  joins the candidates, so an object the question did not offer can still be chosen
  (``reply_models``; off: the models' answer only picks the candidate it overlaps most);
- a correction after an answer ("no, the other one", "not that one") gives the next best
  candidate that has not been refused, never a refused one (nor a part or whole of it);
- "the one next to it" after an answer gives the candidate nearest to the last answer;
- anything else (including a reply with nothing pending) is a new command: the state is reset
  and the segmenter answers it.

The candidates belong to the frame they were found on. An image of another size comes from
another camera: any command on it starts a new conversation. A reply, correction or "the one
next to it" on another scene of the same camera (core.scene: a thumbnail that differs as much
as a moved camera makes it) cannot be resolved against the candidates either: a reply to a
question is answered by the models on the new frame, the reply said as a whole expression
("the red one" after "Which cup?" runs "the red cup"), since the person named the object by
what it looks like; a correction or "the one next to it" refers to an answer the person can no
longer see where it was, so it fails with a reason saying the scene changed. Either way the
old state is void.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from .core.candidates import same_object
from .core.replies import (
    choice_words,
    choose,
    is_correction,
    is_relative,
    mentions_noun,
    names_a_relation,
    names_other_object,
    plural_request,
    words,
)
from .core.scene import same_scene, thumbnail
from .result import Candidate, SegmentationResult

NEW, CHOICE, CORRECTION, RELATIVE = "new", "choice", "correction", "relative"


@dataclass
class Interpretation:
    """What a command is in the conversation: kind (new | choice | correction | relative), the id
    of the command it answers (empty for a new one) and, for a choice, the candidate chosen by
    words (None: the words did not settle it).
    """

    kind: str
    in_reply_to: str = ""
    choice: int | None = None


@dataclass
class _Turn:
    """The last answer (or question) and what the person refused since."""

    command_id: str
    result: SegmentationResult
    time: float
    refused: list[np.ndarray] = field(default_factory=list)  # masks the person said no to
    scene: _Scene | None = None  # the frame it was found on (None: not known, trusted)


@dataclass(frozen=True)
class _Scene:
    """What tells a frame's scene: the image size and its scene-change thumbnail."""

    size: tuple[int, ...]
    thumb: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> "_Scene":
        return cls(tuple(np.shape(image)[:2]), thumbnail(np.asarray(image)))

    def same_camera(self, other: "_Scene | None") -> bool:
        """The same image size (unknown counts as same)."""
        return other is None or self.size == other.size

    def same_as(self, other: "_Scene | None") -> bool:
        """The same scene (core.scene.same_scene) at the same size; unknown counts as same."""
        return other is None or (self.same_camera(other) and same_scene(self.thumb, other.thumb))


class Conversation:
    """Dialogue state for one robot; not thread-safe (the node calls it from its worker)."""

    def __init__(self, timeout_s: float = 60.0, reply_models: bool = True) -> None:
        self.timeout_s = float(timeout_s)
        self.reply_models = bool(reply_models)
        self._last: _Turn | None = None
        self.reset_reason = ""

    @property
    def pending_question(self) -> str:
        """The question waiting for a reply, or ""."""
        last = self._last
        return last.result.question if last is not None and last.result.ambiguous else ""

    def reset(self, reason: str) -> None:
        """Forget the question and the last answer (timeout, new command, lifecycle change)."""
        self._last = None
        self.reset_reason = reason

    def _expire(self, now: float) -> None:
        if self._last is not None and now - self._last.time > self.timeout_s:
            self.reset("timeout")

    def interpret(self, command: str, now: float) -> Interpretation:
        """Decide what `command` is, given what was said before (see the module doc)."""
        self._expire(now)
        last = self._last
        if last is None or not last.result.candidates:
            return Interpretation(NEW)
        if last.result.ambiguous and not is_correction(command):
            if plural_request(command) is not None or not _sounds_like_reply(
                command, last.result.primary_word
            ):
                return Interpretation(NEW)
            if names_a_relation(command):  # "the cup left of the box": the models decide
                return Interpretation(CHOICE, last.command_id, None)
            cands = last.result.candidates
            pick = choose(
                choice_words(command),
                [c.colour for c in cands],
                [c.centroid for c in cands],
                [int(c.mask.sum()) for c in cands],
            )
            if pick is None and mentions_noun(command, last.result.primary_word):
                # "find the white ball" when no candidate is white: a full expression of its
                # own, so the models answer it as a new command rather than a failed reply
                return Interpretation(NEW)
            return Interpretation(CHOICE, last.command_id, pick)
        if is_correction(command):
            return Interpretation(CORRECTION, last.command_id)
        if is_relative(command) and last.result.mask is not None:
            return Interpretation(RELATIVE, last.command_id)
        return Interpretation(NEW)

    def record(
        self,
        command_id: str,
        result: SegmentationResult,
        now: float,
        image: np.ndarray | None = None,
    ) -> None:
        """Remember an answer (after each command) so the next command can refer to it; `image`
        is the frame it was found on (None: any frame is taken as the same scene).
        """
        self._remember(command_id, result, now, _Scene.of(image) if image is not None else None)

    def _remember(
        self, command_id: str, result: SegmentationResult, now: float, scene: _Scene | None
    ) -> None:
        refused: list[np.ndarray] = []
        if self._last is not None and result.in_reply_to == self._last.command_id:
            refused = list(self._last.refused)
        self._last = _Turn(command_id, result, float(now), refused, scene)

    def answer(
        self,
        command_id: str,
        command: str,
        image: np.ndarray,
        segmenter: Any,
        now: float,
        frame_id: Hashable | None = None,
        expression: str | None = None,
    ) -> SegmentationResult:
        """The one answer to `command` in this conversation, recorded for the next command.

        The result's ``in_reply_to`` names the command it answers (a reply, correction or
        relative), else it is empty. `expression` is passed to ``segmenter.segment`` when the
        models run (the command normalised by the caller).

        Call it with the command as said: replies and corrections ("not that one", "the second
        one") name no object, so the command normaliser rejects them on their own. A caller
        that normalises at intake should do so only when ``interpret(command, now).kind`` is
        NEW, and pass the result as `expression`.
        """
        seen = _Scene.of(image)
        if self._last is not None and not seen.same_camera(self._last.scene):
            self.reset("the image changed size")
        meaning = self.interpret(command, now)
        last = self._last
        if meaning.kind != NEW and last is not None and not seen.same_as(last.scene):
            result = self._on_new_scene(command, meaning, last, image, segmenter, frame_id)
        elif meaning.kind == NEW or last is None:
            self.reset("new command")
            result = segmenter.segment(image, command, frame_id=frame_id, expression=expression)
        elif meaning.kind == CHOICE and self.reply_models and _runs_models(command, last, meaning):
            result = self._choose_with_models(command, image, segmenter, frame_id)
        elif meaning.kind == CHOICE:
            pick = meaning.choice
            if pick is None:
                pick = self._choose_by_models(command, image, segmenter, frame_id, expression)
            result = _answer_with(last.result, command, pick, "the person chose it")
        elif meaning.kind == CORRECTION:
            if last.result.mask is not None:
                last.refused.append(last.result.mask)
            result = self._next_best(last, command)
        else:
            result = self._nearest(last, command)
        result.in_reply_to = meaning.in_reply_to
        self._remember(command_id, result, now, seen)
        return result

    def _on_new_scene(
        self,
        command: str,
        meaning: Interpretation,
        last: _Turn,
        image: np.ndarray,
        segmenter: Any,
        frame_id: Hashable | None,
    ) -> SegmentationResult:
        """A reply, correction or reference on another scene than its candidates' (see the
        module doc): the old state is void; a reply to a question is answered by the models on
        the new frame, anything else fails with the reason.
        """
        self.reset("the scene changed")
        if meaning.kind == CHOICE:
            said = combined_expression(command, last.result.primary_word)
            result = segmenter.segment(image, said, frame_id=frame_id)
            result.command = command
            return result
        return SegmentationResult(
            success=False,
            error=(
                "the scene changed since the last answer (the camera or the objects moved), so "
                f"{command!r} has nothing to refer to; please say the command again"
            ),
            command=command,
            expression=command,
            image_size=(int(np.shape(image)[0]), int(np.shape(image)[1])),
            sure=False,
        )

    def _choose_by_models(
        self,
        command: str,
        image: np.ndarray,
        segmenter: Any,
        frame_id: Hashable | None,
        expression: str | None,
    ) -> int | None:
        """The candidate that the models' answer to the reply overlaps most (None: none)."""
        assert self._last is not None
        reply = segmenter.segment(image, command, frame_id=frame_id, expression=expression)
        if reply.mask is None:
            return None
        overlaps = [
            int(np.count_nonzero(c.mask & reply.mask)) for c in self._last.result.candidates
        ]
        best = int(np.argmax(overlaps))
        return best if overlaps[best] > 0 else None

    def _choose_with_models(
        self, command: str, image: np.ndarray, segmenter: Any, frame_id: Hashable | None
    ) -> SegmentationResult:
        """The reply's object when the models may see one that was not offered: the models run
        once on the reply said as a whole expression (the question's noun in place of "one"),
        their answer joins the candidates (unless it is one of them), and the reply's words
        choose among them all; where the words do not settle it, the models' answer stands.

        Why: the candidates are the objects the first words heated most, and a weak model may
        heat an object of the wrong kind more than the meant one; the reply's own words ("the
        red cup") let the models find the meant object even when it was not offered.
        """
        assert self._last is not None
        base = self._last.result
        said = combined_expression(command, base.primary_word)
        reply = segmenter.segment(image, said, frame_id=frame_id)
        if reply.mask is None or not reply.candidates:
            pick = self._choose_by_models(command, image, segmenter, frame_id, None)
            return _answer_with(base, command, pick, "the person chose it")
        cands = list(base.candidates)
        theirs = next((k for k, c in enumerate(cands) if same_object(c.mask, reply.mask)), None)
        if theirs is None:
            cands.append(reply.candidates[0])
            theirs = len(cands) - 1
        pick = None
        if not names_a_relation(command):
            pick = choose(
                choice_words(command),
                [c.colour for c in cands],
                [c.centroid for c in cands],
                [int(c.mask.sum()) for c in cands],
            )
        pooled = copy.copy(base)
        pooled.candidates = cands
        return _answer_with(
            pooled, command, theirs if pick is None else pick, "the person chose it"
        )

    def _next_best(self, last: _Turn, command: str) -> SegmentationResult:
        cands = last.result.candidates
        for k, c in enumerate(cands):
            if not any(same_object(c.mask, m) for m in last.refused):
                return _answer_with(last.result, command, k, "the next best after a correction")
        return _failed(last.result, command, "no other candidate left to offer")

    def _nearest(self, last: _Turn, command: str) -> SegmentationResult:
        anchor = last.result.mask
        assert anchor is not None
        choices = [
            (k, _gap(anchor, c.mask))
            for k, c in enumerate(last.result.candidates)
            if c.proposal_index != last.result.proposal_index
        ]
        if not choices:
            return _failed(last.result, command, "no other object near the last answer")
        return _answer_with(last.result, command, min(choices, key=lambda kv: kv[1])[0], "")


def combined_expression(reply: str, noun: str) -> str:
    """The reply said as a whole expression: "the red one" after "Which cup?" becomes "the red
    cup"; a reply that already names the noun ("the cup on the left") is kept as said.
    """
    said = words(reply)
    if not noun or noun in said:
        return " ".join(said)
    swapped = [noun if w in ("one", "it") else w for w in said]
    if noun not in swapped:
        swapped.append(noun)
    return " ".join(swapped)


def _runs_models(command: str, last: _Turn, meaning: Interpretation) -> bool:
    """Whether a reply runs the models: it names the question's noun (a whole expression the
    models can judge on their own), or its words chose none of the candidates.
    """
    return meaning.choice is None or last.result.primary_word in words(command)


def _sounds_like_reply(command: str, noun: str) -> bool:
    """Whether a command answers the pending question: every object word in it is the
    question's noun ("the red cup", "the left one", "second" after "Which cup?"). A command
    that names another object ("the bowl", "grab the blue box") is a new command, however
    short (core.replies.names_other_object).
    """
    return not names_other_object(command, noun)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two masks' centroids, in pixels (how near they stand)."""
    ya, xa = np.nonzero(a)
    yb, xb = np.nonzero(b)
    if len(xa) == 0 or len(xb) == 0:
        return float("inf")
    return float(np.hypot(xa.mean() - xb.mean(), ya.mean() - yb.mean()))


def _answer_with(
    base: SegmentationResult, command: str, pick: int | None, why: str
) -> SegmentationResult:
    """A result for `command` whose answer is candidate `pick` of `base` (models not run)."""
    if pick is None:
        return _failed(base, command, "the reply did not pick one of the candidates")
    out = copy.copy(base)
    chosen: Candidate = base.candidates[pick]
    out.command, out.expression = command, command
    out.candidates = [chosen] + [c for k, c in enumerate(base.candidates) if k != pick]
    out.objects = [chosen]
    out.mask = chosen.mask
    out.proposal_index = chosen.proposal_index
    out.bbox, out.centroid, out.grasp_point = chosen.bbox, chosen.centroid, chosen.grasp_point
    out.score = chosen.score
    out.ambiguous, out.question, out.plural = False, "", False
    out.confidence, out.sure = 1.0, True
    out.success, out.error = True, ""
    out.stop_reason = why or base.stop_reason
    out.timings = {"total": 0.0}
    return out


def _failed(base: SegmentationResult, command: str, reason: str) -> SegmentationResult:
    return SegmentationResult(
        success=False,
        error=reason,
        command=command,
        expression=command,
        image_size=base.image_size,
        candidates=list(base.candidates),
        sure=False,
    )
