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
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Hashable, Iterator, Mapping

import numpy as np
import torch

from .core import english
from .core.backend import ProposalBackend, VLPBackend
from .core.geometry import grasp_point, mask_bbox, mask_centroid
from .core.igrs import IGRSSettings, run_igrs
from .core.selection import SelectionSettings, select_proposal
from .core.spatial import spatial_cues
from .core.text import (
    CommandError,
    ExpressionParser,
    NormaliserSettings,
    build_prompt,
    normalise_command,
    token_roles,
)
from .jemalloc import retain_freed_memory
from .models.loading import (
    DEFAULT_PROPOSAL_MODEL,
    DEFAULT_VLP_MODEL,
    DeviceUnavailableError,
    ModelNotFoundError,
)

log = logging.getLogger(__name__)


@dataclass
class SegmenterSettings:
    """Every knob of the pipeline; field names match config/segment.yaml (the node's
    parameters).
    """

    # compute
    device: str = "auto"  # auto | cuda | cpu
    half_precision: bool = True  # fp16 weights on CUDA when autocast is off; ignored on CPU
    # mixed precision with fp32 weights (models/precision.py): auto = fp16 on CUDA, bf16 on a CPU
    # with native bf16 (AVX512-BF16/AMX), else off; off | bf16 | fp16
    autocast: str = "auto"
    # models (Hugging Face id resolved from the local cache, or a local folder)
    vlp_model: str = DEFAULT_VLP_MODEL
    proposal_model: str = DEFAULT_PROPOSAL_MODEL
    vlp_backend: str = "blip_itm"  # registry name (models/__init__.py)
    proposal_backend: str = "mask2former"
    # VLP / Grad-CAM
    # -1: the backend's own layer, 6 for BLIP (LAVIS compute_gradcam), 8 for ALBEF (method.md §1)
    gradcam_layer: int = -1
    prompt_template: str = "there is a {}"
    first_token: str = "enc"  # "enc": BLIP's [ENC] as the ITM's first token; "cls": keep [CLS]
    max_text_tokens: int = 35
    # PWEM / IGRS
    aggregation: str = "pwem"  # pwem | global | local | gvlp | mean
    no_primary: str = "reference"  # reference | gvlp
    igrs_iterations: int = 3  # 1 turns IGRS off
    igrs_alpha: float = 0.2
    binarize_threshold: float = 0.5
    stop_rule: str = "reference"  # reference | soft_itm | none (no early stop; benchmarks)
    # proposals and selection
    proposal_threshold: float = 0.35
    proposal_shortest_edge: int = 800
    proposal_longest_edge: int = 1333
    max_components: int = 12
    empty_selection: str = "fail"  # fail | best_heat
    selection_score: str = "reference"  # reference | coverage | whole (core/selection.py)
    spatial_prior: bool = False  # weigh proposals by the expression's spatial words
    # text
    primary_tags: tuple[str, ...] = ("NN",)
    parser: str = "auto"  # auto | benepar | spacy
    normalize_commands: bool = True
    extra_command_phrases: tuple[
        str, ...
    ] = ()  # more leading phrases to strip ("robot", names ...)
    check_language: bool = True
    # caches
    frame_cache_size: int = 2  # frames whose proposals + image embedding are kept

    def __post_init__(self) -> None:
        self.primary_tags = tuple(self.primary_tags)
        self.extra_command_phrases = tuple(
            p for p in self.extra_command_phrases if p and p.strip()
        )
        if "{}" not in self.prompt_template:
            raise ValueError(f"prompt_template {self.prompt_template!r} has no '{{}}' placeholder")
        if self.empty_selection not in ("fail", "best_heat"):
            raise ValueError(
                f"empty_selection must be fail or best_heat, not {self.empty_selection!r}"
            )
        if self.gradcam_layer < -1:
            raise ValueError(
                f"gradcam_layer must be -1 (the backend's own) or a layer index, "
                f"not {self.gradcam_layer}"
            )
        if self.max_components < 1:
            raise ValueError("max_components must be at least 1")
        if self.frame_cache_size < 1:
            raise ValueError("frame_cache_size must be at least 1")
        from .models.precision import AUTOCAST_MODES

        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(
                f"autocast must be one of {', '.join(AUTOCAST_MODES)}, not {self.autocast!r}"
            )
        self.igrs_settings()  # validates aggregation, stop rule, alpha, iterations
        self.selection_settings()  # validates the selection variant

    def backend_gradcam_layer(self) -> int | None:
        """The layer to build a VLP backend with; None lets the backend take its own default."""
        return None if self.gradcam_layer < 0 else self.gradcam_layer

    def igrs_settings(self) -> IGRSSettings:
        return IGRSSettings(
            max_iterations=self.igrs_iterations,
            alpha=self.igrs_alpha,
            threshold=self.binarize_threshold,
            stop_rule=self.stop_rule,
            mode=self.aggregation,
            no_primary=self.no_primary,
            enabled=self.igrs_iterations > 1,
        )

    def selection_settings(self) -> SelectionSettings:
        return SelectionSettings(score=self.selection_score, spatial_prior=self.spatial_prior)

    def normaliser_settings(self) -> NormaliserSettings:
        base = NormaliserSettings()
        return NormaliserSettings(
            enabled=self.normalize_commands,
            leading_phrases=tuple(base.leading_phrases) + self.extra_command_phrases,
            check_language=self.check_language,
        )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], ignore_unknown: bool = False
    ) -> "SegmenterSettings":
        """Settings from a mapping (ROS parameters, YAML); lists become tuples.

        ignore_unknown: skip keys that are not settings (the node's own parameters such as
        queue_size); otherwise they raise ValueError, so a typo is not silently ignored.
        """
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown and not ignore_unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        )

    def replace(self, **changes: Any) -> "SegmenterSettings":
        values = asdict(self)
        values.update(changes)
        return SegmenterSettings(**values)


