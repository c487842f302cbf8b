"""One validation table and one image-size rule for the command line.

Every setting given with --set, --config or a model flag goes through the node's parameter
table (ros/params.py): an out-of-range value is refused with the parameter's name, before any
model loads, in segment, replay, eval and bench alike. `iterprime segment` checks an image's
header before decoding it: a PNG bomb is refused in one line (a real subprocess, its memory
capped so the old decode-everything path would fail instead of swapping), and a big image is
downscaled for the models with the mask scaled back (tiny random-weight models: plumbing only).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_offline_lose_nothing import png_bomb

from iterprime_ros.tools.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE_BAG = REPO / "data" / "sample.mcap"

BAD = [
    ("proposal_shortest_edge=0", "proposal_shortest_edge", "too small"),
    ("proposal_longest_edge=1", "proposal_longest_edge", "too small"),
    ("binarize_threshold=2", "binarize_threshold", "too large"),
    ("binarize_threshold=nan", "binarize_threshold", "not a finite number"),
    ("max_text_tokens=100000", "max_text_tokens", "too large"),
    ("igrs_iterations=1000", "igrs_iterations", "too large"),
    ("igrs_alpha=0", "igrs_alpha", "too small"),
    ("proposal_threshold=-1", "proposal_threshold", "too small"),
    ("device=tpu", "device", "not a device"),
    ("parser=regex", "parser", "not allowed"),
]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("settings") / "scene.png"
    img = np.zeros((48, 64, 3), np.uint8)
    img[10:30, 10:40] = (30, 30, 220)
    cv2.imwrite(str(path), img)
    return path


def _commands(image: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "segment": ["segment", str(image), "the cup"],
        "replay": ["replay", str(SAMPLE_BAG), str(tmp / "out.mcap")],
        "eval": ["eval", "--dataset", "refcoco:val", "--data-root", str(tmp)],
        "bench": ["bench", "--model-dir", str(tmp / "models")],
    }


@pytest.mark.parametrize("setting, name, why", BAD)
def test_every_out_of_range_setting_is_refused_with_its_name(
    setting: str,
    name: str,
    why: str,
    image_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command, argv in _commands(image_file, tmp_path).items():
        assert main([*argv, "--set", setting]) == 2, command
        err = capsys.readouterr().err
        assert f"parameter '{name}'" in err and why in err, (command, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.mcap").exists() and not (tmp_path / "models").exists()


def test_config_files_and_pairs_use_the_same_table(
    image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "params.yaml"
    config.write_text("iterprime_segmenter:\n  ros__parameters:\n    max_text_tokens: 100000\n")
    for argv in (
        ["segment", str(image_file), "the cup", "--config", str(config)],
        ["replay", str(SAMPLE_BAG), str(tmp_path / "out.mcap"), "--config", str(config)],
    ):
        assert main(argv) == 2
        assert "parameter 'max_text_tokens'" in capsys.readouterr().err
    argv = ["segment", str(image_file), "the cup", "--set", "proposal_shortest_edge=900"]
    assert main([*argv, "--set", "proposal_longest_edge=800"]) == 2
    assert "proposal_longest_edge' must be >= proposal_shortest_edge" in capsys.readouterr().err


def _limit_memory(limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def test_segment_refuses_a_png_bomb_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(30000, 30000))
    assert bomb.stat().st_size < 3_000_000  # decodes to 30000 x 30000 x 3 = 2.7 GB
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "iterprime_ros.tools.cli", "segment", str(bomb), "the cup"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: _limit_memory(2 * 1024**3),
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "900000000 pixels" in proc.stderr and "Refused" in proc.stderr


def test_segment_downscales_a_big_image_and_scales_the_mask_back(
    tiny_model_dirs: object, image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(image_file)), (256, 192)))
    mask = tmp_path / "mask.png"
    argv = ["segment", str(big), "the red cup", "--json", "--mask", str(mask)]
    argv += ["--vlp", str(tiny_model_dirs.blip), "--proposals", str(tiny_model_dirs.mask2former)]
    argv += ["--device", "cpu", "--max-image-pixels", str(64 * 48)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    assert "downscaled to 64 x 48" in err
    payload = json.loads(out)
    assert payload["image_size"] == [192, 256]
    if payload["success"]:
        assert cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).shape == (192, 256)
    argv[argv.index("--max-image-pixels") + 1] = str(192 * 256 // 17)
    assert main(argv) == 2 and "refused" in capsys.readouterr().err
