"""`pr train`: GRPO with the perception reward, on TRL's `GRPOTrainer`.

`TrainConfig` holds every option (defaults = the released run where it makes sense);
`build_grpo_config` maps it onto TRL's `GRPOConfig`; `PerceptionRewards` computes the four
rewards of a batch once (accuracy in worker processes and the judge's HTTP calls concurrently)
and hands them to TRL as four reward functions, so each is weighted and logged on its own.
The same entry point runs on a laptop CPU, one GPU, or many GPUs under `accelerate launch`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from prcli.config import EnvVarName, StageConfig, save_config
from prcli.errors import StageError
from prcli.jsonl import check_jsonl, write_jsonl_atomic
from prcli.judge.core import Backend, FailurePolicy, Judge, JudgeConfig, JudgeItem, Structured, build_judge
from prcli.models import check_model, model_errors, resolve_model
from prcli.prompts import render_template, user_content
from prcli.records import AnnotatedProblem
from prcli.rewards import REWARD_NAMES, RewardWeights, answer_content, format_reward, repetition_penalty
from prcli.verify import VerifierPool

log = logging.getLogger("prcli.train")

VllmMode = Literal["off", "colocate", "server"]
ReportTo = Literal["none", "tensorboard", "wandb"]


class TrainConfig(StageConfig):
    """Everything `pr train` needs. Defaults follow the released Perception-R1 run."""

    model: str = Field(description="Policy VLM: alias (qwen2.5-vl-7b), hub id or local path.")
    data: Path = Field(description="Annotated records (JSONL) from `pr annotate`.")
    output_dir: Path = Field(description="Run folder: checkpoints, final model, config, metrics, samples.")
    eval_data: Path | None = Field(None, description="Annotated records for periodic validation (optional).")
    prompt_template: str = Field(
        "r1",
        description="How a question becomes the prompt: r1 (the paper's), r1-eval, cot, plain, or a text with {question}.",
    )

    # judge
    judge: Backend = Field("lexical", description="Perception judge backend: lexical, openai or hf.")
    judge_model: str | None = Field(
        None, description="Judge model (server model name, or alias/path for hf)."
    )
    judge_base_url: str = Field("http://127.0.0.1:8000/v1", description="Judge server URL (openai backend).")
    judge_api_key_env: EnvVarName = Field(
        "OPENAI_API_KEY", description="Environment variable with the judge's API key."
    )
    judge_concurrency: int = Field(256, ge=1, description="Judge requests in flight at most (per process).")
    judge_timeout: float = Field(60.0, gt=0, description="Seconds per judge request attempt.")
    judge_max_retries: int = Field(3, ge=0, description="Retries of a failed judge request.")
    judge_structured: Structured = Field(
        "auto", description="Constrain judge answers: auto, vllm, vllm-legacy, json, off."
    )
    judge_cache: bool = Field(True, description="Reuse judgements from the persistent cache.")
    failure_policy: FailurePolicy = Field(
        "skip",
        description="A failed judgement's perception reward: skip (its group's mean, so no advantage) or zero.",
    )

    # rewards
    w_accuracy: float = Field(0.9, description="Weight of the accuracy reward.")
    w_format: float = Field(0.1, description="Weight of the format reward.")
    w_perception: float = Field(0.7, description="Weight of the visual perception reward.")
    w_repetition: float = Field(1.0, description="Weight of the repetition penalty.")
    ngram_size: int = Field(20, ge=1, description="Word n-gram size of the repetition penalty.")
    ngram_max_penalty: float = Field(-2.0, description="Repetition penalty of a fully repetitive response.")
    accuracy_timeout: float = Field(
        5.0, gt=0, description="Seconds per answer verification (timeout scores 0)."
    )
    accuracy_workers: int = Field(
        0, ge=0, description="Answer-verification processes (0: one per core, at most 8)."
    )

    # rollouts
    num_generations: int = Field(8, ge=2, description="Rollouts per prompt (the GRPO group).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the rollouts.")
    max_prompt_length: int = Field(
        4096, ge=1, description="Prompts longer than this (image tokens included) are dropped."
    )
    max_completion_length: int = Field(4096, ge=1, description="Longest rollout, in tokens.")
    min_pixels: int = Field(3136, ge=1, description="Smallest image area after resizing (pixels).")
    max_pixels: int = Field(1806336, ge=1, description="Largest image area after resizing (pixels).")

    # optimisation
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (constant after warmup).")
    weight_decay: float = Field(1e-3, description="AdamW weight decay.")
    warmup_ratio: float = Field(
        0.05, ge=0, lt=1, description="Share of the steps spent warming up the learning rate."
    )
    max_grad_norm: float = Field(1.0, description="Gradient clipping norm.")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 turns KL (and the reference model) off.")
    epsilon: float = Field(0.2, description="Lower PPO clip range.")
    epsilon_high: float = Field(0.3, description="Upper PPO clip range (clip-higher).")
    loss_type: str = Field(
        "dapo", description="TRL loss type (dapo = token mean, as EasyR1; grpo, dr_grpo, ...)."
    )
    prompts_per_step: int = Field(
        128, ge=1, description="Prompts per optimizer step (x num_generations rollouts)."
    )
    per_device_batch_size: int = Field(
        8, ge=1, description="Completions per forward/backward pass on each device."
    )
    epochs: float = Field(25.0, gt=0, description="Passes over the training set.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")
    freeze_vision: bool = Field(False, description="Freeze the vision tower (the paper trains it).")

    # LoRA
    lora: bool = Field(False, description="Train LoRA adapters (PEFT) instead of all weights.")
    lora_r: int = Field(64, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(128, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, le=1, description="LoRA dropout.")
    lora_targets: str = Field(
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        description="Comma-separated module names of the language model that get adapters.",
    )

    # rollout engine
    vllm: VllmMode = Field(
        "off", description="Rollouts with vLLM (GPU): off, colocate, or server (trl vllm-serve)."
    )
    vllm_server_url: str | None = Field(None, description="URL of `trl vllm-serve` for --vllm server.")
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="GPU memory share of colocated vLLM."
    )
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="Tensor parallel size of colocated vLLM.")

    # run
    seed: int = Field(42, description="Random seed (data order, sampling, initialisation of adapters).")
    resume: bool = Field(False, description="Continue from the last checkpoint in the output folder.")
    save_steps: int = Field(10, ge=1, description="Save a checkpoint every N steps.")
    save_total_limit: int | None = Field(None, description="Keep at most this many checkpoints.")
    logging_steps: int = Field(1, ge=1, description="Write metrics every N steps.")
    eval_steps: int = Field(5, ge=1, description="Validate every N steps (with --eval-data).")
    sample_every: int = Field(10, ge=1, description="Write sample completions every N steps.")
    samples_per_step: int = Field(8, ge=0, description="Completions written per sampled step.")
    report_to: ReportTo = Field("none", description="Experiment tracker: none, tensorboard or wandb.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train (auto: CUDA if available)."
    )
    bf16: bool | None = Field(
        None, description="bf16 weights and compute (default: on for CUDA, off on CPU)."
    )
    gradient_checkpointing: bool | None = Field(
        None, description="Gradient checkpointing (default: on for CUDA)."
    )
    skip_invalid: bool = Field(
        False, description="Skip bad input lines (written to a rejected file) instead of stopping."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.vllm == "server" and not self.vllm_server_url:
            raise ValueError("--vllm server needs --vllm-server-url")
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        render_template(self.prompt_template, "x")  # raises for a template without {question}
        return self

    @property
    def weights(self) -> RewardWeights:
        return RewardWeights(self.w_accuracy, self.w_format, self.w_perception, self.w_repetition)

    def judge_config(self) -> JudgeConfig:
        return JudgeConfig(
            backend=self.judge,
            model=self.judge_model,
            base_url=self.judge_base_url,
            api_key_env=self.judge_api_key_env,
            concurrency=self.judge_concurrency,
            timeout=self.judge_timeout,
            max_retries=self.judge_max_retries,
            structured=self.judge_structured,
            failure_policy=self.failure_policy,
            cache=self.judge_cache,
        )


# ----------------------------------------------------------------------------- data


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _on_cuda(cfg: TrainConfig) -> bool:
    import torch

    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def load_processor(cfg: TrainConfig) -> Any:
    from transformers import AutoProcessor

    size = {"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}
    with model_errors(cfg.model):
        return AutoProcessor.from_pretrained(resolve_model(cfg.model), size=size)


def build_rows(records: list[AnnotatedProblem], template: str) -> list[dict[str, Any]]:
    """One training row per problem: a conversational prompt with image parts where `<image>` was."""
    rows = []
    for rec in records:
        text = render_template(template, rec.question)
        rows.append(
            {
                "id": rec.id,
                "prompt": [{"role": "user", "content": user_content(text, len(rec.images))}],
                "images": list(rec.images),
                "answer": rec.answer,
                "annotations": list(rec.annotations),
            }
        )
    return rows


def prompt_length(row: dict[str, Any], processor: Any) -> int:
    """Prompt tokens, image tokens included, as the policy will see them."""
    from PIL import Image

    text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    images = [Image.open(p).convert("RGB") for p in row["images"]]
    batch = processor(text=[text], images=images or None, return_tensors="np")
    return int(batch["input_ids"].shape[1])


def load_dataset_rows(
    path: Path, cfg: TrainConfig, processor: Any, rejected: Path | None = None
) -> tuple[Any, int]:
    """A `datasets.Dataset` of training rows and how many prompts were dropped for length."""
    from datasets import Dataset, Image, Sequence

    records = list(check_jsonl(path, AnnotatedProblem, skip_invalid=cfg.skip_invalid, rejected_path=rejected))
    rows = build_rows(records, cfg.prompt_template)
    kept = [r for r in rows if prompt_length(r, processor) <= cfg.max_prompt_length]
    dropped = len(rows) - len(kept)
    if not kept:
        raise StageError(f"every prompt in {path} is longer than max_prompt_length={cfg.max_prompt_length}")
    dataset = Dataset.from_list(kept)
    return dataset.cast_column("images", Sequence(Image())), dropped


def check_enough_prompts(usable: int, dropped: int, cfg: TrainConfig) -> None:
    """Refuse a training set too small for one optimizer step, before the model is loaded.

    TRL's sampler keeps only whole rollout batches of `prompts_per_step` prompts (the rest of each
    epoch is dropped), so fewer usable prompts than that give 0 steps per epoch: TRL then logs a
    warning, trains nothing, whatever `--epochs` or `--max-steps` say, and the untrained model would
    be saved as the result. With at least one whole batch, `--max-steps` is always reachable (TRL
    cycles the data), so this is the only size that cannot train.
    """
    if usable >= cfg.prompts_per_step:
        return
    why = (
        f" ({dropped} more dropped as longer than max_prompt_length={cfg.max_prompt_length})"
        if dropped
        else ""
    )
    raise StageError(
        f"{cfg.data} has {usable} usable record(s){why}, but one optimizer step needs "
        f"--prompts-per-step {cfg.prompts_per_step} prompts: nothing would be trained; "
        f"lower --prompts-per-step to at most {usable} or add records"
    )


# ----------------------------------------------------------------------------- rewards


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


@dataclass
class _Batch:
    completions: list[Any]  # the batch itself: identity, not id(), which Python reuses once freed
    task: asyncio.Future[dict[str, list[float | None]]]


def neutral_failures(group_ids: list[str], judgements: list[Any]) -> list[float | None]:
    """Perception rewards in which failed judgements (policy `skip`) do not move the advantages.

    TRL adds the weighted rewards with nansum, so a None would count as 0 and penalise that rollout
    against its group. A failed rollout gets instead the mean score of its group's judged rollouts
    (no advantage from perception); a group without any judged rollout stays None for all, which
    shifts every member equally and so changes nothing either.
    """
    scores: list[float | None] = [j.score for j in judgements]
    by_group: dict[str, list[float]] = {}
    for gid, score in zip(group_ids, scores, strict=True):
        if score is not None:
            by_group.setdefault(gid, []).append(score)
    for i, (gid, j) in enumerate(zip(group_ids, judgements, strict=True)):
        if j.score is None and j.error is not None and by_group.get(gid):
            scores[i] = sum(by_group[gid]) / len(by_group[gid])
    return scores


def check_first_step(judgements: list[Any]) -> None:
    """Stop the run when every judgement of its first step failed (wrong key, dead server, ...).

    Such a run would otherwise train for hours without the perception reward and exit 0. Raised
    before the first optimizer update; under DDP every process sees the same (summed) counts, so
    all stop together instead of some waiting forever in the next collective.
    """
    judged = [j for j in judgements if j.verdicts or j.error is not None]  # items with annotations
    failed = [j for j in judged if j.error is not None]
    n_judged, n_failed = _sum_over_processes(len(judged), len(failed))
    if n_judged and n_failed == n_judged:
        error = failed[0].error if failed else "failed on another process"
        raise StageError(
            f"judge: every judgement of the first step failed: {error} ({n_failed} of {n_judged}); "
            "nothing was trained"
        )


def _sum_over_processes(*counts: int) -> tuple[int, ...]:
    """`counts` summed over the processes of a distributed run (as they are on one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return counts
    device = "cpu"
    if dist.get_backend() == "nccl":  # this runs on TRL's reward thread: name the device explicitly
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    total = torch.tensor(counts, dtype=torch.long, device=device)
    dist.all_reduce(total)
    return tuple(int(x) for x in total.tolist())


class PerceptionRewards:
    """The four rewards of Perception-R1, computed once per batch and served to TRL one by one.

    TRL calls every reward function with the same batch; the first call starts the computation
    (accuracy in the verifier processes, the judge concurrently over HTTP), the others await it.
    """

    def __init__(
        self,
        judge: Judge,
        *,
        pool: VerifierPool,
        ngram_size: int = 20,
        ngram_max_penalty: float = -2.0,
        samples_path: Path | None = None,
        sample_every: int = 10,
        samples_per_step: int = 8,
    ):
        self.judge = judge
        self.pool = pool
        self.ngram_size = ngram_size
        self.ngram_max_penalty = ngram_max_penalty
        self.samples_path = samples_path
        self.sample_every = sample_every
        self.samples_per_step = samples_per_step
        self._batch: _Batch | None = None
        self.failures_total = 0
        self._first_step_checked = False

    def functions(self) -> list[Any]:
        """Async reward functions named as in `REWARD_NAMES` (TRL logs `rewards/<name>/mean`)."""

        def make(name: str) -> Any:
            async def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
                values = await self._values(prompts, completions, kwargs)
                return values[name]

            reward.__name__ = name
            reward.__qualname__ = name
            return reward

        return [make(name) for name in REWARD_NAMES]

    async def _values(
        self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if self._batch is None or self._batch.completions is not completions:
            self._batch = _Batch(
                completions, asyncio.ensure_future(self._compute(prompts, completions, kwargs))
            )
        return await self._batch.task

    async def _compute(
        self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        texts = [completion_text(c) for c in completions]
        answers = kwargs["answer"]
        annotations = kwargs.get("annotations") or [[] for _ in texts]
        ids = kwargs.get("id") or [str(i) for i in range(len(texts))]
        failures_before = self.judge.stats.failures
        hits_before = self.judge.stats.cache_hits
        timeouts_before = self.pool.stats.timeouts
        pairs = [(answer_content(t), a) for t, a in zip(texts, answers, strict=True)]
        accuracy_task = asyncio.to_thread(self.pool.map, pairs)
        judge_items = [
            JudgeItem(f"{pid}#{i}", list(anns or []), t)
            for i, (pid, anns, t) in enumerate(zip(ids, annotations, texts, strict=True))
        ]
        verdicts, judgements = await asyncio.gather(accuracy_task, self.judge.judge_many(judge_items))
        if not self._first_step_checked:
            self._first_step_checked = True
            check_first_step(judgements)
        values: dict[str, list[float | None]] = {
            "accuracy": [1.0 if v else 0.0 for v in verdicts],
            "format": [format_reward(t) for t in texts],
            "perception": neutral_failures(ids, judgements),
            "repetition": [repetition_penalty(t, self.ngram_size, self.ngram_max_penalty) for t in texts],
        }
        failures = self.judge.stats.failures - failures_before
        self.failures_total += failures
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric("judge/failures", float(failures))
            log_metric("judge/failure_rate", failures / max(1, len(texts)))
            log_metric("judge/cache_hits", float(self.judge.stats.cache_hits - hits_before))
            log_metric("verifier/timeouts", float(self.pool.stats.timeouts - timeouts_before))
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", 0) or 0)
        if self.samples_path is not None and self.samples_per_step and step % self.sample_every == 0:
            self._write_samples(step, ids, prompts, texts, answers, judgements, values)
        return values

    def _write_samples(
        self,
        step: int,
        ids: list[str],
        prompts: list[Any],
        texts: list[str],
        answers: list[str],
        judgements: list[Any],
        values: dict[str, list[float | None]],
    ) -> None:
        if not _main_process() or self.samples_path is None:
            return
        with open(self.samples_path, "a", encoding="utf-8") as fh:
            for i in range(min(self.samples_per_step, len(texts))):
                prompt = prompts[i][-1]["content"] if isinstance(prompts[i], list) else prompts[i]
                if isinstance(prompt, list):
                    prompt = "".join(p.get("text") or "<image>" for p in prompt if isinstance(p, dict))
                row = {
                    "step": step,
                    "id": ids[i],
                    "prompt": prompt,
                    "completion": texts[i],
                    "answer": answers[i],
                    "verdicts": judgements[i].verdicts,
                    **{f"reward_{k}": v[i] for k, v in values.items()},
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- TRL wiring


def build_grpo_config(cfg: TrainConfig) -> Any:
    """Map our options onto TRL's GRPOConfig (one optimizer step per rollout batch, as released)."""
    from trl import GRPOConfig

    cuda = _on_cuda(cfg)
    world = _world_size()
    completions_per_step = cfg.prompts_per_step * cfg.num_generations
    per_device = min(cfg.per_device_batch_size, max(1, completions_per_step // world))
    if completions_per_step % (per_device * world):
        raise StageError(
            f"prompts_per_step x num_generations = {completions_per_step} completions must split evenly over "
            f"{world} process(es) x per_device_batch_size {per_device}"
        )
    grad_accum = completions_per_step // (per_device * world)
    kwargs: dict[str, Any] = dict(
        output_dir=str(cfg.output_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type="constant_with_warmup",
        max_grad_norm=cfg.max_grad_norm,
        adam_beta1=0.9,
        adam_beta2=0.999,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=grad_accum,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=0,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        loss_type=cfg.loss_type,
        scale_rewards="group",
        reward_weights=cfg.weights.as_list(),
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        bf16=cfg.bf16 if cfg.bf16 is not None else cuda,
        use_cpu=not cuda,
        gradient_checkpointing=cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else cuda,
        remove_unused_columns=False,
        log_completions=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world > 1 else None,
    )
    if cfg.eval_data is not None:
        kwargs.update(eval_strategy="steps", eval_steps=cfg.eval_steps, per_device_eval_batch_size=per_device)
    if cfg.vllm != "off":
        kwargs.update(
            use_vllm=True,
            vllm_mode=cfg.vllm,
            vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
        )
        if cfg.vllm == "server":
            kwargs["vllm_server_base_url"] = cfg.vllm_server_url
    return GRPOConfig(**kwargs)


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    # Regex: the language model's projections only (vLLM cannot apply LoRA to the vision tower).
    pattern = r"^(?!.*visual).*\.(" + "|".join(targets) + r")$"
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=pattern,
        task_type="CAUSAL_LM",
    )


class MetricsCallback:
    """Writes one JSON line per logging step to DIR/metrics.jsonl (main process only)."""

    def __new__(cls, path: Path) -> Any:  # a TrainerCallback subclass, built lazily (transformers import)
        from transformers import TrainerCallback

        class _Metrics(TrainerCallback):
            def __init__(self) -> None:
                self.path = path
                self._step_started = time.monotonic()
                self._step_times: list[float] = []

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self._step_started = time.monotonic()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self._step_times.append(time.monotonic() - self._step_started)

            def on_log(
                self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
            ) -> None:
                if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                    return
                row: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
                row.update({k: _finite(v) for k, v in logs.items()})
                if self._step_times:
                    row["step_time"] = sum(self._step_times) / len(self._step_times)
                    self._step_times.clear()
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")

        return _Metrics()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class TrainResult:
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

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def train(cfg: TrainConfig) -> TrainResult:
    """Run GRPO; returns where everything went. Resumes from the newest complete checkpoint with `cfg.resume`.

    Nothing is written before the inputs (model, data, options, checkpoint) are known to be good, and
    a run that fails before its first optimizer step removes the output folder if it created it, so
    the corrected re-run starts clean. A folder that existed before is never deleted.
    """
    fresh = not cfg.output_dir.exists()
    first_step = _FirstStep()
    try:
        return _train(cfg, first_step)
    except BaseException:
        if fresh and not first_step.done and _main_process():
            shutil.rmtree(cfg.output_dir, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, first_step: _FirstStep) -> TrainResult:
    import torch
    from transformers import AutoModelForImageTextToText

    started = time.monotonic()
    out = cfg.output_dir
    _check_tracker(cfg.report_to)
    model_path = check_model(cfg.model)
    grpo_args = build_grpo_config(cfg)
    checkpoint = resume_checkpoint(out) if cfg.resume else None
    processor = load_processor(cfg)
    train_ds, dropped = load_dataset_rows(cfg.data, cfg, processor, out / "rejected.jsonl")
    eval_ds = load_dataset_rows(cfg.eval_data, cfg, processor)[0] if cfg.eval_data else None
    if dropped:
        log.warning("dropped %d prompt(s) longer than max_prompt_length=%d", dropped, cfg.max_prompt_length)
    check_enough_prompts(len(train_ds), dropped, cfg)

    cuda = _on_cuda(cfg)
    dtype = torch.bfloat16 if (cfg.bf16 if cfg.bf16 is not None else cuda) else torch.float32
    # transformers 5's own resume loads a checkpoint's weights by raw state-dict names, which its
    # save_pretrained has converted back to the hub layout: all but lm_head are silently skipped
    # and training would go on from the base weights. So the policy is loaded from the checkpoint.
    weights_from_checkpoint = checkpoint is not None and not cfg.lora and _has_full_weights(checkpoint)
    with model_errors(cfg.model):
        model = AutoModelForImageTextToText.from_pretrained(
            str(checkpoint) if weights_from_checkpoint else model_path, dtype=dtype
        )
    if cfg.freeze_vision:
        for name, param in model.named_parameters():
            if "visual" in name:
                param.requires_grad_(False)

    judge = build_judge(cfg.judge_config())
    pool = VerifierPool(workers=cfg.accuracy_workers or None, timeout=cfg.accuracy_timeout)
    try:
        rewards = PerceptionRewards(
            judge,
            pool=pool,
            ngram_size=cfg.ngram_size,
            ngram_max_penalty=cfg.ngram_max_penalty,
            samples_path=out / "completions.jsonl",
            sample_every=cfg.sample_every,
            samples_per_step=cfg.samples_per_step,
        )
        trainer = _trainer_class(skip_weight_load=weights_from_checkpoint)(
            model=model,
            reward_funcs=rewards.functions(),
            args=grpo_args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=processor,
            peft_config=lora_config(cfg) if cfg.lora else None,
            callbacks=[MetricsCallback(out / "metrics.jsonl"), first_step.callback()],
        )
        out.mkdir(parents=True, exist_ok=True)  # only now: every input is known to be good
        if _main_process():
            import prcli

            extra = {"prcli_version": prcli.__version__, "world_size": _world_size()}
            save_config(cfg, out / "config.yaml", extra=extra)
            if checkpoint is not None:
                trim_logs(out, checkpoint_step(checkpoint))
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        _save_final(trainer, processor, out, cfg.lora)
    finally:
        pool.close()
        judge.close()
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
        num_processes=trainer.accelerator.num_processes,
        distributed_type=str(trainer.accelerator.distributed_type.value),
    )


def _trainer_class(skip_weight_load: bool) -> Any:
    """GRPOTrainer, or one that leaves the weights alone on resume (already loaded by us)."""
    from trl import GRPOTrainer

    if not skip_weight_load:
        return GRPOTrainer

    class _Trainer(GRPOTrainer):  # type: ignore[misc]
        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            """The policy came from this checkpoint through `from_pretrained`; optimizer, scheduler,
            RNG and trainer state are still restored by the trainer."""

    return _Trainer


def _has_full_weights(checkpoint: Path) -> bool:
    return (checkpoint / "config.json").is_file() and any((checkpoint / n).is_file() for n in _FULL_WEIGHTS)


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class _FirstStep:
    """Whether this run finished an optimizer step: before that, a failure is a failed start."""

    def __init__(self) -> None:
        self.done = False

    def callback(self) -> Any:
        from transformers import TrainerCallback

        flag = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                flag.done = True

        return _Callback()


# ----------------------------------------------------------------------------- checkpoints

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_FULL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_WEIGHTS = (*_FULL_WEIGHTS, "adapter_model.safetensors", "adapter_model.bin")


def checkpoint_step(folder: Path) -> int:
    match = _CHECKPOINT.fullmatch(folder.name)
    return int(match.group(1)) if match else -1


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, or None when it is complete.

    Complete, as transformers writes it: model weights (whole, sharded, LoRA adapter, FSDP or
    DeepSpeed), optimizer state, scheduler state and a readable trainer_state.json. transformers
    itself resumes silently with a fresh optimizer when the optimizer file is missing, and a kill
    during a save leaves a folder with only config.json, so this is checked before resuming.
    """
    names = {p.name for p in folder.iterdir()}
    dirs = {p.name for p in folder.iterdir() if p.is_dir()}
    deepspeed = "latest" in names  # DeepSpeed keeps weights, optimizer and scheduler in global_step*/
    missing = []
    if not deepspeed and not (
        names & set(_WEIGHTS) or any(n.startswith("pytorch_model_fsdp") for n in names)
    ):
        missing.append("model weights")
    if not deepspeed and not (
        names & {"optimizer.pt", "optimizer.bin"} or any(n.startswith("optimizer") for n in dirs)
    ):
        missing.append("optimizer state")
    if "scheduler.pt" not in names and not deepspeed:
        missing.append("scheduler state")
    if "trainer_state.json" not in names:
        missing.append("trainer_state.json")
    if missing:
        return "missing " + ", ".join(missing)
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer_state.json is unreadable"
    if deepspeed:
        tag = (folder / "latest").read_text(encoding="utf-8").strip()
        return None if tag and (folder / tag).is_dir() else f"DeepSpeed state {tag or '(none)'} is missing"
    for name in sorted(names & {*_WEIGHTS, "optimizer.pt", "optimizer.bin", "scheduler.pt"}):
        problem = _file_problem(folder / name)
        if problem:
            return problem
    return None


def _file_problem(path: Path) -> str | None:
    """A truncated or empty state file (a save cut short); shards of an index are checked too."""
    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    if path.name.endswith(".index.json"):
        try:
            shards = set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError):
            return f"{path.name} is unreadable"
        for shard in sorted(shards):
            if not (path.parent / shard).is_file():
                return f"weight shard {shard} is missing"
            problem = _file_problem(path.parent / shard)
            if problem:
                return problem
    elif path.suffix == ".safetensors" and not _safetensors_whole(path):
        return f"{path.name} is truncated"
    return None


def _safetensors_whole(path: Path) -> bool:
    """The safetensors header is readable and the file is as long as the header says."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return False
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return False
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return False
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    return 8 + n + max(ends, default=0) <= size


def resume_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint in `out`; newer incomplete ones are skipped with a warning.

    No checkpoint at all: start from the beginning (so `--resume` can be passed on every launch).
    Checkpoints but none complete: an error, since starting over would silently discard the run.
    """
    found = sorted(
        (p for p in out.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0),
        key=checkpoint_step,
        reverse=True,
    )
    if not found:
        if _main_process():
            log.warning("--resume: no checkpoint in %s, starting from the beginning", out)
        return None
    skipped = []
    for folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            if _main_process():
                for name, why in skipped:
                    log.warning("--resume: skipping incomplete %s (%s)", name, why)
                log.warning("--resume: resuming from %s", folder)
            return folder
        skipped.append((folder.name, problem))
    listed = "; ".join(f"{name}: {why}" for name, why in skipped)
    raise StageError(
        f"--resume: no complete checkpoint in {out} ({listed}); "
        "remove the incomplete checkpoint folders to start from the beginning"
    )


def trim_logs(out: Path, step: int) -> None:
    """Drop the log lines of steps after `step` (they are redone) and any line cut short by a kill."""
    for name, keep in (("metrics.jsonl", lambda s: s <= step), ("completions.jsonl", lambda s: s < step)):
        path = out / name
        if not path.exists():
            continue
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and keep(int(row.get("step", 0))):
                rows.append(row)
        write_jsonl_atomic(path, rows)


TRACKER_PACKAGES: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb"}
"""The package each `--report-to` tracker imports (transformers fails deep inside set-up without it)."""


def _check_tracker(report_to: str) -> None:
    import importlib.util

    package = TRACKER_PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise StageError(f"--report-to {report_to} needs the {package} package: pip install {package}")


def _save_final(trainer: Any, processor: Any, out: Path, lora: bool) -> None:
    """The final policy in `out`, loadable by `from_pretrained` (LoRA: merged; adapter in out/adapter)."""
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
