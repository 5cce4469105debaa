"""Converters between our annotated records and the released Perception-R1 training format.

The authors' 1,442-sample set (`geo3k_with_visual_key_info.parquet`) has the columns `problem`
(with an `<image>` placeholder), `answer`, `images` (paths, `{"bytes", "path"}` structs or raw
bytes) and `visual_key_info` (`<info1>..</info1>\\n<info2>..</info2>`); EasyR1/verl read the same
layout. `from_perception_r1` turns such a parquet or JSONL file into our JSONL (images written
next to it), `to_perception_r1` writes ours back (parquet with the image bytes embedded, or JSONL).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prcli.annotate.extract import parse_annotations
from prcli.errors import StageError
from prcli.jsonl import InputError, LineProblem, check_jsonl, validation_problems, write_jsonl_atomic
from prcli.judge.prompt import format_annotations
from prcli.records import AnnotatedProblem, relative_if_inside

R1_COLUMNS = ("problem", "answer", "images", "visual_key_info")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                n += 1
                yield n, row
        return
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if raw.strip():
                try:
                    yield n, json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise InputError([LineProblem(path, n, f"invalid JSON: {exc}")]) from None


def _image_bytes(entry: Any, base: Path) -> tuple[bytes | None, str | None]:
    """(bytes, source path) of one `images` entry in any of the released layouts."""
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry), None
    if isinstance(entry, dict):
        if entry.get("bytes"):
            return bytes(entry["bytes"]), entry.get("path")
        entry = entry.get("path")
    if isinstance(entry, str):
        p = Path(entry)
        return None, str(p if p.is_absolute() else base / p)
    raise ValueError(f"unsupported image entry of type {type(entry).__name__}")


def _extension(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}.get(
            im.format or "", ".png"
        )


def from_perception_r1(src: str | Path, out: str | Path) -> int:
    """Released format -> our annotated JSONL; embedded images are written to `<out stem>_images/`."""
    src, out = Path(src), Path(out)
    if not src.exists():
        raise InputError([LineProblem(src, 0, "file not found")])
    image_dir = out.with_name(out.stem + "_images")
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    records: list[AnnotatedProblem] = []
    problems: list[LineProblem] = []
    for n, row in _rows(src):
        missing = [c for c in ("problem", "answer") if row.get(c) is None]
        if missing:
            problems.append(LineProblem(src, n, "required column is missing", missing[0]))
            continue
        rid = str(row.get("id") if row.get("id") is not None else f"r1-{n}")
        images = []
        try:
            for k, entry in enumerate(row.get("images") or []):
                data, path = _image_bytes(entry, src.parent)
                if data is not None:
                    image_dir.mkdir(parents=True, exist_ok=True)
                    target = image_dir / f"{rid}_{k}{_extension(data)}"
                    target.write_bytes(data)
                    path = str(target.resolve())
                images.append(path)
        except (ValueError, OSError) as exc:
            problems.append(LineProblem(src, n, str(exc), "images"))
            continue
        extras = {k: v for k, v in row.items() if k not in (*R1_COLUMNS, "id") and _jsonable(v)}
        record = {
            **extras,
            "id": rid,
            "question": str(row["problem"]),
            "images": images,
            "answer": str(row["answer"]),
            "annotations": parse_annotations(row.get("visual_key_info") or ""),
            "provenance": {
                "extractor": "released Perception-R1 data",
                "prompt_version": "unknown",
                "created": created,
                "source": str(src),
            },
        }
        try:
            records.append(AnnotatedProblem.model_validate(record, context={"base_dir": src.parent}))
        except ValidationError as exc:
            problems.extend(validation_problems(src, n, exc))
    if problems:
        raise InputError(problems)
    if not records:
        raise StageError(f"{src}: no rows")
    return write_jsonl_atomic(out, records)


def _jsonable(value: Any) -> bool:
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
            "visual_key_info": format_annotations(r.annotations) if r.annotations else None,
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
