"""The final model: gathered from every process, written once, loadable by `from_pretrained`.

Under ZeRO-3 each process holds a partition of every parameter (the module's own tensors are empty
placeholders) and under FSDP2 each parameter is a DTensor holding one shard, so rank 0 saving its
unwrapped model alone writes empty weights (ZeRO-3) or fails on the shards (FSDP2). The weights are
therefore gathered by every process first (a collective), and only then written by the main process.

Why not `Trainer.save_model`: it gathers only when the trainer itself set up FSDP with a
FULL_STATE_DICT type (with SHARDED_STATE_DICT it writes no weights at all), falls back to a
DeepSpeed checkpoint that `from_pretrained` cannot load when ZeRO-3's 16-bit gathering is off,
and writes only the adapter of a LoRA run. The gathering below is the one it uses
(`Accelerator.get_state_dict`), plus torch's own for DTensor shards however they were made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator


def full_state_dict(model: torch.nn.Module, accelerator: Accelerator) -> dict[str, torch.Tensor]:
    """The whole state dict of `model` on the main process (other processes may get `{}`).

    Every process must call this: gathering is a collective, and one process missing hangs the rest.
    `model` is the outermost wrapper (DDP module, DeepSpeed engine, FSDP module), as the trainer's
    `model_wrapped`. FSDP2 parameters are DTensors, gathered with torch's distributed-checkpoint API
    to full CPU tensors on rank 0 (whoever sharded them: accelerate, transformers or `fully_shard`);
    everything else goes through accelerate: ZeRO-3 consolidates the partitions on rank 0
    (`stage3_gather_16bit_weights_on_model_save` must be on, as in examples/accelerate), FSDP1
    uses a full state dict, DDP and a single process unwrap.
    """
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in model.parameters()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)
    return accelerator.get_state_dict(model)


def write_final(
    model: torch.nn.Module,
    accelerator: Accelerator,
    processor: Any,
    out: Path,
    base_model: str | None,
    dtype: torch.dtype | None = None,
) -> None:
    """Gather `model` (on every process), then write it to `out` with `processor` (main process).

    With LoRA (`base_model` set: the model the adapter was trained on), `out/adapter` gets the
    adapter and `out` the merged model. The merge is done on a fresh copy of the base model, loaded
    on the main process's CPU, with the adapter just written: the trained model's own base weights
    are placeholders or shards under ZeRO-3 and FSDP (merging into them merges into those), and
    the copy costs host memory once, at the end. Every process returns after the files are written.

    `dtype` (the run's compute dtype, bf16) is the dtype of the written weights: the fp32 master
    weights of a one-GPU or DDP run are for the optimizer, and the model is used in bf16 (a 7B model
    in fp32 is 30 GB). Checkpoints keep the masters, so a resumed run is exact.
    """
    state = full_state_dict(model, accelerator)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        if base_model is None:
            if dtype is not None:
                state = _cast(state, dtype)
            unwrapped.save_pretrained(out, state_dict=state)
            if dtype is not None:  # save_pretrained wrote the masters' dtype (fp32) into config.json
                _set_dtype(unwrapped.config, dtype)
                unwrapped.config.save_pretrained(out)
        else:
            unwrapped.save_pretrained(out / "adapter", state_dict=state)  # PEFT keeps the adapter's keys
            dtype = unwrapped.get_base_model().dtype
            del state
            _merged(base_model, out / "adapter", dtype).save_pretrained(out)
        processor.save_pretrained(out)
    accelerator.wait_for_everyone()


def check_final_save(grpo_args: Any) -> None:
    """Refuse, before the model loads, a ZeRO-3 run whose final weights could not be gathered.

    Without 16-bit gathering on save, ZeRO-3 can only write its own partitioned checkpoint, which
    `from_pretrained` cannot load: the run would train for hours and fail at the final save.
    """
    from prcli.errors import StageError

    plugin = getattr(grpo_args, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return
    if not plugin.get_value("zero_optimization.stage3_gather_16bit_weights_on_model_save", False):
        raise StageError(
            "DeepSpeed ZeRO-3 without 16-bit gathering on save cannot write a final model that "
            "from_pretrained loads: set zero3_save_16bit_model: true in the accelerate config (or "
            "stage3_gather_16bit_weights_on_model_save in the DeepSpeed JSON), as examples/accelerate does"
        )


def save_final(
    trainer: Any, processor: Any, out: Path, base_model: str | None, dtype: torch.dtype | None = None
) -> None:
    """The trained policy in `out` (see `write_final`); every process of the run must call this."""
    write_final(trainer.model_wrapped, trainer.accelerator, processor, out, base_model, dtype)


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors in `dtype`; tensors that share storage (tied embeddings) still share it,
    so save_pretrained writes them once."""
    done: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
            continue
        alias = (value.data_ptr(), tuple(value.shape))
        if alias not in done:
            done[alias] = value.to(dtype)
        out[key] = done[alias]
    return out


def _set_dtype(config: Any, dtype: torch.dtype) -> None:
    """The dtype in a model config and in its sub-configs (text, vision), which tools read too."""
    name = str(dtype).removeprefix("torch.")
    config.dtype = name
    for sub in ("text_config", "vision_config"):
        if getattr(config, sub, None) is not None:
            getattr(config, sub).dtype = name


def _merged(base_model: str, adapter: Path, dtype: torch.dtype) -> Any:
    """`base_model` on CPU with the adapter in `adapter` merged into its weights."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    with _no_zero3_init():  # all of it on this process alone: no ZeRO-3 gathering
        base = AutoModelForImageTextToText.from_pretrained(base_model, dtype=dtype)
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


@contextmanager
def _no_zero3_init() -> Iterator[None]:
    """`from_pretrained` as in a plain process, on one process of a ZeRO-3 run.

    While the run's DeepSpeed config is registered (a weak reference in transformers),
    `from_pretrained` enters `deepspeed.zero.Init` and gathers parameters across processes:
    collectives the other processes, waiting at the final barrier, never join.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered
