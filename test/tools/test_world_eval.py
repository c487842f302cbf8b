"""World evaluation (Tables 3 and 5 on the synthetic world) end to end, and a real check of the
committed world model (models/world_blip) when it is there.
"""

from __future__ import annotations

import numpy as np
import pytest
from world_fixtures import TINY, save_random_world_model

from iterprime_ros.tools.world import evaluate as world_eval
from iterprime_ros.tools.world.grammar import hard_negative, refers_uniquely, scene_expressions
from iterprime_ros.tools.world.oracle import oracle_proposals
from iterprime_ros.tools.world.scenes import generate_scene, scene_seeds


@pytest.fixture(scope="module")
def random_world_model(tmp_path_factory):
    """A random-init tiny world model saved the way train.py saves (plumbing only)."""
    return save_random_world_model(tmp_path_factory.mktemp("world_random"), TINY, seed=3)


def test_held_out_set_is_fixed_unique_and_oracle_covers_it():
    scenes, items = world_eval.eval_set(40)
    scenes2, items2 = world_eval.eval_set(40)
    assert [(i.scene_index, i.ref.command) for i in items] == [
        (i.scene_index, i.ref.command) for i in items2
    ]
    assert len(items) == 40
    test_seeds = set(scene_seeds("test", 100))
    assert all(s.seed in test_seeds for s in scenes)
    for it in items:
        scene = scenes[it.scene_index]
        assert refers_uniquely(it.ref.expr, scene, it.ref.target)
        oset = oracle_proposals(scene)
        k = oset.index_of_object(it.ref.target)
        assert np.array_equal(oset.masks[k], scene.masks[it.ref.target])
        assert {"merged", "partial", "table"} <= set(oset.kinds)


def test_evaluate_world_runs_end_to_end_and_formats_the_table(random_world_model):
    result = world_eval.evaluate_world(
        random_world_model,
        n_expressions=6,
        modes=("mean", "pwem"),
        igrs_options=(False, True),
        gradcam_layer=TINY.text_layers - 1,
    )
    rows = result["rows"]
    assert [(r["mode"], r["igrs"]) for r in rows] == [
        ("mean", False),
        ("mean", True),
        ("pwem", False),
        ("pwem", True),
    ]
    meta = result["meta"]
    assert meta["expressions"] == 6 and meta["proposals"].startswith("ORACLE")
    for r in rows:
        assert {"overall", "position", "others"} <= set(r["splits"])
        assert 0.0 <= r["splits"]["overall"]["mIoU"] <= 1.0
        assert sum(r["chosen"].values()) == 6
    assert all(r["mean_iterations"] == 1 for r in rows if not r["igrs"])
    table = world_eval.format_table(result)
    assert "mIoU  Position  Others" in table and "ORACLE" in table and "WORLD" in table
    body = [line for line in table.splitlines() if line.startswith(("mean ", "pwem "))]
    assert len(body) == 4 and body[-1].startswith("pwem    on")


def _eval_world(model, out, n: int, modes: str, igrs: str, *extra: str) -> int:
    """`iterprime eval --world` on `model` (Grad-CAM on TINY's last text layer), JSON to `out`."""
    from iterprime_ros.tools.cli import main

    return main(
        [
            "eval",
            "--world",
            "--world-model",
            str(model),
            "-n",
            str(n),
            "--modes",
            modes,
            "--igrs",
            igrs,
            "--gradcam-layer",
            str(TINY.text_layers - 1),
            *extra,
            "--json-out",
            str(out),
        ]
    )


def test_iterprime_eval_world_cli(random_world_model, tmp_path, capsys):
    out = tmp_path / "world.json"
    code = _eval_world(random_world_model, out, 3, "pwem", "on")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ORACLE" in captured.out and "pwem    on" in captured.out
    assert "not comparable" in captured.err
    assert out.is_file()


def test_gradcam_layer_is_selected_on_validation_scenes(random_world_model, tmp_path):
    import json
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(random_world_model, folder)
    sel = world_eval.select_gradcam_layer(folder, n_expressions=3)
    assert sel["split"] == "val" and set(sel["per_layer"]) == set(range(TINY.text_layers))
    assert 0 <= sel["best"] < TINY.text_layers
    world_eval.write_gradcam_layer(folder, sel)
    assert world_eval.recommended_gradcam_layer(folder) == sel["best"]
    assert (
        json.loads((folder / "world_config.json").read_text())["architecture"]["text_layers"]
        == TINY.text_layers
    )


