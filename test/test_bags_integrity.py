"""Bags you can trust: every MCAP the tools write carries valid chunk, data-section and summary
CRCs (confirmed by an independent reader, the ``mcap`` package's StreamReader with CRC
validation), every bag they read is checked, and declared sizes over the read limit are refused
before anything is allocated -- in the replay, the player and eval alike.

Real bags written with rosbags through the project's writer, real damage (bytes flipped on
disk); the segmenter is test_replay.StubSegmenter (a STAND-IN: the bag handling is under test).
"""

from __future__ import annotations

import random
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_bags import COMMAND, IMAGE, SAMPLE, T0, S, image_msg, write_bag
from test_replay import StubSegmenter

from iterprime_ros.image_size import read_limit_bytes
from iterprime_ros.tools.bag_check import check_storage
from iterprime_ros.tools.bags import (
    BagError,
    BagReader,
    BagWriter,
    ReadLimits,
    partial_name,
    string_message,
)
from iterprime_ros.tools.replay import RESULT_TOPIC, ReplayConfig, ReplayError, replay_bag

ROOT = Path(__file__).resolve().parent.parent
N = 6


def big_scene(path: Path, n: int = N, compress: bool = False) -> Path:
    """One 512 x 512 image then one command per second: about two images per MCAP chunk."""
    rng = np.random.default_rng(7)
    with BagWriter(path, compress=compress) as bag:
        bag.add_topic(IMAGE, "sensor_msgs/msg/Image")
        bag.add_topic(COMMAND, "std_msgs/msg/String")
        for i in range(n):
            rgb = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
            bag.write(IMAGE, image_msg(T0 + i * S, rgb), T0 + i * S)
            bag.write(COMMAND, string_message(f"the cup number {i}"), T0 + i * S + S // 10)
    return path


def independent_crc_check(path: Path) -> dict[str, int]:
    """Validate with the mcap package (chunk and data-section CRCs) and zlib over the summary
    range the mcap package's Footer names; returns how many CRCs were checked (none may be 0).
    """
    from mcap.records import Chunk, DataEnd, Footer
    from mcap.stream_reader import StreamReader, breakup_chunk

    seen = {"chunks": 0, "data_end": 0, "summary": 0}
    with path.open("rb") as fh:
        reader = StreamReader(fh, emit_chunks=True, validate_crcs=True)  # raises on a mismatch
        for record in reader.records:
            if isinstance(record, Chunk):
                assert record.uncompressed_crc != 0, "a chunk without a CRC"
                breakup_chunk(record, validate_crc=True)  # raises on a mismatch
                seen["chunks"] += 1
            elif isinstance(record, DataEnd):
                assert record.data_section_crc != 0, "no data-section CRC"
                seen["data_end"] += 1
            elif isinstance(record, Footer):
                assert record.summary_crc != 0, "no summary CRC"
                raw = path.read_bytes()
                footer_at = len(raw) - 8 - 29
                summary = raw[record.summary_start : footer_at + 9 + 16]
                assert zlib.crc32(summary) == record.summary_crc
                seen["summary"] += 1
    return seen


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
def test_written_bags_have_valid_crcs_by_an_independent_reader(
    tmp_path: Path, compress: bool
) -> None:
    bag = big_scene(tmp_path / "in.mcap", compress=compress)
    seen = independent_crc_check(bag)
    assert seen["chunks"] >= 3 and seen["data_end"] == 1 and seen["summary"] == 1
    out = tmp_path / "out.mcap"
    replay_bag(bag, out, StubSegmenter(), echo=lambda _: None)
    assert independent_crc_check(out)["chunks"] >= 1
    # a partial (interrupted writer) and a folder bag carry them too
    writer = BagWriter(tmp_path / "cut.mcap")
    with pytest.raises(KeyboardInterrupt), writer as w:
        w.add_topic(COMMAND, "std_msgs/msg/String")
        w.write(COMMAND, string_message("kept"), T0)
        raise KeyboardInterrupt
    assert independent_crc_check(partial_name(tmp_path / "cut.mcap"))["chunks"] == 1
    write_bag(tmp_path / "folder", [(T0, COMMAND, string_message("x"))])
    assert independent_crc_check(next((tmp_path / "folder").glob("*.mcap")))["chunks"] == 1


def test_the_bundled_sample_bag_has_valid_crcs() -> None:
    seen = independent_crc_check(SAMPLE)
    assert seen["chunks"] >= 1 and seen["summary"] == 1
    assert check_storage(SAMPLE, ReadLimits()) == []


# ----------------------------------------------------------------------------- reading


def _chunks(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every chunk record, from the mcap package's own record reader."""
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    found = []
    with path.open("rb") as fh:
        reader = StreamReader(fh, emit_chunks=True)
        at = fh.tell()
        for record in reader.records:
            if isinstance(record, Chunk):
                found.append((at, fh.tell() - at))
            at = fh.tell()
    return found


def _flip(src: Path, dst: Path, offset: int, count: int = 1) -> Path:
    data = bytearray(src.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


def test_crc_damage_anywhere_in_the_data_is_detected(tmp_path: Path) -> None:
    """Figure: damaged copies detected / damaged copies (one flipped byte at a random place in
    the chunks, the message indexes and the summary; 64 flipped bytes inside a zstd chunk).
    """
    rng = random.Random(3)
    detected = total = 0
    for compress in (False, True):
        src = big_scene(tmp_path / f"src{int(compress)}.mcap", compress=compress)
        size = src.stat().st_size
        for k in range(20):
            at = rng.randrange(8 + 9, size - 8 - 29)  # past the magic, before the footer
            bad = _flip(src, tmp_path / "bad.mcap", at)
            total += 1
            detected += bool(check_storage(bad, ReadLimits()))
        offset, length = _chunks(src)[1]
        bad = _flip(src, tmp_path / "bad64.mcap", offset + length // 2, 64)
        total += 1
        detected += bool(check_storage(bad, ReadLimits()))
    print(f"CRC-damaged inputs detected: {detected}/{total}")
    assert detected == total


def test_a_crc_mismatch_fails_only_the_commands_it_touches(tmp_path: Path) -> None:
    src = big_scene(tmp_path / "in.mcap", compress=True)
    offset, length = _chunks(src)[1]  # the second chunk: neither the first nor the last
    bad = _flip(src, tmp_path / "bad.mcap", offset + length // 2, 64)
    lines: list[str] = []
    summary = replay_bag(bad, tmp_path / "out.mcap", StubSegmenter(), echo=lines.append)
    warning = [p for p in summary.problems if "fails its CRC check" in p]
    assert warning and f"chunk at byte {offset}" in warning[0], summary.problems
    with BagReader(tmp_path / "out.mcap") as out:
        got = [out.deserialize(m) for m in out.messages([RESULT_TOPIC])]
    assert [r.command_id for r in got] == list(range(1, N + 1)), "every command answered"
    failed = [r for r in got if not r.success]
    assert 0 < len(failed) < N, "the rest are answered"
    assert all("damaged" in r.error or "lost" in r.error for r in failed), failed


# ----------------------------------------------------------------------------- bounded


def _declare(src: Path, dst: Path, chunk_size: int) -> Path:
    """A copy whose first chunk declares `chunk_size` decompressed bytes."""
    offset, _ = _chunks(src)[0]
    data = bytearray(src.read_bytes())
    struct.pack_into("<Q", data, offset + 9 + 16, chunk_size)
    dst.write_bytes(bytes(data))
    return dst


def test_a_chunk_declaring_1_gib_is_refused_up_front_everywhere(tmp_path: Path) -> None:
    src = write_bag(tmp_path / "small.mcap", [(T0, COMMAND, string_message("the cup"))])
    bomb = _declare(src, tmp_path / "bomb.mcap", 1 << 30)
    assert bomb.stat().st_size < 32 * 1024
    offset = _chunks(src)[0][0]
    limit = read_limit_bytes()
    with pytest.raises(BagError) as err:
        BagReader(bomb).__enter__()
    text = str(err.value)
    assert str(bomb) in text and f"byte {offset}" in text and str(limit) in text
    assert "\n" not in text
    with pytest.raises(ReplayError, match=f"byte {offset}.*read limit of {limit}"):
        replay_bag(bomb, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    assert not (tmp_path / "out.mcap").exists()
    player = subprocess.run(
        [sys.executable, "-m", "iterprime_ros.tools.player", str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert player.returncode == 2 and f"byte {offset}" in player.stderr, player.stderr


def test_a_message_over_the_limit_is_refused_and_the_limit_is_a_parameter(
    tmp_path: Path,
) -> None:
    big = "x" * (read_limit_bytes(1000) + 10)  # over the limit that goes with 1000 pixels
    src = write_bag(
        tmp_path / "in.mcap",
        [(T0, IMAGE, image_msg(T0)), (T0 + S // 10, COMMAND, string_message(big))],
    )
    cfg = ReplayConfig(max_image_pixels=1000)
    with pytest.raises(ReplayError, match=r"in\.mcap: a (record|chunk).*over the read limit"):
        replay_bag(src, tmp_path / "out.mcap", StubSegmenter(), cfg, echo=lambda _: None)
    summary = replay_bag(src, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    assert summary.commands == 1  # under the default limit it is read (and refused as a command)
    db3 = write_bag(
        tmp_path / "in.db3",
        [(T0, IMAGE, image_msg(T0)), (T0 + S // 10, COMMAND, string_message(big))],
    )
    with pytest.raises(BagError, match=r"in\.db3: a message at row 2 declares \d+ bytes"):
        BagReader(db3, ReadLimits.for_pixels(1000)).__enter__()


def test_eval_refuses_an_annotation_file_over_the_read_limit(tmp_path: Path) -> None:
    from eval_fixtures import write_refer

    from iterprime_ros.tools.eval.datasets import DatasetError, ReferDataset

    root = write_refer(tmp_path / "refer")
    instances = next(root.rglob("instances.json"))
    with instances.open("r+b") as fh:  # sparse: 1 GiB declared, nothing allocated
        fh.truncate(1 << 30)
    with pytest.raises(DatasetError, match=f"{instances}: {1 << 30} bytes, over the read limit"):
        ReferDataset(root, "refcoco")


def test_rows_rosbags_would_drop_are_read_as_damage(tmp_path: Path) -> None:
    db3 = write_bag(
        tmp_path / "in.db3",
        [(T0 + i * S, COMMAND, string_message(f"c{i}")) for i in range(3)],
    )
    con = sqlite3.connect(db3)
    con.execute("UPDATE messages SET topic_id = 99 WHERE id = 2")
    con.commit()
    con.close()
    problems = check_storage(db3, ReadLimits())
    assert problems and "topic id that is not in its topics table (first: row 2)" in problems[0]
    with BagReader(db3) as bag:
        got = list(bag.messages())
    assert len(got) == 3 and not got[1].topic and "topic id 99" in got[1].damage


def test_a_zstd_frame_declaring_more_than_the_limit_is_refused(tmp_path: Path) -> None:
    """The chunk may declare a small size while its compressed frame declares 1 GiB: the frame
    header is read before anything is decompressed.
    """
    import zstandard

    from iterprime_ros.tools.bag_check import _check_chunk

    squeeze = zstandard.ZstdCompressor().compressobj(size=1 << 30)
    frame = squeeze.compress(b"\0" * 4096) + squeeze.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    body = (
        struct.pack("<QQQI", T0, T0, 4096, 0)
        + struct.pack("<I", 4)
        + b"zstd"
        + struct.pack("<Q", len(frame))
        + frame
    )
    with pytest.raises(BagError, match="frame at byte 77 declares 1073741824 bytes"):
        _check_chunk(tmp_path / "x.mcap", 77, body, ReadLimits())
