"""Train the world's BLIP-architecture ITM model on generated scenes.

Data: each training image comes with two referring expressions that are true of it
(positives) and, for each, a hard negative -- the same expression edited so that nothing in the
image satisfies it (wrong colour or shape taken from another object of the scene, wrong size,
opposite relation, swapped roles, opposite position) -- or, now and then, an expression of
another scene that is false here. The base loss is BLIP's ITM cross-entropy on the first
token's output (match / no match); with nothing else (the defaults) the model learns whether a
colour is present, not where.

Options, all off by default, that make its cross-attention point at the referred object (the
committed model uses all of them; scripts/train_world_model.py has the command):
- ``--grounding-weight/--grounding-layers``: one or more text layers' cross-attention is pulled
  onto the target's patches on positive pairs, using the exact masks of TRAINING scenes;
  ``--ground-anchor`` grounds a relation's anchor phrase on the anchor instead;
- ``--erase-prob``: erased-target negatives pair the true expression with the image whose
  target was painted over, so the match must depend on the target's pixels;
- ``--vision-aux-weight/--vision-aux-position``: linear heads read each patch's shape, colour,
  size and its object's centroid from the vision encoder (heads not saved);
- ``--init-from``: fine-tune a saved model instead of starting from scratch.
Validation and test scenes are never seen.

Everything is seeded: scene seeds are data_offset + step * images_per_step + i (training
range), the text sampling RNG is seeded by (seed, step), erased negatives by (seed, step, 1),
and torch by `seed`. Run with ``python scripts/train_world_model.py --out models/world_blip``
(see --help and that script's docstring for the committed model's command).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .grammar import hard_negative, scene_expressions
from .model import WorldModelConfig, build_model, build_tokenizer, preprocess, save_world_model
from .scenes import generate_scene, scene_seeds
from .training_data import (  # noqa: F401 - the training API, as `train.make_batch` etc.
    PROMPT,
    TRAIN_KIND_WEIGHTS,
    Row,
    erase_object,
    make_batch,
    negative_order,
    prompt_text,
    without_object,
)
from .training_losses import (  # noqa: F401 - likewise
    PATCH_ATTRIBUTES,
    PatchAttributeHeads,
    anchor_token_count,
    encode_texts,
    grounding_loss,
    itc_loss,
    itm_logits,
    patch_attribute_labels,
    target_patch_distribution,
    token_grounding_targets,
)

log = logging.getLogger("iterprime.world.train")


@torch.no_grad()
def evaluate_pairs(
    model,
    tokenizer,
    cfg: WorldModelConfig,
    n_scenes: int = 200,
    split: str = "val",
    seed: int = 12345,
) -> dict[str, float]:
    """ITM accuracy on held-out scenes: positives and their hard negatives, by type."""
    model.eval()
    rng = np.random.default_rng(seed)
    hits: dict[str, list[int]] = collections.defaultdict(list)
    pair_wins: list[int] = []
    for s in scene_seeds(split, n_scenes):
        sc = generate_scene(s, cfg.image_size, cfg.image_size)
        for r in scene_expressions(sc, rng, per_scene=2, kind_weights=TRAIN_KIND_WEIGHTS):
            neg = hard_negative(r.expr, sc, rng, types=negative_order(r.expr.kind, rng))
            texts = [prompt_text(r.text)] + ([prompt_text(neg[0])] if neg else [])
            ids, att = encode_texts(tokenizer, texts)
            px = preprocess(sc.image, cfg.image_size)
            lg = itm_logits(model, px, ids, att, torch.zeros(len(texts), dtype=torch.long))
            p = torch.softmax(lg, -1)[:, 1]
            hits["pos:" + r.kind].append(int(p[0] > 0.5))
            if neg:
                hits["neg:" + neg[1]].append(int(p[1] <= 0.5))
                pair_wins.append(int(lg[0, 1] - lg[0, 0] > lg[1, 1] - lg[1, 0]))
    model.train()
    out = {k: float(np.mean(v)) for k, v in sorted(hits.items())}
    out["pair_ranking"] = float(np.mean(pair_wins)) if pair_wins else float("nan")
    allv = [x for v in hits.values() for x in v]
    out["accuracy"] = float(np.mean(allv))
    return out


@dataclass(frozen=True)
class TrainOptions:
    """Everything `train` takes besides the output folder and the model configuration."""

    steps: int
    images_per_step: int = 32
    lr: float = 5e-4
    warmup: int = 400
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 500
    log_every: int = 50
    max_minutes: float | None = None
    card: str | None = None
    itc_weight: float = 0.0
    stop_after: int | None = None
    init_from: Path | None = None
    grounding_weight: float = 0.0
    grounding_layer: int | tuple[int, ...] = 3
    erase_prob: float = 0.0
    data_offset: int = 0
    ground_anchor: bool = False
    vision_aux_weight: float = 0.0
    vision_aux_position: float = 0.0

    @property
    def layers(self) -> tuple[int, ...]:
        layer = self.grounding_layer
        return (layer,) if isinstance(layer, int) else tuple(layer)

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 5 % of `lr` at `steps`."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        prog = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))


def train(
    out: Path,
    cfg: WorldModelConfig,
    steps: int,
    images_per_step: int = 32,
    lr: float = 5e-4,
    warmup: int = 400,
    seed: int = 0,
    threads: int = 1,
    checkpoint_every: int = 500,
    log_every: int = 50,
    max_minutes: float | None = None,
    card: str | None = None,
    itc_weight: float = 0.0,
    stop_after: int | None = None,
    init_from: Path | None = None,
    grounding_weight: float = 0.0,
    grounding_layer: int | tuple[int, ...] = 3,
    erase_prob: float = 0.0,
    data_offset: int = 0,
    ground_anchor: bool = False,
    vision_aux_weight: float = 0.0,
    vision_aux_position: float = 0.0,
) -> dict:
    """Train; the learning-rate schedule spans `steps`. `max_minutes` (wall clock) or `stop_after`
    (a step count) end the run early; a run stopped by time at step N is reproduced exactly by the
    same command with ``stop_after=N`` in place of ``max_minutes``.

    Grounding options (all off by default, so a plain ITM command is unchanged):
    init_from: start from a saved world model instead of a fresh initialisation;
    grounding_weight / grounding_layer: add grounding_weight x ``grounding_loss`` of that text
    layer's cross-attention on the POSITIVE pairs -- every token but [SEP] and padding should put
    its (head-mean) attention on the referred object's patches, the target's exact mask from the
    TRAINING scene generator downsampled to the patch grid (never validation or test scenes);
    several layers may be given (the loss is their mean);
    ground_anchor: a relation's anchor phrase is grounded on the anchor, not
    the target (``token_grounding_targets``);
    erase_prob: erased-target negatives (see make_batch); data_offset: first training scene
    index (e.g. past the scenes an earlier run used);
    vision_aux_weight: weight of ``PatchAttributeHeads``' loss on the training scenes' patches;
    vision_aux_position: within it, the weight of the object-centroid regression.
    """
    options = TrainOptions(
        steps, images_per_step, lr, warmup, seed, threads, checkpoint_every, log_every,
        max_minutes, card, itc_weight, stop_after, init_from, grounding_weight, grounding_layer,
        erase_prob, data_offset, ground_anchor, vision_aux_weight, vision_aux_position,
    )  # fmt: skip
    return Trainer(out, cfg, options).run()


class Trainer:
    """One training run: the model, its optimiser, the loss options and the running log."""

    def __init__(self, out: Path, cfg: WorldModelConfig, options: TrainOptions) -> None:
        o = self.options = options
        self.out, self.cfg = out, cfg
        torch.set_num_threads(o.threads)
        torch.manual_seed(o.seed)
        self.tokenizer = build_tokenizer(cfg.max_positions)
        if o.init_from is not None:
            from .model import load_world_model

            self.model, _ = load_world_model(o.init_from)
            self.model.train()
        else:
            self.model = build_model(cfg, seed=o.seed).train()
        self.captured: dict[int, torch.Tensor] = {}
        self.hooks = self._grounding_hooks() if o.grounding_weight > 0 else []
        self.aux = (
            PatchAttributeHeads(cfg.vision_hidden, o.vision_aux_position)
            if o.vision_aux_weight > 0
            else None
        )
        self.opt = self._optimizer()
        self.window: dict[str, list[float]] = collections.defaultdict(list)
        self.history: list[dict[str, Any]] = []

    def _grounding_hooks(self) -> list[Any]:
        """Capture each grounded layer's post-softmax, pre-dropout cross-attention probabilities
        (as models/blip.py reads them).
        """
        hooks = []
        for li in self.options.layers:

            def capture(module, args, li=li):
                self.captured[li] = args[0]

            dropout = self.model.text_encoder.encoder.layer[li].crossattention.self.dropout
            hooks.append(dropout.register_forward_pre_hook(capture))
        return hooks

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW with weight decay on matrices only (not on embeddings, biases or norms)."""
        params = list(self.model.named_parameters()) + (
            list(self.aux.named_parameters()) if self.aux is not None else []
        )
        decay = [p for n, p in params if p.ndim >= 2 and "embeddings" not in n]
        no_decay = [p for n, p in params if not (p.ndim >= 2 and "embeddings" not in n)]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.options.lr,
            betas=(0.9, 0.98),
        )

    def save(self, training: dict[str, Any]) -> None:
        """Checkpoint and final save alike: the model in eval mode with its training record."""
        save_world_model(
            self.model.eval(),
            self.tokenizer,
            self.out,
            self.cfg,
            card=self.options.card,
            extra={"training": training},
            tie_cls_to_enc=self.options.itc_weight == 0,
        )

    def step(self, step: int) -> None:
        """One optimiser step on one generated batch."""
        o, cfg = self.options, self.cfg
        for g in self.opt.param_groups:
            g["lr"] = o.lr_at(step)
        scenes, images, rows = make_batch(
            o.images_per_step,
            step,
            o.seed,
            cfg.image_size,
            erase_prob=o.erase_prob,
            data_offset=o.data_offset,
        )
        px = preprocess(images, cfg.image_size)
        ids, att = encode_texts(self.tokenizer, [prompt_text(r[0]) for r in rows])
        labels = torch.tensor([r[1] for r in rows])
        img_index = torch.tensor([r[2] for r in rows])
        logits, image_embeds = itm_logits(self.model, px, ids, att, img_index, return_image=True)
        loss = F.cross_entropy(logits, labels)
        if o.grounding_weight > 0:
            loss = loss + o.grounding_weight * self._grounding(rows, scenes, att)
        if self.aux is not None:
            labels_aux = [patch_attribute_labels(sc, cfg.grid) for sc in scenes]
            l_aux = self.aux.loss(image_embeds[: len(scenes), 1:], labels_aux)
            self.window["vision_aux"].append(float(l_aux.detach()))
            loss = loss + o.vision_aux_weight * l_aux
        if o.itc_weight > 0:
            l_itc = itc_loss(self.model, self.tokenizer, image_embeds, ids, att, img_index, labels)
            self.window["itc"].append(float(l_itc.detach()))
            loss = loss + o.itc_weight * l_itc
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            correct = (logits.argmax(-1) == labels).float().tolist()
        self.window["loss"].append(float(loss.detach()))
        for r, c in zip(rows, correct):
            self.window[r[3]].append(c)
            self.window["acc"].append(c)

    def _grounding(self, rows: list[Row], scenes: list, att: torch.Tensor) -> torch.Tensor:
        """The grounding loss of the positive rows, averaged over the grounded layers."""
        layers = self.options.layers
        pos = [k for k, r in enumerate(rows) if r.label == 1 and r.target >= 0]
        tgt, tok = token_grounding_targets(
            [rows[k] for k in pos],
            scenes,
            att[pos],
            self.cfg.grid,
            self.tokenizer if self.options.ground_anchor else None,
        )
        l_g = sum(grounding_loss(self.captured.pop(li)[pos], tgt, tok) for li in layers) / len(
            layers
        )
        self.window["ground"].append(float(l_g.detach()))
        return l_g

    def after_step(self, step: int, t0: float) -> bool:
        """Log, checkpoint, and say whether the run stops here (time budget or --stop-after)."""
        o = self.options
        if (step + 1) % o.log_every == 0:
            summ = {k: round(float(np.mean(v)), 4) for k, v in sorted(self.window.items())}
            minutes = round((time.time() - t0) / 60, 2)
            summ.update(step=step + 1, lr=round(o.lr_at(step), 7), minutes=minutes)
            log.info(json.dumps(summ))
            self.history.append(summ)
            self.window.clear()
        if (step + 1) % o.checkpoint_every == 0 or step + 1 == o.steps:
            self.save(
                {
                    "steps_done": step + 1,
                    "steps": o.steps,
                    "seed": o.seed,
                    "images_per_step": o.images_per_step,
                    "lr": o.lr,
                    "warmup": o.warmup,
                    "threads": o.threads,
                    "minutes": round((time.time() - t0) / 60, 2),
                }
            )
            self.model.train()
            log.info("checkpoint at step %d -> %s", step + 1, self.out)
        if o.max_minutes is not None and (time.time() - t0) / 60 > o.max_minutes:
            log.warning(
                "stopping at step %d: time budget of %.1f min used (reproduce with --stop-after "
                "%d)",
                step + 1,
                o.max_minutes,
                step + 1,
            )
            return True
        if o.stop_after is not None and step + 1 >= o.stop_after:
            log.info("stopping at step %d (--stop-after)", step + 1)
            return True
        return False

    def run(self) -> dict:
        t0 = time.time()
        step = 0
        for step in range(self.options.steps):
            self.step(step)
            if self.after_step(step, t0):
                break
        for h in self.hooks:
            h.remove()
        minutes = (time.time() - t0) / 60
        val = evaluate_pairs(self.model, self.tokenizer, self.cfg)
        log.info("validation ITM: %s", json.dumps(val))
        summary = self.summary(step + 1, minutes, val)
        self.save(summary)
        return summary

    def summary(self, steps_done: int, minutes: float, val: dict[str, float]) -> dict:
        """The training record saved with the model (the grounding options only when used)."""
        o = self.options
        summary = {
            "steps_done": steps_done,
            "steps": o.steps,
            "minutes": round(minutes, 2),
            "seed": o.seed,
            "images_per_step": o.images_per_step,
            "lr": o.lr,
            "warmup": o.warmup,
            "threads": o.threads,
            "itc_weight": o.itc_weight,
            "last_log": self.history[-1] if self.history else None,
            "validation_itm": val,
        }
        used = (
            o.init_from is not None
            or o.grounding_weight > 0
            or o.erase_prob > 0
            or o.data_offset
            or o.vision_aux_weight > 0
        )
        if used:
            layers = o.layers
            summary.update(
                init_from=str(o.init_from) if o.init_from else None,
                grounding_weight=o.grounding_weight,
                grounding_layer=layers[0] if len(layers) == 1 else list(layers),
                erase_prob=o.erase_prob,
                data_offset=o.data_offset,
                ground_anchor=o.ground_anchor,
                vision_aux_weight=o.vision_aux_weight,
                vision_aux_position=o.vision_aux_position,
            )
        return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(p)
    add_grounding_arguments(p)
    return p


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The plain ITM run: output, schedule, threads, logging, early stops, model configuration."""
    p.add_argument(
        "--out", type=Path, required=True, help="folder to save the model into (overwritten)"
    )
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--images-per-step", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop early after this long (the step reached "
        "is logged; --stop-after that step reproduces the run exactly)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many steps (the learning-rate schedule still spans --steps)",
    )
    p.add_argument("--config", type=str, default="{}", help="JSON overrides of WorldModelConfig")
    p.add_argument(
        "--itc-weight",
        type=float,
        default=0.0,
        help="weight of BLIP's image-text contrastive loss",
    )
    p.add_argument("--card", type=Path, default=None, help="MODEL_CARD.md to copy into --out")


def add_grounding_arguments(p: argparse.ArgumentParser) -> None:
    """The options that make the cross-attention point at the referred object (all off)."""
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="fine-tune a saved world model "
        "instead of training from a fresh initialisation; --config must match its architecture",
    )
    p.add_argument(
        "--grounding-weight",
        type=float,
        default=0.0,
        help="weight of the cross-attention grounding "
        "loss on positive pairs (target masks of training scenes)",
    )
    p.add_argument(
        "--grounding-layer",
        "--grounding-layers",
        dest="grounding_layer",
        type=int,
        nargs="+",
        default=[3],
        help="text layer(s) whose cross-attention is grounded (the loss is their mean)",
    )
    p.add_argument(
        "--ground-anchor",
        action="store_true",
        help="ground a relation's anchor phrase on the anchor "
        "object (each word on what it names) instead of every token on the target",
    )
    p.add_argument(
        "--erase-prob",
        type=float,
        default=0.0,
        help="fraction of positives that also give an "
        "erased-target negative (the same expression on the image with the target painted over)",
    )
    p.add_argument("--data-offset", type=int, default=0, help="index of the first training scene")
    p.add_argument(
        "--vision-aux-weight",
        type=float,
        default=0.0,
        help="weight of a dense auxiliary loss that "
        "reads each patch's shape/colour/size from the vision encoder (training scenes; heads not "
        "saved)",
    )
    p.add_argument(
        "--vision-aux-position",
        type=float,
        default=0.0,
        help="weight, within that loss, of "
        "regressing each object patch's object centroid (patch units, smooth L1)",
    )


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = WorldModelConfig(**json.loads(a.config))
    log.info("config %s", json.dumps(asdict(cfg)))
    card = a.card.read_text() if a.card else None
    summary = train(
        a.out,
        cfg,
        a.steps,
        a.images_per_step,
        a.lr,
        a.warmup,
        a.seed,
        a.threads,
        a.checkpoint_every,
        a.log_every,
        a.max_minutes,
        card,
        a.itc_weight,
        a.stop_after,
        a.init_from,
        a.grounding_weight,
        tuple(a.grounding_layer),
        a.erase_prob,
        a.data_offset,
        a.ground_anchor,
        a.vision_aux_weight,
        a.vision_aux_position,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
