"""The benchmark run: build the models, load the pipeline, time each phase, collect the report.

The phases are those of the package docstring (first command on a new frame, prefetched frame,
same frame, sustained, naive); `BenchRun` holds what they share (the pipeline, the clock, the
call counters) so that each phase is one method a reader can follow on its own.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .architectures import (
    PROPOSAL_ARCHS,
    VLP_ARCHS,
    bench_image,
    build_once,
    build_proposals,
    build_vlp,
    frame_variant,
)
from .config import (
    COMMANDS,
    WARMUP_COMMANDS,
    BenchConfig,
    Phase,
    jemalloc_active,
    stage_stats,
)
from .extras import compare_previous, format_preemption, knob_table, preemption_probe
from .machine import cpu_description
from .measure import (
    Calls,
    Clock,
    Conversion,
    counting_parser,
    current_rss_bytes,
    mib,
    peak_rss_bytes,
)
from .naive import naive_command
from .selection_probe import selection_diagnostics, selection_probe

Log = Callable[[str], None]


def run_bench(cfg: BenchConfig, log: Log = print) -> dict[str, Any]:
    """Run the benchmark described by cfg; returns the JSON-ready report (see the package
    docstring).
    """
    import torch

    from ...models.loading import quiet_transformers, resolve_device

    check_config(cfg)
    quiet_transformers()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    load_start = os.getloadavg()
    with model_root(cfg) as root:
        vlp_dir, prop_dir, build_s = build_models(cfg, root, log)
        run = BenchRun(cfg, device, vlp_dir, prop_dir, log)
        run.warm_up()
        phases = run.time_phases()
        extra = run.extras(root, phases["first_command"])
        naive, naive_checks = run.time_naive(phases["first_command"])
        run.memory["rss_now_mib"] = mib(current_rss_bytes() or 0)
        run.calls.detach()
        report = run.report(phases, naive, extra, build_s, load_start)
        if naive.records:
            e2e = report["end_to_end_ms"]
            report["naive_vs_optimised"] = {
                "first_command": round(e2e["naive"] / e2e["first_command"], 2),
                "second_command": round(e2e["naive"] / e2e["second_command"], 2),
                "checks": naive_checks,
            }
        return report


def check_config(cfg: BenchConfig) -> None:
    if cfg.arch not in VLP_ARCHS:
        raise ValueError(f"unknown --arch {cfg.arch!r}; known: {', '.join(VLP_ARCHS)}")
    if cfg.proposal_arch not in PROPOSAL_ARCHS:
        raise ValueError(
            f"unknown --proposal-arch {cfg.proposal_arch!r}; known: {', '.join(PROPOSAL_ARCHS)}"
        )
    if cfg.frames < 1 or cfg.commands < 1:
        raise ValueError("--frames and --commands must be at least 1")


@contextlib.contextmanager
def model_root(cfg: BenchConfig) -> Iterator[Path]:
    """The folder the built models go to: cfg.model_dir (kept, reused), else a temp folder."""
    if cfg.model_dir is not None:
        root = Path(cfg.model_dir)
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="iterprime-bench-") as tmp:
        yield Path(tmp)


def build_models(cfg: BenchConfig, root: Path, log: Log) -> tuple[Path, Path, float]:
    """Real architectures from their configs with random weights, saved for the pipeline to
    load the way it loads released checkpoints.
    """
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
    return vlp_dir, prop_dir, build_s


class BenchRun:
    """One loaded pipeline and what every timed phase shares."""

    def __init__(self, cfg: BenchConfig, device: Any, vlp_dir: Path, prop_dir: Path, log: Log):
        from ...pipeline import Segmenter, SegmenterSettings
        from ..cli import apply_overrides

        self.cfg, self.device, self.log = cfg, device, log
        self.vlp_dir, self.prop_dir = vlp_dir, prop_dir
        self.cuda = device.type == "cuda"
        self.clock = Clock(self.cuda)
        # stop_rule none: all 3 IGRS passes whatever the random ITM scores say; best_heat:
        # random masks are often fragmented, and a command that selects nothing would skip the
        # mask geometry
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
        self.settings = apply_overrides(settings, cfg.overrides)
        self.calls = Calls()
        t = time.perf_counter()
        self.segmenter = Segmenter(
            self.settings,
            parser=counting_parser(
                self.calls, primary_tags=self.settings.primary_tags, parser=self.settings.parser
            ),
        )
        self.parser_kind = self.segmenter.warmup()
        self.load_s = time.perf_counter() - t
        self.calls.attach(self.segmenter)
        self.memory: dict[str, Any] = {"peak_rss_after_load_mib": mib(peak_rss_bytes())}
        log(
            f"pipeline loaded in {self.load_s:.1f} s on {device} ({self.segmenter.vlp.dtype}), "
            f"parser {self.parser_kind}"
        )
        self.image = bench_image(cfg.size)
        self.conversion = Conversion()
        self.heatmaps: dict[int, np.ndarray] = {}

    def command(self, img: np.ndarray, command: str, new_frame: bool) -> dict[str, Any]:
        """One timed command, with the node's conversions around the pipeline."""
        before = self.calls.snapshot()
        clock = self.clock
        msg = self.conversion.image_message(img) if new_frame else None  # the camera driver's
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = clock()
        if msg is not None:
            img = self.conversion.incoming(msg)
        t1 = clock()
        result = self.segmenter.segment(img, command)
        t2 = clock()
        self.conversion.outgoing(result, command)
        t3 = clock()
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        timings = {k: v * 1000 for k, v in result.timings.items()}
        timings["conversion"] = ((t1 - t0) + (t3 - t2)) * 1000
        timings["end_to_end"] = (t3 - t0) * 1000
        return {
            "command": command,
            "success": result.success,
            "error": result.error,
            "frame_cached": result.frame_cached,
            "prefetched": result.prefetched,
            "iterations": result.iterations,
            "stop_reason": result.stop_reason,
            "num_proposals": result.num_proposals,
            "proposal_index": result.proposal_index,
            "calls": self.calls.since(before),
            "timings_ms": {k: round(v, 3) for k, v in timings.items()},
            # process CPU time and minor page faults (the allocator's share: jemalloc)
            "cpu": {
                "user_s": round(usage1.ru_utime - usage0.ru_utime, 3),
                "system_s": round(usage1.ru_stime - usage0.ru_stime, 3),
                "minor_faults": int(usage1.ru_minflt - usage0.ru_minflt),
            },
            "selection": selection_diagnostics(self.segmenter, result),
            "_heatmap": result.heatmap,
        }

    def warm_up(self) -> None:
        for w in range(self.cfg.warmup):
            self.log(f"warm-up command {w + 1}/{self.cfg.warmup} ...")
            command = WARMUP_COMMANDS[w % len(WARMUP_COMMANDS)]
            self.command(frame_variant(self.image, 1000 + w), command, True)
        self.memory["peak_rss_after_warmup_mib"] = mib(peak_rss_bytes())

    def time_phases(self) -> dict[str, Phase]:
        """New frames (a first and a second command on each), sustained, prefetched frames."""
        import torch

        cfg, n_cmd = self.cfg, len(COMMANDS)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        first, second = Phase(), Phase()
        for f in range(cfg.frames):
            img = frame_variant(self.image, f)
            rec = self.command(img, COMMANDS[(2 * f) % n_cmd], True)
            self.heatmaps[f] = rec["_heatmap"]
            first.records.append(rec)
            ms = rec["timings_ms"]["end_to_end"]
            self.log(f"frame {f + 1}/{cfg.frames}: first command {ms:.0f} ms")
            rec = self.command(img, COMMANDS[(2 * f + 1) % n_cmd], False)
            second.records.append(rec)
            ms = rec["timings_ms"]["end_to_end"]
            self.log(f"frame {f + 1}/{cfg.frames}: second command {ms:.0f} ms")
        sustained = Phase()
        img = frame_variant(self.image, cfg.frames - 1)
        t0 = self.clock()
        for i in range(cfg.commands):
            sustained.records.append(self.command(img, COMMANDS[i % n_cmd], False))
        self.sustained_s = self.clock() - t0
        self.log(f"sustained: {cfg.commands} commands in {self.sustained_s:.2f} s")
        # after the sustained run: the prefetched frames would push its frame out of the cache
        prefetched = self.time_prefetched() if cfg.prefetched else Phase()
        return {
            "first_command": first,
            "prefetched_command": prefetched,
            "second_command": second,
            "sustained": sustained,
        }

    def time_prefetched(self) -> Phase:
        """A command on a frame the idle robot prepared (the preparation is not timed)."""
        prefetched = Phase()
        for f in range(self.cfg.frames):
            img = frame_variant(self.image, 100 + f)
            prep = self.segmenter.prepare_frame(img)
            rec = self.command(img, COMMANDS[(2 * f) % len(COMMANDS)], True)
            rec["prepare_ms"] = {k: round(v * 1000, 3) for k, v in prep.timings.items()}
            prefetched.records.append(rec)
            ms = rec["timings_ms"]["end_to_end"]
            self.log(f"frame {f + 1}/{self.cfg.frames}: command on a prefetched frame {ms:.0f} ms")
        return prefetched

    def extras(self, root: Path, first: Phase) -> dict[str, Any]:
        """The preemption and selection probes, optimised-run memory, and the optional
        side-by-side runs (--compare-previous, --knobs).
        """
        import torch

        cfg, extra = self.cfg, {}  # type: ignore[var-annotated]
        if cfg.prefetched:
            # a command on the last prefetched frame while the prefetcher works on a new one
            stage_s = statistics.fmean(
                r["timings_ms"].get("proposals", 0.0) / 1000 for r in first.records
            )
            extra["preemption"] = preemption_probe(
                self.segmenter,
                frame_variant(self.image, 100 + cfg.frames - 1),
                frame_variant(self.image, 150),
                stage_s,
                self.clock,
            )
            self.log(format_preemption(extra["preemption"]))
        queries = max(1, int(getattr(self.segmenter.proposals, "num_queries", 0) or 0))
        self.probe = selection_probe(
            self.segmenter, self.heatmaps[cfg.frames - 1], queries, self.clock
        )
        # weights are memory-mapped: they become resident as the first command touches them
        self.memory["peak_rss_optimised_mib"] = mib(peak_rss_bytes())
        if self.cuda:
            self.memory["gpu_peak_optimised_mib"] = mib(
                torch.cuda.max_memory_allocated(self.device)
            )
        args = (self.vlp_dir, self.prop_dir)
        if cfg.compare:
            extra["compare_previous"] = compare_previous(
                self.settings, *args, self.image, self.segmenter.parser, self.clock, self.log
            )
        if cfg.knobs:
            extra["knobs"] = knob_table(
                self.settings,
                *args,
                cfg.proposal_arch,
                root,
                cfg.seed,
                self.image,
                self.segmenter.parser,
                self.clock,
                self.log,
            )
        return extra

    def time_naive(self, first: Phase) -> tuple[Phase, list[dict[str, Any]]]:
        """The reference code's per-pass recomputation, and whether it chose the same mask."""
        import torch

        cfg, naive, checks = self.cfg, Phase(), []
        if not cfg.naive:
            return naive, checks
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        # no parse cache: every parse runs spaCy again (counted like the pipeline's)
        parser = counting_parser(
            self.calls,
            primary_tags=self.settings.primary_tags,
            parser=self.settings.parser,
            cache_size=0,
        )
        parser.kind  # load it outside the timed region, like the pipeline's warmup
        for k in range(cfg.naive_commands):
            f = k % cfg.frames
            command = COMMANDS[(2 * f) % len(COMMANDS)]
            before = self.calls.snapshot()
            img = frame_variant(self.image, f)
            timings, info = naive_command(
                self.segmenter, img, command, parser, self.clock, self.conversion
            )
            rec = {
                "command": command,
                "iterations": info["iterations"],
                "proposal_index": info["index"],
                "calls": self.calls.since(before),
                "timings_ms": {k2: round(v * 1000, 3) for k2, v in timings.items()},
            }
            naive.records.append(rec)
            heat = self.heatmaps.get(f)
            checks.append(
                {
                    "frame": f,
                    "same_proposal": info["index"] == first.records[f]["proposal_index"],
                    "heatmap_max_abs_diff": None
                    if heat is None
                    else float(np.abs(info["heatmap"] - heat).max()),
                }
            )
            ms = rec["timings_ms"]["end_to_end"]
            self.log(f"naive command {k + 1}/{cfg.naive_commands}: {ms:.0f} ms")
        self.memory["peak_rss_naive_mib"] = mib(peak_rss_bytes())
        if self.cuda:
            self.memory["gpu_peak_naive_mib"] = mib(torch.cuda.max_memory_allocated(self.device))
        return naive, checks

    def report(
        self,
        phases: dict[str, Phase],
        naive: Phase,
        extra: dict[str, Any],
        build_s: float,
        load_start: tuple[float, float, float],
    ) -> dict[str, Any]:
        """The JSON-ready report: configuration, machine, per-stage figures, records."""
        records = {**phases, "naive": naive}
        for phase in records.values():
            for r in phase.records:
                r.pop("_heatmap", None)
        stats = {
            name: stage_stats(phase.records) for name, phase in records.items() if phase.records
        }
        e2e = {k: v["end_to_end"]["mean_ms"] for k, v in stats.items()}
        return {
            "config": self.config_summary(),
            "machine": self.machine(load_start),
            "build_s": round(build_s, 2),
            "load_s": round(self.load_s, 2),
            "stages": stats,
            "end_to_end_ms": e2e,
            "commands_per_s": {
                "same_frame": round(self.cfg.commands / self.sustained_s, 3),
                "new_frame_each": round(1000.0 / e2e["first_command"], 3),
            },
            "memory": self.memory,
            "selection_probe": self.probe,
            **extra,
            "records": {name: phase.records for name, phase in records.items()},
        }

    def config_summary(self) -> dict[str, Any]:
        from ...models.precision import dtype_name

        cfg, seg, settings = self.cfg, self.segmenter, self.settings
        return {
            "vlp_arch": cfg.arch,
            "vlp": VLP_ARCHS[cfg.arch][0],
            "proposal_arch": cfg.proposal_arch,
            "proposals": PROPOSAL_ARCHS[cfg.proposal_arch][0],
            "num_queries": int(getattr(seg.proposals, "num_queries", 0)),
            "vlp_params": n_params(seg.vlp.model),
            "proposal_params": n_params(seg.proposals.model),
            "device": str(self.device),
            "dtype": str(seg.vlp.dtype).replace("torch.", ""),
            "autocast": settings.autocast,
            "autocast_dtype": dtype_name(getattr(seg.proposals, "autocast_dtype", None)),
            "jemalloc": jemalloc_active(),
            "image_size": list(cfg.size),
            "frames": cfg.frames,
            "commands": cfg.commands,
            "warmup": cfg.warmup,
            "naive_commands": cfg.naive_commands if cfg.naive else 0,
            "igrs_passes": settings.igrs_iterations,
            "gradcam_layer": seg.vlp.gradcam_layer,
            "parser": self.parser_kind,
            "conversion": self.conversion.kind,
            "overrides": list(cfg.overrides),
            "settings_stop_rule": settings.stop_rule,
        }

    def machine(self, load_start: tuple[float, float, float]) -> dict[str, Any]:
        import torch

        return {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "cpu": cpu_description(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(self.device) if self.cuda else None,
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        }


def n_params(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
        return None
