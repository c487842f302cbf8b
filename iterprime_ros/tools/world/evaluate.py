"""World evaluation: the paper's Tables 3 and 5 on the synthetic tabletop world.

The whole pipeline runs as the node runs it -- command normalisation, parse and primary word
(core.text), Grad-CAM + PWEM + IGRS (core.igrs via models.blip.BlipITMBackend), selection
(core.selection), all through pipeline.Segmenter -- with the world's trained BLIP-architecture
model (models/world_blip) and ORACLE proposals (world.oracle: the true instance masks plus
merged / partial / table distractors; no proposal network was trained for the world).

Held-out set: test-split scenes (seeds 30,000,000 + i, never used in training), two
expressions per scene with kinds balanced (attribute / absolute position / relation) and 30 %
of them said as spoken commands; the first N (default 500) expressions. Fixed by the seed.

Rows: aggregation mode (mean, gvlp, global, local, pwem) x IGRS off (T = 1) / on (T = 3).
Columns: mIoU overall, Position, Others (method.md §7: position = the expression contains
left/right/up/down/top/bottom), oIoU, Prec@0.5/0.9, pointing (heat-map peak on the target).

    python -m iterprime_ros.tools.world.evaluate              # 500 expressions, all rows (~1.5 min
    on one CPU core)
    python -m iterprime_ros.tools.world.evaluate -n 40 --modes pwem mean
    iterprime eval --world                              # the same through the CLI
    python -m iterprime_ros.tools.world.evaluate --select-gradcam-layer   # choose the layer on
    VALIDATION scenes

Results of the committed model: docs/world_results.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.selection import SELECTION_SCORES
from ..cli import device_argument
from ..eval.metrics import MetricAccumulator
from .eval_table import format_table
from .grammar import Referring, scene_expressions
from .model_folder import recommended_gradcam_layer, world_model_folder
from .oracle import OracleProposals
from .scenes import Scene, generate_scene, patch_coverage, scene_seeds

log = logging.getLogger("iterprime.world.evaluate")

MODES: tuple[str, ...] = ("mean", "gvlp", "global", "local", "pwem")
EVAL_SEED = 2025
EVAL_KIND_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
EVAL_COMMAND_PROB = 0.3


def _display_path(folder: Path) -> str:
    """The model folder relative to the repository when it is inside it (stable in saved
    results).
    """
    repo = Path(__file__).resolve().parents[3]
    try:
        return str(Path(folder).resolve().relative_to(repo))
    except ValueError:
        return str(folder)


@dataclass(frozen=True)
class EvalItem:
    scene_index: int
    ref: Referring


def eval_set(
    n_expressions: int = 500, split: str = "test", seed: int = EVAL_SEED, per_scene: int = 2
) -> tuple[list[Scene], list[EvalItem]]:
    """The fixed held-out set: scenes of `split` in seed order, `per_scene` expressions each."""
    scenes: list[Scene] = []
    items: list[EvalItem] = []
    i = 0
    while len(items) < n_expressions:
        (s,) = scene_seeds(split, 1, offset=i)
        i += 1
        scene = generate_scene(s)
        refs = scene_expressions(
            scene,
            np.random.default_rng([seed, s]),
            per_scene=per_scene,
            kind_weights=EVAL_KIND_WEIGHTS,
            command_prob=EVAL_COMMAND_PROB,
        )
        if not refs:
            continue
        scenes.append(scene)
        for r in refs[: n_expressions - len(items)]:
            items.append(EvalItem(len(scenes) - 1, r))
    return scenes, items


def perfect_patch_heat_miou(
    scenes: list[Scene],
    items: list[EvalItem],
    grid: int,
    selection_score: str = "reference",
    spatial_prior: bool = False,
    split_position: bool = False,
) -> float | dict[str, float]:
    """MIoU of the selection step fed the best heat map a model with a `grid` x `grid` patch grid
    can give: each patch's exact coverage by the target, through the same minmax + bicubic
    upsampling (core.igrs) and selection (core.selection) as the pipeline, among the oracle's
    proposals. The ceiling of these figures for this model: the half-mask distractors that
    contain the upsampled peak have a higher mean heat than the whole target, so even this map
    picks them often. selection_score / spatial_prior: the selection variant
    (core.selection). split_position: return {"overall", "position", "others"} instead.
    """
    import torch

    from ...core.command import normalise_command
    from ...core.igrs import minmax, upsample
    from ...core.selection import SelectionSettings, select_proposal
    from ...core.spatial import spatial_cues
    from ..eval.metrics import iou, is_position
    from .oracle import oracle_proposals

    variant = SelectionSettings(score=selection_score, spatial_prior=spatial_prior)
    ious, position = [], []
    proposals_of: dict[int, np.ndarray] = {}  # one oracle set per scene (two expressions each)
    for it in items:
        scene = scenes[it.scene_index]
        gt = scene.masks[it.ref.target]
        cover = torch.from_numpy(patch_coverage(gt, grid)).reshape(grid, grid)
        heat = minmax(upsample(minmax(cover), gt.shape)).numpy()
        if it.scene_index not in proposals_of:
            proposals_of[it.scene_index] = oracle_proposals(scene).masks
        proposals = proposals_of[it.scene_index]
        # the cues come from the expression the pipeline would see (the normalised command)
        cues = spatial_cues(normalise_command(it.ref.command)) if spatial_prior else ()
        k = select_proposal(heat, proposals, settings=variant, cues=cues).index
        ious.append(iou(proposals[k] if k is not None else None, gt))
        position.append(is_position(it.ref.text))
    if not split_position:
        return float(np.mean(ious))
    arr, pos = np.asarray(ious), np.asarray(position, bool)
    return {
        "overall": float(arr.mean()),
        "position": float(arr[pos].mean()) if pos.any() else float("nan"),
        "others": float(arr[~pos].mean()) if (~pos).any() else float("nan"),
    }


def _segmenter(backend, oracle, parser, mode: str, igrs: bool, base_settings):
    from ...pipeline import Segmenter

    settings = base_settings.replace(aggregation=mode, igrs_iterations=3 if igrs else 1)
    return Segmenter.from_backends(backend, oracle, settings, parser=parser)


def _chosen_label(r, it: EvalItem, oset) -> str:
    """What the answer chose among the oracle's proposals: the target, another object, or a
    merged / partial / table distractor (with or without the target in it); or a failure.
    """
    if not r.success:
        return "failure"
    kind, members = oset.kinds[r.proposal_index], oset.objects[r.proposal_index]
    if kind == "object":
        return "target" if members == (it.ref.target,) else "other object"
    return f"{kind} ({'with' if it.ref.target in members else 'without'} target)"


def _peak_on_target(heatmap: np.ndarray | None, gt: np.ndarray) -> bool:
    """Pointing: the heat map's peak lies on the target (no heat map: a miss)."""
    if heatmap is None:
        return False
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return bool(gt[y, x])


