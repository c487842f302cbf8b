#!/usr/bin/env python3
"""Build the bundled sample bag (data/sample.mcap) from real photographs.

The photographs ship inside scikit-image (coffee cup, cat, astronaut, rocket), so the
bag is reproducible on any machine with the project's environment and no download:

    python scripts/make_sample_bag.py                  # -> data/sample.mcap
    python scripts/make_sample_bag.py out/sample.db3   # same content, SQLite storage

It looks like a short RGB-D camera recording: each photograph is one "scene" held for a
few seconds, published at 1 Hz as /camera/color/image_raw (rgb8, 320x240) with a matching
/camera/color/camera_info and a synthetic aligned depth image (16UC1, millimetres; a
tilted table plane, so 3-D centroids are plausible, not measured), and a voice front
end speaks several commands per scene on /iterprime/command. The topic names are the
launch file's default remaps, so `ros2 bag play data/sample.mcap` drives the node as is.
The frames are static, so zstd chunk compression keeps the file small.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from iterprime_ros.ros.conversions import depth_to_fields, rgb_to_fields  # noqa: E402
from iterprime_ros.tools.bags import (  # noqa: E402
    BagError,
    BagWriter,
    bag_summary,
    header,
    image_message,
    string_message,
    typestore,
)

IMAGE_TOPIC = "/camera/color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
COMMAND_TOPIC = "/iterprime/command"
FRAME_ID = "camera_color_optical_frame"
START_NS = (
    1_735_689_600 * 1_000_000_000
)  # 2025-01-01T00:00:00Z: fixed, so the file is reproducible


@dataclass(frozen=True)
class Scene:
    """One photograph held in front of the camera and what the person says about it."""

    image: str  # skimage.data function name
    crop_top: float  # where the 4:3 crop sits vertically (0 top .. 1 bottom)
    commands: tuple[str, ...]


SCENES: tuple[Scene, ...] = (
    Scene(
        "coffee",
        0.5,
        ("pick up the coffee cup", "could you grab the spoon please", "the saucer under the cup"),
    ),
    Scene("chelsea", 0.5, ("point at the cat",)),
    Scene(
        "astronaut",
        0.55,
        (
            "the astronaut's helmet",
            "find the flag on the left",
            "point at the space shuttle model",
        ),
    ),
    Scene("rocket", 0.5, ("point at the rocket", "the tower on the right")),
)


def load_photo(scene: Scene, size: tuple[int, int]) -> np.ndarray:
    """The scene's photograph cropped to the camera's aspect ratio and resized (W, H)."""
    import skimage.data
    from PIL import Image

    rgb = np.asarray(getattr(skimage.data, scene.image)())[:, :, :3]
    h, w = rgb.shape[:2]
    width, height = size
    if w * height > h * width:  # too wide: crop columns (centred)
        cw = round(h * width / height)
        x0 = (w - cw) // 2
        rgb = rgb[:, x0 : x0 + cw]
    else:  # too tall: crop rows where the scene says
        ch = round(w * height / width)
        y0 = round((h - ch) * scene.crop_top)
        rgb = rgb[y0 : y0 + ch]
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.LANCZOS))


def synthetic_depth(size: tuple[int, int]) -> np.ndarray:
    """Millimetres: a table plane receding from 0.6 m (bottom row) to 1.4 m (top), plus a
    gentle bump in the middle where the objects usually are.
    """
    width, height = size
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    plane = 1400.0 - 800.0 * v / max(height - 1, 1)
    bump = 120.0 * np.exp(
        -(((u - width / 2) / (0.25 * width)) ** 2 + ((v - height / 2) / (0.3 * height)) ** 2)
    )
    return np.rint(plane - bump)


def camera_info(size: tuple[int, int], hdr: object) -> object:
    """Pinhole intrinsics for a ~60 degree horizontal field of view, no distortion."""
    width, height = size
    f = (width / 2) / np.tan(np.radians(30.0))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    info = typestore().types["sensor_msgs/msg/CameraInfo"]
    roi = typestore().types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return info(
        header=hdr,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], dtype=np.float64),
        r=np.eye(3).reshape(-1),
        p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], dtype=np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def build_sample_bag(
    out: str | Path,
    *,
    size: tuple[int, int] = (320, 240),
    fps: float = 1.0,
    scene_s: float = 4.0,
    depth: bool = True,
    scenes: tuple[Scene, ...] = SCENES,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write the sample bag; returns messages per topic.

    Per scene: frames at `fps` for `scene_s` seconds; commands from 1.25 s into the scene,
    one per second, so each command has a fresh image of its own scene before it.
    """
    period_ns = int(1e9 / fps)
    frames = max(1, round(scene_s * fps))
    with BagWriter(out, overwrite=overwrite, compress=True) as bag:
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image", qos="sensor")
        bag.add_topic(INFO_TOPIC, "sensor_msgs/msg/CameraInfo", qos="sensor")
        if depth:
            bag.add_topic(DEPTH_TOPIC, "sensor_msgs/msg/Image", qos="sensor")
        bag.add_topic(COMMAND_TOPIC, "std_msgs/msg/String", qos="reliable")
        depth_fields = depth_to_fields(synthetic_depth(size), "16UC1")
        events: list[tuple[int, str, object]] = []
        for index, scene in enumerate(scenes):
            start = START_NS + int(index * scene_s * 1e9)
            rgb_fields = rgb_to_fields(load_photo(scene, size), "rgb8")
            for k in range(frames):
                t = start + k * period_ns
                hdr = header(t, FRAME_ID)
                events.append((t, IMAGE_TOPIC, image_message(rgb_fields, hdr)))
                events.append((t, INFO_TOPIC, camera_info(size, hdr)))
                if depth:
                    events.append((t, DEPTH_TOPIC, image_message(depth_fields, hdr)))
            for k, text in enumerate(scene.commands):
                events.append((start + int((1.25 + k) * 1e9), COMMAND_TOPIC, string_message(text)))
        for t, topic, msg in sorted(
            events, key=lambda e: e[0]
        ):  # stable: image before info before depth
            bag.write(topic, msg, t)
        return dict(bag.counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out",
        nargs="?",
        default=str(ROOT / "data" / "sample.mcap"),
        help="output bag: .mcap or .db3 for one file, another name for a rosbag2 folder "
        "(default: data/sample.mcap)",
    )
    parser.add_argument(
        "--size", default="320x240", help="camera resolution WxH (default 320x240)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=1.0,
        help="camera frames per second (default 1; 2 doubles the file)",
    )
    parser.add_argument(
        "--no-depth", action="store_true", help="leave out the synthetic depth topic"
    )
    parser.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        counts = build_sample_bag(
            args.out,
            size=(width, height),
            fps=args.fps,
            depth=not args.no_depth,
            overwrite=args.force,
        )
    except ValueError:
        print(f"error: --size must look like 320x240, got {args.size!r}", file=sys.stderr)
        return 2
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(bag_summary(args.out))
    print(f"commands: {counts[COMMAND_TOPIC]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
