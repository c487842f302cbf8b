"""The world's BLIP-architecture ITM model: training steps, saving, and loading through the
project's real model code (models/loading.py + models/blip.py).

A tiny configuration with random or barely trained weights: these tests check plumbing,
not quality (test_world_eval.py checks the committed checkpoint).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from typing import Iterator

import numpy as np
import pytest
import torch
from world_fixtures import TINY

from iterprime_ros.tools.world import train as world_train
from iterprime_ros.tools.world.grammar import scene_expressions
from iterprime_ros.tools.world.model import (
    build_model,
    build_tokenizer,
    load_world_model,
    preprocess,
    world_vocab,
)
from iterprime_ros.tools.world.scenes import generate_scene, scene_seeds


@contextlib.contextmanager
def _validating_on(n_scenes: int) -> Iterator[None]:
    """world.train validates on only `n_scenes` scenes inside the block (tests are plumbing)."""
    with pytest.MonkeyPatch.context() as mp:
        partial = functools.partial(world_train.evaluate_pairs, n_scenes=n_scenes)
        mp.setattr(world_train, "evaluate_pairs", partial)
        yield


def _logged(caplog: pytest.LogCaptureFixture, key: str) -> list[float]:
    """The `key` figure of every JSON line the training logged (one a logged step)."""
    messages = [r.getMessage() for r in caplog.records]
    return [json.loads(m)[key] for m in messages if m.startswith("{") and key in m]


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    """A tiny world model trained for 4 steps by world.train.train (validation on 3 scenes)."""
    out = tmp_path_factory.mktemp("world_tiny")
    with _validating_on(3):
        summary = world_train.train(
            out,
            TINY,
            steps=4,
            images_per_step=4,
            warmup=2,
            threads=1,
            checkpoint_every=2,
            log_every=2,
            card="# tiny test model\n",
        )
    return out, summary


def test_training_steps_give_finite_loss(tiny_trained):
    out, summary = tiny_trained
    assert summary["steps_done"] == 4
    assert math.isfinite(summary["last_log"]["loss"])
    assert 0.0 <= summary["validation_itm"]["accuracy"] <= 1.0
    saved = json.loads((out / "world_config.json").read_text())
    assert saved["architecture"]["text_layers"] == TINY.text_layers
    assert saved["training"]["steps_done"] == 4 and saved["training"]["seed"] == 0
    assert (out / "MODEL_CARD.md").read_text().startswith("# tiny test model")
    # a committed checkpoint must not carry optimiser state: weights, config, tokenizer only
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and not any("optim" in n for n in names)


def test_a_training_step_has_gradients_and_positives_and_hard_negatives():
    torch.manual_seed(0)
    tok = build_tokenizer(TINY.max_positions)
    model = build_model(TINY, seed=0).train()
    scenes, images, rows = world_train.make_batch(4, step=0, seed=0, image_size=TINY.image_size)
    assert len(images) == len(scenes)  # no erased-target images unless asked for
    labels = [r[1] for r in rows]
    assert 1 in labels and 0 in labels
    assert any(r[3].startswith("neg:") and r[3] != "neg:other_scene" for r in rows)
    px = preprocess([s.image for s in scenes], TINY.image_size)
    ids, att = world_train.encode_texts(tok, [world_train.prompt_text(r[0]) for r in rows])
    assert (ids[:, 0] == tok.convert_tokens_to_ids("[ENC]")).all()
    logits = world_train.itm_logits(model, px, ids, att, torch.tensor([r[2] for r in rows]))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    loss.backward()
    assert torch.isfinite(loss)
    assert (
        model.itm_head.weight.grad is not None and torch.isfinite(model.itm_head.weight.grad).all()
    )


def test_batches_are_seeded():
    a = world_train.make_batch(3, step=7, seed=0, image_size=64)
    b = world_train.make_batch(3, step=7, seed=0, image_size=64)
    assert a[2] == b[2] and all(np.array_equal(x.image, y.image) for x, y in zip(a[0], b[0]))
    c = world_train.make_batch(3, step=8, seed=0, image_size=64)
    assert c[2] != a[2]
    # training scenes are never the held-out ones
    train_seeds = set(scene_seeds("train", 3, offset=7 * 3))
    assert not train_seeds & set(scene_seeds("test", 2000)) and not train_seeds & set(
        scene_seeds("val", 2000)
    )


def test_tokenizer_keeps_grammar_words_whole():
    tok = build_tokenizer()
    scene = generate_scene(5)
    for r in scene_expressions(scene, np.random.default_rng(0), per_scene=3, command_prob=1.0):
        pieces = tok.tokenize(r.command)
        assert "[UNK]" not in pieces and not any(p.startswith("##") for p in pieces), (
            r.command,
            pieces,
        )
    assert tok.convert_tokens_to_ids("[ENC]") == world_vocab().index("[ENC]")


def test_save_load_round_trip_through_the_real_backend(tiny_trained):
    """models/blip.BlipITMBackend (via models/loading.resolve) loads the world folder like a real
    checkpoint and gives the ITM logits the training code computes.
    """
    from iterprime_ros.models.blip import BlipITMBackend
    from iterprime_ros.models.loading import resolve

    folder, _ = tiny_trained
    assert resolve(str(folder), kind="vlp") == folder.resolve()
    model, tok = load_world_model(folder)
    backend = BlipITMBackend(folder, device="cpu", gradcam_layer=TINY.text_layers - 1)
    assert backend.first_token == "enc" and backend.grid == TINY.grid
    scene = generate_scene(scene_seeds("val", 1)[0], TINY.image_size, TINY.image_size)
    texts = [
        world_train.prompt_text(r.text) for r in scene_expressions(scene, np.random.default_rng(1))
    ]
    texts.append("there is a red ball")
    emb = backend.encode_image(scene.image)
    with torch.no_grad():
        for text in texts:
            ids, att = world_train.encode_texts(tok, [text])
            ref = world_train.itm_logits(
                model,
                preprocess(scene.image, TINY.image_size),
                ids,
                att,
                torch.zeros(1, dtype=torch.long),
            )[0]
            got = backend.itm_logits(emb, text)
            assert torch.allclose(got, ref, atol=1e-4), (text, got, ref)
    # [CLS] was tied to [ENC] at save time: a backend that keeps [CLS] first scores the same
    cls_backend = BlipITMBackend(folder, device="cpu", gradcam_layer=0, first_token="cls")
    assert torch.allclose(
        cls_backend.itm_logits(emb, texts[0]), backend.itm_logits(emb, texts[0]), atol=1e-4
    )


def test_training_is_reproducible_and_stop_after_matches(tmp_path, monkeypatch):
    """Same seed, same weights; a run stopped early (--stop-after) equals the same run stopped by
    time.
    """
    from safetensors.torch import load_file

    monkeypatch.setattr(
        world_train, "evaluate_pairs", functools.partial(world_train.evaluate_pairs, n_scenes=1)
    )
    kw = dict(images_per_step=2, warmup=1, threads=1, checkpoint_every=100, log_every=100)
    world_train.train(tmp_path / "a", TINY, steps=3, stop_after=2, **kw)
    world_train.train(tmp_path / "b", TINY, steps=3, stop_after=2, **kw)
    a, b = (
        load_file(str(tmp_path / "a" / "model.safetensors")),
        load_file(str(tmp_path / "b" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (
        json.loads((tmp_path / "a" / "world_config.json").read_text())["training"]["steps_done"]
        == 2
    )


# ----------------------------------------------------------------------------- grounding options


def test_erased_target_negatives_paint_the_target_over_and_are_false():
    from iterprime_ros.tools.world.grammar import is_false

    scenes, images, rows = world_train.make_batch(
        6, step=0, seed=0, image_size=TINY.image_size, erase_prob=1.0
    )
    plain = world_train.make_batch(6, step=0, seed=0, image_size=TINY.image_size)
    # the stage-1 rows are unchanged by the option: the erased rows are only added
    assert [r for r in rows if r[3] != "neg:erased"] == plain[2]
    erased = [k for k, r in enumerate(rows) if r[3] == "neg:erased"]
    assert erased, "no erased-target negative in 6 scenes"
    for k in erased:
        text, label, img, _, target, anchor, _ = rows[k]
        assert anchor == -1
        assert label == 0 and target == -1 and img >= len(scenes)
        # its positive: the last earlier positive row with the same text
        pos = max(j for j in range(k) if rows[j][1] == 1 and rows[j][0] == text)
        sc, t = scenes[rows[pos][2]], rows[pos][4]
        mask = sc.masks[t]
        out = images[img]
        assert np.array_equal(out[~mask], sc.image[~mask])  # nothing but the target changes
        obj_rgb = sc.image[mask].astype(float).mean(0)
        table_rgb = sc.image[~sc.masks.any(0)].astype(float).mean(0)
        new_rgb = out[mask].astype(float).mean(0)
        assert np.abs(new_rgb - table_rgb).max() < 25 < np.abs(obj_rgb - table_rgb).max()
        assert sc.masks.shape[0] - 1 == world_train.without_object(sc, t).masks.shape[0]
    # without_object: an attribute expression of an object becomes false once it is removed
    sc = scenes[0]
    refs = scene_expressions(
        sc, np.random.default_rng(0), per_scene=len(sc.objects), kind_weights=(1, 0, 0)
    )
    assert refs
    for r in refs:
        if r.kind == "attribute":
            assert is_false(r.expr, world_train.without_object(sc, r.target))


def test_grounding_loss_prefers_attention_on_the_target_and_training_lowers_it(tmp_path, caplog):
    mask = np.zeros((64, 64), bool)
    mask[16:32, 32:48] = True  # exactly patch (1, 2) of a 4 x 4 grid
    tgt = world_train.target_patch_distribution(mask, 4)
    assert tgt.shape == (16,) and tgt[1 * 4 + 2] == 1.0 and float(tgt.sum()) == 1.0
    on = torch.full((1, 2, 3, 17), 0.01)
    on[..., 1 + 6] = 1.0 - 0.16
    uniform = torch.full((1, 2, 3, 17), 1 / 17)
    toks = torch.ones(1, 3)
    assert world_train.grounding_loss(on, tgt[None], toks) < world_train.grounding_loss(
        uniform, tgt[None], toks
    )

    caplog.set_level("INFO", logger="iterprime.world.train")
    with _validating_on(1):
        world_train.train(
            tmp_path / "a",
            TINY,
            steps=4,
            images_per_step=2,
            warmup=1,
            threads=1,
            checkpoint_every=100,
            log_every=1,
            stop_after=4,
        )
        caplog.clear()
        summary = world_train.train(
            tmp_path / "g",
            TINY,
            steps=30,
            images_per_step=16,
            lr=3e-3,
            warmup=1,
            threads=1,
            checkpoint_every=100,
            log_every=1,
            init_from=tmp_path / "a",
            grounding_weight=5.0,
            grounding_layer=TINY.text_layers - 1,
            erase_prob=0.5,
            data_offset=1000,
        )
    ground = _logged(caplog, "ground")
    assert len(ground) == 30 and all(math.isfinite(g) for g in ground)
    assert np.mean(ground[-5:]) < np.mean(ground[:5]) - 0.1  # 2.82 -> 2.54 when written
    assert math.isfinite(summary["last_log"]["loss"]) and summary["grounding_weight"] == 5.0
    assert summary["init_from"] == str(tmp_path / "a")


def test_token_targets_ground_the_anchor_phrase_on_the_anchor_and_the_rest_on_the_target():
    tok = build_tokenizer(40)
    scenes, _, rows = world_train.make_batch(8, step=0, seed=0, image_size=TINY.image_size)
    pos = [r for r in rows if r.label == 1]
    rel = [r for r in pos if r.anchor >= 0]
    assert rel and all(r.type == "pos:relation" for r in rel)
    assert all(r.anchor == -1 for r in pos if r.type != "pos:relation")
    ids, att = world_train.encode_texts(tok, [world_train.prompt_text(r.text) for r in pos])
    grid = TINY.grid
    plain, plain_tok = world_train.token_grounding_targets(pos, scenes, att, grid)
    split, split_tok = world_train.token_grounding_targets(pos, scenes, att, grid, tokenizer=tok)
    assert torch.equal(plain_tok, split_tok)
    for k, r in enumerate(pos):
        sep = int(att[k].sum()) - 1
        assert (
            plain_tok[k, sep] == 0
            and plain_tok[k, :sep].all()
            and not plain_tok[k, sep + 1 :].any()
        )
        target = world_train.target_patch_distribution(scenes[r.image].masks[r.target], grid)
        words = tok.convert_ids_to_tokens(ids[k][:sep])
        n_anchor = 0
        if r.anchor >= 0:
            # the anchor phrase is "the" + the anchor's words, the last words before [SEP]
            phrase = r.text.split(" the ")[-1].split()
            assert r.anchor_words == 1 + len(phrase)
            n_anchor = world_train.anchor_token_count(tok, r.text, r.anchor_words)
            assert words[sep - n_anchor :] == ["the"] + phrase
            anchor = world_train.target_patch_distribution(scenes[r.image].masks[r.anchor], grid)
            assert all(torch.equal(split[k, j], anchor) for j in range(sep - n_anchor, sep))
        assert all(torch.equal(split[k, j], target) for j in range(sep - n_anchor))
        assert all(torch.equal(plain[k, j], target) for j in range(sep))
    # the loss takes one distribution per token as well as one per row
    a = torch.softmax(torch.randn(len(pos), 2, att.shape[1], 1 + grid * grid), -1)
    one = world_train.grounding_loss(a, plain[:, 0], plain_tok)
    per_token = world_train.grounding_loss(a, plain, plain_tok)
    assert torch.allclose(one, per_token)
    assert not torch.allclose(per_token, world_train.grounding_loss(a, split, split_tok))


def test_grounding_several_layers_with_the_anchor_option_trains_and_is_recorded(tmp_path, caplog):
    caplog.set_level("INFO", logger="iterprime.world.train")
    with _validating_on(1):
        summary = world_train.train(
            tmp_path / "m",
            TINY,
            steps=3,
            images_per_step=4,
            warmup=1,
            threads=1,
            checkpoint_every=100,
            log_every=1,
            grounding_weight=1.0,
            grounding_layer=(0, TINY.text_layers - 1),
            ground_anchor=True,
            vision_aux_weight=1.0,
            vision_aux_position=1.0,
        )
    ground = _logged(caplog, "ground")
    assert len(ground) == 3 and all(math.isfinite(g) and g > 0 for g in ground)
    assert (
        summary["grounding_layer"] == [0, TINY.text_layers - 1]
        and summary["ground_anchor"] is True
    )
    saved = json.loads((tmp_path / "m" / "world_config.json").read_text())["training"]
    assert (
        saved["grounding_layer"] == [0, TINY.text_layers - 1] and saved["vision_aux_weight"] == 1.0
    )
    assert saved["vision_aux_position"] == 1.0
    aux = _logged(caplog, "vision_aux")
    assert len(aux) == 3 and all(math.isfinite(v) and v > 0 for v in aux)
    # the auxiliary heads are training-only: the saved weights are exactly the BLIP model's
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "m" / "model.safetensors"))) == set(
        build_model(TINY).state_dict()
    )


def test_patch_attribute_labels_name_the_object_covering_each_patch():
    scene = generate_scene(scene_seeds("train", 1, offset=5)[0], 64, 64)
    grid = 4
    labels = world_train.patch_attribute_labels(scene, grid)
    cover = (
        scene.masks.reshape(len(scene.objects), grid, 16, grid, 16)
        .mean((2, 4))
        .reshape(len(scene.objects), -1)
    )
    attrs = world_train.PATCH_ATTRIBUTES
    for p in range(grid * grid):
        k = int(cover[:, p].argmax())
        for attr, values in attrs.items():
            if cover[k, p] >= 0.3:
                assert values[int(labels[attr][p])] == getattr(scene.objects[k], attr)
            else:
                assert int(labels[attr][p]) == len(values)  # the table
        centre = labels["centre"][p].numpy()
        if cover[k, p] >= 0.3:  # the object's centroid in patch units (16 px per patch here)
            ys, xs = np.nonzero(scene.masks[k])
            assert np.allclose(centre, [xs.mean() / 16, ys.mean() / 16], atol=1e-4)
        else:
            assert np.isnan(centre).all()
    assert (cover.max(0) >= 0.3).any() and (cover.max(0) < 0.3).any()
    torch.manual_seed(0)
    heads = world_train.PatchAttributeHeads(8)
    with_position = world_train.PatchAttributeHeads(8, position_weight=1.0)
    with_position.heads.load_state_dict(heads.heads.state_dict())
    embeds = torch.randn(1, grid * grid, 8)
    plain = float(heads.loss(embeds, [labels]).detach())
    assert 0 < plain < float(with_position.loss(embeds, [labels]).detach())
