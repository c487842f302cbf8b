"""The node's tracking thread: after a command, follow its object on every frame it can afford.

Why a thread of its own: the model worker is busy for seconds per command, while a tracking
step costs milliseconds (tracking.py); the image callback must stay cheap. The callback only
hands over the newest frame (older unprocessed frames are dropped: "every frame the node can
afford"); this thread converts it, updates the tracker and calls ``publish`` with the result
and the frame it belongs to. No rclpy here: the node supplies the callables (convert, publish,
proposals), so the loop is tested without DDS and reused by any node layout.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..tracking import MaskTracker, TrackerSettings, TrackResult

log = logging.getLogger(__name__)


@dataclass
class TrackFrame:
    """A frame handed to the loop: the message (converted on the loop's thread) and its stamp."""

    msg: Any
    stamp_s: float
    rgb: np.ndarray | None = None


class TrackLoop:
    """Owns one MaskTracker and the thread that feeds it.

    convert(msg) -> RGB (raises on a bad image: the frame is skipped); publish(result, frame,
    command) is called on this thread for every track result, the ENDED ones included;
    proposals(rgb) -> N x H x W masks, called at most every ``proposals_period_s`` (0: never).
    rate_hz: at most this many updates per second (0: as fast as frames come and it can).
    camera_timeout_s: end the track when no frame has come for this long (wall clock; 0: never):
    a camera that stops must not leave ~/track saying TRACKING forever.
    """

    def __init__(
        self,
        settings: TrackerSettings,
        convert: Callable[[Any], np.ndarray],
        publish: Callable[[TrackResult, TrackFrame | None, Any], None],
        rate_hz: float = 0.0,
        proposals: Callable[[np.ndarray], np.ndarray] | None = None,
        proposals_period_s: float = 0.0,
        camera_timeout_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = MaskTracker(settings)
        self.convert, self.publish = convert, publish
        self.rate_hz = rate_hz
        self.proposals, self.proposals_period_s = proposals, proposals_period_s
        self._cond = threading.Condition()  # the hand-off of the newest frame
        self._work = threading.RLock()  # the tracker: one update, start or end at a time
        self._active = False
        self._pending: TrackFrame | None = None
        self._command: Any = None
        self._min_stamp = 0.0
        self._last_update = 0.0
        self._last_proposals = 0.0
        self._stop = False
        self.camera_timeout_s, self._clock = camera_timeout_s, clock
        self._last_offer = clock()
        self._generation = 0  # counts starts: a timeout seen for one track never ends the next
        self.stats = {"updates": 0, "dropped": 0, "skipped_bad": 0}
        self._thread = threading.Thread(target=self._run, name="iterprime-track", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._active

    @property
    def thread(self) -> threading.Thread:
        """The track thread (the node waits for it before the process exits)."""
        return self._thread

    def start(self, frame: TrackFrame, mask: np.ndarray, track_id: int, command: Any) -> None:
        """A command succeeded on `frame`: end the running track (its ENDED result is published)
        and start following `mask` on the frames after it.
        """
        rgb = frame.rgb if frame.rgb is not None else self.convert(frame.msg)
        with self._work:
            self._end_locked(f"replaced by command {track_id}", frame.stamp_s)
            self.tracker.start(rgb, mask, frame.stamp_s, track_id=track_id)
            self._command = command
            self._generation += 1
            self._last_proposals = time.monotonic()
            with self._cond:
                self._min_stamp = frame.stamp_s
                self._pending = None
                self._active = True
                self._last_offer = self._clock()
                self._cond.notify()  # the thread starts watching the camera

    def end(self, reason: str) -> bool:
        """End the running track (cancel, a failed command...); False when none was running."""
        with self._work:
            return self._end_locked(reason, None)

    def offer(self, msg: Any, stamp_s: float) -> None:
        """A new image (from the image callback: cheap). Replaces any frame not yet processed;
        frames not newer than the last one taken are ignored.
        """
        with self._cond:
            if not self._active:
                return
            self._last_offer = self._clock()  # the camera is alive, even when it repeats
            if stamp_s <= self._min_stamp:
                return  # not newer than the last frame tracked (a repeat)
            if self._pending is not None:
                self.stats["dropped"] += 1
            self._pending = TrackFrame(msg, stamp_s)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5.0)

    # ------------------------------------------------------------------ the thread
    def _end_locked(self, reason: str, stamp: float | None) -> bool:
        if not self.tracker.active:
            return False
        result = self.tracker.end(reason, stamp)
        with self._cond:
            self._pending = None
            self._active = False
        self._emit(result, None)
        return True

    def _emit(self, result: TrackResult | None, frame: TrackFrame | None) -> None:
        if result is None:
            return
        try:
            self.publish(result, frame, self._command)
        except Exception:  # noqa: BLE001 - a publish failure must not kill the loop
            log.exception("publishing a track result failed")

    def _camera_wait(self) -> float | None:
        """Seconds until the camera counts as stopped (None: not watching). Under _cond."""
        if not self._active or self.camera_timeout_s <= 0:
            return None
        return self._last_offer + self.camera_timeout_s - self._clock()

    def _run(self) -> None:
        while True:
            silent = None
            with self._cond:
                while not self._stop and self._pending is None:
                    left = self._camera_wait()
                    if left is not None and left <= 0:
                        silent = self._generation
                        break
                    self._cond.wait(left)
                if self._stop:
                    return
            if silent is not None:
                with self._work:
                    if silent == self._generation:
                        limit = f"{self.camera_timeout_s:g} s"
                        self._end_locked(f"the camera stopped: no frame for {limit}", None)
                continue
            with self._cond:
                wait = 0.0
                if self.rate_hz > 0:
                    wait = self._last_update + 1.0 / self.rate_hz - time.monotonic()
                if wait <= 0:
                    frame, self._pending = self._pending, None
            if wait > 0:
                time.sleep(min(wait, 1.0))  # the rate limit; a newer frame may replace pending
                continue
            self._step(frame)

    def _step(self, frame: TrackFrame | None) -> None:
        with self._work:
            if frame is None or not self.tracker.active or frame.stamp_s <= self._min_stamp:
                return  # the track ended or was replaced while the frame waited
            self._last_update = time.monotonic()
            with self._cond:
                self._min_stamp = frame.stamp_s  # frames are tracked in time order only
            try:
                frame.rgb = self.convert(frame.msg)
            except Exception as exc:  # noqa: BLE001 - a bad frame is skipped, not fatal
                self.stats["skipped_bad"] += 1
                log.debug("track: frame skipped: %s", exc)
                return
            proposals = None
            now = time.monotonic()
            if (
                self.proposals is not None
                and self.proposals_period_s > 0
                and now - self._last_proposals >= self.proposals_period_s
            ):
                self._last_proposals = now
                try:
                    proposals = self.proposals(frame.rgb)
                except Exception as exc:  # noqa: BLE001 - no proposals: flow only this time
                    log.warning("track: proposals failed: %s", exc)
            result = self.tracker.update(frame.rgb, frame.stamp_s, proposals)
            self.stats["updates"] += 1
            if result is not None and not result.active:
                with self._cond:
                    self._active = False
                    self._pending = None
            self._emit(result, frame)
