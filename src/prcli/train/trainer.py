"""Our `GRPOTrainer` subclass and the final save."""

from __future__ import annotations

from pathlib import Path
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


def save_final(trainer: Any, processor: Any, out: Path, lora: bool) -> None:
    """The final policy in `out`, loadable by `from_pretrained` (LoRA: merged; adapter in out/adapter)."""
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
