"""Camera-frame points into the planner's frame (target_frame) at the image's stamp.

Why: a grasp planner works in base_link, not in the camera's optical frame, and the object was
where the image saw it, so the transform is looked up at the image's stamp (not "latest").
On an apt ROS install tf2_ros provides the buffer (fed by /tf and /tf_static) and
tf2_geometry_msgs applies it to points. The wheel-only install has neither: there a set
target_frame stops the node at configure (tf2_unavailable says why), and the arithmetic below
(quaternion + translation) is what tests drive through a stand-in buffer. A missing transform
fails only the 3-D part of an answer (TransformUnavailable's text becomes error_3d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class TransformSetupError(RuntimeError):
    """target_frame is set but no transform buffer can be made (tf2_ros missing)."""


class TransformUnavailable(RuntimeError):
    """No transform between the frames at that stamp (within the timeout)."""


@dataclass(frozen=True)
class RigidTransform:
    """p_target = R(q) p_source + t, q = (x, y, z, w) as in geometry_msgs/Transform."""

    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]

    @classmethod
    def from_msg(cls, transform_stamped: Any) -> RigidTransform:
        t, q = transform_stamped.transform.translation, transform_stamped.transform.rotation
        return cls(
            (float(t.x), float(t.y), float(t.z)), (float(q.x), float(q.y), float(q.z), float(q.w))
        )

    def apply(self, points: np.ndarray) -> np.ndarray:
        """N x 3 points -> N x 3 (the quaternion is normalised; a zero one is an error)."""
        q = np.asarray(self.rotation, dtype=np.float64)
        norm = float(np.linalg.norm(q))
        if not norm > 1e-9:
            raise TransformUnavailable(
                f"transform has an invalid rotation quaternion {self.rotation}"
            )
        x, y, z, w = q / norm
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return pts @ rot.T + np.asarray(self.translation, dtype=np.float64)


def tf2_unavailable() -> str | None:
    """Why tf2 cannot be used here (None when tf2_ros is importable)."""
    try:
        import tf2_ros  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        return (
            f"tf2_ros is not importable ({exc}); it comes with every apt ROS 2 install "
            "(ros-<distro>-tf2-ros): install it, or leave target_frame empty to answer in the "
            "camera frame"
        )
    return None


def make_tf2_buffer(node: Any) -> tuple[Any, Any]:
    """(tf2_ros.Buffer, TransformListener) subscribed through `node`; RuntimeError saying why."""
    reason = tf2_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    import tf2_ros  # type: ignore[import-not-found]

    buffer = tf2_ros.Buffer()
    return buffer, tf2_ros.TransformListener(buffer, node)


def _apply_tf2(transform_stamped: Any, points: np.ndarray) -> np.ndarray | None:
    """Points through tf2_geometry_msgs.do_transform_point, or None where it is not importable."""
    try:
        from geometry_msgs.msg import PointStamped
        from tf2_geometry_msgs import do_transform_point  # type: ignore[import-not-found]
    except ImportError:
        return None
    out = []
    for x, y, z in np.asarray(points, dtype=np.float64).reshape(-1, 3):
        p = PointStamped()
        p.point.x, p.point.y, p.point.z = float(x), float(y), float(z)
        q = do_transform_point(p, transform_stamped).point
        out.append((q.x, q.y, q.z))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


@dataclass(frozen=True)
class FrameTransformer:
    """Looks up source -> target at a stamp in a tf2-style buffer and applies it to points.

    buffer: anything with tf2_ros.Buffer.lookup_transform(target, source, time, timeout) (a
    tf2_ros.Buffer in the node; a stand-in in tests).
    """

    buffer: Any
    target_frame: str
    timeout_s: float

    def lookup(self, source_frame: str, stamp: Any) -> Any:
        """The TransformStamped source -> target at `stamp` (builtin_interfaces/Time)."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        if not source_frame:
            raise TransformUnavailable(
                f"the image has no frame_id: cannot transform into {self.target_frame!r}"
            )
        try:
            return self.buffer.lookup_transform(
                self.target_frame,
                source_frame,
                Time(seconds=int(stamp.sec), nanoseconds=int(stamp.nanosec)),
                timeout=Duration(nanoseconds=int(self.timeout_s * 1e9)),
            )
        except Exception as exc:  # noqa: BLE001 - tf2's Lookup/Connectivity/Extrapolation errors
            first = str(exc).strip().split("\n")[0] or type(exc).__name__
            raise TransformUnavailable(
                f"no transform {source_frame!r} -> {self.target_frame!r} at "
                f"{int(stamp.sec)}.{int(stamp.nanosec):09d} within {self.timeout_s:g} s: {first}"
            ) from None

    def points(self, transform_stamped: Any, points: np.ndarray) -> np.ndarray:
        """N x 3 source-frame points -> target frame (tf2_geometry_msgs when importable)."""
        out = _apply_tf2(transform_stamped, points)
        if out is None:
            out = RigidTransform.from_msg(transform_stamped).apply(points)
        return out


def box_corners(centre: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The 8 corners (8 x 3) of an axis-aligned box."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    return np.asarray(centre, float) + 0.5 * signs * np.asarray(size, float)


def enclosing_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, size) of the axis-aligned box around N x 3 points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (lo + hi) / 2, hi - lo


def frame_transformer(
    node: Any, target_frame: str, timeout_s: float, buffer: Any = None
) -> tuple[FrameTransformer | None, Any]:
    """(transformer or None when target_frame is empty, the TransformListener to keep alive).

    `buffer`: a tf2-style buffer given by the embedding code (tests pass a stand-in); otherwise a
    tf2_ros Buffer + TransformListener on `node`. RuntimeError (saying why) where tf2_ros is
    missing and no buffer was given: TransformSetupError says why (the node must not start
    answering in the wrong frame).
    """
    if not target_frame:
        return None, None
    listener = None
    if buffer is None:
        try:
            buffer, listener = make_tf2_buffer(node)
        except RuntimeError as exc:
            raise TransformSetupError(f"target_frame {target_frame!r} is set but {exc}") from None
    return FrameTransformer(buffer, target_frame, timeout_s), listener
