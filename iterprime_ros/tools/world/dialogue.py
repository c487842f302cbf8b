"""World evaluation of the conversation: confidence, "which one?", replies, corrections and
plural commands, measured where the truth is known.

Why the world: its grammar knows exactly which objects a phrase fits, so it can say a phrase
that fits several objects ("the cup" among three cups: ambiguous by construction), the phrase
that singles one of them out (the person's reply), and plural commands with every true object.
Everything runs through conversation.Conversation and pipeline.Segmenter as the node runs them,
with the world model and oracle proposals (world.oracle).

Sets, per scene (seeded, scenes in seed order):
- unique: the grammar's referring expressions (as ``iterprime eval --world``);
- ambiguous: "the [colour|size] NOUN" fitting 2-4 objects; the person means one of them and
  answers the question with a phrase the grammar proves unique for it;
- plural: "both NOUNs", "the two|three NOUNs", "all the [colour] NOUNs" with every fitting
  object as the truth.

Thresholds (the ambiguity margin, the confidence's weights) are chosen with ``--fit`` on the
validation split only; the figures are reported on the test split.

    iterprime eval --world --dialogue                   # test split, the committed settings
    iterprime eval --world --dialogue --world-split val --fit   # choose margin and weights
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .grammar import KINDS, Desc, candidates, make_expression, scene_expressions
from .scenes import Scene, generate_scene, scene_seeds

DIALOGUE_SEED = 4242
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class Item:
    """One evaluation item. kind: unique | ambiguous | plural. targets: the true objects (one for
    unique; every fitting object for ambiguous and plural). meant: the object the person means
    (ambiguous), reply: the person's answer to the question (ambiguous).
    """

    scene_index: int
    kind: str
    command: str
    targets: tuple[int, ...]
    meant: int = -1
    reply: str = ""


def _plural_noun(noun: str) -> str:
    return noun + ("es" if noun.endswith(("x", "s", "ch", "sh")) else "s")


def _ambiguous_descs(scene: Scene) -> list[tuple[Desc, list[int]]]:
    """Noun phrases that fit 2-4 objects of the scene, without duplicates of the same group."""
    seen, out = set(), []
    for o in scene.objects:
        for desc in (Desc(o.shape), Desc(o.shape, colour=o.colour), Desc(o.shape, size=o.size)):
            group = candidates(desc, scene)
            key = tuple(group)
            if 2 <= len(group) <= 4 and key not in seen:
                seen.add(key)
                out.append((desc, group))
    return out


def _plural_command(desc: Desc, n: int, rng: np.random.Generator) -> str:
    words = [w for w in (desc.size, desc.colour) if w] + [_plural_noun(desc.noun)]
    forms = ["all the " + " ".join(words)]
    if n in NUMBER_WORDS:
        forms.append(f"the {NUMBER_WORDS[n]} " + " ".join(words))
    if n == 2:
        forms.append("both " + " ".join(words))
    return str(rng.choice(forms))


def scene_items(scene: Scene, index: int, rng: np.random.Generator) -> list[Item]:
    """One unique, up to one ambiguous and up to one plural item for the scene."""
    items = [
        Item(index, "unique", r.command, (r.target,))
        for r in scene_expressions(scene, rng, per_scene=1, command_prob=0.3)
    ]
    descs = _ambiguous_descs(scene)
    if not descs:
        return items
    desc, group = descs[int(rng.integers(len(descs)))]
    meant = int(group[int(rng.integers(len(group)))])
    reply = None
    for kind in rng.permutation(KINDS):
        reply = make_expression(scene, meant, str(kind), rng)
        if reply is not None:
            break
    if reply is not None:
        command = "the " + " ".join(desc.words())
        items.append(Item(index, "ambiguous", command, tuple(group), meant, reply.text))
    desc, group = descs[int(rng.integers(len(descs)))]
    items.append(Item(index, "plural", _plural_command(desc, len(group), rng), tuple(group)))
    return items


def dialogue_set(
    n_scenes: int, split: str = "test", seed: int = DIALOGUE_SEED
) -> tuple[list[Scene], list[Item]]:
    scenes, items = [], []
    for i, s in enumerate(scene_seeds(split, n_scenes)):
        scene = generate_scene(s)
        scenes.append(scene)
        items.extend(scene_items(scene, i, np.random.default_rng([seed, s])))
    return scenes, items


# ----------------------------------------------------------------------------- running
def iou(a: np.ndarray | None, b: np.ndarray) -> float:
    if a is None:
        return 0.0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _hit(mask: np.ndarray | None, scene: Scene, target: int) -> bool:
    return iou(mask, scene.masks[target]) >= 0.5


def run_items(
    segmenter, scenes: list[Scene], items: list[Item], timeout_s: float = 60.0, **talk_options
):
    """Each item's conversation; returns one record (plain numbers and features) per item.
    `talk_options` go to every Conversation (the rules compared on validation).
    """
    from ...conversation import Conversation

    records = []
    clock = 0.0
    talk_options = {"timeout_s": timeout_s, **talk_options}
    for it in items:
        scene = scenes[it.scene_index]
        segmenter.proposals.register(scene)
        talk = Conversation(**talk_options)
        clock += 1000.0  # a fresh conversation each item
        first = talk.answer("1", it.command, scene.image, segmenter, clock)
        rec = {"kind": it.kind, "command": it.command, "ambiguous": bool(first.ambiguous)}
        rec["confidence"] = float(first.confidence)
        rec["features"] = list(map(float, _features(first)))
        rec["runner_ratio"] = _runner_ratio(first)
        rec["specific"] = _specific(first)
        cands = [c.mask for c in first.candidates]
        if it.kind == "plural":
            rec.update(_plural_counts([o.mask for o in first.objects], scene, it.targets))
        else:
            meant = it.targets[0] if it.kind == "unique" else it.meant
            rec["hit"] = _hit(first.mask, scene, meant)
            rec["in_candidates"] = any(_hit(m, scene, meant) for m in cands)
            rec["group_recall"] = float(
                np.mean([any(_hit(m, scene, t) for m in cands) for t in it.targets])
            )
            if it.kind == "ambiguous":
                rec["reply_hit"] = _reply_hit(first, it, scene, segmenter, clock, talk_options)
            if not rec["hit"] and first.mask is not None:
                fixed = talk.answer("3", "no, not that one", scene.image, segmenter, clock + 2)
                rec["corrected"] = _hit(fixed.mask, scene, meant)
        records.append(rec)
    return records


def _reply_hit(first, it: Item, scene: Scene, segmenter, clock: float, options: dict) -> bool:
    """Whether the person's reply, given to the question about `first`, ends on the meant
    object. The reply is played whether or not `first` asked (as if it had), so the round trip
    can be scored for any ambiguity margin from the same run: an answer that asks ends with
    this reply, one that does not ask ends with itself.
    """
    import copy

    from ...conversation import Conversation

    asked = copy.copy(first)
    asked.ambiguous = True
    talk = Conversation(**options)
    talk.record("1", asked, clock)
    final = talk.answer("2", it.reply, scene.image, segmenter, clock + 1)
    return _hit(final.mask, scene, it.meant)


def _features(result) -> list[float]:
    from ...core.candidates import RankedObject, confidence_features

    if result.mask is None or result.heatmap is None:
        return [0.0, 0.0, 0.0, 0.0]
    ranked = [RankedObject(c.proposal_index, c.score) for c in result.candidates]
    return list(confidence_features(result.heatmap, result.mask, ranked, result.itm_score))


def _specific(result) -> bool:
    from ...core.replies import singles_out

    c = result.candidates
    return singles_out(
        result.expression,
        [x.colour for x in c],
        [x.centroid for x in c],
        [int(x.mask.sum()) for x in c],
    )


def _runner_ratio(result) -> float:
    scores = sorted((c.score for c in result.candidates), reverse=True)
    return scores[1] / scores[0] if len(scores) > 1 and scores[0] > 0 else 0.0


def _plural_counts(masks: list[np.ndarray], scene: Scene, targets: tuple[int, ...]) -> dict:
    """Greedy one-to-one matching at IoU >= 0.5: true positives, predicted, truth."""
    free = set(targets)
    tp = 0
    for m in masks:
        best = max(free, key=lambda t: iou(m, scene.masks[t]), default=None)
        if best is not None and iou(m, scene.masks[best]) >= 0.5:
            free.discard(best)
            tp += 1
    return {"tp": tp, "predicted": len(masks), "truth": len(targets)}


# ----------------------------------------------------------------------------- metrics
def _prf(pred: list[bool], truth: list[bool]) -> dict:
    tp = sum(p and t for p, t in zip(pred, truth))
    fp = sum(p and not t for p, t in zip(pred, truth))
    fn = sum(t and not p for p, t in zip(pred, truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def risk_coverage(confidence: list[float], hits: list[bool]) -> list[tuple[float, float]]:
    """(coverage, P@0.5 of the answers kept) keeping the most confident first, every step."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    h = np.asarray(hits, float)[order]
    kept = np.cumsum(h) / np.arange(1, len(h) + 1)
    return [((k + 1) / len(h), float(kept[k])) for k in range(len(h))]


