"""`pr diagnose`'s settings, its input lines and the label it writes for each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictStr

from prcli.config import OVERWRITE_HELP, SKIP_INVALID_HELP, StageConfig
from prcli.judge.core import judge_endpoint as judge_connection
from prcli.judge.statements import Verdict
from prcli.llm import Endpoint
from prcli.records import Annotations, Id, Record

ErrorType = Literal["none", "perception", "reasoning", "lucky", "unknown"]
ERROR_TYPES: tuple[ErrorType, ...] = ("none", "perception", "reasoning", "lucky", "unknown")


class DiagnoseConfig(StageConfig):
    items: Path = Field(
        description="Evaluated responses (JSONL: id, response, correct), e.g. `pr eval`'s items.jsonl."
    )
    out: Path = Field(description="Labels (JSONL) to write, or to resume; the summary goes beside it.")
    annotations: Path | None = Field(
        None, description="Annotated records (JSONL, `pr annotate`'s output): the reference visual facts."
    )
    annotation_key: str = Field("id", description="Item field matched against the annotated records' ids.")
    judge: Literal["lexical", "openai", "vlm"] = Field(
        "lexical",
        description="lexical (no model: stated values and key terms matched against the facts), openai "
        "(a text LLM on any OpenAI-compatible server gives the three-way verdicts) or vlm (a vision model "
        "lists the response's visual claims and checks each on the image; no facts needed, images from "
        "the items' `images` or the --annotations records').",
    )
    judge_endpoint: Endpoint = Field(
        default_factory=judge_connection,
        description="The verdict LLM's connection (openai: model default Qwen/Qwen2.5-32B-Instruct; vlm: "
        "Qwen/Qwen2.5-VL-72B-Instruct).",
        json_schema_extra={"unused": ("prompt", "device")},
    )
    max_tokens: int = Field(512, ge=1, description="Longest verdict answer, in tokens.")
    cache: bool = Field(True, description="Reuse verdicts from the persistent, content-addressed cache.")
    cache_dir: Path | None = Field(
        None, description="Cache folder (default: $PRCLI_CACHE_DIR or ~/.cache/prcli)."
    )
    window: int = Field(0, ge=0, description="Items in flight (0: four times the concurrency).")
    field: list[str] = Field(
        default_factory=list,
        description="Category field of the summary (repeat; default: the items' own category fields).",
    )
    sample: int = Field(
        0,
        ge=0,
        description="Also write LABELS.sheet.html: a labelling sheet of N random labelled items for people "
        "to check (0: none).",
    )
    seed: int = Field(0, description="Seed of --sample's draw.")
    agreement: Path | None = Field(
        None,
        description="A labelling sheet's export (JSONL: id, perception_error): Cohen's kappa and the "
        "confusion table of those human verdicts against the labels.",
    )
    skip_invalid: bool = Field(False, description=SKIP_INVALID_HELP)
    overwrite: bool = Field(False, description=OVERWRITE_HELP)


class DiagnoseItem(Record):
    """One evaluated response; its facts inline (`annotations`) or joined from --annotations."""

    id: Id
    correct: StrictBool
    response: StrictStr | None = None
    annotations: Annotations | None = None


def error_type(correct: bool, perception_error: bool | None) -> ErrorType:
    """The paper's four outcomes; without a perception verdict the item's type is unknown."""
    if perception_error is None:
        return "unknown"
    if correct:
        return "lucky" if perception_error else "none"
    return "perception" if perception_error else "reasoning"


def label(
    item: DiagnoseItem,
    facts: list[str],
    verdicts: list[Verdict] | None,
    reason: str | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The output line of one item. `verdicts` is None when nothing could be judged (`reason` says why)."""
    perception_error: bool | None = None
    if verdicts is not None:
        if "contradicted" in verdicts:
            perception_error = True
        elif "consistent" in verdicts:
            perception_error = False
        else:
            reason = "the response states none of the facts"
    return {
        "id": item.id,
        "correct": item.correct,
        "perception_error": perception_error,
        "error_type": error_type(item.correct, perception_error),
        "facts": [{"fact": f, "verdict": v} for f, v in zip(facts, verdicts or [], strict=False)],
        "reason": reason if perception_error is None else None,
        **fields,
    }
