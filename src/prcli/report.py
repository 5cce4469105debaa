"""`pr report`: several `pr eval` folders as one models x benchmarks table, like the paper's Table 1.

A number means little without how it was produced, so every cell carries its protocol and is marked
when it was scored on a subset (`--limit`). Differences to the baseline model come with McNemar's test
(`prcli.stats`) only where both models scored exactly the same items; otherwise the table says so
rather than pairing what is not paired. The paper's published rows can sit beside ours, labelled as
published figures that were not rerun here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from prcli.config import StageConfig
from prcli.errors import StageError
from prcli.jsonl import InputError, write_json_atomic, write_text_atomic
from prcli.mcnemar import read_outcomes
from prcli.stats import McNemarResult, Method, mcnemar

# Perception-R1's Table 1 ([T1-v2]: the README image of 2025-09) as transcribed in
# reference/method.md section 4.4: accuracy (%) per benchmark, scored with the paper's protocol.
PAPER_ROWS: dict[str, dict[str, float]] = {
    "Qwen2.5-VL-7B-IT": {
        "mathvista": 68.1,
        "mathverse": 47.4,
        "mathvision": 25.1,
        "wemath": 61.4,
        "mmmu": 55.2,
        "mmmu_pro": 37.0,
        "mmstar": 63.1,
        "emma": 24.9,
    },
    "Perception-R1-7B": {
        "mathvista": 74.2,
        "mathverse": 54.3,
        "mathvision": 28.6,
        "wemath": 72.0,
        "mmmu": 60.8,
        "mmmu_pro": 41.4,
        "mmstar": 64.5,
        "emma": 27.5,
    },
}
# method.md 4.4 flags this figure: the README image and the paper's text disagree
PAPER_NOTES = {
    ("Perception-R1-7B", "mmmu_pro"): "Perception-R1-7B on MMMU-Pro: 41.4 in the README image, "
    "42.4 in the paper's text (method.md 4.4).",
    ("Qwen2.5-VL-7B-IT", "wemath"): "WeMath: the paper does not say which of its metrics its figures are "
    "(benchmarks.md); ours is Score (Strict).",
}
# column headers, in the paper's column order; other benchmarks follow in the order given
BENCH_NAMES = {
    "mathvista": "MathVista",
    "mathverse": "MathVerse",
    "mathvision": "MathVision",
    "wemath": "WeMath",
    "mmmu": "MMMU",
    "mmmu_pro": "MMMU-Pro",
    "mmstar": "MMStar",
    "emma": "EMMA",
}
SUBSET_MARK = "†"
DIFFERENT_ITEMS = "n/a: different items"
NOT_PER_ITEM = "n/a: not a per-item accuracy"  # McNemar tests item outcomes, not a problem-level score
PUBLISHED = "published"


class ReportConfig(StageConfig):
    eval_dirs: list[Path] = Field(
        description="`pr eval` output folders (summary.json + items.jsonl), one model and benchmark each."
    )
    out: Path = Field(description="Output folder: report.md, report.tex, report.png, report.json.")
    labels: list[str] | None = Field(
        None,
        description="Model names, one per folder in order: a,b,... or the option repeated; folders with "
        "one name form one row (default: each summary's model).",
    )
    baseline: str | None = Field(
        None, description="Model the others are compared with (default: the first model)."
    )
    paper: bool = Field(
        False, description="Add the paper's published rows (Table 1, figures only) beside ours."
    )
    method: Method = Field("exact", description="McNemar test: exact (the paper's), midp, chi2 or chi2-cc.")

    @field_validator("labels")
    @classmethod
    def _split_commas(cls, value: list[str] | None) -> list[str] | None:
        """`a,b` or the option repeated; none given (the command line's empty list) means default."""
        return [n.strip() for v in value for n in v.split(",")] if value else None


@dataclass
class Cell:
    """One model's score on one benchmark, from one `pr eval` folder."""

    folder: Path
    model: str
    bench: str
    accuracy: float
    correct: int
    n: int
    protocol: str
    subset: str | None
    headline: str  # the metric `accuracy` holds: accuracy, or e.g. We-Math's score_strict
    outcomes: dict[str, bool] = field(repr=False)
    difference: float | None = None  # accuracy - the baseline's, in points
    test: McNemarResult | str | None = None  # a string says why there is no test

    def as_dict(self) -> dict[str, Any]:
        test = self.test.as_dict() if isinstance(self.test, McNemarResult) else self.test
        return {
            "folder": str(self.folder),
            "accuracy": self.accuracy,
            "correct": self.correct,
            "n": self.n,
            "protocol": self.protocol,
            "subset": self.subset,
            "headline": self.headline,
            "difference": self.difference,
            "p_value": self.test.p_value if isinstance(self.test, McNemarResult) else None,
            "mcnemar": test,
        }


@dataclass
class Report:
    models: list[str]
    benches: list[str]
    cells: dict[tuple[str, str], Cell]
    baseline: str
    method: str
    paper: bool

    def row(self, model: str) -> dict[str, Cell]:
        """One model's cells, in column order."""
        return {b: self.cells[(model, b)] for b in self.benches if (model, b) in self.cells}

    def published(self) -> dict[str, dict[str, float]]:
        """The paper's figures for the benchmarks in this table (empty without --paper)."""
        if not self.paper:
            return {}
        return {m: {b: row[b] for b in self.benches if b in row} for m, row in PAPER_ROWS.items()}

    def notes(self) -> list[str]:
        lines = [
            f"Cells: accuracy (%) · protocol; the other models add the difference to the baseline "
            f"{self.baseline} in points and the McNemar p ({self.method}), tested only where both scored "
            "the same item ids."
        ]
        lines += [
            f"{SUBSET_MARK} {c.model} on {column_name(c.bench)} was scored on a subset of {c.n} items: "
            f"{c.subset}."
            for c in self.cells.values()
            if c.subset
        ]
        if self.paper:
            lines.append(
                "Marked published: Perception-R1's Table 1 as given in reference/method.md 4.4, "
                "with the paper's protocol (LLM extraction, then an LLM true/false judgement); "
                "not rerun here, so not tested against ours."
            )
            lines += [note for (_, b), note in PAPER_NOTES.items() if b in self.benches]
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "method": self.method,
            "benchmarks": {b: column_name(b) for b in self.benches},
            "models": {m: {b: c.as_dict() for b, c in self.row(m).items()} for m in self.models},
            "published": self.published(),
            "notes": self.notes(),
        }


