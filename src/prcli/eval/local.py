"""A generic local benchmark: our Problem records (`id`, `question`, `images`, `answer`, optional
`choices`), scored with math-verify (letters for multiple choice). The demo evaluates with it, and
it serves any custom set without writing a module. Breakdowns: `category`, `subject`, `task`,
`level` when the records have them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from prcli.errors import StageError
from prcli.eval.base import LETTERS, Benchmark, Hub, Sample
from prcli.eval.extract import choice_letter, extract_answer
from prcli.prompts import IMAGE_PLACEHOLDER

CATEGORY_FIELDS = ("category", "subject", "task", "level")


@Benchmark.register
class Local(Benchmark):
    name = "local"
    id_field = "id"
    title = "Local JSONL (math-verify)"
    hub = Hub("", (), "", ())
    breakdown_fields: ClassVar[tuple[str, ...]] = CATEGORY_FIELDS
    sandboxed = True
    placeholder = None

    def load(self, data: Path | None = None, *, decode_images: bool = True):  # type: ignore[override]
        if data is None:
            raise StageError("--bench local needs --data: a JSONL of problems (id, question, images, answer)")
        yield from super().load(data, decode_images=decode_images)

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        return Sample(
            id=str(row["id"]),
            question=row["question"],
            images=list(row.get("images") or []),
            answer=str(row["answer"]),
            choices=row.get("choices"),
            fields={k: row[k] for k in CATEGORY_FIELDS if k in row},
        )

    def question_text(self, sample: Sample) -> str:
        text = sample.question.replace(IMAGE_PLACEHOLDER, "").strip()
        if sample.choices:
            text += "\nChoices:\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(sample.choices))
        return text

    def official_prompt(self, sample: Sample) -> str:
        return self.question_text(sample)

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        from prcli.verify import math_equal

        ex = extract_answer(response or "")
        answer = task["answer"]
        if task.get("choices") and answer in LETTERS[: len(task["choices"])]:
            letter = choice_letter(ex.text, task["choices"])
            return {
                "correct": letter == answer,
                "extracted": ex.text,
                "prediction": letter,
                "method": ex.method,
            }
        return {
            "correct": math_equal(ex.for_math_verify(), answer),
            "extracted": ex.text,
            "prediction": ex.text,
            "method": ex.method,
        }
