"""`iterprime bench`: how long from a command to its mask, per stage, against a naive run.

What is measured is the real pipeline: ``Segmenter`` (the object the node and `iterprime segment`
use) with its backends loaded through the project's loading code from model folders. The models
have the real architectures (BLIP ITM base, Mask2Former Swin-L with 200 queries, ...) built from
their ``transformers`` configs with random weights: the time of a forward or backward pass does
not depend on the weight values, so the figures hold for the released checkpoints. What
the random weights would change is fixed instead: IGRS runs all its passes
(``stop_rule="none"``; the node's reference rule may stop after 2), a command always gets a
mask (``empty_selection="best_heat"``: random masks are often too fragmented to be valid), and
the Mask2Former mask head is scaled so the masks cover about 8 % of the image on average (a
random head gives 200 full-image masks, every one covering the heat peak). The tokenizer is a
small word-level one that knows every word of the benchmark commands, so they tokenize to as
many tokens as with BERT's vocabulary.

Phases (each on the same photograph, skimage's "coffee", resized to --size):

* first command on a new frame: proposals + image encoding + IGRS passes + selection;
* command on a prefetched frame: ``Segmenter.prepare_frame`` ran on the frame before (untimed,
  as the node's prefetcher does while the robot is idle), so the command costs parse + text
  passes + selection;
* second command on the same frame: the frame cache serves proposals and image encoding;
* sustained: --commands commands in a row on one frame (an operator's follow-ups);
* naive (--naive): what the reference code does per IGRS pass -- parse again, recompute the
  proposals, encode the image again with the autograd graph through the vision encoder, and
  backpropagate the match logit through the whole model (``loss.backward()`` with parameter
  gradients) -- and selection with a Python loop over the proposals, connected components for
  each. It drives the same backends without their caches; the pipeline has no naive path.

Every command's "conversion" time is what the node adds around the pipeline: the camera
image message to an array (first command on a frame) and the result to the Segmentation and
mask messages (every command). Peak memory: host RSS (getrusage) and, on CUDA,
torch.cuda.max_memory_allocated per phase. On CUDA the clock is read after a synchronize.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..cli import add_set_argument, device_argument
from .architectures import (
    PROPOSAL_ARCHS,
    VLP_ARCHS,
    bench_image,
    build_once,
    build_proposals,
    build_vlp,
    frame_variant,
)
from .extras import (
    compare_previous,
    device_report,
    format_compare,
    format_knobs,
    format_preemption,
    knob_table,
    preemption_probe,
)
from .measure import (
    Calls,
    Clock,
    Conversion,
    counting_parser,
    current_rss_bytes,
    mib,
    peak_rss_bytes,
)
from .naive import naive_command, naive_select


def dtype_name(dtype: Any) -> str:
    from ...models.precision import dtype_name as name

    return name(dtype)


def jemalloc_active() -> bool:
    """True when jemalloc is mapped into this process (preloaded by the entry point)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="ignore") as f:
            return "jemalloc" in f.read()
    except OSError:  # pragma: no cover - not Linux
        return False


# Commands an operator might say about the coffee picture (every word is in the tiny vocabulary).
COMMANDS: tuple[str, ...] = (
    "pick up the red cup on the left",
    "the white plate",
    "could you grab the spoon next to the cup please",
    "the cup in the middle of the table",
    "bring me the small spoon on the right",
    "the big white bowl",
    "give me the cup near the plate",
    "the brown table",
)

STAGES: tuple[str, ...] = (
    "wait",
    "normalise",
    "parse",
    "proposals",
    "image_encoding",
    "igrs_pass_0",
    "igrs_pass_1",
    "igrs_pass_2",
    "igrs",
    "selection",
    "conversion",
    "total",
    "end_to_end",
)
STAGE_NOTES = {
    "igrs": "passes + PWEM",
    "total": "segment()",
    "end_to_end": "+ conversion",
}
# Warm-up commands: not among COMMANDS, so the timed first commands parse a new expression.
WARMUP_COMMANDS: tuple[str, ...] = ("find the bottle on the table", "the glass next to the phone")