@dataclass
class SegmentationResult:
    """The answer to one command. On failure `error` says why and the arrays may be None.

    centroid: (u, v) float pixels (column, row); grasp_point: (u, v) int pixels inside the mask;
    bbox: (x, y, w, h); score: selection score (1 + mean heat in the mask); itm_score: ITM match
    probability of the IGRS pass whose heat map was used (the last pass run, except when the
    soft_itm rule stops and returns the previous pass); timings: seconds per stage (stages served
    from the frame
    cache are absent; see frame_cached).
    """

    success: bool
    error: str
    command: str
    expression: str = ""
    primary_word: str = ""
    mask: np.ndarray | None = None  # H x W bool
    centroid: tuple[float, float] | None = None
    grasp_point: tuple[int, int] | None = None
    bbox: tuple[int, int, int, int] | None = None
    score: float = 0.0
    itm_score: float = 0.0
    iterations: int = 0
    heatmap: np.ndarray | None = None  # H x W float32 in [0, 1]
    timings: dict[str, float] = field(default_factory=dict)
    # diagnostics
    parser: str = ""
    proposal_index: int | None = None
    num_proposals: int = 0
    flagged: bool = False  # chosen by the empty_selection="best_heat" fallback
    itm_scores: list[float] = field(default_factory=list)
    stop_reason: str = ""
    frame_cached: bool = False  # proposals and image embedding came from the frame cache
    prefetched: bool = False  # ... and were computed ahead of the command (prepare_frame)
    image_size: tuple[int, int] | None = None

    @property
    def latency_s(self) -> float:
        return self.timings.get("total", 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays; the mask as its area)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("mask", "heatmap"):
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out["mask_area"] = int(self.mask.sum()) if self.mask is not None else 0
        out["latency_s"] = self.latency_s
        return out


@dataclass
class _Frame:
    """Per-image work, computed on first use and reused by later commands on the same frame."""

    size: tuple[int, int]
    embedding: Any = None
    proposals: np.ndarray | None = None
    proposals_tensor: torch.Tensor | None = None  # a GPU copy for the selection sums (CUDA only)
    components: dict[tuple[int, int], int] = field(
        default_factory=dict
    )  # connected components per proposal
    areas: dict[int, int] = field(default_factory=dict)  # mask area per proposal
    prefetched: bool = False  # filled by prepare_frame, not by a command

    @property
    def complete(self) -> bool:
        return self.proposals is not None and self.embedding is not None


