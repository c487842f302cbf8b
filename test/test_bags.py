"""iterprime_ros.tools.bags (typestore, reader, writer) and the bundled sample bag.

No models and no DDS here: these run in about a second. The helpers at the top build the
small (and deliberately broken) bags that test_replay.py and test_player.py use too.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iterprime_ros.ros.conversions import rgb_to_fields
from iterprime_ros.tools.bags import (
    SEGMENTATION_TYPE,
    BagError,
    BagReader,
    BagWriter,
    appended_segmentation_fields,
    find_interface_file,
    header,
    image_message,
    string_message,
    typestore,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.mcap"
IMAGE, COMMAND = "/camera/color/image_raw", "/iterprime/command"
DEPTH, INFO = "/camera/aligned_depth_to_color/image_raw", "/camera/color/camera_info"
T0 = 1_700_000_000 * 10**9
S = 10**9


def load_sample_script() -> Any:
    """scripts/make_sample_bag.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "make_sample_bag", ROOT / "scripts" / "make_sample_bag.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_sample_bag", module)
    spec.loader.exec_module(module)
    return module


def small_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """A small real photograph (skimage's coffee cup), so decoding is checked on real pixels."""
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.coffee(), (w, h), interpolation=cv2.INTER_AREA)


def image_msg(t_ns: int, rgb: np.ndarray | None = None, encoding: str = "rgb8") -> Any:
    rgb = small_rgb() if rgb is None else rgb
    fields = rgb_to_fields(rgb, "rgb8")
    fields["encoding"] = encoding  # lets a test claim an encoding the pixels are not in
    return image_message(fields, header(t_ns, "camera_color_optical_frame"))


def write_bag(
    path: Path, events: list[tuple[int, str, Any]], types: dict[str, str] | None = None
) -> Path:
    """events: (t_ns, topic, rosbags message | raw bytes). Topics are typed by name unless
    given.
    """
    default = {
        IMAGE: "sensor_msgs/msg/Image",
        COMMAND: "std_msgs/msg/String",
        DEPTH: "sensor_msgs/msg/Image",
        INFO: "sensor_msgs/msg/CameraInfo",
    }
    default.update(types or {})
    with BagWriter(path) as bag:
        for topic in dict.fromkeys(topic for _, topic, _ in events):
            bag.add_topic(topic, default[topic])
        for t, topic, msg in sorted(events, key=lambda e: e[0]):
            if isinstance(msg, bytes):
                bag.write_raw(topic, msg, t)
            else:
                bag.write(topic, msg, t)
    return path


def cdr(msg: Any) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


# ----------------------------------------------------------------------------- typestore


def test_typestore_knows_segmentation_with_the_same_hash_as_rosidl() -> None:
    store = typestore()
    assert SEGMENTATION_TYPE in store.types
    assert find_interface_file() == ROOT / "msg" / "Segmentation.msg"
    # scripts/setup.sh builds the interfaces into the venv; rosidl wrote the type hash there.
    generated = Path(sys.prefix) / "share" / "iterprime_ros" / "msg" / "Segmentation.json"
    if not generated.is_file():
        pytest.skip("interfaces not built into this environment")
    hashes = {
        h["type_name"]: h["hash_string"] for h in json.loads(generated.read_text())["type_hashes"]
    }
    assert store.hash_rihs01(SEGMENTATION_TYPE) == hashes["iterprime_ros/msg/Segmentation"]


def test_find_interface_file_names_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import iterprime_ros.tools.bag_types as bags

    monkeypatch.setattr(bags, "_interface_dirs", lambda: iter([tmp_path / "a", tmp_path / "b"]))
    with pytest.raises(BagError, match="cannot find iterprime_ros/msg/Segmentation.msg.*a/msg"):
        bags.find_interface_file()
    (tmp_path / "b" / "msg").mkdir(parents=True)
    (tmp_path / "b" / "msg" / "Segmentation.msg").write_text("bool success\n")
    assert bags.find_interface_file() == tmp_path / "b" / "msg" / "Segmentation.msg"


