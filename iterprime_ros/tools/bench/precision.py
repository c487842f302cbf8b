"""fp16 against fp32: what half precision changes in the heat map, the ITM score and the answer.

Why: the node runs the VLP in fp16 on CUDA by default (``half_precision``); this puts a number
on what that costs. The comparison runs the full pipeline twice on the same inputs -- the
world model (``models/world_blip``, trained) on world validation scenes with the oracle
proposals -- once in fp32 and once in fp16, and reports per expression the largest and mean
heat-map difference, the match-probability difference, whether the same mask came back (IoU
between the two answers), the pass count, and each run's mIoU against the ground truth.

On CUDA the fp16 run is the real one (``half_precision=True``). On CPU there is no fp16 path
in the backends (resolve_dtype keeps fp32), so the fp16 run here *emulates* it: a copy of the
fp32 model cast to float16 and run by CPU half kernels. That has fp16 storage and rounding of
every tensor but not CUDA's kernels (which accumulate matmuls in fp32): read the CPU figures
as an estimate of the rounding effect, not as a CUDA measurement.

    python -m iterprime_ros.tools.bench.precision -n 100        # ~N x 2 pipeline runs
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import device_argument


def half_copy(backend: Any) -> Any:
    """A BLIP/ALBEF backend whose model is an fp16 copy (CPU emulation of half precision)."""
    import torch

    twin = copy.copy(backend)
    twin.model = copy.deepcopy(backend.model).half()
    twin.dtype = torch.float16
    return twin


def compare_precision(
    n_expressions: int = 100, device: str = "cpu", split: str = "val", folder: Path | None = None
) -> dict[str, Any]:
    """Run the world pipeline in fp32 and fp16 on the same expressions; see the module doc."""
    import torch

    from ...core.text import ExpressionParser
    from ...models.blip import BlipITMBackend
    from ...pipeline import Segmenter, SegmenterSettings
    from ..eval.metrics import iou
    from ..world.evaluate import eval_set, recommended_gradcam_layer, world_model_folder
    from ..world.oracle import OracleProposals

    folder = Path(folder or world_model_folder())
    layer = recommended_gradcam_layer(folder)
    fp32 = BlipITMBackend(folder, device=device, gradcam_layer=layer)
    cuda = fp32.device.type == "cuda"
    fp16 = (
        BlipITMBackend(folder, device=device, gradcam_layer=layer, half_precision=True)
        if cuda
        else half_copy(fp32)
    )
    oracle = OracleProposals(max_scenes=4)
    settings = SegmenterSettings(vlp_model=str(folder), device=device, gradcam_layer=layer)
    parser = ExpressionParser(primary_tags=settings.primary_tags, parser=settings.parser)
    segs = {
        name: Segmenter.from_backends(vlp, oracle, settings, parser=parser)
        for name, vlp in (("fp32", fp32), ("fp16", fp16))
    }
    scenes, items = eval_set(n_expressions, split=split)
    rows = []
    for it in items:
        scene = scenes[it.scene_index]
        oracle.register(scene)
        gt = scene.masks[it.ref.target]
        res = {name: seg.segment(scene.image, it.ref.command) for name, seg in segs.items()}
        a, b = res["fp32"], res["fp16"]
        if a.heatmap is None or b.heatmap is None:
            continue
        diff = np.abs(a.heatmap.astype(np.float64) - b.heatmap.astype(np.float64))
        rows.append(
            {
                "heat_max_abs": float(diff.max()),
                "heat_mean_abs": float(diff.mean()),
                "p_match_abs": abs(a.itm_score - b.itm_score),
                "same_mask": bool(
                    a.success
                    and b.success
                    and a.mask is not None
                    and np.array_equal(a.mask, b.mask)
                ),
                "answer_iou": (
                    iou(a.mask, b.mask)
                    if a.success and b.success
                    else float(a.success == b.success)  # both failed: the same answer
                ),
                "same_iterations": a.iterations == b.iterations,
                "iou_fp32": iou(a.mask if a.success else None, gt),
                "iou_fp16": iou(b.mask if b.success else None, gt),
            }
        )
    keys = rows[0].keys() if rows else []
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    summary["heat_max_abs_worst"] = max((r["heat_max_abs"] for r in rows), default=float("nan"))
    return {
        "fp16": "CUDA half precision" if cuda else "emulated on CPU (fp16 copy of the model)",
        "device": str(fp32.device),
        "torch": torch.__version__,
        "model": str(folder),
        "gradcam_layer": layer,
        "split": split,
        "expressions": len(rows),
        "summary": summary,
    }


def format_summary(result: dict[str, Any]) -> str:
    s = result["summary"]
    return "\n".join(
        [
            f"fp32 vs fp16 ({result['fp16']}), {result['expressions']} world {result['split']} "
            f"expressions, {result['model']} (Grad-CAM layer {result['gradcam_layer']})",
            f"  heat map |diff|: mean {s['heat_mean_abs']:.4f}, per-image max "
            f"{s['heat_max_abs']:.4f} on average, worst {s['heat_max_abs_worst']:.4f}",
            f"  match probability |diff|: {s['p_match_abs']:.4f} on average",
            f"  same answer mask: {100 * s['same_mask']:.1f} %, IoU between the answers "
            f"{100 * s['answer_iou']:.1f} %, same pass count {100 * s['same_iterations']:.1f} %",
            f"  mIoU vs ground truth: fp32 {100 * s['iou_fp32']:.1f}, "
            f"fp16 {100 * s['iou_fp16']:.1f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=100, help="world expressions (default 100)")
    p.add_argument(
        "--device",
        default="cpu",
        type=device_argument,
        help="cpu (fp16 emulated) | cuda | cuda:N",
    )
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    result = compare_precision(args.n, args.device, args.split)
    print(format_summary(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
