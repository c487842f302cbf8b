"""The standard messages published beside Segmentation for one answer.

Why: RViz, grasp planners and detector tool chains already read visualization_msgs/Marker and
vision_msgs/Detection2DArray / Detection3DArray; publishing them saves every user a converter.
Everything here is per result and called from the node's one result-publishing place.
* fill_3d: Segmentation's appended 3-D fields (depth stamp, points in target_frame, extent,
  the reason when the 3-D part is missing).
* markers: the box (CUBE), centroid and grasp point (SPHEREs) in the output frame; one
  DELETEALL when an answer has no 3-D, so RViz never shows a stale object.
* detection_2d_array / detection_3d_array: only where vision_msgs is importable (apt installs;
  not the wheel-only install). The hypothesis' class id is the expression, its score the
  selection score, the detection id the command id. A failed answer gives an empty array.
"""

from __future__ import annotations

from typing import Any

from geometry_msgs.msg import PointStamped
from visualization_msgs.msg import Marker

from .messages import copy_header
from .spatial import Located, Object3D

MARKER_NS = "iterprime"
MARKER_BOX, MARKER_CENTROID, MARKER_GRASP = 0, 1, 2
MIN_MARKER_M = 0.005  # a flat box (a plane seen face-on) still shows
POINT_MARKER_M = 0.02


def vision_msgs_unavailable() -> str | None:
    """Why the vision_msgs outputs are not published here (None where they are)."""
    try:
        import vision_msgs.msg  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        return f"vision_msgs is not importable ({exc}); apt: ros-<distro>-vision-msgs"
    return None


def _point(header: Any, frame_id: str, xyz: tuple[float, float, float]) -> PointStamped:
    out = PointStamped()
    out.header = copy_header(header)
    out.header.frame_id = frame_id
    out.point.x, out.point.y, out.point.z = (float(v) for v in xyz)
    return out


def fill_3d(msg: Any, located: Located) -> None:
    """Set Segmentation's 3-D fields from `located` (a successful answer's; others stay zero)."""
    if located.depth_stamp is not None:
        msg.depth_stamp.sec = int(located.depth_stamp.sec)
        msg.depth_stamp.nanosec = int(located.depth_stamp.nanosec)
    msg.error_3d = located.error
    obj = located.output
    msg.has_target_point = obj is not None
    if obj is None:
        return
    msg.centroid_target = _point(msg.header, obj.frame_id, obj.centroid)
    msg.grasp_point_target = _point(msg.header, obj.frame_id, obj.grasp_point)
    msg.extent_3d.x, msg.extent_3d.y, msg.extent_3d.z = (float(v) for v in obj.box_size)


def _marker(header: Any, obj: Object3D, marker_id: int, kind: int) -> Marker:
    m = Marker()
    m.header = copy_header(header)
    m.header.frame_id = obj.frame_id
    m.ns, m.id, m.type, m.action = MARKER_NS, marker_id, kind, Marker.ADD
    m.pose.orientation.w = 1.0
    m.frame_locked = False  # the object was there at the image's stamp
    return m


def markers(header: Any, located: Located) -> list[Marker]:
    """Box, centroid and grasp point of the answer's object, or one DELETEALL without 3-D."""
    obj = located.output
    if obj is None:
        clear = Marker()
        clear.header = copy_header(header)
        clear.ns, clear.action = MARKER_NS, Marker.DELETEALL
        return [clear]
    box = _marker(header, obj, MARKER_BOX, Marker.CUBE)
    box.pose.position.x, box.pose.position.y, box.pose.position.z = obj.box_centre
    box.scale.x, box.scale.y, box.scale.z = (max(MIN_MARKER_M, float(v)) for v in obj.box_size)
    box.color.r, box.color.g, box.color.b, box.color.a = 0.1, 0.8, 0.2, 0.4
    out = [box]
    for marker_id, xyz, rgb in (
        (MARKER_CENTROID, obj.centroid, (1.0, 0.1, 0.1)),
        (MARKER_GRASP, obj.grasp_point, (0.1, 0.3, 1.0)),
    ):
        dot = _marker(header, obj, marker_id, Marker.SPHERE)
        dot.pose.position.x, dot.pose.position.y, dot.pose.position.z = xyz
        dot.scale.x = dot.scale.y = dot.scale.z = POINT_MARKER_M
        dot.color.r, dot.color.g, dot.color.b = rgb
        dot.color.a = 1.0
        out.append(dot)
    return out


