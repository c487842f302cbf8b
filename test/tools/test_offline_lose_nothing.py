"""Offline tools lose nothing: --force, interruptions, damaged bags, long commands,
huge images -- in the bag writer, the replay and the player.

Real bags written with rosbags, real damage (bytes cut off or overwritten on disk), real
signals sent to a real replay process (test/helpers/replay_child.py: a stub segmenter that holds
the next command until the signal comes; the test waits for the replay's own output lines, not for
time).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_bags import COMMAND, IMAGE, T0, S, image_msg, small_rgb, write_bag
from test_replay import StubSegmenter, results

from iterprime_ros.core.command import MAX_COMMAND_CHARS
from iterprime_ros.tools import cli, player
from iterprime_ros.tools.bags import (
    TEMP_SUFFIX,
    BagError,
    BagReader,
    BagWriter,
    partial_name,
    string_message,
    typestore,
)
from iterprime_ros.tools.replay import (
    ReplayConfig,
    ReplayError,
    overlay_name,
    replay_bag,
    resume_marker,
)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
ROOT = HELPERS.parents[1]
N = 8  # commands in the interruption bag


def scene_bag(path: Path, n: int = N, rgb: np.ndarray | None = None) -> Path:
    """One image then one command per second: command i uses image i."""
    events: list[tuple[int, str, Any]] = []
    for i in range(n):
        events.append((T0 + i * S, IMAGE, image_msg(T0 + i * S, rgb)))
        events.append((T0 + i * S + S // 10, COMMAND, string_message(f"the cup number {i}")))
    return write_bag(path, events)


# ----------------------------------------------------------------------------- --force


def test_force_replaces_only_a_bag_never_other_data_nor_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    src = scene_bag(folder / "in.mcap", n=1)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    text = tmp_path / "x.mcap"
    text.write_text("not a bag")

    for out, why in (
        (notes, "folder without a rosbag2 metadata.yaml"),
        (folder, "holds the input"),
        (src, "is or holds the input"),
        (text, "not a .mcap bag"),
    ):
        code = cli.main(["replay", str(src), str(out), "--force"])
        assert code == 2 and why in capsys.readouterr().err, out
        code = player.main([str(src), "--record", "/x", "--record-to", str(out), "--force"])
        assert code == 2 and why in capsys.readouterr().err, out
        with pytest.raises(BagError, match="refusing to replace"):
            BagWriter(out, overwrite=True, protect=[src]).__enter__()
    assert (notes / "thesis.txt").read_text() == "years of work"
    assert text.read_text() == "not a bag" and src.is_file()

    # a folder bag with one extra file is not replaced either; a plain bag is
    bag_dir = tmp_path / "outdir"
    with BagWriter(bag_dir) as bag:
        bag.add_topic(COMMAND, "std_msgs/msg/String")
        bag.write(COMMAND, string_message("old"), T0)
    (bag_dir / "README").write_text("mine")
    with pytest.raises(BagError, match=r"holding more than a bag \(README\)"):
        BagWriter(bag_dir, overwrite=True).__enter__()
    (bag_dir / "README").unlink()
    with BagWriter(bag_dir, overwrite=True) as bag:
        bag.add_topic(COMMAND, "std_msgs/msg/String")
        bag.write(COMMAND, string_message("new"), T0)
    with BagReader(bag_dir) as bag:
        assert [bag.deserialize(m).data for m in bag.messages()] == ["new"]


# ----------------------------------------------------------------------------- interruptions


def _start_child(src: Path, out: Path, hold_after: int, *extra: str) -> subprocess.Popen:
    """The replay in its own process; it answers `hold_after` commands, then waits for a
    signal (so the signal lands mid-run on any machine).
    """
    extra = ("--hold-after", str(hold_after), *extra)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{HELPERS}", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(HELPERS / "replay_child.py"), str(src), str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=out.parent,
    )


def _interrupt_after(proc: subprocess.Popen, answered: int, sig: int) -> list[str]:
    """Read the replay's lines until `answered` results are out, then send `sig`."""
    lines: list[str] = []
    while sum(1 for line in lines if line.startswith("[")) < answered:
        line = proc.stdout.readline()
        assert line, f"replay ended early: {lines} {proc.stderr.read()}"
        lines.append(line)
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=120)
    return lines + rest.splitlines() + err.splitlines()


