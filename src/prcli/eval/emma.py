"""EMMA full: Math, Physics, Chemistry, Coding (luckychao/EMMA; benchmarks.md section 9).

Official rule-based "fast-eval" (`evaluation/evaluate.py`, `utils.py`, Dec-2024 version):
`fast_extract_answer` (a bare letter or `X:`, a bare number, the last `\\boxed{}` with `\\text{}`
unwrapped, the text after "answer is"-style phrases, else the response) and `is_equal` (case-
insensitive exact match, else latex2sympy values equal to 2 dp or a zero difference). Correct if
the prediction equals the answer or the option text of the answer. Sympy runs in sandboxed workers.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from prcli.eval.base import LETTERS, Benchmark, Hub, Sample, is_number, literal_list
from prcli.eval.extract import last_boxed

SUBJECTS = ("Math", "Physics", "Chemistry", "Coding")
COT = "Please solve the problem step by step."


def fast_extract_answer(response: str) -> str:
    response = response.strip()
    for ch in "ABCDEFGH":
        if response.upper() == ch or response.startswith(f"{ch}:"):
            return ch
    if is_number(response):
        return response
    if "boxed{" in response:
        boxed = last_boxed(response.replace("\\fbox", "\\boxed"))
        if boxed is not None:
            texts = re.findall(r"\\text\{(.*?)\}", boxed)
            return texts[-1].strip() if texts else boxed.strip()
    lowered = response.lower()
    for flag in ("final answer is", "correct answer is", "answer should be", "answer is"):
        if flag in lowered:
            tail = lowered.split(flag)[-1].strip()
            return tail.split("\n")[0].split(".")[0]
    return response


def is_equal(prediction: str, gold: str) -> bool:
    pred, gt = str(prediction).lower().strip(), str(gold).lower().strip()
    if not pred or not gt:
        return False
    if pred == gt:
        return True
    try:
        from latex2sympy2_extended import latex2sympy
        from sympy import simplify

        a, b = latex2sympy(pred), latex2sympy(gt)
        if round(float(a.evalf()), 2) == round(float(b.evalf()), 2):
            return True
        return bool(simplify(a - b) == 0)
    except Exception:
        return False


@Benchmark.register
class EMMA(Benchmark):
    name = "emma"
    id_field = "pid"
    title = "EMMA (full)"
    hub = Hub("luckychao/EMMA", SUBJECTS, "test", tuple(f"image_{i}" for i in range(1, 6)), items=2788)
    breakdown_fields: ClassVar[tuple[str, ...]] = ("subject", "question_type", "category", "task")
    sandboxed = True
    placeholder = r"<image_(\d+)>"
    # the official runner samples open models at temperature 0.7 with 4096 new tokens (benchmarks.md
    # section 9; lmms-eval's emma task sets the same two): the `official` decoding; greedy stays the default
    official_decoding: ClassVar[dict[str, Any]] = {"temperature": 0.7, "max_new_tokens": 4096}

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        options = [str(o) for o in literal_list(row.get("options"))]
        answer = str(row["answer"])
        gt_content = row.get("gt_content")
        if gt_content is None:
            gt_content = (
                options[LETTERS.index(answer)] if options and answer in LETTERS[: len(options)] else answer
            )
        qtype = str(row.get("type") or ("Multiple Choice" if options else "Open-ended")).lower()
        category = row.get("category") or ""
        subject = row.get("subject") or config or ""
        return Sample(
            id=str(row["pid"]),
            question=row["question"],
            images=[row.get(f"image_{i}") for i in range(1, 6)],
            answer=answer,
            choices=options or None,
            fields={
                "subject": subject,
                "question_type": qtype,
                "category": [c.strip() for c in category.split(";")] if subject == "Coding" else category,
                "task": row.get("task") or None,
                "source": row.get("source"),
            },
            raw={"gt_content": str(gt_content), "context": row.get("context") or "", "question_type": qtype},
        )

    def question_text(self, sample: Sample) -> str:
        text = f"{sample.raw['context']}\n{sample.question}" if sample.raw["context"] else sample.question
        if sample.choices:
            text += "\n" + "\n".join(f"{LETTERS[i]}: {o}" for i, o in enumerate(sample.choices))
        return text

    def official_prompt(self, sample: Sample) -> str:
        """`configs/gpt.yaml` through `data_utils.build_query`: YAML folds the config's blank lines into
        one newline each, and the options block ends in its own newline, so a blank line comes
        between the options and the instruction (as the official result files' `query` shows)."""
        text = f"{sample.raw['context']}\n{sample.question}\n"
        if sample.choices:
            text += "".join(f"{LETTERS[i]}: {o}\n" for i, o in enumerate(sample.choices)) + "\n"
            text += 'Answer with the option\'s letter from the given choices and put the letter in one "\\boxed{}". '
        else:
            text += (
                'Answer the question using a single word or phrase and put the answer in one "\\boxed{}". '
            )
        return text + COT

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        prediction = fast_extract_answer(response or "")
        correct = is_equal(prediction, task["answer"]) or is_equal(prediction, task["gt_content"])
        # fast-eval's last resort is the whole response: "raw" marks that no answer was found
        fell_back = (
            prediction == (response or "").strip() and not is_number(prediction) and len(prediction) > 1
        )
        return {
            "correct": correct,
            "extracted": prediction,
            "prediction": prediction,
            "method": "raw" if fell_back else "official_rule",
        }
