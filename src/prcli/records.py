"""The JSONL records the stages exchange (see DESIGN.md, "Record contracts").

Types are strict: a number where a string belongs is an error that names the field, not a silent
coercion. Unknown fields are kept verbatim, so users' metadata survives every stage.
Image paths are resolved against the folder of the JSONL file that holds them (validation context
`base_dir`) and written back relative to the folder of the file being written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_serializer,
    field_validator,
)


def _resolve_image(value: str, info: ValidationInfo) -> str:
    """Resolve against the JSONL folder and check that the file exists and decodes."""
    ctx = info.context or {}
    base = ctx.get("base_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not ctx.get("check_images", True):
        return str(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    if ctx.get("verify_images", True):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"image file cannot be decoded: {path} ({exc})") from None
    return str(path)


ImagePath = Annotated[str, AfterValidator(_resolve_image)]


def relative_if_inside(path: str, base: str | Path) -> str:
    """`path` relative to `base` if it lies inside it, else unchanged: moving a run folder never
    breaks its own images, and a path never climbs out into somewhere else."""
    rel = os.path.relpath(path, base)
    return path if rel.startswith(os.pardir) else rel


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Id = Annotated[StrictStr, AfterValidator(_nonempty)]


def _no_blank_annotations(value: list[str]) -> list[str]:
    for i, a in enumerate(value):
        if not a.strip():
            raise ValueError(f"annotation {i} is empty")
    return value


# One rule wherever annotations appear (annotated problems, responses): a blank one is an error.
Annotations = Annotated[list[StrictStr], AfterValidator(_no_blank_annotations)]


class Record(BaseModel):
    """Base of every record: unknown fields are kept, known ones are strictly typed."""

    model_config = ConfigDict(extra="allow", strict=True, validate_assignment=False)


class Problem(Record):
    """Input of `pr annotate` and `pr train`."""

    id: Id
    question: StrictStr
    images: list[ImagePath] = Field(default_factory=list)
    answer: StrictStr
    cot: StrictStr | None = None
    choices: list[StrictStr] | None = None

    @field_serializer("images")
    def _relative_images(self, images: list[str], info: FieldSerializationInfo) -> list[str]:
        base = (info.context or {}).get("base_dir")
        if base is None:
            return images
        return [relative_if_inside(p, base) for p in images]


class Provenance(BaseModel):
    """Where a record came from: enough to redo or audit it."""

    model_config = ConfigDict(extra="allow")

    teacher: str | None = None
    extractor: str
    prompt_version: str
    created: str


class AnnotatedProblem(Problem):
    """Output of `pr annotate`, input of `pr train`: a Problem with its visual annotations."""

    annotations: Annotations
    provenance: Provenance | None = None

    @field_validator("annotations")
    @classmethod
    def _at_least_one(cls, value: list[str]) -> list[str]:
        """`pr annotate` drops a problem it finds no visual fact in; the perception reward needs one."""
        if not value:
            raise ValueError("an annotated problem needs at least one annotation")
        return value


class Response(Record):
    """Input of `pr judge`: a model response, with its annotations inline or joined by id."""

    id: Id
    response: StrictStr
    annotations: Annotations | None = None


class Judgement(Record):
    """Output of `pr judge`: one verdict per annotation (0 or 1; a judge that answers a fraction keeps
    it, clamped to [0, 1], as the official parser does); `score` is None when judging failed."""

    id: Id
    verdicts: list[int | float]
    score: float | None
    raw: str | None = None
    error: str | None = None
    prompt_sha256: str | None = None  # SHA-256 of the judge's system text (None: the lexical judge)


class Prediction(Record):
    """A saved model output to score with `pr eval --predictions`."""

    id: Annotated[StrictStr, AfterValidator(_nonempty)] | int
    response: StrictStr

    @field_validator("id", mode="after")
    @classmethod
    def _id_as_str(cls, value: str | int) -> str:
        return str(value)


class EvalItem(Record):
    """One scored benchmark item (`items.jsonl`); what `pr mcnemar` compares."""

    id: Id
    correct: StrictBool
    response: StrictStr
    extracted: str | None
    prediction: Any = None
