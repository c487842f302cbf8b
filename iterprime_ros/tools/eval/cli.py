"""``iterprime eval``: accuracy on RefCOCO/+/g and PhraseCut the way the paper measures it.

Examples (docs/evaluation.md has the full walk-through)::

    iterprime eval --table 1 --data-root data/refer               # Table 1, full method
    iterprime eval --dataset refcoco:testA --ablation no-igrs --ablation full --limit 500
    iterprime eval --table 3 --table 4 --data-root data/refer      # the ablations
    iterprime eval --dataset phrasecut --phrasecut-root data/PhraseCut
    iterprime eval --list-ablations
    iterprime eval --dataset refcoco:val --limit 500 --sweep gradcam_layer=4,5,6,7,8
    iterprime eval --dataset refcoco:val --limit 500 --sweep half_precision=false,true

Results go to ``--out`` (default ``eval_results/``): one resumable ``.jsonl`` per
(dataset, split, configuration), ``results.json`` and ``results.md``; the Markdown is also printed.
Rerunning the same command resumes; ``--overwrite`` starts again.

``--sweep KEY=V1,V2,...`` runs the same evaluation once per value of one SegmenterSettings
field (each in ``--out``/KEY=V, resumable) and prints one table, value by value, with the best
value per column -- to pick e.g. the Grad-CAM layer on a *validation* split, or to see what fp16
changes against fp32 (``half_precision=false,true``; fp16 is CUDA only: on CPU both rows run in
fp32 and the command says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from ...image_size import DEFAULT_MAX_IMAGE_PIXELS
from ..cli import add_model_arguments
from .ablations import TABLE_DATASETS, AblationConfig, AblationRow, describe_rows, select_rows
from .datasets import DATASET_NAMES, DataPaths, DatasetError, DatasetLoader, parse_dataset_arg
from .report import RowRef, build_report, render_markdown
from .runner import (
    EvalTask,
    OutputLockedError,
    ResumeMismatchError,
    RunPlan,
    run,
    summarise,
)

log = logging.getLogger(__name__)

WORLD_MODULE = "iterprime_ros.tools.world.evaluate"
# Settings that do not change the numbers (or are forced by eval_settings): ignored when resuming.
NOT_IDENTITY = frozenset(
    {"device", "frame_cache_size", "normalize_commands", "check_language", "extra_command_phrases"}
)


def _world_module() -> Any | None:
    try:
        return importlib.import_module(WORLD_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name and WORLD_MODULE.startswith(exc.name):
            return None
        raise


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="accuracy on RefCOCO/+/g and PhraseCut (and the paper's ablations)",
        description="Evaluate on RefCOCO/RefCOCO+/RefCOCOg (refer layout) and PhraseCut: mIoU, "
        "oIoU, Prec@0.5-0.9, "
        "Position/Others, with the paper's figures side by side. Resumable: rerun the same "
        "command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Tables: 1 = RefCOCO/+/g main results, 2 = PhraseCut, 3 = aggregation, 4 = IGRS "
        "design, "
        "5 = Position vs Others. See --list-ablations and docs/evaluation.md.",
    )
    _add_what_arguments(p.add_argument_group("what to evaluate"))
    _add_data_arguments(p.add_argument_group("data"))
    _add_output_arguments(p.add_argument_group("output"))
    _add_model_arguments(
        p.add_argument_group(
            "model",
            "a row's own switches (aggregation, igrs_iterations, igrs_alpha) win over --set",
        )
    )
    _add_world_arguments(p)
    p.set_defaults(func=cmd_eval)


def _add_what_arguments(what: Any) -> None:
    """Which datasets, splits, paper tables and named rows to run, and how many samples."""
    what.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME[:SPLIT]",
        help=f"one of {', '.join(DATASET_NAMES)}, optionally with a split (repeatable; default: "
        "the "
        "--table's datasets)",
    )
    what.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="SPLIT",
        help="splits for the bare --dataset names (default: the paper's: val/testA/testB, "
        "val/test, test)",
    )
    what.add_argument(
        "--table",
        action="append",
        default=[],
        type=int,
        choices=sorted(TABLE_DATASETS),
        help="run every row of this paper table on its datasets (repeatable)",
    )
    what.add_argument(
        "--ablation",
        action="append",
        default=[],
        metavar="NAME",
        help="run this named row (repeatable; --list-ablations shows them)",
    )
    what.add_argument(
        "--mask-image",
        action="store_true",
        help="without --table/--ablation: IGRS masks the image pixels instead of the features",
    )
    what.add_argument(
        "--limit", type=int, metavar="N", help="only the first N samples of each dataset split"
    )
    what.add_argument("--list-ablations", action="store_true", help="list the named rows and exit")


def _add_data_arguments(data: Any) -> None:
    """Where the annotation files and the images are."""
    data.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="refer data folder: DIR/refcoco/refs(unc).p + instances.json, DIR/refcoco+/, "
        "DIR/refcocog/",
    )
    data.add_argument(
        "--coco-images",
        type=Path,
        metavar="DIR",
        help="COCO train2014 images (default DATA_ROOT/images/mscoco/images/train2014)",
    )
    data.add_argument(
        "--phrasecut-root", type=Path, metavar="DIR", help="PhraseCut folder with refer_test.json"
    )
    data.add_argument(
        "--phrasecut-images",
        type=Path,
        metavar="DIR",
        help="PhraseCut images (default ROOT/images)",
    )
    data.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help="the image-size rule's limit: bigger images are downscaled for the models, more "
        "than 16x bigger skipped, and an annotation file bigger than the biggest image it "
        f"accepts is refused before it is read (default {DEFAULT_MAX_IMAGE_PIXELS}; "
        "iterprime_ros/image_size.py)",
    )


def _add_output_arguments(out: Any) -> None:
    """Where the results go, and whether to start again or only report."""
    out.add_argument(
        "--out",
        type=Path,
        default=Path("eval_results"),
        metavar="DIR",
        help="results folder (default eval_results/); rerun with the same folder to resume",
    )
    out.add_argument(
        "--overwrite", action="store_true", help="discard earlier results in --out for these runs"
    )
    out.add_argument(
        "--report-only", action="store_true", help="summarise the results files, run nothing"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_model_arguments(model: Any) -> None:
    """The model choice every model-running command offers, and eval's --sweep."""
    add_model_arguments(model)
    model.add_argument(
        "--sweep",
        metavar="KEY=V1,V2,...",
        help="run once per value of one SegmenterSettings field (e.g. gradcam_layer=4,5,6,7,8 "
        "or half_precision=false,true), each in OUT/KEY=V, and compare them in one table",
    )


