"""MathVista testmini (AI4Math/MathVista; benchmarks.md section 2).

Official prompt: the `query` field (hint, question, unit, `(A) ...` choices). Official scoring: an
extraction (GPT in the official code; here the rule-based extractor, or the official rule shortcuts
when the response is already short), then `normalize_extracted_answer`: MC letters map to the
choice text, anything else to the Levenshtein-nearest choice; integers are truncated; floats rounded
with Python's `round` to `int(precision)` places; lists compared verbatim. Correct iff the
normalised prediction equals the answer string.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from prcli.eval.base import Benchmark, Hub, Sample
from prcli.eval.extract import extract_answer, last_number, read_option

HINTS = {
    "multi_choice": "Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.",
    "float1": "Please answer the question requiring a floating-point number with one decimal place and provide the "
    "final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Please answer the question requiring a floating-point number with two decimal places and provide the "
    "final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Please answer the question requiring a Python list as an answer and provide the final list, e.g., "
    "[1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def build_query(record: dict[str, Any]) -> str:
    """The official zero-shot query (what `query.json` holds)."""
    if record["question_type"] == "multi_choice":
        hint = HINTS["multi_choice"]
    elif record["answer_type"] == "float":
        hint = HINTS["float2" if int(record["precision"]) == 2 else "float1"]
    else:
        hint = HINTS.get(record["answer_type"], HINTS["integer"])
    text = f"Hint: {hint}\nQuestion: {record['question']}"
    if record.get("unit"):
        text += f" (Unit: {record['unit']})"
    if record.get("choices"):
        text += "\nChoices:\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(record["choices"]))
    return text.strip()


def _levenshtein_nearest(text: str, choices: list[str]) -> str:
    from Levenshtein import distance

    distances = [distance(text, c) for c in choices]
    return choices[distances.index(min(distances))]


def normalize_extracted_answer(
    extraction: Any, choices: list[str] | None, question_type: str, answer_type: str, precision: Any
) -> str | None:
    """The official normaliser (MathVista `calculate_score.py`)."""
    if question_type == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letter = re.findall(r"\(([a-zA-Z])\)", text)
        if letter:
            text = letter[0].upper()
        letters = [chr(ord("A") + i) for i in range(len(choices or []))]
        if text in letters:
            return (choices or [])[letters.index(text)]
        return _levenshtein_nearest(text, choices or [])
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), int(precision)))
        if answer_type == "list":
            return str(extraction)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return None
    return None


def plain_number(text: str) -> str | None:
    """A number from an answer written with LaTeX or units: `40^\\circ`, `40 \text{ cm}`, `x = 40`,
    `\frac{1}{4}`, `12.5\\%`; None if there is no number."""
    t = re.sub(r"\\(?:text|mathrm|mbox)\{[^{}]*\}", " ", text)
    t = re.sub(r"\^\s*\{?\\circ\}?|°|\\%|%|\$|\\,|\\!", " ", t)
    t = re.sub(r"^\s*[a-zA-Z]\w*\s*=\s*", "", t).strip()
    fraction = re.fullmatch(
        r"\\[dt]?frac\{\s*(-?[\d.]+)\s*\}\{\s*(-?[\d.]+)\s*\}|(-?[\d.]+)\s*/\s*(-?[\d.]+)", t
    )
    if fraction:
        num, den = (float(g) for g in fraction.groups() if g is not None)
        return str(num / den) if den else None
    try:
        float(t)
        return t
    except ValueError:
        return last_number(t)


def official_shortcut(response: str, task: dict[str, Any]) -> str | None:
    """The official extraction's rule steps, for responses that are already an answer."""
    if response == "":
        return ""
    if task["question_type"] == "multi_choice" and response in (task["choices"] or []):
        return response
    try:
        if task["answer_type"] == "integer":
            int(response)
            return response
        if task["answer_type"] == "float":
            return str(float(response))
    except ValueError:
        pass
    return None


