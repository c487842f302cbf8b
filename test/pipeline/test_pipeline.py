"""Segmenter: end to end on tiny random-weight models (plumbing only), caching, failures as
results.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from iterprime_ros.core.backend import PassOutput
from iterprime_ros.pipeline import SegmentationResult, Segmenter, SegmenterSettings, image_key


class Counting:
    """Wraps a backend and counts calls to the per-image methods."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = {"encode_image": 0, "propose": 0, "text_pass": 0}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_image(self, image):
        self.calls["encode_image"] += 1
        return self.inner.encode_image(image)

    def propose(self, image):
        self.calls["propose"] += 1
        return self.inner.propose(image)

    def text_pass(self, emb, text, keep):
        self.calls["text_pass"] += 1
        return self.inner.text_pass(emb, text, keep)


class FakeVLP:
    """Hand-made VLP: whitespace tokens, attention peaked on patch `hot` for every token."""

    grid = 4

    def __init__(self, hot: int = 5, fail: BaseException | None = None):
        self.hot, self.fail = hot, fail

    def encode_image(self, image):
        return float(image.mean())

    def token_offsets(self, text):
        import re

        return [None] + [(m.start(), m.end()) for m in re.finditer(r"\S+", text)] + [None]

    def text_pass(self, emb, text, keep):
        if self.fail is not None:
            raise self.fail
        n = len(self.token_offsets(text))
        att = torch.full((2, n, 17), 0.01)
        att[:, :, 1 + self.hot] = 1.0
        att = att / att.sum(-1, keepdim=True)
        valid = torch.ones(n, dtype=torch.bool)
        valid[-1] = False
        return PassOutput(torch.tensor([0.0, 1.0]), att, torch.ones_like(att), valid)


class FakeProposals:
    def __init__(self, masks: np.ndarray):
        self.masks = masks

    def propose(self, image):
        return self.masks


def _fake_segmenter(masks=None, vlp=None, **settings):
    h, w = 40, 40
    if masks is None:
        masks = np.zeros((2, h, w), bool)
        masks[0, 25:, 25:] = True  # far from the heat peak
        masks[1, 5:25, 5:25] = True  # covers patch 5 (rows/cols 10-20 after upsampling): the peak
    s = SegmenterSettings(**{"igrs_iterations": 1, "parser": "spacy", **settings})
    return Segmenter.from_backends(
        vlp or FakeVLP(), FakeProposals(masks), s, raise_unexpected=True
    )


# ------------------------------------------------------------------ whole pipeline, tiny models
@pytest.fixture()
def tiny_segmenter(tiny_blip, tiny_proposals):
    return Segmenter.from_backends(
        Counting(tiny_blip),
        Counting(tiny_proposals),
        SegmenterSettings(device="cpu"),
        raise_unexpected=True,
    )


def test_segment_end_to_end_from_saved_folders(tiny_model_dirs, sample_image):
    """Settings -> registry -> loading -> backends -> core -> result. Random weights: plumbing
    only.
    """
    s = SegmenterSettings(
        device="cpu",
        vlp_model=str(tiny_model_dirs.blip),
        proposal_model=str(tiny_model_dirs.mask2former),
    )
    seg = Segmenter(s, raise_unexpected=True)
    assert seg.vlp.gradcam_layer == 6  # gradcam_layer -1: BLIP's own layer (LAVIS)
    r = seg.segment(sample_image, "could you pick up the red cup on the left please")
    assert r.success, r.error
    h, w = sample_image.shape[:2]
    assert r.expression == "the red cup on the left" and r.primary_word == "cup"
    assert r.mask.shape == (h, w) and r.mask.dtype == bool and r.mask.any()
    assert r.heatmap.shape == (h, w) and r.heatmap.dtype == np.float32
    assert 0.0 <= r.heatmap.min() and r.heatmap.max() <= 1.0
    assert 0 <= r.centroid[0] < w and 0 <= r.centroid[1] < h
    assert r.mask[r.grasp_point[1], r.grasp_point[0]]
    x, y, bw, bh = r.bbox
    assert bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
    assert 1 <= r.iterations <= 3 and len(r.itm_scores) == r.iterations and 0 < r.itm_score < 1
    assert r.score >= 1.0 and r.num_proposals == 8 and r.proposal_index is not None
    for stage in (
        "normalise",
        "parse",
        "proposals",
        "image_encoding",
        "igrs",
        "igrs_pass_0",
        "selection",
        "total",
    ):
        assert stage in r.timings, stage
    assert r.to_dict()["mask_area"] == int(r.mask.sum())


