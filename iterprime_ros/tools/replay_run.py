"""The replay itself: stream a bag in time order, answer each command as the node would, write
the answers (and, with --track, the track) into the output bag.

Why a module of its own: the command line (replay.py) checks arguments and loads models; this
is the part that turns one input bag into one output bag, also used from Python (the demo).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..core.command import too_long
from ..image_size import (
    SizePlan,
    downscale,
    plan,
    result_to_source,
)
from ..pipeline import SegmentationResult
from ..ros.conversions import (
    ImageConversionError,
    image_to_rgb,
)
from ..ros.sensors import SensorCache
from ..ros.sizing import compressed_for_models
from ..ros.spatial import compute_centroid_3d
from .bags import (
    SEGMENTATION_TYPE,
    BagError,
    BagMessage,
    BagReader,
    BagWriteError,
    BagWriter,
    OutputLock,
    partial_name,
    stamp_ns,
    typestore,
)
from .replay_config import (
    CENTROID_TOPIC,
    MASK_TOPIC,
    RESULT_TOPIC,
    STRING_TYPE,
    WRITTEN_TOPICS,
    ReplayConfig,
    ReplayError,
    ReplaySummary,
    _Job,
    check_topics,
)
from .replay_dialogue import ReplayDialogue, with_conversation
from .replay_output import (
    OVERLAY_TEMP_SUFFIX,
    _line,
    _one_line_text,
    _point_stamped,
    check_overlay_folder,
    overlay_name,
    segmentation_message,
)
from .replay_resume import _keep_partial, _remove, _resume_source, _take_over, resume_marker
from .replay_track import start_track_replay

log = logging.getLogger(__name__)

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
        self.redo_from = 0  # resuming: the first finished command answered again (0: none)
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
            if not m.topic and self._maybe_command(m):
                index += 1
                self.warn(f"{m.damage}: it holds a {STRING_TYPE}, taken as a command")
                yield _Job(index, m.timestamp_ns, "", f"unreadable command: {m.damage}")
                continue
            if not m.topic:  # a damaged row whose topic is unreadable: it may be an image
                self._unreadable_row = m
                continue
            if cfg.include_input and not m.damage and m.topic not in WRITTEN_TOPICS:
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

    def _maybe_command(self, m: BagMessage) -> bool:
        """Whether a row of unknown topic is a lost command: its bytes are exactly one
        std_msgs/String and the command topic is the bag's only topic of that type (else it
        cannot be told apart and is handled like any unreadable row).
        """
        strings = [t for t, kind in self.bag.topics.items() if kind == STRING_TYPE]
        if not m.raw or strings != [self.cfg.command_topic]:
            return False
        store = typestore()
        try:
            msg = store.deserialize_cdr(m.raw, STRING_TYPE)
            return bytes(store.serialize_cdr(msg, STRING_TYPE)) == m.raw
        except Exception:  # noqa: BLE001 - not a String
            return False

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
        """Answer one command: the one place a command's result is made and written.

        The result (success or failure) goes to the result topic, a success's mask and 3-D
        centroid to theirs, the overlay to its file and the line to the console; with --track
        the track starts from it. Returns whether the command succeeded.
        """
        rgb, image_msg, size, model_result, elapsed = self._segment(job)
        result = model_result
        if size is not None and size.downscaled:
            result = result_to_source(result, size)
        self.summary.segment_s += elapsed
        latency = float(result.latency_s or elapsed)
        # Record time as a single worker would publish: after the command and after the
        # previous answer.
        out_ns = max(job.t_ns, self._last_out_ns) + int(latency * 1e9)
        self._last_out_ns = out_ns
        hdr_ns, frame = (
            (stamp_ns(image_msg.header), str(image_msg.header.frame_id))
            if image_msg is not None
            else (job.t_ns, "")
        )
        point, note = self._centroid_3d(result, image_msg)
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

    def _segment(self, job: _Job) -> tuple[Any, Any, SizePlan | None, Any, float]:
        """(model-size RGB, image message, size plan, model-size result, seconds) for a job;
        a refused command or an unusable image gives a failure result without running models.
        """
        refusal = job.error or too_long(job.text)
        if refusal:
            rgb, image_msg, error, size = None, None, refusal, None
        else:
            rgb, image_msg, error, size = self.image_for(job)
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
        return rgb, image_msg, size, result, time.perf_counter() - t0

    def _centroid_3d(self, result: Any, image_msg: Any) -> tuple[Any, str]:
        """(3-D point or None, why not) from the depth frame matching the answer's image."""
        if not (
            result.success
            and result.mask is not None
            and image_msg is not None
            and self.cfg.depth_topic in self.bag.topics
        ):
            return None, ""
        match = self.sensors.match(image_msg.header, self.cfg.depth_sync_tolerance_s)
        c3 = compute_centroid_3d(
            result.mask,
            match.depth,
            match.info,
            self.cfg.depth_erosion_px,
            rectified=self.cfg.image_rectified,
        )
        return c3.point, match.reason or c3.reason

    def _objects_3d(self, result: Any, image_msg: Any) -> tuple[Any, ...]:
        """Each answered object's 3-D centroid where depth allows (None elsewhere)."""
        if image_msg is None or self.cfg.depth_topic not in self.bag.topics or not result.success:
            return ()
        match = self.sensors.match(image_msg.header, self.cfg.depth_sync_tolerance_s)
        erosion = self.cfg.depth_erosion_px
        return tuple(
            compute_centroid_3d(
                o.mask, match.depth, match.info, erosion, rectified=self.cfg.image_rectified
            ).point
            for o in getattr(result, "objects", None) or []
        )

    def redoes(self, index: int, last_done: int) -> bool:
        """Whether finished command `index` is answered again on resuming (see redo)."""
        in_exchange = 0 < self.redo_from <= index
        tracked = self.track is not None and bool(self.done.get(index))
        return in_exchange or (index == last_done and tracked)

    def redo(self, job: _Job, last: bool) -> None:
        """Resuming: a command the interrupted run answered is answered again, nothing written
        for it, so that the dialogue state (the exchange it belongs to, replay_resume's
        _exchange_start) and, for the `last` one with --track, its track go on over the later
        commands and images exactly as in a run that was never interrupted.
        """
        rgb, image_msg, size, result, _ = self._segment(job)
        if last and self.track is not None and self.done.get(job.index):
            self.track.command(job.index, job.text, result, rgb, image_msg, job.t_ns, size)

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

    `segmenter` is anything with ``segment(rgb, command) -> SegmentationResult``, such as
    pipeline.Segmenter. Raises ReplayError before writing anything when there is nothing to answer.

    Interruption (Ctrl-C, SIGTERM in the main thread): the finished results are closed into
    ``partial_name(OUT_BAG)`` with a resume marker beside it and KeyboardInterrupt propagates;
    the same call again takes them over and answers only the rest (``cfg.restart``: start
    over). A killed run leaves only a temp folder, removed by the next run.
    """
    cfg = cfg or ReplayConfig()
    t_start = time.perf_counter()
    summary = ReplaySummary(output=Path(out_bag))
    in_main = _main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        with OutputLock(out_bag):  # one writer per output, for the whole run
            _replay_locked(Path(in_bag), Path(out_bag), segmenter, cfg, summary, echo)
    except BagError as exc:
        raise ReplayError(str(exc)) from None
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    summary.wall_s = time.perf_counter() - t_start
    return summary


def _replay_locked(
    in_path: Path,
    out_path: Path,
    segmenter: Any,
    cfg: ReplayConfig,
    summary: ReplaySummary,
    echo: Callable[[str], None],
) -> None:
    """replay_bag's work while it holds the output's lock."""
    with BagReader(in_path, cfg.limits) as bag:
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
            out_path, storage=cfg.storage, overwrite=cfg.overwrite, protect=[in_path]
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
        except BagWriteError:  # a full disk, a name taken meanwhile: keep what was written
            if writer.kept is not None:
                _keep_partial(writer, in_path, cfg, summary, echo)
            raise
        if resume is not None:
            _remove(resume)
            resume_marker(out_path).unlink(missing_ok=True)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _replay_into(run: _Replayer, image_problem: str, resume: Path | None) -> None:
    """Answer every command of run.bag into run.out (taking over a partial run from `resume`)."""
    bag, out, cfg, summary = run.bag, run.out, run.cfg, run.summary
    out.add_topic(RESULT_TOPIC, SEGMENTATION_TYPE, qos="reliable")
    out.add_topic(MASK_TOPIC, "sensor_msgs/msg/Image", qos="reliable")
    out.add_topic(CENTROID_TOPIC, "geometry_msgs/msg/PointStamped", qos="reliable")
    if cfg.include_input:
        store = bag.typestore
        for topic, msgtype in bag.topics.items():
            if topic not in WRITTEN_TOPICS and msgtype:
                out.add_topic(topic, msgtype, store=store)
    if cfg.track:
        run.track = start_track_replay(run, out, run.segmenter)
    if resume is not None:
        summary.resumed = _take_over(resume, out, run)
        run.echo(f"resuming: {summary.resumed} command(s) already answered in {resume}")
    if image_problem:
        run.image_problem = image_problem
        summary.problem(image_problem)
    last_done = max(run.done, default=0)
    try:
        for job in run.jobs():
            summary.commands += 1
            if job.index in run.done:
                summary.succeeded += run.done[job.index]
                if run.redoes(job.index, last_done):
                    run.redo(job, job.index == last_done)
                continue
            summary.succeeded += run.answer(job)
            out.commit()  # a finished answer survives a later full disk
    except BagWriteError:
        raise
    except BagError as exc:  # the file is damaged past repair: keep what was answered
        run.warn(f"{exc}; stopped reading after {summary.commands} command(s)")
    if run.track is not None:
        run.track.finish(max(bag.end_ns, run._last_out_ns))
    run._bag_problems()
