"""`pr`: the command line. Thin: parse options, build a config, call the library, render results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prcli import __version__
from prcli.ui import console, fail, handle_errors

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
def train_cmd(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Alias, hub id or local path of the policy VLM.")
    ],
    data: Annotated[Path, typer.Option("--data", help="Annotated records (JSONL) from `pr annotate`.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Run folder: checkpoints, metrics.")],
) -> None:
    """GRPO post-training with accuracy, format, repetition and visual perception rewards."""
    raise _not_available("train", 4)


@app.command("judge")
@handle_errors
def judge_cmd(
    responses: Annotated[Path, typer.Argument(help="Response records (JSONL): id, response, [annotations].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Judgements (JSONL) to write or resume.")],
) -> None:
    """Score responses with the visual perception judge (offline scoring, audits)."""
    raise _not_available("judge", 3)


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
