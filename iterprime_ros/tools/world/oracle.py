"""ORACLE mask proposals for world scenes (a ProposalBackend that is told the answer set).

Why an oracle: the issue asks for a small Mask2Former trained on the world if it reaches a
mean best-proposal IoU of 0.9 on held-out scenes; none was trained (see
models/world_blip/MODEL_CARD.md, "Proposals"), so the world evaluation uses the generator's
exact instance masks -- which a real proposal network does not have -- plus distractor masks
that imitate a proposal network's typical mistakes, so that the selection step (method.md §4)
still has wrong answers to reject:

- ``object i``: the exact instance mask of object i (every object of the scene);
- ``merged i+j``: object i together with its nearest neighbour j (two components);
- ``partial i (<side> half)``: the left/right/top/bottom half of object i;
- ``table``: the background (everything that is not an object).

The order is shuffled by the scene seed, so the true masks are not always first (selection
breaks ties by the lowest index). Because the true masks are always among the proposals,
the best-proposal IoU is 1 by construction: world mIoU measures the heat map and the
selection, not the proposals. Never report world figures as if a proposal network made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import Scene

HALVES: tuple[str, ...] = ("left", "right", "top", "bottom")


def image_digest(image: np.ndarray) -> str:
    """The pipeline's frame key (a content hash), so the oracle recognises the same pixels."""
    from ...pipeline import image_key

    return image_key(image)


@dataclass(frozen=True)
class OracleSet:
    """The proposals of one scene: masks (N x H x W bool), a name, a kind and the object of
    each.
    """

    masks: np.ndarray
    names: tuple[str, ...]
    kinds: tuple[str, ...]  # object | merged | partial | table
    objects: tuple[tuple[int, ...], ...]  # the scene objects each mask is made of

    def index_of_object(self, i: int) -> int:
        """Proposal index of object i's exact mask."""
        for k, (kind, objs) in enumerate(zip(self.kinds, self.objects)):
            if kind == "object" and objs == (i,):
                return k
        raise KeyError(i)


def _half(mask: np.ndarray, side: str) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    out = np.zeros_like(mask)
    if side in ("left", "right"):
        mid = (xs.min() + xs.max() + 1) / 2.0
        keep = xs + 0.5 < mid if side == "left" else xs + 0.5 >= mid
    else:
        mid = (ys.min() + ys.max() + 1) / 2.0
        keep = ys + 0.5 < mid if side == "top" else ys + 0.5 >= mid
    out[ys[keep], xs[keep]] = True
    return out


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    dx = max(b[0] - a[2], a[0] - b[2], 0)
    dy = max(b[1] - a[3], a[1] - b[3], 0)
    return float(np.hypot(dx, dy))


def oracle_proposals(scene: Scene, distractors: bool = True) -> OracleSet:
    """The oracle proposal set of `scene` (module doc); deterministic in the scene seed."""
    masks: list[np.ndarray] = []
    names: list[str] = []
    kinds: list[str] = []
    objs: list[tuple[int, ...]] = []

    def add(m: np.ndarray, name: str, kind: str, members: tuple[int, ...]) -> None:
        if m.any():
            masks.append(m)
            names.append(name)
            kinds.append(kind)
            objs.append(members)

    n = len(scene.objects)
    for i in range(n):
        add(scene.masks[i].copy(), f"object {i}", "object", (i,))
    if distractors:
        pairs = set()
        for i in range(n):
            others = [j for j in range(n) if j != i]
            if others:
                j = min(others, key=lambda j: _gap(scene.objects[i].bbox, scene.objects[j].bbox))
                pairs.add((min(i, j), max(i, j)))
        for i, j in sorted(pairs):
            add(scene.masks[i] | scene.masks[j], f"merged {i}+{j}", "merged", (i, j))
        rng = np.random.default_rng([scene.seed, 7])
        for i in range(n):
            side = HALVES[int(rng.integers(len(HALVES)))]
            add(_half(scene.masks[i], side), f"partial {i} ({side} half)", "partial", (i,))
        table = ~scene.masks.any(axis=0) if n else np.ones((scene.height, scene.width), bool)
        add(table, "table", "table", ())
    order = np.random.default_rng([scene.seed, 11]).permutation(len(masks))
    h, w = scene.height, scene.width
    arr = np.stack([masks[k] for k in order]) if masks else np.zeros((0, h, w), bool)
    return OracleSet(
        masks=arr,
        names=tuple(names[k] for k in order),
        kinds=tuple(kinds[k] for k in order),
        objects=tuple(objs[k] for k in order),
    )


class OracleProposals:
    """ProposalBackend for world scenes that CHEATS: it is given each scene's true masks.

    register(scene) before the pipeline sees scene.image; propose(image) then answers that
    scene's OracleSet.masks (found by a hash of the pixels). An unregistered image is an error,
    not an empty answer, so the oracle can never be mistaken for a proposal network.
    """

    name = "world_oracle"
    is_oracle = True

    def __init__(self, distractors: bool = True, max_scenes: int = 64) -> None:
        self.distractors = distractors
        self.max_scenes = max_scenes
        self._sets: dict[str, OracleSet] = {}

    def register(self, scene: Scene) -> OracleSet:
        key = image_digest(scene.image)
        if key not in self._sets:
            if len(self._sets) >= self.max_scenes:
                self._sets.pop(next(iter(self._sets)))
            self._sets[key] = oracle_proposals(scene, self.distractors)
        return self._sets[key]

    def lookup(self, image: np.ndarray) -> OracleSet:
        key = image_digest(image)
        if key not in self._sets:
            raise KeyError(
                "OracleProposals: this image is not a registered world scene; the oracle only "
                "knows "
                "scenes passed to register() (it is not a proposal network)"
            )
        return self._sets[key]

    def propose(self, image: np.ndarray) -> np.ndarray:
        return self.lookup(image).masks.copy()
