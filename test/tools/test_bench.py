"""`iterprime bench` in its CI configuration (tiny models, small image): figures are printed, never
asserted.

What is checked is what the figures mean: every stage is reported, the first command on a frame
runs the vision encoder and the proposal network once, a second command on the same frame runs
neither, the naive mode runs both (and parses) once per IGRS pass and lands on the same mask.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iterprime_ros.core.selection import select_proposal
from iterprime_ros.tools import bench
from iterprime_ros.tools.cli import main

# Every stage the bench's table lists but "wait" (a command behind a running prefetch: no phase
# here has one).
FIRST_STAGES = set(bench.STAGES) - {"wait"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    rc = main(
        [
            "bench",
            "--arch",
            "tiny",
            "--proposal-arch",
            "swin-tiny-test",
            "--size",
            "160x120",
            "--frames",
            "1",
            "--commands",
            "2",
            "--naive",
            "--compare-previous",
            "--knobs",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    return json.loads(out.read_text())


def test_bench_reports_every_stage(report, capsys):
    stages = report["stages"]
    assert set(stages) == {
        "first_command",
        "prefetched_command",
        "second_command",
        "sustained",
        "naive",
    }
    assert FIRST_STAGES <= set(stages["first_command"])
    assert FIRST_STAGES <= set(stages["naive"])
    for phase in ("prefetched_command", "second_command", "sustained"):
        assert FIRST_STAGES - {"proposals", "image_encoding"} <= set(stages[phase])
    for phase in stages.values():
        for v in phase.values():
            assert v["mean_ms"] >= 0 and v["median_ms"] >= 0
    assert (
        report["commands_per_s"]["same_frame"] > 0
        and report["commands_per_s"]["new_frame_each"] > 0
    )
    mem = report["memory"]
    assert mem["peak_rss_after_load_mib"] > 0
    assert (
        mem["peak_rss_after_load_mib"]
        <= mem["peak_rss_optimised_mib"]
        <= mem["peak_rss_naive_mib"]
    )
    assert report["config"]["image_size"] == [160, 120] and report["config"]["device"] == "cpu"
    assert report["naive_vs_optimised"]["first_command"] > 0
    with capsys.disabled():  # the figures, for the CI log
        print("\n" + bench.format_report(report))


def test_cache_hit_runs_no_per_image_network_and_naive_runs_them_every_pass(report):
    rec = report["records"]
    first, second = rec["first_command"][0], rec["second_command"][0]
    assert (
        first["success"]
        and second["success"]
        and not first["frame_cached"]
        and second["frame_cached"]
    )
    assert first["iterations"] == 3
    assert first["calls"] == {
        "vision_encoder": 1,
        "text_encoder": 3,
        "proposal_model": 1,
        "parse": 1,
    }
    assert second["calls"] == {
        "vision_encoder": 0,
        "text_encoder": 3,
        "proposal_model": 0,
        "parse": 1,
    }
    for r in rec["sustained"]:
        assert (
            r["frame_cached"]
            and r["calls"]["vision_encoder"] == 0
            and r["calls"]["proposal_model"] == 0
        )
    naive = rec["naive"][0]
    passes = naive["iterations"]
    assert passes == 3
    assert naive["calls"] == {
        "vision_encoder": passes,
        "text_encoder": passes,
        "proposal_model": passes,
        "parse": passes,
    }


def test_prefetched_command_runs_no_per_image_network(report):
    """A command on a frame prepare_frame filled: text encoder only, and says it was prefetched."""
    for rec in report["records"]["prefetched_command"]:
        assert rec["success"] and rec["prefetched"] and rec["frame_cached"]
        assert rec["calls"]["vision_encoder"] == 0 and rec["calls"]["proposal_model"] == 0
        assert rec["calls"]["text_encoder"] == 3
        assert {"proposals", "image_encoding"} <= set(rec["prepare_ms"])
    probe = report["preemption"]  # a command while a prefetch stage is in flight
    assert probe["prefetched"] and probe["waited_at_most_one_stage"]
    assert probe["prefetch_yields"] >= 1 and probe["stage_ms"] > 0


def test_previous_path_and_knobs_side_by_side(report):
    """--compare-previous: both paths timed on one frame, the composed resize gives the same
    masks, the autocast drift is reported; --knobs: one row per knob, each with a prefetched
    command. Figures are printed, not asserted.
    """
    c = report["compare_previous"]
    assert c["previous"]["autocast"] == "fp32" and not c["previous"]["direct_resize"]
    assert c["current"]["direct_resize"]
    for path in ("previous", "current"):
        assert {"proposals", "image_encoding", "igrs", "total"} <= set(c[path]["timings_ms"])
    assert c["postprocess"]["pixels_differing"] == 0 and c["postprocess"]["pixels"] > 0
    drift = c["drift"]
    assert 0.0 <= drift["mask_pixels_flipped"] <= 1.0
    assert -1.0 <= drift["gradcam_corr"] <= 1.0 and drift["gradcam_max_rel_diff"] >= 0
    knobs = {r["knob"]: r for r in report["knobs"]}
    assert {"defaults", "proposal shortest edge 480", "IGRS passes 1 (off)"} <= set(knobs)
    assert all(r["prefetched"] and r["first_ms"] > 0 for r in knobs.values())
    text = bench.format_report(report)
    assert "previous path (fp32, two-step resize)" in text and "speed knob" in text


def test_gpu_check_dry_run_on_the_cpu():
    """scripts/gpu_check.sh --device cpu: the device report on tiny models, one table."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["bash", str(root / "scripts" / "gpu_check.sh"), "--device", "cpu"],
        env={**__import__("os").environ, "PYTHON": sys.executable, "ITERPRIME_JEMALLOC": "off"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("swin-tiny-test")]
    # 2 backbones x (fp32, bf16) x (first, prefetched, same frame)
    assert len(rows) == 12
    assert {(r[0], r[1]) for r in rows} == {
        (f"swin-tiny-test#{n}", p) for n in (1, 2) for p in ("fp32", "bf16")
    }
    first = [r for r in rows if r[2] == "first"]
    assert all(r[3].endswith("ms") and float(r[3][:-2]) > 0 for r in first)  # proposals timed
    assert "latency targets: GPU first command" in out.stdout
    # host syncs per command: none between the IGRS passes (the loop CUDA runs)
    assert "host syncs per command" in out.stdout
    sync_rows = [line for line in out.stdout.splitlines() if "inside the IGRS loop" in line]
    assert len(sync_rows) == 3 and all(", 0 inside the IGRS loop" in r for r in sync_rows)
    assert "fp32 vs fp16 (emulated on CPU" in out.stdout and "same answer mask" in out.stdout


