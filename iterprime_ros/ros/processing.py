"""The model work, on the worker thread: the models loaded and freed, and one command turned into
model input, run, located in 3-D and handed to the answers.

Why on one thread: loading, freeing and running the models must never overlap (a model freed
while a command uses it, or two commands fighting for GPU memory), so lifecycle transitions
hand their model work to the same worker that runs the commands, between two of them.
"""

from __future__ import annotations

import time
from typing import Any

from ..pipeline import CommandCancelled, ModelLoadError, Segmenter, is_out_of_memory
from . import messages
from .frames import UNUSABLE_IMAGE, camera_frame_key, model_input
from .jobs import CANCELLED, SHUTTING_DOWN, Job, first_line
from .outputs import fill_3d
from .params import Parameters
from .sizing import result_at_source
from .spatial import Located, locate, object_in_camera
from .transforms import FrameTransformer

DOWNLOAD_HINT = (
    "fetch the default weights with `iterprime download` on a machine with internet, or point "
    "vlp_model / proposal_model at local model folders"
)


def check_models(parameters: Parameters) -> None:
    """The device exists; each model folder exists and holds the kind of model its backend
    loads (no loading). ModelLoadError says what is wrong and what to do.
    """
    from ..models import (
        ModelCheckError,
        ModelNotFoundError,
        ModelTypeError,
        check_model_folder,
    )
    from ..models.loading import DeviceUnavailableError, resolve_device

    s = parameters.segmenter
    try:
        resolve_device(s.device)
    except DeviceUnavailableError as exc:
        raise ModelLoadError(f"models not loaded: parameter 'device': {exc}") from None
    try:
        check_model_folder("vlp_model", s.vlp_model, "vlp", s.vlp_backend)
        check_model_folder("proposal_model", s.proposal_model, "proposals", s.proposal_backend)
    except (ModelNotFoundError, ModelCheckError) as exc:
        text = first_line(exc)
        if "iterprime download" not in text and not isinstance(exc, ModelTypeError):
            text = f"{text}; {DOWNLOAD_HINT}"
        raise ModelLoadError(f"models not loaded: {text}") from None


