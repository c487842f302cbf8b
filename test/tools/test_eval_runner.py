"""The evaluation loop with a scripted fake predictor (known masks): hand-computed metrics, the
Position/Others and Unseen splits, resuming after an interruption, torn lines, refused resumes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import B, block, write_phrasecut, write_refer

from iterprime_ros.tools.eval.datasets import PhraseCutDataset, ReferDataset
from iterprime_ros.tools.eval.predictors import Prediction
from iterprime_ros.tools.eval.runner import (
    EvalTask,
    ResultStore,
    ResumeMismatchError,
    RunPlan,
    read_records,
    run,
    summarise,
)


class ScriptedFakePredictor:
    """Not a model: answers each expression with a fixed mask (or a failure) from a script."""

    def __init__(self, script, interrupt_after=None):
        self.script, self.calls, self.interrupt_after = script, [], interrupt_after

    def predict(self, image, expression, frame_id=None):
        if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append(expression)
        mask = self.script[expression]
        return Prediction(
            mask=mask, error="" if mask is not None else "nothing selected", iterations=2
        )


A_MASK = block(8, 8, 24, 24)
REFER_SCRIPT = {
    "the left box": A_MASK,  # = GT A: I 256, U 256, IoU 1
    "red square": block(*B),  # wrong object: I 0, U 256 + 320 = 576, IoU 0
    "blue thing on the right": block(
        40, 10, 56, 18
    ),  # top 8 of B's 20 rows: I 128, U 320, IoU 0.4
    "green block": None,  # failure: empty prediction, I 0, U 400
}


def _plan(tmp_path, predictors, samples, **kw):
    return RunPlan(
        tasks=[EvalTask("refcoco", "val", samples)],
        predictors=predictors,
        out_dir=tmp_path / "out",
        identity={k: {"aggregation": "pwem"} for k in predictors},
        **kw,
    )


def test_metrics_position_split_and_records_by_hand(tmp_path):
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    fake = ScriptedFakePredictor(REFER_SCRIPT)
    plan = _plan(tmp_path, {"cfg": fake}, samples)
    assert run(plan, progress=False) == 4
    (s,) = summarise(plan)
    all_ = s.groups["all"]
    assert s.count == s.expected == 4 and s.complete and s.failed == 1
    assert all_["mIoU"] == pytest.approx((1 + 0 + 0.4 + 0) / 4)
    assert all_["oIoU"] == pytest.approx((256 + 0 + 128 + 0) / (256 + 576 + 320 + 400))
    assert all_["Prec@0.5"] == pytest.approx(0.25) and all_["Prec@0.9"] == pytest.approx(0.25)
    # Position: "the left box" (1.0), "blue thing on the right" (0.4); Others: the rest (0, 0)
    assert s.groups["position"]["count"] == 2 and s.groups["position"]["mIoU"] == pytest.approx(
        0.7
    )
    assert s.groups["others"]["count"] == 2 and s.groups["others"]["mIoU"] == pytest.approx(
        0.0, abs=1e-6
    )
    header, records = read_records(tmp_path / "out" / "refcoco_val" / "cfg.jsonl")
    assert header["config"] == "cfg" and header["identity"] == {"aggregation": "pwem"}
    by_id = {r["id"]: r for r in records}
    assert (
        by_id["2/20"]["intersection"] == 128
        and by_id["2/20"]["union"] == 320
        and by_id["2/20"]["position"]
    )
    assert by_id["3/30"]["ok"] is False and by_id["3/30"]["error"] == "nothing selected"
    assert by_id["1/10"]["gt_area"] == 256 and by_id["1/10"]["pred_area"] == 256


def test_phrasecut_oiou_all_and_unseen_by_hand(tmp_path):
    samples = PhraseCutDataset(write_phrasecut(tmp_path / "pc")).samples("test")
    t1 = np.zeros((48, 64), bool)
    t1[2:12, 2:12] = True  # one of the two men: I 100, U 200
    script = {
        "man on the left": t1,
        "wooden dining table": None,  # I 0, U 400
        "orange traffic cone": np.zeros((48, 64), bool)
        | (np.arange(64) < 15)[None, :] & (np.arange(48) < 25)[:, None],
    }
    # cone GT x 5..14, y 5..24 (200 px); prediction x 0..14, y 0..24 (375 px) -> I 200, U 375
    plan = RunPlan(
        tasks=[EvalTask("phrasecut", "test", samples)],
        predictors={"c": ScriptedFakePredictor(script)},
        out_dir=tmp_path / "out",
    )
    run(plan, progress=False)
    (s,) = summarise(plan)
    assert s.groups["all"]["oIoU"] == pytest.approx((100 + 0 + 200) / (200 + 400 + 375))
    assert s.groups["unseen"]["count"] == 2
    assert s.groups["unseen"]["oIoU"] == pytest.approx((100 + 200) / (200 + 375))


def test_interrupted_run_resumes_without_redoing_finished_samples(tmp_path):
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    first = ScriptedFakePredictor(REFER_SCRIPT, interrupt_after=2)
    other = ScriptedFakePredictor(REFER_SCRIPT)
    with pytest.raises(KeyboardInterrupt):
        run(_plan(tmp_path, {"a": first, "b": other}, samples), progress=False)
    # image-major: image 1 has three samples; "a" is interrupted on its third, before "b" starts
    done_a = len(read_records(tmp_path / "out" / "refcoco_val" / "a.jsonl")[1])
    done_b = len(read_records(tmp_path / "out" / "refcoco_val" / "b.jsonl")[1])
    assert (done_a, done_b) == (2, 0)
    again_a, again_b = ScriptedFakePredictor(REFER_SCRIPT), ScriptedFakePredictor(REFER_SCRIPT)
    plan = _plan(tmp_path, {"a": again_a, "b": again_b}, samples)
    assert run(plan, progress=False) == 8 - done_a - done_b
    assert len(again_a.calls) == 2 and len(again_b.calls) == 4 - done_b
    fresh = ScriptedFakePredictor(REFER_SCRIPT)
    ref = _plan(tmp_path / "fresh", {"a": fresh}, samples)
    run(ref, progress=False)
    resumed = {s.config: s for s in summarise(plan)}
    assert resumed["a"].groups == summarise(ref)[0].groups  # same numbers as an uninterrupted run
    assert run(plan, progress=False) == 0  # nothing left


def test_torn_last_line_is_cut_and_the_sample_rerun(tmp_path):
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    plan = _plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples)
    run(plan, progress=False)
    path = tmp_path / "out" / "refcoco_val" / "cfg.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # killed mid-write of the last record
    again = ScriptedFakePredictor(REFER_SCRIPT)
    assert run(_plan(tmp_path, {"cfg": again}, samples), progress=False) == 1
    assert again.calls == ["green block"]
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert len(read_records(path)[1]) == 4


def test_resume_with_other_settings_is_refused(tmp_path):
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    run(_plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples[:1]), progress=False)
    plan = _plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples)
    plan.identity = {"cfg": {"aggregation": "mean"}}
    with pytest.raises(ResumeMismatchError, match="aggregation: 'pwem' -> 'mean'"):
        run(plan, progress=False)
    plan.overwrite = True
    assert run(plan, progress=False) == 4


def test_summary_counts_only_the_selected_samples(tmp_path):
    samples = ReferDataset(write_refer(tmp_path / "refer"), "refcoco").samples("val")
    run(_plan(tmp_path, {"cfg": ScriptedFakePredictor(REFER_SCRIPT)}, samples), progress=False)
    (s,) = summarise(_plan(tmp_path, {"cfg": None}, samples[:2]))  # --limit 2 after a full run
    assert s.count == s.expected == 2 and s.groups["all"]["mIoU"] == pytest.approx(0.5)
    (p,) = summarise(_plan(tmp_path / "none", {"cfg": None}, samples))
    assert p.count == 0 and not p.complete


def test_store_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "1"}\n')
    with pytest.raises(ResumeMismatchError, match="not an iterprime results file"):
        ResultStore(path, {"format": "iterprime-eval-v1"}).open()
