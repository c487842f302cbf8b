"""`iterprime bench` on the command line: its arguments, checked before any model loads.

The arguments are grouped by what they choose (the models, the run, the output) so that each
group reads as one list.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import add_set_argument, device_argument
from .architectures import PROPOSAL_ARCHS, VLP_ARCHS
from .config import BenchConfig
from .extras import device_report
from .report import format_report
from .run import run_bench


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
        "their configs with random weights (timing does not depend on weight values), on a "
        "640x480 photograph: per-stage ms of a first command on a new frame, of a second "
        "command on the same frame (frame cache), sustained commands/s, peak host and GPU "
        "memory, and a naive run that redoes the per-image work in every IGRS pass as the "
        "reference code does.",
        epilog="examples: iterprime bench --device cuda  |  "
        "iterprime bench --proposal-arch swin-t --device cpu  |  "
        "iterprime bench --arch tiny --proposal-arch swin-tiny-test --size 160x120 (CI)",
    )
    add_model_arguments(p)
    add_phase_arguments(p)
    add_run_arguments(p)
    add_set_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument(
        "--json",
        metavar="OUT",
        help="write the full report (stages, records, memory) as JSON here",
    )
    p.set_defaults(func=cmd_bench)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Which architectures, on which device, in which precision."""
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


def add_phase_arguments(p: argparse.ArgumentParser) -> None:
    """Which optional phases and side-by-side runs to add."""
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


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Image size, how many frames and commands, threads, where the models are kept."""
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
