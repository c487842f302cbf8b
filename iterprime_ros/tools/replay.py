"""Offline rosbag replay: `iterprime replay IN_BAG OUT_BAG` runs the pipeline on a bag, no DDS.

Why offline: a perception change is judged by replaying recorded data, and that should
work on a laptop or in CI without a ROS install or a running graph. The replay answers
each command on the command topic with what the live node would have had at that moment
-- the latest image received before it (bag record time, like the node's receive clock),
the depth frame closest to that image's stamp, the latest camera_info -- and writes one
``iterprime_ros/msg/Segmentation`` per command (success or failure) plus the mono8 mask
and the 3-D centroid to an output bag with the message definition embedded, so ``ros2
bag info``/``play`` and rosbags read it. Bad input never stops the run: a missing image
topic, a corrupt message or an unknown encoding becomes a clear error line and failure
results for the commands it affects.

Exit status: 0 every command answered from usable input; 1 results written but the input
had problems (or, with --strict, a command failed); 2 nothing could be done (missing bag
or command topic, output exists, bad settings, missing weights).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..core.command import too_long
from ..image_size import (
    DEFAULT_MAX_IMAGE_PIXELS,
    SizePlan,
    downscale,
    plan,
    result_to_source,
)
from ..ros.conversions import (
    ImageConversionError,
    image_to_rgb,
    mask_to_fields,
    segmentation_values,
)
from ..ros.names import DEFAULT_INPUT_TOPICS, NODE_NAME, output_topic
from ..ros.sensors import SensorCache, compute_centroid_3d
from ..ros.sizing import compressed_for_models
from .bags import (
    SEGMENTATION_TYPE,
    BagError,
    BagMessage,
    BagReader,
    BagWriter,
    appended_segmentation_fields,
    check_replaceable,
    current_segmentation,
    header,
    image_message,
    partial_name,
    stamp_ns,
    typestore,
)
from .replay_dialogue import ReplayDialogue, with_conversation

log = logging.getLogger(__name__)

# Defaults = the launch file's default remaps (launch/segment.launch.py) and the node's outputs.
IMAGE_TOPIC = DEFAULT_INPUT_TOPICS["image"]
COMMAND_TOPIC = DEFAULT_INPUT_TOPICS["command"]
DEPTH_TOPIC = DEFAULT_INPUT_TOPICS["depth"]
CAMERA_INFO_TOPIC = DEFAULT_INPUT_TOPICS["camera_info"]
RESULT_TOPIC = output_topic("result")
MASK_TOPIC = output_topic("mask")
CENTROID_TOPIC = output_topic("centroid")

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


# ----------------------------------------------------------------------------- the replay


class _Replayer:
    def __init__(
        self,
        bag: BagReader,
        out: BagWriter,
        segmenter: Any,
        cfg: ReplayConfig,
        summary: ReplaySummary,
        echo: Callable[[str], None],
    ) -> None:
        self.bag, self.out, self.segmenter, self.cfg = bag, out, segmenter, cfg
        self.summary, self.echo = summary, echo
        self.sensors = SensorCache()
        # last image decoded: (bag message, model-size RGB, message, error, size plan)
        self._decoded: tuple[BagMessage, np.ndarray | None, Any, str, SizePlan | None] | None = (
            None
        )
        self._last_out_ns = 0
        self.image_problem = ""  # set when the image topic cannot serve at all
        self.track: Any = None  # replay_track.TrackReplay when cfg.track
        self.done: dict[int, bool] = {}  # command_id -> success, taken over from a partial run
        self._unreadable_row: BagMessage | None = None  # a damaged row of unknown topic
        self.dialogue = ReplayDialogue()  # the node's conversation rule, on bag time

    def warn(self, text: str) -> None:
        if self.summary.problem(text):
            self.echo(f"error: {text}")

    # ---- input
    def jobs(self) -> Iterator[_Job]:
        """Stream the bag in time order, keep the latest inputs, and yield one job per command."""
        cfg, topics = self.cfg, self.bag.topics
        wanted = {cfg.command_topic, cfg.image_topic, cfg.depth_topic, cfg.camera_info_topic}
        read = set(topics) if cfg.include_input else wanted & set(topics)
        latest_image: BagMessage | None = None
        index = 0
        self._bag_problems()
        for m in self.bag.messages(read):
            self._bag_problems()
            if not m.topic:  # a damaged row whose topic is unreadable: it may be an image
                self._unreadable_row = m
                continue
            if cfg.include_input and not m.damage:
                self.out.write_raw(m.topic, self.bag.cdr(m), m.timestamp_ns)
            if m.topic == cfg.image_topic and not self.image_problem:
                latest_image = m
                if self.track is not None:
                    self.track.image(m)
            elif m.topic == cfg.depth_topic:
                self._keep(m, self.sensors.add_depth)
            elif m.topic == cfg.camera_info_topic:
                self._keep(m, self.sensors.set_camera_info)
            elif m.topic == cfg.command_topic:
                index += 1
                try:
                    text, error = str(self.bag.deserialize(m).data), ""
                except BagError as exc:
                    text, error = "", f"unreadable command: {exc}"
                    self.warn(str(exc))
                yield _Job(index, m.timestamp_ns, text, error, latest_image)

    def _bag_problems(self) -> None:
        for text in self.bag.problems:
            self.warn(text)

    def _keep(self, m: BagMessage, store: Callable[[Any], None]) -> None:
        try:
            store(self.bag.deserialize(m))
        except BagError as exc:
            self.warn(f"{exc} (skipped)")

    def image_for(self, job: _Job) -> tuple[np.ndarray | None, Any, str, SizePlan | None]:
        """(model-size RGB, the image message, "", size plan) for the job, or (None, None, why
        not, None).
        """
        cfg = self.cfg
        if self.image_problem:
            return None, None, self.image_problem, None
        lost = self._unreadable_row
        if lost is not None and (job.image is None or job.image.timestamp_ns < lost.timestamp_ns):
            at = (lost.timestamp_ns - self.bag.start_ns) / 1e9
            return (
                None,
                None,
                f"a damaged message at +{at:.3f} s (topic unreadable: {lost.damage}) may be a "
                "newer image; not answering with an older one",
                None,
            )
        if job.image is None:
            return None, None, f"no image received on {cfg.image_topic} before this command", None
        age = (job.t_ns - job.image.timestamp_ns) / 1e9
        if age > cfg.max_image_age_s:
            return (
                None,
                None,
                (
                    f"no recent image: the latest on {cfg.image_topic} is {age:.1f} s old "
                    f"(max_image_age_s {cfg.max_image_age_s:g})"
                ),
                None,
            )
        if (
            self._decoded is None or self._decoded[0] is not job.image
        ):  # several commands often share one
            self._decoded = (job.image, *self._decode(job.image))
        _, rgb, msg, error, size = self._decoded
        return rgb, msg, error, size

    def _decode(self, m: BagMessage) -> tuple[np.ndarray | None, Any, str, SizePlan | None]:
        """The image the models see (downscaled by image_size.py when too big; sizes checked
        from the message fields or the encoded header, before any pixels are decoded).
        """
        offset_s = (m.timestamp_ns - self.bag.start_ns) / 1e9
        try:
            msg = self.bag.deserialize(m)
            if m.msgtype.endswith("CompressedImage"):
                rgb, size = compressed_for_models(msg, self.cfg.max_image_pixels)
            else:
                size = plan(int(msg.height), int(msg.width), self.cfg.max_image_pixels)
                rgb = image_to_rgb(msg)
                if size.downscaled:
                    rgb = downscale(rgb, size)
            return rgb, msg, "", size
        except BagError as exc:
            text = str(exc)
        except (ImageConversionError, ValueError) as exc:  # ImageTooLargeError is a ValueError
            text = f"cannot use the image on {m.topic} at +{offset_s:.3f} s: {exc}"
        self.warn(text)
        return None, None, text, None

    # ---- output
    def answer(self, job: _Job) -> bool:
        refusal = job.error or too_long(job.text)
        if refusal:
            rgb, image_msg, error, size = None, None, refusal, None
        else:
            rgb, image_msg, error, size = self.image_for(job)
        from ..pipeline import SegmentationResult

        t0 = time.perf_counter()
        if rgb is None:
            result = SegmentationResult(success=False, error=error, command=job.text)
        else:
            try:
                result = self.dialogue.answer(job.index, job.text, rgb, self.segmenter, job.t_ns)
            except Exception as exc:  # noqa: BLE001 - Segmenter answers failures itself; this is a bug guard
                log.exception("segmenter raised")
                result = SegmentationResult(
                    success=False,
                    error=f"internal error: {type(exc).__name__}: {exc}",
                    command=job.text,
                )
        elapsed = time.perf_counter() - t0
        model_result = result
        if size is not None and size.downscaled:
            result = result_to_source(result, size)
        self.summary.segment_s += elapsed
        latency = float(result.latency_s or elapsed)
        # Record time as a single worker would publish: after the command and after the previous
        # answer.
        out_ns = max(job.t_ns, self._last_out_ns) + int(latency * 1e9)
        self._last_out_ns = out_ns
        hdr_ns, frame = (
            (stamp_ns(image_msg.header), str(image_msg.header.frame_id))
            if image_msg is not None
            else (job.t_ns, "")
        )

        point, note = None, ""
        if (
            result.success
            and result.mask is not None
            and image_msg is not None
            and self.cfg.depth_topic in self.bag.topics
        ):
            c3 = compute_centroid_3d(
                result.mask,
                self.sensors.depth_for(image_msg.header, self.cfg.depth_sync_tolerance_s),
                self.sensors.camera_info(),
                self.cfg.depth_erosion_px,
            )
            point, note = c3.point, c3.reason
        msg = segmentation_message(result, job.index, job.text, hdr_ns, frame, latency, point)
        msg = with_conversation(msg, result, self._objects_3d(result, image_msg))
        self.out.write(RESULT_TOPIC, msg, out_ns)
        if result.success and result.mask is not None:
            self.out.write(MASK_TOPIC, msg.mask, out_ns)
            if point is not None:
                self.out.write(CENTROID_TOPIC, _point_stamped(msg), out_ns)
        if self.cfg.overlays is not None and rgb is not None:
            self._overlay(job, rgb, model_result)
        self.echo(_line(job, (job.t_ns - self.bag.start_ns) / 1e9, result, latency, point, note))
        if self.track is not None:  # the track runs at the model's image size, like the command
            self.track.command(job.index, job.text, model_result, rgb, image_msg, out_ns, size)
        return bool(result.success)

    def _objects_3d(self, result: Any, image_msg: Any) -> tuple[Any, ...]:
        """Each answered object's 3-D centroid where depth allows (None elsewhere)."""
        if image_msg is None or self.cfg.depth_topic not in self.bag.topics or not result.success:
            return ()
        depth = self.sensors.depth_for(image_msg.header, self.cfg.depth_sync_tolerance_s)
        info, erosion = self.sensors.camera_info(), self.cfg.depth_erosion_px
        return tuple(
            compute_centroid_3d(o.mask, depth, info, erosion).point
            for o in getattr(result, "objects", None) or []
        )

    def _overlay(self, job: _Job, rgb: np.ndarray, result: Any) -> None:
        """One PNG per result; an existing file is replaced only with --force (overwrite), by
        a rename, so a link of that name is replaced, never written through.
        """
        import cv2

        from ..overlay import FILE_MIN_SIDE, render_overlay

        path = self.cfg.overlays / overlay_name(job.index, job.text)  # type: ignore[operator]
        if (path.exists() or path.is_symlink()) and not self.cfg.overwrite:
            self.warn(f"overlay {path} exists already: not replaced (--force replaces it)")
            return
        tmp = path.with_name(f".{path.stem}{OVERLAY_TEMP_SUFFIX}")
        try:
            if not cv2.imwrite(str(tmp), render_overlay(rgb, result, min_side=FILE_MIN_SIDE)):
                raise OSError("OpenCV wrote nothing")
            os.replace(tmp, path)
        except (OSError, cv2.error) as exc:
            tmp.unlink(missing_ok=True)
            self.warn(f"cannot write overlay {path}: {_one_line_text(exc)}")
            return
        self.summary.overlays.append(path)


