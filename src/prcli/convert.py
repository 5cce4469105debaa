"""Converters between our annotated records and the released Perception-R1 training format.

The authors' 1,442-sample set (`geo3k_with_visual_key_info.parquet`) has the columns `problem`
(with an `<image>` placeholder), `answer`, `images` (paths, `{"bytes", "path"}` structs or raw
bytes) and `visual_key_info` (`<info1>..</info1>\\n<info2>..</info2>`); EasyR1/verl read the same
layout. `from_perception_r1` turns such a parquet or JSONL file into our JSONL (images written
next to it), `to_perception_r1` writes ours back (parquet with the image bytes embedded, or JSONL).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prcli.annotate.extract import parse_annotations
from prcli.jsonl import (
    InputError,
    LineProblem,
    check_jsonl,
    iter_raw_lines,
    parse_line,
    renamed_field,
    require_jsonl_file,
    validation_problems,
    write_jsonl_atomic,
)
from prcli.judge.prompt import format_annotations
from prcli.paths import safe_filename
from prcli.records import AnnotatedProblem, relative_if_inside

R1_COLUMNS = ("problem", "answer", "images", "visual_key_info")
REQUIRED_COLUMNS = ("problem", "answer", "visual_key_info")
RELEASED_FIELDS = {"question": "problem", "annotations": "visual_key_info"}  # our field -> released column
_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}

_Row = dict[str, Any] | LineProblem


def _is_parquet(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return path.suffix.lower() == ".parquet" or fh.read(4) == b"PAR1"


def _parquet_rows(path: Path) -> Iterator[tuple[int, _Row]]:
    """Rows numbered from 1 (the row number stands in for the line); unreadable files are one error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        if fh.read(4) != b"PAR1":
            raise InputError([LineProblem(path, 0, "not a parquet file (it does not start with PAR1)")])
    try:
        table = pq.ParquetFile(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.schema_arrow.names]
        if missing:
            raise InputError([LineProblem(path, 0, "required column is missing", c) for c in missing])
        n = 0
        for batch in table.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except (pa.ArrowException, OSError) as exc:
        raise InputError([LineProblem(path, 0, f"cannot read the parquet file: {exc}")]) from None


def _rows(path: Path) -> Iterator[tuple[int, _Row]]:
    if _is_parquet(path):
        yield from _parquet_rows(path)
        return
    require_jsonl_file(path)
    for n, raw in iter_raw_lines(path):
        parsed = parse_line(path, n, raw)
        if parsed is not None:
            yield n, parsed


class BadImage(ValueError):
    """What is wrong with one `images` entry; `part` names the part of the entry (e.g. `.bytes`)."""

    def __init__(self, message: str, part: str = ""):
        super().__init__(message)
        self.part = part


def image_bytes(entry: Any) -> tuple[bytes | None, str]:
    """(bytes, "") or (None, path) of one `images` entry in any of the released layouts."""
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry), ""
    if isinstance(entry, dict):
        data = entry.get("bytes")
        if data:
            if not isinstance(data, (bytes, bytearray)):
                raise BadImage(f"expected raw image bytes, got {type(data).__name__}", ".bytes")
            return bytes(data), ""
        entry = entry.get("path")
    if isinstance(entry, str):
        return None, entry
    raise BadImage(f"expected image bytes, a path or a {{bytes, path}} struct, got {type(entry).__name__}")


