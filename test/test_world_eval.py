"""World evaluation (Tables 3 and 5 on the synthetic world) end to end, and a real check of the
committed world model (models/world_blip) when it is there."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from iterprime_ros.world import evaluate as world_eval
from iterprime_ros.world.grammar import hard_negative, refers_uniquely, scene_expressions
from iterprime_ros.world.model import WorldModelConfig, build_model, build_tokenizer, save_world_model
from iterprime_ros.world.oracle import oracle_proposals
from iterprime_ros.world.scenes import generate_scene, scene_seeds

TINY = WorldModelConfig(image_size=64, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2,
                        vision_intermediate=64, text_hidden=32, text_layers=3, text_heads=2, text_intermediate=64,
                        max_positions=40, itc_dim=16)


@pytest.fixture(scope="module")
def random_world_model(tmp_path_factory):
    """A random-init tiny world model saved the way train.py saves (plumbing only)."""
    folder = tmp_path_factory.mktemp("world_random")
    save_world_model(build_model(TINY, seed=3).eval(), build_tokenizer(TINY.max_positions), folder, TINY)
    return folder


def test_held_out_set_is_fixed_unique_and_oracle_covers_it():
    scenes, items = world_eval.eval_set(40)
    scenes2, items2 = world_eval.eval_set(40)
    assert [(i.scene_index, i.ref.command) for i in items] == [(i.scene_index, i.ref.command) for i in items2]
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
    result = world_eval.evaluate_world(random_world_model, n_expressions=6, modes=("mean", "pwem"),
                                       igrs_options=(False, True), gradcam_layer=TINY.text_layers - 1)
    rows = result["rows"]
    assert [(r["mode"], r["igrs"]) for r in rows] == [("mean", False), ("mean", True), ("pwem", False),
                                                     ("pwem", True)]
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


def test_iterprime_eval_world_cli(random_world_model, tmp_path, capsys):
    from iterprime_ros.cli import main

    out = tmp_path / "world.json"
    code = main(["eval", "--world", "--world-model", str(random_world_model), "-n", "3", "--modes", "pwem",
                 "--igrs", "on", "--gradcam-layer", str(TINY.text_layers - 1), "--json-out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ORACLE" in captured.out and "pwem    on" in captured.out
    assert "not comparable" in captured.err
    assert out.is_file()


# ----------------------------------------------------------------------------- the committed model
COMMITTED = world_eval.world_model_folder()


@pytest.mark.skipif(not (COMMITTED / "model.safetensors").is_file(), reason="no committed world model")
def test_committed_world_model_prefers_true_captions_to_hard_negatives():
    """A real check of the trained model: on held-out scenes, the matching expression's ITM match
    logit margin beats that of its hard negative (wrong colour/shape/size, swapped relation...)."""
    from iterprime_ros.models.blip import BlipITMBackend

    backend = BlipITMBackend(COMMITTED, device="cpu", gradcam_layer=world_eval.recommended_gradcam_layer(COMMITTED))
    rng = np.random.default_rng(99)
    wins, margins = [], []
    for seed in scene_seeds("test", 20, offset=50_000):  # far from the eval set's first scenes
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
            wins.append(m > 0)
    assert len(wins) >= 25
    assert float(np.mean(margins)) > 0
    assert float(np.mean(wins)) >= 0.7, f"true caption beats its hard negative in only {np.mean(wins):.0%}"
    torch.set_num_threads(torch.get_num_threads())  # (no global state changed)
