"""Short seeded video sequences of the tabletop world, with the true mask of every object on
every frame -- for measuring the tracker (iterprime_ros/tracking.py).

Why generated: judging a tracker needs the true mask on each frame, through the very events
that break one: the camera pans and zooms, the target moves, an occluder passes over it, the
target leaves the image and comes back. A world scene (scenes.py, drawn at 256 x 384 so there
is room to move) is split into layers -- the table (objects painted out), each object as a
sprite with its exact mask, and an occluder bar -- which are composed per frame in world
coordinates and seen through a camera (a scale + shift, cv2.warpAffine) as a 160 x 120 frame
with fresh sensor noise. The visible mask of each object is what is left of its sprite after
the layers above it, seen through the same camera (nearest neighbour), so it is exact up to
the camera's resampling.

Kinds (one scripted motion each, 30 frames at 30 fps):
pan (the camera pans), zoom (zooms in then out), move (the target slides across the table),
occluder (a bar passes over the target), leave (the camera pans until the target is out of the
image, holds, pans back). Everything is a pure function of (kind, seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .scenes import Scene, WorldObject, generate_scene

KINDS: tuple[str, ...] = ("pan", "zoom", "move", "occluder", "leave")
FRAME_W, FRAME_H = 160, 120
WORLD_H, WORLD_W = 256, 384
PAD = 160  # table added around the world so the camera can look past its edge
FPS = 30.0
OCCLUDER_RGB = (70, 72, 80)
OCCLUDER_W = 70  # world pixels: wider than most objects, so it can hide one


@dataclass
class Sequence:
    """Frames (T x H x W x 3 RGB), the visible masks (T x N x H x W bool) of the N objects of
    the world scene, and which object is the target.
    """

    kind: str
    seed: int
    frames: np.ndarray
    masks: np.ndarray
    objects: tuple[WorldObject, ...]
    target: int

    @property
    def stamps(self) -> np.ndarray:
        return np.arange(len(self.frames)) / FPS

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def scene(self, t: int) -> tuple[Scene, list[int]]:
        """Frame t as a Scene of the objects visible in it (for world.oracle), and the
        sequence's object index of each of its objects.
        """
        ids = [i for i in range(len(self.objects)) if self.masks[t, i].any()]
        objs = []
        for i in ids:
            ys, xs = np.nonzero(self.masks[t, i])
            o = self.objects[i]
            objs.append(
                WorldObject(
                    o.shape,
                    o.colour,
                    o.size,
                    (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                    (float(xs.mean() + 0.5), float(ys.mean() + 0.5)),
                    int(xs.size),
                )
            )
        masks = (
            self.masks[t, ids] if ids else np.zeros((0, FRAME_H, FRAME_W), bool)
        )  # fmt: skip
        scene = Scene(self.frames[t], masks, tuple(objs), seed=self.seed * 1000 + t)
        return scene, ids


def _camera(cx: float, cy: float, zoom: float) -> np.ndarray:
    """World (padded) -> frame: p = zoom * (w - c) + frame centre."""
    return np.array(
        [[zoom, 0.0, FRAME_W / 2 - zoom * cx], [0.0, zoom, FRAME_H / 2 - zoom * cy]], np.float32
    )


def _table(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The world image with its objects painted out (inpainting + the table's noise), padded."""
    anything = scene.masks.any(axis=0)
    grown = cv2.dilate(anything.astype(np.uint8), np.ones((3, 3), np.uint8))
    bg = cv2.inpaint(scene.image, grown, 5, cv2.INPAINT_TELEA).astype(np.float32)
    bg[grown > 0] += rng.normal(0.0, 4.0, size=(int(grown.sum()), 3)).astype(np.float32)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(bg, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT101)


@dataclass
class _Script:
    """What happens over a sequence: the camera per frame (centre x, centre y, zoom), the
    target's own shift per frame, and the occluder bar's centre x per frame (None: no bar).
    """

    cam: np.ndarray
    shift: np.ndarray
    occluder_x: np.ndarray | None


def _script(kind: str, tx: float, ty: float, length: int, rng: np.random.Generator) -> _Script:
    """The scripted motion of `kind` around a target at (tx, ty), with a hand-held wobble."""
    zoom0 = 0.6
    # the camera starts looking near the target (it is in the image at frame 0)
    cx0 = tx + rng.uniform(-0.25, 0.25) * FRAME_W / zoom0
    cy0 = ty + rng.uniform(-0.2, 0.2) * FRAME_H / zoom0
    s = np.linspace(0.0, 1.0, length)
    cam = np.stack([np.full(length, cx0), np.full(length, cy0), np.full(length, zoom0)], 1)
    shift = np.zeros((length, 2))  # the target's own motion, world pixels
    occluder_x = None
    if kind == "pan":
        d = rng.uniform(50, 90) * rng.choice([-1, 1]), rng.uniform(-30, 30)
        cam[:, 0] += d[0] * s
        cam[:, 1] += d[1] * s
    elif kind == "zoom":
        cam[:, 2] = zoom0 * (1.0 + 0.6 * np.sin(np.pi * s) * rng.choice([1.0, -0.5]))
        cam[:, 0] += (tx - cx0) * 0.5 * s
    elif kind == "move":
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(80, 130)
        shift = np.outer(s, [dist * np.cos(angle), dist * np.sin(angle)])
        cam[:, :2] = (tx, ty) + shift[-1] / 2  # the path is centred in the image
    elif kind == "occluder":
        side = rng.choice([-1, 1])
        occluder_x = tx + side * (120 - 240 * s)  # from one side of the target to the other
    elif kind == "leave":
        # pan until the target is 1.3 half-frames away from the centre, hold, come back
        side = rng.choice([-1, 1])
        away = tx + side * 1.3 * (FRAME_W / 2) / zoom0 + side * 40
        ramp = np.clip(np.minimum(s / 0.35, (1.0 - s) / 0.35), 0.0, 1.0)
        cam[:, 0] = cx0 + (away - cx0) * ramp
    cam[:, :2] += rng.normal(0.0, 0.7, size=(length, 2))  # a hand-held wobble
    return _Script(cam, shift, occluder_x)


