"""Which process this is in a distributed run, and counts summed over all of them.

Read from the launcher's environment (torchrun / accelerate set RANK and WORLD_SIZE), so these
work before any process group or trainer exists.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def sum_over_processes(*counts: int) -> tuple[int, ...]:
    """`counts` summed over the processes of a distributed run (as they are on one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return counts
    device = "cpu"
    if dist.get_backend() == "nccl":  # this runs on TRL's reward thread: name the device explicitly
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    total = torch.tensor(counts, dtype=torch.long, device=device)
    dist.all_reduce(total)
    return tuple(int(x) for x in total.tolist())
