"""The evaluation loop: resumable, image-major, one results file per (dataset, split,
configuration).

Why this shape:
* **Resumable.** Every finished sample is one JSON line appended to
  ``OUT/{dataset}_{split}/{config}.jsonl`` and flushed + fsync'ed before the next starts, so a
  crash, a kill or Ctrl-C loses at most the sample in flight. On restart the finished sample ids
  are skipped; a torn last line (killed mid-write) is cut off, and a corrupt line anywhere else
  is skipped and reported by its line number -- every valid record is kept. The first line is a
  header with the configuration and model settings; resuming with different ones (or with a
  header that cannot be read) is refused, never erased, because mixing them would silently
  report numbers of no configuration. A lock file (``OUT/.iterprime-eval.lock``, flock) stops a
  second run on the same folder.
* **Image-major.** For each image, every configuration's samples on it run back to back, so the
  proposals and the image embedding (SharedBackends in predictors.py) are computed once per
  image for all ablation rows.
* **Summaries come from the files**, never from memory, so a resumed run reports exactly what
  an uninterrupted one would.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ...image_size import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageTooLargeError,
    check_file,
    downscale,
    mask_to_source,
)
from .datasets import Sample, load_image
from .metrics import (
    EPS,
    MetricAccumulator,
    intersection_union,
    is_position_expression,
    record_problem,
)
from .predictors import Predictor

log = logging.getLogger(__name__)

FORMAT = "iterprime-eval-v1"


class ResumeMismatchError(RuntimeError):
    """An existing results file was made with other settings (or its header is unreadable)."""


class OutputLockedError(RuntimeError):
    """Another run is writing to the same results folder."""


LOCK_NAME = ".iterprime-eval.lock"


class OutputLock:
    """An exclusive flock on OUT/.iterprime-eval.lock for the whole run: the kernel drops it
    when the process ends however it ends, so a killed run never leaves a stale lock.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fh: Any = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise OutputLockedError(
                f"another evaluation (pid {holder}) is writing to {self.path.parent}; wait for "
                "it or use another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def parse_lines(
    raw: bytes, path: Path
) -> tuple[dict[str, Any] | None, list[dict], list[int], int]:
    """(header, records, corrupt line numbers, end of the last complete line) of a results file.

    The header must be the first non-empty line; a line that is not a JSON object with an id
    (other than a torn last one, without its newline) is corrupt: skipped, never fatal.
    """
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    corrupt: list[int] = []
    pos, lineno, seen_first = 0, 0, False
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:
            break  # a torn last line: no newline
        lineno += 1
        line = raw[pos:nl]
        pos = nl + 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not seen_first:
            seen_first = True
            if isinstance(obj, dict) and isinstance(obj.get("header"), dict):
                header = obj["header"]
                continue
            if not (isinstance(obj, dict) and "id" in obj):
                corrupt.append(lineno)
                continue
            raise ResumeMismatchError(f"{path} is not an iterprime results file (no header line)")
        if isinstance(obj, dict) and "id" in obj and "header" not in obj:
            wrong = record_problem(obj)
            if not wrong:
                records.append(obj)
                continue
            log.warning("%s line %d: %s; the record is skipped", path, lineno, wrong)
        corrupt.append(lineno)
    return header, records, corrupt, pos