def precision_at(curve: list[tuple[float, float]], coverage: float) -> float:
    """P@0.5 at the smallest coverage that is at least `coverage`."""
    return next(p for c, p in curve if c >= coverage - 1e-9)


def rescore(records: list[dict], margin: float, weights) -> None:
    """Apply an ambiguity margin and confidence weights to recorded features, as the pipeline
    would have with them (answers.fill_answer): the ambiguity flag, the round trip (the reply
    ends the conversation only where a question was asked) and the confidence.
    """
    from ...core.candidates import confidence

    for r in records:
        if r["kind"] == "plural":
            continue
        r["ambiguous"] = r["runner_ratio"] >= 1 - margin and not r["specific"]
        r["confidence"] = confidence(np.asarray(r["features"]), weights)
        if r["kind"] == "ambiguous":
            r["round_trip"] = r["reply_hit"] if r["ambiguous"] else r["hit"]


def summarise(records: list[dict]) -> dict:
    """The table's figures from the records (see docs/world_results.md)."""
    amb = [r for r in records if r["kind"] == "ambiguous"]
    uni = [r for r in records if r["kind"] == "unique"]
    plu = [r for r in records if r["kind"] == "plural"]
    detect = _prf([r["ambiguous"] for r in amb + uni], [True] * len(amb) + [False] * len(uni))
    misses = [r for r in amb + uni if "corrected" in r]
    tp = sum(r["tp"] for r in plu)
    pred = sum(r["predicted"] for r in plu)
    truth = sum(r["truth"] for r in plu)
    pp, pr = (tp / pred if pred else 0.0), (tp / truth if truth else 0.0)
    curve = risk_coverage([r["confidence"] for r in uni], [r["hit"] for r in uni])
    return {
        "counts": {"unique": len(uni), "ambiguous": len(amb), "plural": len(plu)},
        "ambiguity": detect,
        "candidate_recall_unique": float(np.mean([r["in_candidates"] for r in uni])),
        "candidate_recall_ambiguous": float(np.mean([r["in_candidates"] for r in amb])),
        "group_recall_ambiguous": float(np.mean([r["group_recall"] for r in amb])),
        "round_trip": float(np.mean([r["round_trip"] for r in amb])),
        "corrections": len(misses),
        "correction": float(np.mean([r["corrected"] for r in misses])) if misses else 0.0,
        "plural": {
            "precision": pp,
            "recall": pr,
            "f1": 2 * pp * pr / (pp + pr) if pp + pr else 0.0,
        },
        "p50": {f"{int(c * 100)}%": precision_at(curve, c) for c in (0.5, 0.8, 1.0) if uni},
        "curve": curve,
    }