def test_second_command_on_same_frame_reuses_proposals_and_embedding(
    tiny_segmenter, sample_image, capsys
):
    seg = tiny_segmenter
    seg.warmup()
    seg.segment(np.zeros((32, 48, 3), np.uint8), "the cup")  # warm up kernels, not this frame
    vlp, props = seg.vlp, seg.proposals
    base = dict(vlp.calls), dict(props.calls)

    t0 = time.perf_counter()
    first = seg.segment(sample_image, "the red cup on the left")
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = seg.segment(sample_image.copy(), "the man on the right")  # same pixels, new array
    t_second = time.perf_counter() - t0

    assert first.success and second.success
    assert vlp.calls["encode_image"] - base[0]["encode_image"] == 1
    assert props.calls["propose"] - base[1]["propose"] == 1
    assert not first.frame_cached and second.frame_cached
    assert "proposals" in first.timings and "proposals" not in second.timings
    assert "image_encoding" not in second.timings
    assert t_second < t_first
    with capsys.disabled():
        print(
            f"\n[tiny models, CPU] first command on a frame: {t_first * 1000:.0f} ms; "
            f"second command on the same frame: {t_second * 1000:.0f} ms"
        )

    # a different frame computes again; an explicit frame id is trusted as the frame identity
    other = sample_image[::-1].copy()
    seg.segment(other, "the cup")
    assert props.calls["propose"] - base[1]["propose"] == 2
    seg.segment(other, "the cup", frame_id="stamp-1")
    seg.segment(
        np.zeros_like(other), "the cup", frame_id="stamp-1"
    )  # same id: cached, by contract
    assert props.calls["propose"] - base[1]["propose"] == 3
    assert seg.stats["frame_hits"] >= 2


def test_frame_cache_is_bounded():
    seg = _fake_segmenter(frame_cache_size=1)
    counting = Counting(seg.proposals)
    seg.proposals = counting
    a, b = np.zeros((40, 40, 3), np.uint8), np.ones((40, 40, 3), np.uint8)
    for img in (a, b, a):
        assert seg.segment(img, "the cup").success
    assert counting.calls["propose"] == 3  # a was evicted by b


def test_image_key_depends_on_pixels_and_shape():
    a = np.zeros((4, 6, 3), np.uint8)
    assert image_key(a) == image_key(a.copy())
    b = a.copy()
    b[0, 0, 0] = 1
    assert image_key(a) != image_key(b) and image_key(a) != image_key(a.reshape(6, 4, 3))


# ------------------------------------------------------------------ failures are results
@pytest.mark.parametrize(
    "command, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("please", "names no object"),
        ("je voudrais la tasse rouge", "does not look like English"),
    ],
)
def test_bad_commands_fail_with_a_reason(command, reason):
    r = _fake_segmenter().segment(np.zeros((40, 40, 3), np.uint8), command)
    assert isinstance(r, SegmentationResult) and not r.success and reason in r.error
    assert r.command == command and r.mask is None


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((40, 40), np.uint8),
        np.zeros((40, 40, 3), np.float32),
        "not an image",
        np.zeros((1, 1, 3), np.uint8),
    ],
)
def test_bad_images_fail_with_a_reason(image):
    r = _fake_segmenter().segment(image, "the cup")
    assert not r.success and "image" in r.error


