"""`pr annotate`: problems -> verified chains of thought -> numbered visual annotations.

Per problem: take its `cot` or distil one from a teacher MLLM (up to `samples` attempts), keep it
only if its final answer verifies against `answer` (the accuracy reward's verifier), then extract
atomic visual annotations with an LLM or the `rules` extractor. Kept problems go to `out`; problems
dropped for a reason (wrong CoTs, no CoT, nothing extracted) go to `<out>.dropped.jsonl` with that
reason; problems whose model calls failed go to `<out>.failed.jsonl` and are retried by the next run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from prcli.annotate.extract import clean_annotations, parse_annotations, rules_annotations
from prcli.annotate.prompts import (
    EXTRACT_PROMPT_VERSION,
    TEACHER_PROMPT_VERSION,
    annotations_schema,
    extract_messages,
    teacher_text,
)
from prcli.cache import ResultCache, cache_key
from prcli.concurrency import ordered_window, run_sync
from prcli.config import OVERWRITE_HELP, SKIP_INVALID_HELP, StageConfig, save_config
from prcli.images import file_digest, image_message
from prcli.jsonl import ResumableJsonl, check_jsonl, content_hash, write_failed
from prcli.llm import ChatResult, Constraint, Endpoint, LLMClient
from prcli.records import AnnotatedProblem, Problem, Provenance
from prcli.rewards import answer_content
from prcli.runs import StageResult, settings_hash, sibling
from prcli.sources import DataSource, Source, SourceOptions, read_source
from prcli.trackers import TrackerOptions, tracked
from prcli.verify import AsyncVerifier, VerifierPool

Extractor = Literal["rules", "openai", "hf"]
Teacher = Literal["none", "openai", "hf"]
DEFAULT_EXTRACTOR_MODEL = "Qwen/Qwen2.5-32B-Instruct"


class AnnotateConfig(StageConfig, SourceOptions, TrackerOptions):
    input_field: ClassVar[str] = "problems"

    problems: DataSource = Field(
        description="Problem records: JSONL (id, question, images, answer, [cot]), a parquet/arrow file or "
        "folder, a save_to_disk folder, or a hub dataset owner/name (see --field, --subset, --split)."
    )
    out: Path = Field(description="Annotated records (JSONL) to write, or to resume.")
    extractor: Extractor = Field(
        "rules",
        description="rules (no model: the CoT's visual-fact clauses), openai (a server) or hf (in-process).",
    )
    extractor_endpoint: Endpoint = Field(
        default_factory=lambda: Endpoint(concurrency=32, timeout=180.0),
        description=f"The extractor LLM's connection (openai; model default {DEFAULT_EXTRACTOR_MODEL}) or "
        "model (hf); structured: the answer as a JSON list of strings.",
        json_schema_extra={"unused": ("prompt",)},  # prcli's own extraction prompt
    )
    teacher: Teacher = Field(
        "none",
        description="Who writes missing CoTs: none (such problems are dropped), openai or hf (an MLLM).",
    )
    teacher_endpoint: Endpoint = Field(
        default_factory=lambda: Endpoint(concurrency=32, timeout=180.0),
        description="The teacher MLLM's connection (openai) or model (hf).",
        json_schema_extra={"unused": ("structured", "prompt")},  # a CoT has no shape; prcli's prompt
    )
    samples: int = Field(1, ge=1, description="Teacher attempts per problem until one CoT verifies.")
    teacher_temperature: float = Field(0.7, ge=0, description="Sampling temperature of the teacher.")
    teacher_max_tokens: int = Field(4096, ge=1, description="Longest teacher CoT, in tokens.")
    filter: bool = Field(True, description="Keep only CoTs whose final answer verifies against the answer.")
    max_annotations: int = Field(12, ge=1, description="Keep at most this many annotations per problem.")
    max_annotation_chars: int = Field(200, ge=10, description="Drop annotations longer than this.")
    accuracy_timeout: float = Field(5.0, gt=0, description="Seconds per answer verification.")
    cache: bool = Field(True, description="Reuse teacher and extractor answers from the persistent cache.")
    cache_dir: Path | None = Field(
        None, description="Cache folder (default: $PRCLI_CACHE_DIR or ~/.cache/prcli)."
    )
    batch_size: int = Field(4, ge=1, description="hf backends: requests per generate() batch.")
    skip_invalid: bool = Field(False, description=SKIP_INVALID_HELP)
    overwrite: bool = Field(False, description=OVERWRITE_HELP)

    @model_validator(mode="after")
    def _check_roles(self) -> AnnotateConfig:
        if self.teacher != "none" and not self.teacher_endpoint.model:
            raise ValueError(f"--teacher {self.teacher} needs --teacher-model")
        return self


# the settings that shape a result: a change redoes the records made under the old ones
RESULT_KEYS = (
    "extractor",
    "extractor_endpoint.model",
    "extractor_endpoint.structured",
    "teacher",
    "teacher_endpoint.model",
    "samples",
    "teacher_temperature",
    "teacher_max_tokens",
    "filter",
    "max_annotations",
    "max_annotation_chars",
)


@dataclass
class _Outcome:
    status: Literal["kept", "dropped", "failed"]
    record: dict[str, Any]


@dataclass
class AnnotateSummary(StageResult):
    out: Path
    problems: int
    already_done: int
    redone: int
    kept: int
    dropped: int
    failed: int
    rejected: int
    cot_given: int
    cot_distilled: int
    mean_annotations: float | None
    drop_reasons: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    # per role that asks a server (teacher, extractor): per URL requests, failures, latency, ...
    endpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0
    dropped_path: Path | None = None
    failed_path: Path | None = None


def _chat_backend(kind: str, cfg: AnnotateConfig, role: Literal["teacher", "extractor"]) -> Any:
    endpoint = cfg.teacher_endpoint if role == "teacher" else cfg.extractor_endpoint
    if kind == "openai":
        if role == "teacher":
            return LLMClient(endpoint, max_tokens=cfg.teacher_max_tokens)
        return LLMClient(endpoint, default_model=DEFAULT_EXTRACTOR_MODEL, max_tokens=1024)
    from prcli.generation import LocalChat

    if not endpoint.model:
        raise ValueError(f"the hf {role} needs --{role}-model")
    return LocalChat(endpoint.model, device=endpoint.device, batch_size=cfg.batch_size)


class Annotator:
    """The per-problem pipeline; one instance per run (holds clients, cache, verifier, counters)."""

    def __init__(self, cfg: AnnotateConfig, verifier: AsyncVerifier, cache: ResultCache | None):
        self.cfg = cfg
        self.verifier = verifier
        self.cache = cache
        self.teacher = _chat_backend(cfg.teacher, cfg, "teacher") if cfg.teacher != "none" else None
        self.extractor = _chat_backend(cfg.extractor, cfg, "extractor") if cfg.extractor != "rules" else None
        self.counts: Counter[str] = Counter()

    @property
    def teacher_name(self) -> str | None:
        return None if self.teacher is None else self.cfg.teacher_endpoint.model

    @property
    def extractor_name(self) -> str:
        if self.cfg.extractor == "rules":
            return "rules"
        return self.cfg.extractor_endpoint.model or DEFAULT_EXTRACTOR_MODEL

    async def _cached_chat(
        self, backend: Any, key: str, messages: list[dict[str, Any]], **kw: Any
    ) -> tuple[str | None, ChatResult | None]:
        """(text, the call's result or None for a cache hit); failures are never cached."""
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.counts["cache_hits"] += 1
                return hit["text"], None
        result = await backend.chat(messages, **kw)
        if not result.ok:
            return None, result
        if self.cache is not None:
            self.cache.put(key, {"text": result.text})
        return result.text, result

    async def _correct(self, cot: str, answer: str) -> bool:
        return await self.verifier.verify(answer_content(cot), answer)

    async def _cot(self, problem: Problem) -> tuple[str | None, str, int, str | None]:
        """(verified cot or None, source, attempts, why not): source is given/teacher."""
        if problem.cot is not None:
            if not self.cfg.filter or await self._correct(problem.cot, problem.answer):
                return problem.cot, "given", 0, None
            return None, "given", 0, "wrong_answer"
        if self.teacher is None:
            return None, "none", 0, "no_cot"
        text = teacher_text(problem.question)
        messages = image_message(text, list(problem.images))
        errors, wrong, cut = [], 0, 0
        for attempt in range(self.cfg.samples):
            key = cache_key(
                role="teacher",
                backend=self.cfg.teacher,
                model=self.teacher_name,
                prompt_version=TEACHER_PROMPT_VERSION,
                text=text,
                images=[file_digest(p) for p in problem.images],
                temperature=self.cfg.teacher_temperature,
                max_tokens=self.cfg.teacher_max_tokens,
                attempt=attempt,
            )
            cot, result = await self._cached_chat(
                self.teacher,
                key,
                messages,
                temperature=self.cfg.teacher_temperature,
                max_tokens=self.cfg.teacher_max_tokens,
                seed=attempt,
            )
            if cot is None and result is not None and result.finish_reason == "length":
                cut += 1  # a CoT cut at teacher_max_tokens: an attempt that did not verify
                continue
            if cot is None:
                errors.append(result.error if result is not None and result.error else "no answer")
                continue
            if not self.cfg.filter or await self._correct(cot, problem.answer):
                return cot, "teacher", attempt + 1, None
            wrong += 1
        if wrong or cut:
            return None, "teacher", self.cfg.samples, "wrong_answer" if wrong else "cot_truncated"
        return None, "teacher", self.cfg.samples, "teacher failed: " + "; ".join(dict.fromkeys(errors))

    async def _annotations(self, problem: Problem, cot: str) -> tuple[list[str] | None, str | None]:
        limits = {"max_items": self.cfg.max_annotations, "max_chars": self.cfg.max_annotation_chars}
        if self.extractor is None:
            return rules_annotations(cot, **limits), None
        messages = extract_messages(problem.question, cot)
        key = cache_key(
            role="extractor",
            backend=self.cfg.extractor,
            model=self.extractor_name,
            prompt_version=EXTRACT_PROMPT_VERSION,
            question=problem.question,
            cot=cot,
            structured=self.cfg.extractor_endpoint.structured,
        )
        schema = annotations_schema(self.cfg.max_annotations, self.cfg.max_annotation_chars)
        shape = Constraint("annotations", json_schema=schema)
        text, result = await self._cached_chat(
            self.extractor, key, messages, temperature=0.0, max_tokens=1024, constraint=shape
        )
        if text is None:
            return None, result.error if result is not None else "no answer"
        return clean_annotations(parse_annotations(text), **limits), None

    async def process(self, problem: Problem) -> _Outcome:
        base = problem.model_dump(mode="python")
        cot, source, attempts, why = await self._cot(problem)
        self.counts[f"cot_{source}"] += 1
        if cot is None:
            assert why is not None
            if why.startswith("teacher failed"):
                return _Outcome("failed", {"id": problem.id, "stage": "teacher", "error": why})
            return _Outcome(
                "dropped", {"id": problem.id, "reason": why, "cot_source": source, "attempts": attempts}
            )
        annotations, error = await self._annotations(problem, cot)
        if annotations is None:
            return _Outcome("failed", {"id": problem.id, "stage": "extractor", "error": error})
        if not annotations:
            return _Outcome(
                "dropped", {"id": problem.id, "reason": "no_annotations", "cot_source": source, "cot": cot}
            )
        provenance = Provenance(
            teacher=self.teacher_name if source == "teacher" else None,
            extractor=self.extractor_name,
            prompt_version=EXTRACT_PROMPT_VERSION,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            cot_source=source,
            teacher_prompt_version=TEACHER_PROMPT_VERSION if source == "teacher" else None,
            teacher_attempts=attempts or None,
        )
        record = {**base, "cot": cot, "annotations": annotations, "provenance": provenance.model_dump()}
        return _Outcome("kept", record)


@tracked("annotate")
def run_annotate(
    cfg: AnnotateConfig,
    *,
    on_start: Callable[[int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> AnnotateSummary:
    started = time.monotonic()
    problems = read_source(
        Source.of(cfg.problems, cfg),
        Problem,
        skip_invalid=cfg.skip_invalid,
        rejected_path=sibling(cfg.out, ".rejected.jsonl"),
    )
    save_config(
        cfg,
        sibling(cfg.out, ".config.yaml"),
        extra={
            "teacher_prompt_version": TEACHER_PROMPT_VERSION,
            "extract_prompt_version": EXTRACT_PROMPT_VERSION,
        },
    )
    cache = None
    if cfg.cache and (cfg.teacher != "none" or cfg.extractor != "rules"):
        cache = ResultCache(cfg.cache_dir / "results.sqlite" if cfg.cache_dir else None)
    dropped_path, failed_path = sibling(cfg.out, ".dropped.jsonl"), sibling(cfg.out, ".failed.jsonl")
    failed: list[dict[str, Any]] = []
    pool = VerifierPool(timeout=cfg.accuracy_timeout)
    try:
        annotator = Annotator(cfg, AsyncVerifier(pool), cache)
        with (
            ResumableJsonl(cfg.out, overwrite=cfg.overwrite) as kept_out,
            ResumableJsonl(dropped_path, overwrite=cfg.overwrite) as dropped_out,
        ):
            settings = settings_hash(
                cfg,
                RESULT_KEYS,
                teacher_prompt=TEACHER_PROMPT_VERSION,
                extract_prompt=EXTRACT_PROMPT_VERSION,
            )
            redone = 0

            def todo() -> Iterator[tuple[Problem, str]]:  # streamed: memory does not grow with the input
                nonlocal redone
                for p in problems:
                    h = content_hash(settings, p.model_dump(mode="json"), [file_digest(i) for i in p.images])
                    if kept_out.reuse(p.id, h) or dropped_out.reuse(p.id, h):
                        if on_item:
                            on_item()
                        continue
                    redone += kept_out.has(p.id) or dropped_out.has(p.id)
                    yield p, h

            if on_start:
                on_start(len(problems))

            async def process(pair: tuple[Problem, str]) -> tuple[_Outcome, str]:
                return await annotator.process(pair[0]), pair[1]

            async def annotate_all() -> None:
                async for outcome, h in ordered_window(
                    todo(),
                    process,
                    4 * max(cfg.teacher_endpoint.concurrency, cfg.extractor_endpoint.concurrency),
                ):
                    if outcome.status == "kept":
                        record = AnnotatedProblem.model_validate(
                            outcome.record, context={"check_images": False}
                        )
                        kept_out.write(record, h)
                    elif outcome.status == "dropped":
                        dropped_out.write(outcome.record, h)
                    else:
                        failed.append(outcome.record)
                    if on_item:
                        on_item()

            run_sync(annotate_all())
            already = kept_out.reused + dropped_out.reused
            for output in (kept_out, dropped_out):
                output.finish(lambda: (p.id for p in problems))
    finally:
        pool.close()
        if cache is not None:
            cache.close()
    write_failed(failed_path, failed)
    kept_rows = check_jsonl(
        cfg.out, AnnotatedProblem, allow_empty=True, context={"check_images": False}, key=None
    )
    n_kept, n_annotations = 0, 0
    for rec in kept_rows:
        n_kept += 1
        n_annotations += len(rec.annotations)
    reasons = Counter(_drop_reasons(dropped_path))
    return AnnotateSummary(
        out=cfg.out,
        problems=len(problems),
        already_done=already,
        redone=redone,
        kept=n_kept,
        dropped=sum(reasons.values()),
        failed=len(failed),
        rejected=problems.n_rejected,
        cot_given=annotator.counts["cot_given"],
        cot_distilled=annotator.counts["cot_teacher"],
        mean_annotations=n_annotations / n_kept if n_kept else None,
        drop_reasons=dict(reasons),
        cache_hits=annotator.counts["cache_hits"],
        endpoints={
            role: backend.stats.endpoint_dicts()
            for role, backend in (("teacher", annotator.teacher), ("extractor", annotator.extractor))
            if isinstance(backend, LLMClient)
        },
        seconds=time.monotonic() - started,
        dropped_path=dropped_path if reasons else None,
        failed_path=failed_path if failed else None,
    )


def _drop_reasons(path: Path) -> list[str]:
    import json

    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["reason"] for line in fh]
