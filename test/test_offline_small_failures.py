"""The smaller ways the offline tools could lose work or speak unclearly, each with a one-line
error naming the file and a failure result for every command it costs: a full disk (the partial
is kept with its resume marker), a .db3 row whose topic id is unknown, a text timestamp, a
wrongly typed eval record, a CDR message rclpy cannot decode, and a dataset image name that
leads outside its folder.

The full disk is a real write failure: the replay runs in its own process under RLIMIT_FSIZE,
so the kernel refuses the write that crosses the limit (EFBIG, the same path as ENOSPC). The
segmenter is test_replay.StubSegmenter (a STAND-IN: the bag handling is under test).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_bags import COMMAND, IMAGE, T0, S, image_msg, write_bag
from test_offline_lose_nothing import scene_bag
from test_replay import StubSegmenter, results

from iterprime_ros.tools.bags import BagMessage, string_message
from iterprime_ros.tools.replay import ReplayConfig, replay_bag, resume_marker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from test_replay import StubSegmenter
    from iterprime_ros.tools.replay import ReplayConfig, ReplayError, replay_bag
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))
    try:
        replay_bag(sys.argv[1], sys.argv[2], StubSegmenter(), ReplayConfig(fingerprint={"s": 1}))
    except ReplayError as exc:
        print(f"error: {exc}")
        sys.exit(2)
    """
)


@pytest.mark.parametrize("suffix", [".mcap", ".db3"])
def test_a_full_disk_names_the_output_and_keeps_the_partial_with_its_marker(
    tmp_path: Path, suffix: str
) -> None:
    import numpy as np

    rgb = np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    src = scene_bag(tmp_path / "in.mcap", n=8, rgb=rgb)  # masks of 160 KB each
    out = tmp_path / f"out{suffix}"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{HERE}")
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = [line for line in proc.stdout.splitlines() if line.startswith("error: cannot")]
    assert error and str(out) in error[0], proc.stdout
    partial = out.with_name(f"out.partial{suffix}")
    assert partial.exists() and resume_marker(out).exists(), "the partial keeps its marker"
    kept = [r.command_id for r in results(partial)]
    assert kept and kept == list(range(1, len(kept) + 1)), "finished answers are kept"
    assert not out.exists()
    stub = StubSegmenter()
    summary = replay_bag(src, out, stub, ReplayConfig(fingerprint={"s": 1}), echo=lambda _: None)
    assert summary.resumed == len(kept) and len(stub.seen) == 8 - len(kept)
    assert [r.command_id for r in results(out)] == list(range(1, 9)), "every command once"


def _db3_scene(tmp_path: Path, n: int = 4) -> Path:
    events = []
    for i in range(n):
        events.append((T0 + i * S, IMAGE, image_msg(T0 + i * S)))
        events.append((T0 + i * S + S // 10, COMMAND, string_message(f"the cup number {i}")))
    return write_bag(tmp_path / "in.db3", events)


def _command_row(db3: Path, k: int) -> int:
    con = sqlite3.connect(db3)
    (tid,) = con.execute("SELECT id FROM topics WHERE name = ?", (COMMAND,)).fetchone()
    rows = [
        r for (r,) in con.execute("SELECT id FROM messages WHERE topic_id = ? ORDER BY id", (tid,))
    ]
    con.close()
    return rows[k]


def _update(db3: Path, sql: str, row: int) -> None:
    con = sqlite3.connect(db3)
    con.execute(sql, (row,))
    con.commit()
    con.close()


def test_a_db3_command_row_with_an_unknown_topic_id_gets_a_failure_result(tmp_path: Path) -> None:
    db3 = _db3_scene(tmp_path)
    _update(db3, "UPDATE messages SET topic_id = 99 WHERE id = ?", _command_row(db3, 2))
    summary = replay_bag(db3, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    got = results(tmp_path / "out.mcap")
    assert [r.command_id for r in got] == [1, 2, 3, 4], "one answer per command"
    assert [r.success for r in got] == [True, True, False, True]
    assert "topic id 99" in got[2].error and summary.exit_code() == 1
    assert any("topic id" in p and "in.db3" in p for p in summary.problems)


def test_a_text_timestamp_gets_a_failure_result_for_its_command(tmp_path: Path) -> None:
    db3 = _db3_scene(tmp_path)
    _update(db3, "UPDATE messages SET timestamp = 'soon' WHERE id = ?", _command_row(db3, 1))
    summary = replay_bag(db3, tmp_path / "out.mcap", StubSegmenter(), echo=lambda _: None)
    got = results(tmp_path / "out.mcap")
    assert [r.command_id for r in got] == [1, 2, 3, 4]
    assert [r.success for r in got] == [True, False, True, True]
    assert "'soon', not an integer" in got[1].error
    assert any("not an integer" in p for p in summary.problems)


def test_a_wrongly_typed_eval_record_names_its_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from iterprime_ros.tools.eval.runner import read_records, summarise_records

    path = tmp_path / "cfg.jsonl"
    good = {"id": "1/10", "intersection": 5, "union": 10, "expression": "a", "ok": True}
    bad = dict(good, id="1/11", intersection="abc")
    path.write_text("\n".join(json.dumps(o) for o in ({"header": {}}, good, bad)) + "\n")
    with caplog.at_level(logging.WARNING):
        _, records = read_records(path)
    assert [r["id"] for r in records] == ["1/10"]
    assert f"{path} line 3: field 'intersection' is 'abc' (str)" in caplog.text
    assert summarise_records(records, "refcoco", "val", "cfg", 2).count == 1


def test_the_players_undecodable_cdr_error_is_one_readable_line() -> None:
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    from iterprime_ros.tools.bag_player import _why_corrupt

    raw = b"\x00\x01\x00\x00" + struct.pack("<I", 0x7FFFFFFF) + b"abc\x00"  # length past the end
    with pytest.raises(Exception) as err:
        deserialize_message(raw, String)
    m = BagMessage(COMMAND, "std_msgs/msg/String", T0, raw)
    line = _why_corrupt(err.value, m)
    assert "12 bytes do not decode as std_msgs/msg/String" in line
    assert ".cpp" not in line and "\n" not in line


def test_a_dataset_image_name_leading_outside_its_folder_is_refused(tmp_path: Path) -> None:
    from eval_fixtures import write_refer

    from iterprime_ros.tools.eval.datasets import DatasetError, ReferDataset

    root = write_refer(tmp_path / "refer")
    instances = root / "refcoco" / "instances.json"
    data = json.loads(instances.read_text())
    data["images"][0]["file_name"] = "../../x"
    instances.write_text(json.dumps(data))
    ds = ReferDataset(root, "refcoco")
    with pytest.raises(
        DatasetError, match=r"instances\.json: image file name '\.\./\.\./x' leads"
    ):
        ds.samples("val")