def _hypothesis(vm: Any, class_id: str, score: float) -> Any:
    """ObjectHypothesisWithPose for vision_msgs >= 3 (hypothesis.class_id) or older (id)."""
    h = vm.ObjectHypothesisWithPose()
    if hasattr(h, "hypothesis"):
        h.hypothesis.class_id, h.hypothesis.score = class_id, float(score)
    else:  # vision_msgs 2.x (Foxy)
        h.id, h.score = class_id, float(score)
    return h


def detection_2d_array(msg: Any) -> Any:
    """vision_msgs/Detection2DArray for a Segmentation (empty on failure); needs vision_msgs."""
    import vision_msgs.msg as vm  # type: ignore[import-not-found]

    out = vm.Detection2DArray()
    out.header = copy_header(msg.header)
    if not msg.success:
        return out
    d = vm.Detection2D()
    d.header = copy_header(msg.header)
    d.id = str(msg.command_id)
    d.results.append(_hypothesis(vm, msg.expression, msg.score))
    b = msg.bbox
    # edges at integer coordinates, as detectors publish: x_offset = center.x - size_x / 2
    cx, cy = b.x_offset + b.width / 2.0, b.y_offset + b.height / 2.0
    centre = d.bbox.center
    if hasattr(centre, "position"):  # vision_msgs >= 4: Pose2D{position: Point2D, theta}
        centre.position.x, centre.position.y = cx, cy
    else:
        centre.x, centre.y = cx, cy
    d.bbox.size_x, d.bbox.size_y = float(b.width), float(b.height)
    out.detections.append(d)
    return out


def detection_3d_array(msg: Any, located: Located) -> Any:
    """vision_msgs/Detection3DArray: the box in the output frame (empty without 3-D)."""
    import vision_msgs.msg as vm  # type: ignore[import-not-found]

    out = vm.Detection3DArray()
    out.header = copy_header(msg.header)
    obj = located.output
    if not msg.success or obj is None:
        return out
    out.header.frame_id = obj.frame_id
    d = vm.Detection3D()
    d.header = copy_header(out.header)
    d.id = str(msg.command_id)
    d.results.append(_hypothesis(vm, msg.expression, msg.score))
    d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z = obj.box_centre
    d.bbox.center.orientation.w = 1.0
    d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = (float(v) for v in obj.box_size)
    out.detections.append(d)
    return out


class StandardOutputs:
    """The publishers of this module's messages on one node, and the one call per answer.

    ~/marker always; ~/detections_2d and ~/detections_3d only where vision_msgs is importable
    (`missing` then says why they are not there, for the start-up log).
    """

    def __init__(self, node: Any, qos: Any) -> None:
        self._node = node
        self.marker_pub = node.create_publisher(Marker, "~/marker", qos)
        self.missing = vision_msgs_unavailable()
        self.detections_2d_pub = self.detections_3d_pub = None
        if self.missing is None:
            import vision_msgs.msg as vm  # type: ignore[import-not-found]

            self.detections_2d_pub = node.create_publisher(
                vm.Detection2DArray, "~/detections_2d", qos
            )
            self.detections_3d_pub = node.create_publisher(
                vm.Detection3DArray, "~/detections_3d", qos
            )

    def publish(self, result: Any, located: Located | None = None) -> None:
        """Markers and detections for one Segmentation (`located`: its 3-D part, if any)."""
        located = located if located is not None else Located(error=result.error_3d or "no 3-D")
        for marker in markers(result.header, located):
            self.marker_pub.publish(marker)
        if self.detections_2d_pub is not None:
            self.detections_2d_pub.publish(detection_2d_array(result))
        if self.detections_3d_pub is not None:
            self.detections_3d_pub.publish(detection_3d_array(result, located))

    def destroy(self) -> None:
        for pub in (self.marker_pub, self.detections_2d_pub, self.detections_3d_pub):
            if pub is not None:
                self._node.destroy_publisher(pub)
