"""Bench add-ons: the previous CPU path side by side, the speed knobs, the device report.

* ``compare_previous``: in the same run and on the same frame, the plain fp32 path
  (two-step mask resize) against the current one (autocast, one composed resize): per-stage
  times and what autocast changes in the answer (mask pixels, heat map, chosen proposal,
  Grad-CAM of a text pass under autocast). Random weights: drift figures, not accuracy.
* ``knob_table``: first command and command on a prefetched frame for each speed knob
  (proposal edge, backbone, IGRS passes, BLIP input resolution). Accuracy cannot be measured
  with random weights: ``iterprime eval`` with the released checkpoints does that.
* ``device_report`` (``iterprime bench --report``, scripts/gpu_check.sh): first / prefetched /
  same-frame per stage for fp32 and autocast fp16/bf16, the proposal backbone and a smaller
  one, peak GPU memory -- one table, one run.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .architectures import build_once, build_proposals, frame_variant

SMALLER_BACKBONE = {"swin-l": "swin-t", "swin-b": "swin-t", "swin-s": "swin-t"}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def _gradcam(out: Any) -> Any:
    return (out.attention * out.gradient).clamp(min=0)[:, :, 1:].mean(dim=(0, 1)).cpu()


def compare_previous(
    settings: Any,
    vlp_dir: Path,
    prop_dir: Path,
    image: np.ndarray,
    parser: Any,
    clock: Callable[[], float],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Previous path (autocast off, two-step resize) vs current, one frame, one command each."""
    out: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}
    paths = {"previous": ("off", False), "current": (settings.autocast, True)}
    for name, (autocast, direct) in paths.items():
        runs[name] = _time_path(
            settings, vlp_dir, prop_dir, image, parser, clock, autocast, direct
        )
        out[name] = runs[name]["summary"]
        log(f"compare: {name} path first command {out[name]['wall_ms']:.0f} ms")
    out["postprocess"] = _postprocess_both_ways(runs["current"]["props"], image, clock)
    out["drift"] = _drift(settings, vlp_dir, runs["previous"], runs["current"])
    return out


def _time_path(
    s: Any,
    vlp_dir: Path,
    prop_dir: Path,
    image: np.ndarray,
    parser: Any,
    clock: Callable[[], float],
    autocast: str,
    direct: bool,
) -> dict[str, Any]:
    """One command on a new frame with backends built for one path (after a warm-up)."""
    from ...models.blip import BlipITMBackend
    from ...models.mask2former import Mask2FormerProposals
    from ...models.precision import dtype_name
    from ...pipeline import Segmenter

    vlp = BlipITMBackend(
        vlp_dir,
        device=s.device,
        gradcam_layer=s.backend_gradcam_layer(),
        half_precision=s.half_precision,
        autocast=autocast,
        first_token=s.first_token,
        max_text_tokens=s.max_text_tokens,
    )
    props = Mask2FormerProposals(
        prop_dir,
        device=s.device,
        half_precision=s.half_precision,
        autocast=autocast,
        threshold=s.proposal_threshold,
        shortest_edge=s.proposal_shortest_edge,
        longest_edge=s.proposal_longest_edge,
        direct_resize=direct,
    )
    seg = Segmenter.from_backends(vlp, props, s.replace(autocast=autocast), parser=parser)
    seg.segment(frame_variant(image, 500), "the white plate")  # warm-up (kernels, allocator)
    img = frame_variant(image, 600)
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = clock()
    r = seg.segment(img, "pick up the red cup on the left")
    wall = clock() - t0
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    summary = {
        "autocast": dtype_name(props.autocast_dtype),
        "direct_resize": direct,
        "timings_ms": {k: _ms(v) for k, v in r.timings.items()},
        "wall_ms": _ms(wall),
        # CPU seconds: on a shared machine a steadier measure than the wall clock
        "cpu_s": round(u1.ru_utime - u0.ru_utime + u1.ru_stime - u0.ru_stime, 2),
    }
    frame = next(reversed(seg._frames.values()))
    return {"vlp": vlp, "props": props, "frame": frame, "result": r, "summary": summary}


def _postprocess_both_ways(props: Any, image: np.ndarray, clock: Callable[[], float]) -> dict:
    """The mask post-processing alone, both ways on the same logits."""
    logits, padded, valid = props.mask_logits(frame_variant(image, 600))
    size = image.shape[:2]
    t0 = clock()
    two = props._masks_two_step(logits, padded, valid, size)
    t1 = clock()
    one = props._masks_direct(logits, padded, valid, size)
    t2 = clock()
    return {
        "two_step_ms": _ms(t1 - t0),
        "direct_ms": _ms(t2 - t1),
        "pixels_differing": int((two != one).sum()),
        "pixels": int(two.numel()),
    }


