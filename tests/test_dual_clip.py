"""Dual-clip PPO (`--dual-clip`, the released run's c = 3.0) through TRL's own GRPO loss."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from conftest import SMALL
from prcli.cli import app
from prcli.train import TrainConfig
from prcli.train.config import build_grpo_config
from prcli.train.trainer import trainer_class
from test_train import annotated_set

# Three completions of two tokens: (ratio pi/pi_old, advantage) per token, epsilon 0.2 / 0.3, c = 3.
RATIOS = [[4.0, 1.1], [2.0, 0.5], [4.0, 0.5]]
ADVANTAGES = [-1.0, -0.5, 2.0]
# Per-token loss by hand, dual-clip PPO: -A min(r, clip(r)) for A > 0, -A min(max(r, clip(r)), c) for A < 0
#   A=-1:   r=4   -> max(4, 1.3) = 4 > c: the dual clip binds, 1 x 3 = 3 (PPO alone: 4); r=1.1 -> 1.1
#   A=-0.5: r=2   -> max(2, 1.3) = 2 < c: 0.5 x 2 = 1.0;   r=0.5 -> max(0.5, 0.8) = 0.8: 0.5 x 0.8 = 0.4
#   A=2:    r=4   -> min(4, 1.3) = 1.3: -2.6;               r=0.5 -> min(0.5, 0.8) = 0.5: -1.0
# dapo: summed over the 6 tokens, divided by the 6 tokens of the batch.
DUAL_LOSS = (3.0 + 1.1 + 1.0 + 0.4 - 2.6 - 1.0) / 6
PPO_LOSS = (4.0 + 1.1 + 1.0 + 0.4 - 2.6 - 1.0) / 6
# d loss / d log pi = -A r where the ratio is not clipped, else 0; divided by 6.
DUAL_GRAD = [[0.0, 1.1 / 6], [1.0 / 6, 0.0], [0.0, -1.0 / 6]]
PPO_GRAD = [[4.0 / 6, 1.1 / 6], [1.0 / 6, 0.0], [0.0, -1.0 / 6]]


def make_trainer(model_dir: Path, tmp_path: Path, dual_clip: float | None) -> Any:
    """Our trainer as `train()` builds it (same options, classes and model), without data."""
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cfg = TrainConfig(
        model=str(model_dir),
        data=tmp_path / "d.jsonl",
        output_dir=tmp_path / "out",
        device="cpu",
        prompts_per_step=2,
        num_generations=4,
        per_device_batch_size=8,
        dual_clip=dual_clip,
    )
    trainer = trainer_class(False, cfg.card(2))(
        model=AutoModelForImageTextToText.from_pretrained(str(model_dir)),
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)] * 4,
        args=build_grpo_config(cfg),
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 2),
        processing_class=AutoProcessor.from_pretrained(str(model_dir)),
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    return trainer


def loss_and_grad(trainer: Any, **extra: torch.Tensor) -> tuple[float, list[list[float]]]:
    """The trainer's loss for RATIOS and ADVANTAGES, and its gradient by the new log-probs."""
    old = torch.full((3, 2), -2.0)
    new = (old + torch.tensor(RATIOS).log()).requires_grad_()
    # the policy's forward pass, replaced by the log-probs of the case (entropies, aux loss)
    trainer._get_per_token_logps_and_entropies = lambda *_, **__: (new, torch.zeros(3, 2), None)
    ones = torch.ones(3, 2, dtype=torch.long)
    inputs = {
        "prompt_ids": ones[:, :1],
        "prompt_mask": ones[:, :1],
        "completion_ids": ones,
        "completion_mask": ones,
        "advantages": torch.tensor(ADVANTAGES),
        "old_per_token_logps": old,
        "num_items_in_batch": torch.tensor(6.0),
        **extra,
    }
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    assert new.grad is not None
    return loss.item(), new.grad.tolist()


@pytest.mark.slow
def test_dual_clip_loss_equals_the_hand_computed_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    dual = make_trainer(tiny_model_dir, tmp_path, dual_clip=3.0)
    assert dual.loss_type == "dapo" and dual.importance_sampling_level == "token"
    loss, grad = loss_and_grad(dual)
    assert loss == pytest.approx(DUAL_LOSS, abs=1e-6)
    assert grad == [pytest.approx(row, abs=1e-6) for row in DUAL_GRAD]

    ppo_loss, ppo_grad = loss_and_grad(make_trainer(tiny_model_dir, tmp_path, dual_clip=None))
    assert ppo_loss == pytest.approx(PPO_LOSS, abs=1e-6)
    assert ppo_grad == [pytest.approx(row, abs=1e-6) for row in PPO_GRAD]
    # the only difference: the negative-advantage token past c, its loss (4 - 3) x 1 / 6 lower, no gradient
    assert ppo_loss - loss == pytest.approx(1 / 6, abs=1e-6)

    # vLLM's importance-sampling correction weighs each token's clipped loss afterwards, as verl does
    dual.use_vllm = dual.vllm_importance_sampling_correction = True
    weights = torch.tensor([[0.5, 1.0], [1.0, 1.0], [1.0, 1.0]])
    weighted, _ = loss_and_grad(dual, importance_sampling_ratio=weights)
    assert weighted == pytest.approx(DUAL_LOSS - 0.5 * 3.0 / 6, abs=1e-6)


def test_dual_clip_options(tmp_path: Path) -> None:
    base = {"model": "m", "data": tmp_path / "d.jsonl", "output_dir": tmp_path / "o", "device": "cpu"}
    assert build_grpo_config(TrainConfig(**base)).delta is None
    assert build_grpo_config(TrainConfig(**base, dual_clip=3.0)).delta == 3.0
    with pytest.raises(ValueError, match="at least 1 \\+ epsilon_high"):
        TrainConfig(**base, dual_clip=1.2)
    with pytest.raises(ValueError, match="needs a clipped loss"):
        TrainConfig(**base, dual_clip=3.0, loss_type="cispo")


@pytest.mark.slow
def test_a_training_step_with_dual_clip(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL]
    result = CliRunner().invoke(app, [*args, "--dual-clip", "3.0", "--max-steps", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["global_step"] == 1
    (row,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(row["loss"])
