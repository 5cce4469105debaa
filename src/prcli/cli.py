"""`pr`: the command line. Thin: parse options, build a config, call the library, render results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prcli import __version__
from prcli.annotate.run import AnnotateConfig
from prcli.cli_cache import cache_app
from prcli.cli_common import config_command
from prcli.cli_demo import LAPTOP_COMMANDS
from prcli.diagnose.records import DiagnoseConfig
from prcli.diagnose.run import DiagnoseSummary
from prcli.eval.config import EvalConfig
from prcli.eval.run import EvalSummary
from prcli.judge.run import JudgeRunConfig
from prcli.mcnemar import McNemarConfig
from prcli.report import ReportConfig
from prcli.sft.config import SFTStageConfig
from prcli.train import TrainConfig
from prcli.ui import (
    console,
    endpoints_table,
    fail,
    handle_errors,
    print_json,
    retry_failed,
    say_redone,
    table,
    with_progress,
)

app = typer.Typer(
    name="pr",
    help="Perception-R1 toolkit: annotate -> train (GRPO + visual perception reward) -> eval -> mcnemar.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"prcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Perception-R1 toolkit."""


@app.command("annotate")
@handle_errors
@config_command(AnnotateConfig, positional=("problems",), short={"out": "-o"})
def annotate_cmd(cfg: AnnotateConfig, json_out: bool = False) -> None:
    """Distil and filter CoTs, then extract numbered visual annotations.

    Problems without a `cot` get one from --teacher (up to --samples attempts); only CoTs whose final
    answer verifies are kept; --extractor turns each into atomic visual facts. Dropped problems and
    their reasons go to <out>.dropped.jsonl; failed model calls to <out>.failed.jsonl (re-run to retry).
    """
    from prcli.annotate.run import run_annotate

    summary = with_progress("annotating", lambda start, item: run_annotate(cfg, on_start=start, on_item=item))
    if json_out:
        print_json(summary.as_dict())
    else:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.drop_reasons.items())) or "-"
        console.print(
            table(
                f"pr annotate ({cfg.extractor} extractor)",
                [
                    "problems in",
                    "reused",
                    "redone",
                    "CoTs given",
                    "CoTs distilled",
                    "kept",
                    "dropped",
                    "failed",
                    "annotations/problem",
                    "cache hits",
                ],
                [
                    [
                        summary.problems,
                        summary.already_done,
                        summary.redone,
                        summary.cot_given,
                        summary.cot_distilled,
                        summary.kept,
                        summary.dropped,
                        summary.failed,
                        summary.mean_annotations,
                        summary.cache_hits,
                    ]
                ],
            )
        )
        for role, endpoints in summary.endpoints.items():
            console.print(endpoints_table(f"{role} endpoints", endpoints))
        console.print(f"annotated: [bold]{summary.out}[/]   dropped: {reasons}")
        say_redone(summary.redone, "problem(s)")
    if summary.failed:
        raise retry_failed(summary.failed, "problem(s)", summary.failed_path)


@app.command("convert")
@handle_errors
def convert_cmd(
    src: Annotated[Path, typer.Argument(help="File to convert (.jsonl or .parquet).")],
    dst: Annotated[Path, typer.Argument(help="File to write (.jsonl, or .parquet for the released format).")],
    to: Annotated[
        str,
        typer.Option(
            help="Target format: prcli (our annotated JSONL) or perception-r1 (the released layout)."
        ),
    ] = "prcli",
) -> None:
    """Convert between our annotated JSONL and the released Perception-R1 format (parquet or JSONL)."""
    from prcli.convert import from_perception_r1, to_perception_r1

    if to not in ("prcli", "perception-r1"):
        raise fail(f"--to must be prcli or perception-r1, got {to!r}", code=2)
    n = from_perception_r1(src, dst) if to == "prcli" else to_perception_r1(src, dst)
    console.print(f"{n} record(s) written to [bold]{dst}[/]")


@app.command("train")
@handle_errors
@config_command(TrainConfig, short={"model": "-m", "output_dir": "-o"}, hidden=("extra_trl_args",))
def train_cmd(cfg: TrainConfig, json_out: bool = False) -> None:
    """GRPO post-training with accuracy, format, repetition and visual perception rewards (TRL).

    Runs as is on one machine; under `accelerate launch` on many GPUs or nodes. Writes checkpoints,
    the final model, config.yaml, metrics.jsonl and sample completions into the output folder.
    """
    import os

    from prcli.train import train

    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if json_out:
        print_json(result.as_dict())
        return
    console.print(
        table(
            "pr train",
            ["steps", "examples", "dropped (too long)", "judge failures", "resumed from", "seconds"],
            [
                [
                    result.global_step,
                    result.train_examples,
                    result.dropped_prompts,
                    result.judge_failures,
                    result.resumed_from or "-",
                    round(result.seconds, 1),
                ]
            ],
        )
    )
    console.print(
        f"model: [bold]{result.output_dir}[/]   metrics: {result.metrics_path}   samples: {result.samples_path}"
    )


