"""`EvalConfig`: every option of `pr eval`, and the settings that shape a scored item."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from prcli.config import OVERWRITE_HELP, SKIP_INVALID_HELP, EnvVarName, ServerUrl, StageConfig
from prcli.eval import BENCHMARKS
from prcli.eval.formats import PredictionsFormat, SamplesLog
from prcli.eval.protocols import ProtocolName
from prcli.llm import Endpoint
from prcli.trackers import TrackerOptions

Backend = Literal["hf", "openai", "vllm"]
Style = Literal["official", "r1", "cot"]


class EvalConfig(StageConfig, TrackerOptions):
    bench: str = Field(
        description="Benchmark: "
        + ", ".join(f"{name} ({cls.title})" for name, cls in sorted(BENCHMARKS.items()))
        + "; or several, comma-separated, or all (the paper's eight): the model loads once and each "
        "benchmark gets OUT/<bench>/."
    )
    out: Path = Field(
        description="Output folder: items.jsonl, summary.json, config.yaml (one subfolder per benchmark "
        "when there are several)."
    )
    model: str | None = Field(
        None, description="Model to evaluate: alias, hub id, local path, or the server's model name."
    )
    data: Path | None = Field(
        None,
        description="Local copy of the benchmark (native dump or normalised JSONL); default: the hub. With "
        "several benchmarks, a folder holding each one's copy under its name (DATA/mathvista.parquet, "
        "DATA/mmmu_pro/, ...).",
    )
    predictions: Path | None = Field(
        None,
        description='Score saved responses instead of generating: JSONL of {"id", "response"} (or a JSON '
        "id->response map), lmms-eval's per-sample log or VLMEvalKit's prediction file (see "
        "--predictions-format). With several benchmarks, a folder of PREDICTIONS/<bench>.<ext>.",
    )
    predictions_format: PredictionsFormat = Field(
        "auto",
        description="Layout of --predictions: prcli, lmms-eval (a <date>_samples_<task>.jsonl of --log_samples: the "
        "raw resps, items by the doc's id or else by doc_id position, checked against each line's target) or "
        "vlmevalkit (<model>_<dataset>.xlsx/.tsv/.csv/.json: prediction by index, checked against each row's "
        "answer); auto: told by the file, an error where it cannot be.",
    )
    log_samples: SamplesLog = Field(
        "none",
        description="lmms-eval: also write the scored items in lmms-eval's per-sample log layout, "
        "OUT/lmms-eval/<model>/<date>_samples_<bench>.jsonl and <date>_results.json, to cross-check a score.",
    )
    backend: Backend = Field(
        "hf", description="Generation backend: hf (transformers, batched), openai (a server) or vllm (GPU)."
    )
    prompt_style: Style = Field(
        "official",
        description="official (the benchmark's own), r1 (Perception-R1's think/answer/boxed suffix) or cot.",
    )
    base_url: list[ServerUrl] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        description="openai backend: server URL, ending in /v1; repeat the option for several replicas.",
    )
    api_key_env: EnvVarName = Field(
        "OPENAI_API_KEY", description="openai backend: environment variable with the API key."
    )
    concurrency: int = Field(16, ge=1, description="openai backend: requests in flight at most.")
    timeout: float = Field(600.0, gt=0, description="openai backend: seconds per request attempt.")
    max_retries: int = Field(3, ge=0, description="openai backend: retries of a failed request.")
    batch_size: int = Field(8, ge=1, description="hf and vllm backends: prompts per generation batch.")
    max_new_tokens: int = Field(4096, ge=1, description="Longest response, in tokens (Perception-R1: 4096).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0: greedy, the default).")
    decoding_preset: Literal["default", "official"] = Field(
        "default",
        description="official: the benchmark's own runner's decoding where it has one (EMMA: temperature "
        "0.7), replacing --temperature/--max-new-tokens; default: the options as given (greedy).",
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (only with temperature > 0).")
    seed: int = Field(0, description="Sampling seed.")
    min_pixels: int | None = Field(
        None, description="Smallest image area after resizing (default: the processor's)."
    )
    max_pixels: int | None = Field(
        None, description="Largest image area after resizing (default: the processor's)."
    )
    device: str = Field("auto", description="hf backend: torch device.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm backend: tensor parallel size.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm backend: GPU memory share.")
    max_model_len: int | None = Field(None, description="vllm backend: context length.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N items.")
    protocol: ProtocolName = Field(
        "rules",
        description="How responses are scored: rules (offline: rule extraction + each benchmark's official "
        "normaliser), official (each benchmark's published pipeline, the --answer-judge-* LLM standing in for "
        "its GPT model; rule-based benchmarks use their rules) or paper (Perception-R1's: the <answer> block, "
        "else LLM extraction, then an LLM true/false judgement of every item).",
    )
    extract_prompt: Path | None = Field(
        None,
        description="official/paper: file replacing the instruction and worked examples of the first LLM step "
        "(e.g. the exact published extraction prompt); the item's slot stays.",
    )
    answer_judge_endpoint: Endpoint = Field(
        default_factory=lambda: Endpoint(model="Qwen/Qwen2.5-72B-Instruct", concurrency=16, timeout=600.0),
        description="The LLM of the official and paper protocols (extraction and judgement); its --answer-judge-prompt "
        "file replaces the judgement's instruction and worked examples.",
        json_schema_extra={"unused": ("structured", "device")},  # free text, a server
    )
    cache: bool = Field(True, description="official/paper: reuse LLM answers from the persistent cache.")
    cache_dir: Path | None = Field(
        None, description="Cache folder (default: $PRCLI_CACHE_DIR or ~/.cache/prcli)."
    )
    score_timeout: float = Field(
        10.0, gt=0, description="Seconds per item for sympy-based scoring (timeout: wrong)."
    )
    skip_invalid: bool = Field(False, description=SKIP_INVALID_HELP)
    overwrite: bool = Field(False, description=OVERWRITE_HELP)
    model_card: Path | None = Field(
        None,
        description="Folder of a model trained by pr train / pr sft: its README.md model card gets the "
        "accuracy in its model-index (shown on the Hub), replacing an earlier result of the same benchmark "
        "and protocol. Whole benchmarks only, written once every item is scored.",
    )

    @model_validator(mode="after")
    def _needs_a_source(self) -> EvalConfig:
        if self.model is None and self.predictions is None:
            raise ValueError("give --model (to generate) or --predictions (to score saved responses)")
        if self.protocol == "rules" and (self.extract_prompt or self.answer_judge_endpoint.prompt):
            raise ValueError("--extract-prompt and --answer-judge-prompt need --protocol official or paper")
        if self.model_card is not None and self.limit:
            raise ValueError("--model-card takes a whole benchmark's accuracy, not that of --limit items")
        return self

    def generation_endpoint(self) -> Endpoint:
        """The server of the model under evaluation (openai backend)."""
        return Endpoint(
            base_url=self.base_url,
            model=self.model,
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            timeout=self.timeout,
            max_retries=self.max_retries,
            structured="off",
        )

    @property
    def decoding(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }


# the settings that shape a result (the benchmark row and a saved response are hashed with each item,
# so moving the data or predictions file does not redo anything): a change redoes the items
RESULT_KEYS = (
    "bench",
    "model",
    "backend",
    "prompt_style",
    "max_new_tokens",
    "temperature",
    "top_p",
    "seed",
    "min_pixels",
    "max_pixels",
    "protocol",
)  # the protocol's model and prompt hashes join them (`Protocol.fingerprint`)
