"""`pr train` across processes on CPU: every process takes part in the final save, and the final
model is the trained one, whole (DDP under `accelerate launch`, FSDP2 shards under `torchrun`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import SMALL, annotated_set, free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SEEN = [
    "hint",
    "circle",
    "reason",
    "answer",
    "process",
    "think",
    "within",
    "angle",
    "radius",
    "ABC",
    "JK",
    "GE",
]
"""Annotations that about a quarter of the tiny model's random completions reflect (words and names of its
tokenizer's corpus): perception rewards differ within a group, so two GRPO steps move the weights."""


def subprocess_env() -> dict[str, str]:
    """The launched processes import the prcli under test, not whichever copy is installed."""
    import prcli

    src = str(Path(prcli.__file__).parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).state_dict()


def merged_weights(base: Path, adapter: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload().state_dict()


def assert_equal(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def assert_changed(got: dict[str, torch.Tensor], before: dict[str, torch.Tensor]) -> None:
    assert any(not torch.equal(got[name], tensor) for name, tensor in before.items())


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_two_processes_with_accelerate_launch(tiny_model_dir: Path, tmp_path: Path, lora: bool) -> None:
    """Two processes, gloo DDP on CPU; the final model is the last checkpoint's, written once.

    accelerate 1.15's `--cpu --num_processes 2` starts a single process (its multi-CPU launcher
    needs mpirun); `--multi_gpu` starts two through torch's launcher, and our trainer, finding no
    GPU, runs them on CPU with gloo. A save that some process skips hangs: the timeout catches it.
    """
    run = tmp_path / "run"
    data = annotated_set(tmp_path, annotations=SEEN)
    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    train = ["-m", "prcli.cli", "train", "-m", str(tiny_model_dir), "--data", str(data)]
    train += ["-o", str(run), *SMALL, "--per-device-batch-size", "4", "--max-steps", "2", "--save-steps", "2"]
    train += ["--learning-rate", "1e-3", "--warmup-ratio", "0", "--json"]
    if lora:
        train += ["--lora", "--lora-r", "4", "--lora-alpha", "8", "--lora-targets", "q_proj,v_proj"]
    proc = subprocess.run(launch + train, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["world_size"] == 2
    summary = json.loads(proc.stdout)  # only rank 0 prints the result
    assert summary["num_processes"] == 2 and summary["distributed_type"] == "MULTI_CPU"
    last = run / "checkpoint-2"
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and any(r["grad_norm"] > 0 for r in rows)

    final, initial = weights(run), weights(tiny_model_dir)
    if lora:
        adapter = load_file(run / "adapter" / "adapter_model.safetensors")
        assert_equal(adapter, load_file(last / "adapter_model.safetensors"))
        assert_equal(final, merged_weights(tiny_model_dir, last))
    else:
        assert_equal(final, weights(last))
    assert_changed(final, initial)
    from transformers import AutoProcessor

    AutoProcessor.from_pretrained(run)


def test_fsdp2_shards_are_gathered_into_the_final_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Our final save on a model sharded by torch's FSDP2 over two processes (gloo on CPU): the
    written model holds the whole weights, as before sharding, and so does a merged LoRA model.

    accelerate 1.15 turns FSDP on CPU into a one-process run, so the model is sharded by hand with
    `fully_shard`; the worker calls the save function the trainer's `save_final` calls. Rank 0
    saving its unwrapped model alone (the old way) fails on the DTensor shards; a gather that some
    process skips hangs, which the timeout catches.
    """
    worker = Path(__file__).with_name("fsdp2_save.py")
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(free_port()), str(worker), str(tiny_model_dir), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    assert_equal(weights(tmp_path / "full"), load_file(tmp_path / "reference-full.safetensors"))
    merged = load_file(tmp_path / "reference-merged.safetensors")
    assert_equal(weights(tmp_path / "lora"), merged)
    assert_changed(merged, weights(tiny_model_dir))
    adapter = load_file(tmp_path / "lora" / "adapter" / "adapter_model.safetensors")
    assert_equal(adapter, load_file(tmp_path / "reference-adapter.safetensors"))


def zero3_run(monkeypatch: pytest.MonkeyPatch, model: Path, tmp_path: Path, gather: str) -> Any:
    """A small run's config, in the environment `accelerate launch` gives each process of a ZeRO-3
    run (`gather`: its zero3_save_16bit_model). DeepSpeed itself is needed, but no GPU."""
    from prcli.train import TrainConfig

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO3_INIT", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", gather)
    data = annotated_set(tmp_path)
    return TrainConfig(
        model=str(model),
        data=data,
        output_dir=tmp_path / "run",
        device="cpu",
        prompts_per_step=2,
        num_generations=4,
        max_pixels=12544,
    )


def test_zero3_is_on_when_the_policy_loads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ZeRO-3, `from_pretrained` must see the run's DeepSpeed config, or every process loads
    the whole model instead of its partition. The config is registered when our GRPOConfig is
    built, so that must come first; the final save's load of the LoRA base on one process must not
    see it (zero.Init's collectives would hang), and the run's config is back after it.

    `accelerate launch` with a DeepSpeed config passes it to each process as these environment
    variables. DeepSpeed itself is needed (transformers checks that it is installed) but no GPU:
    the test stops at the load.
    """
    pytest.importorskip("deepspeed")
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    from prcli.train import train
    from prcli.train.save import _no_zero3_init

    class Loaded(Exception):
        pass

    seen: list[bool] = []

    def from_pretrained(*args: object, **kwargs: object) -> None:
        seen.append(is_deepspeed_zero3_enabled())
        with _no_zero3_init():
            seen.append(is_deepspeed_zero3_enabled())
        seen.append(is_deepspeed_zero3_enabled())
        raise Loaded

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", from_pretrained)
    cfg = zero3_run(monkeypatch, tiny_model_dir, tmp_path, gather="true")
    try:
        with pytest.raises(Loaded):
            train(cfg)
    finally:
        unset_hf_deepspeed_config()
    assert seen == [True, False, True]


@pytest.mark.parametrize("gather", ["true", "false"])
def test_zero3_without_16bit_gathering_is_refused_before_the_model_loads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gather: str
) -> None:
    """ZeRO-3 could not write a loadable final model: stop before hours of training, not after."""
    pytest.importorskip("deepspeed")
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import unset_hf_deepspeed_config

    from prcli.errors import StageError
    from prcli.train import train

    class Loaded(Exception):
        pass

    def from_pretrained(*args: object, **kwargs: object) -> None:
        raise Loaded

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", from_pretrained)
    cfg = zero3_run(monkeypatch, tiny_model_dir, tmp_path, gather=gather)
    expected = (Loaded, None) if gather == "true" else (StageError, "zero3_save_16bit_model: true")
    try:
        with pytest.raises(expected[0], match=expected[1]):
            train(cfg)
    finally:
        unset_hf_deepspeed_config()
    assert not cfg.output_dir.exists()