# ----------------------------------------------------------------------------- fitting
def fit_margin(records: list[dict]) -> float:
    """The ambiguity margin with the best detection F1 on these (validation) records."""
    amb = [r for r in records if r["kind"] == "ambiguous"]
    uni = [r for r in records if r["kind"] == "unique"]
    truth = [True] * len(amb) + [False] * len(uni)
    best, best_f1 = 0.25, -1.0
    for margin in np.arange(0.02, 0.9, 0.01):
        pred = [r["runner_ratio"] >= 1 - margin and not r["specific"] for r in amb + uni]
        f1 = _prf(pred, truth)["f1"]
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(round(margin, 2)), f1
    return best


def fit_confidence(records: list[dict], steps: int = 3000, l2: float = 1e-3) -> list[float]:
    """Logistic-regression weights (bias first) of hit ~ features, on unique items."""
    uni = [r for r in records if r["kind"] == "unique"]
    x = np.array([[1.0] + r["features"] for r in uni])
    y = np.array([float(r["hit"]) for r in uni])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        w -= 0.5 * (x.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]])
    return [float(round(v, 3)) for v in w]


# ----------------------------------------------------------------------------- report
def plot_risk_coverage(curve: list[tuple[float, float]], path: Path, title: str) -> None:
    """A PNG of P@0.5 against coverage (drawn with OpenCV: no plotting library is needed)."""
    import cv2

    w, h, m = 640, 420, 60
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = m, h - m, w - 20, 40

    def pt(c: float, p: float) -> tuple[int, int]:
        return int(x0 + c * (x1 - x0)), int(y0 - p * (y0 - y1))

    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    for k in range(0, 11, 2):
        v = k / 10
        cv2.putText(img, f"{v:.1f}", (x0 - 40, pt(0, v)[1] + 5), 0, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{v:.1f}", (pt(v, 0)[0] - 10, y0 + 20), 0, 0.4, (0, 0, 0), 1)
        cv2.line(img, pt(0, v), pt(1, v), (225, 225, 225), 1)
    pts = np.array([pt(c, p) for c, p in curve], np.int32)
    cv2.polylines(img, [pts], False, (200, 60, 20), 2, cv2.LINE_AA)
    cv2.putText(img, title, (x0, 25), 0, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "coverage (most confident answers kept)", (x0 + 120, h - 15), 0, 0.45, 0)
    cv2.putText(img, "P@0.5", (5, y1 - 10), 0, 0.45, (0, 0, 0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[:, :, ::-1])


def format_summary(s: dict, meta: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    a, p = s["ambiguity"], s["plural"]
    rows = [
        (
            "ambiguity detection precision / recall / F1",
            f"{pct(a['precision'])} / {pct(a['recall'])} / {pct(a['f1'])}",
            "F1 >= 80",
        ),
        (
            "candidate recall (unique / ambiguous, meant object offered)",
            f"{pct(s['candidate_recall_unique'])} / {pct(s['candidate_recall_ambiguous'])}",
            "",
        ),
        ("every fitting object offered (ambiguous)", pct(s["group_recall_ambiguous"]), ""),
        ("clarification round trip IoU>=0.5", pct(s["round_trip"]), ">= 80"),
        (
            f"correction: misses turned into the target (of {s['corrections']})",
            pct(s["correction"]),
            ">= 50",
        ),
        (
            "plural instance precision / recall / F1 @0.5",
            f"{pct(p['precision'])} / {pct(p['recall'])} / {pct(p['f1'])}",
            "F1 >= 70",
        ),
    ]
    rows += [(f"P@0.5 of unique answers at {k} coverage", pct(v), "") for k, v in s["p50"].items()]
    lines = [
        f"World dialogue evaluation: {meta['split']} split, {meta['scenes']} scenes, "
        f"items {s['counts']}, margin {meta['ambiguity_margin']}, "
        f"{meta['seconds']:.0f} s",
        "",
        "| measure | value (%) | aim |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {aim} |" for name, value, aim in rows]
    return "\n".join(lines)


def _plain(value):
    """A numpy scalar as a plain JSON number or boolean."""
    return value.item() if hasattr(value, "item") else str(value)


def add_dialogue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dialogue",
        action="store_true",
        help="with --world: evaluate confidence, ambiguity questions, replies, corrections and "
        "plural commands (tools/world/dialogue.py)",
    )
    parser.add_argument("--dialogue-scenes", type=int, default=300, help="scenes (3 items each)")
    parser.add_argument(
        "--fit",
        action="store_true",
        help="with --dialogue on --world-split val: choose the ambiguity margin and the "
        "confidence weights and print them",
    )
    parser.add_argument(
        "--no-reply-models",
        action="store_true",
        help="with --dialogue: replies choose among the offered candidates only (the models "
        "never see the reply as a whole expression), for comparison",
    )
    parser.add_argument("--plot", type=Path, default=None, help="risk-coverage PNG to write")


def run_dialogue_eval(args: argparse.Namespace) -> int:
    from ...core.candidates import CONFIDENCE_WEIGHTS
    from ...pipeline import SegmenterSettings
    from .fallback import world_segmenter

    if args.fit and args.world_split != "val":
        print("error: --fit chooses thresholds on the validation split only", file=sys.stderr)
        return 2
    settings = SegmenterSettings(plural_commands=True, device=args.world_device)
    seg = world_segmenter(settings)
    t0 = time.perf_counter()
    scenes, items = dialogue_set(args.dialogue_scenes, args.world_split)
    options = {"reply_models": not args.no_reply_models}
    records = run_items(seg, scenes, items, settings.dialogue_timeout_s, **options)
    rescore(records, settings.ambiguity_margin, CONFIDENCE_WEIGHTS)
    summary = summarise(records)
    meta = {
        "split": args.world_split,
        "scenes": len(scenes),
        "ambiguity_margin": settings.ambiguity_margin,
        **options,
        "seconds": time.perf_counter() - t0,
    }
    print(format_summary(summary, meta))
    if args.fit:
        fitted = {"ambiguity_margin": fit_margin(records), "weights": fit_confidence(records)}
        print("fitted on validation:", json.dumps(fitted))
        meta["fitted"] = fitted
    if args.plot:
        plot_risk_coverage(summary["curve"], args.plot, f"risk-coverage, world {meta['split']}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        out = {"meta": meta, "summary": summary, "records": records}
        args.json_out.write_text(json.dumps(out, indent=2, default=_plain) + "\n")
    return 0
