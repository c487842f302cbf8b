"""Named method configurations: the rows of the paper's result and ablation tables.

Why names: a user with weights and data regenerates a table with one command
(``iterprime eval --table 3``) and gets the rows the paper printed, side by side with its
figures. Each row is an ``AblationConfig`` -- the switches the paper varies (aggregation mode,
IGRS on/off, iterations T, blend weight α, masking the cross-attention keys ("feature") or
the image pixels ("image")) -- applied on top of the user's SegmenterSettings. Rows with the
same effective configuration (e.g. Table 3's "PWEM" and Table 4's "mask feature" are both the
full method) are computed once and shared.

Tables (see method.md §7 for the published figures, ``report.PAPER_FIGURES``):
  1  main results, RefCOCO/+/g mIoU: the full method.
  2  PhraseCut oIoU, All and Unseen: the full method. (Numbering of the PhraseCut table is this
     project's: method.md gives its figures without a table number.)
  3  aggregation (PWEM ablation) on RefCOCO testA / RefCOCOg test, IGRS on: mean (Eq. 2), GVLP,
     global, local, PWEM. The PWEM row equals Table 1, so these rows run with IGRS on.
  4  IGRS design on RefCOCO testA / RefCOCOg test, PWEM on: IGRS off, mask on the feature (the
     method), mask on the image, iterations T, α. method.md gives no per-row figures for T and
     α; the sweep here (T = 1..5, α ∈ {0.1, 0.2, 0.3, 0.5}) brackets the defaults -- add other
     values with ``--set igrs_iterations=... --set igrs_alpha=...``.
  5  Position vs Others: IGRS off vs on, every result carries the split (metrics.is_position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

MASKING = ("feature", "image")

TABLE_DATASETS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (
        ("refcoco", "val"),
        ("refcoco", "testA"),
        ("refcoco", "testB"),
        ("refcoco+", "val"),
        ("refcoco+", "testA"),
        ("refcoco+", "testB"),
        ("refcocog", "val"),
        ("refcocog", "test"),
    ),
    2: (("phrasecut", "test"),),
    3: (("refcoco", "testA"), ("refcocog", "test")),
    4: (("refcoco", "testA"), ("refcocog", "test")),
    5: (("refcoco", "testA"), ("refcocog", "test")),
}
TABLE_TITLES: dict[int, str] = {
    1: "Table 1: RefCOCO / RefCOCO+ / RefCOCOg, mIoU (%)",
    2: "PhraseCut test, oIoU (%), All and Unseen",
    3: "Table 3: aggregation of the Grad-CAM maps (IGRS on), mIoU (%)",
    4: "Table 4: IGRS design (PWEM on), mIoU (%)",
    5: "Table 5: Position vs Others expressions, mIoU (%)",
}


@dataclass(frozen=True)
class AblationConfig:
    """The switches the paper's ablations vary. iterations counts text passes (1 = IGRS off)."""

    aggregation: str = "pwem"
    iterations: int = 3
    alpha: float = 0.2
    masking: str = "feature"

    def __post_init__(self) -> None:
        if self.masking not in MASKING:
            raise ValueError(f"masking must be one of {MASKING}, not {self.masking!r}")
        if self.iterations < 1:
            raise ValueError("iterations must be at least 1")

    @property
    def igrs(self) -> bool:
        return self.iterations > 1

    def normalised(self) -> "AblationConfig":
        """With IGRS off, α and the masking do nothing: fold them so equal runs share one key."""
        if self.igrs:
            return self
        return AblationConfig(self.aggregation, 1, AblationConfig.alpha, "feature")

    def key(self) -> str:
        """File-name-safe identity, e.g. "pwem-T3-a0.2-feature" or "mean-T1"."""
        c = self.normalised()
        if not c.igrs:
            return f"{c.aggregation}-T1"
        return f"{c.aggregation}-T{c.iterations}-a{c.alpha:g}-{c.masking}"

    def settings_changes(self) -> dict[str, Any]:
        """The SegmenterSettings fields this row sets (masking is done by eval.image_masking)."""
        return {
            "aggregation": self.aggregation,
            "igrs_iterations": self.iterations,
            "igrs_alpha": self.alpha,
        }

    @classmethod
    def from_settings(cls, settings: Any, masking: str = "feature") -> "AblationConfig":
        return cls(
            settings.aggregation,
            int(settings.igrs_iterations),
            float(settings.igrs_alpha),
            masking,
        )


