"""fp16-vs-fp32 comparison (tools/bench/precision.py) on the committed world model, CPU.

On CPU the fp16 side is emulated (an fp16 copy of the model); the test checks the plumbing
and that the two runs really differ in precision, not a figure.
"""

from __future__ import annotations

import pytest
import torch

from iterprime_ros.models.blip import BlipITMBackend
from iterprime_ros.tools.bench.precision import compare_precision, format_summary, half_copy
from iterprime_ros.tools.world.evaluate import world_model_folder


def test_half_copy_leaves_the_fp32_model_alone():
    fp32 = BlipITMBackend(world_model_folder(), device="cpu", gradcam_layer=3)
    fp16 = half_copy(fp32)
    assert fp16.dtype == torch.float16 and fp32.dtype == torch.float32
    assert next(fp16.model.parameters()).dtype == torch.float16
    assert next(fp32.model.parameters()).dtype == torch.float32
    image = torch.randint(0, 256, (60, 80, 3), dtype=torch.uint8).numpy()
    assert fp16.encode_image(image).embeds.dtype == torch.float16


def test_compare_precision_reports_every_figure():
    result = compare_precision(n_expressions=2, device="cpu")
    assert result["expressions"] == 2 and "emulated" in result["fp16"]
    s = result["summary"]
    assert 0.0 < s["heat_max_abs_worst"] < 0.5  # fp16 rounding shows, but small
    assert 0.0 <= s["answer_iou"] <= 1.0 and 0.0 <= s["iou_fp16"] <= 1.0
    assert "mIoU vs ground truth" in format_summary(result)


def test_device_flag_is_the_shared_one(capsys):
    """--device takes what every other command takes (cuda:N included), checked before any
    work starts.
    """
    from iterprime_ros.tools.bench.precision import main

    with pytest.raises(SystemExit):
        main(["--device", "gpu"])
    assert "not a device; allowed: auto, cpu, cuda or cuda:N" in capsys.readouterr().err
