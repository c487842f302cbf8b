"""Results JSON and Markdown tables, with the paper's figures side by side.

The published figures below are the ones docs/method.md §7 quotes from the paper (mIoU or oIoU
in %). Rows the paper printed but method.md does not quote show "—": fill them from the
paper, never from memory. A "†" marks a figure taken from the main results for a row whose
configuration *is* the main configuration (e.g. Table 4's "mask feature" row is the full
method), not a figure printed in that ablation table.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .ablations import FULL, ROWS_BY_NAME, TABLE_DATASETS, TABLE_TITLES, AblationRow
from .runner import TaskSummary

PAPER_SOURCE = (
    'Wang et al., "IteRPrimE: Zero-shot Referring Image Segmentation with Iterative Grad-CAM '
    'Refinement and Primary Word Emphasis", AAAI 2025 (arXiv 2503.00936); figures as quoted in '
    "docs/method.md §7"
)

# Full method (PWEM + IGRS, mask feature): (dataset, split, group, metric) -> %.
MAIN_FIGURES: dict[tuple[str, str, str, str], float] = {
    ("refcoco", "val", "all", "mIoU"): 40.2,
    ("refcoco", "testA", "all", "mIoU"): 46.5,
    ("refcoco", "testB", "all", "mIoU"): 33.9,
    ("refcoco+", "val", "all", "mIoU"): 44.2,
    ("refcoco+", "testA", "all", "mIoU"): 51.6,
    ("refcoco+", "testB", "all", "mIoU"): 35.3,
    ("refcocog", "val", "all", "mIoU"): 46.0,
    ("refcocog", "test", "all", "mIoU"): 45.8,
    ("phrasecut", "test", "all", "oIoU"): 38.1,
    ("phrasecut", "test", "unseen", "oIoU"): 37.9,
}

# Table 3 (aggregation, IGRS on), mIoU %: (row, dataset, split) -> %.
ROW_FIGURES: dict[tuple[str, str, str], float] = {
    ("agg-mean", "refcoco", "testA"): 43.4,
    ("agg-mean", "refcocog", "test"): 41.3,
    ("agg-gvlp", "refcoco", "testA"): 45.0,
    ("agg-gvlp", "refcocog", "test"): 41.9,
    ("agg-global", "refcoco", "testA"): 46.5,
    ("agg-global", "refcocog", "test"): 45.7,
    ("agg-local", "refcoco", "testA"): 45.3,
    ("agg-local", "refcocog", "test"): 42.3,
    ("agg-pwem", "refcoco", "testA"): 46.5,
    ("agg-pwem", "refcocog", "test"): 45.8,
}

PAPER_NOTES = (
    "IGRS adds about +0.3 to +0.7 mIoU over a single pass (method.md §7); per-row figures of "
    "Tables 4 and 5 are not quoted there."
)

PRIMARY_METRIC = {"phrasecut": "oIoU"}  # the paper's metric per dataset (mIoU otherwise)


def primary_metric(dataset: str) -> str:
    return PRIMARY_METRIC.get(dataset, "mIoU")


def paper_figure(
    row: str | None,
    config: str,
    dataset: str,
    split: str,
    group: str = "all",
    metric: str | None = None,
) -> tuple[float | None, str]:
    """(published %, mark) for a row/config on (dataset, split, group); (None, "") when not
    quoted.
    """
    metric = metric or primary_metric(dataset)
    if (
        row is not None
        and group == "all"
        and metric == "mIoU"
        and (row, dataset, split) in ROW_FIGURES
    ):
        return ROW_FIGURES[(row, dataset, split)], ""
    if config == FULL.key() and (dataset, split, group, metric) in MAIN_FIGURES:
        table = ROWS_BY_NAME[row].table if row in ROWS_BY_NAME else 1
        return MAIN_FIGURES[(dataset, split, group, metric)], "" if table in (1, 2) else "†"
    return None, ""


# ---------------------------------------------------------------------------- JSON
@dataclass(frozen=True)
class RowRef:
    """A row as run: its name, table, label and effective configuration key."""

    name: str
    table: int
    label: str
    config: str

    @classmethod
    def of(cls, row: AblationRow, config: str | None = None) -> "RowRef":
        return cls(row.name, row.table, row.label, config or row.config.key())


def build_report(
    summaries: Sequence[TaskSummary], rows: Sequence[RowRef], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The results JSON: every (dataset, split, config) summary, the rows that use it, paper
    figures.
    """
    results = []
    for s in summaries:
        users = [r for r in rows if r.config == s.config]
        entry = s.as_dict()
        entry["rows"] = [r.name for r in users]
        paper: dict[str, Any] = {}
        for r in users or [None]:
            for group in s.groups:
                value, mark = paper_figure(
                    r.name if r else None, s.config, s.dataset, s.split, group
                )
                if value is not None:
                    paper[f"{r.name if r else s.config}/{group}/{primary_metric(s.dataset)}"] = {
                        "value": value,
                        "derived_from_main_table": mark == "†",
                    }
        entry["paper"] = paper
        results.append(entry)
    return {
        "format": "iterprime-eval-report-v1",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "meta": dict(meta),
        "rows": [r.__dict__ for r in rows],
        "results": results,
        "paper_source": PAPER_SOURCE,
        "paper_notes": PAPER_NOTES,
    }