def _drift(s: Any, vlp_dir: Path, previous: dict, current: dict) -> dict[str, Any]:
    """What the current path changes in the answer: mask pixels, heat map, chosen proposal, and
    the Grad-CAM of one text pass under autocast.
    """
    import torch

    from ...core.text import build_prompt
    from ...models.blip import BlipITMBackend

    a, b = previous["frame"].proposals, current["frame"].proposals
    ra, rb = previous["result"], current["result"]
    drift: dict[str, Any] = {
        "mask_pixels_flipped": float((a != b).mean()) if a is not None and b is not None else None,
        "same_proposal": ra.proposal_index == rb.proposal_index,
    }
    if ra.heatmap is not None and rb.heatmap is not None:
        diff = np.abs(ra.heatmap - rb.heatmap)
        drift["heatmap_max_abs_diff"] = round(float(diff.max()), 4)
        drift["heatmap_mean_abs_diff"] = round(float(diff.mean()), 5)
    # Grad-CAM of one text pass with the text encoder under autocast (CUDA's default; a CPU
    # only when asked) against fp32, on the same fp32 image embedding
    vlp_fp32 = previous["vlp"]
    text_dtype = "fp16" if vlp_fp32.device.type == "cuda" else "bf16"
    vlp_auto = BlipITMBackend(
        vlp_dir,
        device=s.device,
        gradcam_layer=s.backend_gradcam_layer(),
        autocast=text_dtype,
        autocast_text=True,
        first_token=s.first_token,
        max_text_tokens=s.max_text_tokens,
    )
    text, _ = build_prompt(s.prompt_template, "red cup on the left")
    emb = previous["frame"].embedding
    cam_a = _gradcam(vlp_fp32.text_pass(emb, text, None))
    cam_b = _gradcam(vlp_auto.text_pass(emb, text, None))
    scale = float(cam_a.abs().max()) or 1.0
    drift["gradcam_text_autocast"] = text_dtype
    drift["gradcam_max_rel_diff"] = round(float((cam_a - cam_b).abs().max()) / scale, 4)
    drift["gradcam_corr"] = round(float(torch.corrcoef(torch.stack([cam_a, cam_b]))[0, 1]), 5)
    return drift


def format_compare(c: dict[str, Any]) -> list[str]:
    prev, cur = c["previous"], c["current"]
    tp, tc = prev["timings_ms"], cur["timings_ms"]
    lines = [
        f"previous path (fp32, two-step resize) vs this run's (autocast {cur['autocast']}, one "
        "resize), same frame, first command (ms):"
    ]
    for stage in ("proposals", "image_encoding", "igrs", "selection", "total"):
        a, b = tp.get(stage), tc.get(stage)
        if a is None or b is None:
            continue
        lines.append(
            f"  {stage:<16}{a:>12.1f} -> {b:>10.1f}   x{a / b if b else float('nan'):.2f}"
        )
    if "cpu_s" in prev and "cpu_s" in cur:
        ratio = prev["cpu_s"] / cur["cpu_s"] if cur["cpu_s"] else float("nan")
        lines.append(
            f"  {'CPU time (s)':<16}{prev['cpu_s']:>12.1f} -> {cur['cpu_s']:>10.1f}   x{ratio:.2f}"
        )
    pp = c["postprocess"]
    lines.append(
        f"  mask post-processing alone: two-step {pp['two_step_ms']:.0f} ms, one resize "
        f"{pp['direct_ms']:.0f} ms, {pp['pixels_differing']} of {pp['pixels']} mask pixels differ"
    )
    d = c["drift"]
    flipped = d.get("mask_pixels_flipped")
    lines.append(
        "  autocast drift (random weights): "
        + (f"{flipped:.2%} of proposal mask pixels flipped, " if flipped is not None else "")
        + f"heat map max |diff| {d.get('heatmap_max_abs_diff')}, mean "
        f"{d.get('heatmap_mean_abs_diff')}, same proposal chosen: "
        f"{'yes' if d['same_proposal'] else 'no'}; text pass under {d['gradcam_text_autocast']} "
        f"autocast: Grad-CAM corr {d['gradcam_corr']}, max rel diff {d['gradcam_max_rel_diff']}"
    )
    return lines


