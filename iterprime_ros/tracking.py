"""Follow the referred object between model runs: optical-flow propagation + re-association.

Why: a grasp does not happen at the instant of the command; the arm (often with the camera on
it) moves and so does the object in the image. Running the whole method on every frame costs
seconds, so between model runs the mask is carried by dense optical flow (OpenCV DIS, or
Farneback), which costs milliseconds; when fresh mask proposals exist (a command or a
proposal pass ran on a frame) the propagated mask is snapped to the proposal that overlaps it
best and still looks like the object (colour histogram of the command's mask), so drift is
corrected and a lost object can be found again.

States (the numbers are Segmentation.TRACK_*): TRACKING (a mask this frame), LOST (no
trustworthy mask: the object left the image, is hidden, or no longer looks like itself; the
track keeps a predicted box and waits for proposals), ENDED (cancelled, replaced by a new
command, older than ``track_timeout_s`` or lost for longer than ``max_lost_s``). Pure numpy +
OpenCV: the node, the replay and the world evaluation share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import cv2
import numpy as np

from .core.geometry import grasp_point, mask_bbox, mask_centroid


class TrackStatus(IntEnum):
    """Track states; values equal the Segmentation message's TRACK_* constants."""

    NONE = 0
    TRACKING = 1
    LOST = 2
    ENDED = 3


FLOW_METHODS = ("dis", "farneback", "none")


@dataclass(frozen=True)
class TrackerSettings:
    """Knobs of the tracker (the node's track_* parameters map onto these).

    flow: dis | farneback | none (none: the mask only moves when proposals re-associate it).
    flow_max_side: flow is computed on frames scaled down to at most this side (cost grows
    with the pixels; the mask is warped at full size).
    """

    flow: str = "dis"
    flow_max_side: int = 320
    min_area_fraction: float = 0.3  # lost below this fraction of the recent area
    min_inside_fraction: float = 0.25  # lost when less of the predicted box is in the image
    min_appearance: float = 0.5  # histogram similarity (1 - Bhattacharyya) to the first mask
    reassociate_min_iou: float = 0.3  # a proposal replaces the mask above this IoU with it
    reassociate_gate: float = 2.0  # while lost: centroid distance limit, in object sizes
    max_lost_s: float = 3.0  # lost longer than this ends the track
    track_timeout_s: float = 0.0  # a track ends this long after it started (0: never)
    area_memory: float = 0.1  # weight of the new area in the running reference area

    def __post_init__(self) -> None:
        if self.flow not in FLOW_METHODS:
            raise ValueError(f"flow must be one of {', '.join(FLOW_METHODS)}, not {self.flow!r}")
        if self.flow_max_side < 16:
            raise ValueError("flow_max_side must be at least 16")
        for name in ("min_area_fraction", "min_inside_fraction", "min_appearance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if not 0.0 < self.reassociate_min_iou <= 1.0:
            raise ValueError("reassociate_min_iou must be within (0, 1]")
        if not 0.0 < self.area_memory <= 1.0:
            raise ValueError("area_memory must be within (0, 1]")
        if self.max_lost_s < 0 or self.track_timeout_s < 0 or self.reassociate_gate <= 0:
            raise ValueError("max_lost_s, track_timeout_s >= 0 and reassociate_gate > 0")


@dataclass
class TrackResult:
    """The track on one frame. mask/bbox/centroid/grasp_point are None unless TRACKING;
    reason is "" while TRACKING, else why the object is lost or the track ended.

    source: what gave this frame's mask: start | flow | proposal | none.
    box: the predicted (x0, y0, x1, y1) box, floats, possibly outside the image (LOST too).
    """

    track_id: int
    status: TrackStatus
    reason: str
    stamp: float
    mask: np.ndarray | None = None
    bbox: tuple[int, int, int, int] | None = None  # x, y, w, h
    centroid: tuple[float, float] | None = None
    grasp_point: tuple[int, int] | None = None
    source: str = "none"
    appearance: float = float("nan")
    box: tuple[float, float, float, float] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in (TrackStatus.TRACKING, TrackStatus.LOST)


def appearance_histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised hue-saturation-value histogram (12 x 6 x 6 bins) of the masked RGB pixels."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist(
        [hsv], [0, 1, 2], mask.astype(np.uint8), [12, 6, 6], [0, 180, 0, 256, 0, 256]
    )
    total = float(hist.sum())
    return hist / total if total > 0 else hist


