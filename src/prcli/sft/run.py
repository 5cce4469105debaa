"""`sft()`: rows from worked solutions, TRL's `SFTTrainer`, and `pr train`'s loading, resume and save."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from prcli.config import save_config
from prcli.errors import StageError
from prcli.model_card import publish
from prcli.models import check_model
from prcli.records import Problem
from prcli.rewards import format_reward
from prcli.runs import StageResult
from prcli.sft.config import SFTStageConfig, build_sft_config
from prcli.sources import Source, local_path
from prcli.trackers import check_tracker, trainer_tracking
from prcli.train.callbacks import FirstStep, MetricsCallback, without_failed_starts
from prcli.train.checkpoints import (
    check_fresh_start,
    check_same_prompts,
    checkpoint_step,
    clear_earlier_run,
    prompt_text_hash,
    resume_checkpoint,
    trim_logs,
)
from prcli.train.config import bf16_on, lora_config
from prcli.train.console import replace_trl_output
from prcli.train.data import (
    fittable_images,
    fitted_rows,
    image_dataset,
    load_processor,
    prompt_length,
    stored,
)
from prcli.train.policy import load_trainable
from prcli.train.precision import check_master_weights
from prcli.train.processes import main_process, world_size
from prcli.train.save import check_final_save, save_final
from prcli.train.trainer import trainer_class

log = logging.getLogger("prcli.sft")

LOSS_ON = "completion (the assistant turn)"
"""What the loss covers: TRL's completion_only_loss on prompt-completion rows masks the prompt for VLMs
(its assistant_only_loss needs transformers >= 5.18 for vision data)."""


class SFTProblem(Problem):
    """A problem with a worked solution (`cot`); annotations, if any, are ignored."""

    @model_validator(mode="after")
    def _has_cot(self) -> SFTProblem:
        if not self.cot or not self.cot.strip():
            raise ValueError("`pr sft` needs a worked solution: this record has no `cot`")
        return self

    @field_validator("images")
    @classmethod
    def _fittable(cls, images: list[str], info: ValidationInfo) -> list[str]:
        return fittable_images(images, info)


def target_text(cot: str, answer: str) -> str:
    """The assistant turn: the CoT as is when already in the think/answer/boxed format, else wrapped in it."""
    cot = cot.strip()
    if format_reward(cot) == 1.0:
        return cot
    return f"<think>\n{cot}\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"


@dataclass
class SFTResult(StageResult):
    output_dir: Path
    global_step: int
    resumed_from: str | None
    train_examples: int
    dropped_examples: int
    metrics_path: Path
    seconds: float
    pushed_to: str | None = None  # the Hub commit of the final model (--push-to-hub)


def load_sft_rows(cfg: SFTStageConfig, processor: Any, rejected: Path | None = None) -> tuple[Any, int]:
    """Prompt-completion rows (conversational, images fitted once as `pr train` does) and how many were
    dropped as longer than `max_length`."""
    kept, total = [], 0
    for rec, row in fitted_rows(
        Source.of(cfg.data, cfg), SFTProblem, cfg.prompt_template, processor, cfg.skip_invalid, rejected
    ):
        total += 1
        target = target_text(rec.cot or "", rec.answer)
        length = prompt_length(row, processor)
        length += len(processor.tokenizer(target + "<|im_end|>\n", add_special_tokens=False)["input_ids"])
        if length <= cfg.max_length:
            completion = [{"role": "assistant", "content": [{"type": "text", "text": target}]}]
            kept.append(stored({"prompt": row["prompt"], "completion": completion, "images": row["images"]}))
    if not kept:
        raise StageError(f"every example in {cfg.data} is longer than max_length={cfg.max_length}")
    return image_dataset(kept), total - len(kept)


def sft(cfg: SFTStageConfig) -> SFTResult:
    """Supervised fine-tuning; a run that fails before its first step removes the folder it created."""
    return without_failed_starts(cfg.output_dir, cfg.verbose, lambda first_step: _run(cfg, first_step))


def _run(cfg: SFTStageConfig, first_step: FirstStep) -> SFTResult:
    from trl import SFTTrainer

    started = time.monotonic()
    out = cfg.output_dir
    check_tracker(cfg.report_to)
    model_path = check_model(cfg.model)
    args = build_sft_config(cfg)  # before the model: sets up the process group / DeepSpeed (see train)
    check_final_save(args)
    check_fresh_start(out, cfg.resume, cfg.overwrite, (Path(cfg.model), local_path(cfg.data)))
    checkpoint = resume_checkpoint(out) if cfg.resume else None
    prompts = {"prompt_text_hash": prompt_text_hash(cfg.prompt_template)}
    if checkpoint is not None:
        check_same_prompts(out, prompts)
    processor = load_processor(cfg)  # type: ignore[arg-type]
    train_ds, dropped = load_sft_rows(cfg, processor, out / "rejected.jsonl")
    if dropped:
        log.warning("dropped %d example(s) longer than max_length=%d", dropped, cfg.max_length)

    policy = load_trainable(
        model_path,
        cfg.model,
        checkpoint,
        bf16=bf16_on(cfg),  # type: ignore[arg-type]
        lora=cfg.lora,
        freeze_vision=cfg.freeze_vision,
    )
    card = cfg.card(len(train_ds))
    trainer = trainer_class(policy.from_checkpoint, card, base=SFTTrainer)(
        model=policy.model,
        args=args,
        train_dataset=train_ds,
        processing_class=processor,
        peft_config=lora_config(cfg) if cfg.lora else None,  # type: ignore[arg-type]
        callbacks=[MetricsCallback(out / "metrics.jsonl"), first_step.callback()],
    )
    check_master_weights(trainer)
    if not cfg.verbose:
        replace_trl_output(trainer)
    if cfg.overwrite:
        clear_earlier_run(out, trainer.accelerator)
    out.mkdir(parents=True, exist_ok=True)
    if main_process():
        import prcli

        extra = {
            "prcli_version": prcli.__version__,
            "world_size": world_size(),
            **prompts,
            "loss_on": LOSS_ON,
            **policy.facts(),
        }
        save_config(cfg, out / "config.yaml", extra=extra)
        if checkpoint is not None:
            trim_logs(out, checkpoint_step(checkpoint))
    with trainer_tracking(cfg, trainer, out, "sft"):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_final(trainer, processor, out, base_model=model_path if cfg.lora else None, dtype=policy.final_dtype)
    pushed = publish(out, card, cfg.push_to_hub) if main_process() else None
    return SFTResult(
        output_dir=out,
        global_step=trainer.state.global_step,
        resumed_from=str(checkpoint) if checkpoint else None,
        train_examples=len(train_ds),
        dropped_examples=dropped,
        metrics_path=out / "metrics.jsonl",
        seconds=time.monotonic() - started,
        pushed_to=pushed,
    )
