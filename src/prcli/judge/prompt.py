"""The perception judge's prompt and the parser of its verdicts.

Same structure as the official judge (method.md 2.6): a system prompt with three worked examples,
annotations numbered as `<info1>..</info1>` lines, the user turn `Visual Key Information: ...\\n
Response: ...\\n`, and one `<infoK>1 or 0</infoK>` tag per annotation in the answer. The wording and
the examples are our own (the published prompt's calibration examples differ): `--judge-prompt FILE`
runs any other system text, the published one included, and every judgement records the SHA-256 of
the system text it was made with (also part of cache keys and resume hashes). PROMPT_VERSION names
the rest (the user turn, the parser): bump it when they change; it is part of cache keys too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prcli.errors import StageError

PROMPT_VERSION = "pr-judge-v1"

_EXAMPLES = [
    (
        [
            "$JKLM$ is a parallelogram.",
            "Side $JK$ has length $3f - 6$.",
            "Side $ML$ has length $2f + 8$.",
        ],
        "Sides JK and ML lie opposite each other, so they have the same length:\n"
        "\\[ 3f - 6 = 2f + 8 \\]\nSubtracting 2f and adding 6 on both sides gives f = 14.\n"
        "So f is \\(\\boxed{14}\\).",
        [0, 1, 1],
    ),
    (
        [
            "$QRST$ is a quadrilateral.",
            "The interior angles of a quadrilateral add up to 360 degrees.",
            "$m\\angle Q = (2x + 5)^\\circ$",
            "$m\\angle R = x^\\circ$",
            "$m\\angle S = (2x + 7)^\\circ$",
            "$m\\angle T = x^\\circ$",
        ],
        "The figure shows quadrilateral QRST, whose angles sum to 360 degrees.\n"
        "We read \\( \\angle Q = (2x + 5)^\\circ \\), \\( \\angle R = x^\\circ \\) and \\( \\angle T = x^\\circ \\). "
        "Taking \\( \\angle S \\) to equal \\( \\angle R \\):\n\\[ (2x + 5) + x + x + x = 360 \\]\n"
        "so 5x = 355 and x = 71. Then \\( \\angle S = \\boxed{71^\\circ} \\).",
        [1, 1, 1, 1, 0, 1],
    ),
    (
        [
            "$m\\angle ABD = (4y + 4)^\\circ$",
            "$m\\angle CDB = (y^2 - 1)^\\circ$",
            "$\\angle ABD$ and $\\angle CDB$ are alternate interior angles.",
        ],
        "ABCD looks like a rectangle, so each of its angles is 90 degrees.\n"
        "Angle C is marked \\( (4y + 4)^\\circ \\) and angle D is marked \\( (y^2 - 1)^\\circ \\).\n"
        "From angle C: 4y + 4 = 90, so y = 21.5.",
        [0, 0, 0],
    ),
]

_INSTRUCTIONS = (
    "You check a solution to a multimodal math problem against a numbered list of visual key information: "
    "facts read off the problem's figure. For each item, decide whether the Response states that information. "
    "Answer 1 if the response clearly reflects the item, and 0 if it is missing, only hinted at, or attached to "
    "the wrong object (for example a value given to a different angle or side). "
    "Judge presence only, not whether the information or the response is correct or relevant. "
    "Answer with one tag per item, in order, and nothing else: <info1>1 or 0</info1>, <info2>1 or 0</info2>, "
    "and so on.\n"
    "Examples:\n"
)


def format_annotations(annotations: list[str]) -> str:
    """`<info1>a</info1>\\n<info2>b</info2>...`: the released data's `visual_key_info` layout."""
    return "\n".join(f"<info{i}>{a}</info{i}>" for i, a in enumerate(annotations, 1))


def format_verdicts(verdicts: list[int]) -> str:
    return "\n".join(f"<info{i}>{v}</info{i}>" for i, v in enumerate(verdicts, 1))


def user_message(annotations: list[str], response: str) -> str:
    return f"Visual Key Information: {format_annotations(annotations)}\nResponse: {response}\n"


SYSTEM_PROMPT = _INSTRUCTIONS + "".join(
    user_message(annotations, response) + f"Judgement: {format_verdicts(verdicts)}\n"
    for annotations, response, verdicts in _EXAMPLES
)


@dataclass(frozen=True)
class JudgePrompt:
    """The judge's system text (instructions and worked examples) and where it came from."""

    system: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.system.encode("utf-8")).hexdigest()


BUILTIN_PROMPT = JudgePrompt(SYSTEM_PROMPT, f"built-in {PROMPT_VERSION}")


def load_judge_prompt(path: Path | None) -> JudgePrompt:
    """The system text in `path` (used verbatim), or prcli's own wording when `path` is None.

    A text that never mentions the `<infoK>` tags is refused: the verdicts are read from those tags,
    so a judge never asked for them would score every response 0 without any error.
    """
    if path is None:
        return BUILTIN_PROMPT
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StageError(f"judge prompt file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise StageError(f"{path}: the judge prompt is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise StageError(f"cannot read judge prompt {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise StageError(f"{path}: the judge prompt is empty")
    if "<info" not in text:
        raise StageError(
            f"{path}: the judge prompt never mentions the <info1>1 or 0</info1> answer tags that "
            "verdicts are read from; every response would score 0"
        )
    return JudgePrompt(text, str(path))


def build_messages(
    annotations: list[str], response: str, prompt: JudgePrompt = BUILTIN_PROMPT
) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": user_message(annotations, response)},
    ]


_TAG = re.compile(r"<info(\d+)>(.+?)</info\1>", re.DOTALL)


def _clamp(value: Any) -> float:
    try:
        x = float(str(value).strip())
    except (TypeError, ValueError):
        return 0.0
    if x != x:  # NaN
        return 0.0
    return max(0.0, min(1.0, x))


def _tidy(x: float) -> int | float:
    return int(x) if x in (0.0, 1.0) else x


def parse_verdicts(text: str | None, n: int) -> tuple[list[int | float], int]:
    """(one verdict per annotation, how many the judge actually gave).

    Like the official parser, the last `<infoK>` tag for each K wins and values are clamped to
    [0, 1] (a non-number is 0). Unlike it, a missing tag is a 0 for that annotation, so a judge that
    answers only `<info1>1</info1>` for five annotations scores 0.2, not 1.0. Tags beyond `n` are
    ignored. A JSON object `{"info1": 1, ...}` (structured output) is read the same way.
    """
    values: dict[int, float] = {}
    if text:
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                obj = json.loads(stripped)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                for key, value in obj.items():
                    m = re.fullmatch(r"info(\d+)", str(key))
                    if m:
                        values[int(m.group(1))] = _clamp(value)
        for m in _TAG.finditer(text):
            values[int(m.group(1))] = _clamp(m.group(2))
    verdicts = [_tidy(values.get(k, 0.0)) for k in range(1, n + 1)]
    found = sum(1 for k in range(1, n + 1) if k in values)
    return verdicts, found


def verdict_regex(n: int) -> str:
    """The exact answer shape for `n` annotations, for servers with regex-constrained decoding."""
    return "\\n".join(f"<info{k}>[01]</info{k}>" for k in range(1, n + 1))


def verdict_json_schema(n: int) -> dict[str, Any]:
    keys = [f"info{k}" for k in range(1, n + 1)]
    return {
        "type": "object",
        "properties": {k: {"type": "integer", "enum": [0, 1]} for k in keys},
        "required": keys,
        "additionalProperties": False,
    }
