"""What the reference code does per IGRS pass, on the pipeline's own backends without their
caches: parse again, recompute the proposals, encode the image with the autograd graph, full
backward with parameter gradients, and a Python loop for the selection. The benchmark times
it against the pipeline; the pipeline itself has no naive path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from .measure import Clock, Conversion


@contextmanager
def _parameters_require_grad(model: Any) -> Iterator[None]:
    params = [p for p in model.parameters() if not p.requires_grad]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        for p in params:
            p.requires_grad_(False)


def _naive_pass(
    vlp: Any, image: np.ndarray, text: str, keep: Any, timings: dict[str, float], clock: Clock
) -> Any:
    """One BLIP ITM Grad-CAM pass the reference way: image encoded again with its autograd graph,
    the match logit backpropagated through the whole model (parameter gradients included).
    """
    import torch

    from ...core.backend import PassOutput
    from ...models.precision import autocast

    vlp._token_cache.clear()  # tokenize again too
    toks = vlp._tokens(text)
    model = vlp.model
    captured: dict[str, Any] = {}

    def keep_probs(module: Any, args: tuple) -> None:
        args[0].retain_grad()
        captured["A"] = args[0]

    dropout = vlp._layers()[vlp.gradcam_layer].crossattention.self.dropout
    with vlp._loaded.lock, _parameters_require_grad(model), torch.enable_grad():
        t0 = clock()
        pixels = vlp.preprocess(image).to(vlp.device, vlp.dtype)
        # the same precision as the pipeline's backend (autocast with fp32 weights, if set)
        with autocast(vlp.device, getattr(vlp, "autocast_dtype", None)):
            embeds = model.vision_model(
                pixel_values=pixels, interpolate_pos_encoding=vlp._interpolate_pos
            ).last_hidden_state.to(vlp.dtype)
        t1 = clock()
        timings["image_encoding"] = timings.get("image_encoding", 0.0) + t1 - t0
        handle = dropout.register_forward_pre_hook(keep_probs)
        try:
            with (
                vlp.masked_cross_attention(keep, embeds.shape[1]),
                autocast(vlp.device, getattr(vlp, "text_autocast_dtype", None)),
            ):
                out = model.text_encoder(
                    input_ids=toks.input_ids,
                    attention_mask=toks.attention_mask,
                    encoder_hidden_states=embeds,
                    return_dict=True,
                )
                logits = model.itm_head(out.last_hidden_state[:, 0, :])[0]
            model.zero_grad(set_to_none=True)
            logits[1].backward()
        finally:
            handle.remove()
        attention = captured["A"]
        result = PassOutput(
            itm_logits=logits.detach().float().cpu(),
            attention=attention.detach()[0].float().cpu(),
            gradient=attention.grad.detach()[0].float().cpu(),
            token_valid=toks.valid.clone(),
        )
        timings.setdefault("_text_passes", []).append(clock() - t1)
    return result


def naive_select(
    heatmap: np.ndarray, proposals: np.ndarray, max_components: int, empty_selection: str = "fail"
) -> int | None:
    """Selection as a loop over the proposals (connected components for every one); same rule as
    core.selection.select_proposal: covers a peak pixel, <= max_components components, best mean
    heat (and the best_heat fallback: the non-empty proposal with the highest mean heat).
    """
    from ...core.selection import count_components

    heat64 = heatmap.astype(np.float64)
    peak = heatmap == heatmap.max()
    best, best_score = None, -1.0
    fallback, fallback_heat = None, -np.inf
    for i in range(proposals.shape[0]):
        m = proposals[i]
        components = count_components(m)
        area = int(m.sum())
        heat_sum = float((m * heat64).sum())
        if area > 0 and heat_sum / area > fallback_heat:
            fallback, fallback_heat = i, heat_sum / area
        if not m[peak].any() or components > max_components:
            continue
        score = (area + heat_sum) / (area + 1e-5)
        if score > best_score:
            best, best_score = i, score
    if best is None and empty_selection == "best_heat":
        return fallback
    return best


def naive_command(
    segmenter: Any,
    image: np.ndarray,
    command: str,
    parser: Any,
    clock: Clock,
    conversion: Conversion,
) -> tuple[dict[str, float], dict[str, Any]]:
    """One command the reference way (see the module docstring), on the segmenter's own backends.

    Returns (stage seconds, {"heatmap", "index", "iterations"}); stage names as the pipeline's.
    """
    from ...core.igrs import run_igrs
    from ...core.text import build_prompt, normalise_command, token_roles

    s = segmenter.settings
    vlp, proposal_backend = segmenter.vlp, segmenter.proposals
    timings: dict[str, float] = {}
    inside = {"parse": 0.0, "passes": 0}
    state: dict[str, Any] = {}

    def add(name: str, dt: float) -> None:
        timings[name] = timings.get(name, 0.0) + dt

    t_start = clock()
    image = conversion.incoming(conversion.image_message(image))
    t0 = clock()
    add("conversion", t0 - t_start)
    expression = normalise_command(command, segmenter._normaliser)
    t1 = clock()
    add("normalise", t1 - t0)
    text, start = build_prompt(s.prompt_template, expression)
    parsed = parser.parse(expression)
    add("parse", clock() - t1)
    roles = token_roles(parsed, vlp.token_offsets(text), start, vlp.token_valid(text))

    class NaiveVLP:
        grid = vlp.grid

        def text_pass(self, _embedding: Any, pass_text: str, keep: Any) -> Any:
            if inside["passes"] > 0:  # pass 0 uses the parse above
                t = clock()
                parser.parse(expression)
                dt = clock() - t
                add("parse", dt)
                inside["parse"] += dt
            inside["passes"] += 1
            t = clock()
            state["proposals"] = np.asarray(proposal_backend.propose(image), dtype=bool)
            add("proposals", clock() - t)
            return _naive_pass(vlp, image, pass_text, keep, timings, clock)

    t2 = clock()
    heat = run_igrs(NaiveVLP(), None, text, roles, image.shape[:2], s.igrs_settings())
    t3 = clock()
    for i, dt in enumerate(timings.pop("_text_passes", [])):
        timings[f"igrs_pass_{i}"] = dt
    # the text passes and PWEM: what run_igrs took besides the per-pass parse/proposals/encoding
    timings["igrs"] = (
        (t3 - t2)
        - inside["parse"]
        - timings.get("proposals", 0.0)
        - timings.get("image_encoding", 0.0)
    )
    result, index = _naive_answer(segmenter.settings, command, expression, heat, state)
    t4 = clock()
    add("selection", t4 - t3)
    result.timings["total"] = t4 - t0
    conversion.outgoing(result, command)
    t5 = clock()
    add("conversion", t5 - t4)
    timings["total"] = t4 - t0
    timings["end_to_end"] = t5 - t_start
    return timings, {"heatmap": heat.heatmap, "index": index, "iterations": heat.iterations}


def _naive_answer(s: Any, command: str, expression: str, heat: Any, state: dict) -> tuple:
    """Selection with the per-mask loop on the last pass's proposals, and the answer built from
    the chosen mask as the pipeline builds it.
    """
    from ...core.geometry import grasp_point, mask_bbox, mask_centroid
    from ...pipeline import SegmentationResult

    proposals = state["proposals"]
    index = naive_select(heat.heatmap, proposals, s.max_components, s.empty_selection)
    result = SegmentationResult(
        success=index is not None,
        error="" if index is not None else "nothing selected",
        command=command,
        expression=expression,
        iterations=heat.iterations,
    )
    if index is not None:
        mask = proposals[index]
        result.mask, result.proposal_index = mask.copy(), index
        result.centroid, result.grasp_point, result.bbox = (
            mask_centroid(mask),
            grasp_point(mask),
            mask_bbox(mask),
        )
    return result, index
