"""Tracker evaluation on world sequences: `iterprime eval --world --tracking`.

Each sequence (sequences.py) starts a track with the target's TRUE mask on frame 0 -- the
command is assumed answered correctly, so these figures measure following the object, not
finding it (the world table above measures that). Then every later frame goes through
tracking.MaskTracker in one of these setups:

- propagation: optical flow only (DIS or Farneback), never a proposal;
- re-association: no flow; ORACLE proposals (world.oracle: the true visible masks plus merged,
  half and table distractors) on every `period`-th frame, the mask held in between;
- both: flow on every frame, oracle proposals every `period`-th frame.

Per frame: IoU of the track's mask (empty unless TRACKING) with the target's true visible mask.
Reported: mIoU over frames where the target is visible; mIoU over all frames, where a frame
with the target out of sight scores 1 if the track says LOST/ENDED and 0 if it shows a mask;
frames lost while the target is visible; frames with a mask while it is not; wrong-object
switches (the track's mask moves onto another object: most of its pixels on one other
object); tracks ended early; the flow's CPU time per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...tracking import MaskTracker, TrackerSettings, TrackStatus, mask_iou
from .oracle import oracle_proposals
from .sequences import FPS, FRAME_H, FRAME_W, KINDS, Sequence, generate_sequence, sequence_seeds


@dataclass(frozen=True)
class Setup:
    """One row: what the tracker gets."""

    name: str
    flow: str  # dis | farneback | none
    period: int  # proposals every `period` frames (0: never)


SETUPS: tuple[Setup, ...] = (
    Setup("propagation (DIS)", "dis", 0),
    Setup("propagation (Farneback)", "farneback", 0),
    Setup("re-association, every frame", "none", 1),
    Setup("re-association, every 5th", "none", 5),
    Setup("both (DIS), every 5th", "dis", 5),
    Setup("both (DIS), every frame", "dis", 1),
)


def run_sequence(seq: Sequence, setup: Setup, settings: TrackerSettings) -> dict:
    """Track seq's target through it; per-frame records and counts."""
    tracker = MaskTracker(
        TrackerSettings(**{**settings.__dict__, "flow": setup.flow})  # one knob changed
    )
    stamps = seq.stamps
    tracker.start(seq.frames[0], seq.masks[0, seq.target], float(stamps[0]))
    ious, visible, lost_visible, shown_absent, switches, flow_s = [], [], 0, 0, 0, []
    wrong_before = False
    ended_at = None
    for t in range(1, len(seq)):
        proposals = None
        if setup.period and t % setup.period == 0:
            scene, _ = seq.scene(t)
            proposals = oracle_proposals(scene).masks if len(scene.objects) else None
        r = tracker.update(seq.frames[t], float(stamps[t]), proposals)
        truth = seq.masks[t, seq.target]
        seen = bool(truth.any())
        shown = r is not None and r.status == TrackStatus.TRACKING
        if r is not None and "flow" in r.timings:
            flow_s.append(r.timings["flow"])
        if r is not None and r.status == TrackStatus.ENDED and ended_at is None:
            ended_at = t
        if seen:
            ious.append(mask_iou(r.mask, truth) if shown else 0.0)
            lost_visible += not shown
        else:
            ious.append(0.0 if shown else 1.0)
            shown_absent += shown
        visible.append(seen)
        wrong = False
        if shown:
            area = np.count_nonzero(r.mask)
            for i in range(len(seq.objects)):
                if i != seq.target and np.count_nonzero(r.mask & seq.masks[t, i]) > 0.5 * area:
                    wrong = True
        switches += wrong and not wrong_before
        wrong_before = wrong
    v = np.asarray(visible)
    iou = np.asarray(ious)
    return {
        "frames": len(ious),
        "visible": int(v.sum()),
        "iou_visible_sum": float(iou[v].sum()),
        "iou_all_sum": float(iou.sum()),
        "lost_visible": int(lost_visible),
        "shown_absent": int(shown_absent),
        "switches": int(switches),
        "ended_early": ended_at is not None,
        "flow_s": flow_s,
    }


def evaluate_tracking(
    per_kind: int = 8,
    kinds=KINDS,
    setups=SETUPS,
    split: str = "test",
    settings: TrackerSettings | None = None,
    progress: bool = False,
) -> dict:
    """Rows = setups; per kind and overall."""
    settings = settings or TrackerSettings()
    seeds = sequence_seeds(split, per_kind)
    sequences = [generate_sequence(k, s) for k in kinds for s in seeds]
    rows = []
    for setup in setups:
        t0 = time.perf_counter()
        by_kind: dict[str, list[dict]] = defaultdict(list)
        for seq in sequences:
            by_kind[seq.kind].append(run_sequence(seq, setup, settings))
        groups = {k: _aggregate(v) for k, v in by_kind.items()}
        groups["overall"] = _aggregate([r for v in by_kind.values() for r in v])
        rows.append({"setup": setup.__dict__, "groups": groups})
        if progress:
            o = groups["overall"]
            print(
                f"  {setup.name:30s} mIoU {100 * o['miou_visible']:5.1f}  "
                f"({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return {
        "rows": rows,
        "meta": {
            "sequences": len(sequences),
            "per_kind": per_kind,
            "kinds": list(kinds),
            "split": f"{split} (scene seeds {seeds[0]} + i)",
            "frames_per_sequence": len(sequences[0]) if sequences else 0,
            "frame_size": [FRAME_W, FRAME_H],
            "fps": FPS,
            "tracker": settings.__dict__,
            "proposals": "ORACLE (world.oracle on each frame's true visible masks)",
            "start": "the target's TRUE mask on frame 0",
        },
    }


