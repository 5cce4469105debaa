"""`pr sft`: supervised fine-tuning on annotated chains of thought, on TRL's `SFTTrainer`.

A cold start before GRPO: the policy learns the training prompt's think/answer/boxed format from
worked solutions. Model loading, LoRA, precision, resume, metrics and the final save are `pr train`'s.

- `config`: `SFTStageConfig` (every option) and its mapping onto TRL's `SFTConfig`;
- `run`: `sft()`, rows (the training prompt, the CoT as the assistant turn) and the trainer.
"""

from prcli.sft.config import SFTStageConfig
from prcli.sft.run import SFTResult, sft

__all__ = ["SFTResult", "SFTStageConfig", "sft"]
