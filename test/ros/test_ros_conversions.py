"""Image <-> numpy conversion (iterprime_ros/ros/conversions.py): every supported encoding,
row padding, byte order, bad input, and that rclpy and rosbags messages convert the same.
"""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from iterprime_ros.ros.conversions import (
    ImageConversionError,
    camera_info_intrinsics,
    depth_to_array,
    depth_to_fields,
    image_to_rgb,
    mask_to_fields,
    rgb_to_bgr8,
    rgb_to_fields,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def _msg(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False, as_type=bytes):
    """A duck-typed Image with `pad` extra bytes at the end of each row."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    rows = array.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=padded.shape[1],
        data=as_type(padded.tobytes()) if as_type is bytes else padded.reshape(-1),
    )


@pytest.mark.parametrize(
    "encoding, make",
    [
        ("rgb8", lambda x: x),
        ("bgr8", lambda x: x[:, :, ::-1]),
        ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda x: np.dstack([x[:, :, ::-1], np.full(x.shape[:2], 7, np.uint8)])),
    ],
)
@pytest.mark.parametrize("pad", [0, 3])
def test_color_encodings_give_rgb(encoding, make, pad):
    out = image_to_rgb(_msg(make(RGB), encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_replicated_to_three_channels():
    gray = RGB[:, :, 0]
    out = image_to_rgb(_msg(gray, "mono8", pad=1))
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_numpy_data_as_rosbags_gives_it_converts():
    out = image_to_rgb(_msg(RGB[:, :, ::-1], "bgr8", pad=2, as_type=np.ndarray))
    np.testing.assert_array_equal(out, RGB)


def test_output_does_not_alias_the_message():
    data = bytearray(_msg(RGB, "rgb8").data)
    msg = SimpleNamespace(height=5, width=7, encoding="rgb8", is_bigendian=0, step=21, data=data)
    out = image_to_rgb(msg)
    data[0] = (data[0] + 1) % 256
    assert out[0, 0, 0] == RGB[0, 0, 0]


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(encoding="yuv422"), "unsupported image encoding 'yuv422'"),
        (dict(encoding="16UC1"), "unsupported image encoding"),
        (dict(step=20), "step 20 is smaller than width 7"),
        (dict(data=bytes(21 * 5 - 1)), "data has 104 bytes, expected step 21 x height 5 = 105"),
        (dict(height=0, data=b""), "empty image"),
        (dict(width=0, step=0), "empty image"),
    ],
)
def test_bad_images_raise_a_clear_error(change, words):
    msg = _msg(RGB, "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ImageConversionError, match=words):
        image_to_rgb(msg)


def test_depth_16uc1_and_32fc1_in_both_byte_orders():
    mm = RNG.integers(0, 5000, size=(4, 6)).astype(np.uint16)
    for bigendian in (False, True):
        arr = mm.astype(">u2" if bigendian else "<u2")
        out = depth_to_array(_msg(arr, "16UC1", pad=2, bigendian=bigendian))
        assert out.dtype == np.uint16 and out.dtype.isnative
        np.testing.assert_array_equal(out, mm)
    metres = RNG.uniform(0.2, 4.0, size=(4, 6)).astype(np.float32)
    metres[0, 0] = np.nan
    for bigendian in (False, True):
        arr = metres.astype(">f4" if bigendian else "<f4")
        out = depth_to_array(_msg(arr, "32FC1", pad=4, bigendian=bigendian))
        assert out.dtype == np.float32 and out.dtype.isnative
        np.testing.assert_array_equal(out, metres)  # NaN == NaN in assert_array_equal


def test_depth_rejects_colour_and_odd_steps():
    with pytest.raises(
        ImageConversionError, match="unsupported depth encoding 'rgb8'; supported: 16UC1, 32FC1"
    ):
        depth_to_array(_msg(RGB, "rgb8"))
    msg = _msg(np.zeros((3, 4), "<u2"), "16UC1")
    msg.step = 7
    with pytest.raises(ImageConversionError, match="step 7 is smaller than width 4 x 2 bytes"):
        depth_to_array(msg)


def test_depth_fields_round_trip():
    metres = np.full((3, 4), 1.5, np.float32)
    f32 = depth_to_fields(metres, "32FC1")
    assert f32["step"] == 16 and f32["encoding"] == "32FC1"
    np.testing.assert_array_equal(depth_to_array(SimpleNamespace(**f32)), metres)
    mm = depth_to_fields(metres * 1000, "16UC1")
    assert mm["step"] == 8
    np.testing.assert_array_equal(
        depth_to_array(SimpleNamespace(**mm)), np.full((3, 4), 1500, np.uint16)
    )


def test_mask_fields_are_mono8_255():
    mask = np.zeros((3, 5), bool)
    mask[1, 2:4] = True
    f = mask_to_fields(mask)
    assert (f["height"], f["width"], f["encoding"], f["step"], f["is_bigendian"]) == (
        3,
        5,
        "mono8",
        5,
        0,
    )
    got = np.frombuffer(f["data"], np.uint8).reshape(3, 5)
    np.testing.assert_array_equal(got, mask * 255)
    with pytest.raises(ImageConversionError, match="mask must be H x W"):
        mask_to_fields(np.zeros((2, 2, 1)))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_rgb_fields_round_trip(encoding):
    f = rgb_to_fields(RGB, encoding)
    np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**f)), RGB)


def test_bgr8_debug_image_swaps_channels():
    f = rgb_to_bgr8(RGB)
    assert f["encoding"] == "bgr8" and f["step"] == 21
    np.testing.assert_array_equal(
        np.frombuffer(f["data"], np.uint8).reshape(5, 7, 3), RGB[:, :, ::-1]
    )


def test_camera_info_intrinsics():
    info = SimpleNamespace(k=[500.0, 0, 320.5, 0, 510.0, 240.25, 0, 0, 1])
    assert camera_info_intrinsics(info) == (500.0, 510.0, 320.5, 240.25)
    with pytest.raises(ImageConversionError, match="uncalibrated"):
        camera_info_intrinsics(SimpleNamespace(k=[0.0] * 9))


def test_conversions_do_not_import_rclpy():
    """Offline bag replay uses this module on machines without ROS."""
    import subprocess

    code = (
        "import sys, iterprime_ros.ros.conversions; "
        "sys.exit(1 if any(m == 'rclpy' or m.startswith('rclpy.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy not installed")
def test_rclpy_messages_convert_like_plain_fields():
    from sensor_msgs.msg import Image

    for encoding in ("bgr8", "rgba8", "mono8"):
        fields = rgb_to_fields(RGB, encoding)
        msg = Image(**fields)
        assert type(msg.data).__name__ == "array"  # rclpy stores data as array.array('B')
        np.testing.assert_array_equal(image_to_rgb(msg), image_to_rgb(SimpleNamespace(**fields)))
    msg = Image(**mask_to_fields(RGB[:, :, 0] > 128))
    assert msg.encoding == "mono8" and len(msg.data) == 35
    depth = Image(**depth_to_fields(np.full((2, 3), 0.75, np.float32)))
    np.testing.assert_array_equal(depth_to_array(depth), np.full((2, 3), 0.75, np.float32))


@pytest.mark.skipif(importlib.util.find_spec("rosbags") is None, reason="rosbags not installed")
def test_rosbags_deserialised_messages_convert():
    """A message serialised to CDR and read back with rosbags (what replay sees) converts the
    same.
    """
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    for encoding in ("bgra8", "rgb8"):
        f = rgb_to_fields(RGB, encoding)
        msg = Image(
            header=Header(stamp=Time(sec=1, nanosec=2), frame_id="cam"),
            height=f["height"],
            width=f["width"],
            encoding=encoding,
            is_bigendian=0,
            step=f["step"],
            data=np.frombuffer(f["data"], np.uint8),
        )
        back = ts.deserialize_cdr(ts.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)
        assert isinstance(back.data, np.ndarray)
        np.testing.assert_array_equal(image_to_rgb(back), RGB)


@pytest.mark.skipif(
    importlib.util.find_spec("cv_bridge") is None,
    reason="cv_bridge is not importable here (not pip-installable; the registry port breaks with "
    "numpy 2): the project's own conversion is the only path, so there is nothing to compare",
)
def test_agrees_with_cv_bridge():
    from cv_bridge import CvBridge
    from sensor_msgs.msg import Image

    bridge = CvBridge()
    for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
        msg = Image(**rgb_to_fields(RGB, encoding))
        np.testing.assert_array_equal(image_to_rgb(msg), bridge.imgmsg_to_cv2(msg, "rgb8"))
    for enc, arr in (
        ("16UC1", np.full((2, 3), 1500, np.uint16)),
        ("32FC1", np.full((2, 3), 1.5, np.float32)),
    ):
        msg = Image(**depth_to_fields(arr, enc))
        np.testing.assert_array_equal(
            depth_to_array(msg), bridge.imgmsg_to_cv2(msg, "passthrough")
        )


def test_compressed_images_decode_with_opencv():
    """An rclpy CompressedImage (data: array.array): PNG round-trips exactly, JPEG closely,
    garbage is a clear error.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage

    from iterprime_ros.ros.conversions import compressed_to_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    msg = CompressedImage(format="png")
    msg.data = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    assert np.array_equal(compressed_to_rgb(msg), rgb)
    flat = np.full((24, 32, 3), (200, 40, 10), np.uint8)
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.data = cv2.imencode(".jpg", flat[:, :, ::-1])[1].tobytes()
    assert np.abs(compressed_to_rgb(msg).astype(int) - flat).max() <= 3
    msg = CompressedImage(format="jpeg", data=b"not an image")
    with pytest.raises(ImageConversionError, match=r"compressed image \(jpeg\) cannot be decoded"):
        compressed_to_rgb(msg)
