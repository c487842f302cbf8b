"""Offline replay of the track: after a successful command, every later image of the bag
goes through tracking.MaskTracker and one Segmentation per frame is written on the node's
``~/track`` topic (its own image's header), as the live node publishes it -- so a bag can
test the tracker (`iterprime replay IN OUT --track`).

Kept apart from the replay run (replay_run.py, which only calls ``image`` and ``command``
here) so the answering of commands stays readable on its own. A new command ends the running
track (ENDED, "replaced by command N"); a failed command ends it too (the robot asked for
something else).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from ..image_size import result_to_source
from ..ros.spatial import compute_centroid_3d
from ..tracking import MaskTracker, TrackerSettings, TrackResult, track_result_view
from .bags import SEGMENTATION_TYPE, BagMessage, stamp_ns
from .replay_config import TRACK_TOPIC
from .replay_output import segmentation_message


class TrackReplay:
    """Feeds the replay's images to a tracker and writes the track messages."""

    def __init__(
        self,
        write: Callable[[str, Any, int], None],
        decode: Callable[[BagMessage], tuple[np.ndarray | None, Any, str, Any]],
        segmentation_message: Callable[..., Any],
        settings: TrackerSettings | None = None,
        proposals: Callable[[np.ndarray], np.ndarray] | None = None,
        proposals_every: int = 0,
        centroid_3d: Callable[[np.ndarray, Any], tuple | None] | None = None,
    ) -> None:
        self.write, self.decode, self.message = write, decode, segmentation_message
        self.tracker = MaskTracker(settings)
        self.proposals, self.proposals_every = proposals, proposals_every
        self.centroid_3d = centroid_3d
        self._command: Any = None  # the SegmentationResult that started the track
        self._command_id = 0
        self._text = ""
        self._frames = 0
        self._last_ns = 0  # record time of the last message: one worker publishes in order
        self._size: Any = None  # image_size.py plan of the latest frame
        self.written = 0

    def command(
        self, index: int, text: str, result: Any, rgb: Any, image_msg: Any, t_ns: int, size: Any
    ) -> None:
        """A command was answered: end the running track, start one on success. rgb and the
        result's mask are at the model's size (image_size.py plan `size`); messages are written
        at the source size.
        """
        self._last_ns = max(self._last_ns, t_ns)
        reason = f"replaced by command {index}" if result.success else f"command {index} failed"
        self._end(reason, t_ns, image_msg)
        if not (result.success and result.mask is not None and rgb is not None):
            return
        self._command, self._command_id, self._text, self._frames = result, index, text, 0
        self._size = size
        self.tracker.start(rgb, result.mask, stamp_ns(image_msg.header) / 1e9, track_id=index)

    def image(self, m: BagMessage) -> None:
        """An image arrived (record time order): one track message while a track runs."""
        if not self.tracker.active:
            return
        rgb, msg, error, size = self.decode(m)
        if rgb is None:
            return  # the replay reported the problem; the track skips the frame like the node
        self._frames += 1
        self._size = size
        t0 = time.perf_counter()
        proposals = None
        if self.proposals is not None and self.proposals_every:
            if self._frames % self.proposals_every == 0:
                proposals = self.proposals(rgb)
        r = self.tracker.update(rgb, stamp_ns(msg.header) / 1e9, proposals)
        if r is not None:
            latency = time.perf_counter() - t0
            self._publish(r, msg, max(m.timestamp_ns, self._last_ns) + int(latency * 1e9), latency)

    def finish(self, t_ns: int) -> None:
        """The bag ended: end the running track so every track has an ENDED message."""
        self._end("end of the bag", t_ns, None)

    def _end(self, reason: str, t_ns: int, image_msg: Any) -> None:
        if not self.tracker.active:
            return
        stamp = stamp_ns(image_msg.header) / 1e9 if image_msg is not None else None
        r = self.tracker.end(reason, stamp)
        if r is not None:
            self._publish(r, image_msg, t_ns, 0.0)

    def _publish(self, r: TrackResult, image_msg: Any, out_ns: int, latency: float) -> None:
        if image_msg is not None:
            hdr_ns, frame = stamp_ns(image_msg.header), str(image_msg.header.frame_id)
        else:
            hdr_ns, frame = int(r.stamp * 1e9), ""
        view = track_result_view(r, self._command)
        if self._size is not None and self._size.downscaled:
            view = result_to_source(view, self._size)
        point = None
        if view.success and self.centroid_3d is not None and image_msg:
            point = self.centroid_3d(view.mask, image_msg.header)
        msg = self.message(view, self._command_id, self._text, hdr_ns, frame, latency, point)
        msg = dataclasses.replace(
            msg, track_id=int(r.track_id), track_status=int(r.status), track_reason=r.reason
        )
        self._last_ns = max(self._last_ns, out_ns)
        self.write(TRACK_TOPIC, msg, self._last_ns)
        self.written += 1


def depth_centroid(sensors: Any, tolerance_s: float, erosion_px: int, rectified: bool):
    """A centroid_3d callable over the replay's SensorCache (None without depth): the depth
    and camera_info are chosen by SensorCache.match, and the pixel back-projected through P or
    K by `rectified`, as the node does.
    """

    def centroid(mask: np.ndarray, image_header: Any) -> tuple | None:
        match = sensors.match(image_header, tolerance_s)
        return compute_centroid_3d(
            mask, match.depth, match.info, erosion_px, rectified=rectified
        ).point

    return centroid


def start_track_replay(run: Any, out: Any, segmenter: Any) -> TrackReplay:
    """The TrackReplay of a replay run (replay._Replayer): its output bag, its image decoding
    (shared with the commands: an image is decoded once), its depth and its segmenter's
    proposals.
    """
    cfg = run.cfg
    out.add_topic(TRACK_TOPIC, SEGMENTATION_TYPE, qos="reliable")

    def decode(m: BagMessage) -> tuple[np.ndarray | None, Any, str, Any]:
        if run._decoded is None or run._decoded[0] is not m:
            run._decoded = (m, *run._decode(m))
        return run._decoded[1:]

    frame_proposals = getattr(segmenter, "frame_proposals", None)
    proposals = None
    if cfg.track_proposals_every and callable(frame_proposals):
        proposals = lambda rgb: frame_proposals(rgb)[0]  # noqa: E731
    centroid = None
    if cfg.depth_topic in run.bag.topics:
        centroid = depth_centroid(
            run.sensors, cfg.depth_sync_tolerance_s, cfg.depth_erosion_px, cfg.image_rectified
        )
    return TrackReplay(
        out.write,
        decode,
        segmentation_message,
        cfg.track_settings,
        proposals,
        cfg.track_proposals_every,
        centroid,
    )
