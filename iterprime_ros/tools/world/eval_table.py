"""The world evaluation's printed table (the paper's Tables 3 and 5 on the world).

Why a module of its own: the table is read by people and by the docs, and its layout changes
for them alone; the evaluation that fills it (world/evaluate.py) stays about running rows.
"""

from __future__ import annotations

from ..eval.metrics import format_percent


def format_table(result: dict) -> str:
    meta, rows = result["meta"], result["rows"]
    lines = [
        "IteRPrimE on the synthetic tabletop WORLD (not RefCOCO: a from-scratch model that knows "
        "this world only)",
        f"model {meta['model']} (Grad-CAM layer {meta['gradcam_layer']}), parser "
        f"{meta['parser']}, "
        f"proposals: {meta['proposals']} -- true instance masks + distractors",
        f"{meta['expressions']} held-out expressions on {meta['scenes']} {meta['split']}: "
        f"{meta['position_expressions']} position / "
        f"{meta['expressions'] - meta['position_expressions']} others; "
        f"kinds {meta['kinds']}; {meta['commands']} said as commands",
        f"selection: {meta.get('selection_score', 'reference')}, spatial prior "
        f"{'on' if meta.get('spatial_prior') else 'off'}, autocast {meta.get('autocast', 'off')}",
        "",
        "mode    IGRS |  mIoU  Position  Others |  oIoU  P@0.5  P@0.9 | pointing  attribute "
        "absolute relation",
        "-------------+--------------------------+----------------------+--------------------------------------",
    ]
    for r in rows:
        s = r["splits"]
        o, p, q = s["overall"], s["position"], s["others"]
        k = {
            n: s.get(f"kind={n}", {}).get("mIoU", float("nan"))
            for n in ("attribute", "absolute", "relation")
        }
        lines.append(
            f"{r['mode']:7s} {'on ' if r['igrs'] else 'off'}  | {format_percent(o['mIoU'])}    "
            f"{format_percent(p['mIoU'])}   {format_percent(q['mIoU'])} | "
            f"{format_percent(o['oIoU'])}  "
            f"{format_percent(o['Prec@0.5'])}  {format_percent(o['Prec@0.9'])} |   "
            f"{format_percent(r['pointing'])}"
            f"     {format_percent(k['attribute'])}    {format_percent(k['absolute'])}   "
            f"{format_percent(k['relation'])}"
        )
    lines += [
        "",
        "reference: a random object of the scene scores mIoU "
        f"{100 * meta['random_object_miou']:.1f}; "
        "the oracle's best proposal scores 100 by construction.",
        *(
            [
                f"ceiling: a perfect heat map at this model's {meta['grid']} x {meta['grid']} "
                "patch grid (each "
                "patch's exact coverage by the target) scores mIoU "
                f"{100 * meta['perfect_patch_heat_miou']:.1f} "
                "through the same upsampling and selection"
                + (
                    " (position {:.1f}, others {:.1f}).".format(
                        100 * meta["perfect_patch_heat_split"]["position"],
                        100 * meta["perfect_patch_heat_split"]["others"],
                    )
                    if "perfect_patch_heat_split" in meta
                    else "."
                )
            ]
            if "perfect_patch_heat_miou" in meta
            else []
        ),
        "Table 3 = the five modes with IGRS on; Table 5 = Position/Others with IGRS off vs on.",
    ]
    if meta.get("primary_word_is_target_noun") is not None:
        lines.append(
            "primary word (core.text) = the target's noun in "
            f"{100 * meta['primary_word_is_target_noun']:.0f} % "
            "of the expressions."
        )
    full = [r for r in rows if r["mode"] == "pwem" and r["igrs"]]
    if full:
        lines.append(
            "full method, chosen proposal: "
            + ", ".join(f"{k} {v}" for k, v in sorted(full[0]["chosen"].items()))
        )
    return "\n".join(lines)