@dataclass
class _RowTally:
    """What one row (an aggregation mode with IGRS off or on) counts over the held-out items."""

    acc: MetricAccumulator = field(default_factory=MetricAccumulator)
    pointing: list[bool] = field(default_factory=list)
    chosen: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    iterations: list[int] = field(default_factory=list)

    def add(self, r, it: EvalItem, gt: np.ndarray, oset) -> None:
        ref = it.ref
        self.acc.add(
            r.mask if r.success else None, gt, ref.text, kind=ref.kind, command=ref.is_command
        )
        self.pointing.append(_peak_on_target(r.heatmap, gt))
        self.iterations.append(r.iterations)
        if not r.success:
            self.failures[r.error.split(":")[0]] += 1
        self.chosen[_chosen_label(r, it, oset)] += 1

    def row(self, mode: str, igrs: bool, t0: float) -> dict:
        summ = self.acc.summary(key="kind")
        return {
            "mode": mode,
            "igrs": igrs,
            "seconds": round(time.perf_counter() - t0, 1),
            "splits": {k: v.as_dict() for k, v in summ.items()},
            "pointing": float(np.mean(self.pointing)),
            "chosen": dict(self.chosen),
            "failures": dict(self.failures),
            "mean_iterations": float(np.mean(self.iterations)),
        }


