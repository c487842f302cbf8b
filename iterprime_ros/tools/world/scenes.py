"""Seeded tabletop-like scenes with exact instance masks.

A scene is a table top (a plain tone with a soft gradient and pixel noise) with 3-6
non-overlapping objects, each one of a few shapes, colours and two sizes. Every object is
rasterised by an inside-test at pixel centres, so its instance mask is exact: the object's
colour is painted on exactly the mask's pixels and the masks never overlap.

Objects are drawn so that scenes are worth describing: most objects repeat some attributes
of an earlier one (same shape in another colour, same colour and shape in another size,
exact duplicates), which is what forces a referring expression to use attributes, relations
or positions. Everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHAPES: tuple[str, ...] = ("ball", "box", "block", "mug", "cup", "bowl")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 35),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 30),
    "purple": (145, 60, 185),
    "white": (245, 245, 245),
}
SIZES: tuple[str, ...] = ("small", "big")
# Linear scale (pixels, at 128 x 128) of each size class; shapes are drawn relative to it.
SIZE_SCALE: dict[str, tuple[float, float]] = {"small": (18.0, 21.0), "big": (28.0, 33.0)}
TABLE_TONES: tuple[tuple[int, int, int], ...] = (
    (150, 110, 75),
    (120, 120, 126),
    (172, 140, 100),
    (105, 85, 70),
    (140, 135, 120),
)


@dataclass(frozen=True)
class WorldObject:
    """One object of a scene; geometry in pixels of the scene image (x right, y down)."""

    shape: str
    colour: str
    size: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the mask
    centroid: tuple[float, float]  # (cx, cy): mean of the mask's pixel centres
    area: int

    @property
    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclass
class Scene:
    """An image, its exact instance masks (N x H x W bool, disjoint) and the objects."""

    image: np.ndarray
    masks: np.ndarray
    objects: tuple[WorldObject, ...]
    seed: int
    table: tuple[int, int, int] = field(default=(0, 0, 0))

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def __len__(self) -> int:
        return len(self.objects)


def _shape_mask(shape: str, s: float, rng: np.random.Generator) -> np.ndarray:
    """The object's silhouette on its own tight canvas (bool, h x w), scale s pixels."""

    def grid(w: float, h: float) -> tuple[np.ndarray, np.ndarray, int, int]:
        W, H = int(np.ceil(w)) + 2, int(np.ceil(h)) + 2
        ys, xs = np.mgrid[0:H, 0:W]
        return xs + 0.5, ys + 0.5, W, H

    if shape == "ball":
        r = s / 2
        x, y, W, H = grid(2 * r, 2 * r)
        m = (x - W / 2) ** 2 + (y - H / 2) ** 2 <= r * r
    elif shape == "box":
        w = s * rng.uniform(0.85, 0.95)
        h = w * rng.uniform(0.92, 1.08)
        x, y, W, H = grid(w, h)
        m = (np.abs(x - W / 2) <= w / 2) & (np.abs(y - H / 2) <= h / 2)
    elif shape == "block":
        w, h = s * rng.uniform(1.25, 1.4), s * rng.uniform(0.55, 0.65)
        x, y, W, H = grid(w, h)
        m = (np.abs(x - W / 2) <= w / 2) & (np.abs(y - H / 2) <= h / 2)
    elif shape == "mug":
        bw, bh = s * 0.68, s * 0.85
        ro, ri = s * 0.24, s * 0.12
        x, y, W, H = grid(bw + ro + 1, bh)
        bx0 = 1.0
        body = (x >= bx0) & (x <= bx0 + bw) & (np.abs(y - H / 2) <= bh / 2)
        d2 = (x - (bx0 + bw)) ** 2 + (y - H / 2) ** 2
        handle = (d2 <= ro * ro) & (d2 >= ri * ri) & (x > bx0 + bw)
        m = body | handle
    elif shape == "cup":
        h, top, bot = s * 0.9, s * 0.85, s * 0.5
        x, y, W, H = grid(top, h)
        t = np.clip((y - (H - h) / 2) / h, 0.0, 1.0)  # 0 at the rim, 1 at the foot
        half = (top + (bot - top) * t) / 2
        m = (np.abs(x - W / 2) <= half) & (np.abs(y - H / 2) <= h / 2)
    elif shape == "bowl":
        r = s * 0.62
        x, y, W, H = grid(2 * r, r)
        cy = (H - r) / 2  # the rim (flat side) on top
        m = ((x - W / 2) ** 2 + (y - cy) ** 2 <= r * r) & (y >= cy)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    ys, xs = np.nonzero(m)
    return m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _sample_specs(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    """(shape, colour, size) of n objects; later ones often share attributes with earlier ones."""
    colours = list(COLOURS)
    specs: list[tuple[str, str, str]] = []
    for i in range(n):
        if i == 0 or rng.random() < 0.35:
            spec = (str(rng.choice(SHAPES)), str(rng.choice(colours)), str(rng.choice(SIZES)))
        else:
            base = list(specs[int(rng.integers(len(specs)))])
            u = rng.random()
            if u < 0.12:
                pass  # an exact duplicate: only position tells them apart
            else:
                k = int(rng.choice([1, 1, 2]))
                for attr in rng.choice(3, size=k, replace=False):
                    if attr == 0:
                        base[0] = str(rng.choice([s for s in SHAPES if s != base[0]]))
                    elif attr == 1:
                        base[1] = str(rng.choice([c for c in colours if c != base[1]]))
                    else:
                        base[2] = "big" if base[2] == "small" else "small"
            spec = (base[0], base[1], base[2])
        specs.append(spec)
    return specs


def generate_scene(
    seed: int,
    height: int = 128,
    width: int = 128,
    n_objects: tuple[int, int] = (3, 6),
    margin: int = 3,
) -> Scene:
    """A scene as a pure function of `seed` (numpy PCG64). n_objects: inclusive range."""
    rng = np.random.default_rng(int(seed))
    scale = min(height, width) / 128.0
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    specs = _sample_specs(rng, n)

    table = TABLE_TONES[int(rng.integers(len(TABLE_TONES)))]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = rng.uniform(-0.12, 0.12, size=2)
    shade = 1.0 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    image = np.asarray(table, np.float32)[None, None, :] * shade[..., None]

    occupied = np.zeros((height, width), bool)
    masks: list[np.ndarray] = []
    objects: list[WorldObject] = []
    for shape, colour, size in specs:
        lo, hi = SIZE_SCALE[size]
        sil = _shape_mask(shape, rng.uniform(lo, hi) * scale, rng)
        h, w = sil.shape
        if h + 2 * margin > height or w + 2 * margin > width:
            continue
        # Grown footprint: keeps `margin` pixels of table between any two objects.
        grown = np.zeros((h + 2 * margin, w + 2 * margin), bool)
        for dy in range(2 * margin + 1):
            for dx in range(2 * margin + 1):
                grown[dy : dy + h, dx : dx + w] |= sil
        placed = False
        for _ in range(200):
            y0 = int(rng.integers(1, height - h))
            x0 = int(rng.integers(1, width - w))
            gy0, gx0 = y0 - margin, x0 - margin
            ys0, xs0 = max(gy0, 0), max(gx0, 0)
            ys1, xs1 = min(gy0 + h + 2 * margin, height), min(gx0 + w + 2 * margin, width)
            g = grown[ys0 - gy0 : ys1 - gy0, xs0 - gx0 : xs1 - gx0]
            if not (occupied[ys0:ys1, xs0:xs1] & g).any():
                placed = True
                break
        if not placed:
            continue
        mask = np.zeros((height, width), bool)
        mask[y0 : y0 + h, x0 : x0 + w] = sil
        occupied |= mask
        rgb = np.asarray(COLOURS[colour], np.float32) * rng.uniform(0.9, 1.05)
        # A soft top-left light: up to 15 % darker towards the bottom right of the object.
        ly = (yy[y0 : y0 + h, x0 : x0 + w] - y0) / max(h, 1)
        lx = (xx[y0 : y0 + h, x0 : x0 + w] - x0) / max(w, 1)
        light = (1.0 - 0.15 * (0.5 * lx + 0.5 * ly))[..., None]
        patch = image[y0 : y0 + h, x0 : x0 + w]
        patch[sil] = (rgb[None, None, :] * light)[sil]
        ys, xs = np.nonzero(mask)
        objects.append(
            WorldObject(
                shape=shape,
                colour=colour,
                size=size,
                bbox=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                centroid=(float(xs.mean() + 0.5), float(ys.mean() + 0.5)),
                area=int(mask.sum()),
            )
        )
        masks.append(mask)

    image += rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    mask_arr = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    return Scene(image=image, masks=mask_arr, objects=tuple(objects), seed=int(seed), table=table)


def patch_coverage(masks: np.ndarray, grid: int) -> np.ndarray:
    """(..., H, W) bool masks -> (..., grid*grid) float32: the fraction of each patch of a
    grid x grid split that a mask covers (what a patch-based model can see of it).
    """
    *lead, h, w = masks.shape
    cover = masks.reshape(*lead, grid, h // grid, grid, w // grid).mean((-3, -1), dtype=np.float32)
    return cover.reshape(*lead, grid * grid)


def scene_seeds(split: str, count: int, offset: int = 0) -> list[int]:
    """Disjoint seed ranges per split, so training never sees a validation or test scene.

    train: 0 .. 9_999_999; val: 20_000_000 + i; test: 30_000_000 + i.
    """
    base = {"train": 0, "val": 20_000_000, "test": 30_000_000}[split]
    if split == "train" and offset + count > 10_000_000:
        raise ValueError("train seeds run out at 10,000,000")
    return [base + offset + i for i in range(count)]
