"""One rule picks the depth frame for a colour frame: the node, the offline replay and the
replay's tracker choose the same one from the same stamps (ros/sensors.py, SensorCache.match).

The bag built here is made so that the plausible rules disagree: the depth frame nearest the
image (30 ms before it, a plane at 1 m) does not fit the only camera_info (90 ms after the
image) within the 0.1 s tolerance, while the other depth frame (50 ms after, a plane at 2 m)
does. message_filters' ApproximateTime rule, the documented one, takes the 2 m frame; a
"nearest depth, latest camera_info" rule would take the 1 m frame. The planes are constant, so
the centroid's z says which frame was used whatever the mask is.

The live test plays the bag into the real node (tiny random-weight models: plumbing only, the
mask is arbitrary) with the bag player and records its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_bags import COMMAND, DEPTH, IMAGE, INFO, T0, S, image_msg, load_sample_script, write_bag
from test_replay import StubSegmenter, results

from iterprime_ros.ros.conversions import depth_to_fields
from iterprime_ros.ros.sensors import SensorCache
from iterprime_ros.tools.bags import BagReader, header, image_message, string_message
from iterprime_ros.tools.replay import ReplayConfig, replay_bag
from iterprime_ros.tools.replay_track import depth_centroid

H, W = 48, 64
MS = 10**6
FRAME = "camera_color_optical_frame"
NEAREST_Z, MATCHED_Z = 1.0, 2.0  # the depth frame 30 ms before the image, and 50 ms after it
TOLERANCE_S = 0.1  # depth_sync_tolerance_s, the node's default


def _depth(stamp_ns: int, metres: float) -> Any:
    fields = depth_to_fields(np.full((H, W), metres, np.float32), "32FC1")
    return image_message(fields, header(stamp_ns, FRAME))


def _stamped_set() -> list[tuple[int, str, Any]]:
    """(stamp, topic, message) of the colour image, the two depth frames and the camera_info."""
    info = load_sample_script().camera_info((W, H), header(T0 + 90 * MS, FRAME))
    return [
        (T0 - 30 * MS, DEPTH, _depth(T0 - 30 * MS, NEAREST_Z)),
        (T0, IMAGE, image_msg(T0)),
        (T0 + 50 * MS, DEPTH, _depth(T0 + 50 * MS, MATCHED_Z)),
        (T0 + 90 * MS, INFO, info),
    ]


def _bag(path: Path, rounds: int = 1) -> Path:
    """The set, sent `rounds` times (a live subscriber that matched late still gets one), then
    one command.
    """
    events = [
        (t + k * S // 4, topic, msg) for k in range(rounds) for t, topic, msg in _stamped_set()
    ]
    events.append((T0 + rounds * S // 4 + S // 2, COMMAND, string_message("the cup")))
    return write_bag(path, events)


def _replayed_z(tmp_path: Path, bag: Path) -> float:
    out = tmp_path / "offline.mcap"
    replay_bag(bag, out, StubSegmenter(), ReplayConfig(), echo=lambda _: None)
    (result,) = results(out)
    assert result.success and result.has_centroid_3d, result.error
    return result.centroid_3d.z


def test_replay_takes_the_depth_frame_that_fits_the_camera_info(tmp_path: Path) -> None:
    assert _replayed_z(tmp_path, _bag(tmp_path / "in.mcap")) == pytest.approx(MATCHED_Z)


def test_replay_tracker_takes_the_same_depth_frame() -> None:
    sensors = SensorCache()
    for _, topic, msg in _stamped_set():
        if topic == DEPTH:
            sensors.add_depth(msg)
        elif topic == INFO:
            sensors.set_camera_info(msg)
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:40] = True
    point = depth_centroid(sensors, TOLERANCE_S, 3, False)(mask, header(T0, FRAME))
    assert point is not None and point[2] == pytest.approx(MATCHED_Z)
    chosen = sensors.match(header(T0, FRAME), TOLERANCE_S).depth
    assert (chosen.header.stamp.sec, chosen.header.stamp.nanosec) == divmod(T0 + 50 * MS, S)


@pytest.mark.slow
def test_node_and_replay_choose_the_same_depth_frame(start_node: Any, tmp_path: Path) -> None:
    """The same bag through the live node (played over DDS) and through `iterprime replay`: the
    same depth frame, seen in the centroid's z and in the node's depth_stamp.
    """
    from test_player import RESULT, run_player

    bag = _bag(tmp_path / "in.mcap", rounds=4)
    node = start_node(
        "",  # the root namespace and the bag's topics, as on the robot
        dict(depth_sync_tolerance_s=TOLERANCE_S),
        topics={"image": IMAGE, "command": COMMAND, "depth": DEPTH, "camera_info": INFO},
    )
    recorded = tmp_path / "live.mcap"
    try:
        player = run_player(
            [str(bag), "--wait-for-subscribers", "60", "--record", RESULT]
            + ["--record-to", str(recorded), "--record-count", "1", "--record-idle", "90"],
            timeout=240,
        )
    finally:
        node_log = node.stop()
    assert player.returncode == 0, player.stdout + player.stderr + node_log
    with BagReader(recorded) as rec:
        (live,) = [rec.deserialize(m) for m in rec.messages([RESULT])]
    assert live.success and live.has_centroid_3d, live.error + live.error_3d + node_log
    assert live.centroid_3d.z == pytest.approx(MATCHED_Z)
    stamp = (live.depth_stamp.sec, live.depth_stamp.nanosec)
    assert stamp == divmod(T0 + 50 * MS, S)
    assert _replayed_z(tmp_path, bag) == pytest.approx(live.centroid_3d.z)


@pytest.mark.parametrize("value", [False, True])
def test_replay_takes_image_rectified_from_the_node_parameters(tmp_path, value):
    """The replay back-projects through P or K as the node does: `image_rectified` from the
    parameter file reaches the replay's configuration and its resume fingerprint.
    """
    from iterprime_ros.tools.cli import build_parser
    from iterprime_ros.tools.model_args import load_parameters, model_settings
    from iterprime_ros.tools.replay import _config
    from iterprime_ros.tools.replay_resume import _fingerprint

    yaml = tmp_path / "params.yaml"
    yaml.write_text(
        "/**/iterprime_segmenter:\n  ros__parameters:\n    image_rectified: "
        + str(value).lower()
        + "\n"
    )
    args = build_parser().parse_args(
        ["replay", "in.mcap", str(tmp_path / "out.mcap"), "--config", str(yaml)]
    )
    params = load_parameters(args.config)
    cfg = _config(args, params.node, model_settings(args, params.segmenter))
    assert cfg.image_rectified is value
    bag = tmp_path / "in.mcap"
    bag.write_bytes(b"")
    assert _fingerprint(bag, cfg)["depth"][-1] is value
