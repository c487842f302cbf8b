"""`iterprime` command line: segment | download (+ replay | eval | bench where those modules
exist).

Each feature module exposes ``add_subparser(subparsers)`` and sets ``func`` (args -> exit
code) on its parser; this file only registers them. Errors the user can fix (missing or
unreadable image, missing weights, a bad setting) print one ``error: ...`` line and exit 2 --
no traceback unless ``--debug``. A command the method cannot answer (e.g. nothing selected)
prints its reason and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

# Feature modules that contribute subcommands; a missing one is skipped (built in parallel).
SUBCOMMAND_MODULES = (
    "iterprime_ros.tools.download",
    "iterprime_ros.tools.replay",
    "iterprime_ros.tools.eval.cli",
    "iterprime_ros.tools.bench",
    "iterprime_ros.tools.bench.node_stream",
    "iterprime_ros.tools.demo",
)


from .errors import UserError  # noqa: E402 - re-exported: `from iterprime_ros.tools.cli import UserError`
from .model_args import (  # noqa: E402, F401 - re-exported for the commands registered here
    add_model_arguments,
    add_set_argument,
    apply_overrides,
    checked_changes,
    device_argument,
    load_parameters,
    model_settings,
)


# ---------------------------------------------------------------------------- helpers
def read_image_rgb(path: str | Path) -> Any:
    """Image file -> H x W x 3 uint8 RGB; UserError for a missing or unreadable file."""
    import cv2
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise UserError(f"image file not found: {path}")
    if not p.is_file():
        raise UserError(f"not a file: {path}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UserError(f"cannot read image {path}: not an image file or an unsupported format")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _print_summary(result: Any, overlay: str | None) -> None:
    print(f"command:     {result.command}")
    print(f"expression:  {result.expression}")
    print(f"primary:     {result.primary_word or '-'}  (parser: {result.parser or '-'})")
    if result.success:
        x, y, w, h = result.bbox
        print(f"mask:        {int(result.mask.sum())} px, bbox x={x} y={y} w={w} h={h}")
        print(
            f"centroid:    ({result.centroid[0]:.1f}, {result.centroid[1]:.1f})   "
            f"grasp point: ({result.grasp_point[0]}, {result.grasp_point[1]})"
        )
        print(
            f"score:       {result.score:.4f}   itm: {result.itm_score:.4f}   "
            f"IGRS passes: {result.iterations} ({result.stop_reason})"
            + ("   [fallback selection]" if result.flagged else "")
        )
    else:
        print(f"FAILED:      {result.error}")
    stages = ", ".join(
        f"{k} {v * 1000:.0f} ms"
        for k, v in result.timings.items()
        if k != "total" and not k.startswith("igrs_pass_")
    )
    print(f"latency:     {result.latency_s * 1000:.0f} ms  ({stages})")
    if overlay:
        print(f"overlay:     {overlay}")


# ---------------------------------------------------------------------------- segment
def add_segment_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment the object a command refers to in one image",
        description="Segment the object TEXT refers to in IMAGE and print the result.",
    )
    p.add_argument("image", help="image file (png, jpg, ...)")
    p.add_argument("text", help='the command or referring expression, e.g. "pick up the red cup"')
    p.add_argument(
        "--out",
        metavar="PNG",
        help="write the debug overlay (heat map, mask, centroid) here (never the input image)",
    )
    p.add_argument(
        "--mask", metavar="PNG", help="write the mask here (255 = object; never the input image)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--config",
        metavar="YAML",
        help="node parameters file, e.g. config/segment.yaml (checked like the node does)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        metavar="N",
        help="bigger images are downscaled for the models, more than 16x bigger refused "
        "(default: iterprime_ros/image_size.py)",
    )
    add_model_arguments(p)
    p.set_defaults(func=cmd_segment)


def read_image_planned(path: str | Path, max_image_pixels: int | None = None) -> tuple[Any, Any]:
    """(full-size RGB, image_size.SizePlan) of an image file: the header is checked first, so
    an image over the limit is refused before a single pixel is decoded.
    """
    from .. import image_size

    limit = image_size.DEFAULT_MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels
    p = Path(path)
    if p.is_file():
        try:
            image_size.check_file(p, limit)
        except image_size.ImageTooLargeError as exc:
            raise UserError(str(exc)) from None
        except OSError:
            pass  # not an image PIL knows: read_image_rgb says so
    image = read_image_rgb(path)
    try:
        size = image_size.plan(image.shape[0], image.shape[1], limit)
    except image_size.ImageTooLargeError as exc:
        raise UserError(str(exc)) from None
    return image, size


def check_image_outputs(image: str | Path, targets: dict[str, str | None]) -> None:
    """UserError unless every output picture can be written, checked before the models run.

    Never the input image (nor a link to it), never one file for two outputs, never a folder;
    the folder must exist and OpenCV must have a writer for the name's extension.
    """
    import cv2

    source = Path(image)
    seen: dict[Path, str] = {}
    for flag, target in targets.items():
        if not target:
            continue
        path = Path(target)
        resolved = path.resolve()
        if resolved == source.resolve() or (
            path.exists() and source.exists() and os.path.samefile(path, source)
        ):
            raise UserError(
                f"refusing to write {flag} {target}: it is the input image {image}; "
                "choose another output name"
            )
        if resolved in seen:
            raise UserError(f"{seen[resolved]} and {flag} both name {target}; choose two names")
        seen[resolved] = flag
        if path.is_dir():
            raise UserError(f"{flag} {target} is a folder; give a file name such as x.png")
        if not resolved.parent.is_dir():
            raise UserError(f"output folder does not exist: {path.parent}")
        if not cv2.haveImageWriter(str(path)):
            raise UserError(
                f"{flag} {target}: cannot write a picture with extension "
                f"'{path.suffix or '(none)'}'; use .png (or .jpg, .bmp, .tif)"
            )


def _write_picture(flag: str, target: str, picture: Any) -> None:
    """cv2.imwrite with its failures (a full disk, no permission) as one clear line."""
    import cv2

    try:
        written = cv2.imwrite(target, picture)
    except cv2.error as exc:
        raise UserError(
            f"cannot write {flag} {target}: {str(exc).strip().splitlines()[-1]}"
        ) from None
    if not written:
        raise UserError(f"cannot write {flag} {target}")


def cmd_segment(args: argparse.Namespace) -> int:
    from .. import image_size

    if args.max_image_pixels is not None and args.max_image_pixels < 1:
        raise UserError("--max-image-pixels must be at least 1")
    # before loading models: fail fast on a bad path, a huge image or a bad setting
    image, size = read_image_planned(args.image, args.max_image_pixels)
    check_image_outputs(args.image, {"--out": args.out, "--mask": args.mask})
    settings = model_settings(args, load_parameters(args.config).segmenter)
    if size.downscaled:
        h, w = size.model_size
        print(
            f"note: {args.image} is {image.shape[1]} x {image.shape[0]}; the models see it "
            f"downscaled to {w} x {h} (the mask is scaled back)",
            file=sys.stderr,
        )

    from ..models.loading import quiet_transformers
    from ..pipeline import Segmenter
    from .progress import StageLine

    quiet_transformers()
    line = StageLine(passes=settings.igrs_iterations)
    try:
        line.show("loading models")
        segmenter = Segmenter(settings)
        result = image_size.result_to_source(
            segmenter.segment(
                image_size.downscale(image, size), args.text, progress=line.pipeline
            ),
            size,
        )
    finally:
        line.done()

    overlay_path = None
    if args.out:
        from ..overlay import render_overlay

        _write_picture("--out", args.out, render_overlay(image, result))
        overlay_path = args.out
    if args.mask and result.mask is not None:
        _write_picture("--mask", args.mask, result.mask.astype("uint8") * 255)

    if args.json:
        payload = result.to_dict()
        payload["image"] = str(args.image)
        payload["overlay"] = overlay_path
        payload["mask_file"] = args.mask if result.mask is not None else None
        print(json.dumps(payload, indent=2))
    else:
        _print_summary(result, overlay_path)
    return 0 if result.success else 1


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iterprime",
        description="Zero-shot referring image segmentation "
        "(IteRPrimE) for robots: segment | download | replay | eval | bench | demo",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="info logs (model loading, parser choice)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_segment_subparser(subparsers)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(
                exc.name
            ):  # the feature module itself is not there (yet)
                continue
            raise
        add = getattr(module, "add_subparser", None)
        if callable(add):
            add(subparsers)
    return parser


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """--debug is accepted anywhere before a `--` (every error message suggests adding it)."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    return [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)], debug


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `iterprime` program itself (not a call from Python): jemalloc first
        from ..jemalloc import maybe_reexec

        maybe_reexec()
    parser = build_parser()
    argv, debug = _take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    args.debug = args.debug or debug
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from ..models.loading import ModelNotFoundError

    try:
        return int(args.func(args) or 0)
    except (UserError, ModelNotFoundError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # keep the promise: one line, no traceback (unless --debug)
        if args.debug:
            raise
        print(
            f"error: {type(exc).__name__}: {exc}".split("\n")[0]
            + "  (run with --debug for details)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
