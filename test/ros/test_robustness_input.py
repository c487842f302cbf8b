"""Robustness, part 1: bad and hostile input to the real node (own process, real DDS, tiny models).

Every command must get exactly one result, whatever the text, the image, the depth or the
camera_info: a clear failure, or a documented best effort (docs/robustness.md). Hostile text
("__import__('os')...", "{vlp_model}", "--ros-args -p ...") is only text: it is answered like any
other command, runs nothing, creates no file and changes no parameter. The node runs in an empty
working folder with an empty TMPDIR and ROS_LOG_DIR pointed at the test's folder, and the last
test checks that it wrote nothing there. One node for the whole module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_harness import Harness, connected
from ros_helpers import EVENT_TIMEOUT_S

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from iterprime_ros.core.command import MAX_COMMAND_CHARS  # noqa: E402
from iterprime_ros.ros.conversions import depth_to_fields, rgb_to_fields  # noqa: E402

pytestmark = pytest.mark.slow

H, W = 48, 64
FRAME = "camera_color_optical_frame"
LOAD_TIMEOUT = 180.0
TABLE: list[
    dict[str, Any]
] = []  # what was tried and what came back (printed and saved at the end)


def picture(h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img[h // 5 : h * 3 // 5, w // 5 : w * 3 // 5] = (220, 30, 30)
    return img


def stamped(msg: Any, sec: int) -> Any:
    msg.header.stamp.sec, msg.header.frame_id = sec, FRAME
    return msg


def image_msg(sec: int, array: np.ndarray | None = None, encoding: str = "rgb8") -> Image:
    return stamped(Image(**rgb_to_fields(picture() if array is None else array, encoding)), sec)


def raw_image(sec: int, width: int, height: int, encoding: str, step: int, nbytes: int) -> Image:
    return stamped(
        Image(width=width, height=height, encoding=encoding, step=step, data=bytes(nbytes)), sec
    )


def camera_info(fx: float = 60.0, fy: float = 55.0) -> CameraInfo:
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [fx, 0.0, 31.5, 0.0, fy, 23.5, 0.0, 0.0, 1.0]
    info.header.frame_id = FRAME
    return info


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness_input")
    dirs = {name: root / name for name in ("cwd", "tmp", "ros_log", "params", "attacker")}
    for d in dirs.values():
        d.mkdir()
    return dirs


@pytest.fixture(scope="module")
def node(start_node, sandbox):
    proc = start_node(
        "rob_input",
        dict(queue_size=5, max_image_age_s=2.0),
        folder=sandbox["params"],
        cwd=sandbox["cwd"],
        TMPDIR=str(sandbox["tmp"]),
        ROS_LOG_DIR=str(sandbox["ros_log"]),
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def harness(node, tmp_path_factory):
    with connected(rclpy, node, "robustness_input_test") as h:
        h.wait_ready()
        h.show(image_msg(1))
        warm = h.command("the cup", timeout=LOAD_TIMEOUT)
        assert warm.success, warm.error + "\n" + node.log
        yield h
        h.spin(0.5)
        out = tmp_path_factory.getbasetemp() / "robustness_input.json"
        out.write_text(
            json.dumps(
                {"commands_sent": h.sent, "results_received": len(h.results), "cases": TABLE},
                indent=1,
            )
        )
        print(
            f"\n=== bad and hostile input ({len(TABLE)} cases; {h.sent} commands sent, "
            f"{len(h.results)} results received; {out}) ==="
        )
        for row in TABLE:
            print(f"  {row['kind']:<8} {row['input'][:60]:<62} -> {row['outcome']}")


def record(kind: str, what: str, res: Any, note: str = "") -> None:
    outcome = "success" if res.success else f"failure: {res.error[:110]}"
    TABLE.append(
        {
            "kind": kind,
            "input": what,
            "success": bool(res.success),
            "error": res.error,
            "outcome": outcome + (f" ({note})" if note else ""),
        }
    )


def one_result(h: Harness, text: str) -> None:
    """No second answer for the same command arrives later."""
    h.spin(0.2)
    assert len(h.results_for(text)) == 1, f"{len(h.results_for(text))} results for {text!r}"


# ---------------------------------------------------------------- commands
LONG = ("the red cup " * 900).strip()  # 10.8 kB
JUST_UNDER = ("the red cup on the left " * 41).strip()  # < MAX_COMMAND_CHARS

COMMANDS = [
    # text, expected: None = success, else a substring of the error
    ("", "empty"),
    ("   \t  ", "empty"),
    (LONG, "too long"),
    ("ramasse la tasse rouge", "does not look like English"),
    ("拿起红色的杯子", "does not look like English"),
    ("Возьми красную чашку", "does not look like English"),
    ("🙂🙂🙂", "no words"),
    ("the 🍎 apple on the left 👍", None),
    ("please", "names no object"),
    ("pick up", "names no object"),
    ("could you pick it up please", "names no object"),  # a pronoun alone names nothing
    (JUST_UNDER, None),
]


@pytest.mark.parametrize("text, expected", COMMANDS, ids=[f"cmd{i}" for i in range(len(COMMANDS))])
def test_bad_commands_get_one_clear_answer(harness, text, expected):
    sec = 100 + len(TABLE)
    harness.show(image_msg(sec), settle=0.2)
    res = harness.command(text)
    record(
        "command", repr(text) if len(text) < 60 else f"{text[:30]!r}... ({len(text)} chars)", res
    )
    one_result(harness, text)
    if expected is None:
        assert res.success, res.error
    else:
        assert not res.success and expected in res.error, res.error
    assert res.command == text, "the command is echoed as received"


def test_long_command_limit_and_log(harness, node):
    assert len(LONG) > MAX_COMMAND_CHARS >= len(JUST_UNDER)
    res = harness.results_for(LONG)[0]
    assert f"{len(LONG)} characters" in res.error and res.latency_s < 1.0, (
        "refused at once, not queued"
    )
    assert LONG not in node.log, "a long command is cut in the log"


def test_emoji_are_dropped_from_the_expression(harness):
    res = harness.results_for("the 🍎 apple on the left 👍")[0]
    assert res.expression == "the apple on the left"


# ---------------------------------------------------------------- images
def _raw(
    name: str, width: int, height: int, encoding: str, step: int, nbytes: int, expected: str
) -> tuple[str, Any, str]:
    """A case whose image is raw_image() with these header fields and `nbytes` zero bytes."""
    return name, lambda s: raw_image(s, width, height, encoding, step, nbytes), expected


def _images() -> list[tuple[str, Any, str | None]]:
    """(name, message factory(sec), expected error substring or None for success)."""
    row = W * 3
    padded = np.zeros((H, row + 16), np.uint8)
    padded[:, :row] = picture().reshape(H, row)
    unsupported = "unsupported image encoding"
    return [
        _raw("encoding yuv422", W, H, "yuv422", W * 2, W * 2 * H, unsupported),
        _raw("encoding ''", W, H, "", row, row * H, f"{unsupported} ''"),
        _raw("16UC1 on the image topic", W, H, "16UC1", W * 2, W * 2 * H, unsupported),
        _raw("mono16", W, H, "mono16", W * 2, W * 2 * H, unsupported),
        _raw("step smaller than a row", W, H, "rgb8", W, row * H, "step 64 is smaller"),
        _raw("data shorter than step x height", W, H, "rgb8", row, row * H - 1, "data has"),
        _raw("size claims more than the data", 4 * W, 4 * H, "rgb8", 12 * W, row * H, "data has"),
        _raw("no data at all", W, H, "rgb8", row, 0, "data has 0 bytes"),
        _raw("zero size 0x0", 0, 0, "rgb8", 0, 0, "empty image"),
        _raw("zero width", 0, H, "rgb8", 0, 0, "empty image"),
        _raw("1x1 pixel", 1, 1, "rgb8", 3, 3, "too small"),
        ("mono8", lambda s: image_msg(s, encoding="mono8"), None),
        ("bgra8", lambda s: image_msg(s, encoding="bgra8"), None),
        (
            "rgb8 with row padding (step > width x 3)",
            lambda s: stamped(
                Image(width=W, height=H, encoding="rgb8", step=row + 16, data=padded.tobytes()), s
            ),
            None,
        ),
        (
            "trailing bytes after the last row",
            lambda s: stamped(
                Image(
                    width=W,
                    height=H,
                    encoding="rgb8",
                    step=row,
                    data=picture().tobytes() + bytes(100),
                ),
                s,
            ),
            None,
        ),
    ]


IMAGES = _images()


@pytest.mark.parametrize("index", range(len(IMAGES)), ids=[name for name, _, _ in IMAGES])
def test_bad_images_on_the_topic(harness, index):
    name, make, expected = IMAGES[index]
    sec = 1000 + index
    msg = make(sec)
    harness.show(msg, settle=0.3)
    text = f"the red cup number {sec}"
    res = harness.command(text)
    record("image", name, res)
    one_result(harness, text)
    if expected is None:
        assert res.success, res.error
        assert (res.mask.width, res.mask.height) == (msg.width, msg.height)
    else:
        assert not res.success and expected in res.error, res.error
    assert res.header.stamp.sec == sec, "the answer names the frame it was about"


def test_4k_frame_works(harness):
    """3840 x 2160 rgb8 (24.9 MB) works; the cost is the copy and the resizes (docs/robustness.md).

    Over the best-effort image topic Fast DDS may lose every 25 MB frame (UDP fragments); the
    answer then names the older frame it used, which is correct. The service carries the frame
    reliably, so the 4K case is checked through it when the topic lost it.
    """
    big = np.zeros((2160, 3840, 3), np.uint8)
    big[:] = picture(2160 // 40, 3840 // 40).repeat(40, 0).repeat(40, 1)
    msg = image_msg(1900, big)
    harness.show(msg, settle=2.0)
    text = "the red cup in the 4k frame"
    res = harness.command(text, timeout=120.0)
    harness.image = None  # stop streaming 25 MB frames
    if res.header.stamp.sec == 1900:
        note = "over the image topic"
    else:
        record(
            "image",
            "4K 3840x2160 rgb8 on the best-effort topic",
            res,
            f"no 4K frame arrived: answered about frame {res.header.stamp.sec}"
            if res.success
            else "",
        )
        harness.spin(0.5)
        res = harness.call(text + " by service", msg, timeout=120.0)
        note = "over the ~/segment service"
    record("image", "4K 3840x2160 rgb8", res, f"{note}, {res.latency_s:.1f} s")
    assert res.success, res.error
    assert (res.mask.width, res.mask.height) == (3840, 2160) and res.header.stamp.sec == 1900


def test_bad_image_by_service(harness):
    bad = raw_image(1950, W, H, "rgb8", W, W * H)
    res = harness.call("the red cup by service", bad)
    record("image", "service request image with a wrong step", res)
    assert not res.success and "step" in res.error
    res = harness.call("   ")
    record("command", "service request '   '", res)
    assert not res.success and "empty" in res.error


# ---------------------------------------------------------------- depth and camera_info
def _depth(values: np.ndarray, sec: int, encoding: str = "32FC1") -> Image:
    return stamped(Image(**depth_to_fields(values, encoding)), sec)


def _depths() -> list[tuple[str, Any, Any, str | None]]:
    """(name, depth factory(sec), camera_info, expected reason in the log or None for a 3-D
    centroid).
    """
    nan = np.full((H, W), np.nan, np.float32)
    inf = np.full((H, W), np.inf, np.float32)
    mixed = np.full((H, W), 1.2, np.float32)
    mixed[::2] = np.nan
    mixed[1::4] = np.inf
    mixed[:, ::3] = -np.inf
    wrong_step = _depth(np.ones((H, W), np.float32), 0)
    wrong_step.step = W  # 4 bytes per pixel: too small
    return [
        (
            "all NaN (32FC1)",
            lambda s: _depth(nan, s),
            camera_info(),
            "no valid depth inside the mask",
        ),
        (
            "all +inf (32FC1)",
            lambda s: _depth(inf, s),
            camera_info(),
            "no valid depth inside the mask",
        ),
        (
            "all zero (16UC1)",
            lambda s: _depth(np.zeros((H, W)), s, "16UC1"),
            camera_info(),
            "no valid depth inside the mask",
        ),
        ("NaN, +inf and -inf holes around 1.2 m", lambda s: _depth(mixed, s), camera_info(), None),
        (
            "depth half the image size",
            lambda s: _depth(np.ones((H // 2, W // 2), np.float32), s),
            camera_info(),
            f"depth is {W // 2}x{H // 2} but the image is {W}x{H}",
        ),
        ("depth with a wrong step", lambda s: stamped(wrong_step, s), camera_info(), "step"),
        (
            "depth in rgb8",
            lambda s: stamped(Image(**rgb_to_fields(picture())), s),
            camera_info(),
            "unsupported depth encoding 'rgb8'",
        ),
        (
            "camera_info with zero focal length",
            lambda s: _depth(np.ones((H, W), np.float32), s),
            camera_info(0.0, 0.0),
            "uncalibrated camera",
        ),
        (
            "camera_info with NaN focal length",
            lambda s: _depth(np.ones((H, W), np.float32), s),
            camera_info(float("nan"), 55.0),
            "no valid focal lengths",
        ),
    ]


DEPTHS = _depths()


@pytest.mark.parametrize("index", range(len(DEPTHS)), ids=[name for name, _, _, _ in DEPTHS])
def test_bad_depth_and_camera_info(harness, node, index):
    """Best effort: the 2-D answer succeeds without a 3-D centroid, and the log says why."""
    name, make, info, reason = DEPTHS[index]
    sec = 2000 + index
    harness.show(image_msg(sec), make(sec), info, settle=0.4)
    text = f"the red cup number {sec}"
    res = harness.command(text)
    one_result(harness, text)
    assert res.success, res.error
    if reason is None:
        record("depth", name, res, "3-D centroid" if res.has_centroid_3d else "no 3-D centroid")
        assert (
            res.has_centroid_3d
            and np.isfinite([res.centroid_3d.x, res.centroid_3d.y, res.centroid_3d.z]).all()
        )
        assert res.centroid_3d.z == pytest.approx(1.2)
    else:
        pattern = re.compile(rf"command {res.command_id}: no 3-D centroid: .*{re.escape(reason)}")
        assert harness.until(lambda: pattern.search(node.log) is not None, EVENT_TIMEOUT_S), (
            node.log[-2000:]
        )
        record("depth", name, res, "2-D only; log: " + reason)
        assert not res.has_centroid_3d
    harness.depth = harness.info = None


# ---------------------------------------------------------------- hostile text
def _parameters(h: Harness, names: list[str]) -> list[str]:
    client = h.node.create_client(GetParameters, f"{h.target.out}/get_parameters")
    assert client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S)
    future = client.call_async(GetParameters.Request(names=names))
    assert h.until(future.done, EVENT_TIMEOUT_S)
    return [v.string_value for v in future.result().values]


def test_command_text_is_never_code_nor_configuration(harness, node, sandbox, tiny_model_dirs):
    names = ["vlp_model", "proposal_model", "device", "prompt_template"]
    before = _parameters(harness, names)
    marker = sandbox["attacker"] / "pwned"
    texts = [
        f"__import__('os').system('touch {marker}')",
        f"eval(\"open('{marker}', 'w')\") the red cup",
        f"$(touch {marker}) the red cup; rm -rf {sandbox['cwd']}",
        f"`touch {marker}` the cup",
        "{vlp_model} {0} {} %s %(vlp_model)s the red cup",
        "--ros-args -p vlp_model:=/etc -p device:=cuda",
        "vlp_model:=/etc proposal_model:=/tmp the red cup",
        "{{7*7}} ${7*7} <script>alert(1)</script> the red cup",
        "the red cup\n--ros-args -r __node:=evil",
    ]
    harness.show(image_msg(4000), settle=0.3)
    for text in texts:
        res = harness.command(text)
        record(
            "hostile",
            repr(
                text.replace(str(sandbox["attacker"]), "<tmp>").replace(
                    str(sandbox["cwd"]), "<cwd>"
                )
            ),
            res,
        )
        one_result(harness, text)
        assert res.command == text
        for field in (res.expression, res.error, res.primary_word):
            assert str(tiny_model_dirs.blip) not in field and "49" not in field, field
    assert not marker.exists() and not list(sandbox["attacker"].iterdir()), "a command ran as code"
    assert sandbox["cwd"].exists()
    assert _parameters(harness, names) == before, "a command changed a parameter"
    assert harness.node.count_publishers(f"{node.out}/result") == 1, (
        "the node is still the one node"
    )


def test_parameters_models_fixed_while_running_live_ones_checked(harness):
    """Nor can anyone on the network repoint the models at run time: model and device parameters
    are refused while the node is configured, with the reason; live settings are checked by the
    same table as at start, and a bad value changes nothing.
    """
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="/etc")
    out = harness.set_parameter("vlp_model", value)
    assert not out.successful and "read at configure" in out.reason, out.reason
    assert _parameters(harness, ["vlp_model"]) != ["/etc"]
    text = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="fast")
    out = harness.set_parameter("igrs_iterations", text)
    assert not out.successful and "'igrs_iterations' = 'fast': wrong type" in out.reason
    big = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=99)
    out = harness.set_parameter("igrs_iterations", big)
    assert not out.successful and "too large" in out.reason, out.reason
    client = harness.node.create_client(GetParameters, f"{harness.target.out}/get_parameters")
    future = client.call_async(GetParameters.Request(names=["igrs_iterations"]))
    assert harness.until(future.done, EVENT_TIMEOUT_S)
    assert future.result().values[0].integer_value == 3, "a refused value changes nothing"


def test_every_command_was_answered_once(harness):
    texts = [r.command for r in harness.results]
    ids = [r.command_id for r in harness.results]
    assert len(ids) == len(set(ids)), "one result per command id"
    assert ids == sorted(ids), "answered in arrival order"
    assert max(ids) == len(ids), "no command id without a result"
    assert len(texts) >= len(TABLE)
    assert len(harness.results) == harness.sent, "every command sent got a result"


def test_node_wrote_no_files(harness, node, sandbox):
    """The node's working folder and TMPDIR stay empty; its only files are ROS's own log
    (ROS_LOG_DIR).
    """
    assert node.proc.poll() is None, "the node is still running\n" + node.log
    # The sandbox must really be where the node works, else "empty" proves nothing.
    pid = node.proc.pid
    assert Path(f"/proc/{pid}/cwd").resolve() == sandbox["cwd"].resolve()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"TMPDIR={sandbox['tmp']}".encode() in environ
    assert sorted(p.name for p in sandbox["cwd"].iterdir()) == []
    assert sorted(p.name for p in sandbox["tmp"].iterdir()) == []
    assert "Traceback" not in node.log, node.log
    # Its only files are ROS's own log: the log is there (ROS_LOG_DIR was honoured, so the node
    # writes where this test looks) and nothing else is.
    written = [p for p in sandbox["ros_log"].rglob("*") if p.is_file()]
    assert written, "no ROS log in ROS_LOG_DIR: the node logged elsewhere"
    assert all(p.suffix == ".log" for p in written), written
