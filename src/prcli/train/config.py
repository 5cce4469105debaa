"""`TrainConfig`: every option of `pr train`, and its mapping onto TRL's `GRPOConfig` and PEFT.

Defaults follow the released Perception-R1 run where it makes sense (method.md section 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from prcli.config import ServerUrl, StageConfig
from prcli.errors import StageError
from prcli.judge.core import Backend, FailurePolicy, JudgeConfig, judge_endpoint
from prcli.judge.statements import LEXICAL_VERSION
from prcli.llm import Endpoint
from prcli.model_card import TrainingFacts
from prcli.prompts import render_template
from prcli.rewards import REWARD_NAMES, RewardWeights
from prcli.sources import DataSource, OptionalDataSource, SourceOptions
from prcli.trackers import TrackerOptions
from prcli.train.processes import world_size
from prcli.train.trl_names import ALIASES, apply_aliases, check_extra_trl_args

VllmMode = Literal["off", "colocate", "server"]


CLIPPED_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
"""TRL 1.16's loss types with the PPO clip, the ones its `delta` (our dual clip) applies to."""


# The LoRA options, defined once for `pr train` and `pr sft` (each config sets the defaults).
AdamBeta2 = Annotated[
    float,
    Field(
        gt=0,
        lt=1,
        description="AdamW beta2: the memory of squared gradients (0.999; lower forgets the large early "
        "gradients sooner, which helps a small model trained from scratch).",
    ),
]
Resume = Annotated[bool, Field(description="Continue from the last checkpoint in the output folder.")]
Overwrite = Annotated[
    bool,
    Field(
        description="Replace an earlier run in the output folder: its logs, config, checkpoints and final "
        "model are removed once every input has loaded (other files stay)."
    ),
]
PushToHub = Annotated[
    bool,
    Field(
        description="Push to the Hugging Face Hub: checkpoints as TRL does, then the final model with "
        "prcli's model card (token: HF_TOKEN or `hf auth login`)."
    ),
]
HubModelId = Annotated[
    str | None, Field(description="Hub repository to push to, user/name (default: the output folder's name).")
]
LoraOn = Annotated[bool, Field(description="Train LoRA adapters (PEFT) instead of all weights.")]
LoraRank = Annotated[int, Field(ge=1, description="LoRA rank.")]
LoraAlpha = Annotated[int, Field(ge=1, description="LoRA alpha.")]
LoraDropout = Annotated[float, Field(ge=0, le=1, description="LoRA dropout.")]
LoraTargets = Annotated[
    str, Field(description="Comma-separated module names of the language model that get adapters.")
]
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