def _run_row(seg, oracle, scenes, items, primary_hits: list[int] | None) -> _RowTally:
    """One row over the items, scene by scene (the oracle holds a few scenes' proposals);
    primary_hits, when given, collects whether each primary word was the target's noun.
    """
    by_scene: dict[int, list[EvalItem]] = defaultdict(list)
    for it in items:
        by_scene[it.scene_index].append(it)
    tally = _RowTally()
    for si, its in by_scene.items():
        scene = scenes[si]
        oset = oracle.register(scene)
        for it in its:
            r = seg.segment(scene.image, it.ref.command)
            tally.add(r, it, scene.masks[it.ref.target], oset)
            if primary_hits is not None:
                primary_hits.append(int(r.primary_word == it.ref.expr.target.noun))
    return tally


def _world_meta(
    folder, layer, parser, backend, settings, scenes, items, records, split, seed, primary_hits
) -> dict:
    """The run's description: the model, the set, the references and the ceiling (records:
    per-expression records of a row, for the count of position expressions; primary_hits:
    whether each primary word was the target's noun).
    """
    n_objects = [len(scenes[it.scene_index].objects) for it in items]
    ceiling = perfect_patch_heat_miou(
        scenes,
        items,
        backend.grid,
        settings.selection_score,
        settings.spatial_prior,
        split_position=True,
    )
    return {
        "model": _display_path(folder),
        "gradcam_layer": layer,
        "expressions": len(items),
        "scenes": len(scenes),
        "split": "test (scene seeds 30000000 + i)" if split == "test" else split,
        "seed": seed,
        "proposals": "ORACLE (world.oracle)",
        "parser": parser.kind,
        "kinds": dict(Counter(it.ref.kind for it in items)),
        "position_expressions": int(sum(r["position"] for r in records)),
        "commands": int(sum(it.ref.is_command for it in items)),
        "random_object_miou": float(np.mean([1.0 / n for n in n_objects])),
        "perfect_patch_heat_miou": ceiling["overall"],
        "perfect_patch_heat_split": ceiling,
        "selection_score": settings.selection_score,
        "spatial_prior": settings.spatial_prior,
        "grid": backend.grid,
        "primary_word_is_target_noun": float(np.mean(primary_hits)) if primary_hits else None,
    }


