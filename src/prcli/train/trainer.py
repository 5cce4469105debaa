"""The trainer class a run uses: TRL's, with prcli's model card, leaving resumed weights alone."""

from __future__ import annotations

from typing import Any

from prcli.model_card import TrainingFacts, write_card


def trainer_class(skip_weight_load: bool, card: TrainingFacts, base: Any = None) -> Any:
    """A subclass of `base` (TRL's GRPOTrainer by default; `pr sft` passes SFTTrainer) whose model card
    is prcli's (`card`), and which, with `skip_weight_load`, leaves the weights alone on resume (already
    loaded by `policy.load_trainable`)."""
    if base is None:
        from trl import GRPOTrainer

        base = GRPOTrainer

    class _Trainer(base):  # type: ignore[misc,valid-type]
        def create_model_card(self, *args: Any, **kwargs: Any) -> None:
            """The card TRL writes beside checkpoints and pushes with them: ours, which names the real
            base model, the data and the rewards."""
            if self.is_world_process_zero():
                from pathlib import Path

                write_card(Path(self.args.output_dir), card)

        if skip_weight_load:

            def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
                """The policy came from this checkpoint through `from_pretrained`; optimizer, scheduler,
                RNG and trainer state are still restored by the trainer."""

    return _Trainer