# ----------------------------------------------------------------------------- writer + reader


def _segmentation(t_ns: int) -> Any:
    types = typestore().types
    point = types["geometry_msgs/msg/Point"]
    mask = image_message(
        {
            "height": 2,
            "width": 3,
            "encoding": "mono8",
            "is_bigendian": 0,
            "step": 3,
            "data": bytes([0, 255, 0, 255, 255, 0]),
        },
        header(t_ns, "cam"),
    )
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=2, width=2, do_rectify=False
    )
    return types[SEGMENTATION_TYPE](
        header=header(t_ns, "cam"),
        command_id=3,
        command="grab the mug please",
        expression="the mug",
        primary_word="mug",
        success=True,
        error="",
        mask=mask,
        bbox=roi,
        centroid_px=point(x=0.75, y=0.5, z=0.0),
        grasp_point_px=point(x=1.0, y=1.0, z=0.0),
        has_centroid_3d=True,
        centroid_3d=point(x=0.1, y=-0.2, z=0.85),
        score=1.5,
        itm_score=0.25,
        iterations=3,
        latency_s=0.125,
        **appended_segmentation_fields(),
    )


@pytest.mark.parametrize(
    "name,storage",
    [("out.mcap", None), ("out.db3", None), ("outdir", "mcap"), ("outdir", "sqlite3")],
)
def test_written_bags_read_back_with_the_definition_embedded(
    tmp_path: Path, name: str, storage: str | None
) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = tmp_path / name
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic("/r", SEGMENTATION_TYPE, qos="reliable")
        bag.add_topic("/c", "std_msgs/msg/String")
        bag.write("/r", _segmentation(T0), T0)
        bag.write("/c", string_message("hello"), T0 + 1)
    assert path.is_file() == (storage is None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], (
        "temporary folder left behind"
    )

    # A reader that knows no types at all still decodes the result: the definition is in the file.
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as raw:
        conn = next(c for c in raw.connections if c.topic == "/r")
        assert "string primary_word" in conn.msgdef.data
        ((_, _, data),) = list(raw.messages([conn]))
        msg = raw.deserialize(data, conn.msgtype)
    assert (
        msg.primary_word == "mug" and msg.iterations == 3 and abs(msg.centroid_3d.z - 0.85) < 1e-12
    )
    assert bytes(msg.mask.data) == bytes([0, 255, 0, 255, 255, 0])

    with BagReader(path) as bag:
        assert bag.topics == {"/r": SEGMENTATION_TYPE, "/c": "std_msgs/msg/String"}
        assert bag.counts == {"/r": 1, "/c": 1}
        assert bag.connections_qos("/r")[0].reliability.name == "RELIABLE"
        (m,) = list(bag.messages(["/c"]))
        assert bag.deserialize(m).data == "hello" and m.timestamp_ns == T0 + 1


def test_writer_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = write_bag(tmp_path / "a.mcap", [(T0, COMMAND, string_message("one"))])
    with pytest.raises(BagError, match="exists already"):
        write_bag(path, [(T0, COMMAND, string_message("two"))])
    with BagWriter(path, overwrite=True) as bag:
        bag.add_topic(COMMAND, "std_msgs/msg/String")
        bag.write(COMMAND, string_message("two"), T0)
    with BagReader(path) as bag:
        assert [bag.deserialize(m).data for m in bag.messages()] == ["two"]
    with pytest.raises(BagError, match="suffix .mcap but storage 'sqlite3'"):
        BagWriter(tmp_path / "b.mcap", storage="sqlite3")
    with BagWriter(tmp_path / "c.mcap") as bag, pytest.raises(BagError, match="not added"):
        bag.write(COMMAND, string_message("x"), T0)