def appearance_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 - Bhattacharyya distance of two histograms: 1 = same colours, 0 = disjoint."""
    if not a.any() or not b.any():
        return 0.0
    return float(1.0 - cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a | b)
    return inter / union if union else 0.0


class FlowEstimator:
    """Backward dense flow: for each pixel x of the current frame, where it was in the previous
    frame is x + flow(x). Computed on grey frames scaled to ``max_side``.
    """

    def __init__(self, method: str = "dis", max_side: int = 320) -> None:
        self.method = method
        self.max_side = max_side
        self._dis = None
        if method == "dis":
            # Finest pyramid level, no variational refinement: the refinement smooths the flow
            # across the object's edge, so background next to a moving object inherits its
            # motion and the mask grows a little every frame (measured: IoU 0.3 after 15
            # frames of a moving square with it, 1.0 without; test_tracking.py).
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            self._dis.setFinestScale(0)
            self._dis.setVariationalRefinementIterations(0)

    def grey(self, image: np.ndarray) -> np.ndarray:
        """The frame as the flow sees it (grey, scaled): computed once per frame, kept."""
        g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        h, w = g.shape
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            g = cv2.resize(
                g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
            )
        return g

    def backward(
        self, grey_prev: np.ndarray, grey_cur: np.ndarray, size: tuple[int, int]
    ) -> np.ndarray:
        """H x W x 2 float32 flow at full size `size` (h, w) from the current to the previous."""
        if self.method == "dis":
            flow = self._dis.calc(grey_cur, grey_prev, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(grey_cur, grey_prev, None, 0.5, 3, 7, 3, 5, 1.1, 0)
        h, w = size
        fh, fw = flow.shape[:2]
        if (fh, fw) != (h, w):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / fw
            flow[..., 1] *= h / fh
        return flow


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The previous frame's mask carried to the current frame by the backward flow (pixels that
    come from outside the previous image are background).
    """
    h, w = mask.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        mask.astype(np.float32),
        xs + flow[..., 0],
        ys + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return warped >= 0.5


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    x, y, w, h = mask_bbox(mask)
    return float(x), float(y), float(x + w), float(y + h)


def _inside_fraction(box: tuple[float, float, float, float], h: int, w: int) -> float:
    x0, y0, x1, y1 = box
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    if area <= 0:
        return 0.0
    ix = max(min(x1, w) - max(x0, 0.0), 0.0)
    iy = max(min(y1, h) - max(y0, 0.0), 0.0)
    return ix * iy / area


def _touches_border(box: tuple[float, float, float, float], h: int, w: int) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= 0 or y0 <= 0 or x1 >= w or y1 >= h


