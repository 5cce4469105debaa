"""Run by test_train_distributed.py under `torchrun --nproc_per_node 2` (gloo, CPU).

`python fsdp2_save.py MODEL OUT`: the tiny model, and the same with a LoRA adapter, sharded with
torch's FSDP2 (`fully_shard`: every parameter a DTensor holding half of it) and written by our final
save (`write_final`) to OUT/full and OUT/lora. Rank 0 first writes what the unsharded models hold to
OUT/reference-*.safetensors, for the test to compare with.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoModelForImageTextToText, AutoProcessor

from prcli.train.save import write_final


def sharded(model: torch.nn.Module) -> torch.nn.Module:
    fully_shard(model, mesh=init_device_mesh("cpu", (2,)))
    assert all(isinstance(p, DTensor) for p in model.parameters())
    return model


def reference(state: dict[str, torch.Tensor], path: Path, accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, path)


def main(model_dir: str, out: Path) -> None:
    accelerator = Accelerator(cpu=True)  # the gloo process group, from torchrun's environment
    processor = AutoProcessor.from_pretrained(model_dir)

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    reference(model.state_dict(), out / "reference-full.safetensors", accelerator)
    write_final(sharded(model), accelerator, processor, out / "full", base_model=None)

    torch.manual_seed(0)  # the same adapter on both ranks; non-zero B, so the merge changes weights
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32), lora)
    reference(get_peft_model_state_dict(model), out / "reference-adapter.safetensors", accelerator)
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    reference(merged, out / "reference-merged.safetensors", accelerator)
    write_final(sharded(model), accelerator, processor, out / "lora", base_model=model_dir)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
