"""No host sync inside the IGRS loop: the GPU path never waits for the device between passes.

On CUDA every read of a tensor's value on the host (``.item()``, ``bool()``, ``float()``,
``.tolist()``, ``.cpu()``, ``.numpy()``, ``nonzero``, indexing with a boolean mask) waits for
every kernel queued before it. These tests run the loop on the CPU and count such calls on
every tensor through a TorchFunctionMode (tools/bench/syncs.py, which gpu_check.sh runs),
tagged with the number of text passes finished when they happen: the deferred loop (the one
CUDA runs) must make none between its first and its last pass, whatever the number of
passes; the per-pass early-stop check (the CPU's loop) does make them, which shows the
counter sees what it should. Tiny random-weight BLIP and ALBEF: plumbing only.
"""

from __future__ import annotations

import numpy as np
import pytest

from iterprime_ros.core.igrs import IGRSSettings, run_igrs
from iterprime_ros.core.text import ExpressionParser, build_prompt, token_roles
from iterprime_ros.tools.bench.syncs import CountingBackend, SyncCounter, inside_loop


def _roles(backend, expression):
    text, start = build_prompt("there is a {}", expression)
    parsed = ExpressionParser(parser="spacy").parse(expression)
    valid = backend.token_valid(text)
    return text, token_roles(parsed, backend.token_offsets(text), start, valid)


def _run(backend, image, passes, defer, expression="the red cup on the left", **kw):
    embedding = backend.encode_image(image)
    text, roles = _roles(backend, expression)
    settings = IGRSSettings(max_iterations=passes, stop_rule="none", **kw)
    counter = SyncCounter()
    with counter:
        res = run_igrs(
            CountingBackend(backend, counter),
            embedding,
            text,
            roles,
            image.shape[:2],
            settings,
            defer_stop=defer,
        )
    assert counter.passes == passes == res.iterations
    return res, counter.calls


def _inside(calls, passes):
    return inside_loop(calls, passes)


@pytest.fixture(scope="module")
def tiny_albef(tmp_path_factory):
    from iterprime_ros.models.albef import AlbefITMBackend
    from iterprime_ros.tools.tiny_models import build_tiny_albef

    return AlbefITMBackend(build_tiny_albef(tmp_path_factory.mktemp("albef") / "a"), device="cpu")


@pytest.mark.parametrize("which", ["blip", "albef"])
@pytest.mark.parametrize("mode", ["pwem", "mean", "gvlp"])
def test_the_deferred_loop_reads_nothing_back_between_passes(
    which, mode, tiny_blip, tiny_albef, sample_image
):
    backend = tiny_blip if which == "blip" else tiny_albef
    for passes in (2, 3):
        _, calls = _run(backend, sample_image, passes, defer=True, mode=mode)
        assert _inside(calls, passes) == [], f"{passes} passes: {calls}"
    # the reads after the last pass do not grow with the passes (one read of the scores, one
    # of the heat map)
    _, two = _run(backend, sample_image, 2, defer=True, mode=mode)
    _, three = _run(backend, sample_image, 3, defer=True, mode=mode)
    after = [c for c in two if c[1] == 2]
    assert len(after) == len([c for c in three if c[1] == 3]) <= 4, after


def test_soft_itm_and_no_primary_word_stay_on_the_device_too(tiny_blip, sample_image):
    _, calls = _run(tiny_blip, sample_image, 3, defer=True)
    assert _inside(calls, 3) == []
    embedding = tiny_blip.encode_image(sample_image)
    for expression, settings in [
        ("the red cup", IGRSSettings(stop_rule="soft_itm")),
        ("the left", IGRSSettings(stop_rule="none")),  # no NN: the reference no-primary map
        ("it", IGRSSettings(stop_rule="none")),  # no effective word: [CLS] alone
    ]:
        text, roles = _roles(tiny_blip, expression)
        counter = SyncCounter()
        with counter:
            run_igrs(
                CountingBackend(tiny_blip, counter),
                embedding,
                text,
                roles,
                (40, 60),
                settings,
                defer_stop=True,
            )
        assert _inside(counter.calls, counter.passes) == [], (expression, counter.calls)


