"""fp32 master weights: why (AdamW at lr 1e-6 on bf16 weights), when, and that training keeps them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import SMALL
from prcli.cli import app
from prcli.train import TrainConfig
from prcli.train.config import bf16_on
from prcli.train.precision import policy_dtype, sharding_engine
from test_train import annotated_set

FP32, BF16 = torch.float32, torch.bfloat16


@pytest.mark.parametrize(
    ("device", "bf16", "engine", "lora", "dtype"),
    [
        ("cpu", None, None, False, FP32),  # bf16 off by default on CPU
        ("cpu", True, None, False, FP32),  # bf16 autocast over fp32 weights
        ("cuda", None, None, False, FP32),  # one GPU or DDP: bf16 on by default, weights fp32
        ("cuda", False, None, False, FP32),
        ("cuda", None, "deepspeed", False, BF16),  # DeepSpeed's optimizer holds the fp32 masters
        ("cuda", None, "fsdp", False, BF16),  # accelerate upcasts FSDP's trainable parameters
        ("cuda", False, "deepspeed", False, FP32),  # no mixed precision: fp32 throughout
        ("cuda", False, "fsdp", False, FP32),
        ("cuda", None, None, True, BF16),  # LoRA: frozen base, fp32 adapters
        ("cuda", False, None, True, FP32),
    ],
)
def test_load_dtype(device: str, bf16: bool | None, engine: Any, lora: bool, dtype: torch.dtype) -> None:
    cfg = TrainConfig(model="m", data=Path("d"), output_dir=Path("o"), device=device, bf16=bf16, lora=lora)
    assert policy_dtype(bf16_on(cfg), engine, cfg.lora) == dtype


def test_sharding_engine_is_read_from_accelerate_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert sharding_engine() is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharding_engine() == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert sharding_engine() == "deepspeed"


def adamw_steps(dtype: torch.dtype, steps: int) -> float:
    """Share of weights (N(0, 0.02), stored in `dtype`) that `steps` AdamW steps at lr 1e-6 changed."""
    gen = torch.Generator().manual_seed(0)
    start = (torch.randn(10_000, generator=gen) * 0.02).to(dtype)
    weights = torch.nn.Parameter(start.clone())
    grad = torch.randn(10_000, generator=gen).to(dtype)
    opt = torch.optim.AdamW([weights], lr=1e-6, weight_decay=1e-3)
    for _ in range(steps):
        weights.grad = grad.clone()
        opt.step()
    return (weights.detach() != start).float().mean().item()


def test_adamw_at_lr_1e6_rounds_bf16_updates_away() -> None:
    # bf16 keeps 8 significant bits: a 1e-6 step is below half the spacing of all but the tiniest weights,
    # and it rounds back the same way every step, so the weights never move
    assert adamw_steps(BF16, steps=1) < 0.05
    assert adamw_steps(BF16, steps=20) < 0.05
    # fp32 masters take every update
    assert adamw_steps(FP32, steps=1) > 0.99


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_bf16_training_on_cpu_keeps_fp32_weights(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lora: bool
) -> None:
    import transformers

    import prcli.train.run as run_module

    # record what the policy's linear layers compute in, and the trainer's state before the final save
    computed: set[torch.dtype] = set()
    load = transformers.AutoModelForImageTextToText.from_pretrained

    def load_and_watch(*args: Any, **kwargs: Any) -> Any:
        loaded = load(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading info)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda _m, _i, out: computed.add(out.dtype))
        return loaded

    seen: dict[str, Any] = {}
    save_final = run_module.save_final

    def look_then_save(trainer: Any, *args: Any, **kwargs: Any) -> None:
        params = list(trainer.model.parameters())
        seen["trained"] = {p.dtype for p in params if p.requires_grad}
        seen["frozen"] = {p.dtype for p in params if not p.requires_grad}
        seen["adam"] = {s["exp_avg"].dtype for s in trainer.optimizer.state.values() if "exp_avg" in s}
        seen["step"], seen["precision"] = trainer.state.global_step, trainer.accelerator.mixed_precision
        save_final(trainer, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", load_and_watch)
    monkeypatch.setattr(run_module, "save_final", look_then_save)

    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL, "--bf16"]
    result = CliRunner().invoke(app, [*args, "--max-steps", "1", *(["--lora"] if lora else [])])
    assert result.exit_code == 0, result.output

    assert seen["step"] == 1 and seen["precision"] == "bf16"
    assert BF16 in computed  # autocast: the layers computed in bf16
    assert seen["trained"] == seen["adam"] == {FP32}  # what AdamW updates is fp32
    # LoRA: the frozen base stays in bf16, as loaded (PEFT made the adapters fp32)
    assert seen["frozen"] == ({BF16} if lora else set())
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["policy_dtype"] == ("bfloat16" if lora else "float32")
    # the final model is written in the compute dtype, and says so
    from safetensors import safe_open

    config = json.loads((run / "config.json").read_text())
    assert config["dtype"] == config["text_config"]["dtype"] == config["vision_config"]["dtype"] == "bfloat16"
    assert saved["final_dtype"] == "bfloat16"
    with safe_open(run / "model.safetensors", "pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"BF16"}  # noqa: SIM118


@pytest.mark.slow
def test_an_announced_engine_that_accelerate_does_not_set_up_is_refused(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FSDP announced in one CPU process: accelerate runs plain single-process training, so the
    bf16-loaded policy would be updated in bf16 by AdamW. Refused before the first step."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL, "--bf16"]
    result = CliRunner().invoke(app, [*args, "--max-steps", "1"])
    assert result.exit_code == 1, result.output
    assert "the trained weights are torch.bfloat16 and accelerate set up NO" in result.output
    assert not run.exists()


def test_the_bf16_cast_keeps_tied_weights_tied() -> None:
    from prcli.train.save import _cast

    shared, ids = torch.randn(4, 4), torch.arange(3)
    out = _cast({"embed": shared, "lm_head": shared, "other": torch.randn(2), "ids": ids}, BF16)
    assert out["embed"] is out["lm_head"] and out["embed"].dtype == BF16 and out["other"].dtype == BF16
    assert out["ids"] is ids
