"""What every benchmark module provides, and the shared machinery (loading, prompts, aggregation).

A benchmark is one class in one module: where its data lives (`hub`), how a row becomes a
`Sample` (`from_row`), its prompts (`official_prompt`, `question_text` for the r1/cot styles), how
a response is scored (`score`, a pure function of JSON-able inputs so it can run in a sandboxed
worker), and its aggregate (`aggregate`: overall, breakdowns, special metrics). The class registers
itself where it is defined (`@Benchmark.register`) and `prcli.eval` imports every module of the
package, so adding a benchmark means adding one module.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from prcli.errors import StageError
from prcli.jsonl import InputError, LineProblem
from prcli.prompts import COT_BOXED, R1_FORMAT

PROMPT_STYLES = ("official", "r1", "cot")
BENCHMARKS: dict[str, type[Benchmark]] = {}  # filled by @Benchmark.register, by name
B = TypeVar("B", bound="Benchmark")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Sample:
    """One benchmark item, ready to prompt and score."""

    id: str
    question: str
    images: list[Any]  # PIL images, {"bytes": ...} dicts or paths (relative to `base_dir`), in prompt order
    answer: Any
    choices: list[str] | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # categories and grouping fields, kept in items
    raw: dict[str, Any] = field(default_factory=dict)  # benchmark-specific fields for prompts and scoring
    base_dir: Path | None = None


@dataclass
class Hub:
    repo: str
    configs: tuple[str | None, ...]
    split: str
    image_columns: tuple[str, ...]
    items: int | None = None  # in the published split, as we count them (benchmarks.md): a whole run's size


def literal_list(value: Any) -> list[Any]:
    """Option lists stored as Python reprs (`"['a', 'b']"`), JSON lists, or lists."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if not value or value == "None":
            return []
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def accuracy_table(items: Iterable[dict[str, Any]], fields: Iterable[str]) -> tuple[int, int, dict[str, Any]]:
    """(correct, total, {field: {value: {accuracy, correct, total}}}); list values count in each."""
    fields = list(fields)
    counts: dict[str, dict[str, list[int]]] = {f: defaultdict(lambda: [0, 0]) for f in fields}
    correct = total = 0
    for item in items:
        ok = bool(item["correct"])
        correct += ok
        total += 1
        for f in fields:
            value = item.get(f)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is None or v == "":
                    continue
                cell = counts[f][str(v)]
                cell[0] += ok
                cell[1] += 1
    breakdown = {
        f: {
            v: {"accuracy": pct(c, t), "correct": c, "total": t}
            for v, (c, t) in sorted(counts[f].items(), key=lambda kv: (-kv[1][1], kv[0]))
        }
        for f in fields
        if counts[f]
    }
    return correct, total, breakdown


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def pct(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 2) if total else 0.0


