"""Segmenter: one image + one spoken command -> one SegmentationResult (method.md §0).

Why a class: the models load once, and the per-image work (proposals, image encoding with the
cross-attention keys/values of the image, the proposals' connected-component counts, on CUDA
a GPU copy of the proposals for selection) is cached and reused by later commands on the same
frame, as is the parse of an expression. docs/performance.md has the figures.
Prefetch (prefetch.py): ``prepare_frame`` fills a frame's cache ahead of a command, one stage at
a time, and gives way to a command between stages, so a command waits for at most the one stage
in flight (``timings["wait"]``); the result says whether its frame was prefetched.
On CUDA nothing inside a command waits for the device except the final result: stage times come
from CUDA events read once at the end, the proposals stay on the device for selection.
Every failure a user can cause or a robot can meet (empty or non-English command, nothing
selected, CUDA out of memory, a bad image) comes back as ``success=False`` with a reason,
never as an exception, so the node can answer every command.

The module holds the command path only; its parts live beside it: settings.py (every knob),
result.py (the answer), frames.py (the per-frame cache and prefetch), stages.py (progress,
cancellation and failures), answers.py (confidence, candidates, ambiguity and several objects
from a selection). Their public names are imported here too, so ``iterprime_ros.pipeline``
keeps offering them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np

from .answers import fill_answer
from .core import english
from .core.backend import ProposalBackend, VLPBackend
from .core.geometry import grasp_point, mask_bbox, mask_centroid
from .core.igrs import run_igrs
from .core.replies import plural_request
from .core.selection import select_proposal
from .core.spatial import spatial_cues
from .core.text import (
    CommandError,
    ExpressionParser,
    build_prompt,
    normalise_command,
    token_roles,
)
from .frames import Frame, FrameWork, PrepareResult, image_key
from .result import SegmentationResult
from .settings import SegmenterSettings, gradcam_layer_for
from .stages import (
    CommandCancelled,
    CommandFailed,
    ModelLoadError,
    Progress,
    ReportingVLP,
    check_image,
    free_cuda_cache,
    is_out_of_memory,
    loading,
)

__all__ = [
    "CommandCancelled",
    "ModelLoadError",
    "PrepareResult",
    "Progress",
    "SegmentationResult",
    "Segmenter",
    "SegmenterSettings",
    "free_cuda_cache",
    "gradcam_layer_for",
    "image_key",
    "is_out_of_memory",
]

log = logging.getLogger(__name__)


class Segmenter(FrameWork):
    """Image + spoken command -> SegmentationResult, with models loaded once and per-frame caching.

    Build from settings (loads the backends named there), or hand in ready backends
    (``Segmenter.from_backends``) -- tests, the eval and bench harnesses. ``raise_unexpected``
    re-raises programming errors instead of turning them into failure results (tests).
    """

    def __init__(
        self,
        settings: SegmenterSettings | None = None,
        *,
        vlp: VLPBackend | None = None,
        proposals: ProposalBackend | None = None,
        parser: ExpressionParser | None = None,
        raise_unexpected: bool = False,
    ) -> None:
        self.settings = settings or SegmenterSettings()
        s = self.settings
        if vlp is None or proposals is None:
            from .models import create_proposal_backend, create_vlp_backend

            if vlp is None:
                with loading("VLP", s.vlp_model):
                    vlp = create_vlp_backend(
                        s.vlp_backend,
                        model=s.vlp_model,
                        device=s.device,
                        gradcam_layer=s.backend_gradcam_layer(),
                        half_precision=s.half_precision,
                        autocast=s.autocast,
                        first_token=s.first_token,
                        max_text_tokens=s.max_text_tokens,
                    )
            if proposals is None:
                with loading("proposal", s.proposal_model):
                    proposals = create_proposal_backend(
                        s.proposal_backend,
                        model=s.proposal_model,
                        device=s.device,
                        half_precision=s.half_precision,
                        autocast=s.autocast,
                        threshold=s.proposal_threshold,
                        shortest_edge=s.proposal_shortest_edge,
                        longest_edge=s.proposal_longest_edge,
                    )
        self.vlp = vlp
        self.proposals = proposals
        # called after an out-of-memory error; an attribute so a test can watch the CUDA path run
        self.free_gpu_memory: Callable[[], None] = free_cuda_cache
        self.parser = parser or ExpressionParser(primary_tags=s.primary_tags, parser=s.parser)
        self.raise_unexpected = raise_unexpected
        self._igrs = s.igrs_settings()
        self._normaliser = s.normaliser_settings()
        self._selection = s.selection_settings()
        self._frames: OrderedDict[Hashable, Frame] = OrderedDict()
        self._lock = threading.RLock()
        self._progress: Progress | None = None  # set for the length of one segment() call
        self._waiting = 0  # commands waiting for the lock: prepare_frame gives way to them
        self._waiting_lock = threading.Lock()
        self._waiting_changed = threading.Condition(self._waiting_lock)
        self.stats = {
            "commands": 0,
            "frames_computed": 0,
            "frame_hits": 0,
            "prefetch_stages": 0,
            "prefetch_yields": 0,
        }
        # CUDA kernels run asynchronously: stage times come from CUDA events, read once the
        # command's result is on the host (no synchronize per stage)
        self._cuda_events = any(
            getattr(getattr(b, "device", None), "type", None) == "cuda" for b in (vlp, proposals)
        )
        self._events: dict[str, list[Any]] = {}
        # selection sums over every proposal (N x H x W): on the GPU when the proposals come from
        # one
        prop_device = getattr(proposals, "device", None)
        self._selection_device = (
            prop_device if getattr(prop_device, "type", None) == "cuda" else None
        )

    @classmethod
    def from_backends(
        cls,
        vlp: VLPBackend,
        proposals: ProposalBackend,
        settings: SegmenterSettings | None = None,
        **kwargs: Any,
    ) -> "Segmenter":
        return cls(settings, vlp=vlp, proposals=proposals, **kwargs)

    def update_settings(self, settings: SegmenterSettings) -> None:
        """Take settings changed at run time (the node's `ros2 param set`) between two commands.

        Only what needs no reload may differ: the method's thresholds, IGRS, aggregation, prompt,
        selection and command normalising, the Grad-CAM layer and the proposal threshold (the
        cached proposals are dropped then). ValueError for anything else, nothing changed.
        """
        reload = ("device", "half_precision", "vlp_model", "proposal_model", "vlp_backend")
        reload += ("proposal_backend", "first_token", "max_text_tokens", "primary_tags")
        reload += ("parser", "frame_cache_size", "proposal_shortest_edge", "proposal_longest_edge")
        reload += ("autocast",)
        changed = [n for n in reload if getattr(settings, n) != getattr(self.settings, n)]
        if changed:
            raise ValueError(f"these settings need the models reloaded: {', '.join(changed)}")
        layer = gradcam_layer_for(self.vlp, settings.gradcam_layer)
        igrs, normaliser = settings.igrs_settings(), settings.normaliser_settings()
        with self._lock:
            if layer is not None:
                self.vlp.gradcam_layer = layer
            if settings.proposal_threshold != self.settings.proposal_threshold:
                set_threshold = getattr(self.proposals, "set_threshold", None)
                if callable(set_threshold):
                    set_threshold(settings.proposal_threshold)
                    self._frames.clear()
            self.settings, self._igrs, self._normaliser = settings, igrs, normaliser

    # ------------------------------------------------------------------ caches
    def warmup(self) -> str:
        """Load the parser and the command check's English words now (spaCy/benepar take
        seconds) instead of on the first command.
        """
        kind = self.parser.kind
        english.warm_up()
        return kind

    # ------------------------------------------------------------------ the command
    def segment(
        self,
        image: np.ndarray,
        command: str,
        frame_id: Hashable | None = None,
        progress: Progress | None = None,
        *,
        expression: str | None = None,
    ) -> SegmentationResult:
        """Segment the object `command` refers to in `image` (H x W x 3 uint8 RGB).

        frame_id: an explicit frame identity (e.g. the ROS header stamp); without it the image
        content is hashed. progress(stage, igrs_pass) is called as each stage starts (the node's
        action feedback); it may raise CommandCancelled, which is the only exception that leaves
        this method. Never raises for bad input or model failures: see SegmentationResult.
        expression: the command already normalised by the caller (core.command.normalise_command
        with this segmenter's normaliser_settings, as the node does at intake); the segmenter
        then uses it as is and does not normalise again, and `command` is only reported back.
        """
        t_start = time.perf_counter()
        result = SegmentationResult(
            success=False, error="", command=command if isinstance(command, str) else ""
        )
        timings = result.timings
        with self._waiting_lock:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiting_lock:
                self._waiting -= 1
                self._waiting_changed.notify_all()
        # time spent waiting for a stage in flight (a prefetch stage or another command)
        timings["wait"] = time.perf_counter() - t_start
        try:
            self.stats["commands"] += 1
            self._progress = progress
            try:
                result.success = True
                self._run(image, command, frame_id, result, expression)
            except CommandCancelled:
                raise
            except (CommandFailed, CommandError) as exc:
                result.success = False
                result.error = str(exc)
            except Exception as exc:
                result.success = False
                if is_out_of_memory(exc):  # pragma: no cover - caught in _stage already
                    result.error = f"out of GPU memory: {exc}".split("\n")[0]
                elif self.raise_unexpected:
                    raise
                else:
                    log.exception("command %r failed", command)
                    result.error = f"internal error: {type(exc).__name__}: {exc}".split("\n")[0]
            finally:
                self._progress = None
                self._read_events(timings)
                timings["total"] = time.perf_counter() - t_start
        finally:
            self._lock.release()
        if not result.success:
            log.info("command %r failed: %s", command, result.error)
        return result

    def _run(
        self,
        image: Any,
        command: Any,
        frame_id: Hashable | None,
        result: SegmentationResult,
        expression: str | None,
    ) -> None:
        timings = result.timings
        if not isinstance(command, str):
            raise CommandFailed(f"the command must be text, got {type(command).__name__}")
        try:
            image = check_image(image)
        except ValueError as exc:
            raise CommandFailed(str(exc)) from None
        result.image_size = (int(image.shape[0]), int(image.shape[1]))

        # 1. text: command -> expression (unless the caller normalised it) -> parse
        t0 = time.perf_counter()
        if expression is None:
            expression = normalise_command(command, self._normaliser)
            timings["normalise"] = time.perf_counter() - t0
        result.expression = expression
        plural = plural_request(expression) if self.settings.plural_commands else None
        said = plural.singular if plural is not None else expression

        # 2. per-frame work: proposals + image embedding (cached per frame)
        frame, _ = self._frame(self._frame_key(image, frame_id), image)
        result.frame_cached = self._fill_frame(frame, image, timings)
        result.prefetched = result.frame_cached and frame.prefetched
        assert frame.proposals is not None
        result.num_proposals = int(frame.proposals.shape[0])

        # 3. heat map: Grad-CAM + PWEM + IGRS; 4. selection and where the object is
        heat = self._heat(frame, said, result)
        self._select(frame, said, heat, result)
        fill_answer(result, image, heat, frame.proposals, self.settings, plural)

    def _heat(self, frame: Frame, expression: str, result: SegmentationResult) -> np.ndarray:
        """Parse the expression and run Grad-CAM + PWEM + IGRS over the frame's embedding."""
        s, timings = self.settings, result.timings
        t0 = time.perf_counter()
        parsed = self.parser.parse(expression)
        timings["parse"] = time.perf_counter() - t0
        result.parser = parsed.parser
        result.primary_word = parsed.primary_word or ""
        text, start = build_prompt(s.prompt_template, expression)
        token_valid_fn = getattr(self.vlp, "token_valid", None)
        roles = token_roles(
            parsed,
            self.vlp.token_offsets(text),
            start,
            token_valid_fn(text) if callable(token_valid_fn) else None,
        )
        vlp = self.vlp if self._progress is None else ReportingVLP(self.vlp, self._progress)
        size = result.image_size
        heat = self._stage(
            timings,
            "igrs",
            lambda: run_igrs(vlp, frame.embedding, text, roles, size, self._igrs),
        )
        for i, dt in enumerate(heat.pass_times_s):
            timings[f"igrs_pass_{i}"] = dt
        result.heatmap = heat.heatmap
        result.iterations = heat.iterations
        result.itm_scores = list(heat.itm_scores)
        # the pass whose map is returned: the last one run, or the one before it when soft_itm
        # stops
        result.itm_score = float(heat.itm_scores[heat.returned_pass]) if heat.itm_scores else 0.0
        result.stop_reason = heat.stop_reason
        return heat.heatmap

    def _select(
        self, frame: Frame, expression: str, heat: np.ndarray, result: SegmentationResult
    ) -> None:
        """Choose the proposal (core.selection) and say where the object is."""
        s = self.settings
        if self._progress is not None:
            self._progress("selection", 0)
        t0 = time.perf_counter()
        proposals = frame.proposals
        assert proposals is not None
        sel = select_proposal(
            heat,
            proposals,
            s.max_components,
            s.empty_selection,
            proposals_tensor=frame.proposals_tensor,
            component_cache=frame.components,
            area_cache=frame.areas,
            settings=self._selection,
            cues=spatial_cues(expression) if s.spatial_prior else (),
        )
        result.score = float(sel.score)
        result.flagged = bool(sel.flagged)
        if sel.index is None:
            result.timings["selection"] = time.perf_counter() - t0
            raise CommandFailed(f"nothing selected: {sel.reason}")
        mask = proposals[sel.index]
        result.proposal_index = int(sel.index)
        result.mask = mask.copy()
        result.centroid = mask_centroid(mask)
        result.grasp_point = grasp_point(mask)
        result.bbox = mask_bbox(mask)
        result.timings["selection"] = time.perf_counter() - t0