class TrainConfig(StageConfig, SourceOptions, TrackerOptions):
    """Everything `pr train` needs. Defaults follow the released Perception-R1 run."""

    model: str = Field(description="Policy VLM: alias (qwen2.5-vl-7b), hub id or local path.")
    data: DataSource = Field(
        description="Annotated records: JSONL from `pr annotate`, the released Perception-R1 parquet as it "
        "is, or any dataset with question, answer, images and annotations columns (see --field)."
    )
    output_dir: Path = Field(description="Run folder: checkpoints, final model, config, metrics, samples.")
    eval_data: OptionalDataSource = Field(
        None, description="Annotated records for periodic validation (optional), as --data."
    )
    eval_split: str | None = Field(None, description="The split of --eval-data, when it is a dataset.")
    prompt_template: str = Field(
        "r1",
        description="How a question becomes the prompt: r1 (the released run's one-line instruction), "
        "r1-multiline (its launch script's literal text), cot, plain, or a text with {question}.",
    )

    # judge
    judge: Backend = Field("lexical", description="Perception judge backend: lexical, openai or hf.")
    judge_endpoint: Endpoint = Field(
        default_factory=judge_endpoint,
        description="The perception judge's connection (openai) or model (hf); concurrency is per process.",
    )
    judge_cache: bool = Field(True, description="Reuse judgements from the persistent cache.")
    failure_policy: FailurePolicy = Field(
        "skip",
        description="A failed judgement's perception reward: skip (its group's mean, so no advantage) or zero.",
    )
    judge_outage_window: int = Field(
        3,
        ge=0,
        description="Outage guard: save a checkpoint and stop when more than --judge-outage-threshold of the "
        "judgements of the last N steps failed, rather than train on without the perception reward (0: off).",
    )
    judge_outage_threshold: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Outage guard: stop when the failed share of the window's judgements is above this.",
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
    min_pixels: int = Field(
        3136,
        ge=1,
        description="Smallest image area (pixels): smaller images are scaled up, once, when the data is loaded.",
    )
    max_pixels: int = Field(
        1806336,
        ge=1,
        description="Largest image area (pixels): larger images are scaled down, once, when the data is loaded "
        "(sides in whole 28-pixel cells, within the model's own bounds, so vLLM sees the same image tokens).",
    )

    # optimisation
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (constant after warmup).")
    weight_decay: float = Field(1e-3, description="AdamW weight decay.")
    adam_beta2: AdamBeta2 = 0.999
    warmup_ratio: float = Field(
        0.05, ge=0, lt=1, description="Share of the steps spent warming up the learning rate."
    )
    max_grad_norm: float = Field(1.0, description="Gradient clipping norm.")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 turns KL (and the reference model) off.")
    epsilon: float = Field(0.2, description="Lower PPO clip range.")
    epsilon_high: float = Field(0.3, description="Upper PPO clip range (clip-higher).")
    dual_clip: float | None = Field(
        None,
        description="Dual-clip PPO bound c: a token with negative advantage A loses at most -A*c "
        "(the released run: 3.0; unset: off).",
    )
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
    lora: LoraOn = False
    lora_r: LoraRank = 64
    lora_alpha: LoraAlpha = 128
    lora_dropout: LoraDropout = 0.05
    lora_targets: LoraTargets = LORA_TARGETS

    # rollout engine
    vllm: VllmMode = Field(
        "off", description="Rollouts with vLLM (GPU): off, colocate, or server (trl vllm-serve)."
    )
    vllm_server_url: ServerUrl | None = Field(
        None,
        description="URL of `trl vllm-serve` for --vllm server (start it with --max_model_len "
        "max_prompt_length + max_completion_length, as colocated vLLM gets).",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of each GPU's memory colocated vLLM takes for its weights and KV cache; training gets "
        "the rest (--vllm server: pass --gpu_memory_utilization to `trl vllm-serve` instead).",
    )
    vllm_sleep_mode: bool = Field(
        False,
        description="Colocated vLLM sleeps through each optimizer step, its weights and KV cache off the GPU: "
        "more memory for training, a reload per step.",
    )
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="Tensor parallel size of colocated vLLM.")
    vllm_importance_sampling_correction: bool = Field(
        False,
        description="TRL's correction of the vLLM/trainer log-prob mismatch (TRL's default: on). "
        "Off: as the released run, which had none.",
    )

    # run
    seed: int = Field(42, description="Random seed (data order, sampling, initialisation of adapters).")
    resume: Resume = False
    overwrite: Overwrite = False
    save_steps: int = Field(10, ge=1, description="Save a checkpoint every N steps.")
    save_total_limit: int | None = Field(None, description="Keep at most this many checkpoints.")
    logging_steps: int = Field(1, ge=1, description="Write metrics every N steps.")
    eval_steps: int = Field(5, ge=1, description="Validate every N steps (with --eval-data).")
    sample_every: int = Field(10, ge=1, description="Write sample completions every N steps.")
    samples_per_step: int = Field(8, ge=0, description="Completions written per sampled step.")
    push_to_hub: PushToHub = False
    hub_model_id: HubModelId = None
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train (auto: CUDA if available)."
    )
    bf16: bool | None = Field(
        None,
        description="bf16 compute (default: on for CUDA, off on CPU); the trained weights stay fp32.",
    )
    gradient_checkpointing: bool | None = Field(
        None, description="Gradient checkpointing (default: on for CUDA)."
    )
    verbose: bool = Field(
        False,
        description="TRL's raw per-step logs and the libraries' warnings instead of the progress display.",
    )
    skip_invalid: bool = Field(
        False, description="Skip bad input lines (written to a rejected file) instead of stopping."
    )
    extra_trl_args: dict[str, Any] = Field(
        default_factory=dict,
        description="YAML only: any other setting of TRL's GRPOConfig, passed through unchanged (checked "
        "against TRL's dataclass).",
    )

    @classmethod
    def yaml_aliases(cls) -> dict[str, Any]:
        return ALIASES

    @classmethod
    def from_yaml_names(cls, values: dict[str, Any]) -> dict[str, Any]:
        """TRL's names for our settings (num_train_epochs, per_device_train_batch_size, ...) become ours."""
        return apply_aliases(values, set(cls.model_fields), "TRL names")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.extra_trl_args:
            self.extra_trl_args = check_extra_trl_args(self.extra_trl_args, set(type(self).model_fields))
        if self.vllm == "server" and not self.vllm_server_url:
            raise ValueError("--vllm server needs --vllm-server-url")
        if self.vllm_sleep_mode and self.vllm != "colocate":
            raise ValueError("--vllm-sleep-mode needs --vllm colocate (a vLLM server manages its own memory)")
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        render_template(self.prompt_template, "x")  # raises for a template without {question}
        if self.dual_clip is not None:
            if self.loss_type not in CLIPPED_LOSSES:
                raise ValueError(f"dual_clip needs a clipped loss ({', '.join(CLIPPED_LOSSES)})")
            if self.dual_clip < 1 + self.epsilon_high:
                raise ValueError("dual_clip must be at least 1 + epsilon_high")
        return self

    @property
    def weights(self) -> RewardWeights:
        return RewardWeights(self.w_accuracy, self.w_format, self.w_perception, self.w_repetition)

    def card(self, examples: int) -> TrainingFacts:
        """What the model card says about this run."""
        keys = (
            "output_dir", "prompt_template", "learning_rate", "num_generations", "prompts_per_step", "epochs",
            "max_steps", "beta", "epsilon", "epsilon_high", "dual_clip", "loss_type", "temperature",
            "max_completion_length", "lora", "freeze_vision", "seed",
        )  # fmt: skip
        judge = (
            f"prcli's lexical rules ({LEXICAL_VERSION}), a cheap stand-in, not the paper's LLM judge"
            if self.judge == "lexical"
            else f"{_public_name(self.judge_endpoint.model or 'the served model')} ({self.judge} backend)"
        )
        return card_facts(
            self,
            "grpo",
            examples,
            keys,
            rewards=dict(zip(REWARD_NAMES, self.weights.as_list(), strict=True)),
            judge=judge if self.w_perception else None,
        )

    def judge_config(self) -> JudgeConfig:
        return JudgeConfig(
            backend=self.judge,
            endpoint=self.judge_endpoint,
            failure_policy=self.failure_policy,
            cache=self.judge_cache,
        )


