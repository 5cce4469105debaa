"""Saved responses in the layouts of lmms-eval and VLMEvalKit, read for `pr eval --predictions`, and
lmms-eval's per-sample log layout written by `pr eval --log-samples lmms-eval`.

The layouts come from the writers' code:

- lmms-eval (`lmms_eval/evaluator.py` builds each logged sample, `loggers/evaluation_tracker.py`
  writes `<output_path>/<model>/<date>_samples_<task>.jsonl` and `<date>_results.json`): one JSON
  object a line with `doc_id` (the item's position in the task's split), `target`
  (`str(doc_to_target(doc))`), `filtered_resps`, the task's metric keys and hashes. Versions up to
  0.3 keep `doc` (the row without its images) and `resps` (`[[text]]`); 0.4 onwards drop `doc` and
  drop `resps` whenever it equals `filtered_resps`, and 0.7 unwraps the one-request lists
  (`filtered_resps: "text"`).
- VLMEvalKit (`vlmeval/inference.py` `infer_data_job`, `vlmeval/smp/file.py` `dump`): the dataset's
  TSV without its `image` column plus `prediction` (and `thinking` under SPLIT_THINK), as
  `<work_dir>/<model>/<model>_<dataset>.xlsx` (default), `.tsv` / `.csv` (quoted) or `.json` (a list
  of records), keyed by the dataset's `index`.

Neither tool records our benchmark ids for sure, so every prediction is matched to a benchmark item
(by the id the row carries, else by position) and then checked against that item's answer (lmms-eval's
`target`, VLMEvalKit's `answer`): a file that numbers the items otherwise stops with an error naming
the row, instead of being scored against the wrong items.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import statistics
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prcli import __version__
from prcli.eval.base import LETTERS, Benchmark, Sample
from prcli.jsonl import (
    InputError,
    LineProblem,
    iter_raw_lines,
    json_object,
    read_json,
    require_jsonl_file,
    write_json_atomic,
    write_jsonl_atomic,
)

PredictionsFormat = Literal["auto", "prcli", "lmms-eval", "vlmevalkit"]
SamplesLog = Literal["none", "lmms-eval"]

VLMEVALKIT_SUFFIXES = (".xlsx", ".tsv", ".csv")
RESPONSE_FIELDS = "resps (raw; filtered_resps where lmms-eval left resps out as equal to it)"


@dataclass(frozen=True)
class Row:
    """One prediction as the file gives it: where it is, which item it names and what it says."""

    where: LineProblem  # the place, with an empty message
    key: str  # the item's id, or its 0-based position when `by_position`
    by_position: bool
    response: str
    answer: str | None  # the file's answer for the item (lmms-eval `target`, VLMEvalKit `answer`)
    answer_field: str  # its name in the file
    id_is_native: bool  # the key is the benchmark's own id (an lmms-eval doc's), not a numbering

    def problem(self, message: str, column: str | None = None) -> LineProblem:
        where = self.where
        field = (f"{where.field}.{column}" if where.field else column) if column else where.field
        return LineProblem(where.path, where.line, message, field)


@dataclass
class ExternalPredictions:
    """Responses from another tool's file, already matched to benchmark item ids."""

    responses: dict[str, str]
    format: str
    ids: str  # how rows were matched to items, for the summary

    def get(self, item_id: str) -> str | None:
        return self.responses.get(item_id)

    def describe(self) -> dict[str, Any]:
        info = {"format": self.format, "ids": self.ids}
        if self.format == "lmms-eval":
            info["response_field"] = RESPONSE_FIELDS
        return info


# ----------------------------------------------------------------------------- which layout


def detect_format(path: Path, given: PredictionsFormat) -> str:
    """The layout of `path`: as given, else told by its suffix and first record; a file that fits
    none, or more than one, is an error asking for --predictions-format."""
    if given != "auto":
        return given
    if path.suffix == ".jsonl":
        require_jsonl_file(path)  # missing, a folder, a parquet under the wrong name: said as such
    if path.is_file() and path.stat().st_size == 0:
        raise _bad(path, "empty file")
    if path.suffix in VLMEVALKIT_SUFFIXES:
        return "vlmevalkit"
    if path.suffix not in (".jsonl", ".json"):
        raise _bad(
            path,
            f"cannot tell the layout of a {path.suffix or 'suffix-less'} file; give --predictions-format",
        )
    first = _first_record(path)
    fits = [
        name
        for name, keys in (
            ("prcli", ("id", "response")),
            ("lmms-eval", ("doc_id",)),
            ("vlmevalkit", ("index", "prediction")),
        )
        if isinstance(first, dict) and all(k in first for k in keys)
    ]
    if first is _ID_MAP:
        fits = ["prcli"]
    if len(fits) != 1:
        what = f"it fits {' and '.join(fits)}" if fits else "its first record is in none of them"
        raise _bad(
            path,
            f"cannot tell the layout ({what}: prcli {{id, response}}, lmms-eval {{doc_id, resps|filtered_resps}}, "
            "VLMEvalKit {index, prediction}); give --predictions-format prcli|lmms-eval|vlmevalkit",
        )
    return fits[0]