def test_the_counter_sees_the_per_pass_check_of_the_early_stop_loop(tiny_blip, sample_image):
    _, calls = _run(tiny_blip, sample_image, 3, defer=False)
    assert {name for name, _ in _inside(calls, 3)} >= {"cpu", "tolist"}


@pytest.mark.parametrize("rule", ["reference", "soft_itm", "none"])
@pytest.mark.parametrize("expression", ["the red cup on the left", "the left", "a cup"])
def test_deferred_and_early_stop_loops_give_the_same_result(
    rule, expression, tiny_blip, sample_image
):
    embedding = tiny_blip.encode_image(sample_image)
    text, roles = _roles(tiny_blip, expression)
    settings = IGRSSettings(stop_rule=rule)
    early = run_igrs(tiny_blip, embedding, text, roles, (40, 60), settings, defer_stop=False)
    late = run_igrs(tiny_blip, embedding, text, roles, (40, 60), settings, defer_stop=True)
    assert np.array_equal(early.heatmap, late.heatmap)
    assert early.itm_scores == late.itm_scores and early.itm_logits == late.itm_logits
    assert (early.iterations, early.returned_pass, early.stop_reason) == (
        late.iterations,
        late.returned_pass,
        late.stop_reason,
    )
    assert len(late.keep_masks) == late.iterations == len(late.pass_times_s)


SCRIPTS = {
    # (maps, probabilities, settings): every way the loop can stop, from test_core_igrs.py
    "itm drop at pass 2": ([0, 1, 2], [0.5, 0.4, 0.9], IGRSSettings(mode="mean")),
    "no stop": ([0, 1, 2], [0.5, 0.95, 0.96], IGRSSettings(mode="mean")),
    "itm drop at pass 3": ([0, 1, 2], [0.5, 0.95, 0.9], IGRSSettings(mode="mean")),
    "soft_itm at pass 2": (
        [0, 1, 2],
        [0.5, 0.8, 0.9],
        IGRSSettings(mode="mean", stop_rule="soft_itm"),
    ),
    "soft_itm at pass 3": (
        [0, 1, 2],
        [0.5, 0.95, 0.9],
        IGRSSettings(mode="mean", stop_rule="soft_itm"),
    ),
    "degenerate first map": (["flat", 1, 2], [0.5, 0.6, 0.7], IGRSSettings(mode="mean")),
    "empty keep intersection": (["a", "b", 2], [0.5, 0.6, 0.7], IGRSSettings(mode="mean")),
    "one pass": ([0, 1, 2], [0.5, 0.6, 0.7], IGRSSettings(mode="mean", enabled=False)),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_deferred_stop_equals_the_per_pass_stop_on_scripted_passes(name):
    from test_core_igrs import N0, N1, N2, ROLES, ScriptedFakeBackend

    named = {
        0: N0,
        1: N1,
        2: N2,
        "flat": [[0.3, 0.3], [0.3, 0.3]],
        "a": [[1.0, 0.0], [1.0, 1.0]],
        "b": [[0.0, 1.0], [1.0, 1.0]],
    }
    maps, probabilities, settings = SCRIPTS[name]
    runs = {}
    for defer in (False, True):
        fake = ScriptedFakeBackend([named[m] for m in maps], probabilities)
        runs[defer] = run_igrs(fake, "embedding", "t", ROLES, (3, 5), settings, defer_stop=defer)
    early, late = runs[False], runs[True]
    assert np.array_equal(early.heatmap, late.heatmap)
    assert (early.iterations, early.returned_pass, early.stop_reason) == (
        late.iterations,
        late.returned_pass,
        late.stop_reason,
    )
    assert early.itm_scores == late.itm_scores and early.itm_logits == late.itm_logits
    assert [None if k is None else k.tolist() for k in early.keep_masks] == [
        None if k is None else k.tolist() for k in late.keep_masks
    ]