@dataclass
class PrepareResult:
    """What one ``prepare_frame`` call did: stage times (s), whether the frame is now complete,
    whether anything was computed, and whether it stopped early to let a command run.
    """

    timings: dict[str, float] = field(default_factory=dict)
    complete: bool = False
    computed: bool = False
    yielded: bool = False


def image_key(image: np.ndarray) -> str:
    """A content hash of the image (blake2b over the pixels, ~1 ms for VGA): same pixels, same
    frame.
    """
    data = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((data.shape, data.dtype.str)).encode())
    h.update(memoryview(data).cast("B"))
    return h.hexdigest()


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, whichever way torch reports it."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cuda_cache() -> None:
    """Give the CUDA caching allocator's free blocks back after an OOM, so the next command
    starts from what is really in use (a no-op without CUDA).
    """
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelLoadError(RuntimeError):
    """A model is there but cannot be loaded (corrupt weights, a broken config...); names which
    one.
    """


@contextmanager
def _loading(what: str, name: str) -> Iterator[None]:
    """Say which model failed: a truncated safetensors file alone does not."""
    try:
        yield
    except (ModelNotFoundError, DeviceUnavailableError):  # already say what to do
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ModelLoadError(
            f"cannot load the {what} model {name!r}: {type(exc).__name__}: {detail}"
        ) from exc


class _Failed(Exception):
    """Internal: stop the current command with a reason (becomes success=False)."""


class CommandCancelled(Exception):
    """Raised by a progress callback to stop the command (an action goal cancelled); it passes
    through Segmenter.segment to the caller instead of becoming a failure result.
    """


Progress = Callable[[str, int], None]  # (stage, IGRS pass number from 1; 0 outside IGRS)


class _ReportingVLP:
    """The VLP backend with a progress report before each IGRS text pass."""

    def __init__(self, vlp: Any, report: Progress) -> None:
        self._vlp, self._report, self._passes = vlp, report, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vlp, name)

    def text_pass(self, *args: Any, **kwargs: Any) -> Any:
        self._passes += 1
        self._report("igrs", self._passes)
        return self._vlp.text_pass(*args, **kwargs)


def gradcam_layer_for(vlp: Any, requested: int) -> int | None:
    """The layer a loaded VLP backend should explain for the gradcam_layer setting.

    -1 is the backend's own default. ValueError (one line) when the layer has no
    cross-attention in this model, so a live change never breaks the next command. None for a
    backend without a Grad-CAM layer (a caller-supplied stand-in).
    """
    if not hasattr(vlp, "gradcam_layer"):
        return None
    layer = (
        getattr(vlp, "default_gradcam_layer", vlp.gradcam_layer) if requested < 0 else requested
    )
    layers = getattr(vlp, "gradcam_layers", None)
    if layers is not None and layer not in layers:
        raise ValueError(
            f"gradcam_layer {layer} has no cross-attention in the loaded model: its "
            f"cross-attention layers are {layers.start}..{layers.stop - 1}"
        )
    return int(layer)


