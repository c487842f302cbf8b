"""Referring-segmentation metrics (method.md §7), general enough for RefCOCO/PhraseCut and the
world.

- IoU of one expression: (I + 1e-6) / (U + 1e-6) at the original resolution, so two empty
  masks score 1 and an empty prediction against a non-empty truth scores ~0.
- mIoU: the mean of the per-expression IoUs (RefCOCO, RefCOCO+, RefCOCOg).
- oIoU: sum of intersections over sum of unions (PhraseCut's "overall IoU").
- Prec@X: the fraction of expressions whose IoU is strictly greater than X (0.5 ... 0.9).
- "Position" split: expressions containing left, right, up, down, top or bottom as a word
  (also the derived words leftmost, rightmost, topmost, bottommost, upper, uppermost); the
  others are "Others". Whole words only, so "cup" does not count as "up".

A failed expression (no mask) is scored with an empty prediction: IoU ~ 0 unless the truth
is empty too. Accumulate with MetricAccumulator, or call the functions on arrays.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

EPS = 1e-6
PRECISION_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
POSITION_WORDS: frozenset[str] = frozenset({"left", "right", "up", "down", "top", "bottom"})
POSITION_DERIVED: frozenset[str] = frozenset(
    {"leftmost", "rightmost", "topmost", "bottommost", "upper", "uppermost"}
)
_WORD = re.compile(r"[a-z]+")


def intersection_union(pred: np.ndarray | None, gt: np.ndarray) -> tuple[int, int]:
    """(|pred ∧ gt|, |pred ∨ gt|) of two H x W masks; pred None (a failure) counts as empty."""
    gt = np.asarray(gt, bool)
    if pred is None:
        return 0, int(gt.sum())
    pred = np.asarray(pred, bool)
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction {pred.shape} and ground truth {gt.shape} differ in shape; "
            "score at the original resolution"
        )
    return int(np.logical_and(pred, gt).sum()), int(np.logical_or(pred, gt).sum())


def iou(pred: np.ndarray | None, gt: np.ndarray) -> float:
    """(I + 1e-6) / (U + 1e-6)."""
    i, u = intersection_union(pred, gt)
    return (i + EPS) / (u + EPS)


def mean_iou(ious: Iterable[float]) -> float:
    vals = list(ious)
    return float(np.mean(vals)) if vals else float("nan")


def overall_iou(intersections: Iterable[int], unions: Iterable[int]) -> float:
    """ΣI / ΣU (nan when every union is empty)."""
    si, su = sum(intersections), sum(unions)
    return float(si / su) if su > 0 else float("nan")


def precision_at(
    ious: Iterable[float], thresholds: Sequence[float] = PRECISION_THRESHOLDS
) -> dict[float, float]:
    """{X: fraction of IoU > X} (strict)."""
    vals = np.asarray(list(ious), float)
    if vals.size == 0:
        return {t: float("nan") for t in thresholds}
    return {t: float(np.mean(vals > t)) for t in thresholds}


def is_position_expression(text: str, words: Iterable[str] | None = None) -> bool:
    """True when `text` contains a position word (module doc) as a whole word."""
    vocab = frozenset(words) if words is not None else POSITION_WORDS | POSITION_DERIVED
    return any(w in vocab for w in _WORD.findall(text.lower()))


is_position = is_position_expression  # short name used by the ablation tables


@dataclass
class SplitMetrics:
    count: int
    miou: float
    oiou: float
    precision: dict[float, float]

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "mIoU": self.miou,
            "oIoU": self.oiou,
            **{f"Prec@{t:g}": v for t, v in self.precision.items()},
        }


@dataclass
class MetricAccumulator:
    """Collects per-expression results; summary() gives overall / position / others splits."""

    thresholds: tuple[float, ...] = PRECISION_THRESHOLDS
    records: list[dict] = field(default_factory=list)

    def add(self, pred: np.ndarray | None, gt: np.ndarray, text: str, **info) -> float:
        i, u = intersection_union(pred, gt)
        value = (i + EPS) / (u + EPS)
        self.records.append(
            {
                "text": text,
                "intersection": i,
                "union": u,
                "iou": value,
                "position": is_position_expression(text),
                **info,
            }
        )
        return value

    def add_values(self, intersection: int, union: int, text: str, **info) -> float:
        value = (intersection + EPS) / (union + EPS)
        self.records.append(
            {
                "text": text,
                "intersection": int(intersection),
                "union": int(union),
                "iou": value,
                "position": is_position_expression(text),
                **info,
            }
        )
        return value

    def _split(self, rows: list[dict]) -> SplitMetrics:
        ious = [r["iou"] for r in rows]
        return SplitMetrics(
            count=len(rows),
            miou=mean_iou(ious),
            oiou=overall_iou([r["intersection"] for r in rows], [r["union"] for r in rows]),
            precision=precision_at(ious, self.thresholds),
        )

    def summary(self, key: str | None = None) -> dict[str, SplitMetrics]:
        """{"overall", "position", "others"} (and one entry per value of record[key] if given)."""
        out = {
            "overall": self._split(self.records),
            "position": self._split([r for r in self.records if r["position"]]),
            "others": self._split([r for r in self.records if not r["position"]]),
        }
        if key is not None:
            for value in sorted({str(r.get(key)) for r in self.records}):
                out[f"{key}={value}"] = self._split(
                    [r for r in self.records if str(r.get(key)) == value]
                )
        return out


def format_percent(x: float) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"


# Fields a record must hold with these types to be summed (bool is not an integer here).
_RECORD_TYPES = {
    "intersection": (int,),
    "union": (int,),
    "iou": (int, float),
    "time_s": (int, float),
    "ok": (bool,),
    "expression": (str,),
}


def record_problem(obj: Mapping[str, Any]) -> str:
    """Why a results record cannot be used ("" when it can): a field of the wrong type."""
    for name, types in _RECORD_TYPES.items():
        if name not in obj:
            continue
        value = obj[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            kinds = " or ".join(t.__name__ for t in types)
            return f"field {name!r} is {value!r} ({type(value).__name__}), expected {kinds}"
    return ""
