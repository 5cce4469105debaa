"""The dtype the policy is loaded in: the weights AdamW updates stay fp32 whatever computes in bf16.

AdamW's first steps move a weight by about the learning rate (1e-6), while bf16 keeps 8 significant
bits: next to a weight of 0.02 its neighbours are 1.2e-4 away, so on bf16 weights nearly every update
rounds back to the old value, step after step (tests/test_precision.py shows it). Hence:

- one device or plain DDP: the policy is loaded in fp32, and `bf16=True` in the trainer's arguments
  only makes accelerate run forward and backward under bf16 autocast;
- DeepSpeed and FSDP keep fp32 master weights themselves (DeepSpeed's bf16 optimizer holds fp32
  copies; accelerate upcasts FSDP's trainable parameters to fp32 under mixed precision), so the
  policy is loaded in bf16 there, which halves host memory while loading;
- LoRA: the base weights are frozen and PEFT makes the adapters fp32 (ZeRO-3 aside, which holds
  fp32 masters), so the base is loaded in bf16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Engine = Literal["deepspeed", "fsdp"]


def sharding_engine() -> Engine | None:
    """DeepSpeed or FSDP when `accelerate launch` set one up (it says so in the environment), else None.

    Read before the trainer (and its accelerator) exists, since the model is loaded first."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if parse_flag_from_env("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return None


def policy_dtype(bf16: bool, engine: Engine | None, lora: bool) -> torch.dtype:
    """The dtype to load the policy in: bf16 only where something else keeps the trained weights fp32."""
    import torch

    if bf16 and (engine is not None or lora):
        return torch.bfloat16
    return torch.float32


def final_dtype(bf16: bool) -> torch.dtype | None:
    """The dtype of the final model's weights: bf16 when the run computed in bf16 (the fp32 masters
    served the optimizer; checkpoints keep them), else as trained (None)."""
    import torch

    return torch.bfloat16 if bf16 else None


def check_master_weights(trainer: Any) -> None:
    """Refuse a run whose trained weights are not fp32 and that keeps no fp32 copy of them.

    `policy_dtype` decides from the environment before the trainer exists; accelerate may then not
    set up what the environment announced (it ignores DeepSpeed on CPU and FSDP in one process), and
    AdamW would update bf16 weights directly. What accelerate did set up is known only now.
    """
    import torch

    from prcli.errors import StageError

    kind = trainer.accelerator.distributed_type.value
    if kind in ("DEEPSPEED", "FSDP"):
        return
    low = sorted(
        {str(p.dtype) for p in trainer.model.parameters() if p.requires_grad and p.dtype != torch.float32}
    )
    if low:
        raise StageError(
            f"the trained weights are {', '.join(low)} and accelerate set up {kind}, which keeps no fp32 "
            "copy for AdamW (bf16 weights round most updates away): the environment announced "
            f"{sharding_engine()} but accelerate did not use it; launch with its config on GPUs, or unset "
            "ACCELERATE_USE_DEEPSPEED / ACCELERATE_USE_FSDP"
        )