def _blip_at(vlp_dir: Path, root: Path, size: int) -> Path:
    """The same BLIP weights with another input resolution (position embeddings interpolated)."""
    folder = root / f"{vlp_dir.name}-input{size}"
    if not (folder / "preprocessor_config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for f in vlp_dir.iterdir():
            target = folder / f.name
            if f.name != "preprocessor_config.json" and not target.exists():
                target.symlink_to(f.resolve())
        pre = json.loads((vlp_dir / "preprocessor_config.json").read_text())
        pre["size"] = {"height": size, "width": size}
        (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return folder


def knob_table(
    settings: Any,
    vlp_dir: Path,
    prop_dir: Path,
    proposal_arch: str,
    root: Path,
    seed: int,
    image: np.ndarray,
    parser: Any,
    clock: Callable[[], float],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One first command and one command on a prefetched frame per knob setting."""
    from ...pipeline import Segmenter

    rows: list[tuple[str, dict[str, Any]]] = [
        ("defaults", {}),
        ("proposal shortest edge 480", {"proposal_shortest_edge": 480}),
        ("proposal shortest edge 640", {"proposal_shortest_edge": 640}),
        ("IGRS passes 2", {"igrs_iterations": 2}),
        ("IGRS passes 1 (off)", {"igrs_iterations": 1}),
    ]
    small = SMALLER_BACKBONE.get(proposal_arch)
    if small:
        small_dir, _ = build_once(
            root, f"mask2former-{small}-s{seed}", lambda f: build_proposals(f, small, seed)
        )
        rows.append((f"backbone {small}", {"proposal_model": str(small_dir)}))
    grid_size = json.loads((vlp_dir / "preprocessor_config.json").read_text())["size"]["height"]
    if grid_size > 224:
        rows.append(("BLIP input 224 px", {"vlp_model": str(_blip_at(vlp_dir, root, 224))}))
    out = []
    for i, (label, changes) in enumerate(rows):
        seg = Segmenter(settings.replace(**changes), parser=parser)
        img = frame_variant(image, 700 + i)
        t0 = clock()
        first = seg.segment(img, "pick up the red cup on the left")
        t1 = clock()
        pre = frame_variant(image, 800 + i)
        seg.prepare_frame(pre)
        t2 = clock()
        later = seg.segment(pre, "the white plate")
        t3 = clock()
        row = {
            "knob": label,
            "first_ms": _ms(t1 - t0),
            "prefetched_ms": _ms(t3 - t2),
            "proposals_ms": _ms(first.timings.get("proposals", 0.0)),
            "igrs_ms": _ms(later.timings.get("igrs", 0.0)),
            "prefetched": later.prefetched,
        }
        out.append(row)
        log(f"knob {label}: first {row['first_ms']:.0f} ms, prefetched {row['prefetched_ms']:.0f}")
        del seg
    return out


def format_knobs(rows: list[dict[str, Any]]) -> list[str]:
    head = f"{'speed knob (one run each)':<30}{'first cmd':>12}{'prefetched':>12}{'proposals':>12}"
    lines = [head + f"{'IGRS':>10}", "-" * (len(head) + 10)]
    base = rows[0]["first_ms"] if rows else 0.0
    for r in rows:
        lines.append(
            f"{r['knob']:<30}{r['first_ms']:>10.0f}ms{r['prefetched_ms']:>10.0f}ms"
            f"{r['proposals_ms']:>10.0f}ms{r['igrs_ms']:>8.0f}ms"
            + (f"  x{r['first_ms'] / base:.2f}" if base else "")
        )
    lines.append(
        "accuracy of each knob: not measurable with random weights -- `iterprime eval` with the "
        "released checkpoints (docs/evaluation.md)"
    )
    return lines


def device_report(cfg: Any, run: Callable[[Any], dict[str, Any]], log: Callable) -> str:
    """fp32 / autocast x backbone / smaller backbone, each a short bench; one table."""
    import tempfile

    from ...models.loading import resolve_device
    from ...models.precision import cpu_has_fast_bf16

    device = resolve_device(cfg.device)
    precisions = ["off", "fp16", "bf16"] if device.type == "cuda" else ["off", "bf16"]
    archs = [cfg.proposal_arch]
    smaller = getattr(cfg, "smaller_arch", None) or SMALLER_BACKBONE.get(cfg.proposal_arch)
    if smaller:
        archs.append(smaller)
    tmp = None
    model_dir = cfg.model_dir
    if model_dir is None:
        tmp = tempfile.mkdtemp(prefix="iterprime-report-")
        model_dir = Path(tmp)
    rows = []
    try:
        for n, arch in enumerate(archs):
            for prec in precisions:
                sub = dataclasses.replace(
                    cfg,
                    proposal_arch=arch,
                    autocast=prec,
                    fp32=prec == "off",
                    naive=False,
                    frames=1,
                    commands=2,
                    prefetched=True,
                    model_dir=model_dir,
                    compare=False,
                    knobs=False,
                )
                log(f"report: {arch}, {'fp32' if prec == 'off' else prec} ...")
                label = arch if archs.count(arch) == 1 else f"{arch}#{n + 1}"
                rows.append((label, prec, run(sub)))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    first = rows[0][2]
    m = first["machine"]
    lines = [
        f"iterprime device report -- {device} {m['gpu'] or ''} torch {m['torch']}, "
        f"{m['torch_threads']} threads, load average {m['load_average_start'][0]:.2f}; "
        f"{first['config']['vlp']} + proposals below, image "
        f"{first['config']['image_size'][0]}x{first['config']['image_size'][1]}, "
        f"{first['config']['igrs_passes']} IGRS passes"
        + ("" if device.type == "cuda" or cpu_has_fast_bf16() else " (bf16 emulated on this CPU)"),
        "",
    ]
    stages = ("proposals", "image_encoding", "igrs", "selection", "end_to_end")
    head = f"{'proposals':<18}{'precision':<10}{'phase':<12}" + "".join(
        f"{s[:14]:>15}" for s in stages
    )
    lines += [head + f"{'GPU peak MiB':>14}", "-" * (len(head) + 14)]
    for arch, prec, rep in rows:
        mem = rep["memory"].get("gpu_peak_optimised_mib")
        for phase, title in (
            ("first_command", "first"),
            ("prefetched_command", "prefetched"),
            ("second_command", "same frame"),
        ):
            st = rep["stages"].get(phase, {})
            row = f"{arch:<18}{'fp32' if prec == 'off' else prec:<10}{title:<12}"
            row += "".join(
                f"{st[s]['mean_ms']:>13.1f}ms" if s in st else f"{'-':>15}" for s in stages
            )
            row += f"{mem:>14.0f}" if (mem is not None and phase == "first_command") else ""
            lines.append(row)
    lines.append("")
    lines.append(
        "latency targets: GPU first command <= 150 ms, prefetched / same-frame <= 40 ms; "
        "CPU (2 threads) prefetched <= 500 ms, first <= 10 s"
    )
    return "\n".join(lines)


def preemption_probe(
    segmenter: Any,
    ready_image: np.ndarray,
    new_image: np.ndarray,
    stage_s: float,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """Time a command that arrives while the prefetcher is inside a proposal stage.

    The command is on a prepared frame; the prefetch works on a newer one and is a third of the
    way into its proposal stage (as expected from `stage_s`). Reports the wait and the stage.
    """
    import threading
    import time

    from ...prefetch import Prefetcher

    pf = Prefetcher(segmenter, "latest").start()
    try:
        pf.offer(new_image)
        deadline = time.monotonic() + 600
        # the prefetch thread holds the segmenter's lock once its first stage is running
        while time.monotonic() < deadline:
            if segmenter._lock.acquire(blocking=False):
                segmenter._lock.release()
                time.sleep(0.002)
            else:
                break
        stage_start = clock()
        time.sleep(stage_s / 3)
        done = threading.Event()
        result: dict[str, Any] = {}

        def command() -> None:
            t0 = clock()
            r = segmenter.segment(ready_image, "the white plate")
            result.update(r=r, total=clock() - t0)
            done.set()

        arrive = clock()
        threading.Thread(target=command, daemon=True).start()
        done.wait(900)
        pf.wait_idle(900)
        r = result.get("r")
        stage = pf.stats.last_timings.get("proposals", 0.0) or stage_s
        wait = r.timings.get("wait", 0.0) if r is not None else float("nan")
        return {
            "command_wait_ms": _ms(wait),
            "command_total_ms": _ms(result.get("total", float("nan"))),
            "in_flight_stage": "proposals",
            "stage_ms": _ms(stage),
            "arrived_after_stage_start_ms": _ms(arrive - stage_start),
            "prefetched": bool(r is not None and r.prefetched),
            "waited_at_most_one_stage": bool(r is not None and wait <= stage + 0.05),
            "prefetch_yields": int(segmenter.stats.get("prefetch_yields", 0)),
        }
    finally:
        pf.stop(60)


def format_preemption(p: dict[str, Any]) -> str:
    arrived, stage = p["arrived_after_stage_start_ms"], p["stage_ms"]
    if arrived <= stage:
        into = f"{arrived:.0f} ms into its {stage:.0f} ms"
    else:  # small models: the stage was over before the command came
        into = f"{arrived:.0f} ms after the start of a {stage:.0f} ms (already finished)"
    waited = f"waited {p['command_wait_ms']:.0f} ms, answered in {p['command_total_ms']:.0f} ms"
    prefetched = "yes" if p["prefetched"] else "no"
    one = "yes" if p["waited_at_most_one_stage"] else "NO"
    return (
        f"command arriving during a prefetch ({into} {p['in_flight_stage']} stage): {waited} "
        f"(prefetched frame: {prefetched}); at most one stage: {one}"
    )
