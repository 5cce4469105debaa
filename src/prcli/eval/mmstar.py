"""MMStar val (Lin-Chen/MMStar; benchmarks.md section 8).

Official scoring (`eval/vlmeval/evaluate/mmstar.py`): on a direct answer, lower-cased, the item is
correct if its first character is the answer letter, or it starts with `(X`, `option X` or
`the answer is X`. That rule was written for one-letter answers: applied to free text it reads
"Because ..." or "Based on the image ..." as B. So it is applied only to what is letter-like (`B`,
`B.`, `(B) text`, `B: text`, `option B`; `extract.letter_like`); a chain-of-thought response is first
reduced to what it commits to (answer tag, box, "the correct option is", a last line "B"), and
otherwise the one option whose text the response names counts. Anything else is undecided: scored
wrong with its method recorded (`unmatched`: a marked answer that names no option; `raw`: nothing
marked), never right by the accident of its first letter. Aggregate: micro over 1500.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from prcli.eval.base import LETTERS, Benchmark, Hub, Sample
from prcli.eval.extract import extract_answer, read_option


def split_options(question: str) -> tuple[str, list[str]]:
    """'...\\nOptions: A: x, B: y, C: z, D: w' -> (stem, [x, y, z, w])."""
    m = re.search(r"\n?Options?:\s*(.*)$", question, re.DOTALL)
    if not m:
        return question, []
    body = m.group(1)
    pieces = re.split(r"(?:^|,\s*|\n)([A-H])[:.]\s*", body)
    options = [p.strip().rstrip(",") for p in pieces[2::2]]
    return question[: m.start()].rstrip(), options


@Benchmark.register
class MMStar(Benchmark):
    name = "mmstar"
    id_field = "index"
    title = "MMStar (val)"
    hub = Hub("Lin-Chen/MMStar", ("val",), "val", ("image",), items=1500)
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
        choices = task["choices"] or []
        letters = LETTERS[: len(choices)] or "ABCD"
        ex = extract_answer(response or "")
        # the official rule ignores case, so a direct answer "b" or "(b)" counts too
        text = ex.text.upper() if len(ex.text) <= 3 else ex.text
        letter, how = read_option(text, choices or None, letters, marked=ex.decided)
        if how == "letter":  # unmarked: the official rule on a letter-like direct answer
            method = ex.method if ex.decided else "official_rule"
        elif how in ("text", "mention"):
            method = ex.method if ex.decided else "option_text"
        else:  # nothing, or a letter whose stated option text is another's
            method = "unmatched" if ex.decided else "raw"
        return {
            "correct": letter == task["answer"],
            "extracted": ex.text if ex.decided else None,
            "prediction": letter,
            "method": method,
        }