def column_name(bench: str) -> str:
    return BENCH_NAMES.get(bench, bench)


def _summary(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise StageError(f"{folder}: not a folder (give `pr eval` output folders)")
    absent = [name for name in ("summary.json", "items.jsonl") if not (folder / name).is_file()]
    if absent:
        raise StageError(f"{folder}: no {' or '.join(absent)}; is it a `pr eval` output folder?")
    path = folder / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageError(f"{path}: not valid JSON ({exc})") from None
    missing = [
        k for k in ("bench", "accuracy", "correct", "n") if not isinstance(summary, dict) or k not in summary
    ]
    if missing:
        raise StageError(f"{path}: no {', '.join(missing)}; is it a `pr eval` summary?")
    return summary


def _protocol(summary: dict[str, Any]) -> str:
    """The summary's protocol; folders from before protocols were recorded were all scored by rules."""
    if summary.get("protocol"):
        return str(summary["protocol"])
    return "rules + answer judge" if summary.get("answer_judge") else "rules"


def load_cell(folder: Path, label: str | None) -> Cell:
    """A folder's summary and per-item outcomes (checked to agree with each other)."""
    summary = _summary(folder)
    model = label or summary.get("model")
    if not model:
        raise StageError(
            f"{folder}: summary.json names no model (scored from --predictions); name the models with --labels"
        )
    if summary.get("failed"):
        raise StageError(
            f"{folder}: {summary['failed']} item(s) failed and are not in its accuracy (see failed.jsonl); "
            "run the same `pr eval` again to retry them"
        )
    outcomes = read_outcomes(folder / "items.jsonl", "id", "correct", None)
    if outcomes.errors or outcomes.droppable:
        raise InputError(outcomes.errors + outcomes.droppable)
    if len(outcomes.values) != summary["n"]:
        raise StageError(
            f"{folder}: summary.json counts {summary['n']} items but items.jsonl has "
            f"{len(outcomes.values)}; rerun `pr eval` on it"
        )
    return Cell(
        folder=folder,
        model=str(model),
        bench=str(summary["bench"]),
        accuracy=float(summary["accuracy"]),
        correct=int(summary["correct"]),
        n=int(summary["n"]),
        protocol=_protocol(summary),
        subset=summary.get("subset"),
        headline=str(summary.get("headline") or "accuracy"),
        outcomes=outcomes.values,
    )


def _compare(cell: Cell, base: Cell, method: Method) -> None:
    """Difference to the baseline's cell; McNemar only on exactly the same item ids."""
    cell.difference = cell.accuracy - base.accuracy
    if "accuracy" not in (cell.headline, base.headline) or cell.headline != base.headline:
        cell.test = NOT_PER_ITEM
        return
    if set(cell.outcomes) != set(base.outcomes):
        cell.test = DIFFERENT_ITEMS
        return
    ids = list(base.outcomes)
    cell.test = mcnemar([base.outcomes[i] for i in ids], [cell.outcomes[i] for i in ids], method=method)


def build_report(cfg: ReportConfig) -> Report:
    """Every folder read and checked, rows and columns ordered, every cell compared with the baseline."""
    if cfg.labels is not None and len(cfg.labels) != len(cfg.eval_dirs):
        raise StageError(f"--labels gives {len(cfg.labels)} name(s) for {len(cfg.eval_dirs)} folder(s)")
    labels = cfg.labels or [None] * len(cfg.eval_dirs)
    cells: dict[tuple[str, str], Cell] = {}
    for folder, label in zip(cfg.eval_dirs, labels, strict=True):
        cell = load_cell(folder, label)
        twin = cells.get((cell.model, cell.bench))
        if twin:
            raise StageError(
                f"two folders for model {cell.model!r} on {cell.bench}: {twin.folder} and {folder}; "
                "keep one or tell them apart with --labels"
            )
        cells[(cell.model, cell.bench)] = cell
    models = list(dict.fromkeys(m for m, _ in cells))
    given = list(dict.fromkeys(b for _, b in cells))
    benches = [b for b in BENCH_NAMES if b in given] + [b for b in given if b not in BENCH_NAMES]
    baseline = cfg.baseline if cfg.baseline is not None else models[0]
    if baseline not in models:
        raise StageError(f"--baseline {baseline!r} is none of the models: {', '.join(models)}")
    for (model, bench), cell in cells.items():
        base = cells.get((baseline, bench))
        if model != baseline and base is not None:
            _compare(cell, base, cfg.method)
    return Report(models, benches, cells, baseline, cfg.method, cfg.paper)


# ----------------------------------------------------------------------------- rendering


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def cell_text(cell: Cell) -> str:
    """What one table cell says, in every format: accuracy (+ subset mark) · protocol [· difference]."""
    metric = "" if cell.headline == "accuracy" else f" · {cell.headline}"
    text = f"{cell.accuracy:.1f}{SUBSET_MARK if cell.subset else ''} · {cell.protocol}{metric}"
    if cell.difference is None:
        return text
    why = _p(cell.test.p_value) if isinstance(cell.test, McNemarResult) else cell.test
    return f"{text} · {cell.difference:+.1f} ({why})"


def table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table: our models (baseline marked), then any published rows."""
    header = ["model", *(column_name(b) for b in report.benches)]
    rows = []
    for m in report.models:
        cells = report.row(m)
        name = f"{m} (baseline)" if m == report.baseline else m
        rows.append([name, *(cell_text(cells[b]) if b in cells else "–" for b in report.benches)])
    rows += [
        [f"{m} ({PUBLISHED})", *(f"{row[b]:.1f} · paper" if b in row else "–" for b in report.benches)]
        for m, row in report.published().items()
    ]
    return header, rows


def to_markdown(report: Report) -> str:
    header, rows = table_rows(report)
    lines = [
        "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
        for row in [header, ["---"] * len(header), *rows]
    ]
    return "\n".join(["# Results", "", *lines, "", *(f"- {n}" for n in report.notes())]) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    SUBSET_MARK: r"$^\dagger$",
    "·": r"\textperiodcentered{}",
    "–": r"\textendash{}",
    "<": r"$<$",
}


def latex_escape(text: str) -> str:
    """Plain text as LaTeX; `--` stays two hyphens (as in --limit), not an en dash."""
    return "".join(_LATEX.get(ch, ch) for ch in text).replace("--", "-{}-")


def to_latex(report: Report) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); published rows below a rule."""
    header, rows = table_rows(report)
    ours = len(report.models)
    body = [" & ".join(latex_escape(c) for c in header) + r" \\", r"\midrule"]
    for k, row in enumerate(rows):
        if k == ours:
            body.append(r"\midrule")
        body.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    notes = " ".join(latex_escape(n) for n in report.notes())
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            r"\scriptsize",
            r"\begin{tabular}{l" + "c" * len(report.benches) + "}",
            r"\toprule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\caption{" + notes + "}",
            r"\end{table}",
            "",
        ]
    )


