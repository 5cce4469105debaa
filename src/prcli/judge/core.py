"""The perception judge: which annotations does a response reflect?

    score = sum(verdicts) / len(annotations)

Backends: `openai` (any OpenAI-compatible server; the paper's setup is Qwen2.5-32B-Instruct behind
`vllm serve`), `hf` (a transformers causal LM in this process) and `lexical` (no model; a cheap
baseline, see `prcli.judge.lexical`). A judgement never raises: a failed call gives `score=None`
with `error` set (failure policy `skip`) or `score=0.0` (policy `zero`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from prcli.cache import ResultCache, cache_key
from prcli.concurrency import run_sync
from prcli.config import StageConfig
from prcli.errors import StageError
from prcli.judge.prompt import (
    BUILTIN_PROMPT,
    PROMPT_VERSION,
    JudgePrompt,
    build_messages,
    load_judge_prompt,
    parse_verdicts,
    verdict_json_schema,
    verdict_regex,
)
from prcli.judge.statements import lexical_verdicts
from prcli.llm import Constraint, Endpoint, LLMClient
from prcli.records import Judgement

Backend = Literal["lexical", "openai", "hf"]
FailurePolicy = Literal["skip", "zero"]

DEFAULT_JUDGE_MODEL = "Qwen/Qwen2.5-32B-Instruct"


def judge_endpoint() -> Endpoint:
    """The perception judge's connection defaults, the same in `pr judge` and `pr train`."""
    return Endpoint(concurrency=256)


class JudgeConfig(StageConfig):
    """Which judge, and how to reach it. Defaults follow the released run where it had one."""

    backend: Backend = Field(
        "lexical",
        description="lexical (no model: key-term matching, a cheap baseline), openai (any OpenAI-compatible "
        "server) or hf (transformers in this process).",
    )
    endpoint: Endpoint = Field(
        default_factory=judge_endpoint,
        description="The judge's connection (openai; model default Qwen/Qwen2.5-32B-Instruct) or model (hf). "
        "Its prompt: the judge's system text with its worked examples (e.g. the published one), whose "
        "SHA-256 every judgement records.",
    )
    max_tokens: int = Field(512, ge=1, description="Longest judge answer, in tokens.")
    failure_policy: FailurePolicy = Field(
        "skip",
        description="A judgement that fails after retries scores None (skip; in training a failed rollout gets "
        "its group's mean, so it moves no advantage) or 0 (zero).",
    )
    cache: bool = Field(True, description="Reuse judgements from the persistent, content-addressed cache.")
    cache_dir: Path | None = Field(
        None, description="Cache folder (default: $PRCLI_CACHE_DIR or ~/.cache/prcli)."
    )
    batch_size: int = Field(8, ge=1, description="hf: responses per generate() batch.")


@dataclass(frozen=True)
class JudgeItem:
    id: str
    annotations: list[str]
    response: str


@dataclass
class JudgeStats:
    items: int = 0
    judged: int = 0
    cache_hits: int = 0
    failures: int = 0
    no_annotations: int = 0
    incomplete_answers: int = 0  # the judge gave fewer tags than annotations (missing ones count 0)
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Outcome:
    verdicts: list[int | float] | None
    raw: str | None = None
    error: str | None = None


