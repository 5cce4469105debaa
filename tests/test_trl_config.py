"""`pr train --config` YAML in TRL's names: aliases of ours, `extra_trl_args`, and did-you-mean errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prcli.cli import app
from prcli.config import resolve_config, save_config
from prcli.jsonl import InputError
from prcli.train import TrainConfig
from prcli.train.config import build_grpo_config

runner = CliRunner()


def config_from(tmp_path: Path, values: dict) -> TrainConfig:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    return resolve_config(TrainConfig, {}, set(), path)


BASE = {"data": "d.jsonl", "output_dir": "o", "device": "cpu"}


def test_a_trl_yaml_gives_the_same_grpo_config_as_ours(tmp_path):
    trl = config_from(
        tmp_path,
        {
            **BASE,
            "model_name_or_path": "qwen2.5-vl-7b",
            "num_train_epochs": 2,
            "per_device_train_batch_size": 4,
            "reward_weights": [1.0, 0.2, 0.5, 0.8],
            "warmup_steps": 0.1,
            "delta": 3.0,
            "use_peft": True,
            "lora_target_modules": ["q_proj", "v_proj"],
            "use_vllm": True,
            "vllm_mode": "server",
            "vllm_server_base_url": "http://10.0.0.2:8000",
            "vllm_enable_sleep_mode": False,
            "learning_rate": 3e-6,
        },
    )
    ours = config_from(
        tmp_path,
        {
            **BASE,
            "model": "qwen2.5-vl-7b",
            "epochs": 2,
            "per_device_batch_size": 4,
            "w_accuracy": 1.0,
            "w_format": 0.2,
            "w_perception": 0.5,
            "w_repetition": 0.8,
            "warmup_ratio": 0.1,
            "dual_clip": 3.0,
            "lora": True,
            "lora_targets": "q_proj,v_proj",
            "vllm": "server",
            "vllm_server_url": "http://10.0.0.2:8000",
            "learning_rate": 3e-6,
        },
    )
    assert trl == ours
    a, b = build_grpo_config(trl), build_grpo_config(ours)
    assert a.to_dict() == b.to_dict()
    assert a.reward_weights == [1.0, 0.2, 0.5, 0.8] and a.delta == 3.0 and a.num_train_epochs == 2


def test_use_vllm_alone_means_trls_default_mode(tmp_path):
    assert config_from(tmp_path, {**BASE, "model": "m", "use_vllm": False}).vllm == "off"
    assert config_from(tmp_path, {**BASE, "model": "m", "use_vllm": True}).vllm == "colocate"
    both = {
        **BASE,
        "model": "m",
        "use_vllm": True,
        "vllm_mode": "server",
        "vllm_server_base_url": "http://h:8000",
    }
    assert config_from(tmp_path, both).vllm == "server"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 2, "num_train_epochs": 3}, "num_train_epochs (TRL's name) and epochs both set epochs"),
        ({"gradient_accumulation_steps": 4}, "worked out by prcli from prompts_per_step"),
        ({"reward_weights": [1, 2]}, "give 4 weights"),
        ({"warmup_steps": 100}, "as a ratio of the steps"),
        ({"learning_rat": 1e-6}, "learning_rat: not an option of this command; did you mean learning_rate?"),
        ({"num_generation": 4}, "did you mean num_generations?"),
        (
            {"extra_trl_args": {"scale_reward": "batch"}},
            "not a setting of TRL's GRPOConfig; did you mean scale_rewards?",
        ),
        ({"extra_trl_args": {"learning_rate": 1e-5}}, "prcli has this option; set it at the top level"),
        ({"extra_trl_args": {"num_train_epochs": 3}}, "its alias num_train_epochs"),
        ({"extra_trl_args": {"steps_per_generation": 2}}, "worked out by prcli"),
        ({"extra_trl_args": {"hub_token": "hf_abc"}}, "a token is never written in a config"),
        (
            {"extra_trl_args": {"mask_truncated_completions": "often"}},
            "extra_trl_args.mask_truncated_completions",
        ),
    ],
)
def test_mistakes_are_named(tmp_path, values, message):
    with pytest.raises(InputError, match=r"c\.yaml") as err:
        config_from(tmp_path, {**BASE, "model": "m", **values})
    assert message in str(err.value)


def test_extra_trl_args_reach_trl_unchanged_and_are_saved(tmp_path):
    cfg = config_from(
        tmp_path,
        {
            **BASE,
            "model": "m",
            "extra_trl_args": {
                "scale_rewards": "batch",
                "lr_scheduler_type": "cosine",
                "mask_truncated_completions": True,
                "top_entropy_quantile": 0.2,
            },
        },
    )
    args = build_grpo_config(cfg)
    assert args.scale_rewards == "batch" and args.mask_truncated_completions is True
    assert args.lr_scheduler_type == "cosine" and args.top_entropy_quantile == 0.2
    # as plain values, so config.yaml records them
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["extra_trl_args"]["lr_scheduler_type"] == "cosine"


def test_pr_train_reports_a_bad_trl_yaml_before_loading_anything(tmp_path):
    (tmp_path / "c.yaml").write_text("num_train_epoch: 3\n")
    result = runner.invoke(
        app,
        [
            "train",
            "-m",
            "m",
            "--data",
            str(tmp_path / "d.jsonl"),
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(tmp_path / "c.yaml"),
        ],
    )
    assert result.exit_code == 1
    assert "num_train_epoch: not an option of this command; did you mean num_train_epochs" in result.output
    assert not (tmp_path / "o").exists()
