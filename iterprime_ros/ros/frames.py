"""Camera messages to model input: the camera subscriptions, the image-age rule, and the choice
between the frame the prefetcher prepared and the newest one.

Why a room of its own: the image callback runs at camera rate on the executor and must only
store (sensors.py); the worker converts just the frame a command uses. The same conversion
(`model_input`) and the same cache key (`camera_frame_key`) serve commands and the prefetcher,
so a prepared frame is found again by the command that uses it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from ..image_size import ImageTooLargeError, SizePlan, check_bytes
from ..prefetch import Prefetcher, PrefetchRule, thumbnail
from .conversions import ImageConversionError, check_image
from .image_qos import image_qos_profile
from .jobs import ImageStats, Job
from .sensors import Frame, SensorCache, stamp_ns
from .sizing import compressed_for_models, rgb_for_models, size_plan

# What a camera message that cannot be used raises on its way to the models.
UNUSABLE_IMAGE = (ImageConversionError, ImageTooLargeError, ValueError)


def model_input(msg: Any, max_image_pixels: int) -> tuple[np.ndarray, SizePlan]:
    """A camera message (Image or CompressedImage) as the models see it, and its size plan.

    Raises one of UNUSABLE_IMAGE with its own message: encoding, empty, step, size, decoding.
    """
    if isinstance(msg, CompressedImage):
        return compressed_for_models(msg, max_image_pixels)
    check_image(msg)  # its own message first: encoding, empty, step, size
    sizes = size_plan(msg, max_image_pixels)
    return rgb_for_models(msg, sizes), sizes


def camera_frame_key(header: Header, rgb: Any) -> Any:
    """Frame-cache key of a camera image: its frame and stamp (None without a stamp: the pipeline
    hashes the pixels). The prefetcher and the commands must use the same key.
    """
    stamp = stamp_ns(header)
    return (header.frame_id, stamp, rgb.shape) if stamp > 0 else None


THUMB_SAMPLES = (128, 96)  # pixels sampled across and down before the 32x24 thumbnail
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def message_thumbnail(msg: Any) -> np.ndarray | None:
    """The scene-change thumbnail of a raw 8-bit camera message, from a strided sample of its
    pixels (well under a millisecond even for a 4000x3000 frame: the callback and the command
    path may afford it). None for other encodings and compressed frames (the age rule alone).
    """
    channels = _CHANNELS.get(getattr(msg, "encoding", ""))
    if channels is None or not msg.width or not msg.height:
        return None
    try:
        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
        pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    except (ValueError, TypeError):
        return None
    sy = max(1, msg.height // THUMB_SAMPLES[1])
    sx = max(1, msg.width // THUMB_SAMPLES[0])
    sample = pixels[::sy, ::sx, : min(channels, 3)]
    return thumbnail(np.ascontiguousarray(sample if channels > 1 else sample[..., 0]))


def _decodes_like(new: CompressedImage, old: CompressedImage, max_image_pixels: int) -> bool:
    """The newest compressed frame decodes, at the prepared frame's size (one decode: a few ms
    for a camera frame; a decompression bomb is refused from its header first).
    """
    try:
        _, sizes = compressed_for_models(new, max_image_pixels)
        before = check_bytes(np.asarray(old.data, np.uint8).tobytes(), max_image_pixels)
    except UNUSABLE_IMAGE:
        return False
    return before is None or (before.height, before.width) == (sizes.height, sizes.width)


class Frames:
    """The node's camera side: subscriptions while active, the latest frames, the prefetcher."""

    def __init__(self, node: Any, callback_group: Any) -> None:
        self.node = node
        self._group = callback_group
        self.sensors = SensorCache()
        self.image_stats = ImageStats()
        self._subs: list[Any] = []
        self.prefetcher: Prefetcher | None = None  # prepares frames while idle (prefetch.py)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self) -> None:
        """Camera inputs exist only while active: an inactive node takes no frames."""
        if self._subs:
            return
        node, settings = self.node, self.node.settings
        qos = image_qos_profile(settings.image_qos)
        image_type, image_topic = (
            (CompressedImage, "image/compressed")
            if settings.image_transport == "compressed"
            else (Image, "image")
        )
        group, sensors = self._group, self.sensors
        self._subs = [
            node.create_subscription(
                image_type, image_topic, self.on_image, qos, callback_group=group
            ),
            node.create_subscription(Image, "depth", sensors.add_depth, qos, callback_group=group),
            node.create_subscription(
                CameraInfo, "camera_info", sensors.set_camera_info, qos, callback_group=group
            ),
        ]

    def unsubscribe(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []

    def on_image(self, msg: Image) -> None:
        """Camera group: a new frame arrives (stored only; the worker converts what it uses)."""
        start = time.monotonic()
        now = self.node.get_clock().now().nanoseconds
        self.sensors.set_image(msg, now)
        self.node.tracking.on_image(msg, now)  # hands the frame over; the track thread works
        prefetcher = self.prefetcher
        if prefetcher is not None:  # keeps a reference only; converted in its own thread
            frame = self.sensors.latest_image()
            prefetcher.rule = self.rule()  # live parameters
            prefetcher.offer(frame, frame, received_s=now / 1e9)
        self.image_stats.record(start, time.monotonic())

    # ------------------------------------------------------------------ prefetch
    def rule(self) -> PrefetchRule:
        """The prefetch rule from the parameters (prefetch.py says what each part does)."""
        s = self.node.settings
        return PrefetchRule(
            s.prefetch,
            max_age_s=s.prefetch_max_age_s,
            min_interval_s=s.prefetch_min_interval_s,
            scene_change=s.prefetch_scene_change,
            cpu_share=s.prefetch_cpu_share,
        )

    def start_prefetch(self, segmenter: Any, idle: Any) -> None:
        """Prepare a camera frame while no command runs, by the rule (parameters `prefetch*`)."""
        self.stop_prefetch()
        if not self.node.settings.prefetch.enabled:
            return
        self.prefetcher = Prefetcher(
            segmenter,
            self.rule(),
            on_prepared=self._on_prepared,
            convert=self._prefetch_input,
            idle=idle,
            clock=lambda: self.node.get_clock().now().nanoseconds / 1e9,
            thumb=lambda frame: message_thumbnail(frame.msg),
        ).start()

    def stop_prefetch(self, timeout: float = 60.0) -> None:
        prefetcher, self.prefetcher = self.prefetcher, None
        if prefetcher is not None:
            prefetcher.stop(timeout=timeout)  # after the stage in flight

    def prefetch_status(self) -> dict[str, Any] | None:
        """The prefetcher's state for /diagnostics (None when prefetch is off)."""
        prefetcher = self.prefetcher
        return None if prefetcher is None else prefetcher.status()

    def note_computed(self, job: Job) -> None:
        """A command computed its camera frame completely: the prefetcher takes it as prepared,
        so it does not prepare the same scene again.
        """
        prefetcher = self.prefetcher
        if prefetcher is not None and job.frame is not None and job.frame_source != "prepared":
            frame = job.frame
            prefetcher.note_prepared(frame, frame.received_ns / 1e9, message_thumbnail(frame.msg))

    def _prefetch_input(self, frame: Frame, _: Any) -> tuple[Any, Any]:
        """Prefetch thread: the camera frame as the models will see it, and its cache key."""
        rgb, _ = model_input(frame.msg, self.node.settings.max_image_pixels)
        return rgb, camera_frame_key(frame.msg.header, rgb)

    def _on_prepared(self, frame: Frame, timings: dict[str, float]) -> None:
        age = (self.node.get_clock().now().nanoseconds - frame.received_ns) / 1e9
        spent = sum(timings.values())
        self.node.get_logger().info(
            f"prefetch: frame prepared ({spent:.2f} s of model time; the frame is {age:.2f} s old)"
        )

    # ------------------------------------------------------------------ the frame a command uses
    def pick(self, job: Job) -> str | None:
        """Give the job the latest camera image; returns why not (none yet, too old, or no clock
        to tell its age: with use_sim_time a frame's arrival time is read from /clock).
        """
        node, settings = self.node, self.node.settings
        frame: Frame | None = self.sensors.latest_image()
        compressed = settings.image_transport == "compressed"
        topic = node.resolve_topic_name("image/compressed" if compressed else "image")
        clock = node.get_clock()
        now = clock.now().nanoseconds
        if now == 0 and clock.ros_time_is_active:  # the age of any frame would read as 0
            return (
                "use_sim_time is true but no message has arrived on /clock, so the age of the "
                f"image on {topic} cannot be checked (play the bag with --clock, or set "
                "use_sim_time false)"
            )
        if frame is None:
            return f"no image received on {topic} yet"
        age = (now - frame.received_ns) / 1e9
        limit = settings.max_image_age_s
        if age > limit:
            return (
                f"no image newer than {limit:g} s on {topic} (the latest arrived {age:.1f} s ago)"
            )
        chosen = self._for_command(frame, job)
        job.image = chosen.msg
        return None

    def _for_command(self, latest: Frame, job: Job) -> Frame:
        """The frame the prefetch rule picks (prepared, in flight, or the newest image), when it
        can stand in for the newest one; records which and how old on the job. The camera
        itself must be alive: `max_image_age_s` is checked on the newest image first.
        """
        chosen, source = latest, "newest"
        prefetcher = self.prefetcher
        if prefetcher is not None:
            prefetcher.rule = self.rule()  # live parameters
            choice = prefetcher.choose(
                latest, latest.received_ns / 1e9, message_thumbnail(latest.msg)
            )
            if choice.frame is latest:
                source = choice.source
            elif choice.source != "newest" and self._stands_in(latest, choice.frame):
                chosen, source = choice.frame, choice.source
        now = self.node.get_clock().now().nanoseconds
        job.frame, job.frame_source = chosen, source
        job.frame_age_s = (now - chosen.received_ns) / 1e9
        return chosen

    def _stands_in(self, latest: Frame, candidate: Frame) -> bool:
        """An earlier frame may answer for the newest one: same camera, same size, and the
        newest is not broken (a broken newest image is answered as such, never covered).
        """
        new, old = latest.msg, candidate.msg
        if type(new) is not type(old) or new.header.frame_id != old.header.frame_id:
            return False  # another camera: the earlier frame is not this view
        if isinstance(new, Image):
            try:
                check_image(new)
            except (ImageConversionError, ValueError):
                return False
            return (new.width, new.height) == (old.width, old.height)
        return _decodes_like(new, old, self.node.settings.max_image_pixels)