def resume_marker(out_bag: str | Path) -> Path:
    """The file beside an interrupted run's partial bag that says what made it."""
    partial = partial_name(out_bag)
    return partial.with_name(partial.name + ".resume.json")


def _fingerprint(in_bag: Path, cfg: ReplayConfig) -> dict[str, Any]:
    st = in_bag.stat()
    size = (
        st.st_size
        if in_bag.is_file()
        else sum(p.stat().st_size for p in in_bag.rglob("*") if p.is_file())
    )
    return {
        "input": str(in_bag.resolve()),
        "input_bytes": size,
        "topics": [cfg.image_topic, cfg.command_topic, cfg.depth_topic, cfg.camera_info_topic],
        "max_image_age_s": cfg.max_image_age_s,
        "depth": [cfg.depth_sync_tolerance_s, cfg.depth_erosion_px],
        "max_image_pixels": cfg.max_image_pixels,
        "include_input": cfg.include_input,
        "settings": cfg.fingerprint,
    }


def _resume_source(in_bag: Path, out_bag: Path, cfg: ReplayConfig, echo: Callable) -> Path | None:
    """The partial bag an interrupted run left, when this run continues it (same input and
    settings); ReplayError when it was made differently (never discarded silently).
    """
    partial, marker = partial_name(out_bag), resume_marker(out_bag)
    if not partial.exists():
        return None
    if cfg.restart:
        try:
            check_replaceable(partial, [in_bag])
        except BagError as exc:
            raise ReplayError(str(exc)) from None
        _remove(partial)
        marker.unlink(missing_ok=True)
        echo(f"note: --restart: discarded the partial results in {partial}")
        return None
    try:
        made = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = None
    now = _fingerprint(in_bag, cfg)
    if made != now:
        diff = (
            "no readable resume marker " + str(marker)
            if not isinstance(made, dict)
            else ", ".join(k for k in now if made.get(k) != now[k])
        )
        raise ReplayError(
            f"{partial} holds results of an interrupted run made differently ({diff}); "
            "rerun with the same input and settings to resume, or --restart to discard them"
        )
    return partial


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _take_over(partial: Path, out: BagWriter, run: "_Replayer") -> int:
    """Copy the finished results of an interrupted run into the new bag; returns how many."""
    taken = 0
    with BagReader(partial) as old:
        for m in old.messages([RESULT_TOPIC, MASK_TOPIC, CENTROID_TOPIC]):
            if m.topic == RESULT_TOPIC:
                try:
                    result = old.deserialize(m)
                except BagError:
                    continue  # that command is simply answered again
                run.done[int(result.command_id)] = bool(result.success)
                taken += 1
                # written again, not copied: the partial may hold an older definition
                out.write(m.topic, current_segmentation(result), m.timestamp_ns)
            else:  # standard messages (mask image, centroid point): the bytes stay valid
                out.write_raw(m.topic, m.raw, m.timestamp_ns)
            run._last_out_ns = max(run._last_out_ns, m.timestamp_ns)
    return taken


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: finished results are kept, the run can be resumed."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def replay_bag(
    in_bag: str | Path,
    out_bag: str | Path,
    segmenter: Any,
    cfg: ReplayConfig | None = None,
    echo: Callable[[str], None] = print,
) -> ReplaySummary:
    """Answer every command in IN_BAG with `segmenter` and write the results to OUT_BAG.

    `segmenter` is anything with ``segment(rgb, command) -> SegmentationResult``
    (pipeline.Segmenter).
    Raises ReplayError before writing anything when there is nothing to answer.

    Interruption (Ctrl-C, SIGTERM in the main thread): the finished results are closed into
    ``partial_name(OUT_BAG)`` with a resume marker beside it and KeyboardInterrupt propagates;
    the same call again takes them over and answers only the rest (``cfg.restart``: start
    over). A killed run leaves only a temp folder, removed by the next run.
    """
    cfg = cfg or ReplayConfig()
    t_start = time.perf_counter()
    in_path, out_path = Path(in_bag), Path(out_bag)
    summary = ReplaySummary(output=out_path)
    in_main = _main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        with BagReader(in_bag) as bag:
            image_problem = check_topics(bag, cfg, echo)
            resuming = partial_name(out_path).exists() and not cfg.restart
            check_overlay_folder(cfg.overlays, cfg.overwrite, resuming)
            resume = _resume_source(in_path, out_path, cfg, echo)
            if cfg.overlays is not None:
                try:
                    cfg.overlays.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ReplayError(
                        f"cannot create the overlay folder {cfg.overlays}: {exc.strerror}"
                    ) from None
            writer = BagWriter(
                out_bag, storage=cfg.storage, overwrite=cfg.overwrite, protect=[in_bag]
            )
            try:
                with writer as out:
                    for stale in writer.cleaned:
                        echo(f"note: removed {stale}, left by a killed run")
                    run = _Replayer(bag, out, segmenter, cfg, summary, echo)
                    _replay_into(run, image_problem, resume)
            except KeyboardInterrupt:
                summary.interrupted = True
                _keep_partial(writer, in_path, cfg, summary, echo)
                raise
            if resume is not None:
                _remove(resume)
                resume_marker(out_path).unlink(missing_ok=True)
    except BagError as exc:
        raise ReplayError(str(exc)) from None
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    summary.wall_s = time.perf_counter() - t_start
    return summary


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _replay_into(run: _Replayer, image_problem: str, resume: Path | None) -> None:
    """Answer every command of run.bag into run.out (taking over a partial run from `resume`)."""
    bag, out, segmenter, cfg = run.bag, run.out, run.segmenter, run.cfg
    summary, echo = run.summary, run.echo
    out.add_topic(RESULT_TOPIC, SEGMENTATION_TYPE, qos="reliable")
    out.add_topic(MASK_TOPIC, "sensor_msgs/msg/Image", qos="reliable")
    out.add_topic(CENTROID_TOPIC, "geometry_msgs/msg/PointStamped", qos="reliable")
    if cfg.include_input:
        store = bag.typestore
        for topic, msgtype in bag.topics.items():
            if topic not in (RESULT_TOPIC, MASK_TOPIC, CENTROID_TOPIC) and msgtype:
                out.add_topic(topic, msgtype, store=store)
    if resume is not None:
        summary.resumed = _take_over(resume, out, run)
        echo(f"resuming: {summary.resumed} command(s) already answered in {resume}")
    if image_problem:
        run.image_problem = image_problem
        summary.problem(image_problem)
    if cfg.track:
        from .replay_track import start_track_replay

        run.track = start_track_replay(run, out, segmenter)
    try:
        for job in run.jobs():
            summary.commands += 1
            if job.index in run.done:
                summary.succeeded += run.done[job.index]
                continue
            summary.succeeded += run.answer(job)
    except BagError as exc:  # the file is damaged past repair: keep what was answered
        run.warn(f"{exc}; stopped reading after {summary.commands} command(s)")
    if run.track is not None:
        run.track.finish(max(bag.end_ns, run._last_out_ns))
    run._bag_problems()


