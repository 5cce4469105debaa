"""Plots a researcher wants from a run (matplotlib, PNG, no display needed).

- `plot_training(metrics.jsonl)`: each reward component, the total reward, KL (when on), judge
  failures and completion length over the steps;
- `plot_eval([items.jsonl, ...])`: accuracy overall and per category, models side by side;
- `plot_perception([judgements.jsonl, ...])`: the distribution of perception scores per model;
- `plot_arms({name: metrics.jsonl})`: two GRPO runs' reward curves on one figure (the demo's arms);
- `plot_models(rows)`: held-out accuracy and perception-error rate per model, with 95% intervals.
`plot_files` recognises each kind of file by its content.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.rewards import REWARD_NAMES


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def series_labels(paths: Sequence[Path], labels: Sequence[str] | None = None) -> list[str]:
    """One distinct name per file, in order: `labels` as given, else the shortest distinct part.

    The part of the paths that differs once the folders they share at the start and the end are
    dropped: evals/base/mathvista/items.jsonl and evals/pr1/mathvista/items.jsonl -> base, pr1.
    A single file is named after its folder (items.jsonl, judgements, metrics) or its stem. Two
    series with one name would overwrite each other in the legend, so that is an error.
    """
    if labels is not None:
        if len(labels) != len(paths):
            raise StageError(f"--labels gives {len(labels)} name(s) for {len(paths)} file(s)")
        names = list(labels)
    elif len(paths) <= 1:
        generic = ("items", "judgements", "metrics")
        names = [p.parent.name if p.stem in generic else p.stem for p in paths]
    else:
        parts = [list(p.resolve().with_suffix("").parts) for p in paths]
        shortest = min(len(x) for x in parts)
        head = next((i for i in range(shortest) if len({x[i] for x in parts}) > 1), shortest)
        tail = next(
            (i for i in range(shortest - head) if len({x[-1 - i] for x in parts}) > 1), shortest - head
        )
        names = ["/".join(x[head : len(x) - tail] or x[len(x) - tail - 1 : len(x) - tail]) for x in parts]
    seen: dict[str, Path] = {}
    for name, path in zip(names, paths, strict=True):
        if not name:
            raise StageError(f"{path}: empty series name")
        if name in seen:
            raise StageError(
                f"two series would be named {name!r} ({seen[name]} and {path}); name them with --labels"
            )
        seen[name] = path
    return names


def plot_training(metrics: Path, out: Path) -> Path:
    rows = [r for r in _rows(metrics) if "step" in r]
    if not rows:
        raise StageError(f"{metrics}: no training steps to plot")
    steps = [r["step"] for r in rows]
    panels: list[tuple[str, list[tuple[str, list[float | None]]]]] = [
        ("rewards (mean per step)", [(k, [r.get(f"rewards/{k}/mean") for r in rows]) for k in REWARD_NAMES]),
        ("total reward", [("reward", [r.get("reward") for r in rows])]),
        ("completion length (tokens)", [("mean", [r.get("completions/mean_length") for r in rows])]),
    ]
    if any(r.get("kl") is not None for r in rows):
        panels.append(("KL to the reference", [("kl", [r.get("kl") for r in rows])]))
    if any(r.get("judge/failures") for r in rows):
        panels.append(("judge failures", [("failures", [r.get("judge/failures") for r in rows])]))
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True)
    for ax, (title, series) in zip(axes, panels, strict=True):
        for name, values in series:
            pts = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 60 else None, label=name)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    return _save(fig, out)


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` steps: one step's reward is a mean over a few rollouts, noisy."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_arms(runs: dict[str, Path], out: Path) -> Path:
    """Accuracy and perception reward of several GRPO runs over the steps, one colour per run.

    Both rewards are drawn for every run, including one that does not optimise the perception reward
    (it is still measured): the comparison is the point. Thin lines are the per-step means, thick ones
    their trailing mean over a tenth of the run."""
    plt = _plt()
    panels = [
        ("accuracy", "accuracy reward (share of rollouts answering right)"),
        ("perception", "perception reward (share of the reference facts stated right)"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.5, 5.6), sharex=True)
    for k, (name, path) in enumerate(runs.items()):
        rows = [r for r in _rows(path) if "step" in r]
        if not rows:
            raise StageError(f"{path}: no training steps to plot")
        colour = f"C{k}"
        for ax, (key, _) in zip(axes, panels, strict=True):
            pts = [
                (r["step"], r[f"rewards/{key}/mean"])
                for r in rows
                if r.get(f"rewards/{key}/mean") is not None
            ]
            if not pts:
                continue
            steps, values = zip(*pts, strict=True)
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(
                steps, _smooth(list(values), max(1, len(values) // 10)), color=colour, linewidth=2, label=name
            )
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("GRPO step")
    fig.suptitle(
        "GRPO from the same SFT checkpoint: training rewards (thin: each step; thick: trailing mean)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, out)


def plot_models(rows: Sequence[dict[str, Any]], out: Path, chance: float | None = None) -> Path:
    """Held-out accuracy and perception-error rate per model, bars with 95% Wilson intervals.

    `rows`: dicts with model, accuracy, accuracy_ci, perception_error_rate, perception_error_ci,
    n, checked (`prcli.demo.model_row`). `chance`: the accuracy of the best blind guess, drawn as a line."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    names = [r["model"] for r in rows]
    panels = [
        ("accuracy", "accuracy_ci", "held-out accuracy (higher is better)", "n"),
        (
            "perception_error_rate",
            "perception_error_ci",
            "responses with a perception error (lower is better)",
            "checked",
        ),
    ]
    for ax, (key, ci_key, title, count) in zip(axes, panels, strict=True):
        values = [100 * (r[key] or 0.0) for r in rows]
        low = [v - 100 * r[ci_key][0] if r[ci_key] else 0.0 for v, r in zip(values, rows, strict=True)]
        high = [100 * r[ci_key][1] - v if r[ci_key] else 0.0 for v, r in zip(values, rows, strict=True)]
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(rows))], yerr=[low, high], capsize=5)
        for bar, v, r, up in zip(bars, values, rows, high, strict=True):
            # inside the bar's foot, clear of the lines; above a short bar's interval; no bar is "n/a", not 0%
            tall = r[key] is not None and v >= 12
            said = f"{v:.1f}%\nn={r[count]}" if r[key] is not None else "n/a\n(none checked)"
            x = bar.get_x() + bar.get_width() / 2
            ax.text(
                x,
                2 if tall else v + up + 1.5,
                said,
                ha="center",
                va="bottom",
                fontsize=8,
                color="white" if tall else "black",
            )
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("% (95% Wilson interval)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    if chance is not None:
        axes[0].axhline(
            100 * chance, color="black", linestyle="--", linewidth=1, label=f"blind guess {chance:.0%}"
        )
        axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, out)


