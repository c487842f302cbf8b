"""`iterprime demo`: the README's main job -- replay a sample bag through the pipeline.

With the real weights installed (``iterprime download``) it replays the bundled recording
data/sample.mcap (photographs, spoken commands, depth) exactly as ``iterprime replay`` does.
Without them -- the usual case on an offline machine -- it says so loudly and replays a bag
of generated tabletop scenes instead, answered by the project's world model
(models/world_blip) and ORACLE proposals, and scores each answer against the scene's true
mask; then it replays a short conversation (demo_dialogue.py): a question, a reply, a
correction and an answer reported as not sure. The world run shows that the whole pipeline
(normalise, parse, Grad-CAM, PWEM, IGRS, selection, replay, bag output) finds the right object
in a world the model knows; it says nothing about real photographs.

    iterprime demo                     # -> out/demo/{results.mcap, overlays/}
    iterprime demo --world             # the world run even when real weights are installed
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cli import device_argument

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_BAG = ROOT / "data" / "sample.mcap"
WORLD_FRAME = "world_camera"
WORLD_START_NS = 1_735_689_600 * 1_000_000_000
WORLD_SCENES = 4
WORLD_COMMANDS_PER_SCENE = 3


@dataclass(frozen=True)
class WorldCommand:
    """A command in the world bag and the true mask of the object it refers to."""

    text: str
    kind: str
    truth: np.ndarray


def build_world_bag(
    path: Path, scenes: int = WORLD_SCENES, per_scene: int = WORLD_COMMANDS_PER_SCENE
):
    """Write held-out world scenes (1 Hz camera, commands spoken as a person would) to a bag.

    Returns (scenes, commands in bag order). Deterministic: the held-out evaluation scenes.
    """
    from ..ros.conversions import rgb_to_fields
    from .bags import BagWriter, header, image_message, string_message
    from .replay import COMMAND_TOPIC, IMAGE_TOPIC
    from .world.evaluate import eval_set

    world_scenes, items = eval_set(scenes * per_scene, per_scene=per_scene)
    commands: list[WorldCommand] = []
    with BagWriter(path, overwrite=True, compress=True) as bag:
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image", qos="sensor")
        bag.add_topic(COMMAND_TOPIC, "std_msgs/msg/String", qos="reliable")
        for s, scene in enumerate(world_scenes):
            start = WORLD_START_NS + s * (per_scene + 2) * 1_000_000_000
            fields = rgb_to_fields(scene.image, "rgb8")
            for k in range(per_scene + 2):
                t = start + k * 1_000_000_000
                bag.write(IMAGE_TOPIC, image_message(fields, header(t, WORLD_FRAME)), t)
            for k, item in enumerate(i for i in items if i.scene_index == s):
                bag.write(
                    COMMAND_TOPIC, string_message(item.ref.command), start + int((1.5 + k) * 1e9)
                )
                commands.append(
                    WorldCommand(item.ref.command, item.ref.kind, scene.masks[item.ref.target])
                )
    return world_scenes, commands


def read_result_masks(path: Path) -> list[tuple[str, bool, str, np.ndarray | None]]:
    """(command, success, error, mask) for each Segmentation in a results bag, in order."""
    from ..ros.conversions import image_to_rgb
    from .bags import BagReader
    from .replay import RESULT_TOPIC

    out = []
    with BagReader(path) as bag:
        for m in bag.messages([RESULT_TOPIC]):
            r = bag.deserialize(m)
            mask = (
                image_to_rgb(r.mask)[:, :, 0] > 0 if r.success and r.mask.height else None
            )  # mono8
            out.append((r.command, bool(r.success), r.error, mask))
    return out


def run_world(out: Path, settings, why: str) -> int:
    from .eval import metrics
    from .replay import ReplayConfig, replay_bag
    from .world.evaluate import world_model_folder
    from .world.fallback import WORLD_BANNER, world_segmenter

    print(WORLD_BANNER)
    if why:
        print(f"(real weights: {why.splitlines()[0]})")
    folder = world_model_folder()
    if not (folder / "config.json").is_file():
        print(
            f"error: the world model is missing from {folder} (it is committed with the "
            "repository; "
            "retrain with scripts/train_world_model.py)",
            file=sys.stderr,
        )
        return 2
    in_bag = out / "world_sample.mcap"
    scenes, commands = build_world_bag(in_bag)
    print(f"world sample: {len(scenes)} held-out scenes, {len(commands)} commands -> {in_bag}")
    segmenter = world_segmenter(settings)
    for scene in scenes:
        segmenter.proposals.register(scene)
    cfg = ReplayConfig(overlays=out / "overlays", overwrite=True)
    summary = replay_bag(in_bag, out / "results.mcap", segmenter, cfg)
    rows = read_result_masks(out / "results.mcap")
    ious = []
    print(f"\n{'IoU':>5}  {'kind':<9} command")
    for cmd, (text, ok, error, mask) in zip(commands, rows):
        iou = metrics.iou(mask if ok else None, cmd.truth)  # a failure scores as an empty mask
        ious.append(iou)
        print(f"{iou:5.2f}  {cmd.kind:<9} {text!r}" + ("" if ok else f"  FAILED: {error}"))
    print(
        f"\nworld mIoU {np.mean(ious):.3f} over {len(ious)} commands, "
        f"{sum(i >= 0.5 for i in ious)} with IoU >= 0.5 "
        f"({summary.commands} results in {out / 'results.mcap'}, overlays in {cfg.overlays}; "
        f"pipeline {summary.segment_s:.1f} s)"
    )
    from .demo_dialogue import run_conversation

    run_conversation(out / "conversation", settings)
    print(
        "This is the synthetic world with oracle proposals, not real photographs: see README 'The "
        "world'."
    )
    return 0 if len(rows) == len(commands) else 1


def run_real(out: Path, settings) -> int:
    from ..pipeline import Segmenter
    from .replay import ReplayConfig, replay_bag

    print(f"real weights found: vlp {settings.vlp_model}, proposals {settings.proposal_model}")
    t0 = time.perf_counter()
    segmenter = Segmenter(settings)
    segmenter.warmup()
    print(f"models loaded in {time.perf_counter() - t0:.1f} s; replaying {SAMPLE_BAG}")
    cfg = ReplayConfig(overlays=out / "overlays", overwrite=True)
    summary = replay_bag(SAMPLE_BAG, out / "results.mcap", segmenter, cfg)
    print(
        f"{summary.commands} command(s): {summary.succeeded} answered, {summary.failed} failed; "
        "results in "
        f"{summary.output}, overlays in {cfg.overlays}"
    )
    return summary.exit_code()


def cmd_demo(args: argparse.Namespace) -> int:
    from ..models.loading import quiet_transformers
    from .replay import load_parameters
    from .world.fallback import real_weights_available

    quiet_transformers()
    settings = load_parameters(args.config).segmenter
    if args.device:
        settings = settings.replace(device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ok, why = real_weights_available(settings.vlp_model, settings.proposal_model)
    if ok and not args.world:
        return run_real(out, settings)
    return run_world(out, settings, "" if ok else why)


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Register `iterprime demo` (cli.py calls this)."""
    p = subparsers.add_parser(
        "demo",
        help="the main job on a bundled sample: replay it and show the results",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument(
        "--config", metavar="YAML", help="node parameters file (default: the parameters' defaults)"
    )
    p.add_argument("--device", type=device_argument, help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--world", action="store_true", help="use the synthetic world even when real weights exist"
    )
    p.set_defaults(func=cmd_demo)
