"""Trainer callbacks: the metrics log and the first-step marker."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


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
