"""The node's side of the conversation: one dialogue state per node, reset by lifecycle
transitions (the question itself leaves with the answer, answers.py, on ~/question).

Why here and not in the method: the method (conversation.Conversation) decides what a command
means and answers it; the node only owns the state's lifetime (a deactivated node must not
resolve "the left one" against a question it asked before) and its clock, and says the question
aloud. The worker thread answers commands while lifecycle callbacks run on the executor, so
every use of the state goes through one lock; a transition waits for a running command's answer
to be recorded, and then forgets it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable

import numpy as np

from ..conversation import Conversation
from ..core.replies import choice_words, is_correction, is_relative


def may_be_reply(text: str) -> bool:
    """Whether an utterance can be a reply, a correction or a reference to the last answer by
    its words alone ("the left one", "no, the other one", "the one next to it").

    Why: the node refuses at once a command that names no object, and these name none; they
    must reach the conversation instead, which alone knows whether a question or an answer is
    there to resolve them against (if not, the models answer and say what is wrong).
    """
    return is_correction(text) or is_relative(text) or not choice_words(text).empty


class _Segment:
    """The segmenter as the conversation calls it: options it leaves unset are not passed on
    (any object with segment(image, command) can answer), and the node's progress callback
    (action feedback and cancel) is, since the conversation calls segment() without one.
    """

    def __init__(self, segmenter: Any, progress: Callable[[str, int], None] | None) -> None:
        self._segmenter = segmenter
        self._progress = progress

    def segment(self, image: np.ndarray, command: str, **options: Any) -> Any:
        given = {k: v for k, v in options.items() if v is not None}
        if self._progress is not None:
            given["progress"] = self._progress
        return self._segmenter.segment(image, command, **given)


class Dialogue:
    """The conversation of one node, or of one bag's replay: answer() for every command,
    reset() on lifecycle transitions.

    clock: seconds on a monotonic clock (wall time jumps must not expire a question); replay
    passes each command's bag time instead. The timeout is the segmenter's dialogue_timeout_s at
    each command, so a live change applies to the next one. A command on an image of another
    size, or a reply after the camera moved, is the conversation's to handle
    (conversation.Conversation): the candidates belong to the frame they were found on.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._conversation = Conversation()
        self._clock = clock
        self._lock = threading.Lock()

    def answer(
        self,
        command_id: int,
        text: str,
        image: np.ndarray,
        segmenter: Any,
        frame_id: Hashable | None = None,
        progress: Callable[[str, int], None] | None = None,
        expression: str | None = None,
        now: float | None = None,
    ) -> Any:
        """The one result for a command: a reply, a correction, "the one next to it", or a new
        command the models answer (the conversation decides; the result's in_reply_to says
        which command it resolves). `expression`: the command as the node's intake normalised
        it, so the models take it as is (None: the pipeline normalises it).
        """
        settings = getattr(segmenter, "settings", None)
        with self._lock:
            timeout = getattr(settings, "dialogue_timeout_s", self._conversation.timeout_s)
            self._conversation.timeout_s = float(timeout)
            return self._conversation.answer(
                str(command_id),
                text,
                image,
                _Segment(segmenter, progress),
                self._clock() if now is None else float(now),
                frame_id=frame_id,
                expression=expression,
            )

    def reset(self, reason: str) -> None:
        """Forget the pending question and the last answer (a lifecycle transition)."""
        with self._lock:
            self._conversation.reset(reason)
