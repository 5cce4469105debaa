"""The trainer class a run uses: TRL's, or a subclass that leaves resumed weights alone."""

from __future__ import annotations

from typing import Any


def trainer_class(skip_weight_load: bool, base: Any = None) -> Any:
    """`base` (TRL's GRPOTrainer by default; `pr sft` passes SFTTrainer), or a subclass of it that
    leaves the weights alone on resume (already loaded by `policy.load_trainable`)."""
    if base is None:
        from trl import GRPOTrainer

        base = GRPOTrainer
    if not skip_weight_load:
        return base

    class _Trainer(base):  # type: ignore[misc,valid-type]
        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            """The policy came from this checkpoint through `from_pretrained`; optimizer, scheduler,
            RNG and trainer state are still restored by the trainer."""

    return _Trainer