def _public_name(model: str) -> str:
    """A hub id as it is; a local model folder by its name only (a card goes public)."""
    path = Path(model).expanduser()
    return path.name if path.is_absolute() or path.exists() else model


def on_cuda(cfg: TrainConfig) -> bool:
    import torch

    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def bf16_on(cfg: TrainConfig) -> bool:
    """bf16 compute: as asked, else on for CUDA."""
    return cfg.bf16 if cfg.bf16 is not None else on_cuda(cfg)


def hub_repo(cfg: Any) -> str | None:
    """Where `--push-to-hub` goes: `--hub-model-id`, else the output folder's name (as TRL)."""
    return (cfg.hub_model_id or Path(cfg.output_dir).name) if cfg.push_to_hub else cfg.hub_model_id


def card_facts(cfg: Any, stage: str, examples: int, keys: Sequence[str], **more: Any) -> TrainingFacts:
    """What every training run's card says, from `pr train`'s or `pr sft`'s config: the model, the data
    and its revision, the settings named by `keys`, the hub repository (`more`: the stage's own facts)."""
    return TrainingFacts(
        stage=stage,
        model=cfg.model,
        data=cfg.data,
        examples=examples,
        settings={k: getattr(cfg, k) for k in keys},
        hub_model_id=hub_repo(cfg),
        data_revision=cfg.revision,
        **more,
    )


def build_grpo_config(cfg: TrainConfig) -> Any:
    """Map our options onto TRL's GRPOConfig (one optimizer step per rollout batch, as released)."""
    from trl import GRPOConfig

    cuda = on_cuda(cfg)
    world = world_size()
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
        adam_beta2=cfg.adam_beta2,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type="constant_with_warmup",
        max_grad_norm=cfg.max_grad_norm,
        adam_beta1=0.9,
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
        run_name=cfg.run_name,
        push_to_hub=cfg.push_to_hub,
        hub_model_id=hub_repo(cfg),
        bf16=bf16_on(cfg),  # autocast over fp32 weights, or the engine's own mixed precision (precision.py)
        use_cpu=not cuda,
        gradient_checkpointing=cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else cuda,
        remove_unused_columns=False,
        log_completions=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world > 1 else None,
    )
    if cfg.dual_clip is not None:
        # TRL's `delta` (INTELLECT-2's two-sided clip) caps the ratio at delta in the unclipped branch:
        # loss = -min(min(r, delta) A, clip(r) A). With delta >= 1 + epsilon_high that is dual-clip PPO
        # exactly: -A min(r, clip(r)) for A > 0, -A min(max(r, clip(r)), delta) for A < 0
        # (tests/test_dual_clip.py checks TRL's loss against hand-computed values).
        kwargs["delta"] = cfg.dual_clip
    if cfg.eval_data is not None:
        kwargs.update(eval_strategy="steps", eval_steps=cfg.eval_steps, per_device_eval_batch_size=per_device)
    if cfg.vllm != "off":
        kwargs.update(
            use_vllm=True,
            vllm_mode=cfg.vllm,
            vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
            vllm_importance_sampling_correction=cfg.vllm_importance_sampling_correction,
            # the longest sequence a run makes: without it vLLM reserves KV cache for the model's whole context
            vllm_max_model_length=cfg.max_prompt_length + cfg.max_completion_length,
            vllm_enable_sleep_mode=cfg.vllm_sleep_mode,
        )
        if cfg.vllm == "server":
            kwargs["vllm_server_base_url"] = cfg.vllm_server_url
    kwargs.update(cfg.extra_trl_args)
    try:
        return GRPOConfig(**kwargs)
    except ValueError as exc:
        if not cfg.extra_trl_args:
            raise
        given = ", ".join(cfg.extra_trl_args)
        raise StageError(
            f"TRL's GRPOConfig refused the settings with extra_trl_args ({given}): {exc}"
        ) from None


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
