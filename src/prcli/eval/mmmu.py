"""MMMU validation (MMMU/MMMU, 30 subject configs; benchmarks.md section 6).

Official scoring (`mmmu/utils/eval_utils.py`): `parse_multi_choice_response` for multiple choice
(bracketed letter, spaced letter, option text in long answers, else a random letter; the last
mention wins) and `parse_open_response` + `eval_open` for open questions (tails after indicator
words plus every number; numbers to 2 dp, strings by substring). Overall and discipline accuracies
are instance-weighted. The official random fallback depends on call order; here each item draws
from its own generator seeded by its id (reproducible in any order), and such items are marked.
"""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar

from prcli.eval.base import LETTERS, Benchmark, Hub, Sample, is_number, literal_list
from prcli.eval.extract import choice_letter, extract_answer

SUBJECTS = {
    "Art & Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health & Medicine": [
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ],
    "Humanities & Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech & Engineering": [
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ],
}
DISCIPLINE = {subject: d for d, subjects in SUBJECTS.items() for subject in subjects}


def subject_of(item_id: str) -> str:
    return "_".join(item_id.split("_")[1:-1])


# ----------------------------------------------------------------------------- the official parsers


def parse_multi_choice_response(
    response: str, all_choices: list[str], index2ans: dict[str, str], rng: random.Random, *, pro: bool = False
) -> tuple[str, bool]:
    """(letter, was it a random guess). `pro=True` is MMMU-Pro's variant (`X ` and `X.` tests)."""
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, ans_with_brack = True, False
    candidates = [c for c in all_choices if f"({c})" in response]
    if candidates:
        ans_with_brack = True
    if not candidates:
        candidates = [c for c in all_choices if (f"{c} " if pro else f" {c} ") in response]
    if not candidates and pro:
        candidates = [c for c in all_choices if f"{c}." in response]
    if not candidates and len(response.split()) > 5:
        candidates = [i for i, ans in index2ans.items() if ans.lower() in response.lower()]
        index_ans = not candidates
    if not candidates:
        return rng.choice(all_choices), True
    if len(candidates) == 1:
        return candidates[0], False
    if index_ans:
        pattern = "({})" if ans_with_brack else " {} "
        starts = [response.rfind(pattern.format(c)) for c in candidates]
    else:
        starts = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return candidates[starts.index(max(starts))], False


def normalize_str(text: str) -> list[Any]:
    text = text.strip()
    if is_number(text.replace(",", "")):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    subs = re.split(r"\.\s(?=[A-Z])|\n", response)  # lowercased first, so only newlines split (official)
    indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    keys = []
    for i, sub in enumerate(subs):
        if i == len(subs) - 1:
            indicators = [*indicators, "="]
        shortest = None
        for ind in indicators:
            if ind in sub:
                tail = sub.split(ind)[-1].strip()
                if shortest is None or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", "'"]:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(response: str) -> list[Any]:
    keys = _key_subresponses(response)
    candidates: list[Any] = list(keys)
    for key in keys:
        candidates.extend(extract_numbers(key))
    normalized: list[Any] = []
    for c in candidates:
        normalized.extend(normalize_str(c))
    return sorted(set(normalized), key=lambda x: (isinstance(x, str), str(x)))


def eval_open(gold: Any, predictions: list[Any]) -> bool:
    golds: list[Any] = []
    for g in gold if isinstance(gold, list) else [gold]:
        golds.extend(normalize_str(str(g)))
    for pred in predictions:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False


def _gold(value: Any) -> Any:
    """Answers are letters, strings, or (three validation items) lists, sometimes as a repr string."""
    if isinstance(value, str) and value.startswith("["):
        parsed = literal_list(value)
        return [str(x) for x in parsed] if parsed else value
    return value