# ---------------------------------------------------------------------------- Markdown
def _pct(x: Any) -> str:
    return (
        "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f}"
    )


def _paper(value: float | None, mark: str = "") -> str:
    return "—" if value is None else f"{value:.1f}{mark}"


def _delta(ours: float, paper: float | None) -> str:
    if paper is None or math.isnan(ours):
        return ""
    return f"{100 * ours - paper:+.1f}"


def _n(s: TaskSummary) -> str:
    return f"{s.count}" if s.complete else f"{s.count}/{s.expected} (partial)"


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


class _Index:
    def __init__(self, summaries: Sequence[TaskSummary]) -> None:
        self.by = {(s.dataset, s.split, s.config): s for s in summaries}

    def get(self, dataset: str, split: str, config: str) -> TaskSummary | None:
        return self.by.get((dataset, split, config))


def _main_table(idx: _Index, row: RowRef, title: str) -> list[str]:
    body = []
    for d, sp in TABLE_DATASETS[1]:
        s = idx.get(d, sp, row.config)
        if s is None:
            continue
        paper, mark = paper_figure(row.name, row.config, d, sp)
        ours = s.metric("all", "mIoU")
        body.append(
            [
                d,
                sp,
                _n(s),
                _pct(ours),
                _paper(paper, mark),
                _delta(ours, paper),
                _pct(s.metric("all", "oIoU")),
                _pct(s.metric("all", "Prec@0.5")),
                _pct(s.metric("all", "Prec@0.7")),
                _pct(s.metric("all", "Prec@0.9")),
                f"{_pct(s.metric('position'))} ({int(s.groups['position']['count'])})",
                f"{_pct(s.metric('others'))} ({int(s.groups['others']['count'])})",
            ]
        )
    if not body:
        return []
    return (
        [f"### {title} — {row.label} `{row.config}`", ""]
        + _table(
            [
                "dataset",
                "split",
                "n",
                "mIoU",
                "paper",
                "Δ",
                "oIoU",
                "P@0.5",
                "P@0.7",
                "P@0.9",
                "Position mIoU (n)",
                "Others mIoU (n)",
            ],
            body,
        )
        + [""]
    )


def _phrasecut_table(idx: _Index, row: RowRef, title: str) -> list[str]:
    s = idx.get("phrasecut", "test", row.config)
    if s is None:
        return []
    body = []
    for group, label in (("all", "All"), ("unseen", "Unseen")):
        if group not in s.groups:
            continue
        paper, mark = paper_figure(row.name, row.config, "phrasecut", "test", group, "oIoU")
        ours = s.metric(group, "oIoU")
        body.append(
            [
                label,
                str(int(s.groups[group]["count"])),
                _pct(ours),
                _paper(paper, mark),
                _delta(ours, paper),
                _pct(s.metric(group, "mIoU")),
            ]
        )
    return (
        [
            f"### {title} — {row.label} `{row.config}`"
            + ("" if s.complete else f" (partial {s.count}/{s.expected})"),
            "",
        ]
        + _table(["subset", "n", "oIoU", "paper", "Δ", "mIoU"], body)
        + [""]
    )


