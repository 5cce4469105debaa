"""TRL's option names in `pr train --config` YAML: aliases of ours, and `extra_trl_args` passed through.

A researcher's GRPO YAML speaks TRL (`GRPOConfig`, and `ModelConfig` for the model and LoRA). Where
prcli has the same setting under another name, the TRL name is an alias; where TRL's setting is one
prcli works out itself (batch split, reward weights list, CPU use), it is refused with the option that
sets it; any other `GRPOConfig` field goes under `extra_trl_args:` and reaches TRL unchanged, checked
against TRL's own dataclass so a typo is an error and not a silently ignored line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Callable
from typing import Any

from prcli.rewards import REWARD_NAMES

Mapper = Callable[[Any, dict[str, Any]], dict[str, Any]]
"""(the value, every key of the file) -> our settings."""


def _rename(ours: str) -> Mapper:
    return lambda value, _: {ours: value}


def _reward_weights(value: Any, _: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, list) or len(value) != len(REWARD_NAMES):
        raise ValueError(
            f"reward_weights: give {len(REWARD_NAMES)} weights, in prcli's reward order: {', '.join(REWARD_NAMES)}"
        )
    return {f"w_{name}": weight for name, weight in zip(REWARD_NAMES, value, strict=True)}


def _warmup_steps(value: Any, _: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, (int, float)) and 0 <= value < 1:
        return {"warmup_ratio": value}  # TRL reads a float below 1 as a ratio of the steps
    raise ValueError("warmup_steps: prcli takes the warmup as a ratio of the steps (warmup_ratio, below 1)")


def _use_vllm(value: Any, values: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return {"vllm": "off"}
    return {} if "vllm_mode" in values else {"vllm": "colocate"}  # TRL's default mode


def _lora_targets(value: Any, _: dict[str, Any]) -> dict[str, Any]:
    return {"lora_targets": ",".join(value) if isinstance(value, list) else value}


ALIASES: dict[str, Mapper] = {
    # GRPOConfig / TrainingArguments
    "num_train_epochs": _rename("epochs"),
    "per_device_train_batch_size": _rename("per_device_batch_size"),
    "delta": _rename("dual_clip"),
    "reward_weights": _reward_weights,
    "warmup_steps": _warmup_steps,
    "use_vllm": _use_vllm,
    "vllm_mode": _rename("vllm"),
    "vllm_server_base_url": _rename("vllm_server_url"),
    "vllm_enable_sleep_mode": _rename("vllm_sleep_mode"),
    # ModelConfig (TRL's scripts read model and LoRA settings from the same YAML)
    "model_name_or_path": _rename("model"),
    "use_peft": _rename("lora"),
    "lora_target_modules": _lora_targets,
}

DERIVED: dict[str, str] = {
    "gradient_accumulation_steps": "prompts_per_step (prcli splits prompts_per_step x num_generations over "
    "processes x per_device_batch_size itself)",
    "generation_batch_size": "prompts_per_step",
    "steps_per_generation": "prompts_per_step (one optimizer step per rollout batch, as released)",
    "use_cpu": "device",
    "vllm_max_model_length": "max_prompt_length + max_completion_length",
    "remove_unused_columns": "nothing: the rewards need the extra columns",
}
"""GRPOConfig settings prcli works out from its own options: giving them would fight that."""


def apply_aliases(values: dict[str, Any], ours: set[str], where: str) -> dict[str, Any]:
    """`values` (from a YAML file) with TRL names turned into ours. Giving both is an error."""
    out: dict[str, Any] = {}
    mapped: dict[str, str] = {}
    for key, value in values.items():
        if key in DERIVED:
            raise ValueError(f"{where}: {key} is worked out by prcli from {DERIVED[key]}; set that instead")
        if key not in ALIASES or key in ours:
            out[key] = value
            continue
        for name, v in ALIASES[key](value, values).items():
            if name in values or name in mapped:
                raise ValueError(f"{where}: {key} (TRL's name) and {mapped.get(name, name)} both set {name}")
            out[name] = v
            mapped[name] = key
    return out


@functools.cache
def grpo_fields() -> dict[str, Any]:
    """Every `GRPOConfig` field and its type, read from TRL's dataclass."""
    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(GRPOConfig) if f.init}


def close_names(name: str, names: list[str] | set[str]) -> list[str]:
    return difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)


def check_extra_trl_args(extra: dict[str, Any], ours: set[str]) -> dict[str, Any]:
    """Each key a GRPOConfig field that prcli has no option for, each value of that field's type.
    A setting prcli fixes without an option (lr_scheduler_type, scale_rewards, top_k, ...) takes the
    value given here."""
    from pydantic import TypeAdapter, ValidationError

    fields = grpo_fields()
    checked = {}
    for key, value in extra.items():
        if key == "hub_token":
            raise ValueError(
                "extra_trl_args.hub_token: a token is never written in a config (config.yaml keeps it); "
                "set HF_TOKEN in the environment or run `hf auth login`"
            )
        if key in ours or (key in ALIASES and key not in DERIVED):
            name = key if key in ours else f"its alias {key}"
            raise ValueError(f"extra_trl_args.{key}: prcli has this option; set it at the top level ({name})")
        if key in DERIVED:
            raise ValueError(
                f"extra_trl_args.{key}: worked out by prcli from {DERIVED[key]}; set that instead"
            )
        if key not in fields:
            near = close_names(key, fields)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"extra_trl_args.{key}: not a setting of TRL's GRPOConfig{hint}")
        try:
            adapter = TypeAdapter(fields[key])
            checked[key] = adapter.dump_python(adapter.validate_python(value), mode="json")  # plain YAML
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise ValueError(f"extra_trl_args.{key}: {problem} (TRL's type: {fields[key]})") from None
    return checked
