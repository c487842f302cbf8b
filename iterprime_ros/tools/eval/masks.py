"""Ground-truth masks from the annotation formats, without pycocotools.

Why not just cv2.fillPoly: the published numbers were computed on masks rasterised by each
dataset's own tool, and a one-pixel border changes the IoU of small objects by several points.
So each format is decoded with its tool's convention:

* COCO polygons (RefCOCO/+/g): pycocotools keeps a pixel when its centre (c + 0.5, r + 0.5) is
  inside the polygon (even-odd rule, half-open on the boundary; it finds the crossings on a
  1/5-pixel grid, so pixels whose centre lies within 0.2 px of an edge may differ), so a 10 x 10
  square with integer corners covers exactly 100 pixels, not cv2's 121. ``coco_polygons_to_mask``
  does the same with a
  vectorised scan line; the polygons of one object are united.
* COCO RLE, uncompressed (``counts`` a list) and compressed (``counts`` a string, the COCO
  LEB128-style code): column-major runs starting with zeros.
* PhraseCut polygons: the PhraseCut API truncates the points to int and fills each polygon *with
  its outline* using PIL's ``ImageDraw.polygon(outline=1, fill=1)``; ``phrasecut_polygons_to_mask``
  calls the same PIL routine (cv2.fillPoly differs from it on ~3 % of a small polygon's pixels).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw


def coco_polygons_to_mask(
    polygons: Sequence[Sequence[float]], height: int, width: int
) -> np.ndarray:
    """COCO polygons ([x0, y0, x1, y1, ...] each) -> H x W bool, pixel centres inside (pycocotools
    rule).
    """
    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3:
            continue
        mask |= _scanline_fill(pts, height, width)
    return mask


def _scanline_fill(pts: np.ndarray, height: int, width: int) -> np.ndarray:
    """Even-odd fill of one closed polygon, sampling each pixel at its centre.

    For row r the scan line is y = r + 0.5. An edge (x0, y0)-(x1, y1) crosses it when
    min(y) <= y < max(y) (half-open, so a vertex on the line counts once). Each crossing at x
    toggles the pixels from column ceil(x - 0.5) on; a cumulative sum mod 2 gives the fill.
    """
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    keep = y0 != y1
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    toggles = np.zeros((height, width + 1), dtype=np.int32)
    if len(x0) == 0:
        return np.zeros((height, width), dtype=bool)
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5  # H x 1
    lo, hi = np.minimum(y0, y1)[None], np.maximum(y0, y1)[None]  # 1 x E
    crosses = (ys >= lo) & (ys < hi)  # H x E
    rows, edges = np.nonzero(crosses)
    t = (ys[rows, 0] - y0[edges]) / (y1[edges] - y0[edges])
    xs = x0[edges] + t * (x1[edges] - x0[edges])
    cols = np.clip(np.ceil(xs - 0.5), 0, width).astype(np.int64)
    np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2).astype(bool)


def rle_counts_from_string(counts: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths.

    Each count is written in 5-bit groups, least significant first, as chr(48 + group) with bit
    0x20 meaning "more groups follow" and bit 0x10 of the last group the sign; from the fourth
    count on, the value stored is the difference to the count two places before.
    """
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        value, shift, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("truncated compressed RLE string")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {counts[p]!r} in compressed RLE")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE ({"size": [h, w], "counts": list | str}) -> H x W bool (column-major runs, zeros
    first).
    """
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = (
        rle_counts_from_string(counts)
        if isinstance(counts, (str, bytes))
        else [int(c) for c in counts]
    )
    if any(r < 0 for r in runs):
        raise ValueError("negative run length in RLE")
    total = height * width
    if sum(runs) != total:
        raise ValueError(f"RLE runs sum to {sum(runs)}, expected {height} x {width} = {total}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T.copy()


def coco_segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """An annotation's ``segmentation`` (polygon list, RLE dict, or a list of RLE dicts) -> H x W
    bool.
    """
    if isinstance(segmentation, dict):
        mask = rle_to_mask(segmentation)
    elif isinstance(segmentation, list) and segmentation and isinstance(segmentation[0], dict):
        mask = np.zeros((height, width), dtype=bool)
        for part in segmentation:
            mask |= rle_to_mask(part)
    elif isinstance(segmentation, list):
        return coco_polygons_to_mask(segmentation, height, width)
    else:
        raise ValueError(f"unknown segmentation format: {type(segmentation).__name__}")
    if mask.shape != (height, width):
        raise ValueError(f"RLE size {mask.shape} differs from the image size {(height, width)}")
    return mask


def phrasecut_polygons_to_mask(
    instances: Sequence[Sequence[Sequence[Sequence[float]]]], height: int, width: int
) -> np.ndarray:
    """PhraseCut ``Polygons`` (per instance, a list of polygons of [x, y] points) -> H x W bool
    union.

    PhraseCut API convention: points truncated to int, polygon filled together with its outline
    (polygons with fewer than two points are skipped, as there).
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygons in instances:
        for poly in polygons:
            if len(poly) < 2:
                continue
            draw.polygon([(int(x), int(y)) for x, y in poly], outline=1, fill=1)
    return np.asarray(canvas, dtype=np.uint8) > 0