class ModelWork:
    """The node's models and what the worker does with them (every method runs on the worker,
    except `track_proposals`, which the track thread calls between commands' model work).
    """

    def __init__(self, node: Any) -> None:
        self.node = node
        self.segmenter: Segmenter | None = None

    # ------------------------------------------------------------------ models
    def load(self) -> str | None:
        """Load the models; returns why not (also logged) or None when they are ready."""
        node = self.node
        s = node.parameters.segmenter
        t0 = time.monotonic()
        try:
            from ..models.loading import quiet_transformers

            quiet_transformers()
            segmenter = Segmenter(s)
            parser = segmenter.warmup()
        except Exception as exc:  # noqa: BLE001 - any load failure becomes the answer to commands
            from ..models.loading import DeviceUnavailableError, ModelNotFoundError

            text = first_line(exc)
            if "iterprime download" not in text and not isinstance(exc, DeviceUnavailableError):
                text = f"{text}; {DOWNLOAD_HINT}"
            kind = (
                ""
                if isinstance(exc, (ModelLoadError, ModelNotFoundError))
                else f" ({type(exc).__name__})"
            )
            error = f"models not loaded{kind}: {text}"
            node.get_logger().error(error)
            return error
        self.segmenter = segmenter
        node.frames.start_prefetch(
            segmenter, idle=lambda: len(node.queue) == 0 and not node.worker.busy
        )
        node.get_logger().info(
            f"models ready in {time.monotonic() - t0:.1f} s: vlp={s.vlp_model} "
            f"proposals={s.proposal_model} device={s.device} parser={parser}"
        )
        return None

    def unload(self) -> None:
        """Drop the models and give their (GPU) memory back."""
        self.node.frames.stop_prefetch()
        if self.segmenter is None:
            return
        self.segmenter = None
        import gc

        from ..models.loading import clear_model_cache

        clear_model_cache()  # also empties the CUDA cache
        gc.collect()

    def update_settings(self, parameters: Parameters) -> None:
        """New live settings reach the models between two commands."""
        if self.segmenter is not None:
            self.segmenter.update_settings(parameters.segmenter)

    def track_proposals(self, rgb: Any) -> Any:
        """Track thread: the frame's mask proposals for re-association (one proposal pass)."""
        segmenter = self.segmenter
        if segmenter is None:
            raise RuntimeError("models are not loaded")
        return segmenter.frame_proposals(rgb)[0]

    # ------------------------------------------------------------------ one command
    def process(self, job: Job) -> None:
        """Worker thread: run one command and answer it (the per-command work)."""
        node, answers = self.node, self.node.answers
        segmenter = self.segmenter
        if segmenter is None:
            answers.fail(job, node.commands.not_answering() or "models are not loaded")
            return
        if job.image is None:  # arrived while the node was starting
            error = node.frames.pick(job)
            if error:
                answers.fail(job, error)
                return
        if node.closing:  # no conversion, no model work (a second answer is dropped)
            answers.fail(job, SHUTTING_DOWN)
            return
        try:
            rgb, sizes = model_input(job.image, node.settings.max_image_pixels)
        except UNUSABLE_IMAGE as exc:
            answers.fail(job, f"cannot use the image: {exc}")
            return
        try:
            model_result = self._segment(segmenter, job, rgb)
        except CommandCancelled as exc:
            answers.fail(job, str(exc))  # after "shutting down" the second answer is dropped
            return
        job.ran = True
        result = result_at_source(model_result, sizes)
        located = None
        if result.success and result.mask is not None:
            located = (
                self._locate(job, result)
                if job.use_depth
                else Located(error="no depth for an image given with the request")
            )
        point = located.camera.centroid if located and located.camera else None
        objects = self._objects_3d(job, result, point) if point is not None else ()
        msg = messages.segmentation(result, answers.info(job, point, objects))
        # prepared before the command: by the prefetcher, or by an earlier command whose fresh
        # frame the prefetch rule chose again (same scene, young enough)
        msg.prefetched = bool(getattr(model_result, "prefetched", False)) or (
            job.frame_source == "prepared" and bool(getattr(model_result, "frame_cached", False))
        )
        msg.frame_age_s = float(job.frame_age_s)
        if msg.success and located is not None:
            fill_3d(msg, located)
        mask = msg.mask if msg.success else None
        if msg.success:  # follow the object from the next frame on; the track exists before
            # the answer leaves, so a client may cancel it as soon as it has the answer
            node.tracking.on_answer(
                job.command_id, job.text, result, job.image, None, job.use_depth
            )
        answers.answer(job, msg, mask, messages.centroid_point(msg), located)
        answers.publish_debug(rgb, model_result, msg.header)  # at the size the models saw

    def _segment(self, segmenter: Segmenter, job: Job, rgb: Any) -> Any:
        """The models on one command, with its feedback and stop hooks: CommandCancelled at the
        next stage boundary once the action goal was cancelled or the node is shutting down
        (the process then ends as soon as that stage does, not after the whole command).
        """

        def progress(stage: str, igrs_pass: int) -> None:
            if job.cancelled is not None and job.cancelled.is_set():
                raise CommandCancelled(CANCELLED)
            if self.node.closing:
                raise CommandCancelled(SHUTTING_DOWN)
            if job.feedback is not None:
                job.feedback(stage, igrs_pass, 0)

        key = camera_frame_key(job.image.header, rgb) if job.use_depth else None
        prefetcher = self.node.frames.prefetcher
        progress("started", 0)
        # every command goes through the conversation: a reply or correction is answered from
        # the last question's candidates, anything else by the models (dialogue.py)
        answer = self.node.dialogue.answer
        if prefetcher is None:
            return answer(job.command_id, job.text, rgb, segmenter, key, progress, job.expression)
        with prefetcher.command():  # no prefetch stage starts while this runs
            result = answer(
                job.command_id, job.text, rgb, segmenter, key, progress, job.expression
            )
            # before the prefetcher wakes: the same scene is not redone (a reply ran no model)
            if result.success and not getattr(result, "in_reply_to", ""):
                self.node.frames.note_computed(job)
            return result

    def _objects_3d(self, job: Job, result: Any, point: Any) -> tuple[Any, ...]:
        """Each answered object in 3-D (camera frame; None where depth gives none): a single
        answer's is its own centroid (point), each object of a plural one is located anew.
        """
        objects = getattr(result, "objects", None) or []
        if len(objects) < 2:
            return (point,) * len(objects)
        return tuple(self._locate_one(job, o) for o in objects)

    def _locate_one(self, job: Job, obj: Any) -> Any:
        s, sensors = self.node.settings, self.node.frames.sensors
        match = sensors.match(job.image.header, s.depth_sync_tolerance_s)
        found, _ = object_in_camera(
            obj.mask,
            obj.grasp_point,
            match.depth,
            match.info,
            s.depth_erosion_px,
            s.image_rectified,
        )
        return found.centroid if found is not None else None

    def _locate(self, job: Job, result: Any) -> Located:
        """The answer's 3-D part: depth and camera_info matched to the image, the camera model,
        target_frame (spatial.py). Its failure is logged and kept in error_3d; 2-D stands.
        """
        node = self.node
        s, sensors = node.settings, node.frames.sensors
        header = job.image.header
        match = sensors.match(header, s.depth_sync_tolerance_s)
        transformer = node.transformer
        if transformer is not None:  # transform_timeout_s may have changed since configure
            transformer = FrameTransformer(
                transformer.buffer, transformer.target_frame, s.transform_timeout_s
            )
        located = locate(
            result.mask,
            result.grasp_point,
            header,
            match.depth,
            match.info,
            s.depth_erosion_px,
            s.image_rectified,
            transformer,
            match.reason,
        )
        if located.error and (sensors.has_depth or sensors.camera_info() is not None):
            what = "no 3-D centroid" if located.camera is None else "no 3-D in target_frame"
            node.get_logger().warning(f"command {job.command_id}: {what}: {located.error}")
        return located

    def on_job_error(self, job: Job, exc: BaseException) -> None:
        """A command raised past the pipeline's own handling (a bug, or an error outside its
        stages).
        """
        if is_out_of_memory(exc):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.node.answers.fail(job, f"out of GPU memory: {exc}".split("\n")[0])
            return
        self.node.answers.fail(job, f"internal error: {type(exc).__name__}: {exc}".split("\n")[0])
