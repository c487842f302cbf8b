"""Offline replay (`iterprime replay`): one result per command, clear errors for bad input.

Most tests use a stub segmenter (no models: fast) that records which image each command got;
the last one runs the real CLI with the tiny random-weight models (plumbing only: random
weights know nothing, so it checks that results are produced and written, not their quality).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_bags import (
    COMMAND,
    IMAGE,
    ROOT,
    SAMPLE,
    T0,
    S,
    cdr,
    image_msg,
    load_sample_script,
    small_rgb,
    write_bag,
)

from iterprime_ros.pipeline import SegmentationResult
from iterprime_ros.tools.bags import (
    SEGMENTATION_TYPE,
    BagReader,
    header,
    string_message,
    typestore,
)
from iterprime_ros.tools.replay import (
    CENTROID_TOPIC,
    MASK_TOPIC,
    RESULT_TOPIC,
    ReplayConfig,
    ReplayError,
    replay_bag,
)


class StubSegmenter:
    """Answers every command with a centred box and remembers the image it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, np.ndarray]] = []

    def segment(self, image: np.ndarray, command: str) -> SegmentationResult:
        self.seen.append((command, image.copy()))
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
        v, u = np.nonzero(mask)
        return SegmentationResult(
            success=True,
            error="",
            command=command,
            expression=command.lower(),
            primary_word="thing",
            mask=mask,
            centroid=(float(u.mean()), float(v.mean())),
            grasp_point=(w // 2, h // 2),
            bbox=(w // 4, h // 4, w // 2, h // 2),
            score=1.5,
            itm_score=0.5,
            iterations=2,
            timings={"total": 0.01},
        )


def results(path: Path) -> list[Any]:
    with BagReader(path) as bag:
        return [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]


def counts(path: Path) -> dict[str, int]:
    with BagReader(path) as bag:
        return {topic: n for topic, n in bag.counts.items() if n}


def test_sample_bag_gets_one_result_per_command_with_the_right_image(tmp_path: Path) -> None:
    stub = StubSegmenter()
    lines: list[str] = []
    out = tmp_path / "results.mcap"
    summary = replay_bag(
        SAMPLE, out, stub, ReplayConfig(overlays=tmp_path / "overlays"), echo=lines.append
    )
    assert (summary.commands, summary.succeeded, summary.problems) == (9, 9, [])
    assert summary.exit_code() == 0

    got = results(out)
    with BagReader(SAMPLE) as bag:
        commands = [bag.deserialize(m).data for m in bag.messages([COMMAND])]
    assert [r.command for r in got] == commands
    assert [r.command_id for r in got] == list(range(1, 10))
    assert all(r.success and r.error == "" for r in got)
    assert {r.header.frame_id for r in got} == {"camera_color_optical_frame"}
    # 3-D centroid from the synthetic depth (0.6 m .. 1.4 m) and the camera_info
    assert all(r.has_centroid_3d and 0.5 < r.centroid_3d.z < 1.5 for r in got)
    assert (got[0].mask.width, got[0].mask.height, got[0].mask.encoding) == (320, 240, "mono8")
    assert counts(out) == {RESULT_TOPIC: 9, MASK_TOPIC: 9, CENTROID_TOPIC: 9}

    # Each command saw the photograph of its own scene (the latest image before it).
    script = load_sample_script()
    photos = {s.image: script.load_photo(s, (320, 240)) for s in script.SCENES}
    expected = [s.image for s in script.SCENES for _ in s.commands]
    assert [
        next(k for k, p in photos.items() if np.array_equal(p, img)) for _, img in stub.seen
    ] == expected

    assert len(summary.overlays) == 9 and all(p.stat().st_size > 1000 for p in summary.overlays)
    assert summary.overlays[0].name == "001_pick_up_the_coffee_cup.png"
    assert len(lines) == 9 and "'pick up the coffee cup'" in lines[0] and " m," in lines[0]


def test_missing_image_topic_fails_every_command_with_a_clear_error(tmp_path: Path) -> None:
    bag = write_bag(
        tmp_path / "commands_only.mcap",
        [
            (T0, COMMAND, string_message("pick up the cup")),
            (T0 + S, COMMAND, string_message("the cat")),
        ],
    )
    stub = StubSegmenter()
    lines: list[str] = []
    summary = replay_bag(bag, tmp_path / "out.mcap", stub, echo=lines.append)
    assert (summary.commands, summary.succeeded) == (2, 0) and summary.exit_code() == 1
    assert stub.seen == []
    assert "image topic /camera/color/image_raw is not in" in summary.problems[0]
    assert any(line.startswith("error: image topic") for line in lines)
    got = results(tmp_path / "out.mcap")
    assert [r.command for r in got] == ["pick up the cup", "the cat"]
    assert all(not r.success and "is not in" in r.error and r.mask.width == 0 for r in got)


def test_bad_inputs_become_failure_results_not_a_crash(tmp_path: Path) -> None:
    good = cdr(image_msg(T0 + 1 * S))
    events = [
        (T0, COMMAND, string_message("too early")),  # 1 no image yet
        (T0 + 1 * S, IMAGE, good),
        (T0 + 1 * S + S // 4, COMMAND, string_message("the cup")),  # 2 ok
        (T0 + 2 * S, IMAGE, good[:60]),
        (T0 + 2 * S + S // 4, COMMAND, string_message("corrupt image")),  # 3
        (T0 + 3 * S, IMAGE, image_msg(T0 + 3 * S, encoding="yuv422")),
        (T0 + 3 * S + S // 4, COMMAND, string_message("odd encoding")),  # 4 unknown encoding
        (T0 + 4 * S, IMAGE, good),
        (T0 + 4 * S + S // 4, COMMAND, b"\x00\x01\x00\x00\xff\xff"),  # 5 corrupt command
        (T0 + 9 * S, COMMAND, string_message("stale")),  # 6 image 5 s old
    ]
    bag = write_bag(tmp_path / "broken.mcap", events)
    stub = StubSegmenter()
    lines: list[str] = []
    summary = replay_bag(bag, tmp_path / "out.db3", stub, echo=lines.append)
    assert (summary.commands, summary.succeeded) == (6, 1) and summary.exit_code() == 1

    got = results(tmp_path / "out.db3")
    assert [r.command_id for r in got] == [1, 2, 3, 4, 5, 6]
    assert [r.success for r in got] == [False, True, False, False, False, False]
    errors = [r.error for r in got]
    assert "no image received on /camera/color/image_raw before this command" in errors[0]
    assert (
        "corrupt sensor_msgs/msg/Image message on /camera/color/image_raw at +2.000 s" in errors[2]
    )
    assert "unsupported image encoding 'yuv422'" in errors[3]
    assert got[4].command == "" and "unreadable command" in errors[4] and not got[4].success
    assert "no recent image" in errors[5] and "5.0 s old" in errors[5]
    assert got[0].header.stamp.sec == T0 // S  # no image: stamped with the command time
    # each input problem is reported once, as an error line
    assert len(summary.problems) == 3
    assert sum(line.startswith("error: ") for line in lines) == 3
    assert [c for c, _ in stub.seen] == ["the cup"]


def test_compressed_images_and_copying_the_input(tmp_path: Path) -> None:
    import cv2

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small_rgb(), cv2.COLOR_RGB2BGR))
    compressed = typestore().types["sensor_msgs/msg/CompressedImage"](
        header=header(T0, "cam"),
        format="rgb8; jpeg compressed bgr8",
        data=np.asarray(jpeg, np.uint8).reshape(-1),
    )
    bag = write_bag(
        tmp_path / "jpeg.mcap",
        [(T0, "/cam/compressed", compressed), (T0 + S // 2, COMMAND, string_message("the cup"))],
        types={"/cam/compressed": "sensor_msgs/msg/CompressedImage"},
    )
    stub = StubSegmenter()
    out = tmp_path / "out_folder"
    summary = replay_bag(
        bag,
        out,
        stub,
        ReplayConfig(image_topic="/cam/compressed", include_input=True, storage="sqlite3"),
        echo=lambda _: None,
    )
    assert summary.succeeded == 1 and stub.seen[0][1].shape == (48, 64, 3)
    assert (out / "metadata.yaml").is_file()
    assert counts(out) == {"/cam/compressed": 1, COMMAND: 1, RESULT_TOPIC: 1, MASK_TOPIC: 1}
    (r,) = results(out)
    assert r.success and not r.has_centroid_3d and r.header.frame_id == "cam"


def test_missing_command_topic_is_an_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from iterprime_ros.tools.cli import main

    bag = write_bag(tmp_path / "images_only.mcap", [(T0, IMAGE, image_msg(T0))])
    with pytest.raises(
        ReplayError, match="command topic /iterprime/command is not in .*nothing to answer"
    ):
        replay_bag(bag, tmp_path / "a.mcap", StubSegmenter())
    assert not (tmp_path / "a.mcap").exists()

    # The CLI checks the input before loading any model: these need no weights.
    assert main(["replay", str(bag), str(tmp_path / "b.mcap")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: command topic /iterprime/command is not in")
        and "Traceback" not in err
    )
    assert "--command-topic" in err and not (tmp_path / "b.mcap").exists()

    assert main(["replay", str(tmp_path / "missing.mcap"), str(tmp_path / "c.mcap")]) == 2
    assert "bag not found" in capsys.readouterr().err
    assert main(["replay", str(SAMPLE), str(bag)]) == 2
    assert "exists already (use --force" in capsys.readouterr().err
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("iterprime_segmenter:\n  ros__parameters:\n    igrs_iterations: 0\n")
    assert (
        main(["replay", str(SAMPLE), str(tmp_path / "d.mcap"), "--config", str(bad_config)]) == 2
    )
    assert "igrs_iterations" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_replays_the_sample_bag_with_tiny_models(
    tiny_model_dirs: Any, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`iterprime replay` end to end: real Segmenter (tiny random weights), .db3 output,
    overlays.
    """
    from iterprime_ros.tools.cli import main

    out = tmp_path / "sample_results.db3"
    code = main(
        [
            "replay",
            str(SAMPLE),
            str(out),
            "--config",
            str(ROOT / "config" / "segment.yaml"),
            *tiny_model_dirs.cli_args(),
            "--overlays",
            str(tmp_path / "png"),
            "--set",
            "proposal_shortest_edge=120",
            "--set",
            "proposal_longest_edge=160",
            "--set",
            "empty_selection=best_heat",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "9 command(s):" in printed and "9 result(s) written" in printed
    got = results(out)
    assert len(got) == 9 and [r.command_id for r in got] == list(range(1, 10))
    assert all(r.expression for r in got)  # normalised even when the tiny model selects nothing
    ok = [r for r in got if r.success]
    assert all(r.mask.width == 320 and r.has_centroid_3d for r in ok)
    assert len(list((tmp_path / "png").glob("*.png"))) == 9
    with BagReader(out) as bag:
        assert bag.topics[RESULT_TOPIC] == SEGMENTATION_TYPE
        assert bag.counts[MASK_TOPIC] == len(ok)
