"""Trainer callbacks: the metrics log, the first-step marker and the judge outage guard."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from prcli.train.console import quiet_libraries
from prcli.train.processes import main_process

if TYPE_CHECKING:
    from prcli.train.rewards import BatchRewards

R = TypeVar("R")


class MetricsCallback:
    """Writes one JSON line per logging step to DIR/metrics.jsonl (main process only)."""

    def __new__(cls, path: Path) -> Any:  # a TrainerCallback subclass, built lazily (transformers import)
        from transformers import TrainerCallback

        class _Metrics(TrainerCallback):
            def __init__(self) -> None:
                self.path = path
                self._step_started = time.monotonic()
                self._step_times: list[float] = []

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self._step_started = time.monotonic()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self._step_times.append(time.monotonic() - self._step_started)

            def on_log(
                self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
            ) -> None:
                if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                    return
                row: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
                row.update({k: _finite(v) for k, v in logs.items()})
                if self._step_times:
                    row["step_time"] = sum(self._step_times) / len(self._step_times)
                    self._step_times.clear()
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")

        return _Metrics()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class FirstStep:
    """Whether this run finished an optimizer step: before that, a failure is a failed start."""

    def __init__(self) -> None:
        self.done = False

    def callback(self) -> Any:
        from transformers import TrainerCallback

        flag = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                flag.done = True

        return _Callback()


class JudgeOutage:
    """The outage guard: checkpoint and stop when the judge fails too often over a window of steps.

    Under `--failure-policy skip` a failed judgement moves no advantage, so a judge that dies
    mid-run would let training go on without the perception reward and exit 0. The rule: once
    `window` steps have run, stop when more than `threshold` of their judged rollouts (those with
    annotations) failed. The counts come summed over the processes, so every process decides
    alike and all stop together (no process left waiting in a collective).
    """

    def __init__(self, rewards: BatchRewards, window: int, threshold: float):
        self.rewards = rewards
        self.window = window
        self.threshold = threshold
        self.steps: deque[tuple[int, int, int]] = deque(maxlen=window)  # (step, failed, judged)
        self.tripped = False

    def observe(self, step: int, failed: int, judged: int) -> bool:
        """Record one step's counts; True when the run must stop."""
        if not self.window:
            return False
        self.steps.append((step, failed, judged))
        n_failed = sum(s[1] for s in self.steps)
        n_judged = sum(s[2] for s in self.steps)
        full = len(self.steps) == self.window
        self.tripped = full and n_judged > 0 and n_failed / n_judged > self.threshold
        return self.tripped

    def message(self, checkpoint: Path) -> str:
        n_failed = sum(s[1] for s in self.steps)
        n_judged = sum(s[2] for s in self.steps)
        first, last = self.steps[0][0], self.steps[-1][0]
        error = (self.rewards.last_error or "(failed on another process)").rstrip(".")
        return (
            f"judge outage: {n_failed} of {n_judged} judgements failed over steps {first}-{last} "
            f"(more than {self.threshold:.0%}); last error: {error}. Stopped rather than train on without "
            f"the perception reward; checkpoint saved: {checkpoint}. Fix the judge (or point "
            "--judge-base-url at a working one), then run the same command with --resume"
        )

    def callback(self) -> Any:
        from transformers import TrainerCallback

        guard = self

        class _Callback(TrainerCallback):
            # on_step_end runs before the Trainer's log/evaluate/save of the step
            # (`_maybe_log_save_evaluate`), so the step is logged and its checkpoint saved
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if guard.observe(state.global_step, *guard.rewards.take_outage_counts()):
                    control.should_save = True
                    control.should_training_stop = True
                    control.should_evaluate = False  # its judgements would fail too

            def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                guard.rewards.take_outage_counts()  # validation's judgements are no training step's

        return _Callback()


def without_failed_starts(output_dir: Path, verbose: bool, run: Callable[[FirstStep], R]) -> R:
    """`run(first_step)` with the libraries quiet (unless `verbose`); a run that fails before its
    first optimizer step removes the output folder if it created it, so the corrected re-run
    starts clean. A folder that existed before is never deleted."""
    fresh = not output_dir.exists()
    first_step = FirstStep()
    try:
        with quiet_libraries(verbose):
            return run(first_step)
    except BaseException:
        if fresh and not first_step.done and main_process():
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
