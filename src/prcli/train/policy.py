"""The policy model a run trains: loaded from the base model or a checkpoint, in the right dtype.

Shared by `pr train` and `pr sft`, so both resume, refuse damaged weights and keep fp32 masters alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.models import model_errors
from prcli.train.checkpoints import has_full_weights
from prcli.train.precision import final_dtype, policy_dtype, sharding_engine


@dataclass
class Policy:
    model: Any
    dtype: Any  # what it was loaded in (precision.py)
    bf16: bool  # bf16 compute
    from_checkpoint: bool  # weights already loaded from the resumed checkpoint

    @property
    def final_dtype(self) -> Any:
        """The final model's dtype (None: as trained)."""
        return final_dtype(self.bf16)

    def facts(self) -> dict[str, str]:
        """config.yaml's record of the dtypes."""
        return {
            "policy_dtype": str(self.dtype).removeprefix("torch."),
            "final_dtype": str(self.final_dtype or self.dtype).removeprefix("torch."),
        }


def load_trainable(
    model_path: str, name: str, checkpoint: Path | None, *, bf16: bool, lora: bool, freeze_vision: bool
) -> Policy:
    """The policy to train, from `checkpoint` when resuming a full-weight run.

    transformers 5's own resume loads a checkpoint's weights by raw state-dict names, which its
    save_pretrained has converted back to the hub layout: all but lm_head are silently skipped and
    training would go on from the base weights. So the policy is loaded from the checkpoint here,
    and the trainer told to leave the weights alone (`trainer.trainer_class`).
    """
    # fp32 weights for AdamW, unless DeepSpeed, FSDP or LoRA keep the trained ones fp32 (precision.py)
    dtype = policy_dtype(bf16, sharding_engine(), lora)
    from_checkpoint = checkpoint is not None and not lora and has_full_weights(checkpoint)
    model = load_policy(str(checkpoint) if from_checkpoint else model_path, dtype, name)
    if freeze_vision:
        for param_name, param in model.named_parameters():
            if "visual" in param_name:
                param.requires_grad_(False)
    return Policy(model, dtype, bf16, from_checkpoint)


def load_policy(path: str, dtype: Any, name: str) -> Any:
    """The policy from `path`, refused if any of its weights was missing or the wrong shape.

    transformers only logs such weights and initialises them at random, so a truncated or
    mismatched checkpoint would otherwise be trained from noise without an error."""
    from transformers import AutoModelForImageTextToText

    with model_errors(name):
        model, info = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, output_loading_info=True)
    bad = [*info.get("missing_keys", []), *(str(k[0]) for k in info.get("mismatched_keys", []))]
    if bad:
        shown = ", ".join(sorted(bad)[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise StageError(
            f"{path}: {len(bad)} weight(s) missing or of the wrong shape ({shown}); refusing to train them from random values"
        )
    return model