def _ablation_table(idx: _Index, rows: Sequence[RowRef], table: int) -> list[str]:
    configs = {r.config for r in rows}
    ran = list(dict.fromkeys((d, sp) for (d, sp, c) in idx.by if c in configs))
    data = [
        pair for pair in TABLE_DATASETS[table] if pair in ran
    ] or ran  # the paper's columns, else what ran
    header = ["row", "config"]
    for d, sp in data:
        header += (
            [f"{d} {sp}", "paper"]
            if table != 5
            else [f"{d} {sp} Position (n)", "Others (n)", "All", "paper"]
        )
    body = []
    for r in rows:
        line = [r.label, f"`{r.config}`"]
        for d, sp in data:
            s = idx.get(d, sp, r.config)
            paper, mark = paper_figure(r.name, r.config, d, sp)
            if s is None:  # not run (yet): the paper's figure still helps
                line += ["—"] * (1 if table != 5 else 3) + [_paper(paper, mark)]
                continue
            ours = _pct(s.metric("all")) + ("" if s.complete else "*")
            if table == 5:
                line += [
                    f"{_pct(s.metric('position'))} ({int(s.groups['position']['count'])})",
                    f"{_pct(s.metric('others'))} ({int(s.groups['others']['count'])})",
                    ours,
                    _paper(paper, mark),
                ]
            else:
                line += [ours, _paper(paper, mark)]
        body.append(line)
    return [f"### {TABLE_TITLES[table]}", ""] + _table(header, body) + [""]


def _detail_table(summaries: Sequence[TaskSummary], rows: Sequence[RowRef]) -> list[str]:
    body = []
    for s in summaries:
        names = ", ".join(r.name for r in rows if r.config == s.config) or "-"
        unseen = _pct(s.metric("unseen", "oIoU")) if "unseen" in s.groups else ""
        body.append(
            [
                s.dataset,
                s.split,
                f"`{s.config}`",
                names,
                _n(s),
                str(s.failed),
                _pct(s.metric("all")),
                _pct(s.metric("all", "oIoU")),
                *(_pct(s.metric("all", f"Prec@{t:g}")) for t in (0.5, 0.6, 0.7, 0.8, 0.9)),
                f"{_pct(s.metric('position'))} ({int(s.groups['position']['count'])})",
                f"{_pct(s.metric('others'))} ({int(s.groups['others']['count'])})",
                unseen,
                "—" if math.isnan(s.mean_time_s) else f"{s.mean_time_s:.2f}",
            ]
        )
    return (
        ["### All results", ""]
        + _table(
            [
                "dataset",
                "split",
                "config",
                "rows",
                "n",
                "failed",
                "mIoU",
                "oIoU",
                "P@0.5",
                "P@0.6",
                "P@0.7",
                "P@0.8",
                "P@0.9",
                "Position mIoU (n)",
                "Others mIoU (n)",
                "Unseen oIoU",
                "s/expr",
            ],
            body,
        )
        + [""]
    )


def render_markdown(
    summaries: Sequence[TaskSummary], rows: Sequence[RowRef], meta: Mapping[str, Any]
) -> str:
    """Paper-style tables (ours next to the paper's figures), then every number in one table."""
    idx = _Index(summaries)
    lines = ["## IteRPrimE evaluation", ""]
    for key in ("vlp_model", "proposal_model", "device", "limit"):
        if meta.get(key) not in (None, ""):
            lines.append(f"- {key.replace('_', ' ')}: `{meta[key]}`")
    lines.append("")
    main: dict[str, RowRef] = {}
    for r in rows:  # the main configuration(s): both views, each shown when its data was run
        if r.table in (1, 2):
            main.setdefault(r.config, r)
    for r in main.values():
        lines += _main_table(idx, r, TABLE_TITLES[1]) + _phrasecut_table(idx, r, TABLE_TITLES[2])
    for t in (3, 4, 5):
        chosen = [r for r in rows if r.table == t]
        if chosen:
            lines += _ablation_table(idx, chosen, t)
    lines += _detail_table(summaries, rows)
    lines += [
        "mIoU, oIoU and Prec@X in %; Position = expressions with left/right/up/down/top/bottom "
        '(eval/metrics.py). "*" / "partial": not every selected sample is done yet. '
        '"†": the paper\'s main-table figure for the same configuration.',
        "",
        f"Paper figures: {PAPER_SOURCE}. {PAPER_NOTES}",
        "",
    ]
    return "\n".join(lines)