def test_naive_mode_computes_the_same_answer(report):
    for check in report["naive_vs_optimised"]["checks"]:
        assert check["same_proposal"]
        assert check["heatmap_max_abs_diff"] < 1e-4
    probe = report["selection_probe"]
    assert probe["covering_peak"] >= 1 and probe["same_as_naive"]
    for rec in report["records"]["first_command"]:
        assert {"flagged", "covering_peak", "valid", "mean_mask_area"} <= set(rec["selection"])


def test_naive_selection_loop_agrees_with_the_vectorised_one():
    rng = np.random.default_rng(1)
    for _ in range(5):
        props = rng.random((30, 24, 32)) > rng.uniform(0.3, 0.97, size=(30, 1, 1))
        heat = rng.random((24, 32)).astype(np.float32)
        heat[rng.integers(24), rng.integers(32)] = 1.5
        for max_c in (1, 12, 1000):
            for empty in ("fail", "best_heat"):
                assert (
                    bench.naive_select(heat, props, max_c, empty)
                    == select_proposal(heat, props, max_c, empty).index
                )


def test_bench_cli_errors_are_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:  # argparse rejects a bad size
        main(["bench", "--size", "12x7"])
    assert exc.value.code == 2
    if not torch.cuda.is_available():
        assert (
            main(
                [
                    "bench",
                    "--arch",
                    "tiny",
                    "--proposal-arch",
                    "swin-tiny-test",
                    "--device",
                    "cuda",
                ]
            )
            == 2
        )
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["bench", "--frames", "0"]) == 2
    assert main(["bench", "--json", str(tmp_path / "missing" / "x.json")]) == 2


def test_real_size_blip_tokenizer_passes_the_loading_check(tmp_path):
    """The benchmark's BLIP base folder must load: its tokenizer has exactly the model's
    vocabulary size (the loading check refuses any other) and still knows the commands' words.
    Built without weights: only the tokenizer is saved and loaded back.
    """
    from transformers import AutoTokenizer, BlipConfig

    from iterprime_ros.models.loading import check_tokenizer
    from iterprime_ros.tools.bench.architectures import save_bench_tokenizer

    size = int(BlipConfig().text_config.vocab_size)
    vocab = save_bench_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    check_tokenizer(tok, tmp_path, size)  # raises on a size mismatch
    assert vocab[-2:] == ["[DEC]", "[ENC]"]
    ids = tok("pick up the red cup on the left", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 8


def test_architectures_are_the_real_shapes():
    """Config shapes only (no weights built): BLIP base defaults, Swin-L with 200 queries."""
    from transformers import BlipConfig, SwinConfig

    cfg = BlipConfig()
    assert (
        cfg.vision_config.image_size,
        cfg.vision_config.hidden_size,
        cfg.text_config.num_hidden_layers,
    ) == (384, 768, 12)
    desc, swin, queries = bench.PROPOSAL_ARCHS["swin-l"]
    sc = SwinConfig(**swin)
    assert queries == 200 and sc.embed_dim == 192 and list(sc.depths) == [2, 2, 18, 2]
    assert bench.PROPOSAL_ARCHS["swin-t"][1]["depths"] == [2, 2, 6, 2]


def test_cpu_description_names_the_model_and_the_speed_flags():
    """The header's CPU line: model name and the flags that decide the kernels, in a fixed
    order; flags the CPU lacks are not listed.
    """
    from iterprime_ros.tools.bench.machine import cpu_description, cpu_flags_and_model

    text = (
        "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse avx2 fma avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse avx2 fma avx512_bf16\n"
    )
    assert cpu_flags_and_model(text) == ("Some CPU 9000", ["avx2", "fma", "avx512_bf16"])
    assert cpu_description().endswith("CPUs")


def test_the_preemption_line_says_when_the_stage_had_already_ended():
    """Small models finish a proposal stage before the command comes: the line must not say
    "665 ms into its 239 ms stage".
    """
    from iterprime_ros.tools.bench.extras import format_preemption

    base = {
        "command_wait_ms": 0.0,
        "command_total_ms": 12.0,
        "in_flight_stage": "proposals",
        "prefetched": True,
        "waited_at_most_one_stage": True,
    }
    late = format_preemption({**base, "arrived_after_stage_start_ms": 665, "stage_ms": 239})
    assert "after the start of a 239 ms (already finished) proposals stage" in late
    inside = format_preemption({**base, "arrived_after_stage_start_ms": 100, "stage_ms": 239})
    assert "100 ms into its 239 ms proposals stage" in inside
