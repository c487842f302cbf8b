"""The node's side of the conversation: one dialogue state per node, reset by lifecycle
transitions, and the ready-to-speak question on ~/question.

Why here and not in the method: the method (conversation.Conversation) decides what a command
means and answers it; the node only owns the state's lifetime (a deactivated node must not
resolve "the left one" against a question it asked before) and its clock, and says the question
aloud on a topic. The worker thread answers commands while lifecycle callbacks run on the
executor, so every use of the state goes through one lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable

import numpy as np

from ..conversation import Conversation

QUESTION_TOPIC = "~/question"


class _WithProgress:
    """A segmenter whose segment() passes the node's progress callback (action feedback and
    cancel) on, since the conversation calls segment() without one.
    """

    def __init__(self, segmenter: Any, progress: Callable[[str, int], None] | None) -> None:
        self._segmenter = segmenter
        self._progress = progress

    def segment(self, image: np.ndarray, command: str, **options: Any) -> Any:
        given = {k: v for k, v in options.items() if v is not None}
        if self._progress is not None:
            given["progress"] = self._progress
        return self._segmenter.segment(image, command, **given)


class NodeDialogue:
    """The conversation of one node: answer() for every command, reset() on transitions.

    clock: seconds on a monotonic clock (the node's steady time); tests may pass their own.
    """

    def __init__(
        self,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conversation = Conversation(timeout_s)
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
    ) -> Any:
        """The one result for a command: a reply, a correction, "the one next to it", or a new
        command the models answer (the conversation decides; the result's in_reply_to says
        which command it resolves).
        """
        with self._lock:
            self._conversation.timeout_s = float(segmenter.settings.dialogue_timeout_s)
            return self._conversation.answer(
                str(command_id),
                text,
                image,
                _WithProgress(segmenter, progress),
                self._clock(),
                frame_id=frame_id,
            )

    def reset(self, reason: str) -> None:
        """Forget the pending question and the last answer (a lifecycle transition)."""
        with self._lock:
            self._conversation.reset(reason)

    @property
    def pending_question(self) -> str:
        with self._lock:
            return self._conversation.pending_question


def question_message(question: str) -> Any:
    """The std_msgs/String a voice front end speaks."""
    from std_msgs.msg import String

    return String(data=question)