def _add_world_arguments(p: argparse.ArgumentParser) -> None:
    """--world and the world evaluation's own flags, when that module is in this build."""
    world = _world_module()
    p.add_argument(
        "--world",
        action="store_true",
        help="evaluate on generated world scenes instead (iterprime_ros/tools/world/evaluate.py)"
        + ("" if world is not None else "; not available in this build"),
    )
    if world is not None and hasattr(world, "add_world_eval_arguments"):
        try:
            world.add_world_eval_arguments(p.add_argument_group("world (with --world)"))
        except argparse.ArgumentError as exc:  # a flag clash must not break the whole CLI
            log.warning("world evaluation flags not added: %s", exc)


# ---------------------------------------------------------------------------- planning
def _rows(args: argparse.Namespace, settings: Any) -> list[AblationRow]:
    if args.table or args.ablation:
        if args.mask_image:
            raise _user_error(
                "--mask-image applies to a run without --table/--ablation (use --ablation "
                "mask-image)"
            )
        try:
            return select_rows(args.ablation, args.table)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
    config = AblationConfig.from_settings(settings, "image" if args.mask_image else "feature")
    return [AblationRow("default", 1, "this run's settings", config)]


def _tasks_for_rows(
    args: argparse.Namespace, rows: list[AblationRow]
) -> dict[tuple[str, str], list[AblationRow]]:
    """(dataset, split) -> rows to run on it: explicit --dataset for every row, else each row's
    table data.
    """
    out: dict[tuple[str, str], list[AblationRow]] = {}
    if args.dataset:
        try:
            pairs = parse_dataset_arg(args.dataset, args.split)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
        for pair in pairs:
            out[pair] = list(rows)
        return out
    if args.split:
        raise _user_error("--split needs --dataset")
    if all(r.name == "default" for r in rows):
        raise _user_error(
            "say what to evaluate: --dataset NAME[:SPLIT] or --table N (see --list-ablations)"
        )
    for r in rows:
        for pair in TABLE_DATASETS[r.table]:
            out.setdefault(pair, []).append(r)
    return out


