"""`pr diagnose`: label every evaluated response, streamed and resumable, then summarise."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prcli.cache import ResultCache
from prcli.concurrency import ordered_window, run_sync
from prcli.config import save_config
from prcli.diagnose.agreement import agreement, load_human
from prcli.diagnose.llm import PROMPT_VERSION, LLMVerdicts
from prcli.diagnose.records import DiagnoseConfig, DiagnoseItem, label
from prcli.diagnose.sheet import write_sheet
from prcli.diagnose.summary import default_fields, read_labels, summarise
from prcli.diagnose.vlm import PROMPT_VERSION as VLM_PROMPT_VERSION
from prcli.diagnose.vlm import VLMClaims, image_join, load_images
from prcli.jsonl import (
    ResumableJsonl,
    check_jsonl,
    content_hash,
    require_jsonl_file,
    write_failed,
    write_json_atomic,
)
from prcli.judge.core import DEFAULT_JUDGE_MODEL
from prcli.judge.run import annotation_join, load_annotations
from prcli.judge.statements import LEXICAL_VERSION, Verdict, lexical_fact_verdicts
from prcli.runs import StageResult, settings_hash, sibling

# the settings that shape a label: a change relabels
RESULT_KEYS = ("judge", "judge_endpoint.model", "max_tokens", "annotations", "annotation_key")

# (verdicts, None), or (None, why the item could not be judged this time)
VerdictFn = Callable[[list[str], str], Awaitable[tuple[list[Verdict] | None, str | None]]]


@dataclass
class DiagnoseSummary(StageResult):
    out: Path
    summary_path: Path
    total: int
    already_done: int
    redone: int
    written: int
    failed: int
    rejected: int
    fields: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    failed_path: Path | None = None
    sheet: dict[str, Any] | None = None


def _why_unjudged(item: DiagnoseItem, config: DiagnoseConfig) -> str | None:
    """Why an item cannot be judged at all (it is labelled unknown), or None."""
    if not (item.response or "").strip():
        return "no response"
    if item.annotations is None and config.annotations is not None:
        ref = (item.model_extra or {}).get(config.annotation_key, item.id)
        return f"no annotations for {config.annotation_key} {str(ref)!r} in {config.annotations}"
    if not item.annotations:
        return "no annotations"
    return None


async def _lexical(facts: list[str], response: str) -> tuple[list[Verdict] | None, str | None]:
    return lexical_fact_verdicts(facts, response), None


def _verdict_fn(config: DiagnoseConfig) -> tuple[VerdictFn | VLMClaims, LLMVerdicts | VLMClaims | None]:
    if config.judge == "lexical":
        return _lexical, None
    cache = None
    if config.cache:
        cache = ResultCache(config.cache_dir / "results.sqlite" if config.cache_dir else None)
    if config.judge == "vlm":
        where = {"items_dir": config.items.resolve().parent, "source": config.annotations}
        vlm = VLMClaims(config.judge_endpoint, config.max_tokens, cache, **where, key=config.annotation_key)
        return vlm, vlm
    llm = LLMVerdicts(config.judge_endpoint, DEFAULT_JUDGE_MODEL, config.max_tokens, cache)
    return llm, llm


async def diagnose_one(
    item: DiagnoseItem, config: DiagnoseConfig, fields: list[str], verdicts_of: VerdictFn | VLMClaims
) -> tuple[dict[str, Any] | None, str | None]:
    """(the item's label, None), or (None, the error) when its judge failed: nothing is written for it."""
    extra = item.model_extra or {}
    categories = {f: extra[f] for f in fields if extra.get(f) is not None}
    if isinstance(verdicts_of, VLMClaims):  # no reference facts: the judge finds the claims itself
        return await verdicts_of.label(item, categories)
    reason = _why_unjudged(item, config)
    if reason is not None:
        return label(item, [], None, reason, categories), None
    facts = list(item.annotations or [])
    verdicts, error = await verdicts_of(facts, item.response or "")
    if verdicts is None:
        return None, error
    return label(item, facts, verdicts, None, categories), None


def run_diagnose(
    config: DiagnoseConfig,
    *,
    on_start: Callable[[int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> DiagnoseSummary:
    """Label every item not yet in `config.out` (a bad input line stops it before anything is written)."""
    started = time.monotonic()
    human = load_human(config.agreement) if config.agreement else None
    if config.annotations:  # its labelling sheet and the vlm judge read the records' JSONL lines
        require_jsonl_file(config.annotations)
    if config.judge == "vlm":  # the annotated records lend images, not facts
        images = load_images(config.annotations) if config.annotations else None
        convert = image_join(images, config.annotation_key)
    else:
        by_id = load_annotations(config.annotations) if config.annotations else None
        convert = annotation_join(by_id, config.annotation_key, config.annotations, required=False)
    items = check_jsonl(
        config.items,
        DiagnoseItem,
        skip_invalid=config.skip_invalid,
        rejected_path=sibling(config.out, ".rejected.jsonl"),
        convert=convert,
    )
    fields = config.field or default_fields(config.items)
    save_config(config, sibling(config.out, ".config.yaml"))
    prompt = {"lexical": LEXICAL_VERSION, "openai": PROMPT_VERSION, "vlm": VLM_PROMPT_VERSION}[config.judge]
    settings = settings_hash(config, RESULT_KEYS, fields=fields, prompt=prompt)
    verdicts_of, llm = _verdict_fn(config)
    failed: list[dict[str, Any]] = []
    if on_start:
        on_start(len(items))
    with ResumableJsonl(config.out, overwrite=config.overwrite) as out:

        def todo() -> Iterator[tuple[DiagnoseItem, str]]:  # streamed: memory does not grow with the input
            for item in items:
                h = content_hash(settings, item.model_dump(mode="json"))
                if not out.reuse(item.id, h):
                    yield item, h
                elif on_item:
                    on_item()

        async def one(pair: tuple[DiagnoseItem, str]) -> tuple[str, str, dict[str, Any] | None, str | None]:
            item, h = pair
            return (item.id, h, *await diagnose_one(item, config, fields, verdicts_of))

        async def all_items() -> None:
            window = config.window or 4 * config.judge_endpoint.concurrency
            async for item_id, h, record, error in ordered_window(todo(), one, window):
                if record is None:
                    failed.append({"id": item_id, "error": error})
                else:
                    out.write(record, h)
                if on_item:
                    on_item()

        run_sync(all_items())
        out.finish(lambda: (i.id for i in items))
        reused, redone, written = out.reused, out.redone, out.written
    if llm is not None:
        llm.close()
    failed_path = write_failed(sibling(config.out, ".failed.jsonl"), failed)
    summary = summarise(read_labels(config.out), fields)
    summary_path = sibling(config.out, ".summary.json")
    sheet = None
    if config.sample:
        sheet = write_sheet(
            config.out,
            config.items,
            config.annotations,
            config.annotation_key,
            config.sample,
            config.seed,
            sibling(config.out, ".sheet.html"),
        )
    if config.agreement is not None and human is not None:
        summary["agreement"] = agreement(config.agreement, human, read_labels(config.out))
    write_json_atomic(summary_path, {"judge": config.judge, "fields": fields, **summary})
    return DiagnoseSummary(
        out=config.out,
        summary_path=summary_path,
        total=len(items),
        already_done=reused,
        redone=redone,
        written=written,
        failed=len(failed),
        rejected=items.n_rejected,
        fields=fields,
        summary=summary,
        seconds=time.monotonic() - started,
        failed_path=failed_path,
        sheet=sheet,
    )