def image_suffix(data: bytes) -> str:
    """The file suffix of embedded image bytes; BadImage if they do not decode as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
            return _FORMATS.get(im.format or "", ".png")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"embedded bytes are not a readable image ({exc})", ".bytes") from None


def _stage_images(
    entries: Any, rid: str, staging: Path, where: tuple[Path, int]
) -> tuple[list[str], list[LineProblem]]:
    """A row's image paths, embedded bytes written into `staging` under names safe for any id.

    Path entries are left to the record's own image check.
    """
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        return [], [LineProblem(*where, f"expected a list, got {type(entries).__name__}", "images")]
    paths: list[str] = []
    problems: list[LineProblem] = []
    for k, entry in enumerate(entries):
        try:
            data, path = image_bytes(entry)
            if data is not None:
                target = staging / safe_filename(rid, f"_{k}{image_suffix(data)}")
                target.write_bytes(data)
                path = str(target.resolve())
        except BadImage as exc:
            problems.append(LineProblem(*where, str(exc), f"images[{k}]{exc.part}"))
            continue
        paths.append(path)
    return paths, problems


def _record(
    n: int, row: dict[str, Any], src: Path, staging: Path, created: str
) -> AnnotatedProblem | list[LineProblem]:
    """One released row as our validated record, or its problems (named after the released columns)."""
    problems = [
        LineProblem(src, n, "required column is missing", c) for c in REQUIRED_COLUMNS if c not in row
    ]
    rid = row.get("id", f"r1-{n}")  # a null id is kept, to be rejected: ids are strings
    images, image_problems = _stage_images(row.get("images"), str(rid), staging, (src, n))
    problems += image_problems
    info = row.get("visual_key_info")
    if info is not None and not isinstance(info, str):
        message = f"expected <infoK> tags in a string, got {type(info).__name__}"
        problems.append(LineProblem(src, n, message, "visual_key_info"))
    extras = {k: v for k, v in row.items() if k not in (*R1_COLUMNS, "id") and jsonable(v)}
    record = {
        **extras,
        "id": rid,
        "images": images,
        "annotations": parse_annotations(info) if isinstance(info, str) else [],
        "provenance": {
            "extractor": "released Perception-R1 data",
            "prompt_version": "unknown",
            "created": created,
            "source": str(src),
        },
    }
    for column in ("problem", "answer"):  # a missing one is reported above, not filled in
        if column in row:
            record["question" if column == "problem" else column] = row[column]
    try:
        validated = AnnotatedProblem.model_validate(record, context={"base_dir": src.parent})
    except ValidationError as exc:
        reported = {p.field for p in problems}
        for p in validation_problems(src, n, exc):
            field = renamed_field(p.field, RELEASED_FIELDS)
            if field not in reported:  # e.g. a missing column: not also "needs at least one annotation"
                problems.append(replace(p, field=field))
    return problems or validated


@contextlib.contextmanager
def _staged_folder(final: Path) -> Iterator[Path]:
    """A temporary folder beside `final` for `_publish` to move into place; if the block fails it is
    removed, with any parent folders made for it: a failed conversion leaves nothing behind."""
    made = [p for p in (final.parent, *final.parent.parents) if not p.exists()]  # deepest first
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)  # empty if no row embedded images; else already moved


def _publish(staging: Path, final: Path) -> None:
    """Move `staging` over `final`, replacing the images of an earlier conversion as a whole."""
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    try:
        if final.exists() or final.is_symlink():
            os.replace(final, trash / final.name)
        os.replace(staging, final)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def from_perception_r1(src: str | Path, out: str | Path) -> int:
    """Released format -> our annotated JSONL; embedded images are written to `<out stem>_images/`.

    Every row is validated like any other stage's input (strict types, unique string ids, at least one
    annotation); images are written to a temporary folder that replaces `<out stem>_images/` only once
    all rows are good, so bad input leaves no output at all.
    """
    src, out = Path(src), Path(out)
    image_dir = out.with_name(out.stem + "_images")
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    records: list[AnnotatedProblem] = []
    problems: list[LineProblem] = []
    first_line: dict[str, int] = {}
    with _staged_folder(image_dir) as staging:
        for n, row in _rows(src):
            result = row if isinstance(row, LineProblem) else _record(n, row, src, staging, created)
            if isinstance(result, AnnotatedProblem):
                if result.id in first_line:
                    message = f"duplicate id {result.id!r} (first at line {first_line[result.id]})"
                    problems.append(LineProblem(src, n, message, "id"))
                    continue
                first_line[result.id] = n
                records.append(result)
            else:
                problems.extend([result] if isinstance(result, LineProblem) else result)
        if problems:
            raise InputError(problems)
        if not records:
            raise InputError([LineProblem(src, 0, "empty file: no records")])
        staged = {str(p.resolve()): str(image_dir.resolve() / p.name) for p in staging.iterdir()}
        if staged:
            _publish(staging, image_dir)
            records = [r.model_copy(update={"images": [staged.get(p, p) for p in r.images]}) for r in records]
        return write_jsonl_atomic(out, records)


def jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def to_perception_r1(src: str | Path, out: str | Path) -> int:
    """Our annotated JSONL -> the released layout: parquet (images embedded) or JSONL (image paths)."""
    src, out = Path(src), Path(out)
    records = list(check_jsonl(src, AnnotatedProblem))
    rows = [
        {
            "id": r.id,
            "problem": r.question,
            "answer": r.answer,
            "images": list(r.images),
            "visual_key_info": format_annotations(r.annotations),
        }
        for r in records
    ]
    if out.suffix == ".parquet":
        from datasets import Dataset, Features, Image, Sequence, Value

        for row in rows:
            row["images"] = [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in row["images"]]
        features = Features(
            {
                "id": Value("string"),
                "problem": Value("string"),
                "answer": Value("string"),
                "images": Sequence(Image()),
                "visual_key_info": Value("string"),
            }
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        Dataset.from_list(rows, features=features).to_parquet(str(tmp))
        tmp.replace(out)
        return len(rows)
    base = out.resolve().parent
    for row in rows:
        row["images"] = [relative_if_inside(p, base) for p in row["images"]]
    return write_jsonl_atomic(out, rows)