def score_mmmu_style(task: dict[str, Any], response: str, *, pro: bool = False) -> dict[str, Any]:
    rng = random.Random(f"mmmu:{task['id']}")
    if task["question_type"] == "multiple-choice":
        options = task.get("choices") or []
        letters = list(LETTERS[: len(options)]) if options else list(LETTERS[:9])
        index2ans = {LETTERS[i]: str(o) for i, o in enumerate(options)}
        if pro:
            tail = (
                response[response.rfind("Answer:") + len("Answer:") :].strip()
                if "Answer:" in response
                else None
            )
            matches = [c for c in letters if tail is not None and c in tail]
            if len(matches) == 1:
                return {
                    "correct": matches[0] == task["answer"],
                    "extracted": tail,
                    "prediction": matches[0],
                    "method": "answer_line",
                }
        gold = task["answer"]
        text = response
        ex = extract_answer(response)
        if ex.method in ("answer_tag", "boxed"):  # a CoT answer: read what it committed to
            committed = choice_letter(ex.text, options or None, letters="".join(letters))
            if committed is not None:
                correct = committed in gold if isinstance(gold, list) else committed == gold
                return {
                    "correct": correct,
                    "extracted": ex.text,
                    "prediction": committed,
                    "method": ex.method,
                }
            text = ex.text
        letter, guessed = parse_multi_choice_response(text, letters, index2ans, rng, pro=pro)
        correct = letter in gold if isinstance(gold, list) else letter == gold
        return {
            "correct": correct,
            "extracted": text if text != response else None,
            "prediction": letter,
            "method": "random" if guessed else "official_rule",
        }
    ex = extract_answer(response)
    text = ex.text if ex.method in ("answer_tag", "boxed") else response
    predictions = parse_open_response(text)
    return {
        "correct": eval_open(task["answer"], predictions),
        "extracted": text if text != response else None,
        "prediction": predictions,
        "method": "official_rule",
    }


@Benchmark.register
class MMMU(Benchmark):
    name = "mmmu"
    id_field = "id"
    title = "MMMU (validation)"
    hub = Hub(
        "MMMU/MMMU",
        tuple(s for subjects in SUBJECTS.values() for s in subjects),
        "validation",
        tuple(f"image_{i}" for i in range(1, 8)),
        items=900,
    )
    breakdown_fields: ClassVar[tuple[str, ...]] = (
        "discipline",
        "subject",
        "question_type",
        "topic_difficulty",
        "img_type",
        "subfield",
    )
    placeholder = r"<image (\d+)>"

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        item_id = str(row["id"] if "id" in row else row["__key__"])
        subject = subject_of(item_id)
        answer = row["answer"] if "answer" in row else row["ground_truth"]  # answer_dict_val.json rows
        question_type = row.get("question_type") or (
            "multiple-choice" if literal_list(row.get("options")) else "open"
        )
        if question_type == "short-answer":
            question_type = "open"
        options = [str(o) for o in literal_list(row.get("options"))]
        images = [row.get(f"image_{i}") for i in range(1, 8)]
        return Sample(
            id=item_id,
            question=row.get("question", ""),
            images=images,  # by number; prompt_parts orders them by first mention
            answer=_gold(answer),
            choices=options or None,
            fields={
                "subject": subject,
                "discipline": DISCIPLINE.get(subject),
                "question_type": question_type,
                "topic_difficulty": row.get("topic_difficulty"),
                "img_type": literal_list(row.get("img_type")) or None,
                "subfield": row.get("subfield"),
            },
            raw={"question_type": "multiple-choice" if question_type == "multiple-choice" else "open"},
        )

    def question_text(self, sample: Sample) -> str:
        if sample.choices:
            options = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(sample.choices))
            return f"{sample.question}\n{options}"
        return sample.question

    def official_prompt(self, sample: Sample) -> str:
        if sample.choices:
            options = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(sample.choices))
            return f"{sample.question}\n{options}\nAnswer with the option's letter from the given choices directly."
        return f"{sample.question}\nAnswer the question using a single word or phrase."

    def score_input(self, sample: Sample) -> dict[str, Any]:
        return {"id": sample.id, "answer": sample.answer, "choices": sample.choices, **sample.raw}

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        return score_mmmu_style(task, response or "")
