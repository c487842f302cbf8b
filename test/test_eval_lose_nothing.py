"""`iterprime eval` loses nothing: corrupt lines anywhere, a corrupt header, two runs
on one folder, --limit before samples are built, and images over the size limit.

Scripted fake predictor (test_eval_runner.py; not a model) on the hand-checkable refer
fixture; real files damaged on disk; the second run is a real second process holding the lock.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from eval_fixtures import write_refer
from PIL import Image
from test_eval_runner import REFER_SCRIPT, ScriptedFakePredictor, _plan

from iterprime_ros.tools.eval.datasets import ReferDataset
from iterprime_ros.tools.eval.runner import (
    OutputLockedError,
    ResumeMismatchError,
    read_records,
    run,
)

ROOT = Path(__file__).resolve().parent.parent


def _finished(tmp_path: Path) -> tuple[list, Path]:
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    run(_plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples), progress=False)
    return samples, tmp_path / "out" / "refcoco_val" / "cfg.jsonl"


def test_a_corrupt_line_in_the_middle_costs_only_its_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples, path = _finished(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5  # header + 4 records
    lines[2] = b'{"id": "1/11", "inters\x00garbage\n'  # record 2 of 4 damaged on disk
    path.write_bytes(b"".join(lines))
    assert [r["id"] for r in read_records(path)[1]] == ["1/10", "2/20", "3/30"]
    again = ScriptedFakePredictor(REFER_SCRIPT)
    with caplog.at_level(logging.WARNING):
        assert run(_plan(tmp_path, {"cfg": again}, samples), progress=False) == 1
    assert again.calls == ["red square"], "only the damaged record's sample runs again"
    assert "line 3" in caplog.text and "corrupt" in caplog.text
    ids = [r["id"] for r in read_records(path)[1]]
    assert sorted(ids) == ["1/10", "1/11", "2/20", "3/30"], "every valid record is kept"


def test_a_corrupt_header_refuses_and_erases_nothing(tmp_path: Path) -> None:
    samples, path = _finished(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b'{"header": {"format": "iterpr\n' + b"".join(lines[1:]))
    before = path.read_bytes()
    with pytest.raises(ResumeMismatchError, match="line 1 is not a readable header.*4 record"):
        run(
            _plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples),
            progress=False,
        )
    assert path.read_bytes() == before


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from iterprime_ros.tools.eval.runner import OutputLock
                with OutputLock({str(out)!r}):
                    print("locked", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            run(
                _plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples),
                progress=False,
            )
        assert not (out / "refcoco_val").exists(), "the refused run wrote nothing"
    finally:
        holder.communicate("\n", timeout=60)
    # the lock goes with its process: now the run goes ahead
    assert run(_plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples), False) == 4


def test_limit_applies_before_samples_are_built(tmp_path: Path) -> None:
    root = write_refer(tmp_path / "refer")
    full = ReferDataset(root, "refcoco").samples("val")
    assert ReferDataset(root, "refcoco").samples("val", 2) == full[:2], "same order as before"

    # A refs file whose refs share one sentence list (pickle memo): a few KB, 250 000 pairs.
    refs_path = root / "refcoco" / "refs(unc).p"
    ref = pickle.loads(refs_path.read_bytes())[0]
    ref["sentences"] = [ref["sentences"][0]] * 500
    refs_path.write_bytes(pickle.dumps([ref] * 500, protocol=2))
    assert refs_path.stat().st_size < 20_000
    data = ReferDataset(root, "refcoco")
    tracemalloc.start()
    limited = data.samples("val", 5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(limited) == 5
    assert peak < 2_000_000, f"{peak / 1e6:.1f} MB for 5 samples"


def test_images_over_the_size_limit_are_downscaled_or_skipped(tmp_path: Path) -> None:
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    seen: list[tuple[int, int]] = []

    class SizeRecorder(ScriptedFakePredictor):
        def predict(self, image, expression, frame_id=None):  # noqa: ANN001, ANN201
            seen.append(image.shape[:2])
            pred = super().predict(image, expression, frame_id)
            if pred.mask is not None:  # the scripted masks are at 64 x 48: the model's size
                pred.mask = np.asarray(
                    Image.fromarray(pred.mask).resize((image.shape[1], image.shape[0]))
                )
            return pred

    plan = _plan(tmp_path, {"cfg": SizeRecorder(REFER_SCRIPT)}, samples)
    plan.max_image_pixels = 32 * 24  # the 64 x 48 images are 4x over: downscaled to 32 x 24
    assert run(plan, progress=False) == 4
    assert set(seen) == {(24, 32)}
    records = read_records(tmp_path / "out" / "refcoco_val" / "cfg.jsonl")[1]
    assert all(r["union"] > 0 for r in records), "scored against the full-size ground truth"

    plan = _plan(tmp_path / "refused", {"cfg": SizeRecorder(REFER_SCRIPT)}, samples)
    plan.max_image_pixels = 64 * 48 // 17  # over 16x the limit: refused, nothing decoded
    seen.clear()
    assert run(plan, progress=False) == 0 and seen == []


def test_header_and_records_round_trip_as_json(tmp_path: Path) -> None:
    _, path = _finished(tmp_path)
    header, records = read_records(path)
    assert header["config"] == "cfg" and len(records) == 4
    assert all(json.loads(line) for line in path.read_text().splitlines())
