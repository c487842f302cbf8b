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
        *models.cli_args(),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _sweep_args(data, models, out, limit: int, sweep: str):
    """A --sweep over the first `limit` refcoco val expressions, one configuration (no IGRS)."""
    return _args(
        data,
        models,
        out,
        *("--dataset", "refcoco:val", "--ablation", "no-igrs"),
        *("--limit", str(limit), "--sweep", sweep),
    )


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


def test_sweep_runs_each_value_and_compares_them(data, tiny_model_dirs, tmp_path, capsys):
    """--sweep gradcam_layer=4,8: one resumable run per layer, one comparison table. Random
    weights: plumbing only.
    """
    out = tmp_path / "sweep"
    args = _sweep_args(data, tiny_model_dirs, out, limit=2, sweep="gradcam_layer=4,8")
    assert main(args) == 0
    md = capsys.readouterr().out
    for layer in (4, 8):
        header = read_records(out / f"gradcam_layer={layer}" / "refcoco_val" / "pwem-T1.jsonl")[0]
        assert header["identity"]["gradcam_layer"] == layer
    table = json.loads((out / "sweep.json").read_text())
    assert table["key"] == "gradcam_layer" and list(table["values"]) == ["4", "8"]
    col = "refcoco val pwem-T1 mIoU"
    assert set(table["values"]["4"]) == {col} and table["best"][col] in ("4", "8")
    assert "| gradcam_layer | refcoco val pwem-T1 mIoU |" in md and "| 8 | " in md


def test_sweep_table_marks_the_best_value_per_column(tmp_path):
    from iterprime_ros.tools.eval.cli import sweep_table

    def report(path, miou, oiou):
        path.parent.mkdir(parents=True)
        results = [
            {
                "dataset": "refcoco",
                "split": "val",
                "config": "c",
                "groups": {"all": {"mIoU": miou}},
            },
            {
                "dataset": "phrasecut",
                "split": "test",
                "config": "c",
                "groups": {"all": {"oIoU": oiou}},
            },
        ]
        path.write_text(json.dumps({"results": results}))
        return path

    runs = [
        ("6", report(tmp_path / "a" / "results.json", 0.40, 0.30)),
        ("8", report(tmp_path / "b" / "results.json", 0.45, None)),
        ("9", tmp_path / "missing" / "results.json"),
    ]
    t = sweep_table("gradcam_layer", runs)
    assert t["best"] == {"refcoco val c mIoU": "8", "phrasecut test c oIoU": "6"}
    assert "| 8 | **45.0** | — |" in t["markdown"] and "| 9 | — | — |" in t["markdown"]


def test_sweep_errors_are_one_line(data, capsys, tmp_path):
    base = ["eval", "--data-root", str(data[0]), "--dataset", "refcoco:val"]
    assert main([*base, "--sweep", "gradcam_layer=6"]) == 2
    assert "at least two values" in capsys.readouterr().err
    assert main([*base, "--sweep", "no_such_field=1,2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such_field" in err and "Traceback" not in err
    assert main([*base, "--sweep", "gradcam_layer=six,seven"]) == 2
    assert "expected an integer" in capsys.readouterr().err


def test_fp16_sweep_on_cpu_says_both_rows_are_fp32(data, tiny_model_dirs, tmp_path, capsys):
    out = tmp_path / "fp16"
    args = _sweep_args(data, tiny_model_dirs, out, limit=1, sweep="half_precision=false,true")
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "fp16 runs only on CUDA; on cpu every value runs in fp32" in captured.err
    assert "| half_precision |" in captured.out
    assert (out / "half_precision=true" / "results.json").is_file()


@pytest.mark.parametrize(
    "dataset, name",
    [
        ("refcoco:val", "refcoco/instances.json"),
        ("refcoco:val", "refcoco/refs(unc).p"),
        ("phrasecut", "refer_test.json"),
    ],
)
def test_the_read_limit_follows_max_image_pixels(tmp_path, capsys, dataset, name):
    """Every annotation file eval reads is held to the read limit of this run's
    --max-image-pixels (image_size.read_limit_bytes, the rule replay and the player use): a
    file one byte over it is refused before it is read, with one line naming the file, its size
    and the limit; raising --max-image-pixels by one pixel moves the limit past it; a file of
    exactly the limit is read. --report-only: the data is read, no model is loaded.
    """
    from iterprime_ros.image_size import read_limit_bytes

    root = write_phrasecut(tmp_path / "pc") if dataset == "phrasecut" else None
    root = root or write_refer(tmp_path / "refer")
    path = root / name
    limit = read_limit_bytes(1)
    assert read_limit_bytes(2) > limit + 1  # one pixel more moves the limit past the file
    body = path.read_bytes()
    # JSON ends at its closing bracket and a pickle at its STOP opcode: padding after them
    # changes the file's size, not what it holds
    path.write_bytes(body + b" " * (limit + 1 - len(body)))
    root_flag = "--phrasecut-root" if dataset == "phrasecut" else "--data-root"
    base = ["eval", "--dataset", dataset, root_flag, str(root), "--report-only", "--no-progress"]
    base += ["--out", str(tmp_path / "out")]

    assert main([*base, "--max-image-pixels", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {path}: {limit + 1} bytes, over the read limit of {limit} bytes; refused "
        "before reading it (the limit follows --max-image-pixels, here 1: check that this is "
        "the dataset's annotation file, and raise it only for a file you trust)\n"
    )
    assert main([*base, "--max-image-pixels", "2"]) == 0
    assert "over the read limit" not in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:-1])  # exactly the limit: read
    assert main([*base, "--max-image-pixels", "1"]) == 0
    shown = "phrasecut | test" if dataset == "phrasecut" else "refcoco | val"
    count = 3 if dataset == "phrasecut" else 4  # every sample of the file was read
    assert f"| {shown} | `pwem-T3-a0.2-feature` | default | 0/{count} (partial) |" in (
        capsys.readouterr().out
    )


def test_resuming_with_another_max_image_pixels_is_refused(
    data, tiny_model_dirs, tmp_path, capsys
):
    """--max-image-pixels decides which images are downscaled, so it changes the numbers: a
    results folder made with one value does not resume under another. The default is left out
    of the identity, so results files written before the flag existed still resume. Random
    weights: plumbing only.
    """
    out = tmp_path / "out"
    base = _args(data, tiny_model_dirs, out, "--dataset", "refcoco:val", "--ablation", "no-igrs")
    assert main([*base, "--limit", "1"]) == 0
    header = read_records(out / "refcoco_val" / "pwem-T1.jsonl")[0]
    assert "max_image_pixels" not in header["identity"]
    capsys.readouterr()
    assert main([*base, "--limit", "1", "--max-image-pixels", "1000"]) == 2
    err = capsys.readouterr().err
    assert "holds results made with other settings (max_image_pixels: None -> 1000)" in err, err
    assert main([*base, "--limit", "1"]) == 0  # the same settings resume
