"""`pr train`: GRPO with the perception reward, on TRL's `GRPOTrainer`.

One small file per concern, in the order a run uses them:

- `config`: `TrainConfig` (every option) and its mapping onto TRL's `GRPOConfig` and PEFT;
- `data`: training rows (chat prompt, images, answer, annotations) from annotated records;
- `rewards`: `BatchRewards`, the four rewards of a rollout batch computed once, served as four TRL
  reward functions so each is weighted and logged on its own;
- `policy`: the model trained, loaded from the base or a checkpoint in the right dtype (`precision`);
- `trainer`: the trainer class (TRL's, or one that leaves resumed weights alone);
- `callbacks`: the metrics log, the first-step marker (a failed start leaves no folder) and the
  judge outage guard;
- `checkpoints`: which checkpoint `--resume` continues from;
- `save`: the final model, gathered from every process (DDP, FSDP, ZeRO-3) and written once;
- `run`: `train()`, which ties them together.

The same entry point runs on a laptop CPU, one GPU, or many GPUs under `accelerate launch`.
"""

from prcli.train.config import TrainConfig
from prcli.train.run import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
