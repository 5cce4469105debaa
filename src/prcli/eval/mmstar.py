"""MMStar val (Lin-Chen/MMStar; benchmarks.md section 8).

Official scoring (`eval/vlmeval/evaluate/mmstar.py`): on a direct answer, lower-cased, the item is
correct if its first character is the answer letter, or it starts with `(X`, `option X` or
`the answer is X`. That rule only reads direct answers, so for a chain-of-thought response the
letter it commits to (answer tag, box, "answer is") is extracted first. Aggregate: micro over 1500.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from prcli.eval.base import LETTERS, Benchmark, Hub, Sample
from prcli.eval.extract import choice_letter, extract_answer


def split_options(question: str) -> tuple[str, list[str]]:
    """'...\\nOptions: A: x, B: y, C: z, D: w' -> (stem, [x, y, z, w])."""
    m = re.search(r"\n?Options?:\s*(.*)$", question, re.DOTALL)
    if not m:
        return question, []
    body = m.group(1)
    pieces = re.split(r"(?:^|,\s*|\n)([A-H])[:.]\s*", body)
    options = [p.strip().rstrip(",") for p in pieces[2::2]]
    return question[: m.start()].rstrip(), options


def official_correct(prediction: str, answer: str) -> bool:
    pred = prediction.lower().strip().replace("\n", " ")
    ans = answer.lower().strip().replace("\n", " ")
    if not pred:
        return False
    return (
        pred[0] == ans
        or (len(pred) > 1 and pred[0] == "(" and pred[1] == ans)
        or (pred.startswith("option ") and len(pred) > 7 and pred[7] == ans)
        or (pred.startswith("the answer is ") and len(pred) > 14 and pred[14] == ans)
    )


@Benchmark.register
class MMStar(Benchmark):
    name = "mmstar"
    title = "MMStar (val)"
    hub = Hub("Lin-Chen/MMStar", ("val",), "val", ("image",))
    breakdown_fields: ClassVar[tuple[str, ...]] = ("category", "l2_category")

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        question = row["question"]
        stem, options = split_options(question)
        if not options and all(k in row for k in "ABCD"):  # the TSV layout: options in columns
            options = [str(row[k]) for k in "ABCD" if row.get(k) not in (None, "")]
        meta = row.get("meta_info") or {}
        return Sample(
            id=str(row["index"]),
            question=question,
            images=[row["image"]] if row.get("image") is not None else [],
            answer=str(row["answer"]).strip(),
            choices=options or None,
            fields={
                "category": row.get("category"),
                "l2_category": row.get("l2_category"),
                "source": meta.get("source"),
            },
            raw={"stem": stem},
        )

    def question_text(self, sample: Sample) -> str:
        options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(sample.choices or []))
        return f"{sample.raw['stem']}\n{options}" if options else sample.question

    def official_prompt(self, sample: Sample) -> str:
        return (
            f"{self.question_text(sample)}\nAnswer with the option's letter from the given choices directly."
        )

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        ex = extract_answer(response or "")
        if ex.decided:
            letter = choice_letter(ex.text, task["choices"]) or ex.text
            return {
                "correct": official_correct(letter, task["answer"]),
                "extracted": ex.text,
                "prediction": letter,
                "method": ex.method,
            }
        # the official prefix rule on the raw response; "raw": extraction found no marked answer
        pred = (response or "").strip()
        return {
            "correct": official_correct(pred, task["answer"]),
            "extracted": None,
            "prediction": pred[:1].upper() or None,
            "method": "raw",
        }
