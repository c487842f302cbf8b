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
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .grammar import hard_negative, is_false, scene_expressions
from .model import WorldModelConfig, build_model, build_tokenizer, preprocess, save_world_model
from .scenes import COLOURS, SHAPES, SIZES, Scene, generate_scene, patch_coverage, scene_seeds

log = logging.getLogger("iterprime.world.train")
PROMPT = "there is a {}"
TRAIN_KIND_WEIGHTS = (0.3, 0.35, 0.35)


class Row(NamedTuple):
    """One image-text pair of a training step."""

    text: str
    label: int  # 1 match, 0 no match
    image: int  # index into the step's images
    type: str  # "pos:<kind>" or "neg:<negative type>"
    target: int  # the referred object's index for positives, else -1
    anchor: int = -1  # a positive relation's anchor object, else -1
    anchor_words: int = 0  # how many trailing words of the text name the anchor ("the red box")


def prompt_text(expression: str, template: str = PROMPT) -> str:
    return template.format(expression)


def make_batch(
    images_per_step: int,
    step: int,
    seed: int,
    image_size: int,
    easy_negative_prob: float = 0.15,
    erase_prob: float = 0.0,
    data_offset: int = 0,
):
    """Scenes, images and ``Row``s (image-text pairs) of one training step.

    erase_prob > 0: for that fraction of the positives, the scene with the target
    painted over with the table (``erase_object``) is appended as an extra image and paired with
    the same true expression, labelled mismatch ("neg:erased") -- only when no other object of
    the scene then satisfies the expression (``is_false`` on the scene without the target).
    Returns (scenes, images, rows): images = the scenes' images followed by the erased ones;
    rows are ``Row``s (target / anchor: the objects whose masks ground the attention).
    With erase_prob = 0 and data_offset = 0 the rows are those of a plain ITM run.
    """
    rng = np.random.default_rng([seed, step])
    seeds = scene_seeds(
        "train", images_per_step, offset=(data_offset + step * images_per_step) % 9_000_000
    )
    scenes = [generate_scene(s, image_size, image_size) for s in seeds]
    exprs = [
        scene_expressions(sc, rng, per_scene=2, kind_weights=TRAIN_KIND_WEIGHTS, command_prob=0.0)
        for sc in scenes
    ]
    images = [sc.image for sc in scenes]
    rows: list[Row] = []
    erase_rng = np.random.default_rng([seed, step, 1])  # separate stream: the other rows unchanged
    for i, (sc, ex) in enumerate(zip(scenes, exprs)):
        for r in ex:
            anchor_words = (
                1 + len(r.expr.anchor.words()) if r.anchor is not None and r.expr.anchor else 0
            )
            rows.append(
                Row(
                    r.text,
                    1,
                    i,
                    "pos:" + r.kind,
                    r.target,
                    -1 if r.anchor is None else r.anchor,
                    anchor_words,
                )
            )
            neg = None
            if rng.random() >= easy_negative_prob:
                neg = hard_negative(r.expr, sc, rng, types=_negative_order(r.expr.kind, rng))
            if neg is None:  # an expression of another scene that is false here
                for j in rng.permutation(len(scenes)):
                    if j == i or not exprs[j]:
                        continue
                    other = exprs[j][int(rng.integers(len(exprs[j])))]
                    if is_false(other.expr, sc):
                        neg = (other.text, "other_scene")
                        break
            if neg is not None:
                rows.append(Row(neg[0], 0, i, "neg:" + neg[1], -1))
            if erase_prob > 0 and erase_rng.random() < erase_prob:
                if is_false(r.expr, without_object(sc, r.target)):
                    images.append(erase_object(sc, r.target, erase_rng))
                    rows.append(Row(r.text, 0, len(images) - 1, "neg:erased", -1))
    return scenes, images, rows


def without_object(scene: Scene, index: int) -> Scene:
    """The scene's description with object `index` removed (for the grammar's truth tests)."""
    keep = [k for k in range(len(scene.objects)) if k != index]
    return Scene(
        image=scene.image,
        masks=scene.masks[keep],
        objects=tuple(scene.objects[k] for k in keep),
        seed=scene.seed,
        table=scene.table,
    )


def erase_object(scene: Scene, index: int, rng: np.random.Generator, ring: int = 3) -> np.ndarray:
    """A copy of the image with object `index` painted over with the table: the median of the
    table pixels in a `ring`-pixel band around it, plus the generator's pixel noise (sd 4).
    """
    img = scene.image.copy()
    mask = scene.masks[index]
    grown = mask.copy()
    for _ in range(ring):  # 4-neighbour dilation
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    band = grown & ~scene.masks.any(0)
    colour = np.median(img[band], axis=0) if band.any() else np.asarray(scene.table, np.float32)
    fill = colour[None, :] + rng.normal(0.0, 4.0, size=(int(mask.sum()), 3))
    img[mask] = np.clip(np.rint(fill), 0, 255).astype(np.uint8)
    return img


