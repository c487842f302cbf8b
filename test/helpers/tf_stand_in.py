"""StandInTransformBuffer: a STAND-IN for tf2_ros.Buffer where tf2_ros cannot be installed.

tf2_ros ships only with apt ROS installs; this environment is wheel-only. The stand-in answers
lookup_transform(target, source, time, timeout) like tf2_ros.Buffer does for transforms it was
given, and raises otherwise. It records every lookup so tests can check the stamp asked for.
Tests that run the real tf2_ros are in test_ros_transforms.py (skipped here, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geometry_msgs.msg import TransformStamped


class StandInLookupError(Exception):
    """What the stand-in raises for an unknown frame pair (tf2_ros raises LookupException)."""


def transform_msg(
    target: str, source: str, translation: tuple[float, float, float], xyzw: tuple[float, ...]
) -> TransformStamped:
    """A TransformStamped that maps points in `source` into `target` (tf2's parent=target)."""
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = target, source
    tr, q = t.transform.translation, t.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in translation)
    q.x, q.y, q.z, q.w = (float(v) for v in xyzw)
    return t


@dataclass
class StandInTransformBuffer:
    """STAND-IN for tf2_ros.Buffer: fixed transforms, valid at every stamp, recorded lookups."""

    transforms: dict[tuple[str, str], TransformStamped] = field(default_factory=dict)
    lookups: list[tuple[str, str, Any, Any]] = field(default_factory=list)

    def add(self, msg: TransformStamped) -> None:
        self.transforms[(msg.header.frame_id, msg.child_frame_id)] = msg

    def lookup_transform(self, target: str, source: str, time: Any, timeout: Any = None) -> Any:
        self.lookups.append((target, source, time, timeout))
        try:
            found = self.transforms[(target, source)]
        except KeyError:
            raise StandInLookupError(
                f'"{target}" passed to lookupTransform argument target_frame does not exist'
            ) from None
        out = TransformStamped()
        out.header.frame_id, out.child_frame_id = target, source
        out.header.stamp = time.to_msg()
        out.transform = found.transform
        return out
