"""The bench report as text: a per-stage table, then one line per finding.

Apart from the run so that a saved JSON report (`iterprime bench --json`) reads the same as the
live one, and so that each line's wording sits next to the figures it prints.
"""

from __future__ import annotations

import statistics
from typing import Any

from .config import STAGE_NOTES, STAGES
from .extras import format_compare, format_knobs, format_preemption

PHASE_TITLES = (
    ("first_command", "first cmd"),
    ("prefetched_command", "prefetched"),
    ("second_command", "same frame"),
    ("sustained", "sustained"),
    ("naive", "naive"),
)


def format_report(report: dict[str, Any]) -> str:
    lines = header_lines(report) + stage_table(report["stages"]) + [""]
    lines += throughput_and_memory_lines(report)
    lines += selection_lines(report)
    lines += cpu_lines(report)
    if "preemption" in report:
        lines.append(format_preemption(report["preemption"]))
    if "compare_previous" in report:
        lines += format_compare(report["compare_previous"])
    if "knobs" in report:
        lines += ["", *format_knobs(report["knobs"])]
    lines.append(network_calls_line(report))
    return "\n".join(lines)


def header_lines(report: dict[str, Any]) -> list[str]:
    """What ran, where, and on what machine load."""
    c, m = report["config"], report["machine"]
    autocast = c.get("autocast_dtype", "fp32")
    jemalloc = "on" if c.get("jemalloc") else "off"
    gpu = " " + m["gpu"] if m["gpu"] else ""
    return [
        f"iterprime bench -- {c['vlp']} [{c['vlp_arch']}, {c['vlp_params'] / 1e6:.1f} M params]",
        f"  + {c['proposals']} [{c['proposal_arch']}, {c['proposal_params'] / 1e6:.1f} M params], "
        "random weights",
        f"device {c['device']} ({c['dtype']} weights, autocast {autocast}, jemalloc {jemalloc})"
        f"{gpu}, torch {m['torch']}, {m['torch_threads']} threads on {m['cpu_count']} CPUs, "
        f"load average {m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f}",
        f"CPU {m.get('cpu', '?')}",
        f"image {c['image_size'][0]}x{c['image_size'][1]} (skimage coffee), "
        f"{c['igrs_passes']} IGRS passes, Grad-CAM layer {c['gradcam_layer']}, "
        f"parser {c['parser']}, {c['num_queries']} proposals; {c['frames']} new frame(s), "
        f"{c['commands']} sustained command(s), {c['warmup']} warm-up",
        "",
    ]


def stage_table(stats: dict[str, Any]) -> list[str]:
    """Mean / median ms per stage (rows) and phase (columns)."""
    phases = [(k, title) for k, title in PHASE_TITLES if k in stats]
    names = [s for s in STAGES if any(s in stats[k] for k, _ in phases)]
    head = f"{'stage (ms, mean / median)':<28}" + "".join(f"{title:>22}" for _, title in phases)
    lines = [head, "-" * len(head)]
    for name in names:
        label = name + (f" ({STAGE_NOTES[name]})" if name in STAGE_NOTES else "")
        row = f"{label[:28]:<28}"
        for k, _ in phases:
            v = stats[k].get(name)
            row += f"{'-':>22}" if v is None else f"{v['mean_ms']:>12.1f} / {v['median_ms']:<7.1f}"
        lines.append(row)
    return lines


def throughput_and_memory_lines(report: dict[str, Any]) -> list[str]:
    cps, mem = report["commands_per_s"], report["memory"]
    lines = [
        f"commands/s: {cps['same_frame']:.2f} on one frame, {cps['new_frame_each']:.2f} with a "
        "new frame each"
    ]
    mem_line = (
        f"peak host RSS: {mem['peak_rss_after_load_mib']:.0f} MiB after loading (weights mapped), "
        f"{mem['peak_rss_after_warmup_mib']:.0f} MiB after warm-up, "
        f"{mem['peak_rss_optimised_mib']:.0f} MiB after the optimised runs"
    )
    if "peak_rss_naive_mib" in mem:
        mem_line += f", {mem['peak_rss_naive_mib']:.0f} MiB after naive"
    lines.append(mem_line)
    if "gpu_peak_optimised_mib" in mem:
        naive = (
            f", {mem['gpu_peak_naive_mib']:.0f} MiB naive" if "gpu_peak_naive_mib" in mem else ""
        )
        lines.append(f"peak GPU memory: {mem['gpu_peak_optimised_mib']:.0f} MiB optimised{naive}")
    if "naive_vs_optimised" in report:
        r = report["naive_vs_optimised"]
        same = all(ch["same_proposal"] for ch in r["checks"])
        diff = max((ch["heatmap_max_abs_diff"] or 0.0) for ch in r["checks"])
        lines.append(
            f"naive / optimised: {r['first_command']:.2f}x a first command, "
            f"{r['second_command']:.2f}x a same-frame command "
            f"(same mask: {'yes' if same else 'NO'}, heat maps differ by <= {diff:.2g})"
        )
    return lines


def selection_lines(report: dict[str, Any]) -> list[str]:
    """How much work selection had in the timed commands, and the synthetic-mask probe."""
    lines = []
    sel = [
        r["selection"]
        for k in ("first_command", "second_command", "sustained")
        for r in report["records"].get(k, [])
        if "covering_peak" in r.get("selection", {})
    ]
    if sel:
        covering = statistics.fmean(x["covering_peak"] for x in sel)
        valid = statistics.fmean(x["valid"] for x in sel)
        area = statistics.fmean(x["mean_mask_area"] for x in sel)
        lines.append(
            f"selection work: {covering:.1f} of {report['config']['num_queries']} proposals "
            f"cover the peak, {valid:.1f} valid on average; best_heat fallback (sums of every "
            f"proposal) in {sum(x['flagged'] for x in sel)} of {len(sel)} commands; "
            f"mean mask area {area:.0%}"
        )
    pr = report.get("selection_probe")
    if pr:
        lines.append(
            f"selection, {pr['proposals']} coherent synthetic masks, {pr['covering_peak']} on the "
            f"peak ({pr['valid']} valid): batched {pr['batched_ms']:.1f} ms, "
            f"{pr['batched_cached_components_ms']:.1f} ms with cached components; naive loop "
            f"{pr['naive_loop_ms']:.1f} ms (same choice: {'yes' if pr['same_as_naive'] else 'NO'})"
        )
    return lines


def cpu_lines(report: dict[str, Any]) -> list[str]:
    cpu = [r["cpu"] for r in report["records"]["first_command"] if "cpu" in r]
    if not cpu:
        return []
    user = statistics.fmean(c["user_s"] for c in cpu)
    system = statistics.fmean(c["system_s"] for c in cpu)
    faults = statistics.fmean(c["minor_faults"] for c in cpu)
    return [
        f"CPU time of a first command: user {user:.1f} s, system {system:.2f} s, "
        f"{faults:.0f} minor page faults"
    ]


def network_calls_line(report: dict[str, Any]) -> str:
    calls = {
        k: report["records"][k][0]["calls"]
        for k in ("first_command", "second_command", "naive")
        if report["records"][k]
    }
    return "network calls per command: " + "; ".join(
        f"{k.replace('_command', '')}: " + ", ".join(f"{n} {v}" for n, v in c2.items())
        for k, c2 in calls.items()
    )