# ---------------------------------------------------------------------------- the run
@dataclass
class BenchConfig:
    arch: str = "base"
    proposal_arch: str = "swin-l"
    device: str = "auto"
    size: tuple[int, int] = (640, 480)  # W x H
    commands: int = 8  # sustained: commands in a row on one frame
    frames: int = 3  # new frames (first command + a second command on each)
    warmup: int = 1  # untimed commands first (lazy init, allocator, cuDNN)
    naive: bool = True
    naive_commands: int = 1
    fp32: bool = False  # full precision: no autocast, no fp16 weights
    autocast: str = "auto"  # auto | off | bf16 | fp16 (SegmenterSettings.autocast)
    prefetched: bool = True  # also time a command on a prefetched frame
    compare: bool = False  # the previous CPU path (fp32, two-step resize) side by side
    knobs: bool = False  # the speed-knob table
    smaller_arch: str | None = None  # --report: the smaller backbone (default: swin-t)
    threads: int | None = None  # torch intra-op threads (default: torch's / OMP_NUM_THREADS)
    queries: int | None = None  # Mask2Former queries (default: the architecture's)
    model_dir: Path | None = None  # keep the built models here (reused by later runs)
    overrides: tuple[str, ...] = ()  # KEY=VALUE SegmenterSettings, as `iterprime segment --set`
    seed: int = 0


@dataclass
class _Phase:
    records: list[dict[str, Any]] = field(default_factory=list)