class Benchmark:
    """Base class; each benchmark module subclasses it once."""

    name: ClassVar[str]
    title: ClassVar[str]
    # the row field holding the native id (what `from_row` reads as `Sample.id`, or as the `native_id`
    # of MMMU-Pro's per-setting items): where another tool's log keeps the row, the item's id
    id_field: ClassVar[str]
    hub: ClassVar[Hub]
    breakdown_fields: ClassVar[tuple[str, ...]] = ()
    sandboxed: ClassVar[bool] = False  # scoring calls sympy: run it in killable workers
    placeholder: ClassVar[str | None] = None  # regex with one group: the 1-based image number
    # the decoding the benchmark's own runner uses where it differs from greedy (keys of
    # `EvalConfig.decoding`), for an `official` decoding choice; empty: greedy is the official one
    official_decoding: ClassVar[dict[str, Any]] = {}

    @staticmethod
    def register(cls: type[B]) -> type[B]:
        """Class decorator: make a benchmark known to `pr eval --bench` by its `name`."""
        if cls.name in BENCHMARKS and BENCHMARKS[cls.name] is not cls:
            raise ValueError(f"two benchmarks are named {cls.name!r}")
        BENCHMARKS[cls.name] = cls
        return cls

    # ------------------------------------------------------------------ loading

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        raise NotImplementedError

    def load(self, data: Path | None = None, *, decode_images: bool = True) -> Iterator[Sample]:
        """From the hub (the ids/configs/splits of benchmarks.md), or a local copy: the native dump
        (JSON / JSONL / parquet with the hub's or the official repo's fields) or our normalised JSONL."""
        if data is None:
            yield from self._load_hub(decode_images)
            return
        data = Path(data)
        if not data.exists():
            raise InputError([LineProblem(data, 0, "file not found")])
        for n, row in self._local_rows(data, decode_images):
            try:
                sample = self.from_row(row, row.get("__config__"))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(
                    [LineProblem(data, n, f"not a {self.name} record: {type(exc).__name__}: {exc}")]
                ) from None
            if row.get("__images__") is not None:  # our normalised JSONL: image files beside it
                sample.images = list(row["__images__"])
            sample.base_dir = data.resolve().parent
            yield sample

    def _load_hub(self, decode_images: bool) -> Iterator[Sample]:
        for config in self.hub.configs:
            yield from self._load_hub_config(config, decode_images)

    def _load_hub_config(self, config: str | None, decode_images: bool) -> Iterator[Sample]:
        import datasets

        try:
            ds = datasets.load_dataset(self.hub.repo, config, split=self.hub.split)
        except Exception as exc:
            raise StageError(
                f"could not load {self.hub.repo} ({config or 'default'}, {self.hub.split}) from the hub: {exc}. "
                "Without network access, pass a local copy with --data."
            ) from None
        ds = self._maybe_undecode(ds, decode_images)
        for row in ds:
            yield self.from_row(dict(row), config)

    def _maybe_undecode(self, ds: Any, decode_images: bool) -> Any:
        if decode_images:
            return ds
        from datasets import Image

        for col in self.hub.image_columns:
            if col in ds.column_names and isinstance(ds.features[col], Image):
                ds = ds.cast_column(col, Image(decode=False))
        return ds

    def _local_rows(self, path: Path, decode_images: bool) -> Iterator[tuple[int, dict[str, Any]]]:
        if path.suffix == ".parquet":
            import datasets

            # prepared anew: `datasets` keys its cache of a local file on its modification time, which an
            # edited copy can keep (cp -p): the old rows would be scored, silently
            fresh = datasets.DownloadMode.FORCE_REDOWNLOAD
            ds = self._maybe_undecode(
                datasets.load_dataset("parquet", data_files=str(path), split="train", download_mode=fresh),
                decode_images,
            )
            for n, row in enumerate(ds, 1):
                yield n, dict(row)
            return
        if path.suffix == ".json":
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError([LineProblem(path, 0, f"invalid JSON: {exc}")]) from None
            if isinstance(obj, dict):  # keyed by id (MathVista's testmini.json, MMMU's answer_dict_val.json)
                rows = [{**v, "__key__": k} if isinstance(v, dict) else v for k, v in obj.items()]
            else:
                rows = obj
            for n, row in enumerate(rows, 1):
                yield n, _unwrap_normalised(row)
            return
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise InputError([LineProblem(path, n, f"invalid JSON: {exc}")]) from None
                yield n, _unwrap_normalised(row)

    # ------------------------------------------------------------------ prompts

    def official_prompt(self, sample: Sample) -> str:
        raise NotImplementedError

    def question_text(self, sample: Sample) -> str:
        """The question with its options, as the r1 and cot styles show it (Perception-R1's eval text)."""
        return self.official_prompt(sample)

    def prompt_text(self, sample: Sample, style: str) -> str:
        if style == "official":
            return self.official_prompt(sample)
        if style == "r1":
            return self.question_text(sample) + " " + R1_FORMAT
        if style == "cot":
            return self.question_text(sample) + "\n" + COT_BOXED
        raise ValueError(f"unknown prompt style {style!r}; choose from {', '.join(PROMPT_STYLES)}")

    def prompt_parts(self, sample: Sample, style: str) -> list[dict[str, Any]]:
        """Chat content parts: text, and `{"type": "image", "index": i}` where image i goes.

        With a placeholder pattern, images go where their placeholders stand (the first mention
        of each; unmentioned images first); without one, all images come first. Empty image slots
        (`image_k` columns that are None) are skipped.
        """
        parts = self._place_images(sample, self.prompt_text(sample, style))
        return [p for p in parts if p["type"] == "text" or sample.images[p["index"]] is not None]

    def _place_images(self, sample: Sample, text: str) -> list[dict[str, Any]]:
        n = len(sample.images)
        if not self.placeholder or n == 0:
            return [*({"type": "image", "index": i} for i in range(n)), {"type": "text", "text": text}]
        parts: list[dict[str, Any]] = []
        placed: set[int] = set()
        pos = 0
        for m in re.finditer(self.placeholder, text):
            k = int(m.group(1)) - 1
            if not 0 <= k < n or k in placed:
                continue
            if m.start() > pos:
                parts.append({"type": "text", "text": text[pos : m.start()]})
            parts.append({"type": "image", "index": k})
            placed.add(k)
            pos = m.end()
        if pos < len(text):
            parts.append({"type": "text", "text": text[pos:]})
        leading = [{"type": "image", "index": i} for i in range(n) if i not in placed]
        return leading + parts

    # ------------------------------------------------------------------ scoring

    def score_input(self, sample: Sample) -> dict[str, Any]:
        """What `score` needs, JSON-able (it may cross into a worker process)."""
        return {"answer": sample.answer, "choices": sample.choices, **sample.raw}

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        """{"correct", "extracted", "prediction", "method"} for one response."""
        raise NotImplementedError

    @classmethod
    def score_extracted(cls, task: dict[str, Any], extracted: str) -> dict[str, Any]:
        """Score an answer an LLM has already extracted (the benchmark's own pipeline, e.g. the
        `official` protocol): the same as a response unless the benchmark's rules would read a short
        extraction differently from its official normaliser (MathVista)."""
        return cls.score(task, extracted)

    def aggregate(self, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
        correct, total, breakdown = accuracy_table(items, self.breakdown_fields)
        return {
            "bench": self.name,
            "n": total,
            "correct": correct,
            "accuracy": pct(correct, total),
            "headline": "accuracy",  # what `accuracy` holds; a benchmark with another official headline says so
            "breakdown": breakdown,
        }


def _unwrap_normalised(row: dict[str, Any]) -> dict[str, Any]:
    """Our normalised JSONL (benchmarks.md 10.2) keeps the original record in `raw`, the config or
    setting in `subset`, and image files in `images` ordered as `image_tokens` say."""
    if not (isinstance(row, dict) and "raw" in row and "bench" in row and isinstance(row["raw"], dict)):
        return row
    merged = dict(row["raw"])
    if row.get("subset"):
        merged.setdefault("__config__", row["subset"])
    images, tokens = row.get("images"), row.get("image_tokens")
    if images is not None and tokens and all(tokens):
        # place each file at the number its token carries (`<image 3>` -> slot 3), as `image_k` columns do
        numbers = [
            int(re.search(r"\d+", t).group()) if re.search(r"\d+", t) else i + 1 for i, t in enumerate(tokens)
        ]
        slots: list[Any] = [None] * max(numbers)
        for number, image in zip(numbers, images, strict=True):
            slots[number - 1] = image
        images = slots
    merged.setdefault("__images__", images)
    return merged


def open_image(ref: Any, base_dir: Path | None) -> Any:
    """A PIL RGB image from whatever a sample holds: PIL, `{"bytes"/"path"}`, bytes, or a path."""
    from PIL import Image

    if hasattr(ref, "convert"):
        return ref.convert("RGB")
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return Image.open(io.BytesIO(ref["bytes"])).convert("RGB")
        ref = ref.get("path")
    if isinstance(ref, (bytes, bytearray)):
        return Image.open(io.BytesIO(ref)).convert("RGB")
    if isinstance(ref, str):
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return Image.open(path).convert("RGB")
    raise ValueError(f"cannot open image {type(ref).__name__}")
