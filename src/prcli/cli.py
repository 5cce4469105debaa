"""`pr`: the command line. Thin: parse options, build a config, call the library, render results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prcli import __version__
from prcli.cli_common import config_command
from prcli.judge.run import JudgeRunConfig
from prcli.train import TrainConfig
from prcli.ui import console, fail, handle_errors, print_json, progress, table

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


def _not_available(command: str, issue: int) -> typer.Exit:
    return fail(f"`pr {command}` is not available yet in this version (tracked in issue {issue}).")


@app.command("annotate")
@handle_errors
def annotate_cmd(
    problems: Annotated[
        Path, typer.Argument(help="Problem records (JSONL): id, question, images, answer, [cot].")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Annotated records (JSONL) to write or resume.")],
) -> None:
    """Distil and filter CoTs, then extract numbered visual annotations."""
    raise _not_available("annotate", 5)


@app.command("train")
@handle_errors
@config_command(TrainConfig, short={"model": "-m", "output_dir": "-o"})
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


@app.command("judge")
@handle_errors
@config_command(JudgeRunConfig, positional=("responses",), short={"out": "-o"})
def judge_cmd(cfg: JudgeRunConfig, json_out: bool = False) -> None:
    """Score responses with the visual perception judge (offline scoring, audits).

    Each output line holds one verdict per annotation and score = sum(verdicts) / #annotations.
    Re-running the same command resumes; judgements that failed after retries are retried.
    """
    from prcli.judge.run import run_judge

    with progress() as bar:
        task = bar.add_task("judging", total=None)
        summary = run_judge(
            cfg,
            on_start=lambda n: bar.update(task, total=n),
            on_item=lambda: bar.advance(task),
        )
    if json_out:
        print_json(summary.as_dict())
    else:
        st = summary.stats
        console.print(
            table(
                f"pr judge ({cfg.backend})",
                [
                    "responses",
                    "done before",
                    "judged now",
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
                        st.get("cache_hits", 0),
                        summary.failed,
                        summary.rejected,
                        summary.mean_score,
                        round(summary.seconds, 1),
                    ]
                ],
            )
        )
        console.print(f"judgements: [bold]{summary.out}[/]")
    if summary.failed:
        raise fail(
            f"{summary.failed} judgement(s) failed after retries (listed in {summary.failed_path}); "
            "run the same command again to retry them"
        )


@app.command("eval")
@handle_errors
def eval_cmd(
    bench: Annotated[str, typer.Option("--bench", "-b", help="Benchmark name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: items.jsonl and summary.json.")],
) -> None:
    """Evaluate a model (or saved predictions) on a benchmark with its official scoring."""
    raise _not_available("eval", 6)


@app.command("mcnemar")
@handle_errors
def mcnemar_cmd(
    a: Annotated[Path, typer.Argument(help="Per-item outcomes of model A (JSONL, e.g. items.jsonl).")],
    b: Annotated[Path, typer.Argument(help="Per-item outcomes of model B.")],
) -> None:
    """Paired McNemar test between two models' per-item outcomes."""
    raise _not_available("mcnemar", 7)


@app.command("demo")
@handle_errors
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every artifact of the demo.")] = Path(
        "demo-out"
    ),
) -> None:
    """Run the whole method end to end on a laptop: synthetic data, tiny model, every stage."""
    raise _not_available("demo", 8)


@app.command("tiny-model")
@handle_errors
def tiny_model_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model, tokenizer and processor to.")],
    family: Annotated[str, typer.Option("--family", help="qwen2.5-vl or qwen2-vl.")] = "qwen2.5-vl",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random initialisation.")] = 0,
) -> None:
    """Build a tiny randomly initialised Qwen-VL (for tests and the demo; no download)."""
    from prcli.tiny import FAMILIES, build_tiny_model

    if family not in FAMILIES:
        raise fail(f"--family must be one of {', '.join(FAMILIES)}, got {family!r}", code=2)
    path = build_tiny_model(out_dir, family, seed=seed)  # type: ignore[arg-type]
    console.print(f"tiny {family} model written to [bold]{path}[/]")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
