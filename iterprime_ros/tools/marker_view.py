"""An RViz-like picture of visualization_msgs/Marker messages, without RViz (OpenCV only).

Why: the node's markers must be checked by eye and by tests on machines with no display and no
RViz. Two orthographic views of the marker frame: top (x right, y up) and side (x right, z up),
a 10 cm grid, the frame's axes, CUBEs as filled boxes and SPHEREs as discs.

    python -m iterprime_ros.tools.marker_view   (writes docs/marker_check.png: a worked example)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

CUBE, SPHERE = 1, 2


def _colour(m: Any) -> tuple[int, int, int]:
    return int(m.color.b * 255), int(m.color.g * 255), int(m.color.r * 255)


def _view(
    markers: Sequence[Any],
    axes: tuple[int, int],
    centre: np.ndarray,
    px_per_m: float,
    size: int,
    title: str,
) -> np.ndarray:
    img = np.full((size, size, 3), 255, np.uint8)

    def to_px(a: float, b: float) -> tuple[int, int]:
        return (
            int(round(size / 2 + (a - centre[axes[0]]) * px_per_m)),
            int(round(size / 2 - (b - centre[axes[1]]) * px_per_m)),
        )

    step = 0.1
    lo = centre[list(axes)] - size / 2 / px_per_m
    for k, axis_lo in enumerate(lo):
        start = np.floor(axis_lo / step) * step
        for g in np.arange(start, axis_lo + size / px_per_m + step, step):
            a, b = (g, centre[axes[1]]) if k == 0 else (centre[axes[0]], g)
            p = to_px(a, b)
            if k == 0:
                cv2.line(img, (p[0], 0), (p[0], size), (225, 225, 225), 1)
            else:
                cv2.line(img, (0, p[1]), (size, p[1]), (225, 225, 225), 1)
    origin = to_px(0.0, 0.0)
    cv2.arrowedLine(img, origin, to_px(0.1, 0.0), (0, 0, 255), 2, tipLength=0.2)
    cv2.arrowedLine(img, origin, to_px(0.0, 0.1), (0, 160, 0), 2, tipLength=0.2)
    for m in markers:
        pos = (m.pose.position.x, m.pose.position.y, m.pose.position.z)
        scale = (m.scale.x, m.scale.y, m.scale.z)
        a, b = pos[axes[0]], pos[axes[1]]
        if m.type == CUBE:
            ha, hb = scale[axes[0]] / 2, scale[axes[1]] / 2
            p0, p1 = to_px(a - ha, b + hb), to_px(a + ha, b - hb)
            layer = img.copy()
            cv2.rectangle(layer, p0, p1, _colour(m), -1)
            alpha = float(m.color.a) or 1.0
            img = cv2.addWeighted(layer, alpha, img, 1 - alpha, 0)
            cv2.rectangle(img, p0, p1, _colour(m), 1)
        elif m.type == SPHERE:
            radius = max(2, int(round(scale[axes[0]] / 4 * px_per_m)))  # half size: both show
            cv2.circle(img, to_px(a, b), radius, _colour(m), -1)
    names = "xyz"
    label = f"{title}: {names[axes[0]]} right, {names[axes[1]]} up, grid 10 cm"
    cv2.putText(img, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def render(markers: Sequence[Any], px_per_m: float = 1000.0, size: int = 480) -> np.ndarray:
    """Top and side views side by side (BGR), centred on the markers' mean position."""
    shown = [m for m in markers if m.type in (CUBE, SPHERE) and m.action == 0]
    if shown:
        centre = np.mean(
            [[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in shown], 0
        )
    else:
        centre = np.zeros(3)
    frame = shown[0].header.frame_id if shown else "?"
    top = _view(shown, (0, 1), centre, px_per_m, size, f"top ({frame})")
    side = _view(shown, (0, 2), centre, px_per_m, size, f"side ({frame})")
    views = np.hstack([top, np.full((size, 4, 3), 80, np.uint8), side])
    legend = np.full((28, views.shape[1], 3), 255, np.uint8)
    text = "box (CUBE): extent   red: centroid   blue: grasp point   arrows: the frame's origin"
    cv2.putText(legend, text, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([views, legend])


def worked_example() -> list[Any]:
    """Markers for an L-shaped block 5 cm high on a table, seen by a camera 0.6 m above it
    looking down, placed in base_link through a
    stand-in transform (the same path as the node's; tf2_ros is used where it is installed).
    """
    from types import SimpleNamespace

    from geometry_msgs.msg import TransformStamped
    from scipy.spatial.transform import Rotation

    from ..ros.conversions import depth_to_fields
    from ..ros.outputs import markers
    from ..ros.spatial import locate
    from ..ros.transforms import FrameTransformer

    class _StandInBuffer:
        """A STAND-IN for tf2_ros.Buffer with one fixed transform (camera -> base_link)."""

        def lookup_transform(self, target: str, source: str, time: Any, timeout: Any) -> Any:
            t = TransformStamped()
            t.header.frame_id, t.child_frame_id = target, source
            tr = t.transform.translation
            tr.x, tr.y, tr.z = 0.45, 0.1, 0.6
            q = Rotation.from_euler("xyz", (-180.0, 0.0, -90.0), degrees=True).as_quat()
            r = t.transform.rotation
            r.x, r.y, r.z, r.w = (float(v) for v in q)
            return t

    h, w, f = 240, 320, 300.0
    depth = np.full((h, w), 0.6, np.float32)  # the table, 0.6 m below a camera looking down
    mask = np.zeros((h, w), bool)  # an L-shaped block: centroid and grasp point differ
    mask[90:150, 100:160] = True
    mask[90:115, 160:230] = True
    depth[mask] = 0.55  # 5 cm high
    stamp = SimpleNamespace(sec=1, nanosec=0)
    header = SimpleNamespace(stamp=stamp, frame_id="camera_optical")
    info = SimpleNamespace(k=[f, 0, 159.5, 0, f, 119.5, 0, 0, 1], width=w, height=h)
    depth_msg = SimpleNamespace(header=header, **depth_to_fields(depth, "32FC1"))
    tf = FrameTransformer(_StandInBuffer(), "base_link", 0.1)
    from ..core.geometry import grasp_point

    grasp = tuple(float(v) for v in grasp_point(mask))
    located = locate(mask, grasp, header, depth_msg, info, 3, transformer=tf)
    from std_msgs.msg import Header

    out_header = Header()
    out_header.stamp.sec = 1
    return markers(out_header, located)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("docs/marker_check.png")
    ms = worked_example()
    cv2.imwrite(str(out), render(ms))
    for m in ms:
        p, s = m.pose.position, m.scale
        print(
            f"marker {m.id} type {m.type} in {m.header.frame_id}: "
            f"({p.x:.3f}, {p.y:.3f}, {p.z:.3f}) size ({s.x:.3f}, {s.y:.3f}, {s.z:.3f})"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
