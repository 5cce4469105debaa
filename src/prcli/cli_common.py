"""Pieces shared by the subcommands: option help texts, choices, and building a stage config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import click
import typer
from click.core import ParameterSource
from pydantic import BaseModel

from prcli.config import resolve_config

C = TypeVar("C", bound=BaseModel)

CONFIG_HELP = "YAML file of option: value pairs; options given on the command line win."
JSON_HELP = "Print the result as one JSON object on stdout."
SKIP_INVALID_HELP = "Skip bad input lines (written to *.rejected.jsonl) instead of stopping."
OVERWRITE_HELP = "Start again instead of resuming an existing output."

JUDGE_HELP = {
    "backend": "Judge backend: lexical (no model, a cheap baseline), openai (any OpenAI-compatible server) or hf.",
    "model": "Judge model: the server's model name (openai) or an alias, hub id or path (hf). "
    "Default for openai: Qwen/Qwen2.5-32B-Instruct.",
    "base_url": "OpenAI-compatible server URL, ending in /v1.",
    "api_key_env": "Environment variable that holds the API key (the key itself is never passed or logged).",
    "concurrency": "Judge requests in flight at most.",
    "timeout": "Seconds per judge request attempt.",
    "max_retries": "Retries of a failed judge request (exponential backoff).",
    "max_tokens": "Longest judge answer, in tokens.",
    "structured": "Constrain the judge's answer: auto (vLLM regex, falling back to free text), vllm, "
    "vllm-legacy (guided_regex), json (response_format JSON schema) or off.",
    "failure_policy": "A judgement that fails after retries scores None, ignored by GRPO (skip) or 0 (zero).",
    "cache": "Reuse judgements from the persistent cache (keyed by model, prompt, annotations, response).",
    "cache_dir": "Cache folder (default: $PRCLI_CACHE_DIR or ~/.cache/prcli).",
    "batch_size": "hf backend: responses per generate() batch.",
    "device": "hf backend: torch device (auto, cpu, cuda, cuda:1, ...).",
}


def choice(*values: str) -> click.Choice:
    return click.Choice(values, case_sensitive=False)


def explicit_params(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user actually gave on the command line (or via environment)."""
    given = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT):
            given.add(name)
    return given


def build_config(
    ctx: typer.Context,
    cls: type[C],
    config_file: Path | None,
    *,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    rename: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> C:
    """The stage config from the command's parameters (defaults < YAML < explicit flags)."""
    rename = rename or {}
    values = {rename.get(k, k): v for k, v in ctx.params.items() if k not in exclude}
    explicit = {rename.get(k, k) for k in explicit_params(ctx) if k not in exclude}
    if extra:
        values.update(extra)
    return resolve_config(cls, values, explicit, config_file)
