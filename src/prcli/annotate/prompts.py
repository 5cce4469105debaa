"""Prompts of the annotation stage (method.md section 1): our own, since the paper's were not released.

The teacher writes a chain of thought that starts from what it reads off the figure; the extractor
turns a verified chain of thought into atomic visual annotations in the style of the released data:
short declarative facts read off the figure (given lengths, angles, labels, relations), written in
LaTeX where math appears, never reasoning steps, computed values or the final answer, and no
surface cues such as colours. Bump the versions whenever a text changes (they enter cache keys).
"""

from __future__ import annotations

from typing import Any

TEACHER_PROMPT_VERSION = "pr-teacher-v1"
EXTRACT_PROMPT_VERSION = "pr-extract-v1"

TEACHER_INSTRUCTION = (
    "Solve the problem. Start by stating the facts you read off the figure that the solution needs "
    "(given lengths and angle measures, labels, parallel or perpendicular lines, midpoints, tangents, "
    "equal segments, and so on), then reason step by step. Put the final answer in \\boxed{}."
)


def teacher_text(question: str) -> str:
    return f"{question}\n\n{TEACHER_INSTRUCTION}"


_EXAMPLES = [
    (
        "<image>Find x. Round to the nearest tenth.",
        "From the figure, triangle ABC has a right angle at C. The leg AC is 7 and the hypotenuse AB is 12, "
        "and the side BC is labeled x. By the Pythagorean theorem, x^2 = 12^2 - 7^2 = 95, so x = \\sqrt{95} "
        "\\approx 9.7. The answer is \\boxed{9.7}.",
        [
            "Triangle $ABC$ has a right angle at $C$.",
            "$AC = 7$.",
            "The hypotenuse $AB = 12$.",
            "Side $BC$ is labeled $x$.",
        ],
    ),
    (
        "<image>In circle O, find the measure of angle ACB.",
        "The figure shows circle O with points A, B and C on the circle. The central angle AOB measures 110 "
        "degrees, and the inscribed angle ACB intercepts the same arc AB. An inscribed angle is half the central "
        "angle on the same arc, so m\\angle ACB = 55. The answer is \\boxed{55}.",
        [
            "Points $A$, $B$ and $C$ lie on circle $O$.",
            "The central angle $\\angle AOB = 110^\\circ$.",
            "The inscribed angle $\\angle ACB$ intercepts arc $AB$.",
        ],
    ),
    (
        "<image>Find the length of EF.",
        "In the diagram, E is the midpoint of AB and F is the midpoint of AC, and BC = 18. The segment EF joins the "
        "midpoints of two sides of triangle ABC, so EF is parallel to BC and half as long: EF = 9. \\boxed{9}",
        [
            "$E$ is the midpoint of $AB$.",
            "$F$ is the midpoint of $AC$.",
            "$BC = 18$.",
        ],
    ),
]

EXTRACT_SYSTEM = (
    "You read a correct step-by-step solution of a math problem about a figure and list its visual key "
    "information: the facts the solution reads off the figure and needs to solve the problem. Each item is one "
    "atomic, self-contained statement, such as a given length or angle measure, a label, a point lying on a line "
    "or circle, or a relation between figure elements (parallel, perpendicular, midpoint, tangent, equal, "
    "bisects). Do not list reasoning steps, theorems, values the solution computes, or the final answer, and do "
    "not describe colours or styles. Use LaTeX for math. Answer with one tag per item and nothing else:\n"
    "<info1>first fact</info1>\n<info2>second fact</info2>\n...\n"
    "Examples:\n"
)


def _example(question: str, cot: str, facts: list[str]) -> str:
    tags = "\n".join(f"<info{i}>{f}</info{i}>" for i, f in enumerate(facts, 1))
    return f"Question: {question}\nSolution: {cot}\nVisual key information:\n{tags}\n\n"


EXTRACT_SYSTEM_PROMPT = EXTRACT_SYSTEM + "".join(_example(*ex) for ex in _EXAMPLES)


def extract_messages(question: str, cot: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": EXTRACT_SYSTEM_PROMPT},
        {"role": "user", "content": f"Question: {question}\nSolution: {cot}\nVisual key information:\n"},
    ]


def annotations_schema(max_items: int, max_chars: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "annotations": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": max_chars},
                "minItems": 1,
                "maxItems": max_items,
            }
        },
        "required": ["annotations"],
        "additionalProperties": False,
    }