@dataclass(frozen=True)
class AblationRow:
    """One printed row: its CLI name, the table it belongs to, the paper's label, its switches."""

    name: str
    table: int
    label: str
    config: AblationConfig


FULL = AblationConfig()


def _rows() -> tuple[AblationRow, ...]:
    rows: list[AblationRow] = [
        AblationRow("full", 1, "IteRPrimE (PWEM + IGRS)", FULL),
        AblationRow("phrasecut", 2, "IteRPrimE (PWEM + IGRS)", FULL),
    ]
    for mode, label in (
        ("mean", "overall mean (Eq. 2)"),
        ("gvlp", "GVLP"),
        ("global", "global only"),
        ("local", "local only"),
        ("pwem", "PWEM (local + global)"),
    ):
        rows.append(AblationRow(f"agg-{mode}", 3, label, AblationConfig(aggregation=mode)))
    rows += [
        AblationRow("no-igrs", 4, "w/o IGRS (one pass)", AblationConfig(iterations=1)),
        AblationRow("mask-feature", 4, "IGRS, mask feature", FULL),
        AblationRow("mask-image", 4, "IGRS, mask image", AblationConfig(masking="image")),
    ]
    rows += [
        AblationRow(f"iter-{t}", 4, f"IGRS, T = {t}", AblationConfig(iterations=t))
        for t in (2, 3, 4, 5)
    ]
    rows += [
        AblationRow(f"alpha-{a:g}", 4, f"IGRS, α = {a:g} (λ = {1 - a:g})", AblationConfig(alpha=a))
        for a in (0.1, 0.2, 0.3, 0.5)
    ]
    rows += [
        AblationRow("position-no-igrs", 5, "w/o IGRS", AblationConfig(iterations=1)),
        AblationRow("position-igrs", 5, "w/ IGRS", FULL),
    ]
    return tuple(rows)


ROWS: tuple[AblationRow, ...] = _rows()
ROWS_BY_NAME: dict[str, AblationRow] = {r.name: r for r in ROWS}


def rows_of_table(table: int) -> list[AblationRow]:
    if table not in TABLE_DATASETS:
        raise ValueError(
            f"unknown table {table}; known: {', '.join(map(str, sorted(TABLE_DATASETS)))}"
        )
    return [r for r in ROWS if r.table == table]


def select_rows(names: Iterable[str] = (), tables: Iterable[int] = ()) -> list[AblationRow]:
    """--ablation NAME ... and --table N ... -> rows in table order, no duplicates; none given:
    "full".
    """
    chosen: list[AblationRow] = []
    for t in tables:
        chosen += rows_of_table(int(t))
    for n in names:
        if n not in ROWS_BY_NAME:
            raise ValueError(f"unknown ablation {n!r}; known: {', '.join(ROWS_BY_NAME)}")
        chosen.append(ROWS_BY_NAME[n])
    if not chosen:
        chosen = [ROWS_BY_NAME["full"]]
    seen: set[str] = set()
    return [r for r in chosen if not (r.name in seen or seen.add(r.name))]


def describe_rows() -> str:
    """Help text listing every row (for ``iterprime eval --list-ablations``)."""
    lines = []
    for t in sorted(TABLE_DATASETS):
        lines.append(TABLE_TITLES[t])
        data = ", ".join(f"{d} {s}" for d, s in TABLE_DATASETS[t])
        lines.append(f"  data: {data}")
        for r in rows_of_table(t):
            lines.append(f"  {r.name:<18} {r.label:<32} [{r.config.key()}]")
    return "\n".join(lines)