def plot_report(report: Report, out: Path) -> Path:
    """Grouped bars: one group per benchmark, one bar per model; published rows hatched."""
    from prcli.plots import _plt, _save

    series: list[tuple[str, dict[str, float], bool, dict[str, str]]] = []
    for m in report.models:
        cells = report.row(m)
        protocols = ", ".join(dict.fromkeys(c.protocol for c in cells.values()))
        marks = {b: SUBSET_MARK for b, c in cells.items() if c.subset}
        series.append((f"{m} ({protocols})", {b: c.accuracy for b, c in cells.items()}, False, marks))
    series += [(f"{m} ({PUBLISHED}, paper)", row, True, {}) for m, row in report.published().items()]
    plt = _plt()
    width = 0.8 / len(series)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.3 * len(report.benches) * (len(series) + 1)), 4.8), layout="constrained"
    )
    for k, (name, values, published, marks) in enumerate(series):
        shown = [b for b in report.benches if b in values]
        bars = ax.bar(
            [report.benches.index(b) + k * width for b in shown],
            [values[b] for b in shown],
            width,
            label=name,
            hatch="//" if published else None,
            alpha=0.55 if published else 1.0,
        )
        ax.bar_label(bars, labels=[f"{values[b]:.1f}{marks.get(b, '')}" for b in shown], fontsize=7)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(report.benches))])
    ax.set_xticklabels([column_name(b) for b in report.benches], fontsize=9)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 108)
    subset = f" ({SUBSET_MARK}: scored on a subset)" if any(c.subset for c in report.cells.values()) else ""
    ax.set_title(f"accuracy by benchmark{subset}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    return _save(fig, out)


def write_report(cfg: ReportConfig) -> tuple[Report, list[Path]]:
    """Build the report (any bad input fails here, before anything is written), then write it."""
    report = build_report(cfg)
    md, tex, png, js = (cfg.out / f"report.{ext}" for ext in ("md", "tex", "png", "json"))
    plot_report(report, png)
    write_text_atomic(md, to_markdown(report))
    write_text_atomic(tex, to_latex(report))
    write_json_atomic(js, report.as_dict())
    return report, [md, tex, png, js]
