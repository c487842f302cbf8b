"""The conversation part of `iterprime demo` on the synthetic world: a command that fits two
objects, the question the robot would say, the person's reply and the answer to it, a
correction, and a weak answer reported as not sure; with overlays.

Why a recorded exchange replayed: it is what `iterprime replay` does with a real conversation
(the same Conversation, on the bag's clock), so the demo shows the contract a voice front end
relies on (docs/voice.md), not a separate code path. The scene is a held-out world scene; the
model is the world model with ORACLE proposals, as in the rest of the world demo, here without
the oracle's distractor masks so that every candidate named in a question is a whole object;
the answers say nothing about real photographs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# What the demo sets beyond the node's defaults: ask instead of guessing, answer plural commands,
# and give no target under DEMO_MIN_CONFIDENCE. The threshold is a demo setting picked by
# looking at the world model's confidences on these scenes, not a calibrated value.
DEMO_MIN_CONFIDENCE = 0.35
START_NS = 1_735_700_000 * 1_000_000_000
FRAME = "world_camera"


@dataclass(frozen=True)
class Utterance:
    """One thing the person says: the held-out scene in view, the words, and the objects meant
    (none: nothing to score, a question or a command the world model cannot answer well).
    """

    seed: int
    text: str
    meant: tuple[int, ...] = ()


# Held-out scene 30000001 has two bowls, a red one (object 0) and a white one (object 2), two
# boxes and a block, and no mug: "the purple mug" is the weak answer.
EXCHANGE: tuple[Utterance, ...] = (
    Utterance(30_000_001, "the bowl"),
    Utterance(30_000_001, "the red one", meant=(0,)),
    Utterance(30_000_001, "no, the other one", meant=(2,)),
    Utterance(30_000_001, "both bowls", meant=(0, 2)),
    Utterance(30_000_001, "the purple mug"),
)


def write_conversation_bag(path: Path) -> dict[int, Any]:
    """The exchange as a bag (camera at 1 Hz, one utterance a second); returns the scenes."""
    from ..ros.conversions import rgb_to_fields
    from .bags import BagWriter, header, image_message, string_message
    from .replay import COMMAND_TOPIC, IMAGE_TOPIC
    from .world.scenes import generate_scene

    scenes = {u.seed: generate_scene(u.seed) for u in EXCHANGE}
    with BagWriter(path, overwrite=True, compress=True) as bag:
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image", qos="sensor")
        bag.add_topic(COMMAND_TOPIC, "std_msgs/msg/String", qos="reliable")
        for k, u in enumerate(EXCHANGE):
            t = START_NS + 2 * k * 1_000_000_000
            fields = rgb_to_fields(scenes[u.seed].image, "rgb8")
            for f in range(2):  # a frame before the utterance and one between it and the next
                at = t + f * 1_000_000_000
                bag.write(IMAGE_TOPIC, image_message(fields, header(at, FRAME)), at)
            bag.write(COMMAND_TOPIC, string_message(u.text), t + 500_000_000)
    return scenes


def run_conversation(out: Path, settings: Any) -> list[str]:
    """Replay the exchange through the conversation; print and return the transcript lines."""
    from .replay import ReplayConfig, replay_bag
    from .world.fallback import world_segmenter

    out.mkdir(parents=True, exist_ok=True)
    scenes = write_conversation_bag(out / "conversation.mcap")
    talk = settings.replace(
        hold_ambiguous=True,
        plural_commands=True,
        min_confidence=DEMO_MIN_CONFIDENCE,
        empty_selection="best_heat",  # always an answer: its confidence says how good it is
    )
    segmenter = world_segmenter(talk)
    segmenter.proposals.distractors = False
    for scene in scenes.values():
        segmenter.proposals.register(scene)
    cfg = ReplayConfig(overlays=out / "overlays", overwrite=True)
    replay_bag(
        out / "conversation.mcap", out / "results.mcap", segmenter, cfg, echo=lambda _: None
    )
    results = read_results(out / "results.mcap")
    lines = transcript(results, scenes, out / "overlays")
    print(
        f"\nA conversation (held-out world scenes; hold_ambiguous on, min_confidence "
        f"{DEMO_MIN_CONFIDENCE:g}, a demo setting):"
    )
    for line in lines:
        print("  " + line)
    print(f"(results in {out / 'results.mcap'}, overlays in {out / 'overlays'})")
    return lines


def read_results(path: Path) -> list[Any]:
    from .bags import BagReader
    from .replay import RESULT_TOPIC

    with BagReader(path) as bag:
        return [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]


def _mask(image: Any) -> np.ndarray | None:
    from ..ros.conversions import image_to_rgb

    return image_to_rgb(image)[:, :, 0] > 0 if image.height else None


def transcript(results: list[Any], scenes: dict[int, Any], overlays: Path) -> list[str]:
    """Person and robot lines for each result, in the words a voice front end would speak."""
    from ..ros.conversions import STATUS_AMBIGUOUS, STATUS_NOT_SURE
    from .eval import metrics

    lines = []
    for k, (u, r) in enumerate(zip(EXCHANGE, results), start=1):
        lines.append(f'person: "{u.text}"')
        if r.status == STATUS_AMBIGUOUS:
            lines.append(f'robot asks: "{r.question}"   (no target yet)')
        elif r.status == STATUS_NOT_SURE:
            seen = "; ".join(c.description for c in r.candidates) or "nothing"
            lines.append(
                f'robot: "I am not sure." (confidence {r.confidence:.2f} < '
                f"{DEMO_MIN_CONFIDENCE:g}: success false, no target; it saw: {seen})"
            )
        elif r.success:
            reply = f", in reply to command {r.in_reply_to}" if r.in_reply_to else ""
            said = " and ".join(o.description for o in r.objects) or r.expression
            score = ""
            if u.meant:
                scene = scenes[u.seed]
                got = [_mask(o.mask) for o in r.objects]
                ious = [max(metrics.iou(m, scene.masks[t]) for m in got) for t in u.meant]
                score = ", IoU with the object(s) meant " + " ".join(f"{v:.2f}" for v in ious)
            lines.append(f'robot: takes "{said}" (confidence {r.confidence:.2f}{reply}{score})')
        else:
            lines.append(f'robot: "{r.error}"')
        if r.status in (STATUS_AMBIGUOUS, STATUS_NOT_SURE):
            path = overlays / f"{k:03d}_candidates.png"
            candidate_overlay(scenes[u.seed].image, r, path)
            lines.append(f"   candidates drawn in {path.name}")
    return lines


def candidate_overlay(image: np.ndarray, result: Any, path: Path) -> None:
    """The candidates' boxes, numbered in the order the question lists them, and the question
    or the doubt underneath: what the person sees when asked "which one?".
    """
    import cv2

    from ..overlay import FILE_MIN_SIDE

    k = max(1, -(-FILE_MIN_SIDE // min(image.shape[:2])))
    out = cv2.cvtColor(
        cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2BGR
    )
    palette = ((0, 200, 255), (255, 160, 0), (200, 0, 255), (0, 255, 120))
    for i, c in enumerate(result.candidates):
        colour = palette[i % len(palette)]
        x, y, w, h = (
            int(v) * k for v in (c.bbox.x_offset, c.bbox.y_offset, c.bbox.width, c.bbox.height)
        )
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, 2)
        cv2.putText(out, str(i + 1), (x + 3, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
    import textwrap

    text = result.question or f"not sure (confidence {result.confidence:.2f})"
    rows = textwrap.wrap(text, 48)
    top = out.shape[0] - 24 - 16 * (len(rows) - 1)
    cv2.rectangle(out, (0, top), (out.shape[1] - 1, out.shape[0] - 1), (0, 0, 0), -1)
    for j, row in enumerate(rows):
        at = (6, out.shape[0] - 10 - 16 * (len(rows) - 1 - j))
        cv2.putText(out, row, at, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), out)