def _keep_partial(
    writer: BagWriter,
    in_bag: Path,
    cfg: ReplayConfig,
    summary: ReplaySummary,
    echo: Callable[[str], None],
) -> None:
    """After an interruption: say where the finished results are and write the resume marker."""
    if writer.kept is None:
        echo("interrupted before any result was written: nothing kept")
        return
    marker = resume_marker(summary.output)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
    tmp.write_text(json.dumps(_fingerprint(in_bag, cfg), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, marker)
    done = writer.counts.get(RESULT_TOPIC, 0)
    echo(
        f"interrupted: {done} finished result(s) kept in {writer.kept}; run the same command "
        "again to resume (--restart to start over)"
    )


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


# ----------------------------------------------------------------------------- messages


def segmentation_message(
    result: Any,
    command_id: int,
    command: str,
    stamp: int,
    frame_id: str,
    latency_s: float,
    centroid_3d: tuple[float, float, float] | None,
) -> Any:
    """Rosbags iterprime_ros/msg/Segmentation for a pipeline result: the live node's fields
    (ros.conversions.segmentation_values) in rosbags' classes. A failure has an empty mask.
    """
    types = typestore().types
    point = types["geometry_msgs/msg/Point"]
    v = segmentation_values(result, centroid_3d)
    if v["success"]:
        mask = image_message(mask_to_fields(result.mask), header(stamp, frame_id))
    else:
        mask = types["sensor_msgs/msg/Image"](
            header=header(stamp, frame_id),
            height=0,
            width=0,
            encoding="",
            is_bigendian=0,
            step=0,
            data=np.zeros(0, np.uint8),
        )
    x, y, w, h = v["bbox"]
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=x, y_offset=y, height=h, width=w, do_rectify=False
    )
    return types[SEGMENTATION_TYPE](
        header=header(stamp, frame_id),
        command_id=int(command_id),
        command=command,
        expression=v["expression"],
        primary_word=v["primary_word"],
        success=v["success"],
        error=v["error"],
        mask=mask,
        bbox=roi,
        centroid_px=point(*v["centroid_px"], 0.0),
        grasp_point_px=point(*v["grasp_point_px"], 0.0),
        has_centroid_3d=v["has_centroid_3d"],
        centroid_3d=point(*v["centroid_3d"]),
        score=v["score"],
        itm_score=v["itm_score"],
        iterations=v["iterations"],
        latency_s=float(latency_s),
        **appended_segmentation_fields(),
    )


