"""Ablation rows (Tables 3-5) and the report: paper figures next to ours, strict JSON, partial
runs.
"""

from __future__ import annotations

import pytest

from iterprime_ros.tools.eval.ablations import (
    FULL,
    ROWS_BY_NAME,
    AblationConfig,
    describe_rows,
    rows_of_table,
    select_rows,
)
from iterprime_ros.tools.eval.report import RowRef, build_report, paper_figure, render_markdown
from iterprime_ros.tools.eval.runner import summarise_records


def test_rows_cover_the_paper_switches_and_share_equal_configurations():
    assert [r.config.aggregation for r in rows_of_table(3)] == [
        "mean",
        "gvlp",
        "global",
        "local",
        "pwem",
    ]
    assert all(r.config.igrs for r in rows_of_table(3))
    t4 = {r.name: r.config for r in rows_of_table(4)}
    assert t4["no-igrs"].key() == "pwem-T1" and t4["mask-image"].masking == "image"
    assert (
        t4["mask-feature"].key()
        == t4["iter-3"].key()
        == t4["alpha-0.2"].key()
        == FULL.key()
        == ROWS_BY_NAME["agg-pwem"].config.key()
        == "pwem-T3-a0.2-feature"
    )
    assert t4["alpha-0.3"].settings_changes() == {
        "aggregation": "pwem",
        "igrs_iterations": 3,
        "igrs_alpha": 0.3,
    }
    # with IGRS off, alpha and masking do nothing: one key
    assert AblationConfig(iterations=1, alpha=0.5, masking="image").key() == "pwem-T1"
    assert [r.name for r in select_rows(["no-igrs"], [5])] == [
        "position-no-igrs",
        "position-igrs",
        "no-igrs",
    ]
    assert [r.name for r in select_rows()] == ["full"]
    with pytest.raises(ValueError, match="unknown ablation"):
        select_rows(["bogus"])
    with pytest.raises(ValueError):
        AblationConfig(masking="pixels")
    assert "agg-gvlp" in describe_rows() and "Table 5" in describe_rows()


def test_paper_figures_by_row_and_by_configuration():
    assert paper_figure("agg-mean", "mean-T3-a0.2-feature", "refcocog", "test") == (41.3, "")
    assert paper_figure("full", FULL.key(), "refcoco+", "testB") == (35.3, "")
    assert paper_figure("mask-feature", FULL.key(), "refcoco", "testA") == (
        46.5,
        "†",
    )  # main-table figure
    assert paper_figure("mask-image", "pwem-T3-a0.2-image", "refcoco", "testA") == (None, "")
    assert paper_figure("full", FULL.key(), "phrasecut", "test", "unseen") == (37.9, "")
    assert paper_figure("full", FULL.key(), "phrasecut", "test", "all", "mIoU") == (None, "")


def _summary(dataset, split, config, ious_exprs, expected=None):
    recs = [
        {"intersection": i, "union": u, "expression": e, "ok": True, "time_s": 0.5}
        for i, u, e in ious_exprs
    ]
    return summarise_records(recs, dataset, split, config, expected or len(recs))


def test_markdown_and_json_put_ours_next_to_the_paper():
    full, mean = FULL.key(), ROWS_BY_NAME["agg-mean"].config.key()
    summaries = [
        _summary(
            "refcoco", "testA", full, [(50, 100, "the left cup"), (30, 100, "a dog")]
        ),  # 40.0
        _summary(
            "refcoco", "testA", mean, [(10, 100, "the left cup"), (30, 100, "a dog")], expected=3
        ),
        _summary("refcocog", "test", full, [(1, 2, "man")]),
    ]
    rows = [RowRef.of(ROWS_BY_NAME["full"])] + [RowRef.of(r) for r in rows_of_table(3)]
    md = render_markdown(summaries, rows, {"vlp_model": "tiny", "limit": 2})
    assert "| refcoco | testA | 2 | 40.0 | 46.5 | -6.5 |" in md
    assert "| overall mean (Eq. 2) | `mean-T3-a0.2-feature` | 20.0* | 43.4 | — | 41.3 |" in md
    assert "| PWEM (local + global) | `pwem-T3-a0.2-feature` | 40.0 | 46.5 | 50.0 | 45.8 |" in md
    assert "2/3 (partial)" in md and "arXiv 2503.00936" in md
    report = build_report(summaries, rows, {"limit": 2})
    entry = next(e for e in report["results"] if e["config"] == full and e["dataset"] == "refcoco")
    assert set(entry["rows"]) == {"full", "agg-pwem"}
    assert entry["paper"]["agg-pwem/all/mIoU"]["value"] == 46.5
    assert entry["groups"]["position"]["count"] == 1 and entry["groups"]["all"][
        "mIoU"
    ] == pytest.approx(0.4)
