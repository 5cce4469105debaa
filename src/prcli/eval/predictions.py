"""Saved responses to score: our JSONL / JSON by id, or another tool's file (`formats`)."""

from __future__ import annotations

import bisect
import json
from array import array
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prcli.errors import StageError
from prcli.eval.base import Benchmark, Sample
from prcli.eval.config import EvalConfig
from prcli.eval.formats import ExternalPredictions, detect_format, read_predictions
from prcli.jsonl import (
    InputError,
    LineProblem,
    check_jsonl,
    id_hash,
    iter_raw_lines,
    read_json,
    validation_problems,
)
from prcli.records import Prediction


class PredictionIndex:
    """Saved responses by id without holding them in memory.

    For JSONL, only sorted arrays of 64-bit id hashes, byte offsets and line lengths are kept
    (24 bytes a line); a response is read from the file when it is needed.
    """

    def __init__(self, path: Path, skip_invalid: bool, rejected: Path):
        self.path = path
        self.json_map: dict[str, str] | None = None
        if path.suffix == ".json":  # {id: response} (e.g. MMMU's example outputs) or [{"id", "response"}]
            self.json_map = _json_predictions(path)
            return
        checked = check_jsonl(path, Prediction, skip_invalid=skip_invalid, rejected_path=rejected)
        bad = checked.rejected_lines
        hashes, offsets, lengths = array("q"), array("q"), array("q")
        pos = 0
        for lineno, raw in iter_raw_lines(path):
            length = len(raw or b"")
            if raw is not None and raw.strip() and lineno not in bad:
                hashes.append(id_hash(str(json.loads(raw)["id"])))
                offsets.append(pos)
                lengths.append(length)
            pos += length
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        self._hashes = array("q", (hashes[i] for i in order))
        self._offsets = array("q", (offsets[i] for i in order))
        self._lengths = array("q", (lengths[i] for i in order))

    def describe(self) -> dict[str, Any]:
        return {"format": "prcli", "ids": "id"}

    def get(self, item_id: str) -> str | None:
        if self.json_map is not None:
            return self.json_map.get(item_id)
        h = id_hash(item_id)
        i = bisect.bisect_left(self._hashes, h)
        with open(self.path, "rb") as fh:
            while i < len(self._hashes) and self._hashes[i] == h:
                fh.seek(self._offsets[i])
                row = json.loads(fh.read(self._lengths[i]))
                if str(row["id"]) == item_id:  # a hash collision is checked, not trusted
                    return row["response"]
                i += 1
        return None


def _json_predictions(path: Path) -> dict[str, str]:
    """A `.json` predictions file, checked as strictly as JSONL: every problem names its place."""

    def bad(message: str, where: str | None = None) -> InputError:
        return InputError([LineProblem(path, 0, message, where)])

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise bad(f"duplicate id {key!r}")
            seen[key] = value
        return seen

    obj = read_json(path, object_pairs_hook=unique)
    if isinstance(obj, dict):  # id -> response text, or id -> record with a `response` (MathVista's outputs)
        out = {}
        for key, value in obj.items():
            if isinstance(value, dict) and isinstance(value.get("response"), str):
                value = value["response"]
            if not isinstance(value, str):
                raise bad(
                    f"the value of an id must be the response text (or an object with a text `response`), "
                    f"got {type(value).__name__}",
                    f"[{json.dumps(str(key))}]",
                )
            out[str(key)] = value
        return out
    if not isinstance(obj, list):
        raise bad(f"expected an id -> response object or a list of objects, got {type(obj).__name__}")
    out: dict[str, str] = {}
    for i, row in enumerate(obj):
        if not isinstance(row, dict):
            raise bad(f"expected an object with id and response, got {type(row).__name__}", f"[{i}]")
        try:
            pred = Prediction.model_validate(row)
        except ValidationError as exc:
            raise InputError(
                [
                    LineProblem(path, 0, p.message, f"[{i}].{p.field}")
                    for p in validation_problems(path, 0, exc)
                ]
            ) from None
        if pred.id in out:
            raise bad(f"duplicate id {pred.id!r}", f"[{i}].id")
        out[pred.id] = pred.response
    return out


Predictions = PredictionIndex | ExternalPredictions


def open_predictions(cfg: EvalConfig, path: Path, bench: Benchmark, rejected: Path) -> Predictions:
    """Our JSONL/JSON by id, or another tool's file matched to the whole benchmark's items."""
    fmt = detect_format(path, cfg.predictions_format)
    if fmt == "prcli":
        return PredictionIndex(path, cfg.skip_invalid, rejected)
    if cfg.skip_invalid:
        raise StageError(
            f"--skip-invalid applies to prcli predictions, not to {fmt} files: fix or remove the rows"
        )
    return read_predictions(path, fmt, bench, bench.load(cfg.data, decode_images=False))


def find_response(index: Predictions, sample: Sample, by_native_id: bool) -> str | None:
    """The saved response of `sample`: by its id, else (`by_native_id`) by its native id, as a
    single-setting MMMU-Pro file keys them."""
    response = index.get(sample.id)
    native = sample.fields.get("native_id")
    if response is None and native is not None and by_native_id:
        response = index.get(str(native))
    return response