# ---------------------------------------------------------------------------- results files
class ResultStore:
    """One append-only JSON-lines file: a header line, then one record per finished sample."""

    def __init__(self, path: str | Path, header: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.header = dict(header)
        self.records: dict[str, dict[str, Any]] = {}
        self.corrupt_lines: list[int] = []
        self._fh: Any = None

    def open(self, overwrite: bool = False) -> "ResultStore":
        """Load finished records (after checking the header) and open for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            self._load_existing()
            self._fh = self.path.open("a", encoding="utf-8")
        else:
            self._fh = self.path.open("w", encoding="utf-8")
            self._write({"header": self.header})
        return self

    def _load_existing(self) -> None:
        raw = self.path.read_bytes()
        if not raw.strip():  # created, then killed before the header was written: nothing lost
            with self.path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"header": self.header}) + "\n")
            return
        header, records, corrupt, good_end = parse_lines(raw, self.path)
        if header is None and not records and not corrupt:  # only a torn header: nothing lost
            with self.path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"header": self.header}) + "\n")
            return
        if header is None:
            raise ResumeMismatchError(
                f"{self.path}: line 1 is not a readable header, so the {len(records)} record(s) "
                "in it cannot be checked against these settings; nothing was changed -- repair "
                "the header, use another --out, or --overwrite to discard them"
            )
        diff = _header_diff(header, self.header)
        if diff:
            raise ResumeMismatchError(
                f"{self.path} holds results made with other settings ({'; '.join(diff)}); use "
                "another --out "
                f"folder, or --overwrite to discard them"
            )
        for obj in records:
            self.records[str(obj["id"])] = obj
        if corrupt:
            log.warning(
                "%s: skipped %d corrupt line(s) (line %s); their samples run again, every "
                "other record is kept",
                self.path,
                len(corrupt),
                ", ".join(map(str, corrupt)),
            )
        self.corrupt_lines = corrupt
        if good_end < len(raw):
            log.warning(
                "%s: cutting a torn last line (line %d, %d bytes) left by an interrupted run",
                self.path,
                raw[:good_end].count(b"\n") + 1,
                len(raw) - good_end,
            )
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)

    def _write(self, obj: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, record: Mapping[str, Any]) -> None:
        self._write(record)
        self.records[str(record["id"])] = dict(record)

    def done(self, sample_id: str) -> bool:
        return sample_id in self.records

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _header_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Differences that matter for resuming ("identity" part of the header only)."""
    a, b = old.get("identity", {}), new.get("identity", {})
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)!r} -> {b.get(k)!r}")
    if old.get("format") != new.get("format"):
        out.append(f"format: {old.get('format')!r} -> {new.get('format')!r}")
    return out