def _user_error(message: str) -> Exception:
    from ..errors import UserError

    return UserError(message)


def _base_settings(args: argparse.Namespace) -> Any:
    from ...pipeline import SegmenterSettings
    from ..cli import model_settings
    from .predictors import eval_settings

    settings = eval_settings(model_settings(args, SegmenterSettings()))
    # the selection variant flags (declared with the world's) apply to dataset runs too
    changes: dict[str, Any] = {}
    if getattr(args, "selection_score", "reference") != "reference":
        changes["selection_score"] = args.selection_score
    if getattr(args, "spatial_prior", "off") == "on":
        changes["spatial_prior"] = True
    return settings.replace(**changes) if changes else settings


def _identity(
    settings: Any, config: AblationConfig, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> dict[str, Any]:
    """What a results file must match to be resumed: every setting that changes the numbers.

    max_image_pixels is named only when it is not the default (it decides which images are
    downscaled), so results files written before it could be set still resume.
    """
    values = dataclasses.asdict(settings.replace(**config.settings_changes()))
    ident = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in values.items()
        if k not in NOT_IDENTITY
    }
    ident["masking"] = config.normalised().masking
    ident["predictor"] = "segmenter"
    if max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS:
        ident["max_image_pixels"] = max_image_pixels
    return ident


# ---------------------------------------------------------------------------- the command
def cmd_eval(args: argparse.Namespace) -> int:
    special = _special_mode(args)
    if special is not None:
        return special
    settings = _base_settings(args)
    rows = _rows(args, settings)
    assignment = _tasks_for_rows(args, rows)
    configs: dict[str, AblationConfig] = {}
    for r in rows:
        configs.setdefault(r.config.key(), r.config.normalised())
    _note_ignored_overrides(args, rows)
    tasks, only = _load_tasks(args, assignment)  # data first: fail before loading any model
    identity = {
        key: _identity(settings, cfg, args.max_image_pixels) for key, cfg in configs.items()
    }
    plan = RunPlan(
        tasks=tasks,
        predictors=dict.fromkeys(configs),
        out_dir=args.out,
        identity=identity,
        overwrite=args.overwrite,
        only=only,
        max_image_pixels=args.max_image_pixels,
    )
    row_refs = [RowRef.of(r) for r in rows]
    status = 0
    if not args.report_only:
        status = _run(plan, settings, configs, progress=not args.no_progress)
    return _report(plan, row_refs, _run_meta(args, settings, identity)) or status


def _special_mode(args: argparse.Namespace) -> int | None:
    """The exit status of a run that is not a plain dataset evaluation (--list-ablations,
    --world, --sweep), or None for a plain one; a bad --limit is refused here, before any of
    them starts.
    """
    if args.list_ablations:
        print(describe_rows())
        return 0
    if args.world:
        world = _world_module()
        if world is None or not hasattr(world, "run_world_eval"):
            raise _user_error(
                "world evaluation is not available in this build "
                "(iterprime_ros/tools/world/evaluate.py)"
            )
        return int(world.run_world_eval(args) or 0)
    if args.limit is not None and args.limit < 1:
        raise _user_error("--limit must be at least 1")
    if args.max_image_pixels < 1:
        raise _user_error("--max-image-pixels must be at least 1")
    if getattr(args, "sweep", None):
        return _sweep(args)
    return None