def _stats(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage: mean and median ms over the records (a stage a record skipped counts as 0 ms)."""
    names = [s for s in STAGES if any(s in r["timings_ms"] for r in records)]
    extra = sorted({k for r in records for k in r["timings_ms"]} - set(STAGES))
    out: dict[str, dict[str, float]] = {}
    for name in names + extra:
        values = [r["timings_ms"].get(name, 0.0) for r in records]
        out[name] = {
            "mean_ms": round(statistics.fmean(values), 2),
            "median_ms": round(statistics.median(values), 2),
            "n": len(values),
        }
    return out


def _selection_diagnostics(segmenter: Any, result: Any) -> dict[str, Any]:
    """How much work selection had (outside the timed region): proposals covering the heat peak,
    valid ones, and whether the best_heat fallback chose (then every proposal's sums are
    needed).
    """
    from ...core.selection import select_proposal

    out: dict[str, Any] = {"flagged": bool(result.flagged)}
    frame = next(reversed(segmenter._frames.values()), None) if segmenter._frames else None
    if frame is None or frame.proposals is None or result.heatmap is None:
        return out
    sel = select_proposal(
        result.heatmap,
        frame.proposals,
        segmenter.settings.max_components,
        segmenter.settings.empty_selection,
        component_cache=dict(frame.components),
    )
    peak = result.heatmap == result.heatmap.max()
    out["covering_peak"] = int(
        frame.proposals.reshape(len(frame.proposals), -1)[:, np.flatnonzero(peak)]
        .any(axis=1)
        .sum()
    )
    out["valid"] = int(sel.valid.sum()) if sel.valid is not None else None
    out["mean_mask_area"] = round(float(frame.proposals.mean()), 4)
    return out


def synthetic_proposals(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """N coherent elliptical masks (one in ten around the image centre, like a trained model's
    several queries on one object); for timing selection where random-weight masks are unrealistic.
    """
    rng = np.random.default_rng(seed)
    props = np.zeros((n, height, width), bool)
    yy, xx = np.ogrid[:height, :width]
    for i in range(n):
        if i % 10 == 0:
            cy = height // 2 + int(rng.integers(-height // 20, height // 20 + 1))
            cx = width // 2 + int(rng.integers(-width // 20, width // 20 + 1))
            ry, rx = (
                int(rng.integers(height // 8, height // 3)),
                int(rng.integers(width // 8, width // 3)),
            )
        else:
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            ry, rx = int(rng.integers(2, height // 4)), int(rng.integers(2, width // 4))
        props[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return props


def _selection_probe(segmenter: Any, heatmap: np.ndarray, n: int, clock: Clock) -> dict[str, Any]:
    """Selection as with a trained model: random-weight masks are fragmented and seldom under the
    heat peak, so the timed commands take the best_heat fallback (sums of every proposal). Here: n
    coherent synthetic masks at the image size (synthetic_proposals), the command's heat map
    with its peak moved
    to the image centre; the batched selection with cold and cached component counts (on the GPU
    copy under CUDA), and the naive per-mask loop.
    """
    import torch

    from ...core.selection import select_proposal

    s = segmenter.settings
    h, w = heatmap.shape
    props = synthetic_proposals(n, h, w)
    heat = heatmap.copy()
    heat[h // 2, w // 2] = float(heat.max()) + 0.5
    device = segmenter._selection_device
    tensor = torch.from_numpy(props).to(device) if device is not None else None
    cache: dict[tuple[int, int], int] = {}
    t0 = clock()
    sel = select_proposal(
        heat,
        props,
        s.max_components,
        s.empty_selection,
        proposals_tensor=tensor,
        component_cache=cache,
    )
    t1 = clock()
    select_proposal(
        heat,
        props,
        s.max_components,
        s.empty_selection,
        proposals_tensor=tensor,
        component_cache=cache,
    )
    t2 = clock()
    naive_index = naive_select(heat, props, s.max_components, s.empty_selection)
    t3 = clock()
    return {
        "proposals": n,
        "covering_peak": int(props[:, h // 2, w // 2].sum()),
        "valid": int(sel.valid.sum()) if sel.valid is not None else 0,
        "same_as_naive": naive_index == sel.index,
        "batched_ms": round((t1 - t0) * 1000, 2),
        "batched_cached_components_ms": round((t2 - t1) * 1000, 2),
        "naive_loop_ms": round((t3 - t2) * 1000, 2),
    }


def _n_params(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
        return None


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark described by cfg; returns the JSON-ready report (see the module
    docstring).
    """
    import torch

    from ...models.loading import quiet_transformers, resolve_device
    from ...pipeline import Segmenter, SegmenterSettings
    from ..cli import apply_overrides

    if cfg.arch not in VLP_ARCHS:
        raise ValueError(f"unknown --arch {cfg.arch!r}; known: {', '.join(VLP_ARCHS)}")
    if cfg.proposal_arch not in PROPOSAL_ARCHS:
        raise ValueError(
            f"unknown --proposal-arch {cfg.proposal_arch!r}; known: {', '.join(PROPOSAL_ARCHS)}"
        )
    if cfg.frames < 1 or cfg.commands < 1:
        raise ValueError("--frames and --commands must be at least 1")
    quiet_transformers()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    clock = Clock(cuda)
    load_start = os.getloadavg()

    # models: built from configs with random weights, saved, then loaded by the pipeline
    tmp = None
    if cfg.model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="iterprime-bench-")
        root = Path(tmp.name)
    else:
        root = Path(cfg.model_dir)
        root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        q = f"-q{cfg.queries}" if cfg.queries else ""
        vlp_dir, vlp_reused = build_once(
            root, f"blip-{cfg.arch}-s{cfg.seed}", lambda f: build_vlp(f, cfg.arch, cfg.seed)
        )
        prop_dir, prop_reused = build_once(
            root,
            f"mask2former-{cfg.proposal_arch}{q}-s{cfg.seed}",
            lambda f: build_proposals(f, cfg.proposal_arch, cfg.seed, cfg.queries),
        )
        build_s = time.perf_counter() - t
        log(
            f"models {'found' if vlp_reused and prop_reused else 'built'} in {build_s:.1f} s "
            f"under {root}"
        )

        # stop_rule none: all 3 IGRS passes whatever the random ITM scores say; best_heat: random
        # masks are often fragmented, and a command that selects nothing would skip
        # the mask geometry
        settings = SegmenterSettings(
            device=str(device),
            half_precision=not cfg.fp32,
            autocast="off" if cfg.fp32 else cfg.autocast,
            vlp_model=str(vlp_dir),
            proposal_model=str(prop_dir),
            stop_rule="none",
            igrs_iterations=3,
            empty_selection="best_heat",
        )
        settings = apply_overrides(settings, cfg.overrides)
        calls = Calls()
        t = time.perf_counter()
        segmenter = Segmenter(
            settings,
            parser=counting_parser(
                calls, primary_tags=settings.primary_tags, parser=settings.parser
            ),
        )
        parser_kind = segmenter.warmup()
        load_s = time.perf_counter() - t
        calls.attach(segmenter)
        rss_after_load = peak_rss_bytes()
        log(
            f"pipeline loaded in {load_s:.1f} s on {device} ({segmenter.vlp.dtype}), parser "
            f"{parser_kind}"
        )

        image = bench_image(cfg.size)
        conversion = Conversion()
        heatmaps: dict[int, np.ndarray] = {}

        def run_command(img: np.ndarray, command: str, new_frame: bool) -> dict[str, Any]:
            before = calls.snapshot()
            msg = conversion.image_message(img) if new_frame else None  # the camera driver's work
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = clock()
            if msg is not None:
                img = conversion.incoming(msg)
            t1 = clock()
            result = segmenter.segment(img, command)
            t2 = clock()
            conversion.outgoing(result, command)
            t3 = clock()
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            timings = {k: v * 1000 for k, v in result.timings.items()}
            timings["conversion"] = ((t1 - t0) + (t3 - t2)) * 1000
            timings["end_to_end"] = (t3 - t0) * 1000
            record = {
                "command": command,
                "success": result.success,
                "error": result.error,
                "frame_cached": result.frame_cached,
                "prefetched": result.prefetched,
                "iterations": result.iterations,
                "stop_reason": result.stop_reason,
                "num_proposals": result.num_proposals,
                "proposal_index": result.proposal_index,
                "calls": calls.since(before),
                "timings_ms": {k: round(v, 3) for k, v in timings.items()},
                # process CPU time and minor page faults (the allocator's share: jemalloc)
                "cpu": {
                    "user_s": round(usage1.ru_utime - usage0.ru_utime, 3),
                    "system_s": round(usage1.ru_stime - usage0.ru_stime, 3),
                    "minor_faults": int(usage1.ru_minflt - usage0.ru_minflt),
                },
            }
            record["selection"] = _selection_diagnostics(segmenter, result)
            record["_heatmap"] = result.heatmap
            return record

        n_cmd = len(COMMANDS)
        for w in range(cfg.warmup):
            log(f"warm-up command {w + 1}/{cfg.warmup} ...")
            run_command(
                frame_variant(image, 1000 + w), WARMUP_COMMANDS[w % len(WARMUP_COMMANDS)], True
            )

        rss_after_warmup = peak_rss_bytes()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        first, second = _Phase(), _Phase()
        for f in range(cfg.frames):
            img = frame_variant(image, f)
            rec = run_command(img, COMMANDS[(2 * f) % n_cmd], True)
            heatmaps[f] = rec["_heatmap"]
            first.records.append(rec)
            log(
                f"frame {f + 1}/{cfg.frames}: first command {rec['timings_ms']['end_to_end']:.0f} "
                "ms"
            )
            rec = run_command(img, COMMANDS[(2 * f + 1) % n_cmd], False)
            second.records.append(rec)
            log(
                f"frame {f + 1}/{cfg.frames}: second command "
                f"{rec['timings_ms']['end_to_end']:.0f} ms"
            )
        sustained = _Phase()
        img = frame_variant(image, cfg.frames - 1)
        t0 = clock()
        for i in range(cfg.commands):
            sustained.records.append(run_command(img, COMMANDS[i % n_cmd], False))
        sustained_s = clock() - t0
        log(f"sustained: {cfg.commands} commands in {sustained_s:.2f} s")
        # after the sustained run: the prefetched frames would push its frame out of the cache
        prefetched = _Phase()
        if cfg.prefetched:
            for f in range(cfg.frames):
                img = frame_variant(image, 100 + f)
                prep = segmenter.prepare_frame(img)  # the idle robot's work, not timed
                rec = run_command(img, COMMANDS[(2 * f) % n_cmd], True)
                rec["prepare_ms"] = {k: round(v * 1000, 3) for k, v in prep.timings.items()}
                prefetched.records.append(rec)
                log(
                    f"frame {f + 1}/{cfg.frames}: command on a prefetched frame "
                    f"{rec['timings_ms']['end_to_end']:.0f} ms"
                )
        if cfg.prefetched:
            # a command on the last prefetched frame while the prefetcher works on a new one
            stage_s = statistics.fmean(
                r["timings_ms"].get("proposals", 0.0) / 1000 for r in first.records
            )
            extra_probe = preemption_probe(
                segmenter,
                frame_variant(image, 100 + cfg.frames - 1),
                frame_variant(image, 150),
                stage_s,
                clock,
            )
            log(format_preemption(extra_probe))
        probe = _selection_probe(
            segmenter,
            heatmaps[cfg.frames - 1],
            max(1, int(getattr(segmenter.proposals, "num_queries", 0) or 0)),
            clock,
        )
        # weights are memory-mapped: they become resident as the first command touches them
        memory: dict[str, Any] = {
            "peak_rss_after_load_mib": mib(rss_after_load),
            "peak_rss_after_warmup_mib": mib(rss_after_warmup),
            "peak_rss_optimised_mib": mib(peak_rss_bytes()),
        }
        if cuda:
            memory["gpu_peak_optimised_mib"] = mib(torch.cuda.max_memory_allocated(device))

        extra: dict[str, Any] = {}
        if cfg.prefetched:
            extra["preemption"] = extra_probe
        if cfg.compare:
            extra["compare_previous"] = compare_previous(
                settings, vlp_dir, prop_dir, image, segmenter.parser, clock, log
            )
        if cfg.knobs:
            extra["knobs"] = knob_table(
                settings,
                vlp_dir,
                prop_dir,
                cfg.proposal_arch,
                root,
                cfg.seed,
                image,
                segmenter.parser,
                clock,
                log,
            )

        naive = _Phase()
        naive_checks: list[dict[str, Any]] = []
        if cfg.naive:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            # no parse cache: every parse runs spaCy again (counted like the pipeline's)
            naive_parser = counting_parser(
                calls, primary_tags=settings.primary_tags, parser=settings.parser, cache_size=0
            )
            naive_parser.kind  # load it outside the timed region, like the pipeline's warmup
            for k in range(cfg.naive_commands):
                f = k % cfg.frames
                command = COMMANDS[(2 * f) % n_cmd]
                before = calls.snapshot()
                timings, info = naive_command(
                    segmenter, frame_variant(image, f), command, naive_parser, clock, conversion
                )
                counts = calls.since(before)
                rec = {
                    "command": command,
                    "iterations": info["iterations"],
                    "proposal_index": info["index"],
                    "calls": counts,
                    "timings_ms": {k2: round(v * 1000, 3) for k2, v in timings.items()},
                }
                naive.records.append(rec)
                ref = first.records[f]
                naive_checks.append(
                    {
                        "frame": f,
                        "same_proposal": info["index"] == ref["proposal_index"],
                        "heatmap_max_abs_diff": float(np.abs(info["heatmap"] - heatmaps[f]).max())
                        if heatmaps.get(f) is not None
                        else None,
                    }
                )
                log(
                    f"naive command {k + 1}/{cfg.naive_commands}: "
                    f"{rec['timings_ms']['end_to_end']:.0f} ms"
                )
            memory["peak_rss_naive_mib"] = mib(peak_rss_bytes())
            if cuda:
                memory["gpu_peak_naive_mib"] = mib(torch.cuda.max_memory_allocated(device))
        memory["rss_now_mib"] = mib(current_rss_bytes() or 0)
        calls.detach()

        for phase in (first, prefetched, second, sustained, naive):
            for r in phase.records:
                r.pop("_heatmap", None)
        stats = {"first_command": _stats(first.records)}
        if prefetched.records:
            stats["prefetched_command"] = _stats(prefetched.records)
        stats["second_command"] = _stats(second.records)
        stats["sustained"] = _stats(sustained.records)
        if naive.records:
            stats["naive"] = _stats(naive.records)
        e2e = {k: v["end_to_end"]["mean_ms"] for k, v in stats.items()}
        report: dict[str, Any] = {
            "config": {
                "vlp_arch": cfg.arch,
                "vlp": VLP_ARCHS[cfg.arch][0],
                "proposal_arch": cfg.proposal_arch,
                "proposals": PROPOSAL_ARCHS[cfg.proposal_arch][0],
                "num_queries": int(getattr(segmenter.proposals, "num_queries", 0)),
                "vlp_params": _n_params(segmenter.vlp.model),
                "proposal_params": _n_params(segmenter.proposals.model),
                "device": str(device),
                "dtype": str(segmenter.vlp.dtype).replace("torch.", ""),
                "autocast": settings.autocast,
                "autocast_dtype": dtype_name(getattr(segmenter.proposals, "autocast_dtype", None)),
                "jemalloc": jemalloc_active(),
                "image_size": list(cfg.size),
                "frames": cfg.frames,
                "commands": cfg.commands,
                "warmup": cfg.warmup,
                "naive_commands": cfg.naive_commands if cfg.naive else 0,
                "igrs_passes": settings.igrs_iterations,
                "gradcam_layer": segmenter.vlp.gradcam_layer,
                "parser": parser_kind,
                "conversion": conversion.kind,
                "overrides": list(cfg.overrides),
                "settings_stop_rule": settings.stop_rule,
            },
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "gpu": torch.cuda.get_device_name(device) if cuda else None,
                "load_average_start": [round(x, 2) for x in load_start],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            "build_s": round(build_s, 2),
            "load_s": round(load_s, 2),
            "stages": stats,
            "end_to_end_ms": e2e,
            "commands_per_s": {
                "same_frame": round(cfg.commands / sustained_s, 3),
                "new_frame_each": round(1000.0 / e2e["first_command"], 3),
            },
            "memory": memory,
            "selection_probe": probe,
            **extra,
            "records": {
                "first_command": first.records,
                "prefetched_command": prefetched.records,
                "second_command": second.records,
                "sustained": sustained.records,
                "naive": naive.records,
            },
        }
        if naive.records:
            report["naive_vs_optimised"] = {
                "first_command": round(e2e["naive"] / e2e["first_command"], 2),
                "second_command": round(e2e["naive"] / e2e["second_command"], 2),
                "checks": naive_checks,
            }
        return report
    finally:
        if tmp is not None:
            tmp.cleanup()


