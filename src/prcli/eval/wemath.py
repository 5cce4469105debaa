"""We-Math testmini (We-Math/We-Math; benchmarks.md section 5).

Official extraction (`evaluation/four_dimensional_metrics.py`): the text after the last "Answer"
(case-sensitive), with `<`, `>`, `:` and `.` deleted, first character if it is a letter A-H. For
chain-of-thought answers (`<answer>`, `\\boxed{}`) the committed letter is extracted first.

Aggregate: the four-dimensional metrics over the 525 composite problems (rows grouped by `ID`): IK,
IG, CM, RM (strict and loose), Score (Strict) = (CM + 0.5 IG) / 525 and Score (Loose); plus the
per-row accuracy over the 1,740 rows (`row_accuracy`), one-step accuracy S1 and the 2- and 3-step
composite accuracies S2 and S3. Incomplete groups (a partial run) are left out and counted.

The headline is Score (Strict): the official script reports it first (then Score (Loose)), the
leaderboard ranks by it, and lmms-eval reports the two scores (`wemath_strict`, `wemath_loose`), not
the row accuracy. So `accuracy` holds `score_strict` (`headline: "score_strict"`), with
`score_loose` and `row_accuracy` beside it; `n` and `correct` count rows. A run with no complete
problem has no score: there `accuracy` is the row accuracy and `headline` says `row_accuracy`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from prcli.eval.base import Benchmark, Hub, Sample, pct
from prcli.eval.extract import choice_letter, extract_answer

TEMPLATE = (
    "Now, we require you to solve a multiple-choice math question. Please briefly describe your thought process "
    "and provide the final answer(option).\nQuestion: {question}\nOption: {option}\nRegarding the format, please "
    "answer following the template below, and be sure to include two <> symbols:\n<Thought process>: <<your thought "
    "process>> <Answer>: <<your option>>"
)


def parse_options(option: str) -> list[str]:
    """'A. 300, 400;B. 400, 300;C. ...' -> ['300, 400', '400, 300', ...]."""
    out = []
    for piece in option.split(";"):
        piece = piece.strip()
        if len(piece) >= 2 and piece[0] in "ABCDEFGH" and piece[1] in ".:":
            out.append(piece[2:].strip())
    return out


def official_letter(response: str) -> str | None:
    if "Answer" not in response:
        return None
    tail = response.split("Answer")[-1].strip()
    for ch in "<>:.":
        tail = tail.replace(ch, "")
    tail = tail.strip()
    return tail[0] if tail and tail[0] in "ABCDEFGH" else None


def four_dimensional(items: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, dict[str, bool]] = defaultdict(dict)
    for item in items:
        groups[item["group"]][item["key"]] = bool(item["correct"])
    counts = {k: 0 for k in ("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose")}
    complete = incomplete = 0
    for steps in groups.values():
        n = 2 if any(k.startswith("2steps") for k in steps) else 3
        prefix = f"{n}steps"
        wanted = [f"{prefix}_{i}" for i in range(1, n + 1)] + [f"{prefix}_multi"]
        if not all(k in steps for k in wanted):
            incomplete += 1
            continue
        complete += 1
        subs = [steps[f"{prefix}_{i}"] for i in range(1, n + 1)]
        multi = steps[f"{prefix}_multi"]
        if not multi:
            counts["IK" if not all(subs) else "IG"] += 1
        else:
            counts["CM_strict" if all(subs) else "RM_strict"] += 1
            counts["CM_loose" if any(subs) else "RM_loose"] += 1
    if not complete:
        return {"complete_problems": 0, "incomplete_problems": incomplete}
    total = complete
    ik, ig = counts["IK"], counts["IG"]
    return {
        "complete_problems": complete,
        "incomplete_problems": incomplete,
        "IK": pct(ik, total),
        "IG": pct(ig, total),
        "CM_strict": pct(counts["CM_strict"], total),
        "CM_loose": pct(counts["CM_loose"], total),
        "RM_strict": pct(counts["RM_strict"], counts["CM_strict"] + counts["RM_strict"]),
        "RM_loose": pct(counts["RM_loose"], counts["CM_loose"] + counts["RM_loose"]),
        "score_strict": round(100 * (total - 0.5 * ig - counts["RM_strict"] - ik) / total, 2),
        "score_loose": round(100 * (total - 0.5 * ig - counts["RM_loose"] - ik) / total, 2),
        "counts": counts,
    }


@Benchmark.register
class WeMath(Benchmark):
    name = "wemath"
    id_field = "question number"
    title = "We-Math (testmini)"
    hub = Hub("We-Math/We-Math", (None,), "testmini", ("image_path",), items=1740)
    breakdown_fields: ClassVar[tuple[str, ...]] = ("key", "steps", "knowledge_concept")

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        key = row["key"]
        return Sample(
            id=str(row["question number"]),
            question=row["question"],
            images=[row["image_path"]] if row.get("image_path") is not None else [],
            answer=str(row["answer"]).strip(),
            choices=parse_options(row["option"]),
            fields={
                "group": row["ID"],
                "key": key,
                "steps": "1step" if not key.endswith("multi") else key.split("_")[0],
                "knowledge_concept": row.get("knowledge concept"),
            },
            raw={"option": row["option"]},
        )

    def question_text(self, sample: Sample) -> str:
        return f"{sample.question}\nChoices:\n{sample.raw['option']}"  # Perception-R1's eval text

    def official_prompt(self, sample: Sample) -> str:
        return TEMPLATE.format(question=sample.question, option=sample.raw["option"])

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        ex = extract_answer(response or "")
        letter = (
            choice_letter(ex.text, task["choices"], letters="ABCDEFGH")
            if ex.method in ("answer_tag", "boxed")
            else None
        )
        method = ex.method
        if letter is None:
            letter = official_letter(response or "")
            method = "official_rule" if letter is not None else "raw"
        return {
            "correct": letter == task["answer"],
            "extracted": ex.text if ex.decided else None,
            "prediction": letter,
            "method": method,
        }

    def aggregate(self, items: Any) -> dict[str, Any]:
        items = list(items)
        summary = super().aggregate(items)
        fd = four_dimensional(items)
        summary["four_dimensional"] = fd
        summary["row_accuracy"] = summary["accuracy"]
        summary["headline"] = "row_accuracy"
        if fd["complete_problems"]:
            summary["score_strict"], summary["score_loose"] = fd["score_strict"], fd["score_loose"]
            summary["accuracy"], summary["headline"] = fd["score_strict"], "score_strict"
        one_step = [i for i in items if not i["key"].endswith("multi")]
        summary["S1"] = pct(sum(i["correct"] for i in one_step), len(one_step))
        for n in (2, 3):
            rows = [i for i in items if i["key"] == f"{n}steps_multi"]
            summary[f"S{n}"] = pct(sum(i["correct"] for i in rows), len(rows))
        return summary