_ID_MAP = object()  # a JSON object keyed by id: only prcli reads those


def _first_record(path: Path) -> Any:
    """The first JSONL record, or the first element of a JSON list (`_ID_MAP` for a JSON object)."""
    if path.suffix == ".json":
        obj = read_json(path)
        if isinstance(obj, dict):
            return _ID_MAP
        return obj[0] if isinstance(obj, list) and obj else None
    for lineno, raw in iter_raw_lines(path):
        if raw is not None and raw.strip():
            return json_object(path, lineno, raw)
    return None


# ----------------------------------------------------------------------------- reading


def read_predictions(
    path: Path, fmt: str, bench: Benchmark, samples: Iterable[Sample]
) -> ExternalPredictions:
    """Read an lmms-eval or VLMEvalKit file and match each row to one of `samples` (the whole
    benchmark, in its order). Every problem is collected and raised at once, before any output."""
    rows = list(_lmms_eval_rows(path, bench.id_field) if fmt == "lmms-eval" else _vlmevalkit_rows(path))
    responses = _match(rows, bench, samples)
    by_position = sum(r.by_position for r in rows)
    if fmt == "vlmevalkit":
        ids = "index as the benchmark's id, each row's answer checked against the item's"
    elif by_position:
        ids = (
            f"doc_id as the position in the benchmark's order ({by_position} of {len(rows)} lines carry "
            "no doc id), each line's target checked against the item's answer"
        )
    else:
        ids = f"doc.{bench.id_field}, each line's target checked against the item's answer"
    return ExternalPredictions(responses, fmt, ids)


def _lmms_eval_rows(path: Path, id_field: str) -> Iterator[Row]:
    for lineno, raw in iter_raw_lines(path):
        if raw is not None and not raw.strip():
            continue
        row = json_object(path, lineno, raw)
        where = LineProblem(path, lineno, "")
        if not isinstance(row, dict) or "doc_id" not in row:
            raise InputError(
                [LineProblem(path, lineno, "not an lmms-eval sample: expected an object with doc_id")]
            )
        doc_id = row["doc_id"]
        if not isinstance(doc_id, int) or isinstance(doc_id, bool) or doc_id < 0:
            raise InputError(
                [LineProblem(path, lineno, f"expected a position (integer >= 0), got {doc_id!r}", "doc_id")]
            )
        field = "resps" if "resps" in row else "filtered_resps"
        if field not in row:
            raise InputError(
                [LineProblem(path, lineno, "no response: neither resps nor filtered_resps", "resps")]
            )
        response = _one_text(row[field], LineProblem(path, lineno, "", field))
        doc = row.get("doc")
        native = isinstance(doc, dict) and doc.get(id_field) is not None
        key = str(doc[id_field]) if native else str(doc_id)
        target = row.get("target")
        yield Row(where, key, not native, response, None if target is None else str(target), "target", native)


