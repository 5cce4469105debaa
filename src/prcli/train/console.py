"""What a researcher watches while `pr train` runs: one progress display instead of TRL's raw logs.

TRL prints its whole metric dict on every step, interleaved with a tqdm bar and the libraries'
deprecation warnings. By default the run shows instead one line per logging step (a live rich
progress bar on a terminal, plain lines in a job log): the step, the four rewards, judge failures
and time, step time and the time left. Every number still goes to `metrics.jsonl`; `--verbose`
brings back the raw logs and warnings.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import Any

from prcli.rewards import REWARD_NAMES
from prcli.ui import console

_SHORT = {"accuracy": "acc", "format": "fmt", "perception": "perc", "repetition": "rep"}
_LIBRARIES = ("transformers", "trl", "accelerate", "peft", "torch", "datasets", "deepspeed", "vllm")


def summary_line(logs: dict[str, Any], step_seconds: float | None) -> str:
    """One step's essentials from TRL's log dict (the keys `metrics.jsonl` keeps in full)."""
    parts = []
    rewards = " ".join(
        f"{_SHORT[name]} {logs[key]:.2f}"
        for name in REWARD_NAMES
        if isinstance(logs.get(key := f"rewards/{name}/mean"), (int, float))
    )
    if rewards:
        parts.append(rewards)
    if isinstance(logs.get("reward"), (int, float)):
        parts.append(f"reward {logs['reward']:.3f}")
    judge = []
    if isinstance(logs.get("judge/failures"), (int, float)):
        judge.append(f"{int(logs['judge/failures'])} failed")
    if isinstance(logs.get("judge/seconds"), (int, float)):
        judge.append(f"{logs['judge/seconds']:.1f}s")
    if judge:
        parts.append("judge " + ", ".join(judge))
    if step_seconds is not None:
        parts.append(f"step {step_seconds:.1f}s")
    return " | ".join(parts)


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def console_callback() -> Any:
    """A TrainerCallback showing progress on the main process (a TrainerCallback subclass, built
    lazily so that importing prcli does not import transformers)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from transformers import TrainerCallback

    class _Console(TrainerCallback):
        def __init__(self) -> None:
            self.live = console.is_terminal
            self.progress: Progress | None = None
            self.task: Any = None
            self.started = 0.0
            self.first_step = 0
            self.step_started = 0.0
            self.step_seconds: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            self.started = time.monotonic()
            self.first_step = state.global_step  # a resumed run's rate counts only its own steps
            if self.live:
                self.progress = Progress(
                    TextColumn("[bold]step"),
                    MofNCompleteColumn(),
                    BarColumn(bar_width=20),
                    TextColumn("{task.fields[line]}"),
                    TextColumn("[dim]{task.fields[left]}"),
                    console=console,
                )
                self.progress.start()
                self.task = self.progress.add_task(
                    "train", total=state.max_steps, completed=state.global_step, line="", left=""
                )

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_seconds = time.monotonic() - self.step_started

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            done = state.global_step - self.first_step
            left = ""
            if done > 0:
                rate = (time.monotonic() - self.started) / done
                left = f"{_clock(rate * (state.max_steps - state.global_step))} left"
            line = summary_line(logs, self.step_seconds)
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step, line=line, left=left)
            else:
                text = f"step {state.global_step}/{state.max_steps} | {line} | {left}".rstrip(" |")
                console.print(text, soft_wrap=True)  # a job log: one line a step, never wrapped

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return _Console()


def replace_trl_output(trainer: Any) -> None:
    """Swap transformers' tqdm bar / raw log printer for our display."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(console_callback())


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Hide the libraries' progress bars and their deprecation notices for the run, and restore
    both afterwards. Their logged warnings stay on (transformers' report of missing or unexpected
    weights, TRL's warnings about settings), and so does every warning of our own; `verbose`
    leaves the progress bars and notices on too."""
    if verbose:
        yield
        return
    import datasets
    import transformers

    tf_bars = transformers.utils.logging.is_progress_bar_enabled()
    ds_bars = datasets.utils.logging.is_progress_bar_enabled()
    try:
        transformers.utils.logging.disable_progress_bar()
        datasets.utils.logging.disable_progress_bar()
        with warnings.catch_warnings():
            for name in _LIBRARIES:  # notices about the libraries' own future, raised from their code
                for category in (FutureWarning, DeprecationWarning):
                    warnings.filterwarnings("ignore", category=category, module=rf"{name}(\.|$)")
            yield
    finally:
        if tf_bars:
            transformers.utils.logging.enable_progress_bar()
        if ds_bars:
            datasets.utils.logging.enable_progress_bar()
