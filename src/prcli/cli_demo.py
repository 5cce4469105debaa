"""The laptop commands: `pr demo`, `pr tasks`, `pr tiny-model` and `pr plot` (registered by `prcli.cli`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from prcli.cli_common import config_command
from prcli.demo import DemoConfig
from prcli.tasks import TasksConfig
from prcli.ui import console, fail, handle_errors, print_json, table


@handle_errors
@config_command(DemoConfig)
def demo_cmd(cfg: DemoConfig, json_out: bool = False) -> None:
    """The paper's comparison in miniature on a laptop: SFT warm start, then accuracy-only RLVR vs
    Perception-R1 from the same checkpoint, evaluated, diagnosed and tested.

    No GPU, no server, no download: draws figures whose answer must be seen, builds a tiny Qwen2.5-VL,
    annotates the CoTs, runs pr sft (on an imperfect teacher's CoTs: --teacher-slip, --teacher-misread),
    two pr train arms, pr eval, pr diagnose, pr mcnemar and plots.
    About 4.5 minutes on two CPU cores; --quick runs every stage on a few items.
    """
    from prcli.demo import run_demo

    summary = run_demo(cfg, say=console.print)
    if json_out:
        print_json(
            {
                "out": str(summary.out),
                "config": cfg.model_dump(mode="json", exclude={"config"}),
                "numbers": summary.numbers,
                "models": summary.models,
                "tests": summary.tests,
                "gain": summary.gain,
                "verdict": summary.verdict,
                "files": {k: str(v) for k, v in summary.files.items()},
                "plots": [str(p) for p in summary.plots],
                "seconds": {name: round(sec, 1) for name, _, sec in summary.steps},
            }
        )
        return

    def pct(value: float | None, ci: tuple[float, float] | None) -> str:
        return "n/a" if value is None or ci is None else f"{value:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"

    console.print(
        table(
            "pr demo: what happened",
            ["stage", "result", "seconds"],
            [[name, what, round(sec, 1)] for name, what, sec in summary.steps],
        )
    )
    console.print(
        table(
            f"held-out split (n={summary.models[0]['n']}; blind guess {summary.numbers['chance_accuracy']:.1%})",
            [
                "model",
                "accuracy [95% CI]",
                "perception errors [95% CI]",
                "checked",
                "wrong: misread / reasoning",
            ],
            [
                [
                    r["model"],
                    pct(r["accuracy"], r["accuracy_ci"]),
                    pct(r["perception_error_rate"], r["perception_error_ci"]),
                    r["checked"],
                    f"{r['wrong_misread']} / {r['wrong_reasoning']}",
                ]
                for r in summary.models
            ],
        )
    )
    console.print(
        table(
            "McNemar (exact) on held-out items: only A / only B = right (or error-free) in one model only",
            ["A vs B", "outcome", "n", "only A", "only B", "p"],
            [
                [
                    f"{t['a']} vs {t['b']}",
                    t["outcome"],
                    t["n"],
                    t["only_a"],
                    t["only_b"],
                    f"{t['p_value']:.3g}",
                ]
                for t in summary.tests
            ],
        )
    )
    console.print(f"[bold]{summary.gain}[/]")  # both lines carry the --quick warning
    console.print(f"[bold]{summary.verdict}[/]")
    console.print("plots:\n" + "\n".join(f"  {p}" for p in summary.plots))
    console.print(f"every file: {summary.out}")


@handle_errors
def plot_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(help="metrics.jsonl (pr train), items.jsonl (pr eval) and/or judgements (pr judge)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG files.")] = Path("plots"),
    field: Annotated[
        str | None, typer.Option(help="Category field for the eval comparison (default: guessed).")
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--labels",
            help="Series names, one per file in order: a,b,... or the option repeated "
            "(default: the part of the paths that differs, e.g. evals/NAME/mathvista/items.jsonl).",
        ),
    ] = None,
) -> None:
    """Plot training curves, eval comparisons (models side by side) and perception score distributions."""
    from prcli.plots import file_labels, plot_files

    names = [n.strip() for value in labels for n in value.split(",")] if labels else None
    for file, name in zip(files, file_labels(files, names), strict=True):
        console.print(f"series [bold]{name}[/]: {file}")
    for path in plot_files(files, out, field, names):
        console.print(f"wrote [bold]{path}[/]")


@handle_errors
@config_command(TasksConfig, short={"out": "-o"})
def tasks_cmd(cfg: TasksConfig, json_out: bool = False) -> None:
    """Draw synthetic perception tasks: figures whose answer must be read from the image, with correct
    CoTs and their visual facts (train.jsonl, and test.jsonl from seed + 1); with --teacher-slip or
    --teacher-misread, also train-teacher.jsonl: an imperfect teacher's CoTs for the training figures."""
    from prcli.tasks import chance_accuracy, write_splits

    try:
        train, test, teacher = write_splits(cfg)
    except ValueError as exc:
        raise fail(str(exc)) from None
    chance = chance_accuracy(cfg.kinds or None, cfg.test_size)
    if json_out:
        print_json(
            {
                "train": str(train),
                "test": str(test),
                "teacher": teacher and str(teacher),
                "chance_accuracy": chance,
            }
        )
        return
    console.print(f"wrote [bold]{train}[/] ({cfg.train_size}) and [bold]{test}[/] ({cfg.test_size})")
    if teacher:
        console.print(f"wrote [bold]{teacher}[/]: the teacher's CoTs for the same training figures")
    console.print(f"best held-out accuracy without looking at the figures: {chance:.1%}")


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


LAPTOP_COMMANDS: dict[str, Callable[..., Any]] = {
    "demo": demo_cmd,
    "plot": plot_cmd,
    "tasks": tasks_cmd,
    "tiny-model": tiny_model_cmd,
}