class Segmenter:
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
        retain_freed_memory()  # every entry point, the Python API included (jemalloc.py)
        if vlp is None or proposals is None:
            from .models import create_proposal_backend, create_vlp_backend

            if vlp is None:
                with _loading("VLP", s.vlp_model):
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
                with _loading("proposal", s.proposal_model):
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
        self._frames: OrderedDict[Hashable, _Frame] = OrderedDict()
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

    def clear_cache(self) -> None:
        with self._lock:
            self._frames.clear()

    def _frame_key(self, image: np.ndarray, frame_id: Hashable | None) -> Hashable:
        if frame_id is not None:
            return ("id", frame_id, image.shape)
        return ("hash", image_key(image))

    def _frame(self, key: Hashable, image: np.ndarray) -> tuple[_Frame, bool]:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
            return frame, True
        frame = _Frame(size=image.shape[:2])
        self._frames[key] = frame
        while len(self._frames) > self.settings.frame_cache_size:
            self._frames.popitem(last=False)
        return frame, False

    def _stage(self, timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
        if self._progress is not None and name != "igrs":  # IGRS reports each pass itself
            self._progress(name, 0)
        t0 = time.perf_counter()
        events = None
        if self._cuda_events:
            events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            events[0].record()
        try:
            return fn()
        except Exception as exc:
            if is_out_of_memory(exc):
                self.free_gpu_memory()
                raise _Failed(
                    f"out of GPU memory during {name.replace('_', ' ')}; try half_precision, a "
                    f"smaller proposal model or device cpu ({exc})".split("\n")[0]
                ) from exc
            raise
        finally:
            if events is not None:
                events[1].record()
                self._events.setdefault(name, []).append(events)
            else:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    def _read_events(self, timings: dict[str, float]) -> None:
        """CUDA: the stage times recorded since the last call, once the device has finished."""
        if not self._events:
            return
        try:
            last = list(self._events.values())[-1][-1][1]
            last.synchronize()
            for name, pairs in self._events.items():
                timings[name] = timings.get(name, 0.0) + sum(
                    a.elapsed_time(b) / 1000.0 for a, b in pairs
                )
        except Exception:  # pragma: no cover - a failed device reports through the stage's error
            pass
        finally:
            self._events = {}

    def prepare_frame(
        self,
        image: np.ndarray,
        frame_id: Hashable | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PrepareResult:
        """Compute (or find) a frame's proposals and image embedding ahead of a command.

        One stage at a time, each under the lock: before each stage it gives way (returns with
        ``yielded``) when a command is waiting for the segmenter or `should_stop` says so, so a
        command never waits for more than the one stage in flight. A frame it completes is
        marked prefetched.
        """
        image = _check_image(image)
        out = PrepareResult()
        key = self._frame_key(image, frame_id)
        for stage in ("proposals", "image_encoding"):
            if self._waiting > 0 or (should_stop is not None and should_stop()):
                out.yielded = True
                self.stats["prefetch_yields"] += 1
                # let the waiting command take the lock before anyone calls again (no spinning)
                with self._waiting_changed:
                    self._waiting_changed.wait_for(lambda: self._waiting == 0, timeout=5.0)
                break
            with self._lock:
                frame, _ = self._frame(key, image)
                done = frame.proposals if stage == "proposals" else frame.embedding
                if done is None:
                    self._fill_stage(frame, image, out.timings, stage)
                    self._read_events(out.timings)
                    out.computed = True
                    self.stats["prefetch_stages"] += 1
                if frame.complete and out.computed:
                    frame.prefetched = True
                    self.stats["frames_computed"] += 1
        with self._lock:
            frame = self._frames.get(key)
            out.complete = frame is not None and frame.complete
        return out

    def _fill_stage(
        self, frame: _Frame, image: np.ndarray, timings: dict[str, float], stage: str
    ) -> None:
        if stage == "proposals":
            frame.proposals_tensor = None
            frame.components = {}
            frame.areas = {}
            frame.proposals, frame.proposals_tensor = self._stage(
                timings, "proposals", lambda: self._propose(image)
            )
        else:
            frame.embedding = self._stage(
                timings, "image_encoding", lambda: self.vlp.encode_image(image)
            )

    def frame_proposals(
        self, image: np.ndarray, frame_id: Hashable | None = None
    ) -> tuple[np.ndarray, bool]:
        """(N x H x W bool proposals of the frame, whether they came from the frame cache).

        For the tracker's re-association (tracking.py): a frame a command ran on costs nothing
        more; another frame costs one proposal pass (no image encoding).
        """
        image = _check_image(image)
        timings: dict[str, float] = {}
        with self._lock:
            frame, _ = self._frame(self._frame_key(image, frame_id), image)
            cached = frame.proposals is not None
            if not cached:
                frame.components = {}
                frame.areas = {}
                # _propose returns (host masks, device copy or None) since issue 17
                frame.proposals, frame.proposals_tensor = self._stage(
                    timings, "proposals", lambda: self._propose(image)
                )
            return frame.proposals, cached

    def _fill_frame(self, frame: _Frame, image: np.ndarray, timings: dict[str, float]) -> bool:
        """Compute what the frame lacks; True when nothing had to be computed."""
        cached = True
        if frame.proposals is None:
            cached = False
            frame.prefetched = False
            self._fill_stage(frame, image, timings, "proposals")
        if frame.embedding is None:
            cached = False
            frame.prefetched = False
            self._fill_stage(frame, image, timings, "image_encoding")
        if cached:
            self.stats["frame_hits"] += 1
        else:
            self.stats["frames_computed"] += 1
        return cached

    def _propose(self, image: np.ndarray) -> tuple[np.ndarray, torch.Tensor | None]:
        """Host masks, and on CUDA the device copy the backend made them in (for selection)."""
        if self._selection_device is not None:
            tensor_fn = getattr(self.proposals, "propose_tensor", None)
            if callable(tensor_fn):
                tensor = tensor_fn(image).to(self._selection_device, torch.bool)
                return tensor.cpu().numpy(), tensor  # one host copy per frame
            masks = np.asarray(self.proposals.propose(image), dtype=bool)
            return masks, torch.from_numpy(masks).to(self._selection_device)
        return np.asarray(self.proposals.propose(image), dtype=bool), None

    # ------------------------------------------------------------------ the command
    def segment(
        self,
        image: np.ndarray,
        command: str,
        frame_id: Hashable | None = None,
        progress: Progress | None = None,
    ) -> SegmentationResult:
        """Segment the object `command` refers to in `image` (H x W x 3 uint8 RGB).

        frame_id: an explicit frame identity (e.g. the ROS header stamp); without it the image
        content is hashed. progress(stage, igrs_pass) is called as each stage starts (the node's
        action feedback); it may raise CommandCancelled, which is the only exception that leaves
        this method. Never raises for bad input or model failures: see SegmentationResult.
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
                self._run(image, command, frame_id, result)
                result.success = True
            except CommandCancelled:
                raise
            except _Failed as exc:
                result.error = str(exc)
            except CommandError as exc:
                result.error = str(exc)
            except Exception as exc:
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
        self, image: Any, command: Any, frame_id: Hashable | None, result: SegmentationResult
    ) -> None:
        s = self.settings
        timings = result.timings
        if not isinstance(command, str):
            raise _Failed(f"the command must be text, got {type(command).__name__}")
        try:
            image = _check_image(image)
        except ValueError as exc:
            raise _Failed(str(exc)) from None
        result.image_size = (int(image.shape[0]), int(image.shape[1]))

        # 1. text: command -> expression -> parse (cached per expression)
        t0 = time.perf_counter()
        expression = normalise_command(command, self._normaliser)
        timings["normalise"] = time.perf_counter() - t0
        result.expression = expression
        t0 = time.perf_counter()
        parsed = self.parser.parse(expression)
        timings["parse"] = time.perf_counter() - t0
        result.parser = parsed.parser
        result.primary_word = parsed.primary_word or ""

        # 2. per-frame work: proposals + image embedding (cached per frame)
        frame, _ = self._frame(self._frame_key(image, frame_id), image)
        result.frame_cached = self._fill_frame(frame, image, timings)
        result.prefetched = result.frame_cached and frame.prefetched
        proposals = frame.proposals
        assert proposals is not None
        result.num_proposals = int(proposals.shape[0])

        # 3. heat map: Grad-CAM + PWEM + IGRS
        text, start = build_prompt(s.prompt_template, expression)
        token_valid_fn = getattr(self.vlp, "token_valid", None)
        roles = token_roles(
            parsed,
            self.vlp.token_offsets(text),
            start,
            token_valid_fn(text) if callable(token_valid_fn) else None,
        )
        vlp = self.vlp if self._progress is None else _ReportingVLP(self.vlp, self._progress)
        heat = self._stage(
            timings,
            "igrs",
            lambda: run_igrs(vlp, frame.embedding, text, roles, result.image_size, self._igrs),
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

        # 4. selection and where the object is
        if self._progress is not None:
            self._progress("selection", 0)
        t0 = time.perf_counter()
        sel = select_proposal(
            heat.heatmap,
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
            timings["selection"] = time.perf_counter() - t0
            raise _Failed(f"nothing selected: {sel.reason}")
        mask = proposals[sel.index]
        result.proposal_index = int(sel.index)
        result.mask = mask.copy()
        result.centroid = mask_centroid(mask)
        result.grasp_point = grasp_point(mask)
        result.bbox = mask_bbox(mask)
        timings["selection"] = time.perf_counter() - t0


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"the image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"the image must be H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}"
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"the image is too small ({image.shape[1]} x {image.shape[0]})")
    return image
