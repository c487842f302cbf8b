"""`from iterprime_ros import Segmenter, SegmenterSettings` works, lazily.

Why lazy: every ROS message import (`iterprime_ros.msg`) imports the package; it must not pull
in torch and transformers.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_library_names_are_the_pipeline_classes():
    import iterprime_ros
    from iterprime_ros import SegmentationResult, Segmenter, SegmenterSettings, pipeline

    assert Segmenter is pipeline.Segmenter
    assert SegmenterSettings is pipeline.SegmenterSettings
    assert SegmentationResult is pipeline.SegmentationResult
    assert set(iterprime_ros.__all__) >= {"Segmenter", "SegmenterSettings"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        iterprime_ros.Nope  # noqa: B018


def test_importing_the_package_or_its_messages_loads_no_torch():
    code = (
        "import sys, iterprime_ros; from iterprime_ros.msg import Segmentation; "
        "print(sorted(m for m in ('torch', 'transformers', 'iterprime_ros.pipeline') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_readme_library_example_runs_on_tiny_models(tiny_model_dirs):
    """The README's Python example, on tiny random-weight models (plumbing only, not accuracy)."""
    import numpy as np

    from iterprime_ros import Segmenter, SegmenterSettings

    settings = SegmenterSettings(
        device="cpu",
        vlp_model=str(tiny_model_dirs.blip),
        proposal_model=str(tiny_model_dirs.mask2former),
    )
    segmenter = Segmenter(settings)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    result = segmenter.segment(rgb, "the red cup on the left")
    assert result.command == "the red cup on the left"
    assert result.success == (result.mask is not None)
    if result.success:
        assert result.mask.shape == (96, 128)