def _point_stamped(msg: Any) -> Any:
    types = typestore().types
    return types["geometry_msgs/msg/PointStamped"](header=msg.header, point=msg.centroid_3d)


OVERLAY_TEMP_SUFFIX = ".iterprime-tmp.png"  # an overlay being written, renamed when done
_OVERLAY_NAME = re.compile(r"\d{3,}_[a-z0-9_]+\.png")


def overlay_name(index: int, text: str) -> str:
    """File name of command `index`'s overlay: 007_the_red_cup.png."""
    return f"{index:03d}_{_slug(text)}.png"


def check_overlay_folder(folder: Path | None, force: bool, resuming: bool) -> None:
    """ReplayError unless the overlays may go into `folder` without replacing anyone's file.

    A folder that is missing or empty is fine; a non-empty one only with ``force`` (which then
    replaces files named like overlays when this run writes the same name, never touches the
    others) or when resuming an interrupted run (whose overlays it holds; existing files are
    still not replaced without ``force``).
    """
    if folder is None:
        return
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise ReplayError(f"--overlays {folder} is not a folder")
    if not folder.exists() or force or resuming:
        return
    entries = sorted(e.name for e in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        ours = sum(bool(_OVERLAY_NAME.fullmatch(e)) for e in entries)
        raise ReplayError(
            f"overlay folder {folder} is not empty ({len(entries)} entries: {shown}; {ours} "
            "named like overlays); choose a new or empty folder, or add --force to replace "
            "overlays of the same name (NNN_command.png; other files are never touched)"
        )


def _one_line_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "command"


def _line(job: _Job, t_s: float, result: Any, latency: float, point: Any, note: str) -> str:
    head = f"[{job.index:3d}] +{t_s:.2f} s {job.text!r}"
    if not result.success:
        return f"{head} -> FAILED: {result.error}"
    u, v = result.centroid
    where = f"centroid ({u:.0f}, {v:.0f}) px"
    if point is not None:
        where += f", ({point[0]:+.2f}, {point[1]:+.2f}, {point[2]:.2f}) m"
    elif note:
        where += f" (no 3-D: {note})"
    return (
        f"{head} -> {result.expression!r}: mask {int(result.mask.sum())} px, {where}, "
        f"score {result.score:.3f}, {latency:.2f} s"
    )


# ----------------------------------------------------------------------------- command line


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Register `iterprime replay` (cli.py calls this)."""
    from .cli import add_model_arguments

    p = subparsers.add_parser(
        "replay",
        help="run the pipeline on a rosbag (offline, no ROS graph) and write the results to a bag",
        description="Answer every command in IN_BAG with the latest image before it (as the node "
        "would) and "
        "write iterprime_ros/msg/Segmentation results, masks and 3-D centroids to OUT_BAG. "
        "OUT_BAG ending in .mcap or .db3 is one file; any other name is a rosbag2 folder.",
        epilog="exit status: 0 all commands answered from usable input; 1 results written but the "
        "input had "
        "problems (or --strict and a command failed); 2 nothing done",
    )
    p.add_argument(
        "in_bag", metavar="IN_BAG", help="input bag: rosbag2 folder, .mcap, .db3 (or ROS 1 .bag)"
    )
    p.add_argument(
        "out_bag", metavar="OUT_BAG", help="output bag (.mcap / .db3 file, or a folder)"
    )
    p.add_argument(
        "--image-topic",
        default=IMAGE_TOPIC,
        help=f"sensor_msgs/Image topic (default {IMAGE_TOPIC})",
    )
    p.add_argument(
        "--command-topic",
        default=COMMAND_TOPIC,
        help=f"std_msgs/String topic (default {COMMAND_TOPIC})",
    )
    p.add_argument(
        "--depth-topic", default=DEPTH_TOPIC, help=f"aligned depth topic (default {DEPTH_TOPIC})"
    )
    p.add_argument(
        "--camera-info-topic",
        default=CAMERA_INFO_TOPIC,
        help=f"camera_info topic (default {CAMERA_INFO_TOPIC})",
    )
    p.add_argument(
        "--overlays",
        metavar="DIR",
        type=Path,
        help="write one overlay PNG per result (NNN_command.png) into DIR, a new or empty "
        "folder (with --force a non-empty one: overlays of the same name are replaced, other "
        "files never touched)",
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help="node parameters file, e.g. config/segment.yaml (default: the parameters' defaults)",
    )
    add_model_arguments(p)  # --vlp --proposals --device --fp32 --set: override the config
    p.add_argument("--max-image-age", type=float, metavar="S", help="override max_image_age_s")
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), help="storage of a folder OUT_BAG (default mcap)"
    )
    p.add_argument(
        "--include-input", action="store_true", help="copy the input topics into OUT_BAG as well"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT_BAG if it exists and is a bag (never another file or folder, never "
        "the input), and overlays of the same name in a non-empty --overlays DIR",
    )
    p.add_argument(
        "--track",
        action="store_true",
        help="after each answered command, follow the object on later images and write "
        "/iterprime_segmenter/track (one Segmentation per image, as the node)",
    )
    p.add_argument(
        "--track-proposals-every",
        type=int,
        default=0,
        metavar="N",
        help="with --track: re-associate with mask proposals every N tracked images (0: never)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the finished results an interrupted run left (OUT_BAG's .partial bag) "
        "instead of resuming from them",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help="bigger images are downscaled for the models, more than 16x bigger refused "
        f"(default {DEFAULT_MAX_IMAGE_PIXELS}; iterprime_ros/image_size.py)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any command failed")
    p.set_defaults(func=cmd_replay)


def load_parameters(path: str | None) -> Any:
    """A node parameters YAML (or none) -> ros.params.Parameters; UserError naming what is
    wrong.
    """
    from ..ros.params import ParameterError, node_parameters, read_params_file, validate
    from .errors import UserError

    values: dict[str, Any] = {}
    if path:
        if not Path(path).is_file():
            raise UserError(f"parameters file not found: {path}")
        try:  # the node's own reader and rcl's key matching: a file means what it means there
            data = read_params_file(path)
        except ParameterError as exc:
            raise UserError(str(exc)) from None
        values = node_parameters(data, f"/{NODE_NAME}")
        if data and not values:
            raise UserError(f"{path}: no parameters for {NODE_NAME} (found {', '.join(data)})")
    try:
        return validate(values)
    except ParameterError as exc:
        raise UserError(f"{path or 'defaults'}: {exc}") from None


def settings_fingerprint(settings: Any) -> dict[str, Any]:
    """The settings that change results, as JSON values (device and caches do not)."""
    import dataclasses

    values = dataclasses.asdict(settings)
    for key in ("device", "frame_cache_size"):
        values.pop(key, None)
    return json.loads(json.dumps(values, default=list))


def cmd_replay(args: argparse.Namespace) -> int:
    from .cli import model_settings
    from .errors import UserError

    params = load_parameters(args.config)
    settings = model_settings(args, params.segmenter)
    node = params.node
    max_age = node.max_image_age_s if args.max_image_age is None else args.max_image_age
    if not max_age > 0:
        raise UserError("--max-image-age must be positive")
    if args.max_image_pixels < 1:
        raise UserError("--max-image-pixels must be at least 1")
    cfg = ReplayConfig(
        image_topic=args.image_topic,
        command_topic=args.command_topic,
        depth_topic=args.depth_topic,
        camera_info_topic=args.camera_info_topic,
        max_image_age_s=max_age,
        depth_sync_tolerance_s=node.depth_sync_tolerance_s,
        depth_erosion_px=node.depth_erosion_px,
        overlays=args.overlays,
        include_input=args.include_input,
        storage=args.storage,
        overwrite=args.force,
        max_image_pixels=args.max_image_pixels,
        restart=args.restart,
        fingerprint=settings_fingerprint(settings),
        track=args.track,
        track_proposals_every=max(0, args.track_proposals_every),
    )

    # Check the input and the output name before loading models (seconds to minutes).
    out = Path(args.out_bag)
    if out.exists() and not args.force:
        raise UserError(f"output {out} exists already (use --force to replace it)")
    try:
        check_replaceable(out, [args.in_bag])
        if partial_name(out).exists():
            check_replaceable(partial_name(out), [args.in_bag])
            if not args.restart:
                _resume_source(Path(args.in_bag), out, cfg, echo=print)  # refuses a mismatch
        resuming = partial_name(out).exists() and not args.restart
        check_overlay_folder(args.overlays, args.force, resuming)
    except BagError as exc:
        raise UserError(str(exc)) from None
    except ReplayError as exc:
        raise UserError(str(exc)) from None
    try:
        with BagReader(args.in_bag) as bag:
            check_topics(bag, cfg, echo=lambda _line: None)
            commands = bag.counts[cfg.command_topic]
    except (BagError, ReplayError) as exc:
        raise UserError(str(exc)) from None
    print(
        f"replaying {args.in_bag}: {commands} command(s) on {cfg.command_topic}, images from "
        f"{cfg.image_topic}"
    )

    from ..models.loading import quiet_transformers
    from ..pipeline import Segmenter

    quiet_transformers()
    t0 = time.perf_counter()
    segmenter = Segmenter(settings)
    warm = getattr(segmenter, "warmup", None)
    if callable(warm):
        warm()
    print(
        f"models loaded in {time.perf_counter() - t0:.1f} s (vlp {settings.vlp_model}, "
        f"proposals {settings.proposal_model}, device {settings.device})"
    )
    try:
        summary = replay_bag(args.in_bag, out, segmenter, cfg)
    except ReplayError as exc:
        raise UserError(str(exc)) from None
    except _Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 130
    if summary.resumed:
        print(f"{summary.resumed} result(s) taken over from the interrupted run")
    print(
        f"{summary.commands} command(s): {summary.succeeded} answered, {summary.failed} failed; "
        f"{summary.commands} result(s) written to {summary.output} in {summary.wall_s:.1f} s "
        f"(pipeline {summary.segment_s:.1f} s)"
    )
    if summary.overlays:
        print(f"{len(summary.overlays)} overlay(s) in {cfg.overlays}")
    for problem in summary.problems:
        print(f"error: {problem}", file=sys.stderr)
    return summary.exit_code(args.strict)
