"""MATH-Vision test (MathLLMs/MathVision; benchmarks.md section 4).

Official scoring is rule-based (`evaluation/evaluate.py`, `utils.py`): a letter from `... (C).`-style
endings, the number after the last "is ", the answer phrases or the last `\\boxed{}`, then
`find_math_answer` (MATH-style `_strip_string`, with its quirks) and `is_equal` (exact match, tuple
values, or latex2sympy values equal to 2 dp). Correct if the prediction equals the answer or the
option text. The values are computed with sympy's `evalf` instead of `eval(str(...))` (the
official code evaluates model output as Python), and run in sandboxed workers. There is one
composite image per item, so the `<imageN>` tokens are left in the text.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from prcli.eval.base import LETTERS, Benchmark, Hub, Sample, is_number

OFFICIAL = (
    'Please solve the problem and put your answer in one "\\boxed{}". If it is a multiple choice question, only one '
    'letter is allowed in the "\\boxed{}".\n{question}\n{options}'
)


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr and substr[0] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        a_int, b_int = int(a), int(b)
    except ValueError:
        return string
    return string if string != f"{a_int}/{b_int}" else "\\frac{" + str(a_int) + "}{" + str(b_int) + "}"


def _fix_sqrt(string: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", string)


def _strip_string(string: str) -> str:
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "").replace("$", "")
    if "\\text{ " in string:
        string = string.split("\\text{ ")[0]
    string = string.replace("\\%", "").replace("%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    if "sqrt" in string:  # the official code only fixes fractions here (a quirk we keep)
        string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def find_math_answer(s: str) -> str:
    s = s.lower().replace("{}", "")
    found = re.findall(r"oxed{(.*)}", s, flags=re.S)
    ans = found[-1] if found else s
    if ans.find("}") != -1 and (ans.find("{") == -1 or ans.find("}") < ans.find("{")):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    ans = ans.replace(" ", "").replace("\\,", "").replace("∞", "\\infty").replace("+\\infty", "\\infty")
    ans = ans.replace("\\\\", "\\").replace("\n", "").replace("\\text", "").replace("\\mbox", "")
    ans = ans.replace("bmatrix", "pmatrix").replace("\\left", "").replace("\\right", "")
    ans = ans.replace("^{\\circ}", "").replace("^\\circ", "")
    for unit in ("{m}^3", "m^3", "{units}", "units", "{km}", "km"):
        ans = ans.replace(unit, "")
    return _strip_string(ans)


def _value(expr: str) -> float:
    from latex2sympy2_extended import latex2sympy

    return round(float(latex2sympy(expr).evalf()), 2)


def _eval_tuple(s: str) -> str:
    inner = s[1:-1].split(",")
    if len(s) < 2 or len(inner) < 2 or (s[0], s[-1]) not in (("(", ")"), ("[", "]")):
        return s
    try:
        values = [sub if "infty" in sub or sub in ("a", "-a") else str(_value(sub)) for sub in inner]
    except Exception:
        return s
    return s[0] + ",".join(values) + s[-1]


def is_equal(prediction: str, gold: str) -> bool:
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return False
    prediction, gold = prediction.lower(), gold.lower()
    if not prediction.strip() or not gold.strip():
        return False
    if prediction.strip() == gold.strip():
        return True
    if _eval_tuple(prediction) == _eval_tuple(gold):
        return True
    try:
        return _value(gold) == _value(prediction)
    except Exception:
        return False


def extract_prediction(response: str) -> str:
    answer = response.strip()
    for c in "ABCDE":
        if (
            answer.endswith(f" {c}.")
            or answer.endswith(f" ({c}).")
            or answer.startswith(f"{c}\n")
            or answer.startswith(f"({c})\n")
            or answer.startswith(f"({c}) {c}\n")
        ):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        for flag in ("the final answer is", "the answer is", "the correct answer is", "the answer should be"):
            for form in (flag, flag.replace("the", "The")):
                before = answer
                answer = answer.split(form)[-1].strip()
                if form in before:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for letter in "abcde":
        answer = answer.replace(f"({letter})", letter).replace(f"{{{letter}}}", letter)
    return answer.rstrip(".").lstrip(":").strip()


@Benchmark.register
class MathVision(Benchmark):
    name = "mathvision"
    id_field = "id"
    title = "MATH-Vision (test)"
    hub = Hub("MathLLMs/MathVision", (None,), "test", ("decoded_image",), items=3040)
    breakdown_fields: ClassVar[tuple[str, ...]] = ("subject", "level")
    sandboxed = True

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        options = [str(o) for o in (row.get("options") or [])]
        image = row.get("decoded_image") or row.get("image")
        return Sample(
            id=str(row["id"]),
            question=row["question"],
            images=[image] if image is not None else [],
            answer=str(row["answer"]),
            choices=options or None,
            fields={
                "subject": row.get("subject"),
                "level": str(row.get("level")) if row.get("level") is not None else None,
            },
        )

    def question_text(self, sample: Sample) -> str:
        if sample.choices and len(sample.choices) > 1:
            return (
                sample.question
                + "\nChoices:\n"
                + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(sample.choices))
            )
        return sample.question

    def official_prompt(self, sample: Sample) -> str:
        options = ""
        if sample.choices and sample.choices != list("ABCDE"):
            options = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(sample.choices))
        return OFFICIAL.replace("{question}", sample.question).replace("{options}", options)

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        prediction = extract_prediction(response or "")
        choices = task.get("choices") or []
        option_text = ""
        if choices and task["answer"] in LETTERS[: len(choices)]:
            option_text = choices[LETTERS.index(task["answer"])]
        correct = is_equal(prediction, task["answer"]) or is_equal(prediction, option_text)
        return {
            "correct": correct,
            "extracted": prediction,
            "prediction": prediction,
            "method": "official_rule",
        }
