"""Per-frame work of the segmenter: the proposals and the image embedding of a frame, computed
once and reused by every later command on the same frame, and filled ahead of a command by
prefetching.

Why a module of its own: the frame cache and its stage timing are one job (what a frame
costs and when it is paid), apart from what a command does with a ready frame (pipeline.py).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import numpy as np
import torch

from .core.device_masks import DeviceMasks
from .stages import CommandFailed, Progress, check_image, is_out_of_memory


@dataclass
class Frame:
    """Per-image work, computed on first use and reused by later commands on the same frame."""

    size: tuple[int, int]
    embedding: Any = None
    proposals: Any = None  # N x H x W bool: np.ndarray, or DeviceMasks on the GPU path
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


class FrameWork:
    """The frame cache and stage timing that Segmenter inherits.

    It expects the segmenter's attributes: settings, vlp, proposals, stats, free_gpu_memory,
    _lock, _waiting, _waiting_changed, _progress, _cuda_events, _events, _selection_device.
    """

    _frames: OrderedDict[Hashable, Frame]
    _progress: Progress | None

    def clear_cache(self) -> None:
        with self._lock:
            self._frames.clear()

    def _frame_key(self, image: np.ndarray, frame_id: Hashable | None) -> Hashable:
        if frame_id is not None:
            return ("id", frame_id, image.shape)
        return ("hash", image_key(image))

    def _frame(self, key: Hashable, image: np.ndarray) -> tuple[Frame, bool]:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
            return frame, True
        frame = Frame(size=image.shape[:2])
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
                raise CommandFailed(
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
        image = check_image(image)
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
        self, frame: Frame, image: np.ndarray, timings: dict[str, float], stage: str
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
        image = check_image(image)
        timings: dict[str, float] = {}
        with self._lock:
            frame, _ = self._frame(self._frame_key(image, frame_id), image)
            cached = frame.proposals is not None
            if not cached:
                frame.components = {}
                frame.areas = {}
                # _propose returns (host masks or DeviceMasks, device copy or None)
                frame.proposals, frame.proposals_tensor = self._stage(
                    timings, "proposals", lambda: self._propose(image)
                )
            return np.asarray(frame.proposals), cached

    def _fill_frame(self, frame: Frame, image: np.ndarray, timings: dict[str, float]) -> bool:
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

    def _propose(self, image: np.ndarray) -> tuple[Any, torch.Tensor | None]:
        """Host masks, and on CUDA the device copy the backend made them in (for selection)."""
        if self._selection_device is not None:
            tensor_fn = getattr(self.proposals, "propose_tensor", None)
            if callable(tensor_fn):
                tensor = tensor_fn(image).to(self._selection_device, torch.bool)
                return DeviceMasks(tensor), tensor  # read to the host only where indexed
            masks = np.asarray(self.proposals.propose(image), dtype=bool)
            return masks, torch.from_numpy(masks).to(self._selection_device)
        return np.asarray(self.proposals.propose(image), dtype=bool), None
