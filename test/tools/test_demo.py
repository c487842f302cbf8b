"""`iterprime demo` (the README's main job) without real weights: the loud world fallback.

The world model here is a tiny one with RANDOM weights, built by the test: it checks the
plumbing (banner, bag in, one result per command, overlays, IoU against the scene's true
masks), not segmentation quality -- docs/world_results.md has the trained model's figures.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from world_fixtures import TINY, save_random_world_model

from iterprime_ros.tools import cli
from iterprime_ros.tools.demo import (
    WORLD_COMMANDS_PER_SCENE,
    WORLD_SCENES,
    build_world_bag,
    read_result_masks,
)


@pytest.fixture(scope="module")
def random_world_model(tmp_path_factory) -> Path:
    # 12 text layers: with no recorded layer the demo uses the default Grad-CAM layer 8
    # (world/evaluate.py recommended_gradcam_layer)
    cfg = dataclasses.replace(TINY, text_layers=12)
    return save_random_world_model(tmp_path_factory.mktemp("world_random"), cfg, seed=0)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No real weights: an empty Hugging Face cache, offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_demo_without_weights_runs_the_world_loudly(
    random_world_model, offline, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("ITERPRIME_WORLD_MODEL", str(random_world_model))
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "NO REAL WEIGHTS INSTALLED" in text and "iterprime download" in text
    n = WORLD_SCENES * WORLD_COMMANDS_PER_SCENE
    rows = read_result_masks(out / "results.mcap")
    assert len(rows) == n, "one result per command"
    assert len(list((out / "overlays").glob("*.png"))) == n
    # The printed IoU of each command is the IoU of the bag's mask with that scene's true mask.
    _, commands = build_world_bag(tmp_path / "again.mcap")
    printed = [
        float(m.group(1))
        for m in re.finditer(r"^\s*(\d\.\d\d)\s+(attribute|absolute|relation)\s", text, re.M)
    ]
    assert len(printed) == n
    for (command, ok, _error, mask), truth, shown in zip(rows, commands, printed):
        assert command == truth.text
        iou = (
            np.logical_and(mask, truth.truth).sum() / np.logical_or(mask, truth.truth).sum()
            if ok
            else 0.0
        )
        assert shown == pytest.approx(iou, abs=0.006)
    assert f"world mIoU {np.mean(printed):.3f}"[:-1] in text


def test_demo_without_any_model_says_what_is_missing(offline, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ITERPRIME_WORLD_MODEL", str(tmp_path / "nowhere"))
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "world model is missing" in err and str(tmp_path / "nowhere") in err