class MaskTracker:
    """One track at a time: start it with a command's mask, update it with every later frame.

    Not thread-safe: one caller (the node's tracking step, the replay, the evaluation).
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        s = self.settings
        self.flow = FlowEstimator(s.flow, s.flow_max_side) if s.flow != "none" else None
        self.track_id = 0
        self.status = TrackStatus.NONE
        self.last: TrackResult | None = None
        self._mask: np.ndarray | None = None
        self._grey: np.ndarray | None = None
        self._hist: np.ndarray | None = None
        self._ref_area = 0.0
        self._box: tuple[float, float, float, float] | None = None
        self._t_start = 0.0
        self._lost_since: float | None = None
        self._lost_reason = ""

    @property
    def active(self) -> bool:
        return self.status in (TrackStatus.TRACKING, TrackStatus.LOST)

    def start(
        self, image: np.ndarray, mask: np.ndarray, stamp: float, track_id: int | None = None
    ) -> TrackResult:
        """A new track from a command's answer (any active track is replaced: call end() first
        to announce it).
        """
        m = np.asarray(mask, dtype=bool)
        if m.shape != image.shape[:2] or not m.any():
            raise ValueError("the start mask must be a non-empty H x W mask of the image")
        self.track_id = self.track_id + 1 if track_id is None else int(track_id)
        self._mask = m.copy()
        self._hist = appearance_histogram(image, m)
        self._ref_area = float(m.sum())
        self._box = _box_of(m)
        self._grey = self.flow.grey(image) if self.flow is not None else None
        self._t_start = float(stamp)
        self._lost_since = None
        self.status = TrackStatus.TRACKING
        self.last = self._result(stamp, "", "start", 1.0)
        return self.last

    def end(self, reason: str, stamp: float | None = None) -> TrackResult | None:
        """End the active track; its final ENDED result, or None when there was none."""
        if not self.active:
            return None
        if stamp is None:
            stamp = self.last.stamp if self.last is not None else 0.0
        t = float(stamp)
        self.status = TrackStatus.ENDED
        self._mask = None
        self._grey = None
        self.last = TrackResult(self.track_id, TrackStatus.ENDED, reason, t, box=self._box)
        return self.last

    def update(
        self, image: np.ndarray, stamp: float, proposals: np.ndarray | None = None
    ) -> TrackResult | None:
        """The track on a new frame (None when no track is active).

        proposals: N x H x W bool masks computed on this very frame, if any.
        """
        if not self.active:
            return None
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        s = self.settings
        stamp = float(stamp)
        if s.track_timeout_s > 0 and stamp - self._t_start > s.track_timeout_s:
            return self.end(f"timeout: the track is older than {s.track_timeout_s:g} s", stamp)
        h, w = image.shape[:2]
        assert self._mask is not None and self._box is not None
        if self._mask.shape != (h, w):
            return self.end(f"the image size changed to {w} x {h}", stamp)

        # 1. propagate the mask and the predicted box with the flow
        mask, source = self._propagate(image)
        if self.flow is not None:
            timings["flow"] = time.perf_counter() - t0

        # 2. re-associate with fresh proposals
        if proposals is not None and len(proposals):
            t1 = time.perf_counter()
            picked = self._associate(image, mask, np.asarray(proposals, dtype=bool))
            if picked is not None:
                mask, source = picked, "proposal"
            timings["reassociate"] = time.perf_counter() - t1

        # 3. decide the state
        area = float(mask.sum())
        appearance = (
            appearance_similarity(self._hist, appearance_histogram(image, mask)) if area else 0.0
        )
        if (
            area >= 0.9 * self._ref_area
            and appearance >= s.min_appearance
            and not _touches_border(_box_of(mask), h, w)
        ):
            self._box = _box_of(mask)  # the whole object is seen: its box is the mask's
        reason = self._why_lost(area, appearance, source, h, w)
        if reason:
            # what is left of the mask is not trusted (it would drift with an occluder): only
            # proposals near the predicted box can bring the object back
            self._mask = np.zeros_like(mask)
            if self._lost_since is None:
                self._lost_since = stamp
            self._lost_reason = reason
            if stamp - self._lost_since > s.max_lost_s:
                return self.end(f"lost for more than {s.max_lost_s:g} s: {reason}", stamp)
            self.status = TrackStatus.LOST
            self.last = TrackResult(
                self.track_id, TrackStatus.LOST, reason, stamp, source=source,
                appearance=appearance, box=self._box, timings=timings,
            )  # fmt: skip
            self.last.timings["total"] = time.perf_counter() - t0
            return self.last
        self._mask = mask
        self._lost_since = None
        self._ref_area += s.area_memory * (area - self._ref_area)
        self.status = TrackStatus.TRACKING
        self.last = self._result(stamp, "", source, appearance, timings)
        self.last.timings["total"] = time.perf_counter() - t0
        return self.last

    def _propagate(self, image: np.ndarray) -> tuple[np.ndarray, str]:
        """(mask, source): the last mask and the predicted box moved by the optical flow from
        the last frame to this one ("flow"), or left as they are without a flow ("none").
        """
        assert self._mask is not None and self._box is not None
        mask, source = self._mask, "none"
        if self.flow is None:
            return mask, source
        h, w = image.shape[:2]
        grey = self.flow.grey(image)
        flow = self.flow.backward(self._grey, grey, (h, w))
        self._grey = grey
        if mask.any():
            mask = warp_mask(mask, flow)
            source = "flow"
        region = mask if mask.any() else None
        moved = -flow[region] if region is not None else -flow.reshape(-1, 2)
        dx, dy = (float(v) for v in np.median(moved, axis=0))
        x0, y0, x1, y1 = self._box
        self._box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        return mask, source

    def _why_lost(self, area: float, appearance: float, source: str, h: int, w: int) -> str:
        """Why the object counts as lost on this frame ("" while it is seen): it left the
        image, is hidden or too small, or no longer looks like itself.
        """
        s = self.settings
        inside = _inside_fraction(self._box, h, w)
        if inside < s.min_inside_fraction:
            return "left the image"
        if not area or (source != "proposal" and area < s.min_area_fraction * self._ref_area):
            # (a proposal that matched is the object, however much of it is hidden)
            if inside < 0.99:  # the predicted box is cut by the frame: it is leaving
                return "left the image"
            return "occluded or too small" if area else "hidden (no pixel of it is left)"
        if appearance < s.min_appearance:
            return f"does not look like the object any more (appearance {appearance:.2f})"
        return ""

    def _associate(
        self, image: np.ndarray, mask: np.ndarray, proposals: np.ndarray
    ) -> np.ndarray | None:
        """The proposal that is this object now, or None.

        With a mask: the best IoU with it among proposals that look like the object. Without
        (lost): among proposals that look like it, of a similar size and within
        ``reassociate_gate`` object sizes of the predicted box and at least half inside it, the
        one whose box overlaps the predicted box most.
        """
        s = self.settings
        h, w = mask.shape
        if proposals.shape[1:] != (h, w):
            return None
        areas = proposals.reshape(len(proposals), -1).sum(1)
        live = mask.any() and self.status == TrackStatus.TRACKING
        best, best_score = None, -1.0
        for k in np.flatnonzero(areas > 0):
            p = proposals[k]
            if live:
                score = mask_iou(p, mask)
                if score < s.reassociate_min_iou:
                    continue
            else:
                ratio = areas[k] / max(self._ref_area, 1.0)
                if not 0.25 <= ratio <= 4.0:
                    continue
                px0, py0, px1, py1 = _box_of(p)
                bx0, by0, bx1, by1 = self._box
                d = np.hypot((px0 + px1 - bx0 - bx1) / 2, (py0 + py1 - by0 - by1) / 2)
                if d > s.reassociate_gate * np.sqrt(self._ref_area):
                    continue
                ix = max(min(px1, bx1) - max(px0, bx0), 0.0)
                iy = max(min(py1, by1) - max(py0, by0), 0.0)
                inter = ix * iy
                own = (px1 - px0) * (py1 - py0)
                gx, gy = 0.25 * (bx1 - bx0), 0.25 * (by1 - by0)  # the prediction is not exact
                cx = max(min(px1, bx1 + gx) - max(px0, bx0 - gx), 0.0)
                cy = max(min(py1, by1 + gy) - max(py0, by0 - gy), 0.0)
                if cx * cy < 0.5 * own:  # mostly outside where the object should be (a merge)
                    continue
                union = own + (bx1 - bx0) * (by1 - by0) - inter
                score = inter / union if union > 0 else 0.0
                score -= 1e-3 * d  # ties: the nearer one
            if score <= best_score:
                continue
            if (
                appearance_similarity(self._hist, appearance_histogram(image, p))
                < s.min_appearance
            ):
                continue
            best, best_score = k, score
        return None if best is None else proposals[best].copy()

    def _result(
        self,
        stamp: float,
        reason: str,
        source: str,
        appearance: float,
        timings: dict[str, float] | None = None,
    ) -> TrackResult:
        m = self._mask
        assert m is not None
        return TrackResult(
            track_id=self.track_id,
            status=TrackStatus.TRACKING,
            reason=reason,
            stamp=stamp,
            mask=m.copy(),
            bbox=mask_bbox(m),
            centroid=mask_centroid(m),
            grasp_point=grasp_point(m),
            source=source,
            appearance=appearance,
            box=self._box,
            timings=timings or {},
        )


def track_result_view(track: TrackResult, command: Any | None = None) -> Any:
    """The track on one frame as a pipeline.SegmentationResult, so the node and the replay build
    its Segmentation with the same field mapping as a command's answer: success = TRACKING,
    error = why not (lost / ended), the command's expression and primary word, score = 1 +
    appearance similarity (a tracked frame has no heat map).
    """
    from .pipeline import SegmentationResult

    ok = track.status == TrackStatus.TRACKING and track.mask is not None
    return SegmentationResult(
        success=ok,
        error="" if ok else (track.reason or track.status.name.lower()),
        command=getattr(command, "command", ""),
        expression=getattr(command, "expression", ""),
        primary_word=getattr(command, "primary_word", ""),
        mask=track.mask if ok else None,
        centroid=track.centroid,
        grasp_point=track.grasp_point,
        bbox=track.bbox,
        score=1.0 + track.appearance if ok and np.isfinite(track.appearance) else 0.0,
        timings=dict(track.timings),
    )
