"""Robot-frame outputs of the real node over real DDS (docs/ros_interface.md).

The node runs in its own process through test/frame_node.py, which gives it
StandInTransformBuffer, a STAND-IN for tf2_ros.Buffer (not installable here) holding one known
transform camera -> base_link. The camera sends PNG CompressedImages on image/compressed, depth
(a constant plane at 0.8 m) and a CameraInfo with binning 2 and an ROI, all stamped alike. The
expected base_link point is computed here from the full-sensor K and SciPy's rotation, to 1 mm.
Random-weight tiny models: the mask is whatever they select; the test checks the geometry of
whatever mask comes back, never its quality.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import rclpy
import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID, before rclpy starts)
from camera_fixtures import textured_picture
from frame_node import CAMERA_FRAME, ROTATION_XYZW, TARGET_FRAME, TRANSLATION
from node_harness import Harness, NodeProcess, tiny_params
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_helpers import EVENT_TIMEOUT_S
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker

from iterprime_ros.ros.conversions import depth_to_fields
from iterprime_ros.tools.marker_view import render

pytestmark = pytest.mark.slow

H, W = 48, 64
Z = 0.8
BINNING, ROI_X, ROI_Y = 2, 8, 6
K_FULL = (120.0, 110.0, 71.0, 53.0)  # fx, fy, cx, cy of the full sensor
FRAME_NODE = Path(__file__).resolve().parent / "frame_node.py"
LOAD_TIMEOUT = 180.0


def picture() -> np.ndarray:
    return textured_picture(H, W, seed=5)


def compressed(sec: int, frame: str = CAMERA_FRAME) -> CompressedImage:
    msg = CompressedImage(format="png")
    msg.data = cv2.imencode(".png", picture()[:, :, ::-1])[1].tobytes()
    msg.header.stamp.sec, msg.header.frame_id = sec, frame
    return msg


def depth(sec: int, frame: str = CAMERA_FRAME) -> Image:
    msg = Image(**depth_to_fields(np.full((H, W), Z, np.float32), "32FC1"))
    msg.header.stamp.sec, msg.header.frame_id = sec, frame
    return msg


def camera_info(sec: int, frame: str = CAMERA_FRAME) -> CameraInfo:
    fx, fy, cx, cy = K_FULL
    info = CameraInfo(width=BINNING * W + 2 * ROI_X, height=BINNING * H + 2 * ROI_Y)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.binning_x = info.binning_y = BINNING
    info.roi.x_offset, info.roi.y_offset = ROI_X, ROI_Y
    info.roi.width, info.roi.height = BINNING * W, BINNING * H
    info.header.stamp.sec, info.header.frame_id = sec, frame
    return info


def in_base_link(u: float, v: float) -> np.ndarray:
    """A pixel of the binned ROI image at depth Z, in base_link: computed from the full sensor."""
    fx, fy, cx, cy = K_FULL
    full_u, full_v = u * BINNING + ROI_X, v * BINNING + ROI_Y
    camera = np.array([(full_u - cx) * Z / fx, (full_v - cy) * Z / fy, Z])
    return Rotation.from_quat(ROTATION_XYZW).apply(camera) + np.array(TRANSLATION)


class Camera:
    """Streams compressed image + depth + camera_info, stamped alike, at 10 Hz."""

    def __init__(self, harness: Harness, node: NodeProcess) -> None:
        n = harness.node
        qos = qos_profile_sensor_data
        self.image_pub = n.create_publisher(CompressedImage, node.topics["image/compressed"], qos)
        self.depth_pub = n.create_publisher(Image, node.topics["depth"], qos)
        self.info_pub = n.create_publisher(CameraInfo, node.topics["camera_info"], qos)
        self.frame: tuple[Any, ...] | None = None
        n.create_timer(0.1, self.publish)
        self.harness = harness

    def publish(self) -> None:
        if self.frame is None:
            return
        image, depth_msg, info = self.frame
        self.image_pub.publish(image)
        if depth_msg is not None:
            self.depth_pub.publish(depth_msg)
        self.info_pub.publish(info)

    def show(self, sec: int, depth_sec: int | None = None, frame: str = CAMERA_FRAME) -> None:
        depth_msg = depth(sec if depth_sec is None else depth_sec, frame)
        self.frame = (compressed(sec, frame), depth_msg, camera_info(sec, frame))
        self.publish()
        self.harness.spin(0.6)


@pytest.fixture(scope="module")
def node(tiny_model_dirs, tmp_path_factory):
    proc = NodeProcess(
        "h18frames",
        tiny_params(
            tiny_model_dirs,
            target_frame=TARGET_FRAME,
            transform_timeout_s=0.2,
            image_transport="compressed",
        ),
        tmp_path_factory.mktemp("frames"),
        topics=("image", "image/compressed", "command", "depth", "camera_info"),
        program=[str(FRAME_NODE)],
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def rig(node):
    rclpy.init()
    h = Harness(rclpy, node, "frames_test")
    markers: list[Marker] = []
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    h.node.create_subscription(Marker, f"{node.out}/marker", markers.append, reliable)
    camera = Camera(h, node)
    try:
        h.wait_ready()
        camera.show(1)
        warm = h.command("the cup", timeout=LOAD_TIMEOUT)
        assert warm.success, warm.error + "\n" + node.log
        yield h, camera, markers
    finally:
        h.close()
        rclpy.shutdown()


def _mask(res: Any) -> np.ndarray:
    data = np.frombuffer(bytes(res.mask.data), np.uint8).reshape(res.mask.height, res.mask.width)
    return data == 255


def test_command_answered_with_the_point_in_target_frame(rig, node, tmp_path):
    h, camera, markers = rig
    camera.show(100)
    res = h.command("the red cup")
    assert res.success, res.error
    assert (res.mask.width, res.mask.height) == (W, H), "the PNG was decoded at its size"
    assert res.has_target_point and res.error_3d == "", res.error_3d
    assert res.centroid_target.header.frame_id == TARGET_FRAME
    assert res.centroid_target.header.stamp.sec == 100 and res.depth_stamp.sec == 100
    v, u = np.nonzero(_mask(res))
    expected = in_base_link(u.mean(), v.mean())
    got = np.array(
        [res.centroid_target.point.x, res.centroid_target.point.y, res.centroid_target.point.z]
    )
    assert np.abs(got - expected).max() < 1e-3, (got, expected)
    grasp = in_base_link(res.grasp_point_px.x, res.grasp_point_px.y)
    p = res.grasp_point_target.point
    assert np.abs(np.array([p.x, p.y, p.z]) - grasp).max() < 1e-3
    assert res.has_centroid_3d and res.centroid_3d.z == pytest.approx(Z), "camera frame kept"
    assert max(res.extent_3d.x, res.extent_3d.y, res.extent_3d.z) > 0
    print(
        f"\ncommand 'the red cup' -> centroid in {TARGET_FRAME}: {got.round(4).tolist()} m "
        f"(expected {expected.round(4).tolist()}), extent "
        f"({res.extent_3d.x:.3f}, {res.extent_3d.y:.3f}, {res.extent_3d.z:.3f}) m"
    )

    def mine() -> list[Marker]:
        return [m for m in markers if m.header.stamp.sec == 100 and m.action == Marker.ADD]

    assert h.until(lambda: len(mine()) >= 3, 5.0), "no markers for the answer"
    box, centroid, grasp_marker = sorted(mine()[-3:], key=lambda m: m.id)
    assert box.type == Marker.CUBE and box.header.frame_id == TARGET_FRAME
    assert (centroid.pose.position.x, centroid.pose.position.y, centroid.pose.position.z) == (
        pytest.approx(got[0]),
        pytest.approx(got[1]),
        pytest.approx(got[2]),
    )
    picture_path = tmp_path / "markers_over_dds.png"
    drawn = render([box, centroid, grasp_marker])
    cv2.imwrite(str(picture_path), drawn)
    top = drawn[:480, :480].astype(int)
    assert ((top[:, :, 1] > top[:, :, 0] + 40) & (top[:, :, 1] > top[:, :, 2] + 40)).any()


def test_missing_transform_fails_only_the_3d_part(rig, node):
    h, camera, markers = rig
    camera.show(200, frame="unknown_camera")
    before = len(markers)
    res = h.command("the red cup again")
    assert res.success and res.mask.width == W, "the 2-D answer stands"
    assert not res.has_target_point
    assert "no transform 'unknown_camera' -> 'base_link'" in res.error_3d
    assert res.has_centroid_3d, "the camera-frame centroid is still given"
    assert h.until(
        lambda: any(m.action == Marker.DELETEALL for m in markers[before:]), EVENT_TIMEOUT_S
    ), "no DELETEALL for an answer without target-frame 3-D"


def test_depth_too_far_in_time_is_not_used(rig, node):
    h, camera, _ = rig
    camera.show(300, depth_sec=299)
    res = h.command("the red cup once more")
    assert res.success and not res.has_target_point and not res.has_centroid_3d
    assert "no depth within 0.1 s of the image stamp" in res.error_3d, res.error_3d


@pytest.mark.skipif(
    "tf2_ros" in sys.modules or __import__("importlib").util.find_spec("tf2_ros") is not None,
    reason="tf2_ros is installed: a set target_frame works here",
)
def test_target_frame_without_tf2_stops_at_configure(rig, tiny_model_dirs, tmp_path):
    """A plain node (no embedder's buffer) where tf2_ros is missing: configure fails, saying why,
    and every command is answered with that reason.
    """
    proc = NodeProcess(
        "h18notf", tiny_params(tiny_model_dirs, target_frame=TARGET_FRAME), tmp_path
    )
    try:
        h = Harness(rclpy, proc, "notf_test")  # rclpy is up (rig)
        try:
            h.wait_ready()
            res = h.command("the cup", timeout=60.0)
            assert not res.success
            assert "target_frame 'base_link' is set but tf2_ros is not importable" in res.error
        finally:
            h.close()
    finally:
        log = proc.stop()
    assert "configure failed: target_frame 'base_link' is set but tf2_ros" in log, log[-3000:]
