"""The iterprime_segmenter node in its own process, over real DDS, with tiny random-weight models.

Random weights: the models know nothing, so which mask comes back is arbitrary. The tests check
the plumbing around it -- one result per command with the right header and fields, the mask and
centroid topics, the 3-D centroid against the documented rule applied to the returned mask, the
service, queue overflow, stale images -- never segmentation quality. The node is started once for
the module (model loading dominates its cost).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID, before rclpy starts)
from camera_fixtures import expected_centroid_3d, textured_picture
from node_harness import Spinning
from ros_helpers import EVENT_TIMEOUT_S

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from iterprime_ros.msg import Segmentation  # noqa: E402
from iterprime_ros.ros.conversions import depth_to_fields, rgb_to_fields  # noqa: E402
from iterprime_ros.srv import Segment  # noqa: E402

pytestmark = pytest.mark.slow

H, W = 48, 64
FX, FY, CX, CY = 60.0, 55.0, 31.5, 23.5
FRAME = "camera_color_optical_frame"
ERODE = 3  # depth_erosion_px (the config default)
MAX_AGE = 1.5  # max_image_age_s for this module
QUEUE = 2  # queue_size for this module
TOPICS = {
    "image": "/cam/image",
    "command": "/voice/text",
    "depth": "/cam/depth",
    "camera_info": "/cam/info",
}
OUT = "/iterprime_segmenter"
LOAD_TIMEOUT = (
    180.0  # first command: process start, imports, model load on a loaded 2-core machine
)
CMD_TIMEOUT = 90.0


def _picture() -> np.ndarray:
    return textured_picture(H, W, seed=3)


def _stamped(fields: dict, sec: int, cls: type = Image) -> Any:
    msg = cls(**fields)
    msg.header.stamp.sec, msg.header.frame_id = sec, FRAME
    return msg


def _camera_info() -> CameraInfo:
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    info.header.frame_id = FRAME
    return info


def mask_of(msg: Image) -> np.ndarray:
    assert msg.encoding == "mono8" and msg.step == msg.width
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width)
    assert set(np.unique(data)) <= {0, 255}
    return data == 255


class Harness(Spinning):
    """The test's side: publishes a camera stream (image, optional depth, camera info) at 10 Hz and
    collects everything the node publishes.
    """

    spin_step_s = 0.05

    def __init__(self) -> None:
        self.node = rclpy.create_node("iterprime_node_test")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        n = self.node
        self.results: list[Segmentation] = []
        self.masks: list[Image] = []
        self.centroids: list[PointStamped] = []
        self.debug: list[Image] = []
        n.create_subscription(Segmentation, f"{OUT}/result", self.results.append, 50)
        n.create_subscription(Image, f"{OUT}/mask", self.masks.append, 50)
        n.create_subscription(PointStamped, f"{OUT}/centroid", self.centroids.append, 50)
        n.create_subscription(Image, f"{OUT}/debug_image", self.debug.append, 50)
        self.image_pub = n.create_publisher(Image, TOPICS["image"], qos_profile_sensor_data)
        self.depth_pub = n.create_publisher(Image, TOPICS["depth"], qos_profile_sensor_data)
        self.info_pub = n.create_publisher(
            CameraInfo, TOPICS["camera_info"], qos_profile_sensor_data
        )
        self.command_pub = n.create_publisher(String, TOPICS["command"], 10)
        self.client = n.create_client(Segment, f"{OUT}/segment")
        self.stream: tuple[Image, Image | None] | None = None
        n.create_timer(0.1, self._publish)

    def _publish(self) -> None:
        if self.stream is None:
            return
        image, depth = self.stream
        self.image_pub.publish(image)
        if depth is not None:
            self.depth_pub.publish(depth)
        info = _camera_info()
        info.header.stamp = image.header.stamp  # drivers stamp camera_info like the image
        self.info_pub.publish(info)

    def show(
        self,
        sec: int,
        depth: np.ndarray | None = None,
        encoding: str = "32FC1",
        image: Image | None = None,
    ) -> Image:
        """Stream a frame stamped `sec` (and its depth) and give DDS time to deliver it."""
        image = image or _stamped(rgb_to_fields(_picture()), sec)
        depth_msg = _stamped(depth_to_fields(depth, encoding), sec) if depth is not None else None
        self.stream = (image, depth_msg)
        self._publish()
        self.spin(0.6)
        return image

    def command(self, text: str, timeout: float = CMD_TIMEOUT) -> Segmentation:
        """Publish a spoken command and wait for its (one) result."""
        before = len(self.results)
        self.command_pub.publish(String(data=text))
        assert self.until(
            lambda: any(r.command == text for r in self.results[before:]), timeout
        ), f"no result for {text!r}"
        return next(r for r in self.results[before:] if r.command == text)

    def mask_for(self, result: Segmentation) -> Image:
        assert self.until(
            lambda: any(m.header == result.header for m in self.masks), EVENT_TIMEOUT_S
        )
        return [m for m in self.masks if m.header == result.header][-1]


@pytest.fixture(scope="module")
def node_process(start_node):
    node = start_node(
        "",  # the root namespace, as `ros2 run` starts it
        dict(
            queue_size=QUEUE,
            max_image_age_s=MAX_AGE,
            depth_erosion_px=ERODE,
            publish_debug_image=True,  # the debug overlay is checked here
        ),
        topics=TOPICS,
    )
    yield node.proc, node.lines
    node.stop()


@pytest.fixture(scope="module")
def harness(node_process):
    proc, log = node_process
    rclpy.init()
    h = Harness()
    try:
        ok = h.until(
            lambda: (
                h.command_pub.get_subscription_count() > 0
                and h.node.count_publishers(f"{OUT}/result") > 0
            ),
            60.0,
        )
        assert ok, "node did not come up:\n" + "".join(log)
        h.show(1)
        warm = h.command("the cup", timeout=LOAD_TIMEOUT)  # waits for the models to load
        assert warm.success, warm.error + "\n" + "".join(log)
        yield h
    finally:
        h.node.destroy_node()
        rclpy.shutdown()
        if proc.poll() is not None:
            print("".join(log))


def test_result_mask_and_header(harness):
    image = harness.show(100)
    res = harness.command("could you pick up the red cup please")
    assert res.success and res.error == ""
    assert (
        res.command == "could you pick up the red cup please" and res.expression == "the red cup"
    )
    assert res.command_id >= 2
    assert res.header.stamp.sec == 100 and res.header.frame_id == FRAME, (
        "results carry the source image's header"
    )
    mask = mask_of(res.mask)
    assert mask.shape == (H, W) and mask.any() and res.mask.header == image.header
    v, u = np.nonzero(mask)
    assert (res.centroid_px.x, res.centroid_px.y) == pytest.approx((u.mean(), v.mean()), abs=1e-6)
    assert mask[int(res.grasp_point_px.y), int(res.grasp_point_px.x)], (
        "grasp point inside the mask"
    )
    assert (res.bbox.x_offset, res.bbox.y_offset) == (u.min(), v.min())
    assert (res.bbox.width, res.bbox.height) == (u.max() - u.min() + 1, v.max() - v.min() + 1)
    assert (
        1 <= res.iterations <= 3
        and res.score >= 1.0
        and 0.0 <= res.itm_score <= 1.0
        and res.latency_s > 0
    )
    assert not res.has_centroid_3d, "no depth was published for this frame"
    published = harness.mask_for(res)
    np.testing.assert_array_equal(mask_of(published), mask)
    # debug overlay: bgr8, same size and header (rendered because this test subscribes)
    assert harness.until(
        lambda: any(d.header == res.header for d in harness.debug), EVENT_TIMEOUT_S
    )
    dbg = [d for d in harness.debug if d.header == res.header][-1]
    assert (dbg.encoding, dbg.width, dbg.height) == ("bgr8", W, H)
    harness.spin(0.3)
    assert not [c for c in harness.centroids if c.header == res.header], (
        "no 3-D point without depth"
    )


def _ramp_with_holes() -> np.ndarray:
    """Depth growing left to right (so the median depends on which pixels are used), with NaN
    holes.
    """
    metres = np.tile(0.9 + 0.015 * np.arange(W, dtype=np.float32), (H, 1))
    metres[::2, ::3] = np.nan
    metres[20, :] = 0.0
    return metres.astype(np.float32)


@pytest.mark.parametrize("encoding, sec", [("16UC1", 200), ("32FC1", 201)])
def test_3d_centroid_from_depth_with_holes(harness, encoding, sec):
    metres = _ramp_with_holes()
    sent = (
        np.rint(np.nan_to_num(metres) * 1000).astype(np.uint16) if encoding == "16UC1" else metres
    )
    harness.show(sec, sent, encoding)
    res = harness.command(f"the red cup number {sec}")
    assert res.success and res.header.stamp.sec == sec and res.has_centroid_3d
    depth_m = sent / 1000.0 if encoding == "16UC1" else metres
    expected = expected_centroid_3d(mask_of(res.mask), depth_m, ERODE, (FX, FY, CX, CY))
    got = (res.centroid_3d.x, res.centroid_3d.y, res.centroid_3d.z)
    assert got == pytest.approx(expected, abs=2e-6 if encoding == "32FC1" else 1e-5)
    assert harness.until(
        lambda: any(c.header == res.header for c in harness.centroids), EVENT_TIMEOUT_S
    )
    point = [c for c in harness.centroids if c.header == res.header][-1]
    assert point.header.frame_id == FRAME
    assert (point.point.x, point.point.y, point.point.z) == pytest.approx(got, abs=1e-9)


def test_constant_plane_gives_its_depth(harness):
    harness.show(300, np.full((H, W), 1500, np.uint16), "16UC1")
    res = harness.command("the blue mug")
    assert res.success and res.has_centroid_3d
    v, u = np.nonzero(mask_of(res.mask))
    assert res.centroid_3d.z == pytest.approx(1.5, abs=1e-6)
    assert res.centroid_3d.x == pytest.approx((u.mean() - CX) * 1.5 / FX, abs=1e-5)
    assert res.centroid_3d.y == pytest.approx((v.mean() - CY) * 1.5 / FY, abs=1e-5)


def test_no_valid_depth_means_no_3d_centroid(harness):
    harness.show(400, np.zeros((H, W), np.uint16), "16UC1")
    res = harness.command("the green bottle")
    assert res.success and not res.has_centroid_3d
    harness.spin(0.3)
    assert not [c for c in harness.centroids if c.header == res.header]


def test_service_uses_the_latest_image_or_its_own(harness):
    assert harness.client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S)
    harness.show(500)
    before = len(harness.results)
    future = harness.client.call_async(Segment.Request(text="the small bowl"))
    assert harness.until(future.done, CMD_TIMEOUT)
    res = future.result().result
    assert res.success and res.header.stamp.sec == 500 and mask_of(res.mask).shape == (H, W)
    assert harness.until(
        lambda: any(r.command_id == res.command_id for r in harness.results[before:]), 5.0
    ), "a service answer is also published on ~/result"

    own = _stamped(rgb_to_fields(np.full((30, 40, 3), 120, np.uint8), "bgr8"), 501)
    own.header.frame_id = "other_camera"
    future = harness.client.call_async(Segment.Request(text="the white plate", image=own))
    assert harness.until(future.done, CMD_TIMEOUT)
    res = future.result().result
    assert res.success and res.header.frame_id == "other_camera" and res.header.stamp.sec == 501
    assert mask_of(res.mask).shape == (30, 40) and not res.has_centroid_3d

    future = harness.client.call_async(Segment.Request(text="   "))
    assert harness.until(future.done, CMD_TIMEOUT)
    res = future.result().result
    assert not res.success and "empty" in res.error.lower()


def test_queue_overflow_fails_the_oldest_waiting(harness):
    harness.show(600)
    texts = [f"the cup {i}" for i in range(1, 7)]
    before = len(harness.results)
    for t in texts:
        harness.command_pub.publish(String(data=t))
    assert harness.until(
        lambda: {r.command for r in harness.results[before:]} >= set(texts), 3 * CMD_TIMEOUT
    )
    harness.spin(1.0)  # anything extra would arrive now
    got = [r for r in harness.results[before:] if r.command in texts]
    assert sorted(r.command for r in got) == sorted(texts), "exactly one result per command"
    by_text = {r.command: r for r in got}
    ids = [by_text[t].command_id for t in texts]
    assert ids == sorted(ids) and len(set(ids)) == 6, "command ids increase in arrival order"
    dropped = [t for t in texts if not by_text[t].success]
    assert all("queue full" in by_text[t].error and "dropped" in by_text[t].error for t in dropped)
    # One runs, QUEUE wait; each later arrival pushes out the oldest waiting one.
    assert len(dropped) >= len(texts) - 1 - QUEUE
    assert all(by_text[t].success for t in texts[-QUEUE:]), "the newest commands are kept"
    # The oldest waiting command goes first: drop answers come out in arrival order, and each one
    # names a later command as the one that pushed it out. (Which commands ran before the burst
    # filled the queue depends on the worker's timing, so the test does not fix that.)
    drop_order = [r.command_id for r in got if not r.success]
    assert drop_order == sorted(drop_order)
    for t in dropped:
        pusher = int(re.search(r"command (\d+) arrived after it", by_text[t].error).group(1))
        assert pusher > by_text[t].command_id


def test_bad_image_encoding_is_a_failure_result(harness):
    bad = _stamped(rgb_to_fields(_picture()), 700)
    bad.encoding = "yuv422"
    harness.show(700, image=bad)
    res = harness.command("the red box")
    assert not res.success and "unsupported image encoding 'yuv422'" in res.error
    assert res.header.stamp.sec == 700


def test_stale_image_gets_a_failure(harness):
    harness.show(800)
    harness.stream = None  # the camera stops
    harness.spin(MAX_AGE + 1.0)
    res = harness.command("the yellow banana", timeout=EVENT_TIMEOUT_S)
    assert not res.success
    assert f"no image newer than {MAX_AGE:g} s" in res.error and TOPICS["image"] in res.error
    assert res.header.stamp.sec != 800, "no image was used: the header is the command's time"
    assert res.latency_s < 5.0, "answered at once, not after queueing for the models"
