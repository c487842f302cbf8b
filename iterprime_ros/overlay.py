"""Debug overlay: heat map, chosen mask, centroid, grasp point, box and the expression on the
image.

Shared by ``iterprime segment --out`` and the node's ``~/debug_image``. Returns BGR (what
cv2.imwrite and a bgr8 ROS image want); takes the RGB image the pipeline saw.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

MASK_COLOUR_BGR = (60, 220, 60)
CENTROID_BGR = (255, 255, 255)
GRASP_BGR = (0, 0, 255)
ERROR_BGR = (40, 40, 230)
FILE_MIN_SIDE = (
    384  # replay's overlay PNGs of smaller frames are enlarged so a person can read them
)


def _ascii(text: str) -> str:
    """cv2.putText draws ASCII only; anything else becomes '?'."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _label(
    img: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple[int, int, int]
) -> None:
    thickness = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = origin
    cv2.rectangle(img, (x - 2, y - h - 4), (x + w + 2, y + base + 2), (0, 0, 0), thickness=-1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def render_overlay(
    image_rgb: np.ndarray,
    result: Any = None,
    *,
    heatmap: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    centroid: tuple[float, float] | None = None,
    grasp_point: tuple[int, int] | None = None,
    bbox: tuple[int, int, int, int] | None = None,
    text: str | None = None,
    heat_alpha: float = 0.45,
    mask_alpha: float = 0.35,
    min_side: int = 0,
) -> np.ndarray:
    """H x W x 3 uint8 RGB (+ a SegmentationResult and/or explicit parts) -> H x W x 3 uint8 BGR.

    Explicit keyword arguments override the result's fields. A failed result shows its error.
    min_side: for pictures a person looks at (PNG files), an image whose shorter side is below
    this is enlarged by a whole factor k first (kH x kW), so a small frame's label stays legible;
    the node's debug image keeps the camera's size (min_side 0).
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 RGB, got {image_rgb.shape}")
    if result is not None:
        heatmap = heatmap if heatmap is not None else getattr(result, "heatmap", None)
        mask = mask if mask is not None else getattr(result, "mask", None)
        centroid = centroid if centroid is not None else getattr(result, "centroid", None)
        grasp_point = (
            grasp_point if grasp_point is not None else getattr(result, "grasp_point", None)
        )
        bbox = bbox if bbox is not None else getattr(result, "bbox", None)
        if text is None:
            expr = getattr(result, "expression", "") or getattr(result, "command", "")
            text = (
                expr
                if getattr(result, "success", True)
                else f"{expr}: {getattr(result, 'error', '')}".strip(": ")
            )
    k = (
        -(-min_side // min(image_rgb.shape[:2]))
        if min_side and min(image_rgb.shape[:2]) < min_side
        else 1
    )
    if k > 1:
        image_rgb, heatmap, mask, centroid, grasp_point, bbox = _enlarge(
            k, image_rgb, heatmap, mask, centroid, grasp_point, bbox
        )
    out = cv2.cvtColor(np.ascontiguousarray(image_rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    h, w = out.shape[:2]
    out = _tinted(out, heatmap, heat_alpha, mask, mask_alpha)
    size = max(1, min(h, w) // 60)
    if bbox is not None:
        x, y, bw, bh = (int(v) for v in bbox)
        cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), MASK_COLOUR_BGR, 1)
    if centroid is not None:
        c = (int(round(centroid[0])), int(round(centroid[1])))
        cv2.circle(out, c, size + 2, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(out, c, size + 1, CENTROID_BGR, -1, cv2.LINE_AA)
    if grasp_point is not None:
        g = (int(grasp_point[0]), int(grasp_point[1]))
        cv2.drawMarker(
            out, g, GRASP_BGR, cv2.MARKER_CROSS, 4 * size + 6, max(1, size // 2 + 1), cv2.LINE_AA
        )
    if text:
        failed = result is not None and not getattr(result, "success", True)
        scale = max(0.35, min(1.0, w / 900.0))
        _label(
            out,
            _ascii(text)[:120],
            (6, int(24 * scale) + 6),
            scale,
            ERROR_BGR if failed else (255, 255, 255),
        )
    return out


def _tinted(
    out: np.ndarray,
    heatmap: np.ndarray | None,
    heat_alpha: float,
    mask: np.ndarray | None,
    mask_alpha: float,
) -> np.ndarray:
    """The BGR picture with the heat map blended in (jet colours) and the mask tinted and
    outlined; either is skipped when missing or of another size than the picture.
    """
    h, w = out.shape[:2]
    if heatmap is not None and heatmap.shape == (h, w):
        heat = cv2.applyColorMap(
            np.clip(heatmap * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET
        )
        out = cv2.addWeighted(out, 1.0 - heat_alpha, heat, heat_alpha, 0.0)
    if mask is not None and mask.shape == (h, w) and mask.any():
        m = mask.astype(bool)
        tint = np.empty_like(out)
        tint[:] = MASK_COLOUR_BGR
        out[m] = cv2.addWeighted(out, 1.0 - mask_alpha, tint, mask_alpha, 0.0)[m]
        contours, _ = cv2.findContours(
            m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, MASK_COLOUR_BGR, max(1, w // 320))
    return out


def _enlarge(
    k: int,
    image: np.ndarray,
    heatmap: np.ndarray | None,
    mask: np.ndarray | None,
    centroid: Any,
    grasp_point: Any,
    bbox: Any,
) -> tuple[Any, ...]:
    """Everything scaled by k: pixels repeated, points moved with their pixel centres."""

    def point(p: Any) -> Any:
        return None if p is None else tuple((float(v) + 0.5) * k - 0.5 for v in p)

    big = np.repeat(np.repeat(image, k, axis=0), k, axis=1)
    heat = (
        None
        if heatmap is None
        else cv2.resize(
            heatmap.astype(np.float32),
            (big.shape[1], big.shape[0]),
            interpolation=cv2.INTER_LINEAR,
        )
    )
    m = (
        None
        if mask is None
        else np.repeat(np.repeat(np.asarray(mask, bool), k, axis=0), k, axis=1)
    )
    g = point(grasp_point)
    box = None if bbox is None else tuple(int(v) * k for v in bbox)
    return (
        big,
        heat,
        m,
        point(centroid),
        None if g is None else tuple(int(round(v)) for v in g),
        box,
    )
