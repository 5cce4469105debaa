"""Terminal output: one rich console on stderr for humans, stdout kept for `--json` results."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from prcli.errors import StageError
from prcli.jsonl import InputError

console = Console(stderr=True, highlight=False)
P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> typer.Exit:
    """The message as written: a path or value like `runs/[test]` is not read as rich markup."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our expected errors into a message and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise fail(f"bad input\n{exc}") from None
        except StageError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:  # an output path that cannot be written, a file that vanished, a full disk
            where = f"{exc.filename}: " if exc.filename else ""
            why = exc.strerror or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)):
                why = "a file stands where a folder is needed (choose another output path)"
            raise fail(f"{where}{why}") from None
        except KeyboardInterrupt:
            console.print(
                "[yellow]interrupted[/]: finished work is saved; run the same command again to resume"
            )
            raise typer.Exit(130) from None

    return wrapper


def progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and not _force_progress(),
    )


def with_progress(label: str, run: Callable[[Callable[[int | None], None], Callable[..., None]], R]) -> R:
    """`run(on_start, on_item)` under a progress bar: on_start(total) sizes it, on_item(k=1) advances it."""
    with progress() as bar:
        task = bar.add_task(label, total=None)
        return run(lambda n: bar.update(task, total=n), lambda k=1: bar.advance(task, k))


def say_redone(count: int, what: str) -> None:
    """Resume reuses a result only for the same input: say when finished ones were done again."""
    if count:
        console.print(
            f"{count} {what} redone: their input or settings changed since the last run, or they had failed"
        )


def retry_failed(count: int, what: str, listed_in: Any) -> typer.Exit:
    """The exit for a run that finished except for `count` failed model calls, which a re-run retries."""
    return fail(
        f"{count} {what} failed after retries (listed in {listed_in}); run the same command again to retry them"
    )


def _force_progress() -> bool:
    import os

    return os.environ.get("PRCLI_PROGRESS", "") == "1"


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*[_cell(v) for v in row])
    return t


def endpoints_table(title: str, endpoints: list[dict[str, Any]]) -> Table:
    """Per-URL traffic and health of an LLM connection (`prcli.llm.EndpointStats`)."""
    columns = ["url", "requests", "failures", "taken out", "p50 s", "p95 s"]
    keys = ["url", "requests", "failures", "taken_out", "p50_s", "p95_s"]
    return table(title, columns, [[ep.get(k) for k in keys] for ep in endpoints])


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


@contextlib.contextmanager
def stdout_for_results_only() -> Iterator[None]:
    """Libraries that print (transformers' trainer logs, tqdm) go to stderr while a command runs;
    stdout stays for `--json` results, written with `print_json`."""
    global _results
    _results = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _results = None


_results: Any = None


def print_json(obj: Any) -> None:
    """The machine-readable result, alone on stdout."""
    stream = _results or sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")
    stream.flush()
