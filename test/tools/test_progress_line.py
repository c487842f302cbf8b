"""The CLI's stage line: drawn on a terminal only, with each stage and IGRS pass, then cleared."""

import io

from iterprime_ros.pipeline import Segmenter, SegmenterSettings
from iterprime_ros.tools.progress import StageLine


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_written_to_a_pipe():
    out = io.StringIO()
    line = StageLine(out)
    line.show("loading models")
    line.pipeline("igrs", 1)
    line.done()
    assert out.getvalue() == ""


def test_stages_of_a_real_command_on_a_terminal(tiny_model_dirs):
    """Tiny random-weight models (plumbing only): every stage of one command is shown."""
    out = _Terminal()
    settings = SegmenterSettings(
        device="cpu",
        vlp_model=str(tiny_model_dirs.blip),
        proposal_model=str(tiny_model_dirs.mask2former),
        stop_rule="none",
        igrs_iterations=3,
    )
    line = StageLine(out, passes=settings.igrs_iterations)
    line.show("loading models")
    segmenter = Segmenter(settings)
    import numpy as np

    rgb = np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    segmenter.segment(rgb, "the red cup", progress=line.pipeline)
    line.done()
    text = out.getvalue()
    shown = [part.split(" (")[0].strip() for part in text.split("\r") if part.strip()]
    assert shown[0] == "[iterprime] loading models"
    for stage in ("mask proposals", "image encoding", "text pass 1/3", "text pass 3/3"):
        assert f"[iterprime] {stage}" in shown, shown
    assert text.endswith("\r")  # the line is cleared at the end
