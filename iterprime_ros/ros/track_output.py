"""The node's side of tracking: ~/track, ~/cancel_track, and the hooks the node calls.

Why apart from node.py: the node only has to call four hooks (a camera frame arrived, a
command was answered, cancel, close); building the per-frame Segmentation (the frame's own
header, track id/status/reason, 3-D centroid from the matching depth frame) and publishing it
on ~/track, ~/mask and ~/centroid lives here, next to the thread that feeds the tracker
(track_loop.py).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from iterprime_ros.msg import Segmentation

from ..image_size import check_bytes
from ..tracking import TrackerSettings, TrackResult, TrackStatus, track_result_view
from . import messages
from .conversions import compressed_to_rgb, image_to_rgb
from .sensors import stamp_ns
from .spatial import compute_centroid_3d
from .track_loop import TrackFrame, TrackLoop


def tracker_settings(node_settings: Any) -> TrackerSettings:
    """The track_* node parameters (params.NodeSettings) as TrackerSettings."""
    return TrackerSettings(
        flow=node_settings.track_flow,
        flow_max_side=node_settings.track_flow_max_side,
        min_appearance=node_settings.track_min_appearance,
        max_lost_s=node_settings.track_lost_timeout_s,
        track_timeout_s=node_settings.track_timeout_s,
    )


class NodeTracking:
    """Owns the TrackLoop of a node and its outputs. Created once with the node's publishers."""

    def __init__(
        self,
        node: Any,
        settings: Any,
        sensors: Any,
        mask_pub: Any,
        centroid_pub: Any,
        qos: Any,
        proposals: Callable[[np.ndarray], np.ndarray] | None = None,
        callback_group: Any = None,
    ) -> None:
        # settings: params.NodeSettings, or a callable giving the ones in force now
        self.node, self._settings, self.sensors = node, settings, sensors
        settings = self.settings
        self.mask_pub, self.centroid_pub = mask_pub, centroid_pub
        self.track_pub = node.create_publisher(Segmentation, "~/track", qos)
        node.create_service(
            Trigger, "~/cancel_track", self._on_cancel, callback_group=callback_group
        )
        self.loop = TrackLoop(
            tracker_settings(settings),
            self._to_rgb,
            self._publish,
            rate_hz=settings.track_rate_hz,
            proposals=proposals,
            proposals_period_s=settings.track_proposals_period_s,
            # a camera silent for as long as a command would refuse its image ends the track
            camera_timeout_s=settings.max_image_age_s,
        )
        self.published = 0
        self._frame_id = ""

    @property
    def settings(self) -> Any:
        return self._settings() if callable(self._settings) else self._settings

    # ------------------------------------------------------------------ hooks for the node
    def on_image(self, msg: Image, received_ns: int) -> None:
        """Camera callback: hand the frame over (cheap; the loop converts what it uses). Only
        while someone listens to ~/track, ~/mask or ~/centroid: a track nobody reads costs no
        CPU (it resumes from the next frame, flow across the gap, when someone subscribes).
        """
        if self.settings.track and self._listened():
            self.loop.offer(msg, _stamp_s(msg, received_ns))

    def _listened(self) -> bool:
        return any(
            pub.get_subscription_count() > 0
            for pub in (self.track_pub, self.mask_pub, self.centroid_pub)
        )

    def on_answer(
        self, command_id: int, text: str, result: Any, image: Image | None, rgb: Any, camera: bool
    ) -> None:
        """A command was answered (worker thread). A success on a camera frame starts a track
        (ending the running one); anything else ends the running one.
        """
        if not self.settings.track:
            return
        if result.success and result.mask is not None and camera and image is not None:
            frame = TrackFrame(image, _stamp_s(image, self.node.get_clock().now().nanoseconds))
            frame.rgb = rgb
            self.loop.start(frame, result.mask, command_id, (text, result))
        else:
            why = "its image came with the request" if result.success else "it failed"
            self.loop.end(f"command {command_id} replaced it ({why})")

    def cancel(self, reason: str = "cancelled") -> bool:
        """End the running track (~/cancel_track, an action cancel); False when none ran."""
        return self.loop.end(reason)

    def close(self) -> None:
        self.loop.end("the node is shutting down")
        self.loop.close()

    # ------------------------------------------------------------------ internals
    def _to_rgb(self, msg: Any) -> np.ndarray:
        """Track thread: a raw or compressed camera frame at its full size (the size the answer's
        mask has); a compressed one is size-checked from its header before decoding.
        """
        if hasattr(msg, "format") and not hasattr(msg, "encoding"):  # CompressedImage
            check_bytes(np.asarray(msg.data, np.uint8).tobytes(), self.settings.max_image_pixels)
            return compressed_to_rgb(msg)
        return image_to_rgb(msg)

    def _on_cancel(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        response.success = self.cancel("cancelled (~/cancel_track)")
        response.message = "track ended" if response.success else "no track was running"
        return response

    def _publish(self, r: TrackResult, frame: TrackFrame | None, command: Any) -> None:
        """One track result -> ~/track (+ ~/mask and ~/centroid while TRACKING)."""
        t0 = time.monotonic()
        text, cmd_result = command if command is not None else ("", None)
        if frame is not None:
            header = messages.copy_header(frame.msg.header)
        else:  # ENDED between frames: the track's last stamp, the camera's frame id
            header = Header()
            header.stamp.sec, header.stamp.nanosec = divmod(int(r.stamp * 1e9), 1_000_000_000)
            header.frame_id = self._frame_id
        self._frame_id = header.frame_id
        point = None
        if r.status == TrackStatus.TRACKING and frame is not None and r.mask is not None:
            match = self.sensors.match(frame.msg.header, self.settings.depth_sync_tolerance_s)
            c3 = compute_centroid_3d(
                r.mask,
                match.depth,
                match.info,
                self.settings.depth_erosion_px,
                rectified=self.settings.image_rectified,
            )
            point = c3.point
        view = track_result_view(r, cmd_result)
        latency = float(r.timings.get("total", 0.0)) + time.monotonic() - t0
        msg = messages.segmentation(
            view, messages.Answer(r.track_id, text, header, latency, point)
        )
        msg.track_id = int(r.track_id)
        msg.track_status = int(r.status)
        msg.track_reason = r.reason
        if msg.success:
            self.mask_pub.publish(msg.mask)
            centroid: PointStamped | None = messages.centroid_point(msg)
            if centroid is not None:
                self.centroid_pub.publish(centroid)
        self.track_pub.publish(msg)
        self.published += 1


def _stamp_s(msg: Any, received_ns: int) -> float:
    """The frame's time: its header stamp, or the receive time for a frame without one."""
    ns = stamp_ns(msg.header)
    return (ns if ns > 0 else received_ns) / 1e9
