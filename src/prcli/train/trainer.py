"""Our `GRPOTrainer` subclass."""

from __future__ import annotations

from typing import Any


def trainer_class(skip_weight_load: bool) -> Any:
    """GRPOTrainer, or one that leaves the weights alone on resume (already loaded by us)."""
    from trl import GRPOTrainer

    if not skip_weight_load:
        return GRPOTrainer

    class _Trainer(GRPOTrainer):  # type: ignore[misc]
        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            """The policy came from this checkpoint through `from_pretrained`; optimizer, scheduler,
            RNG and trainer state are still restored by the trainer."""

    return _Trainer