def test_nothing_selected_fails_and_best_heat_falls_back():
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 30:, 30:] = True  # far from the peak
    r = _fake_segmenter(masks).segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    assert not r.success and r.error.startswith(
        "nothing selected: no proposal covers the heat-map peak"
    )
    assert r.heatmap is not None and r.expression == "the cup"
    r = _fake_segmenter(masks, empty_selection="best_heat").segment(
        np.zeros((40, 40, 3), np.uint8), "the cup"
    )
    assert r.success and r.flagged and r.proposal_index == 0


def test_fake_backends_pick_the_peak_mask():
    r = _fake_segmenter().segment(np.zeros((40, 40, 3), np.uint8), "the red cup")
    assert r.success and r.proposal_index == 1 and r.bbox == (5, 5, 20, 20)


@pytest.mark.parametrize(
    "exc",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
        RuntimeError("CUDA error: out of memory"),
    ],
)
def test_out_of_memory_fails_the_command_only(exc):
    seg = _fake_segmenter(vlp=FakeVLP(fail=exc))
    freed: list[str] = []  # the CUDA branch, watched without a GPU (free_cuda_cache in real use)
    seg.free_gpu_memory = lambda: freed.append("emptied")
    r = seg.segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    assert not r.success and r.error.startswith("out of GPU memory during igrs")
    assert freed == ["emptied"], "the cache must be given back after an OOM"
    seg.vlp.fail = None
    assert seg.segment(
        np.zeros((40, 40, 3), np.uint8), "the cup"
    ).success  # the next command works
    assert freed == ["emptied"], "only an OOM frees memory"


def test_an_ordinary_error_is_not_taken_for_out_of_memory():
    seg = _fake_segmenter(vlp=FakeVLP(fail=RuntimeError("CUDA error: device-side assert")))
    freed: list[str] = []
    seg.free_gpu_memory = lambda: freed.append("emptied")
    with pytest.raises(RuntimeError, match="device-side assert"):  # raise_unexpected: a bug
        seg.segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    assert freed == []


def test_unexpected_errors_become_results_unless_asked_to_raise():
    seg = _fake_segmenter(vlp=FakeVLP(fail=KeyError("boom")))
    with pytest.raises(KeyError):
        seg.segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    seg.raise_unexpected = False
    r = seg.segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    assert not r.success and r.error.startswith("internal error: KeyError")


def test_settings_validate_and_map_to_core():
    s = SegmenterSettings(
        igrs_iterations=1, aggregation="gvlp", extra_command_phrases=("", "robbie")
    )
    assert not s.igrs_settings().enabled and s.igrs_settings().mode == "gvlp"
    assert "robbie" in s.normaliser_settings().leading_phrases and s.extra_command_phrases == (
        "robbie",
    )
    with pytest.raises(ValueError):
        SegmenterSettings(aggregation="max")
    with pytest.raises(ValueError):
        SegmenterSettings(prompt_template="no placeholder")
    with pytest.raises(ValueError):
        SegmenterSettings(empty_selection="random")
    assert s.replace(gradcam_layer=6).gradcam_layer == 6
    with pytest.raises(ValueError, match="gradcam_layer must be -1"):
        SegmenterSettings(gradcam_layer=-2)


def test_settings_from_the_node_config_file():
    """config/segment.yaml's pipeline parameters are SegmenterSettings fields (names match)."""
    from pathlib import Path

    import yaml

    params = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "config" / "segment.yaml").read_text()
    )
    params = params["/**/iterprime_segmenter"]["ros__parameters"]
    s = SegmenterSettings.from_dict(params, ignore_unknown=True)
    assert s.gradcam_layer == params["gradcam_layer"] and s.aggregation == params["aggregation"]
    assert s.primary_tags == tuple(params["primary_tags"]) and s.extra_command_phrases == ()
    from iterprime_ros.ros.params import SPECS  # the node's parameter table (no rclpy import)

    node_only = {name for name, spec in SPECS.items() if not spec.setting}
    assert set(params) - set(SegmenterSettings.field_names()) <= node_only
    with pytest.raises(ValueError, match="unknown setting"):
        SegmenterSettings.from_dict({"gradcam_layr": 6})