@Benchmark.register
class MathVista(Benchmark):
    name = "mathvista"
    id_field = "pid"
    title = "MathVista (testmini)"
    hub = Hub("AI4Math/MathVista", (None,), "testmini", ("decoded_image",), items=1000)
    breakdown_fields: ClassVar[tuple[str, ...]] = (
        "question_type",
        "answer_type",
        "language",
        "source",
        "category",
        "task",
        "context",
        "grade",
        "skills",
    )

    def load(self, data: Path | None = None, *, decode_images: bool = True):  # type: ignore[override]
        queries: dict[str, str] = {}
        if data is not None and (Path(data).parent / "query.json").exists():
            queries = json.loads((Path(data).parent / "query.json").read_text(encoding="utf-8"))
        for sample in super().load(data, decode_images=decode_images):
            if sample.id in queries:
                sample.raw["query"] = queries[sample.id]
            yield sample

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        meta = row.get("metadata") or {}
        if isinstance(meta, str):  # some dumps store the dict's repr
            import ast

            meta = ast.literal_eval(meta)
        choices = row.get("choices")
        choices = None if choices in (None, "None") else list(choices)
        precision = row.get("precision")
        precision = None if precision in (None, "None") else float(precision)
        record = {
            "question": row["question"],
            "choices": choices,
            "unit": None if row.get("unit") in (None, "None") else row["unit"],
            "precision": precision,
            "question_type": row["question_type"],
            "answer_type": row["answer_type"],
        }
        image = row.get("decoded_image") or row.get("image")
        images = image if isinstance(image, list) else [image] if image is not None else []
        return Sample(
            id=str(row["pid"]),
            question=row["question"],
            images=images,
            answer=str(row["answer"]),
            choices=choices,
            fields={
                "question_type": row["question_type"],
                "answer_type": row["answer_type"],
                "language": meta.get("language"),
                "source": meta.get("source"),
                "category": meta.get("category"),
                "task": meta.get("task"),
                "context": meta.get("context"),
                # the official score file reports grade "not applicable" as "daily life"
                "grade": "daily life" if meta.get("grade") == "not applicable" else meta.get("grade"),
                "skills": list(meta.get("skills") or []),
            },
            raw={**record, "query": row.get("query") or build_query(record)},
        )

    def official_prompt(self, sample: Sample) -> str:
        return sample.raw["query"]

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        response = (response or "").strip()
        extracted = official_shortcut(response, task)
        method = "official_rule"
        if extracted is None:
            ex = extract_answer(response)
            extracted, method = ex.text, ex.method
            numeric = task["answer_type"] in ("integer", "float")
            if task["question_type"] == "multi_choice":
                # "(B) 93", "93 degrees", or prose naming one option; the normaliser maps the letter
                letter, how = read_option(ex.text, task["choices"], marked=ex.decided)
                if how == "conflict":  # "(D) 140°" with D "20°": the response contradicts itself
                    return {"correct": False, "extracted": ex.text, "prediction": None, "method": "unmatched"}
                if letter is not None:
                    extracted, method = letter, method if ex.decided else "option_text"
                elif not ex.decided:  # the nearest choice to a whole paragraph would be a guess
                    return {"correct": False, "extracted": None, "prediction": None, "method": method}
            elif numeric and ex.decided:  # a marked answer: `40^\circ`, `x = 40`, `\frac{1}{4}`, "40 years"
                extracted = plain_number(ex.text) or extracted
            elif (
                numeric and len(ex.text.split()) >= 6
            ):  # prose (short strings stay as the official rule has them)
                extracted = last_number(ex.text) or extracted
        return MathVista._verdict(task, extracted, method)

    @classmethod
    def score_extracted(cls, task: dict[str, Any], extracted: str) -> dict[str, Any]:
        """The official pipeline's second half: its normaliser on an extraction as it is (GPT's "N/A"
        included, which the normaliser maps to the nearest choice), with no rules in between."""
        return cls._verdict(task, extracted, "extraction")

    @staticmethod
    def _verdict(task: dict[str, Any], extracted: str, method: str) -> dict[str, Any]:
        prediction = normalize_extracted_answer(
            extracted, task["choices"], task["question_type"], task["answer_type"], task["precision"]
        )
        return {
            "correct": prediction is not None and prediction == task["answer"],
            "extracted": extracted,
            "prediction": prediction,
            "method": method,
        }