def _aggregate(results: list[dict]) -> dict:
    frames = sum(r["frames"] for r in results)
    visible = sum(r["visible"] for r in results)
    flow = [s for r in results for s in r["flow_s"]]
    return {
        "sequences": len(results),
        "frames": frames,
        "visible": visible,
        "miou_visible": sum(r["iou_visible_sum"] for r in results) / max(visible, 1),
        "miou_all": sum(r["iou_all_sum"] for r in results) / max(frames, 1),
        "lost_visible": sum(r["lost_visible"] for r in results),
        "shown_absent": sum(r["shown_absent"] for r in results),
        "switches": sum(r["switches"] for r in results),
        "ended_early": sum(r["ended_early"] for r in results),
        "flow_ms": 1000 * float(np.mean(flow)) if flow else None,
    }


def flow_cost(sizes=((120, 160), (480, 640)), repeats: int = 20) -> dict[str, dict[str, float]]:
    """CPU ms per frame of the propagation (grey + flow + mask warp) and of the whole tracking
    step (MaskTracker.update: also the appearance check, bbox, centroid and grasp point) at
    typical sizes, on a smooth random texture shifted by 3 px (the cost hardly depends on the
    content).
    """
    import cv2

    from ...tracking import FlowEstimator, warp_mask

    out: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(0)
    for method in ("dis", "farneback"):
        fe = FlowEstimator(method, TrackerSettings().flow_max_side)
        for h, w in sizes:
            a = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
            b = np.roll(a, 3, axis=1)
            mask = np.zeros((h, w), bool)
            mask[h // 4 : h // 2, w // 4 : w // 2] = True
            ga = fe.grey(a)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                warp_mask(mask, fe.backward(ga, fe.grey(b), (h, w)))
                times.append(time.perf_counter() - t0)
            out.setdefault(method, {})[f"{w}x{h}"] = 1000 * float(np.median(times))
            # the whole tracking step as the node runs it (flow, warp, appearance, geometry)
            tracker = MaskTracker(TrackerSettings(flow=method))
            times = []
            for k in range(repeats):
                tracker.start(a, mask, 0.0)
                t0 = time.perf_counter()
                tracker.update(b, 0.03)
                times.append(time.perf_counter() - t0)
            key = f"{w}x{h} whole step"
            out[method][key] = 1000 * float(np.median(times))
    return out


def format_tracking_table(result: dict) -> str:
    meta = result["meta"]
    kinds = meta["kinds"]
    lines = [
        "Tracking on synthetic world SEQUENCES (not real video; ORACLE proposals; the track "
        "starts from the true mask)",
        f"{meta['sequences']} sequences ({meta['per_kind']} per kind: {', '.join(kinds)}), "
        f"{meta['frames_per_sequence']} frames of {meta['frame_size'][0]} x "
        f"{meta['frame_size'][1]} at {meta['fps']:g} fps, {meta['split']}",
        "",
        "setup                         | mIoU vis  mIoU all | lost(vis) shown(absent) switches "
        "ended | " + " ".join(f"{k[:8]:>8s}" for k in kinds),
        "------------------------------+--------------------+--------------------------------"
        "------+-" + "-" * (9 * len(kinds)),
    ]
    for row in result["rows"]:
        g = row["groups"]
        o = g["overall"]
        per = " ".join(f"{100 * g[k]['miou_visible']:8.1f}" for k in kinds if k in g)
        lines.append(
            f"{row['setup']['name']:29s} |   {100 * o['miou_visible']:5.1f}     "
            f"{100 * o['miou_all']:5.1f} | {o['lost_visible']:6d}/{o['visible']:<5d}"
            f"{o['shown_absent']:5d}/{o['frames'] - o['visible']:<5d}  {o['switches']:5d}"
            f"   {o['ended_early']:3d} | {per}"
        )
    lines += [
        "",
        "mIoU vis: over frames where the target is visible; mIoU all: a frame without the "
        "target scores 1 when the track reports LOST/ENDED, 0 when it shows a mask; "
        "lost(vis): frames the track reports no mask although the target is visible; "
        "shown(absent): frames with a mask while the target is out of sight or hidden; "
        "switches: times the mask moved onto another object; ended: tracks ended early "
        "(lost longer than max_lost_s). Per-kind columns: mIoU vis.",
    ]
    cost = meta.get("flow_cost_ms")
    if cost:
        lines.append(
            "CPU cost per frame (median ms; propagation = grey + flow + mask warp; whole step = "
            "MaskTracker.update): "
            + "; ".join(
                f"{m} " + ", ".join(f"{size} {ms:.1f}" for size, ms in sizes.items())
                for m, sizes in cost.items()
            )
        )
    return "\n".join(lines)


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking",
        action="store_true",
        help="instead: evaluate the mask tracker on generated world sequences (tracking_eval.py)",
    )
    parser.add_argument(
        "--sequences-per-kind",
        type=int,
        default=8,
        metavar="N",
        help="with --tracking: sequences of each kind (pan, zoom, move, occluder, leave)",
    )


def run_tracking_eval(args: argparse.Namespace) -> int:
    print(
        "NOTE: tracking evaluation -- synthetic sequences, ORACLE proposals, tracks started "
        "from the true mask.",
        file=sys.stderr,
    )
    split = getattr(args, "world_split", "test")
    result = evaluate_tracking(args.sequences_per_kind, split=split, progress=True)
    result["meta"]["flow_cost_ms"] = flow_cost()
    print(format_tracking_table(result))
    out: Path | None = getattr(args, "json_out", None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