def target_patch_distribution(mask: np.ndarray, grid: int) -> torch.Tensor:
    """H x W bool -> grid*grid weights: the fraction of each patch the mask covers, normalised."""
    m = torch.from_numpy(patch_coverage(mask, grid))
    return m / m.sum().clamp_min(1e-8)


def grounding_loss(
    attention: torch.Tensor, targets: torch.Tensor, token_mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy between the target-patch distribution and the cross-attention.

    attention: R x K x L x (1 + g*g) post-softmax probabilities of the grounded layer (key 0 is
    the image [CLS]); targets: R x g*g (one distribution for every token) or R x L x g*g (one per
    token; rows sum to 1); token_mask: R x L (the tokens grounded).
    The heads' mean attention is used, so mass on [CLS] or on other patches is penalised.
    """
    a = attention.mean(1)[:, :, 1:]  # R x L x g*g
    t = targets[:, None, :] if targets.ndim == 2 else targets
    ce = -(t * torch.log(a.clamp_min(1e-8))).sum(-1)  # R x L
    w = token_mask.float()
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def anchor_token_count(tokenizer, text: str, anchor_words: int) -> int:
    """How many word pieces the last `anchor_words` words of `text` take (the anchor's phrase)."""
    if anchor_words <= 0:
        return 0
    return sum(len(tokenizer.tokenize(w)) for w in text.split()[-anchor_words:])


def token_grounding_targets(
    rows: list[Row], scenes: list[Scene], att: torch.Tensor, grid: int, tokenizer=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token target distributions (R x L x g*g) and the grounded tokens (R x L) of positive
    rows.

    Every token but [SEP] and padding is grounded on the referred object, except -- when a
    tokenizer is given -- the tokens of a relation's anchor phrase ("... left of *the red box*"),
    which are grounded on the anchor: each word attends to what it names, so the primary word's
    map (PWEM) carries the target while the mean over tokens mixes in the anchor, as in a VLP
    trained on real captions.
    """
    n, length = att.shape
    targets = torch.zeros(n, length, grid * grid)
    tok = att.clone().float()
    for k, r in enumerate(rows):
        sep = int(att[k].sum()) - 1
        tok[k, sep] = 0
        sc = scenes[r.image]
        targets[k, :sep] = target_patch_distribution(sc.masks[r.target], grid)
        if tokenizer is not None and r.anchor >= 0:
            m = anchor_token_count(tokenizer, r.text, r.anchor_words)
            if 0 < m < sep:
                targets[k, sep - m : sep] = target_patch_distribution(sc.masks[r.anchor], grid)
    return targets, tok


# Dense attribute supervision of the vision encoder (training only; the heads are not saved).
PATCH_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": SIZES,
}


def patch_attribute_labels(
    scene: Scene, grid: int, min_cover: float = 0.3
) -> dict[str, torch.Tensor]:
    """Per patch (g*g), the index of the shape / colour / size of the object covering most of it
    (at least `min_cover` of the patch), or len(values) for the table; "centre": that object's
    centroid (x, y) in patch units (g*g x 2, NaN for the table).
    """
    cover = patch_coverage(scene.masks, grid)
    best = cover.argmax(0)
    table = cover.max(0) < min_cover
    out = {}
    for attr, values in PATCH_ATTRIBUTES.items():
        idx = np.array([values.index(getattr(o, attr)) for o in scene.objects])[best]
        idx[table] = len(values)
        out[attr] = torch.from_numpy(idx.astype(np.int64))
    # WorldObject.centroid is the mean of pixel centres (+0.5); in patch units from the image
    # corner
    centres = (np.array([o.centroid for o in scene.objects]) - 0.5) * (
        grid / scene.width,
        grid / scene.height,
    )
    centres = centres[best]
    centres[table] = np.nan
    out["centre"] = torch.from_numpy(centres.astype(np.float32))
    return out


class PatchAttributeHeads(torch.nn.Module):
    """Linear heads that read each patch's shape, colour and size (and, with position_weight > 0,
    its object's centroid) from the vision encoder's output.

    Stage-1 ITM training alone taught the vision encoder colour but hardly shape (wrong-shape
    negatives were accepted about half the time), so expressions that only a shape singles out
    could not be grounded; and "the leftmost cup" needs every patch of a cup to carry where that
    cup is, not where the patch is. This auxiliary loss gives the encoder a dense signal; the
    heads are thrown away, so the saved model is a plain BlipForImageTextRetrieval.
    """

    def __init__(self, hidden: int, position_weight: float = 0.0):
        super().__init__()
        self.heads = torch.nn.ModuleDict(
            {a: torch.nn.Linear(hidden, len(v) + 1) for a, v in PATCH_ATTRIBUTES.items()}
        )
        self.position_weight = position_weight
        self.centre = torch.nn.Linear(hidden, 2) if position_weight > 0 else None

    def loss(
        self, patch_embeds: torch.Tensor, labels: list[dict[str, torch.Tensor]]
    ) -> torch.Tensor:
        """patch_embeds: N x g*g x D (no [CLS]); labels: one ``patch_attribute_labels`` per
        image.
        """
        total = patch_embeds.new_zeros(())
        for attr, head in self.heads.items():
            target = torch.stack([lab[attr] for lab in labels])
            total = total + F.cross_entropy(head(patch_embeds).flatten(0, 1), target.flatten())
        total = total / len(self.heads)
        if self.centre is not None:
            target = torch.stack(
                [lab["centre"] for lab in labels]
            )  # N x g*g x 2, NaN on the table
            on_object = ~torch.isnan(target[..., 0])
            if on_object.any():
                pred = self.centre(patch_embeds)[on_object]
                total = total + self.position_weight * F.smooth_l1_loss(pred, target[on_object])
        return total


def _negative_order(kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    """Relation/position edits first 70 % of the time for the kinds that have them."""
    base = ["colour", "shape", "size"]
    special = {"relation": ["relation", "roles"], "absolute": ["position"]}.get(kind, [])
    if special and rng.random() < 0.7:
        return tuple(special + base)
    allt = base + special
    return tuple(allt[i] for i in rng.permutation(len(allt)))


def encode_texts(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ids = enc["input_ids"].clone()
    ids[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")  # BLIP's ITM first token
    return ids, enc["attention_mask"]


def itm_logits(
    model,
    pixel_values: torch.Tensor,
    ids: torch.Tensor,
    att: torch.Tensor,
    img_index: torch.Tensor,
    return_image: bool = False,
):
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    out = model.text_encoder(
        input_ids=ids, attention_mask=att, encoder_hidden_states=image_embeds[img_index]
    ).last_hidden_state
    logits = model.itm_head(out[:, 0])
    return (logits, image_embeds) if return_image else logits


def itc_loss(
    model,
    tokenizer,
    image_embeds: torch.Tensor,
    ids: torch.Tensor,
    att: torch.Tensor,
    img_index: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.07,
) -> torch.Tensor:
    """BLIP's image-text contrastive loss on the positive captions (text-only pass, [CLS]
    first).
    """
    pos = labels == 1
    ids = ids[pos].clone()
    ids[:, 0] = tokenizer.cls_token_id
    text = model.text_encoder(input_ids=ids, attention_mask=att[pos]).last_hidden_state[:, 0]
    t = F.normalize(model.text_proj(text), dim=-1)
    v = F.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
    sim = t @ v.t() / temperature  # captions x images
    target = img_index[pos]
    first = torch.zeros(v.shape[0], dtype=torch.bool)
    keep = []
    for k, i in enumerate(target.tolist()):  # one caption per image for image -> text
        if not first[i]:
            first[i] = True
            keep.append(k)
    keep_t = torch.tensor(keep)
    i2t = F.cross_entropy(sim[keep_t].t()[target[keep_t]], torch.arange(len(keep)))
    return 0.5 * (F.cross_entropy(sim, target) + i2t)


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
            neg = hard_negative(r.expr, sc, rng, types=_negative_order(r.expr.kind, rng))
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
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(cfg.max_positions)
    if init_from is not None:
        from .model import load_world_model

        model, _ = load_world_model(init_from)
        model.train()
    else:
        model = build_model(cfg, seed=seed).train()
    layers = (grounding_layer,) if isinstance(grounding_layer, int) else tuple(grounding_layer)
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    if grounding_weight > 0:
        for li in layers:

            def capture(
                module, args, li=li
            ):  # the post-softmax, pre-dropout probabilities (as models/blip.py)
                captured[li] = args[0]

            dropout = model.text_encoder.encoder.layer[li].crossattention.self.dropout
            hooks.append(dropout.register_forward_pre_hook(capture))
    aux = (
        PatchAttributeHeads(cfg.vision_hidden, vision_aux_position)
        if vision_aux_weight > 0
        else None
    )
    params = list(model.named_parameters()) + (
        list(aux.named_parameters()) if aux is not None else []
    )
    decay = [p for n, p in params if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        prog = (step - warmup) / max(1, steps - warmup)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))

    def save(training: dict[str, Any]) -> None:
        """Checkpoint and final save alike: the model in eval mode with its training record."""
        save_world_model(
            model.eval(),
            tokenizer,
            out,
            cfg,
            card=card,
            extra={"training": training},
            tie_cls_to_enc=itc_weight == 0,
        )

    t0 = time.time()
    window: dict[str, list[float]] = collections.defaultdict(list)
    history = []
    step = 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        scenes, images, rows = make_batch(
            images_per_step,
            step,
            seed,
            cfg.image_size,
            erase_prob=erase_prob,
            data_offset=data_offset,
        )
        px = preprocess(images, cfg.image_size)
        ids, att = encode_texts(tokenizer, [prompt_text(r[0]) for r in rows])
        labels = torch.tensor([r[1] for r in rows])
        img_index = torch.tensor([r[2] for r in rows])
        logits, image_embeds = itm_logits(model, px, ids, att, img_index, return_image=True)
        loss = F.cross_entropy(logits, labels)
        if grounding_weight > 0:
            pos = [k for k, r in enumerate(rows) if r.label == 1 and r.target >= 0]
            tgt, tok = token_grounding_targets(
                [rows[k] for k in pos],
                scenes,
                att[pos],
                cfg.grid,
                tokenizer if ground_anchor else None,
            )
            l_g = sum(grounding_loss(captured.pop(li)[pos], tgt, tok) for li in layers) / len(
                layers
            )
            window["ground"].append(float(l_g.detach()))
            loss = loss + grounding_weight * l_g
        if aux is not None:
            labels_aux = [patch_attribute_labels(sc, cfg.grid) for sc in scenes]
            l_aux = aux.loss(image_embeds[: len(scenes), 1:], labels_aux)
            window["vision_aux"].append(float(l_aux.detach()))
            loss = loss + vision_aux_weight * l_aux
        if itc_weight > 0:
            l_itc = itc_loss(model, tokenizer, image_embeds, ids, att, img_index, labels)
            window["itc"].append(float(l_itc.detach()))
            loss = loss + itc_weight * l_itc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            correct = (logits.argmax(-1) == labels).float().tolist()
        window["loss"].append(float(loss.detach()))
        for r, c in zip(rows, correct):
            window[r[3]].append(c)
            window["acc"].append(c)
        if (step + 1) % log_every == 0:
            summ = {k: round(float(np.mean(v)), 4) for k, v in sorted(window.items())}
            summ.update(
                step=step + 1, lr=round(lr_at(step), 7), minutes=round((time.time() - t0) / 60, 2)
            )
            log.info(json.dumps(summ))
            history.append(summ)
            window.clear()
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            save(
                {
                    "steps_done": step + 1,
                    "steps": steps,
                    "seed": seed,
                    "images_per_step": images_per_step,
                    "lr": lr,
                    "warmup": warmup,
                    "threads": threads,
                    "minutes": round((time.time() - t0) / 60, 2),
                }
            )
            model.train()
            log.info("checkpoint at step %d -> %s", step + 1, out)
        if max_minutes is not None and (time.time() - t0) / 60 > max_minutes:
            log.warning(
                "stopping at step %d: time budget of %.1f min used (reproduce with --stop-after "
                "%d)",
                step + 1,
                max_minutes,
                step + 1,
            )
            break
        if stop_after is not None and step + 1 >= stop_after:
            log.info("stopping at step %d (--stop-after)", step + 1)
            break
    for h in hooks:
        h.remove()
    minutes = (time.time() - t0) / 60
    val = evaluate_pairs(model, tokenizer, cfg)
    log.info("validation ITM: %s", json.dumps(val))
    summary = {
        "steps_done": step + 1,
        "steps": steps,
        "minutes": round(minutes, 2),
        "seed": seed,
        "images_per_step": images_per_step,
        "lr": lr,
        "warmup": warmup,
        "threads": threads,
        "itc_weight": itc_weight,
        "last_log": history[-1] if history else None,
        "validation_itm": val,
    }
    if (
        init_from is not None
        or grounding_weight > 0
        or erase_prob > 0
        or data_offset
        or vision_aux_weight > 0
    ):
        summary.update(
            init_from=str(init_from) if init_from else None,
            grounding_weight=grounding_weight,
            grounding_layer=layers[0] if len(layers) == 1 else list(layers),
            erase_prob=erase_prob,
            data_offset=data_offset,
            ground_anchor=ground_anchor,
            vision_aux_weight=vision_aux_weight,
            vision_aux_position=vision_aux_position,
        )
    save(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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
