"""What a replay reads and writes, and what it reports: topics, settings, the summary.

Why a module of its own: the replay run, its resume and its command line all share these
definitions; keeping them apart from the run lets each part import them without a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..image_size import (
    DEFAULT_MAX_IMAGE_PIXELS,
)
from ..ros.names import DEFAULT_INPUT_TOPICS, output_topic
from .bags import (
    BagMessage,
    BagReader,
    ReadLimits,
)

IMAGE_TOPIC = DEFAULT_INPUT_TOPICS["image"]
COMMAND_TOPIC = DEFAULT_INPUT_TOPICS["command"]
DEPTH_TOPIC = DEFAULT_INPUT_TOPICS["depth"]
CAMERA_INFO_TOPIC = DEFAULT_INPUT_TOPICS["camera_info"]
RESULT_TOPIC = output_topic("result")
MASK_TOPIC = output_topic("mask")
CENTROID_TOPIC = output_topic("centroid")
TRACK_TOPIC = output_topic("track")  # with --track: one Segmentation per tracked image
# What the replay writes: --include-input never copies an input's messages into these, so a
# replay of a replay holds exactly one result per command.
WRITTEN_TOPICS = (RESULT_TOPIC, MASK_TOPIC, CENTROID_TOPIC, TRACK_TOPIC)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STRING_TYPE = "std_msgs/msg/String"


class ReplayError(Exception):
    """The replay cannot start (the message says why); nothing was written."""


@dataclass
class ReplayConfig:
    """Where to read and write, and the node parameters that shape what a command gets."""

    image_topic: str = IMAGE_TOPIC
    command_topic: str = COMMAND_TOPIC
    depth_topic: str = DEPTH_TOPIC
    camera_info_topic: str = CAMERA_INFO_TOPIC
    max_image_age_s: float = 2.0  # node parameter: older images do not answer a command
    depth_sync_tolerance_s: float = 0.1
    depth_erosion_px: int = 3
    image_rectified: bool = False  # node parameter: back-project through camera_info P, not K
    overlays: Path | None = None  # write one PNG per result here
    include_input: bool = False  # copy the input topics into the output bag too
    storage: str | None = None  # output storage when OUT is a folder: mcap (default) | sqlite3
    overwrite: bool = False  # replace OUT when it is a bag this tool could have written
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # image_size.py: downscale, then refuse
    restart: bool = False  # ignore the finished results an interrupted run left
    # what a resumed run must share with the interrupted one (settings, input): any difference
    # refuses to resume, so one output bag never mixes two configurations
    fingerprint: dict[str, Any] = field(default_factory=dict)
    track: bool = False  # follow each answered object on later images (replay_track.py)
    track_settings: Any = None  # tracking.TrackerSettings (None: defaults)
    track_proposals_every: int = 0  # re-associate with proposals every N tracked frames (0: never)

    @property
    def limits(self) -> ReadLimits:
        """The read limit of every bag this run reads (its input and a partial it takes over):
        the image-size rule's, from max_image_pixels (image_size.read_limit_bytes).
        """
        return ReadLimits.for_pixels(self.max_image_pixels)


@dataclass
class ReplaySummary:
    """What happened, for the closing lines and the exit status."""

    output: Path
    commands: int = 0
    succeeded: int = 0
    problems: list[str] = field(default_factory=list)  # input problems (each once)
    overlays: list[Path] = field(default_factory=list)
    wall_s: float = 0.0
    segment_s: float = 0.0
    resumed: int = 0  # results taken over from an interrupted run
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return self.commands - self.succeeded

    def problem(self, text: str) -> bool:
        """Record an input problem once; True the first time (so it is printed once)."""
        if text in self.problems:
            return False
        self.problems.append(text)
        return True

    def exit_code(self, strict: bool = False) -> int:
        return 1 if self.problems or (strict and self.failed) else 0


@dataclass
class _Job:
    """One command and what the node would have had when it arrived."""

    index: int  # 1-based, = command_id
    t_ns: int  # bag record time of the command
    text: str
    error: str = ""  # set when the command itself is unreadable
    image: BagMessage | None = None


def check_topics(bag: BagReader, cfg: ReplayConfig, echo: Callable[[str], None] = print) -> str:
    """Raise ReplayError when there are no commands to answer; return the image problem, if any
    (every command then fails with it). Missing optional topics are only mentioned.
    """
    topics = bag.topics
    listing = (
        ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"
    )
    if cfg.command_topic not in topics:
        raise ReplayError(
            f"command topic {cfg.command_topic} is not in {bag.path}: nothing to answer "
            f"(topics: {listing}; choose one with --command-topic)"
        )
    if topics[cfg.command_topic] != STRING_TYPE:
        raise ReplayError(
            f"command topic {cfg.command_topic} has type {topics[cfg.command_topic] or 'mixed'}, "
            f"expected {STRING_TYPE}"
        )
    problem = ""
    if cfg.image_topic not in topics:
        problem = (
            f"image topic {cfg.image_topic} is not in {bag.path}; every command fails "
            f"(topics: {listing}; choose one with --image-topic)"
        )
    elif topics[cfg.image_topic] not in IMAGE_TYPES:
        problem = (
            f"image topic {cfg.image_topic} has type {topics[cfg.image_topic] or 'mixed'}, "
            "expected "
            f"{' or '.join(IMAGE_TYPES)}; every command fails"
        )
    if problem:
        echo(f"error: {problem}")
    for name, topic in (("depth", cfg.depth_topic), ("camera_info", cfg.camera_info_topic)):
        if topic not in topics:
            echo(f"note: no {name} topic {topic} in the bag: results have no 3-D centroid")
    return problem