def evaluate_world(
    model_folder: Path | None = None,
    n_expressions: int = 500,
    modes=MODES,
    igrs_options=(False, True),
    gradcam_layer: int | None = None,
    device: str = "cpu",
    seed: int = EVAL_SEED,
    progress: bool = False,
    split: str = "test",
    selection_score: str = "reference",
    spatial_prior: bool = False,
    autocast: str = "off",
) -> dict:
    """Run the rows; returns {"rows": [...], "meta": {...}} (see format_table).

    split: "test" (the held-out set) or "val" (for choices such as the Grad-CAM layer, so the
    test set is never used to tune anything). selection_score / spatial_prior: the selection
    variant (core.selection; the reference and off are the paper's rule), for every row and the
    ceiling. autocast: the backend's mixed precision (models/precision.py), so the cost of
    the node's default ("auto": bf16 on a CPU with native bf16) can be measured here.
    """
    from ...core.text import ExpressionParser
    from ...models.blip import BlipITMBackend
    from ...pipeline import SegmenterSettings

    folder = Path(model_folder or world_model_folder())
    layer = recommended_gradcam_layer(folder) if gradcam_layer is None else int(gradcam_layer)
    backend = BlipITMBackend(folder, device=device, gradcam_layer=layer, autocast=autocast)
    oracle = OracleProposals(max_scenes=4)
    base = SegmenterSettings(
        vlp_model=str(folder),
        device=device,
        autocast=autocast,
        gradcam_layer=layer,
        half_precision=False,
        selection_score=selection_score,
        spatial_prior=spatial_prior,
    )
    parser = ExpressionParser(primary_tags=base.primary_tags, parser=base.parser)
    scenes, items = eval_set(n_expressions, split=split, seed=seed)
    rows: list[dict] = []
    primary_hits: list[int] = []
    for mode in modes:
        for igrs in igrs_options:
            seg = _segmenter(backend, oracle, parser, mode, igrs, base)
            first = mode == modes[0] and igrs == igrs_options[0]
            t0 = time.perf_counter()
            tally = _run_row(seg, oracle, scenes, items, primary_hits if first else None)
            rows.append(tally.row(mode, igrs, t0))
            if progress:
                row = rows[-1]
                print(
                    f"  {mode:6s} IGRS {'on ' if igrs else 'off'}  mIoU "
                    f"{100 * row['splits']['overall']['mIoU']:5.1f}  ({row['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    records = tally.acc.records  # the last row's: which expressions are about position
    meta = _world_meta(
        folder, layer, parser, backend, base, scenes, items, records, split, seed, primary_hits
    )
    meta["autocast"] = autocast
    return {"rows": rows, "meta": meta}


def select_gradcam_layer(
    model_folder: Path | None = None,
    n_expressions: int = 150,
    device: str = "cpu",
    mode: str = "pwem",
    progress: bool = False,
) -> dict:
    """The Grad-CAM layer with the best mIoU on VALIDATION scenes (never the test set).

    Runs `mode` with IGRS off for every text-encoder layer on the first `n_expressions` of the
    val split; returns {"best": layer, "per_layer": {layer: {"mIoU", "pointing"}}}. Ties go to
    the higher pointing, then the deeper layer.
    """
    from ...models.blip import BlipITMBackend

    folder = Path(model_folder or world_model_folder())
    n_layers = BlipITMBackend(folder, device=device, gradcam_layer=0).num_layers
    per_layer: dict[int, dict[str, float]] = {}
    for layer in range(n_layers):
        res = evaluate_world(folder, n_expressions, (mode,), (False,), layer, device, split="val")
        row = res["rows"][0]
        per_layer[layer] = {"mIoU": row["splits"]["overall"]["mIoU"], "pointing": row["pointing"]}
        if progress:
            print(
                f"  layer {layer:2d}: mIoU {100 * per_layer[layer]['mIoU']:5.1f}  "
                f"pointing {100 * row['pointing']:5.1f}",
                file=sys.stderr,
                flush=True,
            )
    best = max(
        per_layer, key=lambda k: (round(per_layer[k]["mIoU"], 6), per_layer[k]["pointing"], k)
    )
    return {
        "best": best,
        "per_layer": per_layer,
        "mode": mode,
        "igrs": False,
        "split": "val",
        "expressions": n_expressions,
    }


def write_gradcam_layer(folder: Path, selection: dict) -> None:
    """Record the selected layer in world_config.json (read by recommended_gradcam_layer)."""
    path = Path(folder) / "world_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    cfg["gradcam_layer"] = int(selection["best"])
    cfg["gradcam_layer_selection"] = {k: v for k, v in selection.items() if k != "best"}
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def add_world_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--world-model",
        "--model",
        dest="world_model",
        type=Path,
        default=None,
        help="world model folder (default: $ITERPRIME_WORLD_MODEL or <repo>/models/world_blip)",
    )
    parser.add_argument(
        "-n", "--expressions", type=int, default=500, help="held-out expressions (first N)"
    )
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=MODES, help="aggregation modes"
    )
    parser.add_argument(
        "--igrs", choices=("both", "on", "off"), default="both", help="IGRS rows to run"
    )
    parser.add_argument(
        "--gradcam-layer",
        type=int,
        default=None,
        help="text-encoder layer for Grad-CAM (default: the one in the model's world_config.json)",
    )
    parser.add_argument(
        "--eval-seed", type=int, default=EVAL_SEED, help="seed of the held-out expression set"
    )
    parser.add_argument(
        "--world-split",
        dest="world_split",
        choices=("test", "val"),
        default="test",
        help="test: the held-out set the figures are reported on; val: validation scenes, for "
        "choosing between models or settings without looking at the test set",
    )
    parser.add_argument(
        "--selection-score",
        choices=SELECTION_SCORES,
        default="reference",
        help="selection rule (core/selection.py): reference (the paper's), coverage (heat "
        "F-measure), whole (the whole object over its parts)",
    )
    parser.add_argument(
        "--spatial-prior",
        choices=("off", "on"),
        default="off",
        help="on: weigh proposals by the expression's spatial words (core/spatial.py)",
    )
    parser.add_argument(
        "--world-device", default="cpu", type=device_argument, help="auto | cpu | cuda | cuda:N"
    )
    parser.add_argument(
        "--world-autocast",
        choices=("off", "auto", "bf16"),
        default="off",
        help="mixed precision of the world model (off: float32, as the committed figures)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--json-out", type=Path, default=None, help="also write the full results as JSON"
    )
    parser.add_argument(
        "--select-gradcam-layer",
        action="store_true",
        help="instead: choose the Grad-CAM layer on VALIDATION scenes (pwem, IGRS off, first N "
        "val expressions, default 150) and record it in the model's world_config.json",
    )
    from .dialogue import add_dialogue_arguments
    from .tracking_eval import add_tracking_arguments

    add_tracking_arguments(parser)
    add_dialogue_arguments(parser)
    return parser


