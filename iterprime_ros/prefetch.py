"""Prefetch: prepare a camera frame while no command runs, only when it is worth it (ROS-free).

Why: a first command on a new frame waits for the proposal network (seconds on a CPU), although
the robot sat idle before the person spoke. The prefetcher computes a frame's proposals and image
embedding (``Segmenter.prepare_frame``) ahead, so a command on a prepared frame costs only parse
+ text passes + selection (``result.prefetched``).

It must never slow a command down, at any camera rate, nor keep the CPU busy while the robot
waits. The rule (``PrefetchRule``), one for the prefetcher and the commands:

* when: only while the owner is idle (no command queued or running), at most one start per
  ``min_interval_s``, and after a preparation that took T seconds not again before
  T * (1 / cpu_share - 1) has passed, so preparing takes at most ``cpu_share`` of the idle wall
  time (idle CPU is about that share times the torch threads);
* what: the newest offered frame, when it is worth it: nothing is prepared yet, the scene
  changed (mean absolute difference of 32x24 grey thumbnails >= ``scene_change``), or the
  prepared frame has lived half of ``max_age_s`` (so a fresh one is ready before it expires); a
  frame older than ``max_age_s`` is never prepared, since no command would take it;
* use: a command takes the prepared frame when it was received at most ``max_age_s`` ago and
  shows the same scene as the newest image; else the frame being prepared right now on the same
  terms (the command waits for the stage in flight and reuses its proposals from the frame
  cache, never starting again); else the newest image.

A command waits for at most the one stage in flight: ``prepare_frame`` runs one stage at a time
and gives way to a waiting command between stages; none starts while a command runs.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Protocol

import numpy as np

from .core.scene import (
    same_scene,
    scene_difference,  # noqa: F401 - the prefetch tests read it from here
    thumbnail,
)

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


@dataclass(frozen=True)
class FrameInfo:
    """A frame the prefetcher knows: what the owner offered, its arrival time (owner's clock, s)
    and its thumbnail (None until converted).
    """

    frame: Any
    received_s: float
    thumb: np.ndarray | None = None


@dataclass(frozen=True)
class Choice:
    """The frame a command runs on. source: prepared (complete before the command), in_flight
    (being prepared: the command finishes that work) or newest; age_s: how old it is now.
    """

    frame: Any
    source: str
    age_s: float


@dataclass(frozen=True)
class PrefetchRule:
    """When a frame is worth preparing and when a prepared one may answer a command (see the
    module docstring). The defaults here prepare every offered frame at once (a library user's
    loop); the node's parameters (``prefetch_*``) set the stricter ones.
    """

    policy: PrefetchPolicy = field(default_factory=PrefetchPolicy)
    max_age_s: float = 30.0
    min_interval_s: float = 0.0
    scene_change: float = 0.0
    cpu_share: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.cpu_share <= 1.0:
            raise ValueError(f"cpu_share must be > 0 and <= 1, not {self.cpu_share}")
        if self.max_age_s < 0 or self.min_interval_s < 0 or not 0 <= self.scene_change <= 1:
            raise ValueError("max_age_s and min_interval_s must be >= 0, scene_change in 0..1")

    def same_scene(self, a: FrameInfo, b: FrameInfo) -> bool:
        """No scene test (scene_change 0) or an unknown thumbnail trusts the age rule alone."""
        return same_scene(a.thumb, b.thumb, self.scene_change)

    def usable(self, candidate: FrameInfo | None, newest: FrameInfo, now: float) -> bool:
        """A command may run on `candidate` instead of the newest image."""
        if candidate is None or self.max_age_s <= 0:
            return False
        return now - candidate.received_s <= self.max_age_s and self.same_scene(candidate, newest)

    def worth(self, frame: FrameInfo, prepared: FrameInfo | None, now: float) -> bool:
        """The prefetcher should prepare `frame`, given the frame prepared last."""
        if self.max_age_s > 0 and now - frame.received_s > self.max_age_s:
            return False  # no command would take it
        if prepared is None or self.max_age_s <= 0 or self.scene_change <= 0:
            return True
        if now - prepared.received_s >= self.max_age_s / 2:
            return True  # refresh before the prepared frame expires for commands
        return not self.same_scene(frame, prepared)

    def pause_after(self, started: float, seconds: float) -> float:
        """The earliest next start after a preparation of `seconds` that began at `started`."""
        rest = seconds * (1.0 / self.cpu_share - 1.0)
        return max(started + self.min_interval_s, started + seconds + rest)

    def choose(
        self,
        newest: FrameInfo,
        prepared: FrameInfo | None,
        in_flight: FrameInfo | None,
        now: float,
    ) -> Choice:
        """The frame a command runs on: prepared, else in flight, else the newest image."""
        if prepared is not None and prepared.frame is newest.frame:
            return Choice(prepared.frame, "prepared", now - prepared.received_s)
        if self.usable(prepared, newest, now):
            return Choice(prepared.frame, "prepared", now - prepared.received_s)  # type: ignore[union-attr]
        if self.usable(in_flight, newest, now):
            return Choice(in_flight.frame, "in_flight", now - in_flight.received_s)  # type: ignore[union-attr]
        return Choice(newest.frame, "newest", now - newest.received_s)


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
    for a newer one, stopped early for a command, skipped as not worth it (same scene); seconds
    spent preparing; the last preparation's stage times (s).
    """

    offered: int = 0
    candidates: int = 0
    prepared: int = 0
    replaced: int = 0
    yielded: int = 0
    skipped: int = 0
    errors: int = 0
    busy_s: float = 0.0
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
    """A background thread that prepares offered frames while the owner is idle, by the rule.

    ``offer(image, frame_id, received_s)`` from the camera callback (cheap: keeps a reference);
    ``command()`` as a context manager around every command; ``choose()`` picks a command's frame;
    ``start()`` / ``stop()``. on_prepared(frame_id, timings) is called after each completed frame.
    convert(image, frame_id) -> (RGB array, cache key), run in the prefetch thread, turns what was
    offered (a camera message) into what ``prepare_frame`` takes; idle() -> False holds new
    frames back (commands queued). clock: the owner's clock in seconds (received_s uses it).
    thumb(image) -> thumbnail of what was offered (default: of the converted RGB), so that the
    owner's commands and the prefetcher compare frames the same way.
    """

    def __init__(
        self,
        preparer: Preparer,
        policy: PrefetchRule | PrefetchPolicy | str = "latest",
        on_prepared: Callable[[Any, dict[str, float]], None] | None = None,
        convert: Callable[[Any, Any], tuple[np.ndarray, Hashable | None]] | None = None,
        idle: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        thumb: Callable[[Any], np.ndarray | None] | None = None,
    ) -> None:
        self.preparer = preparer
        if isinstance(policy, PrefetchRule):
            self.rule = policy
        else:
            parsed = policy if isinstance(policy, PrefetchPolicy) else PrefetchPolicy.parse(policy)
            self.rule = PrefetchRule(parsed)
        self.policy = self.rule.policy
        self.on_prepared = on_prepared
        self.convert = convert
        self.idle = idle
        self.clock = clock
        self.thumb = thumb
        self.stats = PrefetchStats()
        self._cond = threading.Condition()
        self._pending: FrameInfo | None = None
        self._offered = 0
        self._commands = 0
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._carry: dict[str, float] = {}  # stage times of a frame cut short, until it resumes
        self._resume = False  # the pending frame was cut short by a command: finish it
        self._failure_log = FailureLog(log, "prefetch: a camera frame could not be prepared")
        self.prepared: FrameInfo | None = None  # the latest complete frame (or a command's)
        self.in_flight: FrameInfo | None = None  # the frame being prepared now
        self._next_start = -float("inf")  # the rule's interval and CPU share
        self._started_at = clock()

    # ------------------------------------------------------------------ control
    def start(self) -> "Prefetcher":
        if not self.policy.enabled or self._thread is not None:
            return self
        self._stop = False
        self._started_at = self.clock()
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
    def offer(self, image: Any, frame_id: Any = None, received_s: float | None = None) -> bool:
        """A new camera frame; True when it became the frame to consider next."""
        received = self.clock() if received_s is None else received_s
        with self._cond:
            index = self._offered
            self._offered += 1
            self.stats.offered += 1
            if not self.policy.wants(index) or self._stop:
                return False
            if self._pending is not None:
                self.stats.replaced += 1
            self._pending = FrameInfo((image, frame_id), received)
            self._carry, self._resume = {}, False
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

    def choose(self, newest: Any, received_s: float, thumb: np.ndarray | None = None) -> Choice:
        """The frame a command runs on (an offered frame_id, or `newest`), by the rule; thumb:
        the newest frame's thumbnail for the scene test (None: the age rule alone).
        """
        info = FrameInfo(newest, received_s, thumb)
        with self._cond:
            prepared, in_flight = self.prepared, self.in_flight
        return self.rule.choose(info, prepared, in_flight, self.clock())

    def note_prepared(self, frame_id: Any, received_s: float, thumb: np.ndarray | None) -> None:
        """A command computed this frame completely: it is the prepared frame now (the same
        scene is not prepared again).
        """
        info = FrameInfo(frame_id, received_s, thumb)
        with self._cond:
            if self.prepared is None or received_s >= self.prepared.received_s:
                self.prepared = info

    def status(self) -> dict[str, Any]:
        """What /diagnostics and the log say: state, prepared frame age, counters, busy share."""
        now = self.clock()
        with self._cond:
            prepared, busy = self.prepared, self._busy
        wall = max(now - self._started_at, 1e-9)
        return {
            "state": "preparing" if busy else "idle",
            "prepared_age_s": None if prepared is None else now - prepared.received_s,
            "prepared": self.stats.prepared,
            "skipped": self.stats.skipped,
            "yielded": self.stats.yielded,
            "errors": self.stats.errors,
            "busy_share": min(1.0, self.stats.busy_s / wall),
        }

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

    def _take(self) -> tuple[FrameInfo, dict[str, float], bool] | None:
        """Wait for a frame, an idle owner and the rule's next start; None when stopping."""
        with self._cond:
            while not self._stop:
                wait = self._next_start - self.clock()
                if (
                    self._pending is not None
                    and self._commands == 0
                    and wait <= 0
                    and self._idle()
                ):
                    break
                timeout = 0.2 if self.idle is not None else None
                if self._pending is not None and wait > 0:
                    timeout = min(wait, 0.2)
                self._cond.wait(timeout)
            if self._stop:
                return None
            pending, carry, resume = self._pending, self._carry, self._resume
            self._pending, self._carry, self._resume = None, {}, False
            self._busy = True
            return pending, carry, resume  # type: ignore[return-value]

    def _loop(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            offered, carry, resume = taken
            try:
                self._prepare(offered, carry, resume)
            except Exception as exc:  # a bad frame must not kill the thread
                self.stats.errors += 1
                line = f"{type(exc).__name__}: {exc}".split("\n")[0]
                self.stats.last_error = line[:ERROR_CHARS]
                self._failure_log.report(self.stats.last_error)
            finally:
                with self._cond:
                    self._busy = False
                    self.in_flight = None
                    self._cond.notify_all()

    def _prepare(self, offered: FrameInfo, carry: dict[str, float], resume: bool) -> None:
        """Convert, test by the rule, and prepare one frame (the prefetch thread)."""
        image, frame_id = offered.frame
        if self.convert is not None:
            rgb, key = self.convert(image, frame_id)
        else:
            rgb, key = image, frame_id
        thumb = None
        if self.rule.scene_change > 0:
            thumb = self.thumb(image) if self.thumb is not None else thumbnail(rgb)
        info = FrameInfo(frame_id, offered.received_s, thumb)
        started = self.clock()
        if not resume and not self.rule.worth(info, self.prepared, started):
            self.stats.skipped += 1
            self._next_start = started + self.rule.min_interval_s
            return
        with self._cond:
            self.in_flight = info
        try:
            result = self.preparer.prepare_frame(rgb, key, self._should_stop)
        finally:
            spent = self.clock() - started
            self.stats.busy_s += spent
            self._next_start = self.rule.pause_after(started, spent)
        timings = {**carry, **dict(getattr(result, "timings", {}) or {})}
        self.stats.last_timings = timings
        if getattr(result, "yielded", False) and not getattr(result, "complete", True):
            self.stats.yielded += 1
            self._next_start = -float("inf")  # resume right after the command
            with self._cond:
                # resume this frame after the command unless a newer one came
                if self._pending is None and not self._stop:
                    self._pending, self._carry, self._resume = offered, timings, True
        elif getattr(result, "complete", True):
            with self._cond:
                if self.prepared is None or info.received_s >= self.prepared.received_s:
                    self.prepared = info
            if getattr(result, "computed", True):
                self.stats.prepared += 1
                if self.on_prepared is not None:
                    self.on_prepared(frame_id, timings)