def _sprites(scene: Scene, shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each object as (mask, colours) on the padded world of `shape`."""
    ph, pw = shape[:2]
    sprites = []
    for i in range(len(scene.objects)):
        m = np.zeros((ph, pw), bool)
        m[PAD : PAD + WORLD_H, PAD : PAD + WORLD_W] = scene.masks[i]
        colours = np.zeros((ph, pw, 3), np.uint8)
        colours[m] = scene.image[scene.masks[i]]
        sprites.append((m, colours))
    return sprites


def _compose(
    table: np.ndarray, sprites: list, target: int, shift: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The padded world of one frame and each object's visible layer: the target, when it has
    moved, is drawn over the others and hides what it covers.
    """
    ph, pw = table.shape[:2]
    world = table.copy()
    layers: list[np.ndarray] = []
    top = None  # the moving target, drawn over the others
    for i, (m, colours) in enumerate(sprites):
        if i == target and shift.any():
            move = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            m = cv2.warpAffine(m.astype(np.uint8), move, (pw, ph), flags=cv2.INTER_NEAREST)
            m = m > 0
            colours = cv2.warpAffine(colours, move, (pw, ph), flags=cv2.INTER_NEAREST)
            top = (m, colours)
        else:
            world[m] = colours[m]
        layers.append(m)
    if top is not None:
        m, colours = top
        world[m] = colours[m]
        layers = [x if i == target else x & ~m for i, x in enumerate(layers)]
    return world, layers


def _occlude(
    world: np.ndarray, layers: list[np.ndarray], x: float, ty: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Paint the occluder bar centred at x (in place, with its own noise); the layers it
    hides.
    """
    ph, pw = world.shape[:2]
    occ_h = 0.9 * WORLD_H
    bar = np.zeros((ph, pw), bool)
    x0 = int(round(x - OCCLUDER_W / 2))
    y0 = int(round(ty - occ_h / 2))
    bar[max(y0, 0) : max(y0 + int(occ_h), 0), max(x0, 0) : max(x0 + OCCLUDER_W, 0)] = True
    world[bar] = OCCLUDER_RGB
    world[bar] = np.clip(
        world[bar].astype(np.float32) + rng.normal(0, 6, (int(bar.sum()), 3)), 0, 255
    ).astype(np.uint8)
    return [m & ~bar for m in layers]


def _through_camera(
    world: np.ndarray, layers: list[np.ndarray], cam: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The frame the camera sees (with fresh sensor noise) and each layer's visible mask."""
    a = _camera(*cam)
    img = cv2.warpAffine(world, a, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
    noise = rng.normal(0.0, 2.0, size=img.shape)
    frame = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    masks = np.stack(
        [
            cv2.warpAffine(m.astype(np.uint8), a, (FRAME_W, FRAME_H), flags=cv2.INTER_NEAREST) > 0
            for m in layers
        ]
    )
    return frame, masks


def generate_sequence(kind: str, seed: int, length: int = 30) -> Sequence:
    """One sequence of `kind` (KINDS); deterministic in (kind, seed)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    rng = np.random.default_rng([int(seed), KINDS.index(kind), 19])
    scene = generate_scene(int(seed), WORLD_H, WORLD_W, n_objects=(6, 10))
    n = len(scene.objects)
    table = _table(scene, rng)
    # the target: a random object, not one of the two smallest (a few pixels say little)
    order = np.argsort([o.area for o in scene.objects])
    target = int(rng.choice(order[min(2, n - 1) :]))
    tx, ty = (c + PAD for c in scene.objects[target].centroid)
    script = _script(kind, tx, ty, length, rng)
    sprites = _sprites(scene, table.shape)
    frames = np.zeros((length, FRAME_H, FRAME_W, 3), np.uint8)
    masks = np.zeros((length, n, FRAME_H, FRAME_W), bool)
    for t in range(length):
        world, layers = _compose(table, sprites, target, script.shift[t])
        if script.occluder_x is not None:
            layers = _occlude(world, layers, script.occluder_x[t], ty, rng)
        frames[t], masks[t] = _through_camera(world, layers, script.cam[t], rng)
    return Sequence(kind, int(seed), frames, masks, scene.objects, target)


def sequence_seeds(split: str, count: int) -> list[int]:
    """Scene seeds of the sequences: the world's test split (never trained on) or val."""
    base = {"val": 21_000_000, "test": 31_000_000}[split]
    return [base + i for i in range(count)]