def run_world_eval(args: argparse.Namespace) -> int:
    if getattr(args, "tracking", False):
        from .tracking_eval import run_tracking_eval

        return run_tracking_eval(args)
    if getattr(args, "dialogue", False):
        from .dialogue import run_dialogue_eval

        return run_dialogue_eval(args)
    import torch

    from ...models.loading import ModelNotFoundError, quiet_transformers

    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    igrs = {"both": (False, True), "on": (True,), "off": (False,)}[args.igrs]
    folder = args.world_model or world_model_folder()
    print(
        "NOTE: world evaluation -- synthetic scenes, a model trained only on them, ORACLE "
        "proposals. "
        "These figures are not comparable to the paper's RefCOCO numbers.",
        file=sys.stderr,
    )
    try:
        if getattr(args, "select_gradcam_layer", False):
            n = args.expressions if args.expressions != 500 else 150
            sel = select_gradcam_layer(folder, n, args.world_device, progress=True)
            write_gradcam_layer(folder, sel)
            print(
                f"Grad-CAM layer {sel['best']} (best pwem mIoU, IGRS off, on {n} validation "
                "expressions) "
                f"written to {Path(folder) / 'world_config.json'}"
            )
            return 0
        result = evaluate_world(
            folder,
            args.expressions,
            tuple(args.modes),
            igrs,
            args.gradcam_layer,
            args.world_device,
            args.eval_seed,
            progress=True,
            split=args.world_split,
            selection_score=args.selection_score,
            spatial_prior=args.spatial_prior == "on",
            autocast=args.world_autocast,
        )
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m iterprime_ros.tools.world.evaluate",
        description="IteRPrimE ablations (Tables 3 and 5) on the synthetic world.",
    )
    add_world_eval_arguments(p)
    logging.basicConfig(level=logging.WARNING)
    return run_world_eval(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