# ---------------------------------------------------------------------------- report
def format_report(report: dict[str, Any]) -> str:
    c, m, st = report["config"], report["machine"], report["stages"]
    lines = [
        f"iterprime bench -- {c['vlp']} [{c['vlp_arch']}, {c['vlp_params'] / 1e6:.1f} M params]",
        f"  + {c['proposals']} [{c['proposal_arch']}, {c['proposal_params'] / 1e6:.1f} M params], "
        "random weights",
        f"device {c['device']} ({c['dtype']} weights, autocast "
        f"{c.get('autocast_dtype', 'fp32')}, jemalloc {'on' if c.get('jemalloc') else 'off'})"
        f"{' ' + m['gpu'] if m['gpu'] else ''}, torch "
        f"{m['torch']}, "
        f"{m['torch_threads']} threads on {m['cpu_count']} CPUs, load average "
        f"{m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f}",
        f"image {c['image_size'][0]}x{c['image_size'][1]} (skimage coffee), {c['igrs_passes']} "
        "IGRS passes, "
        f"Grad-CAM layer {c['gradcam_layer']}, parser {c['parser']}, {c['num_queries']} "
        "proposals; "
        f"{c['frames']} new frame(s), {c['commands']} sustained command(s), {c['warmup']} warm-up",
        "",
    ]
    phases = [
        ("first_command", "first cmd"),
        ("prefetched_command", "prefetched"),
        ("second_command", "same frame"),
        ("sustained", "sustained"),
        ("naive", "naive"),
    ]
    phases = [(k, title) for k, title in phases if k in st]
    names = [s for s in STAGES if any(s in st[k] for k, _ in phases)]
    head = f"{'stage (ms, mean / median)':<28}" + "".join(f"{title:>22}" for _, title in phases)
    lines += [head, "-" * len(head)]
    for name in names:
        label = name + (f" ({STAGE_NOTES[name]})" if name in STAGE_NOTES else "")
        row = f"{label[:28]:<28}"
        for k, _ in phases:
            v = st[k].get(name)
            row += f"{'-':>22}" if v is None else f"{v['mean_ms']:>12.1f} / {v['median_ms']:<7.1f}"
        lines.append(row)
    lines.append("")
    cps = report["commands_per_s"]
    lines.append(
        f"commands/s: {cps['same_frame']:.2f} on one frame, {cps['new_frame_each']:.2f} with a "
        "new frame each"
    )
    mem = report["memory"]
    mem_line = (
        f"peak host RSS: {mem['peak_rss_after_load_mib']:.0f} MiB after loading (weights mapped), "
        f"{mem['peak_rss_after_warmup_mib']:.0f} MiB after warm-up, "
        f"{mem['peak_rss_optimised_mib']:.0f} MiB after the optimised runs"
    )
    if "peak_rss_naive_mib" in mem:
        mem_line += f", {mem['peak_rss_naive_mib']:.0f} MiB after naive"
    lines.append(mem_line)
    if "gpu_peak_optimised_mib" in mem:
        lines.append(
            f"peak GPU memory: {mem['gpu_peak_optimised_mib']:.0f} MiB optimised"
            + (
                f", {mem['gpu_peak_naive_mib']:.0f} MiB naive"
                if "gpu_peak_naive_mib" in mem
                else ""
            )
        )
    if "naive_vs_optimised" in report:
        r = report["naive_vs_optimised"]
        checks = r["checks"]
        same = all(ch["same_proposal"] for ch in checks)
        diff = max((ch["heatmap_max_abs_diff"] or 0.0) for ch in checks)
        lines.append(
            f"naive / optimised: {r['first_command']:.2f}x a first command, "
            f"{r['second_command']:.2f}x a same-frame command "
            f"(same mask: {'yes' if same else 'NO'}, heat maps differ by <= {diff:.2g})"
        )
    sel = [
        r["selection"]
        for k in ("first_command", "second_command", "sustained")
        for r in report["records"].get(k, [])
        if "covering_peak" in r.get("selection", {})
    ]
    if sel:
        lines.append(
            f"selection work: {statistics.fmean(x['covering_peak'] for x in sel):.1f} of "
            f"{c['num_queries']} "
            f"proposals cover the peak, {statistics.fmean(x['valid'] for x in sel):.1f} valid on "
            "average; "
            f"best_heat fallback (sums of every proposal) in {sum(x['flagged'] for x in sel)} of "
            f"{len(sel)} "
            f"commands; mean mask area {statistics.fmean(x['mean_mask_area'] for x in sel):.0%}"
        )
    pr = report.get("selection_probe")
    if pr:
        lines.append(
            f"selection, {pr['proposals']} coherent synthetic masks, {pr['covering_peak']} on the "
            "peak "
            f"({pr['valid']} valid): batched "
            f"{pr['batched_ms']:.1f} ms, {pr['batched_cached_components_ms']:.1f} ms with cached "
            "components; "
            f"naive loop {pr['naive_loop_ms']:.1f} ms (same choice: "
            f"{'yes' if pr['same_as_naive'] else 'NO'})"
        )
    cpu = [r["cpu"] for r in report["records"]["first_command"] if "cpu" in r]
    if cpu:
        user = statistics.fmean(c["user_s"] for c in cpu)
        system = statistics.fmean(c["system_s"] for c in cpu)
        faults = statistics.fmean(c["minor_faults"] for c in cpu)
        lines.append(
            f"CPU time of a first command: user {user:.1f} s, system {system:.2f} s, "
            f"{faults:.0f} minor page faults"
        )
    if "preemption" in report:
        lines.append(format_preemption(report["preemption"]))
    if "compare_previous" in report:
        lines += format_compare(report["compare_previous"])
    if "knobs" in report:
        lines += ["", *format_knobs(report["knobs"])]
    calls = {
        k: report["records"][k][0]["calls"]
        for k in ("first_command", "second_command", "naive")
        if report["records"][k]
    }
    lines.append(
        "network calls per command: "
        + "; ".join(
            f"{k.replace('_command', '')}: " + ", ".join(f"{n} {v}" for n, v in c2.items())
            for k, c2 in calls.items()
        )
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT, e.g. 640x480, not {text!r}"
        ) from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError("size must be at least 16x16")
    return w, h


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Register `iterprime bench` (cli.py calls this)."""
    p = subparsers.add_parser(
        "bench",
        help="latency of a command per stage (first / same-frame / sustained) against a naive run",
        description="Time the real pipeline (Segmenter) on real-size architectures built from "
        "their configs with "
        "random weights (timing does not depend on weight values), on a 640x480 photograph: "
        "per-stage "
        "ms of a first command on a new frame, of a second command on the same frame (frame "
        "cache), "
        "sustained commands/s, peak host and GPU memory, and a naive run that redoes the "
        "per-image "
        "work in every IGRS pass as the reference code does.",
        epilog="examples: iterprime bench --device cuda  |  iterprime bench --proposal-arch "
        "swin-t --device cpu  |  "
        "iterprime bench --arch tiny --proposal-arch swin-tiny-test --size 160x120 (CI)",
    )
    p.add_argument(
        "--arch",
        default="base",
        choices=sorted(VLP_ARCHS),
        help="BLIP ITM architecture (default base)",
    )
    p.add_argument(
        "--proposal-arch",
        default="swin-l",
        choices=list(PROPOSAL_ARCHS),
        help="Mask2Former backbone (default swin-l, 200 queries)",
    )
    p.add_argument(
        "--queries",
        type=int,
        metavar="N",
        help="Mask2Former queries (default: the architecture's)",
    )
    p.add_argument(
        "--device",
        default="auto",
        type=device_argument,
        help="auto | cpu | cuda | cuda:N (default auto)",
    )
    p.add_argument(
        "--fp32",
        action="store_true",
        help="full precision: no autocast, no fp16 weights (default: --autocast auto)",
    )
    p.add_argument(
        "--autocast",
        default="auto",
        choices=("auto", "off", "bf16", "fp16"),
        help="mixed precision with fp32 weights (default auto: fp16 on CUDA, bf16 on a CPU "
        "with native bf16)",
    )
    p.add_argument(
        "--prefetched",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time a command on a prefetched frame (default on)",
    )
    p.add_argument(
        "--compare-previous",
        action="store_true",
        help="also run the previous CPU path (fp32, two-step mask resize) on the same frame and "
        "print both side by side, with the drift autocast causes",
    )
    p.add_argument(
        "--knobs",
        action="store_true",
        help="also print the speed-knob table (proposal edge, backbone, passes, BLIP resolution)",
    )
    p.add_argument(
        "--smaller-arch",
        choices=list(PROPOSAL_ARCHS),
        help="--report: the smaller proposal backbone to compare (default swin-t)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="device report (scripts/gpu_check.sh): first / prefetched / same-frame per stage, "
        "fp32 vs autocast, the backbone vs a smaller one, peak GPU memory, in one table",
    )
    p.add_argument(
        "--size",
        type=_size,
        default=(640, 480),
        metavar="WxH",
        help="image size (default 640x480)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=3,
        metavar="N",
        help="new frames: a first and a second command on each (default 3)",
    )
    p.add_argument(
        "--commands",
        type=int,
        default=8,
        metavar="N",
        help="sustained: commands in a row on one frame (default 8)",
    )
    p.add_argument(
        "--warmup", type=int, default=1, metavar="N", help="untimed warm-up commands (default 1)"
    )
    p.add_argument(
        "--naive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the naive per-pass recomputation (default on)",
    )
    p.add_argument(
        "--naive-commands", type=int, default=1, metavar="N", help="naive commands (default 1)"
    )
    p.add_argument(
        "--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        metavar="DIR",
        help="keep the built random-weight models here and reuse them (default: a temp folder)",
    )
    add_set_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument(
        "--json",
        metavar="OUT",
        help="write the full report (stages, records, memory) as JSON here",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..errors import UserError

    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UserError(f"output folder does not exist: {Path(args.json).parent}")
    for name in ("frames", "commands"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1")
    if args.warmup < 0 or args.naive_commands < 1:
        raise UserError("--warmup must be >= 0 and --naive-commands >= 1")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    from ...pipeline import SegmenterSettings
    from ..cli import apply_overrides

    apply_overrides(SegmenterSettings(), args.overrides)  # the node's table, before any model
    cfg = BenchConfig(
        arch=args.arch,
        proposal_arch=args.proposal_arch,
        device=args.device,
        size=args.size,
        commands=args.commands,
        frames=args.frames,
        warmup=args.warmup,
        naive=args.naive,
        naive_commands=args.naive_commands,
        fp32=args.fp32,
        autocast=args.autocast,
        prefetched=args.prefetched,
        compare=args.compare_previous,
        knobs=args.knobs,
        smaller_arch=args.smaller_arch,
        threads=args.threads,
        queries=args.queries,
        model_dir=args.model_dir,
        overrides=tuple(args.overrides),
        seed=args.seed,
    )
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda requested but CUDA is not available")
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.report:
        print(device_report(cfg, lambda c: run_bench(c, log=log), log))
        return 0
    report = run_bench(cfg, log=log)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"report: {args.json}")
    return 0
