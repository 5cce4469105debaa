"""MathVerse testmini (AI4Math/MathVerse; benchmarks.md section 3).

Official prompt: `query_cot`. The official scoring is two GPT calls (extract, then judge); here the
rule-based stand-in: the committed answer is extracted, multiple-choice items (letter answers) are
compared by letter, free-form items by math-verify equivalence (in sandboxed workers). An LLM
answer judge (`--answer-judge`) can decide what the rules cannot. Overall = accuracy over the five
versions (3,940 rows); Text Only, when present, is reported separately and not counted.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from prcli.eval.base import Benchmark, Hub, Sample, accuracy_table, pct
from prcli.eval.extract import choice_letter, extract_answer

VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only")


def parse_choices(question_for_eval: str) -> list[str]:
    m = re.search(r"(?:Choices|Choice):(.+)", question_for_eval or "", re.DOTALL)
    if not m:
        return []
    pieces = re.split(r"(?:^|\n)\s*([A-H])\s*[:.)]\s*", m.group(1))
    return [p.strip() for p in pieces[2::2]]


@Benchmark.register
class MathVerse(Benchmark):
    name = "mathverse"
    id_field = "sample_index"
    title = "MathVerse (testmini)"
    hub = Hub("AI4Math/MathVerse", ("testmini",), "testmini", ("image",), items=3940)
    breakdown_fields: ClassVar[tuple[str, ...]] = ("problem_version", "subject", "subfield", "question_type")
    sandboxed = True

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        meta = row.get("metadata") or {}
        image = row.get("image")
        return Sample(
            id=str(row["sample_index"]),
            question=row.get("question") or "",
            images=[image] if image not in (None, "") else [],
            answer=str(row["answer"]).strip(),
            choices=parse_choices(row.get("question_for_eval") or "") or None,
            fields={
                "problem_version": row["problem_version"],
                "subject": meta.get("subject"),
                "subfield": meta.get("subfield"),
                "question_type": row.get("question_type"),
                "problem_index": str(row.get("problem_index")),
            },
            raw={
                "query_cot": row.get("query_cot") or "",
                "question_for_eval": row.get("question_for_eval") or "",
            },
        )

    def question_text(self, sample: Sample) -> str:
        return sample.question  # what Perception-R1 fed (empty for Vision Only)

    def official_prompt(self, sample: Sample) -> str:
        return sample.raw["query_cot"] or sample.question

    def score_input(self, sample: Sample) -> dict[str, Any]:
        return {"answer": sample.answer, "choices": sample.choices}

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        from prcli.verify import math_equal

        ex = extract_answer(response or "")
        answer = task["answer"]
        if re.fullmatch(r"[A-H]", answer):
            letter = choice_letter(ex.text, task.get("choices")) or choice_letter(
                ex.text, None, letters="ABCDEFGH"
            )
            return {
                "correct": letter == answer,
                "extracted": ex.text,
                "prediction": letter,
                "method": ex.method,
            }
        correct = ex.text.strip() == answer or math_equal(ex.for_math_verify(), answer)
        return {"correct": correct, "extracted": ex.text, "prediction": ex.text, "method": ex.method}

    def aggregate(self, items: Any) -> dict[str, Any]:
        items = list(items)
        main = [i for i in items if i.get("problem_version") in VERSIONS]
        summary = super().aggregate(main)
        text_only = [i for i in items if i.get("problem_version") == "Text Only"]
        if text_only:
            correct, total, _ = accuracy_table(text_only, ())
            summary["text_only"] = {"accuracy": pct(correct, total), "correct": correct, "total": total}
        return summary