def _ids(path: Path) -> list[int]:
    return [r.command_id for r in results(path)]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_replay_keeps_a_partial_bag_and_resumes(
    tmp_path: Path, sig: int, code: int
) -> None:
    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    overlays = tmp_path / "overlays"
    proc = _start_child(src, out, 3, "--overlays", str(overlays))
    lines = _interrupt_after(proc, 3, sig)
    assert proc.returncode == code, lines
    partial = partial_name(out)
    assert not out.exists(), "nothing half-done under the final name"
    kept = _ids(partial)  # a valid bag: rosbags reads it
    assert kept == [1, 2, 3], kept  # the 4th command was held until the signal
    assert resume_marker(out).is_file()
    assert any("run the same command again to resume" in line for line in lines), lines
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}")), "the temp folder is gone"

    stub = StubSegmenter()
    lines = []
    last = overlays / overlay_name(N, f"the cup number {N - 1}")
    last.write_bytes(b"mine")  # put there meanwhile: resuming does not replace it either
    cfg = ReplayConfig(fingerprint={"segmenter": "slow stub"}, overlays=overlays)
    summary = replay_bag(src, out, stub, cfg, echo=lines.append)  # its overlays are no refusal
    assert summary.resumed == len(kept) and summary.commands == N
    assert last.read_bytes() == b"mine" and summary.problems == [
        f"overlay {last} exists already: not replaced (--force replaces it)"
    ]
    assert sorted(p.name for p in overlays.iterdir()) == [
        overlay_name(i + 1, f"the cup number {i}") for i in range(N)
    ]
    assert [c for c, _ in stub.seen] == [f"the cup number {i}" for i in range(len(kept), N)]
    assert _ids(out) == list(range(1, N + 1)), "every command exactly once"
    assert not partial.exists() and not resume_marker(out).exists()


