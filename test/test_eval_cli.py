"""`iterprime eval` end to end on fixture datasets with tiny random-weight models.

Random weights: this checks plumbing only (data -> real Segmenter -> results files -> report,
resume, Ctrl-C, the mask-image variant), never accuracy.
"""

from __future__ import annotations

import json

import pytest
from eval_fixtures import write_phrasecut, write_refer

from iterprime_ros.tools.cli import main
from iterprime_ros.tools.eval import predictors
from iterprime_ros.tools.eval.runner import read_records


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    return write_refer(root / "refer"), write_phrasecut(root / "phrasecut")


def _args(data, models, out, *extra):
    refer, phrasecut = data
    return [
        "eval",
        "--data-root",
        str(refer),
        "--phrasecut-root",
        str(phrasecut),
        "--vlp",
        str(models.blip),
        "--proposals",
        str(models.mask2former),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _lines(path):
    return len(read_records(path)[1])


def test_end_to_end_with_tiny_models_then_resume(
    data, tiny_model_dirs, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    args = _args(
        data,
        tiny_model_dirs,
        out,
        "--dataset",
        "refcoco:val",
        "--dataset",
        "phrasecut",
        "--ablation",
        "full",
        "--ablation",
        "mask-image",
        "--ablation",
        "no-igrs",
    )
    calls = {"n": 0}
    real = predictors.SegmenterPredictor.predict

    def interrupting(self, *a, **k):  # Ctrl-C on the 5th expression
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(predictors.SegmenterPredictor, "predict", interrupting)
    assert main(args) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    files = sorted((out / "refcoco_val").glob("*.jsonl"))
    assert [f.name for f in files] == [
        "pwem-T1.jsonl",
        "pwem-T3-a0.2-feature.jsonl",
        "pwem-T3-a0.2-image.jsonl",
    ]
    assert sum(_lines(f) for f in files) == 4

    monkeypatch.setattr(predictors.SegmenterPredictor, "predict", real)
    assert main(args) == 0
    md = capsys.readouterr().out
    assert (
        sum(_lines(f) for f in files) == 3 * 4
        and _lines(out / "phrasecut_test" / "pwem-T1.jsonl") == 3
    )
    assert "| refcoco | val | 4 |" in md and "| Unseen | 2 |" in md and "40.2" in md
    report = json.loads((out / "results.json").read_text())  # strict JSON (no NaN)
    assert len(report["results"]) == 6 and all(r["complete"] for r in report["results"])
    rec = read_records(out / "refcoco_val" / "pwem-T3-a0.2-image.jsonl")[1][0]
    assert {"intersection", "union", "iou", "position", "ok", "iterations", "time_s"} <= set(rec)

    calls["n"] = 0
    monkeypatch.setattr(predictors.SegmenterPredictor, "predict", interrupting)
    assert main(args) == 0 and calls["n"] == 0  # everything done: nothing runs again


def test_user_errors_are_one_line(data, tmp_path, capsys):
    assert main(["eval", "--dataset", "refcoco", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refcoco: no refs(unc).p") and "Traceback" not in err
    assert main(["eval", "--data-root", str(data[0])]) == 2
    assert "--dataset NAME[:SPLIT] or --table N" in capsys.readouterr().err
    assert main(["eval", "--dataset", "refcocog:testA"]) == 2
    assert main(["eval", "--list-ablations"]) == 0
    assert "position-igrs" in capsys.readouterr().out
