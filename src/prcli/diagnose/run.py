"""`pr diagnose`: label every evaluated response, streamed and resumable, then summarise."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prcli.config import save_config
from prcli.diagnose.lexical import lexical_fact_verdicts
from prcli.diagnose.records import DiagnoseConfig, DiagnoseItem, label
from prcli.diagnose.summary import default_fields, read_labels, summarise
from prcli.jsonl import ResumableJsonl, check_jsonl, content_hash, write_json_atomic
from prcli.judge.run import annotation_join, load_annotations
from prcli.runs import settings_hash, sibling

# the settings that shape a label: a change relabels
RESULT_KEYS = ("judge", "annotations", "annotation_key")


@dataclass
class DiagnoseSummary:
    out: Path
    summary_path: Path
    total: int
    already_done: int
    redone: int
    written: int
    rejected: int
    fields: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out": str(self.out), "summary_path": str(self.summary_path)}


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


def diagnose_one(item: DiagnoseItem, config: DiagnoseConfig, fields: list[str]) -> dict[str, Any]:
    extra = item.model_extra or {}
    categories = {f: extra[f] for f in fields if extra.get(f) is not None}
    reason = _why_unjudged(item, config)
    if reason is not None:
        return label(item, [], None, reason, categories)
    facts = list(item.annotations or [])
    return label(item, facts, lexical_fact_verdicts(facts, item.response or ""), None, categories)


def run_diagnose(
    config: DiagnoseConfig,
    *,
    on_start: Callable[[int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> DiagnoseSummary:
    """Label every item not yet in `config.out` (a bad input line stops it before anything is written)."""
    started = time.monotonic()
    by_id = load_annotations(config.annotations) if config.annotations else None
    items = check_jsonl(
        config.items,
        DiagnoseItem,
        skip_invalid=config.skip_invalid,
        rejected_path=sibling(config.out, ".rejected.jsonl"),
        convert=annotation_join(by_id, config.annotation_key, config.annotations, required=False),
    )
    fields = config.field or default_fields(config.items)
    save_config(config, sibling(config.out, ".config.yaml"))
    settings = settings_hash(config, RESULT_KEYS, fields=fields)
    if on_start:
        on_start(len(items))
    with ResumableJsonl(config.out, overwrite=config.overwrite) as out:
        for item in items:
            h = content_hash(settings, item.model_dump(mode="json"))
            if not out.reuse(item.id, h):
                out.write(diagnose_one(item, config, fields), h)
            if on_item:
                on_item()
        out.finish(lambda: (i.id for i in items))
        reused, redone, written = out.reused, out.redone, out.written
    summary = summarise(read_labels(config.out), fields)
    summary_path = sibling(config.out, ".summary.json")
    write_json_atomic(summary_path, {"judge": config.judge, "fields": fields, **summary})
    return DiagnoseSummary(
        out=config.out,
        summary_path=summary_path,
        total=len(items),
        already_done=reused,
        redone=redone,
        written=written,
        rejected=items.n_rejected,
        fields=fields,
        summary=summary,
        seconds=time.monotonic() - started,
    )
