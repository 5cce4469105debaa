"""`train()`: load, check, wire TRL together, train, save."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prcli.config import save_config
from prcli.errors import StageError
from prcli.judge.core import Judge, build_judge
from prcli.judge.statements import LEXICAL_VERSION
from prcli.model_card import publish
from prcli.models import check_model
from prcli.runs import StageResult
from prcli.sources import local_path
from prcli.trackers import check_tracker, trainer_tracking
from prcli.train.callbacks import FirstStep, JudgeOutage, MetricsCallback, without_failed_starts
from prcli.train.checkpoints import (
    check_fresh_start,
    check_same_prompts,
    checkpoint_step,
    clear_earlier_run,
    prompt_text_hash,
    resume_checkpoint,
    trim_logs,
)
from prcli.train.config import TrainConfig, bf16_on, build_grpo_config, lora_config
from prcli.train.console import replace_trl_output
from prcli.train.data import check_enough_prompts, load_dataset_rows, load_processor
from prcli.train.policy import load_trainable
from prcli.train.precision import check_master_weights
from prcli.train.processes import main_process, world_size
from prcli.train.rewards import BatchRewards
from prcli.train.save import check_final_save, save_final
from prcli.train.trainer import trainer_class
from prcli.verify import VerifierPool

log = logging.getLogger("prcli.train")


@dataclass
class TrainResult(StageResult):
    output_dir: Path
    global_step: int
    resumed_from: str | None
    dropped_prompts: int
    train_examples: int
    judge_failures: int
    metrics_path: Path
    samples_path: Path
    seconds: float
    num_processes: int = 1
    distributed_type: str = "NO"
    pushed_to: str | None = None  # the Hub commit of the final model (--push-to-hub)


def train(cfg: TrainConfig) -> TrainResult:
    """Run GRPO; returns where everything went. Resumes from the newest complete checkpoint with `cfg.resume`.

    Nothing is written before the inputs (model, data, options, checkpoint) are known to be good, and
    a run that fails before its first optimizer step removes the output folder if it created it, so
    the corrected re-run starts clean. A folder that existed before is never deleted.
    """
    return without_failed_starts(cfg.output_dir, cfg.verbose, lambda first_step: _train(cfg, first_step))


def _train(cfg: TrainConfig, first_step: FirstStep) -> TrainResult:
    with contextlib.ExitStack() as cleanup:
        judge = build_judge(cfg.judge_config())  # first: a bad judge prompt stops before anything loads
        cleanup.callback(judge.close)
        return _run(cfg, first_step, judge, cleanup)


def _run(cfg: TrainConfig, first_step: FirstStep, judge: Judge, cleanup: contextlib.ExitStack) -> TrainResult:
    started = time.monotonic()
    out = cfg.output_dir
    check_tracker(cfg.report_to)
    model_path = check_model(cfg.model)
    # Built before the model is loaded, and kept alive until the trainer holds it: building it sets
    # up the process group (TrainingArguments.__post_init__ reads `self.device`, which makes
    # accelerate's PartialState) and, under `accelerate launch` with DeepSpeed, registers the
    # DeepSpeed config (DeepSpeedPlugin.set_deepspeed_weakref, a weak reference held by this object).
    # `from_pretrained` reads both: ZeRO-3 loads into `zero.Init`, partitioned as it loads (rank 0
    # reads the weights, the others get placeholders) instead of every process holding the whole
    # model in host memory; FSDP's cpu_ram_efficient_loading needs the process group to exist.
    grpo_args = build_grpo_config(cfg)
    check_final_save(grpo_args)
    check_fresh_start(
        out, cfg.resume, cfg.overwrite, (Path(cfg.model), *map(local_path, (cfg.data, cfg.eval_data)))
    )
    checkpoint = resume_checkpoint(out) if cfg.resume else None
    prompts = {
        "prompt_text_hash": prompt_text_hash(cfg.prompt_template),
        "judge_prompt_sha256": judge.prompt_sha256,
        "judge_rules": LEXICAL_VERSION if cfg.judge == "lexical" else None,  # the lexical judge's rules
    }
    if checkpoint is not None:
        check_same_prompts(out, prompts)
    processor = load_processor(cfg)
    train_ds, dropped = load_dataset_rows(cfg.data, cfg, processor, out / "rejected.jsonl")
    eval_ds = (
        load_dataset_rows(cfg.eval_data, cfg, processor, split=cfg.eval_split)[0] if cfg.eval_data else None
    )
    if dropped:
        log.warning("dropped %d prompt(s) longer than max_prompt_length=%d", dropped, cfg.max_prompt_length)
    check_enough_prompts(len(train_ds), dropped, cfg)

    policy = load_trainable(
        model_path, cfg.model, checkpoint, bf16=bf16_on(cfg), lora=cfg.lora, freeze_vision=cfg.freeze_vision
    )

    pool = VerifierPool(workers=cfg.accuracy_workers or None, timeout=cfg.accuracy_timeout)
    cleanup.callback(pool.close)
    rewards = BatchRewards(
        judge,
        pool=pool,
        ngram_size=cfg.ngram_size,
        ngram_max_penalty=cfg.ngram_max_penalty,
        samples_path=out / "completions.jsonl",
        sample_every=cfg.sample_every,
        samples_per_step=cfg.samples_per_step,
    )
    outage = JudgeOutage(rewards, cfg.judge_outage_window, cfg.judge_outage_threshold)
    card = cfg.card(len(train_ds))
    trainer = trainer_class(policy.from_checkpoint, card)(
        model=policy.model,
        reward_funcs=rewards.functions(),
        args=grpo_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=processor,
        peft_config=lora_config(cfg) if cfg.lora else None,
        callbacks=[MetricsCallback(out / "metrics.jsonl"), first_step.callback(), outage.callback()],
    )
    check_master_weights(trainer)
    if not cfg.verbose:
        replace_trl_output(trainer)
    if cfg.overwrite:
        clear_earlier_run(out, trainer.accelerator)
    out.mkdir(parents=True, exist_ok=True)  # only now: every input is known to be good
    if main_process():
        import prcli

        extra = {
            "prcli_version": prcli.__version__,
            "world_size": world_size(),
            **prompts,
            **policy.facts(),
        }
        save_config(cfg, out / "config.yaml", extra=extra)
        if checkpoint is not None:
            trim_logs(out, checkpoint_step(checkpoint))
    with trainer_tracking(cfg, trainer, out, "train"):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if outage.tripped:  # not a finished run: no final model, a non-zero exit
        raise StageError(outage.message(out / f"checkpoint-{trainer.state.global_step}"))
    save_final(trainer, processor, out, base_model=model_path if cfg.lora else None, dtype=policy.final_dtype)
    pushed = publish(out, card, cfg.push_to_hub) if main_process() else None
    return TrainResult(
        output_dir=out,
        global_step=trainer.state.global_step,
        resumed_from=str(checkpoint) if checkpoint else None,
        dropped_prompts=dropped,
        train_examples=len(train_ds),
        judge_failures=rewards.failures_total,
        metrics_path=out / "metrics.jsonl",
        samples_path=out / "completions.jsonl",
        seconds=time.monotonic() - started,
        pushed_to=pushed,
        num_processes=trainer.accelerator.num_processes,
        distributed_type=str(trainer.accelerator.distributed_type.value),
    )