def test_demo_fallback_segments_the_sample_scene(random_world_model, tmp_path, monkeypatch):
    import json
    import shutil

    from iterprime_ros.tools.world import fallback
    from iterprime_ros.tools.world.grammar import Desc, Expr

    folder = tmp_path / "m"
    shutil.copytree(random_world_model, folder)
    cfg = json.loads((folder / "world_config.json").read_text())
    (folder / "world_config.json").write_text(
        json.dumps({**cfg, "gradcam_layer": TINY.text_layers - 1})
    )
    monkeypatch.setenv("ITERPRIME_WORLD_MODEL", str(folder))
    assert "NO REAL WEIGHTS" in fallback.WORLD_BANNER and "ORACLE" in fallback.WORLD_BANNER

    scene = fallback.world_sample()
    # not in the evaluation set (500 expressions come from consecutive test seeds, far fewer than
    # 1000 scenes)
    assert scene.seed in set(scene_seeds("test", 5000)) - set(scene_seeds("test", 1000))
    said = Expr("relation", Desc("cup"), "left", "left of", Desc("block", "blue", "big", "big"))
    assert fallback.DEFAULT_SAMPLE_COMMAND.endswith(said.text)
    assert refers_uniquely(said, scene, fallback.DEFAULT_SAMPLE_TARGET)

    seg = fallback.world_segmenter(scene=scene)
    assert (
        seg.settings.gradcam_layer == TINY.text_layers - 1
        and seg.settings.proposal_model == "world-oracle"
    )
    r = seg.segment(scene.image, fallback.DEFAULT_SAMPLE_COMMAND)
    assert r.success and r.mask.shape == scene.masks[0].shape

    png = tmp_path / "w.png"
    fallback.save_world_image(png)
    image, again = fallback.load_world_image(png)
    assert np.array_equal(image, scene.image) and again.seed == scene.seed
    from PIL import Image

    Image.fromarray(scene.image).save(tmp_path / "plain.png")
    with pytest.raises(fallback.NotAWorldImageError):
        fallback.load_world_image(tmp_path / "plain.png")


# ----------------------------------------------------------------------------- the committed model
COMMITTED = world_eval.world_model_folder()


@pytest.mark.skipif(
    not (COMMITTED / "model.safetensors").is_file(), reason="no committed world model"
)
def test_committed_world_model_prefers_true_captions_to_hard_negatives():
    """A real check of the trained model: on 40 held-out scenes, the matching expression's ITM
    (match - no match) logit margin beats that of its hard negative (wrong colour / shape / size,
    swapped relation ...) well above chance (0.5), and nearly always for a wrong colour.

    Thresholds sit below what the committed model scores (0.81 of 80 pairs overall, 0.94 for
    colour, 0.60 for shape at the time of writing; the earlier two-stage model scored 0.79 /
    0.97; MODEL_CARD.md): it is good at colours, weak at shapes, so a regression to chance
    fails while the known weakness does not.
    """
    from iterprime_ros.models.blip import BlipITMBackend

    backend = BlipITMBackend(
        COMMITTED, device="cpu", gradcam_layer=world_eval.recommended_gradcam_layer(COMMITTED)
    )
    rng = np.random.default_rng(99)
    wins: dict[str, list[bool]] = {}
    margins = []
    for seed in scene_seeds("test", 40, offset=50_000):  # far from the evaluation set's scenes
        scene = generate_scene(seed)
        emb = backend.encode_image(scene.image)
        for r in scene_expressions(scene, rng, per_scene=2):
            neg = hard_negative(r.expr, scene, rng)
            if neg is None:
                continue
            pos_l = backend.itm_logits(emb, f"there is a {r.text}")
            neg_l = backend.itm_logits(emb, f"there is a {neg[0]}")
            m = float((pos_l[1] - pos_l[0]) - (neg_l[1] - neg_l[0]))
            margins.append(m)
            wins.setdefault(neg[1], []).append(m > 0)
    every = [w for v in wins.values() for w in v]
    assert len(every) >= 60
    assert float(np.mean(margins)) > 0
    assert float(np.mean(every)) >= 0.70, (
        f"true caption beats its hard negative in only {np.mean(every):.0%}"
    )
    assert float(np.mean(wins["colour"])) >= 0.85, wins["colour"]


