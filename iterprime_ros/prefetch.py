"""Prefetch: prepare the latest camera frame while no command runs (ROS-free).

Why: a first command on a new frame waits for the proposal network (seconds on a CPU), although
the robot sat idle before the person spoke. The prefetcher takes the frames the camera offers,
keeps only the latest one the policy wants, and while no command runs computes its proposals and
image embedding (``Segmenter.prepare_frame``), so a command on a frame at least one
proposal-time old costs only parse + text passes + selection (``result.prefetched``).

A command is never held up by more than the one stage in flight: ``prepare_frame`` runs one stage
at a time and gives way to a waiting command between stages; the prefetcher also starts no stage
while a command runs (``command()`` brackets it), and takes the latest offered frame each time it
finishes one. The rate is what the hardware affords: one frame after the other as
fast as they are prepared; frames offered meanwhile are dropped (latest), or only every N-th
offered frame is considered (every:N).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Protocol

import numpy as np

log = logging.getLogger(__name__)

PREFETCH_MODES = ("off", "latest", "every")


@dataclass(frozen=True)
class PrefetchPolicy:
    """off: never; latest: the newest offered frame; every: the newest of every N-th frame."""

    mode: str = "latest"
    every_n: int = 1

    def __post_init__(self) -> None:
        if self.mode not in PREFETCH_MODES:
            raise ValueError(f"prefetch must be off, latest or every:N, not {self.mode!r}")
        if self.every_n < 1:
            raise ValueError(
                f"prefetch must be off, latest or every:N with N >= 1, not {self.every_n}"
            )

    @classmethod
    def parse(cls, text: str) -> "PrefetchPolicy":
        """'off' | 'latest' | 'every:N' (also 'every_N', 'everyN') -> policy; ValueError else."""
        raw = (text or "").strip().lower()
        if raw in ("off", "latest"):
            return cls(raw)
        if raw.startswith("every"):
            number = raw[len("every") :].lstrip(":_ -")
            if number.isdigit():
                return cls("every", int(number))
        raise ValueError(f"prefetch must be off, latest or every:N (N >= 1), not {text!r}")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def wants(self, offered_index: int) -> bool:
        """True when offered frame number `offered_index` (0, 1, 2 ...) is a candidate."""
        if self.mode == "off":
            return False
        if self.mode == "latest":
            return True
        return offered_index % self.every_n == 0

    def __str__(self) -> str:
        return f"every:{self.every_n}" if self.mode == "every" else self.mode


class Preparer(Protocol):
    """What the prefetcher drives: ``Segmenter.prepare_frame``."""

    def prepare_frame(
        self,
        image: np.ndarray,
        frame_id: Hashable | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Any: ...


@dataclass
class PrefetchStats:
    """Counters since start: frames offered, taken as candidates, prepared completely, dropped
    for a newer one, stopped early for a command; the last preparation's stage times (s).
    """

    offered: int = 0
    candidates: int = 0
    prepared: int = 0
    replaced: int = 0
    yielded: int = 0
    errors: int = 0
    last_timings: dict[str, float] = field(default_factory=dict)
    last_error: str = ""


ERROR_CHARS = 300  # a failure is logged in one short line, never with the frame's data
REPEAT_LOG_S = 30.0  # the same failure again is logged at most this often, with a count


class FailureLog:
    """One warning per kind of failure, then the same one at most every REPEAT_LOG_S with how
    many were not logged: a camera sending frames that cannot be used (a wrong encoding, a
    mis-remapped depth topic) must not fill the disk and /rosout at the frame rate.
    """

    def __init__(
        self, logger: logging.Logger, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger, self.what, self.clock = logger, what, clock
        self._last: str | None = None
        self._last_at = -float("inf")
        self.suppressed = 0

    def report(self, error: str) -> bool:
        """Log `error` unless it repeats the last one within REPEAT_LOG_S; True when logged."""
        now = self.clock()
        if error == self._last and now - self._last_at < REPEAT_LOG_S:
            self.suppressed += 1
            return False
        if self.suppressed and error != self._last:  # close the previous run of repeats
            self.logger.warning("%s: %d more times: %s", self.what, self.suppressed, self._last)
            self.suppressed = 0
        more = f" ({self.suppressed} more like it not logged)" if self.suppressed else ""
        self.logger.warning("%s: %s%s", self.what, error, more)
        self._last, self._last_at, self.suppressed = error, now, 0
        return True


class Prefetcher:
    """A background thread that prepares offered frames while no command runs.

    ``offer(image, frame_id)`` from the camera callback (cheap: keeps a reference); ``command()``
    as a context manager around every command; ``start()`` / ``stop()``. on_prepared(frame_id,
    timings) is called after each completed frame. convert(image, frame_id) -> (RGB array,
    cache key), run in the prefetch thread, turns what was offered (a camera message) into what
    ``prepare_frame`` takes; idle() -> False holds new frames back (commands queued).
    """

    def __init__(
        self,
        preparer: Preparer,
        policy: PrefetchPolicy | str = "latest",
        on_prepared: Callable[[Any, dict[str, float]], None] | None = None,
        convert: Callable[[Any, Any], tuple[np.ndarray, Hashable | None]] | None = None,
        idle: Callable[[], bool] | None = None,
    ) -> None:
        self.preparer = preparer
        self.policy = (
            policy if isinstance(policy, PrefetchPolicy) else PrefetchPolicy.parse(policy)
        )
        self.on_prepared = on_prepared
        self.convert = convert
        self.idle = idle
        self.stats = PrefetchStats()
        self._cond = threading.Condition()
        self._pending: tuple[np.ndarray, Hashable | None] | None = None
        self._offered = 0
        self._commands = 0
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._carry: dict[str, float] = {}  # stage times of a frame cut short, until it resumes
        self._failure_log = FailureLog(log, "prefetch: a camera frame could not be prepared")

    # ------------------------------------------------------------------ control
    def start(self) -> "Prefetcher":
        if not self.policy.enabled or self._thread is not None:
            return self
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="iterprime-prefetch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the stage in flight (waiting up to `timeout` for it); drops the pending
        frame.
        """
        with self._cond:
            self._stop = True
            self._pending = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():  # else a later stop() waits for it again
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ inputs
    def offer(self, image: Any, frame_id: Any = None) -> bool:
        """A new camera frame; True when it became the frame to prepare next."""
        with self._cond:
            index = self._offered
            self._offered += 1
            self.stats.offered += 1
            if not self.policy.wants(index) or self._stop:
                return False
            if self._pending is not None:
                self.stats.replaced += 1
            self._pending = (image, frame_id)
            self._carry = {}
            self.stats.candidates += 1
            self._cond.notify_all()
            return True

    @contextmanager
    def command(self) -> Iterator[None]:
        """Bracket a command: no prefetch stage starts until it is done."""
        with self._cond:
            self._commands += 1
        try:
            yield
        finally:
            with self._cond:
                self._commands -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight (tests, benches); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ------------------------------------------------------------------ the thread
    def _idle(self) -> bool:
        try:
            return self.idle is None or bool(self.idle())
        except Exception:  # an owner being torn down: not idle
            return False

    def _should_stop(self) -> bool:
        # checked between stages: a command or a stop. A newer frame does not cut a frame short:
        # a complete frame is usable, one with proposals only is not.
        return self._commands > 0 or self._stop or not self._idle()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (
                    self._pending is None or self._commands > 0 or not self._idle()
                ):
                    self._cond.wait(0.2 if self.idle is not None else None)
                if self._stop:
                    return
                image, frame_id = self._pending  # type: ignore[misc]
                carry, self._carry = self._carry, {}
                self._pending = None
                self._busy = True
            try:
                if self.convert is not None:
                    rgb, key = self.convert(image, frame_id)
                else:
                    rgb, key = image, frame_id
                result = self.preparer.prepare_frame(rgb, key, self._should_stop)
                timings = {**carry, **dict(getattr(result, "timings", {}) or {})}
                self.stats.last_timings = timings
                if getattr(result, "yielded", False) and not getattr(result, "complete", True):
                    self.stats.yielded += 1
                    with self._cond:
                        # resume this frame after the command unless a newer one came
                        if self._pending is None and not self._stop:
                            self._pending = (image, frame_id)
                            self._carry = timings
                elif getattr(result, "complete", True) and getattr(result, "computed", True):
                    self.stats.prepared += 1
                    if self.on_prepared is not None:
                        self.on_prepared(frame_id, timings)
            except Exception as exc:  # a bad frame must not kill the thread
                self.stats.errors += 1
                line = f"{type(exc).__name__}: {exc}".split("\n")[0]
                self.stats.last_error = line[:ERROR_CHARS]
                self._failure_log.report(self.stats.last_error)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