def test_reader_errors_are_one_line_and_name_the_bag(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="bag not found: .*nope.mcap"):
        BagReader(tmp_path / "nope.mcap").__enter__()
    (tmp_path / "junk.mcap").write_bytes(b"this is not an mcap file" * 10)
    with pytest.raises(BagError, match="cannot open bag .*junk.mcap") as err:
        BagReader(tmp_path / "junk.mcap").__enter__()
    assert "\n" not in str(err.value)
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(BagError, match="not a bag"):
        BagReader(tmp_path / "photo.png").__enter__()

    good = write_bag(tmp_path / "ok.mcap", [(T0, IMAGE, image_msg(T0))])
    truncated = tmp_path / "cut.mcap"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(BagError, match="cut.mcap"):
        with BagReader(truncated) as bag:
            list(bag.messages())


def test_corrupt_message_is_reported_with_topic_and_time(tmp_path: Path) -> None:
    raw = cdr(image_msg(T0))
    path = write_bag(tmp_path / "bad.mcap", [(T0, IMAGE, raw), (T0 + S // 2, IMAGE, raw[:40])])
    with BagReader(path) as bag:
        good, bad = list(bag.messages())
        assert bag.deserialize(good).width == 64
        with pytest.raises(
            BagError,
            match=r"corrupt sensor_msgs/msg/Image message on /camera/color/image_raw "
            r"at \+0.500 s",
        ):
            bag.deserialize(bad)


# ----------------------------------------------------------------------------- the sample bag


def test_sample_bag_is_small_and_has_what_the_node_needs() -> None:
    assert SAMPLE.is_file(), "data/sample.mcap missing: run python scripts/make_sample_bag.py"
    assert SAMPLE.stat().st_size < 2_500_000
    with BagReader(SAMPLE) as bag:
        assert bag.topics == {
            IMAGE: "sensor_msgs/msg/Image",
            COMMAND: "std_msgs/msg/String",
            DEPTH: "sensor_msgs/msg/Image",
            INFO: "sensor_msgs/msg/CameraInfo",
        }
        assert bag.counts[COMMAND] == 9 and bag.counts[IMAGE] == 16
        assert bag.connections_qos(IMAGE)[0].reliability.name == "BEST_EFFORT"
        assert bag.connections_qos(COMMAND)[0].reliability.name == "RELIABLE"
        last_image: int | None = None
        commands = []
        for m in bag.messages():
            msg = bag.deserialize(m)
            if m.topic == IMAGE:
                assert (msg.encoding, msg.width, msg.height) == ("rgb8", 320, 240)
                assert msg.header.frame_id == "camera_color_optical_frame"
                last_image = m.timestamp_ns
            elif m.topic == DEPTH:
                assert (msg.encoding, msg.width, msg.height) == ("16UC1", 320, 240)
            elif m.topic == COMMAND:
                # every command has a fresh image of its scene (the node's max_image_age_s is 2 s)
                assert last_image is not None and 0 < m.timestamp_ns - last_image <= 1.5 * S
                commands.append(msg.data)
    assert commands[0] == "pick up the coffee cup" and "point at the cat" in commands


def test_sample_bag_is_reproducible_by_the_script(tmp_path: Path) -> None:
    """The committed bag is what scripts/make_sample_bag.py writes (compared message by message,
    so a newer rosbags/zstd that packs bytes differently does not matter).
    """
    module = load_sample_script()
    rebuilt = tmp_path / "sample.mcap"
    assert module.main([str(rebuilt)]) == 0
    db3 = tmp_path / "sample.db3"
    counts = module.build_sample_bag(db3, depth=False)
    assert counts[COMMAND] == 9 and DEPTH not in counts

    def content(path: Path) -> list[tuple[str, int, bytes]]:
        with BagReader(path) as bag:
            return [(m.topic, m.timestamp_ns, m.raw) for m in bag.messages()]

    committed = content(SAMPLE)
    assert content(rebuilt) == committed
    assert content(db3) == [e for e in committed if e[0] != DEPTH]