def _first_release_store() -> tuple[Any, Any]:
    """A typestore whose Segmentation is the first release's (before the appended fields)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from iterprime_ros.tools.bags import SEGMENTATION_TYPE, find_interface_file

    text = find_interface_file().read_text(encoding="utf-8")
    first = text.split("# --- Added fields")[0]
    assert "depth_stamp" not in first and "track_id" not in first
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(first, SEGMENTATION_TYPE))
    return store, store.types[SEGMENTATION_TYPE]


def test_resume_takes_over_results_written_with_an_older_message_definition(
    tmp_path: Path,
) -> None:
    """A partial bag from before the Segmentation fields were appended: its results are written
    again under today's definition, so the finished bag decodes whole (copying the old bytes
    under the new definition made a bag no reader could decode).
    """
    from iterprime_ros.tools.bags import SEGMENTATION_TYPE, message_fields
    from iterprime_ros.tools.replay import RESULT_TOPIC

    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    overlays = tmp_path / "overlays"
    proc = _start_child(src, out, 3, "--overlays", str(overlays))
    _interrupt_after(proc, 3, signal.SIGINT)
    partial = partial_name(out)
    old_store, old_cls = _first_release_store()
    old_bag = tmp_path / "old.mcap"
    with BagReader(partial) as new, BagWriter(old_bag) as rewritten:
        for topic, msgtype in new.topics.items():
            store = old_store if topic == RESULT_TOPIC else None
            rewritten.add_topic(topic, msgtype, store=store)
        for m in new.messages():
            if m.topic == RESULT_TOPIC:
                msg = new.deserialize(m)
                fields = {n: getattr(msg, n) for n in message_fields(old_cls)}
                rewritten.write(m.topic, old_cls(**fields), m.timestamp_ns, store=old_store)
            else:
                rewritten.write_raw(m.topic, m.raw, m.timestamp_ns)
    kept = _ids(old_bag)
    assert len(kept) >= 3
    os.replace(old_bag, partial)

    summary = replay_bag(
        src,
        out,
        StubSegmenter(),
        ReplayConfig(fingerprint={"segmenter": "slow stub"}),
        echo=lambda _: None,
    )
    assert summary.resumed == len(kept) and summary.commands == N
    with BagReader(out) as bag:
        got = [bag.deserialize(m) for m in bag.messages([RESULT_TOPIC])]
        assert bag.topics[RESULT_TOPIC] == SEGMENTATION_TYPE
    assert [r.command_id for r in got] == list(range(1, N + 1))
    taken = got[: len(kept)]
    assert all(r.command == f"the cup number {i}" for i, r in enumerate(got))
    assert all(r.track_id == 0 and r.error_3d == "" and not r.prefetched for r in taken)


def test_resume_reads_the_partial_under_the_runs_read_limit(tmp_path: Path) -> None:
    """The partial bag a resume takes over is read under the run's own read limit (that of
    its max_image_pixels, the rule the input is read under), not the default one: a partial
    that now holds a record over it is refused with one line naming it and the limit, and is
    kept as it is.
    """
    from iterprime_ros.image_size import read_limit_bytes

    pixels = 1000  # the 64 x 48 frames are downscaled, not refused; the limit is about 1 MiB
    limit = read_limit_bytes(pixels)
    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    proc = _start_child(src, out, 2, "--max-image-pixels", str(pixels))
    _interrupt_after(proc, 2, signal.SIGINT)
    partial = partial_name(out)
    grown = tmp_path / "grown.mcap"
    with BagReader(partial) as kept, BagWriter(grown) as rewritten:
        for topic, msgtype in kept.topics.items():
            rewritten.add_topic(topic, msgtype)
        for m in kept.messages():
            rewritten.write_raw(m.topic, m.raw, m.timestamp_ns)
        rewritten.add_topic("/notes", "std_msgs/msg/String")
        rewritten.write("/notes", string_message("x" * (2 * limit)), T0)
    os.replace(grown, partial)
    before = partial.read_bytes()
    cfg = ReplayConfig(fingerprint={"segmenter": "slow stub"}, max_image_pixels=pixels)
    with pytest.raises(ReplayError) as caught:  # the replay cannot start: nothing written
        replay_bag(src, out, StubSegmenter(), cfg, echo=lambda _: None)
    text = str(caught.value)
    assert text.startswith(f"{partial}: ") and "\n" not in text, text
    assert f"over the read limit of {limit} bytes" in text, text
    assert partial.read_bytes() == before and not out.exists()


def test_killed_replay_leaves_only_a_temp_folder_the_next_run_removes(tmp_path: Path) -> None:
    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    proc = _start_child(src, out, 2)
    _interrupt_after(proc, 2, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    temps = list(tmp_path.glob(f".out.mcap.*{TEMP_SUFFIX}"))
    assert len(temps) == 1 and not out.exists() and not partial_name(out).exists()
    lines: list[str] = []
    summary = replay_bag(src, out, StubSegmenter(), echo=lines.append)
    assert summary.commands == N and _ids(out) == list(range(1, N + 1))
    assert not temps[0].exists() and any("left by a killed run" in line for line in lines)


def test_resume_refuses_other_settings_and_restart_starts_over(tmp_path: Path) -> None:
    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    proc = _start_child(src, out, 2)
    _interrupt_after(proc, 2, signal.SIGINT)
    partial = partial_name(out)
    before = partial.read_bytes()
    with pytest.raises(ReplayError, match=r"made differently \(settings\).*--restart"):
        replay_bag(src, out, StubSegmenter(), ReplayConfig(fingerprint={"other": 1}))
    assert partial.read_bytes() == before, "a mismatch never erases the finished results"
    stub = StubSegmenter()
    cfg = ReplayConfig(fingerprint={"other": 1}, restart=True)
    summary = replay_bag(src, out, stub, cfg, echo=lambda _: None)
    assert summary.resumed == 0 and len(stub.seen) == N and not partial.exists()


# ----------------------------------------------------------------------------- overlays


def test_overlays_never_replace_a_file_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = scene_bag(tmp_path / "in.mcap", n=2)
    out = tmp_path / "out.mcap"
    folder = tmp_path / "pictures"
    folder.mkdir()
    mine = folder / overlay_name(1, "the cup number 0")  # the user's, named like an overlay
    mine.write_bytes(b"my picture")
    notes = folder / "notes.txt"
    notes.write_text("keep")
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"victim")
    link = folder / overlay_name(2, "the cup number 1")
    link.symlink_to(victim)

    code = cli.main(["replay", str(src), str(out), "--overlays", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"overlay folder {folder} is not empty" in err and "--force" in err, err
    with pytest.raises(ReplayError, match="is not empty"):
        replay_bag(src, out, StubSegmenter(), ReplayConfig(overlays=folder), echo=print)
    assert not out.exists() and mine.read_bytes() == b"my picture"
    assert victim.read_bytes() == b"victim" and notes.read_text() == "keep"

    # --force: overlays of the same name are replaced (a link by a file, never written through),
    # every other file is left alone
    cfg = ReplayConfig(overlays=folder, overwrite=True)
    summary = replay_bag(src, out, StubSegmenter(), cfg, echo=lambda _: None)
    assert summary.overlays == [mine, link] and summary.exit_code() == 0
    assert mine.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not link.is_symlink()
    assert victim.read_bytes() == b"victim" and notes.read_text() == "keep"
    assert sorted(folder.iterdir()) == sorted([mine, link, notes]), "no temp file left"


# ----------------------------------------------------------------------------- damaged bags


def test_truncated_mcap_is_read_up_to_the_cut_with_a_warning(tmp_path: Path) -> None:
    # VGA frames: rosbags closes a 1 MB chunk about every image, so the cut falls mid-file
    src = scene_bag(tmp_path / "in.mcap", rgb=small_rgb(480, 640))
    raw = src.read_bytes()
    for name, cut, answered in (("one_byte", len(raw) - 1, N), ("half", len(raw) // 2, None)):
        bad = tmp_path / f"{name}.mcap"
        bad.write_bytes(raw[:cut])
        stub = StubSegmenter()
        summary = replay_bag(bad, tmp_path / f"{name}_out.mcap", stub, echo=lambda _: None)
        assert any("is truncated" in p for p in summary.problems), summary.problems
        assert summary.exit_code() == 1
        got = results(tmp_path / f"{name}_out.mcap")
        assert all(r.success for r in got) and len(got) == summary.commands
        if answered is not None:
            assert summary.commands == answered
        else:
            assert 1 <= summary.commands < N, "the messages before the cut are answered"
            # the images before the cut are the right ones (image i for command i)
            assert [c for c, _ in stub.seen] == [f"the cup number {i}" for i in range(len(got))]


def bag_with_a_damaged_chunk(tmp_path: Path, index: int) -> tuple[Path, Any]:
    """A bag of zstd chunks (about two VGA frames each), chunk `index`'s frame header destroyed.

    Chunk 0 also holds every schema and channel definition rosbags writes.
    """
    from mcap.reader import make_reader

    src = tmp_path / "in.mcap"
    with BagWriter(src, compress=True) as bag:
        bag.add_topic(IMAGE, "sensor_msgs/msg/Image")
        bag.add_topic(COMMAND, "std_msgs/msg/String")
        for i in range(N):
            bag.write(IMAGE, image_msg(T0 + i * S, small_rgb(480, 640)), T0 + i * S)
            bag.write(COMMAND, string_message(f"the cup number {i}"), T0 + i * S + S // 10)
    with src.open("rb") as fh:
        chunk = make_reader(fh).get_summary().chunk_indexes[index]
    raw = bytearray(src.read_bytes())
    data = chunk.chunk_start_offset + 53  # opcode, length, times, sizes, crc, "zstd", length
    assert raw[data : data + 4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
    raw[data : data + 8] = b"\xa5" * 8
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(raw))
    return bad, chunk


@pytest.mark.parametrize("index", [1, 0], ids=["later_chunk", "first_chunk_with_definitions"])
def test_damaged_mcap_chunk_costs_only_the_commands_in_it(tmp_path: Path, index: int) -> None:
    # the first chunk's channel definitions come from the file's summary (they are lost with it)
    bad, chunk = bag_with_a_damaged_chunk(tmp_path, index)
    summary = replay_bag(bad, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    got = results(tmp_path / "out.mcap")
    assert [r.command_id for r in got] == list(range(1, N + 1)), "every command answered"
    lost_window = range(chunk.message_start_time, chunk.message_end_time + 1)
    lost = 0
    for i, r in enumerate(got):
        command_lost = T0 + i * S + S // 10 in lost_window
        image_lost = T0 + i * S in lost_window
        lost += command_lost or image_lost
        assert r.success == (not command_lost and not image_lost), (i, r.error)
        if not r.success:
            assert "damaged chunk" in r.error, r.error
    assert 0 < lost < N, "the damage costs some commands, not all"
    assert any("damaged chunk at byte" in p for p in summary.problems), summary.problems
    assert summary.exit_code() == 1


def _db3_with_damage(tmp_path: Path, find: bytes, offset: int, length: int) -> Path:
    src = scene_bag(tmp_path / "in.db3", rgb=small_rgb(120, 160))
    (page,) = sqlite3.connect(src).execute("PRAGMA page_size").fetchone()
    raw = bytearray(src.read_bytes())
    at = raw.find(find)
    assert at > 0
    start = at + offset if length else (at // page) * page
    raw[start : start + (length or page)] = b"\xa5" * (length or page)
    bad = tmp_path / "bad.db3"
    bad.write_bytes(bytes(raw))
    return bad


def test_damaged_db3_row_costs_only_its_command(tmp_path: Path) -> None:
    # bytes inside one command's row: that command fails with the reason, the others answered
    bad = _db3_with_damage(tmp_path, b"the cup number 4", -12, 8)
    summary = replay_bag(bad, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    got = results(tmp_path / "out.mcap")
    assert [r.command_id for r in got] == list(range(1, N + 1))
    failed = [r for r in got if not r.success]
    assert [r.command_id for r in failed] == [5] and "unreadable command" in failed[0].error
    assert summary.exit_code() == 1


def test_damaged_db3_page_of_an_image_costs_only_the_commands_on_it(tmp_path: Path) -> None:
    # a whole page of image 3's pixels (an overflow page): command 3 fails, the rest answered
    rgb = small_rgb(120, 160)
    marker = np.ascontiguousarray(rgb[60:62]).tobytes()[:64]
    src = scene_bag(tmp_path / "in.db3", rgb=rgb)
    con = sqlite3.connect(src)
    (page,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    raw = bytearray(src.read_bytes())
    hits = [i for i in range(len(raw)) if raw.startswith(marker, i)]
    assert len(hits) == N
    start = (hits[3] // page) * page
    raw[start : start + page] = b"\xa5" * page
    bad = tmp_path / "bad.db3"
    bad.write_bytes(bytes(raw))
    summary = replay_bag(bad, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    got = results(tmp_path / "out.mcap")
    assert [r.command_id for r in got] == list(range(1, N + 1))
    failed = [r.command_id for r in got if not r.success]
    assert failed == [4], [r.error for r in got]
    assert summary.problems and summary.exit_code() == 1


def test_damaged_db3_page_of_rows_does_not_stop_the_replay(tmp_path: Path) -> None:
    # the whole page holding command 4's row (and its neighbours' rows): what is in it is named
    # in the problems; every command whose row is readable gets a result, also after the damage
    bad = _db3_with_damage(tmp_path, b"the cup number 4", 0, 0)
    stub = StubSegmenter()
    summary = replay_bag(bad, tmp_path / "out.mcap", stub, echo=lambda _: None)
    got = results(tmp_path / "out.mcap")
    texts = [r.command for r in got]
    assert "the cup number 7" in texts, "commands after the damaged page are answered"
    assert any("damaged" in p and "are lost" in p for p in summary.problems), summary.problems
    assert len(got) == summary.commands and summary.exit_code() == 1
    # only images that were read are used: image i for command i, never an older one
    for command, image in stub.seen:
        i = int(command.rsplit(" ", 1)[1])
        assert image.shape[:2] == (120, 160) and i >= 7, command


# ----------------------------------------------------------------------------- long commands


def test_replay_refuses_over_long_commands_like_the_node(tmp_path: Path) -> None:
    long_text = "the red cup " + "x" * MAX_COMMAND_CHARS
    src = write_bag(
        tmp_path / "in.mcap",
        [
            (T0, IMAGE, image_msg(T0)),
            (T0 + S // 10, COMMAND, string_message(long_text)),
            (T0 + S // 5, COMMAND, string_message("the cup")),
        ],
    )
    stub = StubSegmenter()
    replay_bag(src, tmp_path / "out.mcap", stub, echo=lambda _: None)
    first, second = results(tmp_path / "out.mcap")
    assert (
        not first.success and "too long" in first.error and str(MAX_COMMAND_CHARS) in first.error
    )
    assert second.success and [c for c, _ in stub.seen] == ["the cup"]


def test_the_node_and_the_replay_share_the_command_limit() -> None:
    pytest.importorskip("rclpy")
    from iterprime_ros.core import command
    from iterprime_ros.ros import commands

    # one rule: the node's intake refuses with core.command.too_long, as the replay does
    assert commands.too_long is command.too_long
    assert not hasattr(commands, "MAX_COMMAND_CHARS")


# ----------------------------------------------------------------------------- image sizes


def png_bomb(width: int, height: int) -> bytes:
    """A real, valid 1-bit grayscale PNG of zeros: tiny on disk, huge once decoded to RGB."""
    row = b"\x00" + bytes((width + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_replay_refuses_a_png_bomb_and_downscales_a_big_frame(tmp_path: Path) -> None:
    types = typestore().types
    from iterprime_ros.tools.bags import header

    bomb = types["sensor_msgs/msg/CompressedImage"](
        header=header(T0), format="png", data=np.frombuffer(png_bomb(30000, 30000), np.uint8)
    )
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(small_rgb(96, 128), cv2.COLOR_RGB2BGR))
    good = types["sensor_msgs/msg/CompressedImage"](
        header=header(T0 + S), format="png", data=png.ravel()
    )
    src = write_bag(
        tmp_path / "in.mcap",
        [
            (T0, IMAGE, bomb),
            (T0 + S // 10, COMMAND, string_message("the cup")),
            (T0 + S, IMAGE, good),
            (T0 + S + S // 10, COMMAND, string_message("the mug")),
        ],
        types={IMAGE: "sensor_msgs/msg/CompressedImage"},
    )
    stub = StubSegmenter()
    cfg = ReplayConfig(max_image_pixels=64 * 48)  # the 128 x 96 frame is 4x over: downscaled
    replay_bag(src, tmp_path / "out.mcap", stub, cfg, echo=lambda _: None)
    first, second = results(tmp_path / "out.mcap")
    assert not first.success and "Refused" in first.error and "900000000 pixels" in first.error
    assert second.success and (second.mask.height, second.mask.width) == (96, 128)
    assert [img.shape[:2] for _, img in stub.seen] == [(48, 64)], "the models saw it downscaled"