def _note_ignored_overrides(args: argparse.Namespace, rows: list[AblationRow]) -> None:
    """Say so when --set gives a switch that the named rows set themselves (theirs win)."""
    overridden = {
        k
        for k in ("aggregation", "igrs_iterations", "igrs_alpha")
        if any(o.split("=", 1)[0].strip().replace("-", "_") == k for o in args.overrides)
    }
    if overridden and any(r.name != "default" for r in rows):
        print(
            f"note: the rows set {', '.join(sorted(overridden))} themselves; --set for them is "
            "ignored",
            file=sys.stderr,
        )


def _load_tasks(
    args: argparse.Namespace, assignment: dict[tuple[str, str], list[AblationRow]]
) -> tuple[list[EvalTask], dict[str, list[str]]]:
    """The samples of every (dataset, split) and the configurations each runs.

    Data is read before any model is loaded because a wrong path is the usual mistake and
    loading the models first would make the user wait for it; a data problem is one line.
    """
    loader = DatasetLoader(
        DataPaths(args.data_root, args.coco_images, args.phrasecut_root, args.phrasecut_images),
        args.max_image_pixels,
    )
    tasks: list[EvalTask] = []
    only: dict[str, list[str]] = {}
    try:
        for (dataset, split), task_rows in assignment.items():
            samples = loader.samples(dataset, split, args.limit)  # limited before building
            if not samples:
                raise DatasetError(f"{dataset} {split}: no samples")
            if not samples[0].image_path.is_file() and not args.report_only:
                raise DatasetError(
                    f"{dataset} {split}: image not found: {samples[0].image_path} "
                    f"(set --coco-images / --phrasecut-images)"
                )
            task = EvalTask(dataset, split, samples)
            tasks.append(task)
            only[task.name] = sorted({r.config.key() for r in task_rows})
    except DatasetError as exc:
        raise _user_error(str(exc)) from None
    return tasks, only


