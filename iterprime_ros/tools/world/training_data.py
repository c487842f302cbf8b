"""The training data of the world model: each step's scenes, images and image-text pairs.

Apart from the training loop so that the data (what the model sees, and how its hard and
erased-target negatives are made) reads on its own, and so that tests can build one step's
batch without training.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .grammar import hard_negative, is_false, scene_expressions
from .scenes import Scene, generate_scene, scene_seeds

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
                neg = hard_negative(r.expr, sc, rng, types=negative_order(r.expr.kind, rng))
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


def negative_order(kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    """Relation/position edits first 70 % of the time for the kinds that have them."""
    base = ["colour", "shape", "size"]
    special = {"relation": ["relation", "roles"], "absolute": ["position"]}.get(kind, [])
    if special and rng.random() < 0.7:
        return tuple(special + base)
    allt = base + special
    return tuple(allt[i] for i in rng.permutation(len(allt)))