def _one_text(value: Any, where: LineProblem) -> str:
    """The one response a logged sample holds, through the lists lmms-eval wraps it in: `[[text]]`,
    `[text]` or `text`. Several (repeats, several requests) cannot be one item's response."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    what = f"{len(value)} responses" if isinstance(value, list) else f"a {type(value).__name__}"
    raise InputError(
        [
            LineProblem(
                where.path,
                where.line,
                f"expected one text response, got {what}: pr eval scores one response per item",
                where.field,
            )
        ]
    )


def _vlmevalkit_rows(path: Path) -> Iterator[Row]:
    records, place = _vlmevalkit_table(path)
    for i, rec in enumerate(records):
        where = place(i)
        if not isinstance(rec, dict):
            raise InputError(
                [LineProblem(path, where.line, "expected a record with index and prediction", where.field)]
            )
        if rec.get("index") is None or str(rec["index"]).strip() == "":
            raise InputError([LineProblem(path, where.line, "no index", _field(where, "index"))])
        if "prediction" not in rec:  # a table's empty cell is a key with None: an empty response
            raise InputError(
                [LineProblem(path, where.line, "no prediction in this record", _field(where, "prediction"))]
            )
        answer = rec.get("answer")
        yield Row(
            where,
            _index_text(rec["index"]),
            False,
            ""
            if rec.get("prediction") is None
            else str(rec["prediction"]),  # an empty cell: an empty response
            None if answer is None or str(answer) == "" else str(answer),
            "answer",
            False,
        )


def _vlmevalkit_table(path: Path) -> tuple[list[dict[str, Any]], Any]:
    """The records and a function from record number to its place: the sheet row (xlsx, header in
    row 1), the data row (tsv/csv, whose quoted cells may span lines), the line (jsonl) or the list
    element (json)."""
    if path.suffix not in (*VLMEVALKIT_SUFFIXES, ".json", ".jsonl"):
        raise _bad(
            path,
            "VLMEvalKit prediction files are .xlsx, .tsv, .csv or .json (PRED_FORMAT); a .pkl is not read "
            "(unpickling runs code): save it as one of those with vlmeval.smp.load and dump",
        )
    if path.suffix == ".jsonl":
        lines = [
            (n, json_object(path, n, raw)) for n, raw in iter_raw_lines(path) if raw is None or raw.strip()
        ]
        return [rec for _, rec in lines], lambda i: LineProblem(path, lines[i][0], "")
    if path.suffix == ".json":
        obj = read_json(path)
        if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
            raise _bad(path, "expected VLMEvalKit's JSON layout: a list of records with index and prediction")
        return obj, lambda i: LineProblem(path, 0, "", f"[{i}]")
    import pandas as pd

    try:
        if path.suffix == ".xlsx":
            frame = pd.read_excel(path, dtype=object)
        else:
            frame = pd.read_csv(
                path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False
            )
    except ImportError as exc:
        raise _bad(path, f"reading .xlsx needs openpyxl ({exc}); install prcli[vlmevalkit]") from None
    except (ValueError, OSError, pd.errors.ParserError, zipfile.BadZipFile) as exc:
        raise _bad(path, f"not a readable {path.suffix[1:]} table: {exc}") from None
    missing = [c for c in ("index", "prediction") if c not in frame.columns]
    if missing:
        raise _bad(
            path,
            f"no {' or '.join(missing)} column (columns: {', '.join(map(str, frame.columns))}): not a VLMEvalKit prediction file",
        )
    records = [{k: _cell(v) for k, v in rec.items()} for rec in frame.to_dict("records")]
    if path.suffix == ".xlsx":
        return records, lambda i: LineProblem(path, i + 2, "")
    return records, lambda i: LineProblem(path, 0, "", f"row {i + 1}")


def _cell(value: Any) -> Any:
    """A spreadsheet cell as its text: empty cells as None, whole floats as integers (the sheet
    stores every number as a float)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _index_text(value: Any) -> str:
    text = str(value).strip()
    return text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text


# ----------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Item:
    id: str
    native_id: str | None
    answers: tuple[str, ...]  # the answer as the item holds it, and its option letter


def _items(samples: Iterable[Sample]) -> list[_Item]:
    out = []
    for s in samples:
        answer = str(s.answer).strip()
        letters = tuple(
            LETTERS[i] for i, c in enumerate(s.choices or []) if str(c).strip() == answer and i < len(LETTERS)
        )
        native = s.fields.get("native_id")
        out.append(_Item(s.id, None if native is None else str(native), (answer, *letters)))
    return out


def _match(rows: list[Row], bench: Benchmark, samples: Iterable[Sample]) -> dict[str, str]:
    """{item id: response}. A row naming no item, or one that several items share, or an item named
    twice, or a row whose answer is not its item's, is an error; items no row names stay missing."""
    items = _items(samples)
    by_id = {it.id: n for n, it in enumerate(items)}
    by_native: dict[str, list[int]] = {}
    for n, it in enumerate(items):
        if it.native_id is not None:
            by_native.setdefault(it.native_id, []).append(n)
    problems: list[LineProblem] = []
    taken: dict[int, Row] = {}
    for row in rows:
        if row.by_position:
            n = int(row.key)
            if n >= len(items):
                problems.append(
                    row.problem(f"doc_id {n} is past the last of {bench.name}'s {len(items)} items", "doc_id")
                )
                continue
        elif row.key in by_id:
            n = by_id[row.key]
        elif len(by_native.get(row.key, ())) == 1:
            n = by_native[row.key][0]
        else:
            shared = by_native.get(row.key, ())
            problems.append(
                row.problem(
                    f"id {row.key!r} names {len(shared)} {bench.name} items ({', '.join(items[i].id for i in shared)}); "
                    "give one file per setting"
                    if shared
                    else f"id {row.key!r} matches no {bench.name} item (the first are "
                    + ", ".join(repr(it.id) for it in items[:3])
                    + "): is this the file for this benchmark and --data?"
                )
            )
            continue
        item = items[n]
        if row.answer is None and not row.id_is_native:  # a numbering alone, unchecked, could name any item
            problems.append(
                row.problem(
                    f"no {row.answer_field} to check that {row.key!r} names {bench.name} item {item.id!r}",
                    row.answer_field,
                )
            )
            continue
        if row.answer is not None and not _same_answer(row.answer, item.answers):
            problems.append(
                row.problem(
                    f"{row.answer!r} is not the answer of {bench.name} item {item.id!r} ({item.answers[0]!r}): "
                    + (
                        "the file holds another version of the benchmark"
                        if row.id_is_native
                        else "the file numbers the items otherwise than this copy of the benchmark"
                    ),
                    row.answer_field,
                )
            )
            continue
        if n in taken:
            first = taken[n].where
            problems.append(
                row.problem(
                    f"a second prediction for {bench.name} item {item.id!r} (the first: {first.path}:{first.line or first.field})"
                )
            )
            continue
        taken[n] = row
    if problems:
        raise InputError(problems)
    return {items[n].id: row.response for n, row in taken.items()}


