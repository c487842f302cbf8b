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
from dataclasses import fields
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


def _parse_value(raw: str, kind: str, name: str) -> Any:
    """KEY=VALUE text -> a value of the parameter's kind (ros/params.py); UserError if it is
    not one.
    """
    if kind == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--set {name}: expected true/false, got {raw!r}")
    if kind == "str_list":
        return [v.strip() for v in raw.split(",") if v.strip()]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        what = "an integer" if kind == "int" else "a number"
        raise UserError(f"--set {name}: expected {what}, got {raw!r}") from None
    return raw


def checked_changes(changes: dict[str, Any], flag: str = "--set") -> dict[str, Any]:
    """Setting changes checked against the node's parameter table (ros/params.py): the same
    ranges and choices as the node and --config, the parameter named in the refusal.
    """
    from ..ros.params import SPECS, ParameterError

    out: dict[str, Any] = {}
    for key, value in changes.items():
        spec = SPECS.get(key)
        if spec is None or not spec.setting:
            known = ", ".join(sorted(n for n, s in SPECS.items() if s.setting))
            raise UserError(f"{flag}: unknown setting {key!r}; known: {known}")
        try:
            clean = spec.validate(value)
        except ParameterError as exc:
            raise UserError(f"{flag}: {exc}") from None
        out[key] = tuple(clean) if spec.kind == "str_list" else clean
    return out


def _check_pairs(settings: Any) -> None:
    """The table's rules that relate two settings (longest >= shortest edge)."""
    from ..ros.params import ParameterError, validate

    try:
        validate(
            {
                "proposal_shortest_edge": settings.proposal_shortest_edge,
                "proposal_longest_edge": settings.proposal_longest_edge,
            }
        )
    except ParameterError as exc:
        raise UserError(f"bad setting: {exc}") from None


def apply_overrides(settings: Any, overrides: Sequence[str]) -> Any:
    """KEY=VALUE strings -> a new SegmenterSettings, each value checked by the node's table."""
    from ..ros.params import SPECS

    defaults = {f.name for f in fields(settings)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in defaults or key not in SPECS:
            raise UserError(
                f"--set: unknown setting {key!r}; known: {', '.join(sorted(defaults))}"
            )
        changes[key] = _parse_value(raw, SPECS[key].kind, key)
    try:
        settings = settings.replace(**checked_changes(changes))
    except ValueError as exc:
        raise UserError(f"bad setting: {exc}") from None
    _check_pairs(settings)
    return settings


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


def device_argument(value: str) -> str:
    """Argparse type for every --device flag: the node's `device` rule (ros/params.py), so
    auto | cpu | cuda | cuda:N are accepted by every command alike.
    """
    from ..ros.params import SPECS, ParameterError

    try:
        return SPECS["device"].validate(value)
    except (ParameterError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--vlp --proposals --device --fp32 --set: the model choice every model-running command
    offers.
    """
    p.add_argument(
        "--vlp", metavar="ID|DIR", help="vision-language model (Hugging Face id or folder)"
    )
    p.add_argument(
        "--proposals", metavar="ID|DIR", help="proposal model (Hugging Face id or folder)"
    )
    p.add_argument(
        "--device",
        type=device_argument,
        help="auto | cpu | cuda | cuda:N (default: the settings' value, auto)",
    )
    p.add_argument("--fp32", action="store_true", help="full precision on CUDA (default: fp16)")
    add_set_argument(p)


def add_set_argument(p: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE (repeatable): any pipeline setting, checked by the node's table."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any SegmenterSettings field, e.g. --set gradcam_layer=6 (repeatable)",
    )


def model_settings(args: argparse.Namespace, settings: Any) -> Any:
    """`settings` with the choices of add_model_arguments applied; UserError for a bad value."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("vlp_model", args.vlp),
            ("proposal_model", args.proposals),
            ("device", args.device),
        )
        if value
    }
    if args.fp32:
        changes["half_precision"] = False
    try:
        settings = settings.replace(**checked_changes(changes, "--vlp/--proposals/--device"))
    except ValueError as exc:
        raise UserError(f"bad setting: {exc}") from None
    return apply_overrides(settings, args.overrides)


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
    from .replay import load_parameters

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
