"""`iterprime segment` / `python -m iterprime_ros.tools.cli`: the whole path from saved tiny
folders, and the
one-line errors. Random weights: the JSON fields and files are checked, not the answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from iterprime_ros.tools.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, sample_image):
    path = tmp_path_factory.mktemp("cli") / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(sample_image, cv2.COLOR_RGB2BGR))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    return subprocess.run(
        [sys.executable, "-m", "iterprime_ros.tools.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_segment_subprocess_json_and_overlay(tiny_model_dirs, image_file, tmp_path):
    overlay, mask = tmp_path / "overlay.png", tmp_path / "mask.png"
    proc = _run(
        "segment",
        str(image_file),
        "could you pick up the red cup on the left please",
        *tiny_model_dirs.cli_args(),
        "--json",
        "--out",
        str(overlay),
        "--mask",
        str(mask),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["success"] is True and data["error"] == ""
    assert data["command"] == "could you pick up the red cup on the left please"
    assert data["expression"] == "the red cup on the left" and data["primary_word"] == "cup"
    assert data["image_size"] == [120, 200] and data["num_proposals"] == 8
    assert len(data["centroid"]) == 2 and len(data["grasp_point"]) == 2 and len(data["bbox"]) == 4
    assert data["mask_area"] > 0 and 1 <= data["iterations"] <= 3 and 0 < data["itm_score"] < 1
    assert {"parse", "proposals", "image_encoding", "igrs", "selection", "total"} <= set(
        data["timings"]
    )
    assert data["overlay"] == str(overlay)
    picture = cv2.imread(str(overlay))
    assert picture is not None and picture.shape == (120, 200, 3)
    saved_mask = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    assert saved_mask.shape == (120, 200) and int((saved_mask == 255).sum()) == data["mask_area"]


def test_missing_image_subprocess_one_line_no_traceback(tmp_path):
    proc = _run("segment", str(tmp_path / "missing.png"), "the cup")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: image file not found: {tmp_path / 'missing.png'}"


def _segment(models, image_file, text: str, *extra: str) -> int:
    """`iterprime segment` in this process on the tiny models; its exit code."""
    return main(["segment", str(image_file), text, *models.cli_args(), *extra])


def test_segment_prints_the_expression_centroid_and_latency(tiny_model_dirs, image_file, capsys):
    rc = _segment(
        tiny_model_dirs, image_file, "the man on the right", "--set", "igrs_iterations=2"
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "expression:  the man on the right" in out and "centroid:" in out and "latency:" in out


def test_command_failure_exits_1_with_reason(tiny_model_dirs, image_file, capsys):
    rc = _segment(tiny_model_dirs, image_file, "please", "--json")
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["success"] is False and "names no object" in data["error"]


def _error_of(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return rc, err.strip()


def test_an_unreadable_image_exits_2_with_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    rc, err = _error_of(["segment", str(bad), "the cup"], capsys)
    assert (
        rc == 2
        and err == f"error: cannot read image {bad}: not an image file or an unsupported format"
    )
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    rc, err = _error_of(["segment", str(empty), "the cup"], capsys)
    assert rc == 2 and "cannot read image" in err


def test_a_missing_model_folder_exits_2_naming_it(
    image_file, tmp_path, tiny_model_dirs, capsys, monkeypatch
):
    rc, err = _error_of(
        ["segment", str(image_file), "the cup", "--vlp", str(tmp_path / "no_model")], capsys
    )
    assert rc == 2 and err == f"error: model folder '{tmp_path / 'no_model'}' does not exist"
    monkeypatch.chdir(tmp_path)
    rc, err = _error_of(
        [
            "segment",
            str(image_file),
            "the cup",
            "--vlp",
            str(tiny_model_dirs.blip),
            "--proposals",
            "nobody-xyz/absent-model",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert rc == 2 and "iterprime download --proposals nobody-xyz/absent-model" in err


def test_bad_settings_and_output_folder(image_file, tmp_path, capsys):
    rc, err = _error_of(
        ["segment", str(image_file), "the cup", "--set", "gradcam_layer=eight"], capsys
    )
    assert rc == 2 and err == "error: --set gradcam_layer: expected an integer, got 'eight'"
    rc, err = _error_of(
        ["segment", str(image_file), "the cup", "--set", "aggregation=max"], capsys
    )
    assert rc == 2 and err.startswith(
        "error: --set: parameter 'aggregation' = 'max': not allowed; allowed: one of: pwem"
    )
    rc, err = _error_of(
        ["segment", str(image_file), "the cup", "--out", str(tmp_path / "no" / "o.png")], capsys
    )
    assert rc == 2 and err.startswith("error: output folder does not exist")


def test_segment_refuses_its_input_a_folder_or_an_unknown_picture_type(
    tiny_model_dirs, image_file, tmp_path, capsys
):
    src = tmp_path / "scene.png"  # a copy: a failing run must not damage the shared image
    shutil.copy(image_file, src)
    before = src.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(src)
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "mine.png").write_bytes(b"keep")
    cases = [
        (["--out", str(src)], "refusing to write --out"),
        (["--mask", str(src)], "it is the input image"),
        (["--mask", str(link)], "it is the input image"),
        (["--out", str(folder)], f"--out {folder} is a folder"),
        (["--mask", str(folder)], f"--mask {folder} is a folder"),
        (["--out", str(tmp_path / "o.txt")], "extension '.txt'"),
        (["--mask", str(tmp_path / "mask")], "extension '(none)'"),
        (["--out", str(tmp_path / "no" / "o.png")], "output folder does not exist"),
        (["--out", str(tmp_path / "a.png"), "--mask", str(tmp_path / "a.png")], "both name"),
    ]
    for extra, why in cases:
        rc, err = _error_of(
            ["segment", str(src), "the cup", *tiny_model_dirs.cli_args(), *extra], capsys
        )
        assert rc == 2 and why in err and not err.startswith("error: error"), (extra, err)
    assert src.read_bytes() == before, "the input image is untouched"
    assert [p.name for p in folder.iterdir()] == ["mine.png"] and not (tmp_path / "a.png").exists()
    # checked before the models load: a missing model folder is never reached
    rc, err = _error_of(
        ["segment", str(src), "the cup", "--vlp", str(tmp_path / "none"), "--out", str(link)],
        capsys,
    )
    assert rc == 2 and "it is the input image" in err


def test_debug_is_accepted_after_the_subcommand_and_shows_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / "missing.png")
    assert main(["segment", missing, "the cup"]) == 2
    assert "image file not found" in capsys.readouterr().err
    # after the subcommand, as the error messages suggest: the exception propagates (traceback)
    from iterprime_ros.tools.cli import UserError

    with pytest.raises(UserError, match="image file not found"):
        main(["segment", missing, "the cup", "--debug"])
    with pytest.raises(UserError):
        main(["--debug", "segment", missing, "the cup"])


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "x.png", "cup"],
        ["eval", "--world"],
        ["bench"],
        ["demo"],
        ["replay", "in", "out"],
    ],
)
def test_every_device_flag_takes_the_same_values(argv, capsys):
    from iterprime_ros.tools.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(argv + ["--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        parser.parse_args(argv + ["--device", "gpu"])
    assert "not a device" in capsys.readouterr().err