def read_records(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a results file; corrupt lines and a torn last line are skipped."""
    p = Path(path)
    header, records, _, _ = parse_lines(p.read_bytes(), p)
    return header or {}, records


# ---------------------------------------------------------------------------- the run
@dataclass
class EvalTask:
    """The samples of one (dataset, split), already limited."""

    dataset: str
    split: str
    samples: list[Sample]

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.split}"


@dataclass
class RunPlan:
    """What to run: tasks x configurations. identity: what must match to resume (per config
    key).
    """

    tasks: list[EvalTask]
    predictors: Mapping[str, Predictor]
    out_dir: Path
    identity: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    overwrite: bool = False
    only: Mapping[str, Sequence[str]] | None = (
        None  # task name -> config keys (None: every config)
    )
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # image_size.py: downscale, then refuse

    def configs(self, task: EvalTask) -> list[str]:
        if self.only is None or task.name not in self.only:
            return list(self.predictors)
        return [k for k in self.predictors if k in self.only[task.name]]

    def path(self, task: EvalTask, key: str) -> Path:
        return self.out_dir / task.name / f"{key}.jsonl"

    def header(self, task: EvalTask, key: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dataset": task.dataset,
            "split": task.split,
            "config": key,
            "identity": dict(self.identity.get(key, {})),
        }


def score_sample(sample: Sample, prediction: Any, gt: np.ndarray) -> dict[str, Any]:
    """One results line: I, U, IoU (metrics.py), the Position flag and the prediction's
    diagnostics.
    """
    i, u = intersection_union(prediction.mask, gt)
    record: dict[str, Any] = {
        "id": sample.sample_id,
        "image_id": sample.image_id,
        "expression": sample.expression,
        "intersection": i,
        "union": u,
        "iou": (i + EPS) / (u + EPS),
        "gt_area": int(gt.sum()),
        "pred_area": int(prediction.mask.sum()) if prediction.mask is not None else 0,
        "position": is_position_expression(sample.expression),
        "ok": prediction.mask is not None,
        "iterations": int(prediction.iterations),
        "time_s": round(float(prediction.time_s), 4),
    }
    if sample.category:
        record["category"] = sample.category
    if sample.subsets:
        record["subsets"] = list(sample.subsets)
    if prediction.error:
        record["error"] = prediction.error
    if prediction.extras:
        record.update({k: v for k, v in prediction.extras.items() if k not in record})
    return record


def _groups(samples: Sequence[Sample]) -> Iterator[list[Sample]]:
    """Consecutive samples of one image (datasets sort by image)."""
    group: list[Sample] = []
    for s in samples:
        if group and s.image_id != group[0].image_id:
            yield group
            group = []
        group.append(s)
    if group:
        yield group


class Progress:
    """tqdm on stderr (counts, rate, ETA); a plain line every 5 s when tqdm is missing or not a
    TTY.
    """

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.count, self.enabled = total, 0, enabled and total > 0
        self.bar: Any = None
        self._t0 = time.monotonic()
        self._last = 0.0
        if not self.enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit="expr",
                dynamic_ncols=True,
                file=sys.stderr,
                smoothing=0.05,
                mininterval=0.5 if sys.stderr.isatty() else 10.0,
            )
        except ImportError:  # pragma: no cover - tqdm is a dependency of transformers
            self.bar = None

    def update(self, description: str, postfix: str = "") -> None:
        self.count += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description(description, refresh=False)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self._last >= 5.0 or self.count == self.total:
            self._last = now
            rate = self.count / max(now - self._t0, 1e-9)
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            print(
                f"{description}: {self.count}/{self.total} ({rate:.2f}/s, ETA {eta / 60:.1f} min) "
                f"{postfix}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(
    plan: RunPlan, progress: bool = True, on_record: Callable[[str, str, dict], None] | None = None
) -> int:
    """Evaluate every pending (task, config, sample); returns how many samples were run now.

    KeyboardInterrupt propagates after the files are closed: everything finished is on disk.
    """
    stores: dict[tuple[str, str], ResultStore] = {}
    with OutputLock(plan.out_dir):
        return _run_locked(plan, stores, progress, on_record)


def _run_locked(
    plan: RunPlan,
    stores: dict[tuple[str, str], "ResultStore"],
    progress: bool,
    on_record: Callable[[str, str, dict], None] | None,
) -> int:
    try:
        for task in plan.tasks:
            for key in plan.configs(task):
                stores[(task.name, key)] = ResultStore(
                    plan.path(task, key), plan.header(task, key)
                ).open(overwrite=plan.overwrite)
        pending = sum(
            1
            for task in plan.tasks
            for key in plan.configs(task)
            for s in task.samples
            if not stores[(task.name, key)].done(s.sample_id)
        )
        finished = (
            sum(len(task.samples) * len(plan.configs(task)) for task in plan.tasks) - pending
        )
        if finished:
            log.info("resuming: %d samples already done, %d to go", finished, pending)
        bar = Progress(pending, progress)
        ran = 0
        running: dict[tuple[str, str], list[float]] = {}
        try:
            for task in plan.tasks:
                for group in _groups(task.samples):
                    todo = {
                        key: [s for s in group if not stores[(task.name, key)].done(s.sample_id)]
                        for key in plan.configs(task)
                    }
                    if not any(todo.values()):
                        continue
                    try:
                        size = check_file(group[0].image_path, plan.max_image_pixels)
                    except ImageTooLargeError as exc:
                        log.warning(
                            "%s: %d sample(s) on %s skipped: %s",
                            task.name,
                            sum(map(len, todo.values())),
                            group[0].image_path,
                            exc,
                        )
                        continue
                    except OSError:
                        size = None  # not an image PIL knows: load_image says what is wrong
                    full = load_image(group[0].image_path)
                    h, w = full.shape[:2]
                    image = full if size is None else downscale(full, size)
                    gts: dict[str, np.ndarray] = {}
                    for key, samples in todo.items():
                        store = stores[(task.name, key)]
                        predictor = plan.predictors[key]
                        for sample in samples:
                            if sample.sample_id not in gts:
                                gts[sample.sample_id] = sample.gt_mask(h, w)
                            pred = predictor.predict(
                                image, sample.expression, frame_id=(task.dataset, sample.image_id)
                            )
                            if size is not None and size.downscaled and pred.mask is not None:
                                pred.mask = mask_to_source(pred.mask, size)
                            record = score_sample(sample, pred, gts[sample.sample_id])
                            store.append(record)
                            ran += 1
                            ious = running.setdefault((task.name, key), [])
                            ious.append(record["iou"])
                            if on_record is not None:
                                on_record(task.name, key, record)
                            bar.update(
                                f"{task.name} {key}", f"mIoU {100 * float(np.mean(ious)):.1f}"
                            )
        finally:
            bar.close()
        return ran
    finally:
        for store in stores.values():
            store.close()


# ---------------------------------------------------------------------------- summaries
@dataclass
class TaskSummary:
    """Metrics of one (dataset, split, config) over the selected samples found in its file."""

    dataset: str
    split: str
    config: str
    expected: int
    count: int
    failed: int
    groups: dict[
        str, dict[str, Any]
    ]  # "all", "position", "others" (+ "unseen"): SplitMetrics.as_dict()
    mean_time_s: float

    @property
    def complete(self) -> bool:
        return self.count == self.expected

    def metric(self, group: str = "all", name: str = "mIoU") -> float:
        return float(self.groups.get(group, {}).get(name, float("nan")))

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "config": self.config,
            "expected": self.expected,
            "count": self.count,
            "complete": self.complete,
            "failed": self.failed,
            "mean_time_s": self.mean_time_s,
            "groups": self.groups,
        }


def summarise_records(
    records: Iterable[Mapping[str, Any]],
    dataset: str,
    split: str,
    config: str,
    expected: int,
    subsets: Sequence[str] = (),
) -> TaskSummary:
    """Aggregate results lines with metrics.MetricAccumulator (overall, Position, Others,
    subsets).
    """
    rows = list(records)
    acc = MetricAccumulator()
    for r in rows:
        acc.add_values(int(r["intersection"]), int(r["union"]), str(r.get("expression", "")))
    summary = acc.summary()
    groups = {
        "all": summary["overall"].as_dict(),
        "position": summary["position"].as_dict(),
        "others": summary["others"].as_dict(),
    }
    for name in subsets:
        sub = MetricAccumulator()
        for r in rows:
            if name in r.get("subsets", ()):
                sub.add_values(
                    int(r["intersection"]), int(r["union"]), str(r.get("expression", ""))
                )
        groups[name] = sub.summary()["overall"].as_dict()
    times = [float(r.get("time_s", 0.0)) for r in rows]
    return TaskSummary(
        dataset=dataset,
        split=split,
        config=config,
        expected=expected,
        count=len(rows),
        failed=sum(1 for r in rows if not r.get("ok", True)),
        groups=groups,
        mean_time_s=float(np.mean(times)) if times else float("nan"),
    )


def summarise(plan: RunPlan) -> list[TaskSummary]:
    """Summaries of every (task, config) from the results files, restricted to the plan's
    samples.
    """
    out: list[TaskSummary] = []
    for task in plan.tasks:
        wanted = {s.sample_id for s in task.samples}
        subsets = sorted({name for s in task.samples for name in s.subsets})
        for key in plan.configs(task):
            path = plan.path(task, key)
            records = read_records(path)[1] if path.exists() else []
            chosen = {str(r["id"]): r for r in records if str(r["id"]) in wanted}
            out.append(
                summarise_records(
                    chosen.values(), task.dataset, task.split, key, len(wanted), subsets
                )
            )
    return out
