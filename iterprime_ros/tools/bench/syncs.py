"""Host syncs per command: how often the pipeline waits for the device, and where.

Why: on a GPU every read of a tensor's value on the host (``.item()``, ``bool()``, ``.cpu()``,
``nonzero``, boolean-mask indexing ...) waits for every kernel queued before it, so a sync
inside the IGRS loop stalls the device between passes. This counts them per command, split
into the IGRS loop (after the first pass finished and before the last one did) and the rest.

On CUDA the count is the driver's own: ``torch.cuda.set_sync_debug_mode("warn")`` warns at
every synchronising call. On a CPU (the dry run) nothing synchronises, so the count is of the
calls that would: a TorchFunctionMode sees every such call on a tensor (the same counter the
no-sync test uses).

    python -m iterprime_ros.tools.bench.syncs --device cuda     # real-size random weights
    python -m iterprime_ros.tools.bench.syncs --device cpu --arch tiny --proposal-arch \
        swin-tiny-test --size 160x120                            # dry run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..cli import device_argument

SYNC_CALLS = frozenset(
    {
        "item",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
        "tolist",
        "cpu",
        "numpy",
        "nonzero",
        "argwhere",
        "masked_select",
        "unique",
    }
)


class SyncCounter(TorchFunctionMode):
    """Records (call, text passes finished) for every call that reads a tensor's value on the
    host; `passes` is advanced by CountingBackend as each text pass returns.
    """

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0
        self.calls: list[tuple[str, int]] = []

    def record(self, name: str) -> None:
        self.calls.append((name, self.passes))

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = getattr(func, "__name__", str(func))
        if name in SYNC_CALLS or (name == "__getitem__" and _bool_index(args)):
            self.record(name)
        return func(*args, **(kwargs or {}))


def _bool_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class CountingBackend:
    """A VLP backend that tells the counter when each of its text passes has finished."""

    def __init__(self, backend: Any, counter: SyncCounter) -> None:
        self._backend = backend
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def text_pass(self, embedding: Any, text: str, keep: Any) -> Any:
        out = self._backend.text_pass(embedding, text, keep)
        self._counter.passes += 1
        return out


def inside_loop(calls: list[tuple[str, int]], passes: int) -> list[tuple[str, int]]:
    """The calls made after the first pass finished and before the last one did."""
    return [c for c in calls if 0 < c[1] < passes]


def count_command(segmenter: Any, image: Any, command: str) -> dict[str, Any]:
    """Syncs of one command: total, inside the IGRS loop, and the loop's pass count."""
    vlp = segmenter.vlp
    device = torch.device(getattr(vlp, "device", "cpu"))
    counter = SyncCounter()
    segmenter.vlp = CountingBackend(vlp, counter)
    try:
        if device.type == "cuda":
            calls = _cuda_syncs(counter, lambda: segmenter.segment(image, command))
            result = calls.pop("result")
        else:
            with counter:
                result = segmenter.segment(image, command)
            calls = {"calls": counter.calls}
    finally:
        segmenter.vlp = vlp
    passes = result.iterations
    listed = calls["calls"]
    return {
        "command": command,
        "success": result.success,
        "passes": passes,
        "frame_cached": result.frame_cached,
        "syncs": len(listed),
        "syncs_in_igrs_loop": len(inside_loop(listed, passes)),
        "where": sorted({name for name, _ in listed}),
    }


def _cuda_syncs(counter: SyncCounter, run: Any) -> dict[str, Any]:
    """CUDA's sync warnings during run(), each tagged with the passes finished when it came."""
    torch.cuda.synchronize()
    original = warnings.showwarning
    tagged: list[tuple[str, int]] = []

    def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        if "synchroniz" in str(message):
            tagged.append((str(message).split(":")[0][:60], counter.passes))
        else:
            original(message, category, *rest, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
            warnings.showwarning = original
    return {"calls": tagged, "result": result}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ...models.loading import quiet_transformers, resolve_device
    from ...pipeline import Segmenter, SegmenterSettings
    from .architectures import bench_image, build_once, build_proposals, build_vlp, frame_variant

    quiet_transformers()
    device = resolve_device(args.device)
    root = Path(args.model_dir or tempfile.mkdtemp(prefix="iterprime-syncs-"))
    vlp_dir, _ = build_once(root, f"blip-{args.arch}-s0", lambda f: build_vlp(f, args.arch, 0))
    prop_dir, _ = build_once(
        root,
        f"mask2former-{args.proposal_arch}-s0",
        lambda f: build_proposals(f, args.proposal_arch, 0, None),
    )
    w, h = (int(v) for v in args.size.lower().split("x"))
    image = bench_image((w, h))
    out: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "rows": []}
    for label, half in (("fp32", False), ("fp16", True)):
        if half and device.type != "cuda":
            continue
        settings = SegmenterSettings(
            device=str(device),
            half_precision=half,
            autocast="off",
            vlp_model=str(vlp_dir),
            proposal_model=str(prop_dir),
            stop_rule="none",
            empty_selection="best_heat",
            parser="spacy",
        )
        seg = Segmenter(settings)
        if device.type != "cuda":  # the dry run takes the loop CUDA runs (stop applied after)
            seg._igrs = replace(seg._igrs, defer_stop=True)
        seg.segment(frame_variant(image, 99), "the cup")  # warm-up (kernels, caches)
        for k, command in enumerate(("the red cup on the left", "the spoon", "the plate")):
            frame = frame_variant(image, k // 2)  # a fresh frame, then the same frame again
            row = count_command(seg, frame, command)
            row["precision"] = label
            out["rows"].append(row)
    return out


def format_rows(result: dict[str, Any]) -> str:
    lines = [f"host syncs per command on {result['device']} (torch {result['torch']})"]
    for r in result["rows"]:
        lines.append(
            f"  {r['precision']} {'cached' if r['frame_cached'] else 'fresh '} frame, "
            f"{r['passes']} passes, {r['command']!r}: {r['syncs']} syncs, "
            f"{r['syncs_in_igrs_loop']} inside the IGRS loop ({', '.join(r['where'])})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", type=device_argument)
    p.add_argument("--arch", default="base", help="VLP architecture (bench's --arch)")
    p.add_argument("--proposal-arch", default="swin-l", help="bench's --proposal-arch")
    p.add_argument("--size", default="640x480", help="image W x H")
    p.add_argument("--model-dir", type=Path, help="reuse models built here")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    result = run(args)
    print(format_rows(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    inside = sum(r["syncs_in_igrs_loop"] for r in result["rows"])
    return 0 if inside == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
