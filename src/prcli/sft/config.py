"""`SFTStageConfig`: every option of `pr sft`, and its mapping onto TRL's `SFTConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from prcli.config import StageConfig
from prcli.model_card import TrainingFacts
from prcli.prompts import render_template
from prcli.sources import DataSource, SourceOptions
from prcli.trackers import TrackerOptions
from prcli.train.config import (
    LORA_TARGETS,
    AdamBeta2,
    HubModelId,
    LoraAlpha,
    LoraDropout,
    LoraOn,
    LoraRank,
    LoraTargets,
    Overwrite,
    PushToHub,
    Resume,
    card_facts,
    hub_repo,
)
from prcli.train.processes import world_size


class SFTStageConfig(StageConfig, SourceOptions, TrackerOptions):
    """Everything `pr sft` needs."""

    model: str = Field(description="Base VLM: alias (qwen2.5-vl-7b), hub id or local path.")
    data: DataSource = Field(
        description="Problems with a worked solution (`cot`): JSONL (annotated or not) or a dataset (see --field)."
    )
    output_dir: Path = Field(description="Run folder: checkpoints, final model, config, metrics.")
    prompt_template: str = Field(
        "r1",
        description="How a question becomes the prompt; use the one `pr train` will use (r1, r1-multiline, "
        "cot, plain, or a text with {question}).",
    )
    epochs: float = Field(2.0, gt=0, description="Passes over the training set.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate (cosine decay after warmup).")
    weight_decay: float = Field(0.0, description="AdamW weight decay.")
    adam_beta2: AdamBeta2 = 0.999
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of the steps spent warming up.")
    max_grad_norm: float = Field(1.0, description="Gradient clipping norm.")
    batch_size: int = Field(32, ge=1, description="Examples per optimizer step (over all processes).")
    per_device_batch_size: int = Field(
        2, ge=1, description="Examples per forward/backward pass on each device."
    )
    max_length: int = Field(
        4096, ge=1, description="Examples longer than this (prompt with image tokens + solution) are dropped."
    )
    min_pixels: int = Field(3136, ge=1, description="Smallest image area (pixels), as `pr train`.")
    max_pixels: int = Field(1806336, ge=1, description="Largest image area (pixels), as `pr train`.")
    freeze_vision: bool = Field(False, description="Freeze the vision tower.")

    lora: LoraOn = False
    lora_r: LoraRank = 64
    lora_alpha: LoraAlpha = 128
    lora_dropout: LoraDropout = 0.05
    lora_targets: LoraTargets = LORA_TARGETS

    seed: int = Field(42, description="Random seed.")
    resume: Resume = False
    overwrite: Overwrite = False
    save_steps: int = Field(50, ge=1, description="Save a checkpoint every N steps.")
    save_total_limit: int | None = Field(None, description="Keep at most this many checkpoints.")
    logging_steps: int = Field(1, ge=1, description="Write metrics every N steps.")
    push_to_hub: PushToHub = False
    hub_model_id: HubModelId = None
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train (auto: CUDA if available)."
    )
    bf16: bool | None = Field(None, description="bf16 compute (default: on for CUDA, off on CPU).")
    gradient_checkpointing: bool | None = Field(
        None, description="Gradient checkpointing (default: on for CUDA)."
    )
    verbose: bool = Field(False, description="TRL's raw per-step logs and the libraries' warnings.")
    skip_invalid: bool = Field(
        False, description="Skip bad input lines (written to a rejected file) instead of stopping."
    )

    def card(self, examples: int) -> TrainingFacts:
        """What the model card says about this run."""
        keys = (
            "output_dir", "prompt_template", "learning_rate", "epochs", "max_steps", "batch_size", "max_length",
            "lora", "freeze_vision", "seed",
        )  # fmt: skip
        return card_facts(self, "sft", examples, keys)

    @model_validator(mode="after")
    def _check(self) -> SFTStageConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        render_template(self.prompt_template, "x")  # raises for a template without {question}
        return self


def build_sft_config(cfg: SFTStageConfig) -> Any:
    """TRL's SFTConfig: prompt-completion rows, loss on the completion (the assistant turn) only."""
    from trl import SFTConfig

    from prcli.errors import StageError
    from prcli.train.config import bf16_on, on_cuda

    cuda = on_cuda(cfg)  # type: ignore[arg-type]
    world = world_size()
    per_device = min(cfg.per_device_batch_size, max(1, cfg.batch_size // world))
    if cfg.batch_size % (per_device * world):
        raise StageError(
            f"--batch-size {cfg.batch_size} must split evenly over {world} process(es) x "
            f"--per-device-batch-size {per_device}"
        )
    return SFTConfig(
        output_dir=str(cfg.output_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta2=cfg.adam_beta2,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="cosine",
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=cfg.batch_size // (per_device * world),
        # Rows longer than max_length are dropped when loaded: truncating here could cut image tokens.
        max_length=None,
        completion_only_loss=True,
        assistant_only_loss=False,
        packing=False,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        run_name=cfg.run_name,
        push_to_hub=cfg.push_to_hub,
        hub_model_id=hub_repo(cfg),
        bf16=bf16_on(cfg),  # type: ignore[arg-type]
        use_cpu=not cuda,
        gradient_checkpointing=cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else cuda,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world > 1 else None,
    )