def _same_answer(given: str, answers: tuple[str, ...]) -> bool:
    given = given.strip()
    if given in answers:
        return True
    try:
        return any(math.isclose(float(given), float(a), rel_tol=1e-9) for a in answers)
    except ValueError:
        return False


# ----------------------------------------------------------------------------- writing


def write_lmms_eval(
    out: Path,
    bench: Benchmark,
    samples: Iterable[Sample],
    items_path: Path,
    summary: dict[str, Any],
    model: str | None,
) -> Path:
    """The run's items as lmms-eval logs them (the ≤0.3 layout, which keeps `doc`, so any version's
    reader and ours find the ids): OUT/lmms-eval/<model>/<date>_samples_<bench>.jsonl and
    <date>_results.json. Items without a prediction are not logged; the results' accuracy still
    counts them wrong. An earlier run's files in that folder are replaced."""
    positions: dict[str, tuple[int, Sample]] = {s.id: (n, s) for n, s in enumerate(samples)}
    folder = out / "lmms-eval" / _model_folder(model)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d_%H%M%S")
    id_field = bench.id_field
    lines, scores = [], []
    with open(items_path, encoding="utf-8") as fh:
        for raw in fh:
            item = json.loads(raw)
            if item.get("missing"):
                continue
            n, sample = positions[item["id"]]
            doc = {**sample.fields, id_field: sample.id}  # our id, which the reader tries first
            target = str(sample.answer)
            score = float(item["correct"])
            scores.append(score)
            lines.append(
                {
                    "doc_id": n,
                    "doc": doc,
                    "target": target,
                    "resps": [[item["response"]]],
                    "filtered_resps": [item["response"]],
                    "doc_hash": _sha256(json.dumps(doc, indent=2, ensure_ascii=False, default=str)),
                    "target_hash": _sha256(target),
                    "accuracy": score,
                    "prcli": {k: item.get(k) for k in ("id", "extracted", "prediction", "method")},
                }
            )
    task = bench.name
    total = summary["items_in_benchmark"]
    results = {
        "results": {
            task: {
                "alias": task,
                "accuracy,none": sum(scores) / total if total else 0.0,
                "accuracy_stderr,none": statistics.stdev(scores + [0.0] * (total - len(scores)))
                / math.sqrt(total)
                if total > 1
                else "N/A",
            }
        },
        "group_subtasks": {task: []},
        "configs": {
            task: {
                "task": task,
                "dataset_path": summary.get("data"),
                "output_type": "generate_until",
                "metric_list": [{"metric": "accuracy", "aggregation": "mean", "higher_is_better": True}],
            }
        },
        "versions": {task: f"prcli {__version__}"},
        "n-shot": {task: 0},
        "higher_is_better": {task: {"accuracy": True}},
        "n-samples": {task: {"original": total, "effective": total}},
        "task_hashes": {
            task: _sha256("".join(f"sample_{i}" + line["doc_hash"] for i, line in enumerate(lines)))
        },
        "model_name": model or summary.get("predictions"),
        "date": date,
        "prcli": {
            "summary_accuracy": summary["accuracy"],
            "protocol": summary.get("protocol"),
            "missing_predictions": summary.get("missing_predictions"),
            "note": "accuracy,none is correct / items in the benchmark (0-1); items without a prediction are not logged and count as wrong",
        },
    }
    for old in [*folder.glob(f"*_samples_{task}.jsonl"), *folder.glob("*_results.json")]:
        old.unlink()
    write_jsonl_atomic(folder / f"{date}_samples_{task}.jsonl", lines)
    write_json_atomic(folder / f"{date}_results.json", results)
    return folder


def _model_folder(model: str | None) -> str:
    """lmms-eval's `sanitize_model_name`: the last two parts of a path or hub id joined by '__'."""
    parts = (model or "predictions").rstrip("/").split("/")
    return re.sub(r"[\"<>:/\|\\?\*\[\]]+", "__", "/".join(parts[-2:]))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- helpers


def _bad(path: Path, message: str) -> InputError:
    return InputError([LineProblem(path, 0, message)])


def _field(where: LineProblem, column: str) -> str:
    return f"{where.field}.{column}" if where.field else column
