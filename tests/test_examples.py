"""The shipped examples are valid: accelerate configs load, the training YAML resolves, scripts parse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from prcli.config import resolve_config
from prcli.train import TrainConfig, build_grpo_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("name", "kind", "processes", "machines"),
    [
        ("single_gpu.yaml", "NO", 1, 1),
        ("zero3_8gpu.yaml", "DEEPSPEED", 8, 1),
        ("zero3_2nodes.yaml", "DEEPSPEED", 16, 2),
        ("fsdp_8gpu.yaml", "FSDP", 8, 1),
    ],
)
def test_accelerate_configs_load(name: str, kind: str, processes: int, machines: int) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(EXAMPLES / "accelerate" / name))
    assert cfg.distributed_type.value == kind
    assert (cfg.num_processes, cfg.num_machines) == (processes, machines)


def test_paper_training_yaml_resolves_to_the_released_run(tmp_path: Path) -> None:
    cli = {"model": "qwen2.5-vl-7b", "data": tmp_path / "a.jsonl", "output_dir": tmp_path / "run"}
    cfg = resolve_config(TrainConfig, cli, explicit=set(cli), config_file=EXAMPLES / "train_paper.yaml")
    assert cfg.judge == "openai" and cfg.judge_model == "Qwen/Qwen2.5-32B-Instruct-AWQ"
    assert cfg.weights.as_list() == [0.9, 0.1, 0.7, 1.0] and cfg.vllm == "colocate"
    args = build_grpo_config(cfg.model_copy(update={"device": "cpu", "vllm": "off"}))
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 128 * 8


def test_paper_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(EXAMPLES / "perception_r1_paper.sh")], check=True)
