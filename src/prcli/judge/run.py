"""`pr judge`: the perception judge over a JSONL of responses, streamed, resumable."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, StrictStr

from prcli.concurrency import run_sync
from prcli.config import OVERWRITE_HELP, SKIP_INVALID_HELP, save_config
from prcli.jsonl import InputError, LineProblem, ResumableJsonl, content_hash, write_failed
from prcli.judge.core import Judge, JudgeConfig, JudgeItem, build_judge
from prcli.judge.statements import LEXICAL_VERSION
from prcli.llm import LLMClient
from prcli.records import Record, Response
from prcli.runs import StageResult, settings_hash, sibling
from prcli.sources import DataSource, Source, SourceOptions, read_source
from prcli.trackers import TrackerOptions, tracked


class JudgeRunConfig(JudgeConfig, SourceOptions, TrackerOptions):
    input_field: ClassVar[str] = "responses"

    responses: DataSource = Field(
        description="Response records: JSONL (id, response, [annotations]), or a dataset as for `pr annotate`."
    )
    out: Path = Field(description="Judgements (JSONL) to write, or to resume.")
    annotations: Path | None = Field(
        None,
        description="Annotated records to take annotations from: a JSONL, parquet or arrow file (the released "
        "Perception-R1 parquet needs no map; ids `row-<i>` when it has none).",
    )
    annotation_key: str = Field(
        "id", description="Response field matched against the annotated records' ids."
    )
    skip_invalid: bool = Field(False, description=SKIP_INVALID_HELP)
    overwrite: bool = Field(False, description=OVERWRITE_HELP)
    window: int = Field(0, ge=0, description="Responses in flight (0: four times the concurrency).")


class _Annotations(Record):
    id: StrictStr
    annotations: list[StrictStr]


@dataclass
class JudgeSummary(StageResult):
    out: Path
    total: int
    already_done: int
    redone: int
    written: int
    failed: int
    rejected: int
    mean_score: float | None
    scored: int
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    failed_path: Path | None = None


# the settings that shape a result: a change redoes the judgements made under the old ones
RESULT_KEYS = (
    "backend",
    "endpoint.model",
    "endpoint.structured",
    "max_tokens",
    "annotations",
    "annotation_key",
    "failure_policy",
)


def load_annotations(path: Path) -> dict[str, list[str]]:
    """{id: annotations} of annotated records (`pr annotate`'s output, or a parquet/arrow file read as
    `prcli.sources` reads one, with its own columns); images not checked. A file, not a folder or a
    hub name: --split, --subset and --revision choose within the responses, not here."""
    if path.is_dir():
        raise InputError(
            [LineProblem(path, 0, "--annotations takes a JSONL, parquet or arrow file, not a folder")]
        )
    checked = read_source(Source(path, {}), _Annotations, context={"check_images": False})
    return {rec.id: rec.annotations for rec in checked}


def annotation_join(
    by_id: dict[str, list[str]] | None, key: str, source: Path | None, *, required: bool = True
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A line converter attaching the annotations of the annotated record whose id is `obj[key]`.

    Without `by_id` the annotations must be inline. `required=False` leaves a line whose id has no
    annotated record as it is (`pr diagnose` labels it unknown instead of refusing the file).
    """

    def join(obj: dict[str, Any]) -> dict[str, Any]:
        if by_id is None:
            if required and obj.get("annotations") is None:
                raise ValueError("annotations: missing, and no --annotations file to join them from")
            return obj
        ref = obj.get(key)
        if ref is None:
            raise ValueError(f"{key}: required to join annotations, but missing")
        if str(ref) not in by_id:
            if not required:
                return obj
            raise ValueError(f"{key}: no annotated record with id {str(ref)!r} in {source}")
        return {**obj, "annotations": by_id[str(ref)]}

    return join


@tracked("judge")
def run_judge(
    config: JudgeRunConfig,
    *,
    judge: Judge | None = None,
    on_start: Callable[[int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> JudgeSummary:
    """Judge every response not yet in `config.out`; returns what happened.

    Failed judgements (after retries) are not written under the `skip` policy, so running the same
    command again retries them; they are listed in `<out>.failed.jsonl`.
    """
    started = time.monotonic()
    by_id = load_annotations(config.annotations) if config.annotations else None
    join = annotation_join(by_id, config.annotation_key, config.annotations)
    responses = read_source(
        Source.of(config.responses, config),
        Response,
        skip_invalid=config.skip_invalid,
        rejected_path=sibling(config.out, ".rejected.jsonl"),
        convert=join,
    )
    judge = judge or build_judge(config)
    save_config(
        config, sibling(config.out, ".config.yaml"), extra={"judge_prompt_sha256": judge.prompt_sha256}
    )
    # the prompt's content, not its path, shapes a judgement: an edited file redoes them
    settings = settings_hash(config, RESULT_KEYS, prompt=judge.prompt_sha256 or LEXICAL_VERSION)

    def input_hash(r: Response) -> str:
        return content_hash(settings, r.response, r.annotations or [])

    failed: list[dict[str, Any]] = []
    with ResumableJsonl(config.out, overwrite=config.overwrite) as out:

        def todo() -> Iterator[tuple[Response, str]]:  # streamed: memory does not grow with the input
            for r in responses:
                h = input_hash(r)
                if not out.reuse(r.id, h):
                    yield r, h
                elif on_item:
                    on_item()

        if on_start:
            on_start(len(responses))
        window = config.window or 4 * config.endpoint.concurrency

        async def judge_all() -> None:
            from prcli.concurrency import ordered_window

            async def judge_one(pair: tuple[Response, str]) -> tuple[Any, str]:
                r, h = pair
                return await judge.judge(JudgeItem(r.id, list(r.annotations or []), r.response)), h

            async for judgement, h in ordered_window(todo(), judge_one, window):
                if judgement.score is None and judgement.error is not None:
                    failed.append({"id": judgement.id, "error": judgement.error})
                else:  # a failure scored 0 (`--failure-policy zero`) is written, and retried next run
                    out.write(judgement, h if judgement.error is None else f"{h}:failed")
                if on_item:
                    on_item()

        run_sync(judge_all())
        out.finish(lambda: (r.id for r in responses))
        already, redone, written = out.reused, out.redone, out.written

    failed_path = write_failed(sibling(config.out, ".failed.jsonl"), failed)
    n_scored, mean = _mean_score(config.out)
    stats = judge.stats.as_dict()
    if judge.cache is not None:
        stats["cache_entries"] = len(judge.cache)
    client = getattr(judge, "client", None)
    if isinstance(client, LLMClient):  # a server's judge: per-URL requests, failures, latency
        stats["endpoints"] = client.stats.endpoint_dicts()
    judge.close()
    return JudgeSummary(
        out=config.out,
        total=len(responses),
        already_done=already,
        redone=redone,
        written=written,
        failed=len(failed),
        rejected=responses.n_rejected,
        mean_score=mean,
        scored=n_scored,
        stats=stats,
        seconds=time.monotonic() - started,
        failed_path=failed_path,
    )


def _mean_score(path: Path) -> tuple[int, float | None]:
    """(how many lines have a score, their mean), streaming over the whole output."""
    n, total = 0, 0.0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            score = json.loads(line).get("score")
            if score is not None:
                n += 1
                total += float(score)
    return n, (total / n if n else None)