class ScriptedITMVLP(FakeVLP):
    """FakeVLP whose ITM match probability follows a script, one value per text pass."""

    def __init__(self, probabilities: list[float]):
        super().__init__()
        self.probabilities, self.calls = probabilities, 0

    def text_pass(self, emb, text, keep):
        out = super().text_pass(emb, text, keep)
        p = self.probabilities[min(self.calls, len(self.probabilities) - 1)]
        self.calls += 1
        return PassOutput(
            torch.tensor([0.0, math.log(p / (1 - p))]),
            out.attention,
            out.gradient,
            out.token_valid,
        )


def test_itm_score_is_that_of_the_pass_whose_map_is_returned():
    # soft_itm: S_0 = 0.5; S_1 = 0.3 * mean(1 - O_0) < 0.5 -> stop and return pass 0's map
    seg = _fake_segmenter(
        vlp=ScriptedITMVLP([0.5, 0.3, 0.9]), igrs_iterations=3, stop_rule="soft_itm"
    )
    r = seg.segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    assert r.success and r.stop_reason == "itm_drop"
    assert r.itm_scores == pytest.approx([0.5, 0.3]) and r.itm_score == pytest.approx(0.5)
    # the reference rule returns the last pass run: its score
    seg = _fake_segmenter(
        vlp=ScriptedITMVLP([0.5, 0.6, 0.4]), igrs_iterations=3, stop_rule="reference"
    )
    r = seg.segment(np.zeros((40, 40, 3), np.uint8), "the cup")
    assert r.itm_scores == pytest.approx([0.5, 0.6, 0.4]) and r.itm_score == pytest.approx(0.4)


def test_progress_reports_stages_and_each_igrs_pass(tiny_segmenter, sample_image):
    seen: list[tuple[str, int]] = []
    r = tiny_segmenter.segment(
        sample_image, "the red cup", progress=lambda s, p: seen.append((s, p))
    )
    assert r.success, r.error
    stages = [s for s, _ in seen]
    assert stages[:2] == ["proposals", "image_encoding"] and stages[-1] == "selection"
    assert [p for s, p in seen if s == "igrs"] == list(range(1, r.iterations + 1))
    seen.clear()
    again = tiny_segmenter.segment(
        sample_image, "the red cup", progress=lambda s, p: seen.append((s, p))
    )
    assert again.frame_cached and "proposals" not in [s for s, _ in seen], "cached: not reported"


def test_progress_can_cancel_and_the_segmenter_stays_usable(tiny_segmenter, sample_image):
    from iterprime_ros.pipeline import CommandCancelled

    def cancel(stage: str, igrs_pass: int) -> None:
        if stage == "igrs" and igrs_pass == 2:
            raise CommandCancelled("cancelled")

    with pytest.raises(CommandCancelled):
        tiny_segmenter.segment(sample_image, "the red cup", progress=cancel)
    assert tiny_segmenter.segment(sample_image, "the red cup").success


def test_frame_proposals_come_from_the_frame_cache_when_a_command_ran_on_it():
    """The tracker's re-association asks for a frame's proposals: free after a command on the
    same frame, one proposal pass (no image encoding) on a new frame.
    """
    seg = _fake_segmenter()
    props, vlp = Counting(seg.proposals), Counting(seg.vlp)
    seg.proposals, seg.vlp = props, vlp
    a, b = np.zeros((40, 40, 3), np.uint8), np.full((40, 40, 3), 9, np.uint8)
    assert seg.segment(a, "the cup").success
    masks, cached = seg.frame_proposals(a.copy())
    assert cached and masks.shape == (2, 40, 40) and props.calls["propose"] == 1
    masks, cached = seg.frame_proposals(b)
    assert not cached and props.calls["propose"] == 2 and vlp.calls["encode_image"] == 1
    assert seg.segment(b, "the cup").frame_cached is False  # the embedding was still missing
    assert props.calls["propose"] == 2  # but the proposals were reused