@pytest.mark.skipif(
    not (COMMITTED / "model.safetensors").is_file(), reason="no committed world model"
)
def test_committed_world_model_localises_better_than_a_random_object():
    """The full method (PWEM + IGRS) with the committed model on the first 60 VALIDATION
    expressions beats picking a random object of the scene by a wide margin, and its heat-map
    peak lies on the target in most expressions.

    At the time of writing: mIoU 52.7 %, pointing 70.0 %, random object 22.4 % (the earlier
    two-stage model: 32.3 % / 41.7 %; an ITM-only model, which did not localise, scored at
    chance: docs/world_results.md).
    """
    res = world_eval.evaluate_world(COMMITTED, 60, ("pwem",), (True,), split="val")
    row = res["rows"][0]
    assert row["splits"]["overall"]["mIoU"] >= 0.45 > res["meta"]["random_object_miou"] + 0.15
    assert row["pointing"] >= 0.60


def test_perfect_patch_heat_ceiling_falls_with_a_coarser_grid():
    scenes, items = world_eval.eval_set(40)
    pixel = world_eval.perfect_patch_heat_miou(scenes, items, 128)
    fine = world_eval.perfect_patch_heat_miou(scenes, items, 16)
    coarse = world_eval.perfect_patch_heat_miou(scenes, items, 8)
    # a pixel-exact map peaks on the whole target, which the oracle lists before its halves
    assert pixel == pytest.approx(1.0)
    # at patch resolution the upsampled peak favours half masks of the target: the ceiling drops
    assert 0.5 < coarse < fine < pixel


def test_world_eval_cli_runs_on_validation_scenes_when_asked(random_world_model, tmp_path, capsys):
    import json

    out = tmp_path / "val.json"
    code = _eval_world(random_world_model, out, 2, "mean", "off", "--world-split", "val")
    assert code == 0, capsys.readouterr().err
    meta = json.loads(out.read_text())["meta"]
    assert meta["split"] == "val" and meta["expressions"] == 2
    val_seeds = set(scene_seeds("val", 10))
    scenes, _ = world_eval.eval_set(2, split="val")
    assert all(s.seed in val_seeds for s in scenes)


def test_world_eval_cli_passes_the_selection_variant(random_world_model, tmp_path, capsys):
    import json

    out = tmp_path / "variant.json"
    code = _eval_world(
        random_world_model,
        out,
        2,
        "pwem",
        "off",
        *("--selection-score", "whole", "--spatial-prior", "on"),
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "selection: whole, spatial prior on" in captured.out
    meta = json.loads(out.read_text())["meta"]
    assert meta["selection_score"] == "whole" and meta["spatial_prior"] is True
    assert set(meta["perfect_patch_heat_split"]) == {"overall", "position", "others"}


def test_whole_object_variants_raise_the_perfect_heat_ceiling():
    """The reference prefers half masks holding the upsampled peak (module doc of the ceiling);
    the coverage and whole variants exist to fix exactly that.
    """
    scenes, items = world_eval.eval_set(40)
    ref = world_eval.perfect_patch_heat_miou(scenes, items, 8)
    for score in ("coverage", "whole"):
        assert world_eval.perfect_patch_heat_miou(scenes, items, 8, score) > ref + 0.05
    prior = world_eval.perfect_patch_heat_miou(scenes, items, 8, "whole", True, True)
    assert prior["overall"] >= world_eval.perfect_patch_heat_miou(scenes, items, 8, "whole")


def test_world_autocast_reaches_the_model_and_the_report(
    random_world_model, tmp_path, capsys, monkeypatch
):
    """`--world-autocast bf16` runs the world model's vision encoder under bf16 autocast (the
    node's CPU default where bf16 is native), so its cost can be measured; the JSON and the
    table say which precision ran. Random weights: plumbing only.
    """
    import json

    import torch

    from iterprime_ros.models.blip import BlipITMBackend

    seen = []
    original = BlipITMBackend.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.autocast_dtype)

    monkeypatch.setattr(BlipITMBackend, "__init__", recording)
    out = tmp_path / "bf16.json"
    code = _eval_world(random_world_model, out, 2, "pwem", "on", "--world-autocast", "bf16")
    assert code == 0
    assert seen == [torch.bfloat16]
    assert json.loads(out.read_text())["meta"]["autocast"] == "bf16"
    assert "autocast bf16" in capsys.readouterr().out