class Judge:
    """Base: caching, failure policy and statistics; backends implement `_judge_one`."""

    backend: str = "base"

    def __init__(self, config: JudgeConfig, cache: ResultCache | None = None):
        self.config = config
        self.prompt: JudgePrompt | None = self._load_prompt()
        self.stats = JudgeStats()
        self.cache = cache if cache is not None else (self._open_cache() if self.uses_cache else None)

    uses_cache = True

    def _load_prompt(self) -> JudgePrompt | None:
        return load_judge_prompt(self.config.endpoint.prompt)

    @property
    def prompt_sha256(self) -> str | None:
        """The system text's hash, recorded in every judgement (None: a judge without a prompt)."""
        return self.prompt.sha256 if self.prompt is not None else None

    def _open_cache(self) -> ResultCache | None:
        if not self.config.cache:
            return None
        return ResultCache(self.config.cache_dir / "results.sqlite" if self.config.cache_dir else None)

    @property
    def model_name(self) -> str | None:
        return self.config.endpoint.model

    def _key(self, item: JudgeItem) -> str:
        return cache_key(
            role="perception-judge",
            backend=self.backend,
            model=self.model_name,
            prompt_version=PROMPT_VERSION,  # the user turn and the parser
            prompt_sha256=self.prompt_sha256,  # the system text
            annotations=item.annotations,
            response=item.response,
            decoding={
                "temperature": 0.0,
                "max_tokens": self.config.max_tokens,
                "structured": self.config.endpoint.structured,
            },
        )

    async def judge(self, item: JudgeItem) -> Judgement:
        self.stats.items += 1
        if not item.annotations:
            self.stats.no_annotations += 1
            return Judgement(
                id=item.id, verdicts=[], score=None, raw=None, error=None, prompt_sha256=self.prompt_sha256
            )
        key = self._key(item) if self.cache is not None else None
        if key is not None and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return self._judgement(item, _Outcome(hit["verdicts"], hit.get("raw")))
        outcome = await self._judge_one(item)
        judgement = self._judgement(item, outcome)  # built first: only a valid judgement is cached
        if outcome.verdicts is not None:
            self.stats.judged += 1
            if key is not None and self.cache is not None:
                self.cache.put(key, {"verdicts": outcome.verdicts, "raw": outcome.raw})
        else:
            self.stats.failures += 1
            kind = (outcome.error or "error").split(":")[0]
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
        return judgement

    def _judgement(self, item: JudgeItem, outcome: _Outcome) -> Judgement:
        if outcome.verdicts is None:
            score = 0.0 if self.config.failure_policy == "zero" else None
            return Judgement(
                id=item.id,
                verdicts=[],
                score=score,
                raw=outcome.raw,
                error=outcome.error,
                prompt_sha256=self.prompt_sha256,
            )
        score = sum(outcome.verdicts) / len(item.annotations)
        return Judgement(
            id=item.id,
            verdicts=list(outcome.verdicts),
            score=score,
            raw=outcome.raw,
            error=None,
            prompt_sha256=self.prompt_sha256,
        )

    async def judge_many(self, items: list[JudgeItem]) -> list[Judgement]:
        return list(await asyncio.gather(*(self.judge(it) for it in items)))

    def judge_many_sync(self, items: list[JudgeItem]) -> list[Judgement]:
        return run_sync(self.judge_many(items))

    async def _judge_one(self, item: JudgeItem) -> _Outcome:
        raise NotImplementedError

    def _count_incomplete(self, found: int, n: int) -> None:
        if found < n:
            self.stats.incomplete_answers += 1

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


class LexicalJudge(Judge):
    backend = "lexical"
    uses_cache = False

    def _load_prompt(self) -> JudgePrompt | None:
        if self.config.endpoint.prompt is not None:  # refused rather than silently ignored
            raise StageError("--judge-prompt: the lexical judge uses no prompt (use --judge openai or hf)")
        return None

    @property
    def model_name(self) -> str | None:
        return None

    async def _judge_one(self, item: JudgeItem) -> _Outcome:
        return _Outcome(list(lexical_verdicts(item.annotations, item.response)))


class LLMJudge(Judge):
    """A judge that asks an LLM: the official prompt, verdicts parsed from its answer."""

    def __init__(self, config: JudgeConfig, cache: ResultCache | None = None, client: Any = None):
        super().__init__(config, cache)
        self.client = client if client is not None else self._client()

    def _client(self) -> Any:
        raise NotImplementedError

    async def _judge_one(self, item: JudgeItem) -> _Outcome:
        n = len(item.annotations)
        messages = build_messages(item.annotations, item.response, self.prompt or BUILTIN_PROMPT)
        shape = Constraint("verdicts", regex=verdict_regex(n), json_schema=verdict_json_schema(n))
        result = await self.client.chat(messages, constraint=shape)
        if not result.ok:
            return _Outcome(None, None, result.error)
        verdicts, found = parse_verdicts(result.text, n)
        self._count_incomplete(found, n)
        return _Outcome(verdicts, result.text)


class OpenAIJudge(LLMJudge):
    """Any OpenAI-compatible server; the paper's judge is Qwen2.5-32B-Instruct behind `vllm serve`."""

    backend = "openai"

    @property
    def model_name(self) -> str | None:
        return self.config.endpoint.model or DEFAULT_JUDGE_MODEL

    def _client(self) -> Any:
        return LLMClient(
            self.config.endpoint, default_model=DEFAULT_JUDGE_MODEL, max_tokens=self.config.max_tokens
        )


class HFJudge(LLMJudge):
    """A transformers model in this process, batched (`batch_size` answers per `generate()`)."""

    backend = "hf"

    def __init__(self, config: JudgeConfig, cache: ResultCache | None = None, client: Any = None):
        if not config.endpoint.model:
            raise ValueError("the hf judge needs a model (an alias, hub id or local path)")
        endpoint = config.endpoint.model_copy(update={"structured": "off"})
        super().__init__(config.model_copy(update={"endpoint": endpoint}), cache, client)

    def _client(self) -> Any:
        from prcli.generation import LocalChat

        return LocalChat(
            self.config.endpoint.model or "",
            device=self.config.endpoint.device,
            batch_size=self.config.batch_size,
            max_tokens=self.config.max_tokens,
        )


def build_judge(config: JudgeConfig, cache: ResultCache | None = None) -> Judge:
    if config.backend == "lexical":
        return LexicalJudge(config, cache)
    if config.backend == "openai":
        return OpenAIJudge(config, cache)
    if config.backend == "hf":
        return HFJudge(config, cache)
    raise ValueError(f"unknown judge backend {config.backend!r}")