@app.command("sft")
@handle_errors
@config_command(SFTStageConfig, short={"model": "-m", "output_dir": "-o"})
def sft_cmd(cfg: SFTStageConfig, json_out: bool = False) -> None:
    """Supervised fine-tuning on worked solutions (`cot`) in the training prompt's think/answer format (TRL).

    A cold start before `pr train`: same model loading, LoRA, accelerate launch, resume and metrics.
    """
    import os

    from prcli.sft import sft

    result = sft(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if json_out:
        print_json(result.as_dict())
        return
    row = [result.global_step, result.train_examples, result.dropped_examples, result.resumed_from or "-"]
    console.print(
        table(
            "pr sft",
            ["steps", "examples", "dropped (too long)", "resumed from", "seconds"],
            [[*row, round(result.seconds, 1)]],
        )
    )
    console.print(f"model: [bold]{result.output_dir}[/]   metrics: {result.metrics_path}")


@app.command("judge")
@handle_errors
@config_command(JudgeRunConfig, positional=("responses",), short={"out": "-o", "prompt": "--judge-prompt"})
def judge_cmd(cfg: JudgeRunConfig, json_out: bool = False) -> None:
    """Score responses with the visual perception judge (offline scoring, audits).

    Each output line holds one verdict per annotation and score = sum(verdicts) / #annotations.
    Re-running the same command resumes; judgements that failed after retries are retried.
    """
    from prcli.judge.run import run_judge

    summary = with_progress("judging", lambda start, item: run_judge(cfg, on_start=start, on_item=item))
    if json_out:
        print_json(summary.as_dict())
    else:
        st = summary.stats
        console.print(
            table(
                f"pr judge ({cfg.backend})",
                [
                    "responses",
                    "reused",
                    "judged now",
                    "redone",
                    "cache hits",
                    "failed",
                    "rejected",
                    "mean score",
                    "seconds",
                ],
                [
                    [
                        summary.total,
                        summary.already_done,
                        summary.written,
                        summary.redone,
                        st.get("cache_hits", 0),
                        summary.failed,
                        summary.rejected,
                        summary.mean_score,
                        round(summary.seconds, 1),
                    ]
                ],
            )
        )
        if st.get("endpoints"):
            console.print(endpoints_table("judge endpoints", st["endpoints"]))
        console.print(f"judgements: [bold]{summary.out}[/]")
        say_redone(summary.redone, "judgement(s)")
    if summary.failed:
        raise retry_failed(summary.failed, "judgement(s)", summary.failed_path)


@app.command("diagnose")
@handle_errors
@config_command(DiagnoseConfig, positional=("items",), short={"out": "-o"})
def diagnose_cmd(cfg: DiagnoseConfig, json_out: bool = False) -> None:
    """Label each evaluated response: perception error or not, and the failure's type.

    Each reference fact (--annotations, joined by id) is consistent with the response, contradicted
    by it or absent; error_type is none, perception, reasoning, lucky or unknown (with a reason).
    Writes LABELS.jsonl (resumable) and LABELS.summary.json: failures by type and the share that are
    perception errors, overall and per category field. --sample N writes LABELS.sheet.html, a
    labelling sheet for people; --agreement HUMAN.jsonl (its export) reports Cohen's kappa.
    """
    from prcli.diagnose.run import run_diagnose

    result = with_progress("diagnosing", lambda start, item: run_diagnose(cfg, on_start=start, on_item=item))
    if json_out:
        print_json(result.as_dict())
    else:
        _diagnose_table(cfg, result)
    if result.failed:
        raise retry_failed(result.failed, "item(s)", result.failed_path)


def _diagnose_table(cfg: DiagnoseConfig, result: DiagnoseSummary) -> None:
    columns = ["n", "failures", "perception", "reasoning", "unknown_failures", "lucky", "perception_share"]
    rows = [["overall", "", *(result.summary["overall"][c] for c in columns)]]
    for name, values in result.summary["by"].items():
        rows += [[name, value, *(cell[c] for c in columns)] for value, cell in list(values.items())[:12]]
    headers = ["breakdown", "value", "n", "failures", "perception", "reasoning", "unknown", "lucky", "share"]
    console.print(table(f"pr diagnose ({cfg.judge}): failure types, perception share", headers, rows))
    for reason, n in result.summary["unknown_reasons"].items():
        console.print(f"unknown: {n} ({reason})", markup=False)
    if result.sheet:
        console.print(
            f"labelling sheet: {result.sheet['path']} ({result.sheet['n']} of {result.sheet['of']} items)"
        )
    if "agreement" in result.summary:
        _agreement_table(result.summary["agreement"])
    console.print(f"labels: [bold]{result.out}[/]   summary: {result.summary_path}")
    say_redone(result.redone, "label(s)")


def _agreement_table(agreed: dict) -> None:
    """Human (rows) against automatic (columns) perception-error labels, and Cohen's kappa."""
    from prcli.diagnose.agreement import CATEGORIES

    rows = [[f"human {h}", *(agreed["confusion"][h][a] for a in CATEGORIES)] for h in CATEGORIES]
    title = (
        f"agreement with {agreed['human']}: kappa {agreed['kappa']} over {agreed['n_decided']} decided items, "
        f"observed {agreed['observed_agreement']} (n {agreed['n']}, not in labels {agreed['not_in_labels']})"
    )
    console.print(table(title, ["", *(f"auto {a}" for a in CATEGORIES)], rows))


@app.command("eval")
@handle_errors
@config_command(EvalConfig, short={"bench": "-b", "out": "-o", "model": "-m"})
def eval_cmd(cfg: EvalConfig, json_out: bool = False) -> None:
    """Evaluate a model (or saved predictions) on a benchmark, scored by a named protocol.

    --protocol rules (offline, the default), official (each benchmark's published pipeline) or paper
    (Perception-R1's LLM extraction and judgement). Writes OUT/items.jsonl (one scored item per line;
    what `pr mcnemar` compares) and OUT/summary.json (accuracy 0-100, per-category breakdowns,
    special aggregates, the protocol). Resumes.

    -b a,b,... or -b all: several benchmarks with the model loaded once, OUT/<bench>/ each; --data and
    --predictions are then folders with one entry per benchmark, named after it; --json prints
    {bench: summary}.
    """
    from prcli.eval.run import run_eval
    from prcli.eval.several import per_benchmark

    configs = per_benchmark(cfg)
    if len(configs) > 1:
        _eval_several(configs, json_out)
        return
    cfg = configs[0]
    result = with_progress(cfg.bench, lambda start, item: run_eval(cfg, on_start=start, on_item=item))
    if json_out:
        print_json(result.summary)
    else:
        _eval_table(cfg, result)
    if result.failed:
        console.print(f"first failure: {result.first_error}", style="red", markup=False)
        raise retry_failed(result.failed, "item(s)", cfg.out / "failed.jsonl")


def _eval_several(configs: list[EvalConfig], json_out: bool) -> None:
    """Several benchmarks, one model: a table each, then one line each; exit 1 naming the failed ones."""
    from prcli.eval.several import run_evals

    runs = run_evals(configs, under=with_progress)
    if json_out:
        print_json({name: r.summary for name, r in runs.results.items()})
    else:
        for cfg in configs:
            _eval_table(cfg, runs.results[cfg.bench])
    for name, r in runs.results.items():
        failed = f"; {r.failed} item(s) failed, the first: {r.first_error}" if r.failed else ""
        console.print(
            f"{name}: accuracy {r.summary['accuracy']} ({r.summary['correct']}/{r.summary['n']}), "
            f"protocol {r.summary['protocol']}{failed}",
            style="red" if r.failed else None,
            markup=False,
            soft_wrap=True,
        )
    console.print(f"model loaded {runs.model_loads} time(s) for {len(configs)} benchmarks")
    if runs.failed:
        raise fail(
            f"items failed in {', '.join(runs.failed)} (listed in each one's failed.jsonl); "
            "run the same command again to retry them"
        )


def _eval_table(cfg: EvalConfig, result: EvalSummary) -> None:
    summary = result.summary
    rows = [["overall", "", summary["accuracy"], summary["correct"], summary["n"]]]
    for field, values in summary["breakdown"].items():
        for value, cell in list(values.items())[:12]:
            rows.append([field, value, cell["accuracy"], cell["correct"], cell["total"]])
    scope = f" - {summary['subset']}" if summary.get("subset") else ""
    console.print(
        table(
            f"pr eval {summary['title']}{scope} - protocol {summary['protocol']}",
            ["breakdown", "value", "accuracy", "correct", "total"],
            rows,
        )
    )
    for key in (
        "headline",
        "score_strict",
        "score_loose",
        "row_accuracy",
        "settings",
        "four_dimensional",
        "text_only",
    ):
        if key in summary:
            console.print(f"{key}: {summary[key]}")
    console.print(f"items: [bold]{cfg.out / 'items.jsonl'}[/]   summary: {cfg.out / 'summary.json'}")
    if result.missing_predictions:
        console.print(
            f"[yellow]{result.missing_predictions} of {summary['n']} item(s) had no prediction "
            "and count as wrong[/]"
        )
    say_redone(result.redone, "item(s)")


@app.command("mcnemar")
@handle_errors
@config_command(McNemarConfig, positional=("a", "b"))
def mcnemar_cmd(cfg: McNemarConfig, json_out: bool = False) -> None:
    """Paired McNemar test between two models' per-item outcomes.

    b = items A got right and B wrong, c = the reverse. The default exact binomial test on b + c is
    the one that reproduces the paper's p-values.
    """
    from prcli.mcnemar import run_mcnemar

    report = run_mcnemar(cfg)
    if json_out:
        print_json(report.as_dict())
        return
    r = report.overall
    console.print(
        table(
            f"2x2 table ({cfg.field}), n = {r.n}",
            ["", "B right", "B wrong"],
            [["A right", r.both_correct, f"b = {r.b}"], ["A wrong", f"c = {r.c}", r.both_wrong]],
        )
    )
    level = round(100 * (1 - r.alpha))
    rows = [
        ["accuracy A / B", f"{r.acc_a:.2f} / {r.acc_b:.2f}"],
        [
            f"difference B - A ({level}% CI, Agresti-Min)",
            f"{r.difference:+.2f}  [{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]",
        ],
    ]
    if r.bootstrap_ci:
        rows.append([f"bootstrap {level}% CI", f"[{r.bootstrap_ci[0]:+.2f}, {r.bootstrap_ci[1]:+.2f}]"])
    if r.odds_ratio is not None and r.odds_ratio_ci is not None:
        rows.append(
            [
                "odds ratio c/b (exact CI)",
                f"{r.odds_ratio:.3g}  [{r.odds_ratio_ci[0]:.3g}, {r.odds_ratio_ci[1]:.3g}]",
            ]
        )
    for name, p in r.p_values.items():
        rows.append([f"p ({name}){' <- selected' if name == r.method else ''}", f"{p:.4g}"])
    console.print(table("McNemar", ["", "value"], rows))
    for warning in r.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if report.dropped:
        console.print(
            f"[yellow]dropped {len(report.dropped)} line(s)[/] (--intersect): "
            + "; ".join(report.dropped[:5])
        )
    if report.outcome == "perception":
        e = report.excluded
        console.print(
            f"excluded {e['items']} item(s) whose perception_error is null (nothing checked): "
            f"{e['a']} in A, {e['b']} in B"
        )
    if report.only_a or report.only_b:
        console.print(
            f"[yellow]unpaired ids dropped[/]: {len(report.only_a)} only in A, {len(report.only_b)} only in B"
        )
    if report.by:
        console.print(
            table(
                f"by {report.by} ({report.correction} correction)",
                ["value", "n", "b", "c", "acc A", "acc B", "p", "p adjusted"],
                [
                    [
                        c.value,
                        c.result.n,
                        c.result.b,
                        c.result.c,
                        f"{c.result.acc_a:.1f}",
                        f"{c.result.acc_b:.1f}",
                        f"{c.result.p_value:.4g}",
                        f"{c.p_adjusted:.4g}",
                    ]
                    for c in report.categories
                ],
            )
        )


@app.command("report")
@handle_errors
@config_command(ReportConfig, positional=("eval_dirs",), short={"out": "-o"})
def report_cmd(cfg: ReportConfig, json_out: bool = False) -> None:
    """One models x benchmarks table from several `pr eval` folders, like the paper's Table 1.

    Each cell: accuracy, protocol, a mark when scored on a subset; other rows add the difference to
    --baseline and McNemar's p where both scored the same items. Writes OUT/report.md, .tex, .png, .json.
    """
    from prcli.report import table_rows, write_report

    report, paths = write_report(cfg)
    if json_out:
        print_json(report.as_dict())
        return
    header, rows = table_rows(report)
    grid = list(zip(header, *rows, strict=True))  # benchmarks down, models across: fits a terminal
    console.print(table("pr report", ["", *grid[0][1:]], grid[1:]), markup=False)
    for note in report.notes():
        console.print(note, markup=False)
    console.print("wrote " + ", ".join(str(p) for p in paths), markup=False)


for name, command in LAPTOP_COMMANDS.items():
    app.command(name)(command)

app.add_typer(cache_app, name="cache")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