def _run_meta(
    args: argparse.Namespace, settings: Any, identity: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """What the report records about the run: models, device, limit, output and the settings
    every row shares (the rows' own switches are left out: each row names them).
    """
    return {
        "vlp_model": settings.vlp_model,
        "proposal_model": settings.proposal_model,
        "device": settings.device,
        "limit": args.limit,
        "out": str(args.out),
        "command": " ".join(sys.argv[1:]),
        "settings": {
            k: v
            for k, v in identity[next(iter(identity))].items()
            if k not in ("aggregation", "igrs_iterations", "igrs_alpha", "masking")
        },
    }


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """Split KEY=V1,V2,... ("gradcam_layer=4,5,6" -> key, ["4", "5", "6"]); UserError if bad."""
    key, sep, values = text.partition("=")
    key = key.strip().replace("-", "_")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key or len(items) < 2:
        raise _user_error(f"--sweep {text!r}: expected KEY=V1,V2,... with at least two values")
    if len(set(items)) != len(items):
        raise _user_error(f"--sweep {text!r}: a value is repeated")
    return key, items


def _sweep(args: argparse.Namespace) -> int:
    """One evaluation per value (OUT/KEY=V), then one comparison table (sweep.md, sweep.json)."""
    key, values = parse_sweep(args.sweep)
    runs: list[tuple[str, Any]] = []
    for value in values:  # validate every value before the first (long) run
        sub = argparse.Namespace(**vars(args))
        sub.sweep = None
        sub.overrides = [*args.overrides, f"{key}={value}"]
        sub.out = args.out / f"{key}={value}"
        _base_settings(sub)  # UserError for a bad key or value
        runs.append((value, sub))
    if key == "half_precision":
        from ...models.loading import resolve_device

        device = resolve_device(_base_settings(runs[0][1]).device)
        if device.type != "cuda":
            print(
                f"note: fp16 runs only on CUDA; on {device.type} every value runs in fp32",
                file=sys.stderr,
            )
    status = 0
    for value, sub in runs:
        print(f"== {key}={value} ==", file=sys.stderr)
        status = cmd_eval(sub) or status
    table = sweep_table(key, [(v, sub.out / "results.json") for v, sub in runs])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.md").write_text(table["markdown"])
    (args.out / "sweep.json").write_text(
        json.dumps(_finite({k: v for k, v in table.items() if k != "markdown"}), indent=2) + "\n"
    )
    print(table["markdown"])
    print(f"sweep: {args.out / 'sweep.md'}, {args.out / 'sweep.json'}", file=sys.stderr)
    return status


def sweep_table(key: str, runs: list[tuple[str, Path]]) -> dict[str, Any]:
    """Rows = the swept values, columns = (dataset split, configuration) with each dataset's
    main metric (mIoU; oIoU for PhraseCut) over all its expressions; the best value per column.
    """
    from .report import primary_metric

    values: dict[str, dict[str, float]] = {}
    columns: list[str] = []
    for value, path in runs:
        report = json.loads(path.read_text()) if path.is_file() else {"results": []}
        row: dict[str, float] = {}
        for r in report["results"]:
            metric = primary_metric(r["dataset"])
            col = f"{r['dataset']} {r['split']} {r['config']} {metric}"
            got = (r.get("groups") or {}).get("all", {}).get(metric)
            row[col] = float("nan") if got is None else float(got)
            if col not in columns:
                columns.append(col)
        values[value] = row
    best = {}
    for col in columns:
        scored = [
            (v, row[col]) for v, row in values.items() if row.get(col, math.nan) == row.get(col)
        ]
        if scored:
            best[col] = max(scored, key=lambda vx: vx[1])[0]  # ties: the first value
    lines = [
        f"Sweep over {key} (main metric, %, all expressions; best per column in bold)",
        "",
        "| " + key + " | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for value, row in values.items():
        cells = []
        for col in columns:
            x = row.get(col, math.nan)
            cell = "—" if x != x else f"{100 * x:.1f}"
            cells.append(f"**{cell}**" if best.get(col) == value and x == x else cell)
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return {"key": key, "values": values, "best": best, "markdown": "\n".join(lines) + "\n"}


def _run(plan: RunPlan, settings: Any, configs: dict[str, AblationConfig], progress: bool) -> int:
    from ...models.loading import quiet_transformers
    from ...pipeline import Segmenter
    from .predictors import SharedBackends, build_segmenter_predictors

    quiet_transformers()
    first = Segmenter(settings)  # loads the backends named in the settings once
    backends = SharedBackends.wrap(first.vlp, first.proposals)
    plan.predictors = build_segmenter_predictors(settings, configs, backends)
    try:
        ran = run(plan, progress=progress)
    except (ResumeMismatchError, OutputLockedError) as exc:
        raise _user_error(str(exc)) from None
    except DatasetError as exc:
        raise _user_error(f"{exc} (finished samples are saved; rerun to resume)") from None
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished samples are saved in {plan.out_dir}; run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    log.info("evaluated %d samples", ran)
    return 0


def _report(plan: RunPlan, rows: list[RowRef], meta: dict[str, Any]) -> int:
    summaries = summarise(plan)
    report = build_report(summaries, rows, meta)
    markdown = render_markdown(summaries, rows, meta)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    (plan.out_dir / "results.json").write_text(
        json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"
    )
    (plan.out_dir / "results.md").write_text(markdown)
    print(markdown)
    print(
        f"results: {plan.out_dir / 'results.json'}, {plan.out_dir / 'results.md'}", file=sys.stderr
    )
    return 0


def _finite(obj: Any) -> Any:
    """NaN (a metric of an empty group) -> null, so results.json is strict JSON."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