def plot_eval(
    items_files: Sequence[Path],
    out: Path,
    field: str | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Accuracy overall and per value of `field` (default: the first category field with 2-12 values).

    One bar series per file, named by `series_labels` (distinct, or an error); each group is labelled
    with its item count when every file has the same count there.
    """
    models = {name: _rows(p) for name, p in zip(series_labels(items_files, labels), items_files, strict=True)}
    if not any(models.values()):
        raise StageError("no evaluated items to plot")
    field = field or _category_field(next(iter(models.values())))
    groups: list[str] = ["overall"]
    if field:
        values = sorted({str(v) for rows in models.values() for r in rows for v in _values(r.get(field))})
        groups += values
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) * max(1, len(models)) * 0.6), 3.6))
    width = 0.8 / len(models)
    for k, (name, rows) in enumerate(models.items()):
        accs = [_accuracy(rows, None if g == "overall" else (field, g)) for g in groups]
        xs = [i + k * width for i in range(len(groups))]
        bars = ax.bar(xs, accs, width, label=name)
        ax.bar_label(bars, labels=["" if math.isnan(a) else f"{a:.1f}" for a in accs], fontsize=7)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([_group_label(models, field, g) for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title or f"accuracy{f' by {field}' if field else ''}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def _group_label(models: dict[str, list[dict[str, Any]]], field: str | None, group: str) -> str:
    """The group's name, with its item count when every model has the same count there."""
    counts = {
        sum(1 for r in rows if group == "overall" or group in {str(v) for v in _values(r.get(field))})
        for rows in models.values()
    }
    return f"{group} (n={counts.pop()})" if len(counts) == 1 else group


def plot_perception(judgement_files: Sequence[Path], out: Path, labels: Sequence[str] | None = None) -> Path:
    names = series_labels(judgement_files, labels)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = [i / 10 for i in range(11)]
    any_scores = False
    for name, path in zip(names, judgement_files, strict=True):
        scores = [r["score"] for r in _rows(path) if r.get("score") is not None]
        if scores:
            any_scores = True
            mean = sum(scores) / len(scores)
            ax.hist(scores, bins=bins, alpha=0.55, label=f"{name} (mean {mean:.2f}, n={len(scores)})")
    if not any_scores:
        raise StageError("no perception scores to plot")
    ax.set_xlabel("perception score (share of annotations reflected)")
    ax.set_ylabel("responses")
    ax.set_title("perception score distribution", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def file_labels(files: Sequence[Path], labels: Sequence[str] | None = None) -> list[str]:
    """The series name of each file, in order: `labels` (one per file), or, by default, names that
    tell apart the files of one kind (`series_labels`)."""
    if labels is not None and len(labels) != len(files):
        raise StageError(f"--labels gives {len(labels)} name(s) for {len(files)} file(s)")
    kinds: dict[str, list[int]] = defaultdict(list)
    for k, path in enumerate(files):
        kinds[_kind(path)].append(k)
    out = [""] * len(files)
    for members in kinds.values():
        given = [labels[k] for k in members] if labels is not None else None
        for k, name in zip(members, series_labels([files[k] for k in members], given), strict=True):
            out[k] = name
    return out


def plot_files(
    files: Sequence[Path], out_dir: Path, field: str | None = None, labels: Sequence[str] | None = None
) -> list[Path]:
    """Recognise each file (training metrics, eval items, judgements) and draw what fits, each file
    a series named by `file_labels`."""
    kinds: dict[str, list[Path]] = defaultdict(list)
    named: dict[str, list[str]] = defaultdict(list)
    for path, name in zip(files, file_labels(files, labels), strict=True):
        kinds[_kind(path)].append(path)
        named[_kind(path)].append(name)

    written = [
        plot_training(p, out_dir / f"training_{name.replace('/', '_')}.png")
        for name, p in zip(named["metrics"], kinds["metrics"], strict=True)
    ]
    if kinds["items"]:
        written.append(plot_eval(kinds["items"], out_dir / "eval_comparison.png", field, named["items"]))
    if kinds["judgements"]:
        written.append(
            plot_perception(kinds["judgements"], out_dir / "perception_scores.png", named["judgements"])
        )
    return written


def _kind(path: Path) -> str:
    """metrics (pr train), judgements (pr judge) or items (pr eval), from the first record."""
    if not path.exists():
        raise StageError(f"{path}: file not found")
    first = next(iter(_rows(path)), None)
    if first is None:
        raise StageError(f"{path}: empty file")
    if "step" in first and any(k.startswith("rewards/") or k == "loss" for k in first):
        return "metrics"
    if "verdicts" in first and "score" in first:
        return "judgements"
    if "correct" in first:
        return "items"
    raise StageError(f"{path}: not training metrics, eval items or judgements")


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _category_field(rows: list[dict[str, Any]]) -> str | None:
    skip = {
        "id",
        "correct",
        "response",
        "extracted",
        "prediction",
        "answer",
        "method",
        "judge_raw",
        "judge_error",
    }
    for key in rows[0] if rows else []:
        if key in skip:
            continue
        distinct = {str(v) for r in rows for v in _values(r.get(key))}
        if 2 <= len(distinct) <= 12:
            return key
    return None


def _accuracy(rows: list[dict[str, Any]], where: tuple[str, str] | None) -> float:
    chosen = rows if where is None else [r for r in rows if where[1] in map(str, _values(r.get(where[0])))]
    return 100.0 * sum(bool(r["correct"]) for r in chosen) / len(chosen) if chosen else math.nan  # no bar


def _save(fig: Any, out: Path) -> Path:
    """Write the PNG; its `Series` text field lists the legend entries drawn (for tools and tests)."""
    legends = [ax.get_legend() for ax in fig.axes]
    series = [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, metadata={"Series": json.dumps(series)})
    _plt().close(fig)
    return out
