"""The optional LLM answer judge: decides items the rules could not (no answer marked in the response).

The prompt follows Perception-R1's evaluation judge (method.md 4.3): a system message asking whether
the **Response** is correct given the **Ground Truth Answer**, replying true or false; the user turn
holds the choices (when there are any), the response and the ground truth. The judge's raw answer
and model are recorded on every item it decided.
"""

from __future__ import annotations

from typing import Any

from prcli.eval.base import LETTERS
from prcli.llm import LLMClient

PROMPT_VERSION = "pr-answer-judge-v1"
SYSTEM = (
    "You are given a model's **Response** to a question and the **Ground Truth Answer**. Judge if the **Response** "
    "is correct based on the **Ground Truth Answer**. Reply 'true' if it is correct, otherwise reply 'false'. "
    "Reply with that single word."
)


def judge_messages(response: str, answer: Any, choices: list[str] | None) -> list[dict[str, str]]:
    lines = []
    if choices:
        lines.append("**Choices**: " + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)))
    lines.append(f"**Response**: {response}")
    lines.append(f"**Ground Truth Answer**: {answer}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def parse_true_false(text: str | None) -> bool | None:
    if not text:
        return None
    words = text.strip().lower().replace("*", "").replace("'", "").replace('"', "").split()
    if not words:
        return None
    if words[0].startswith("true") or words[0] == "correct":
        return True
    if words[0].startswith("false") or words[0] == "incorrect":
        return False
    return None


async def judge_answer(
    client: LLMClient, response: str, answer: Any, choices: list[str] | None
) -> dict[str, Any]:
    """{"verdict": True/False/None, "raw": judge text, "error": message or None}."""
    result = await client.chat(judge_messages(response, answer, choices), temperature=0.0, max_tokens=16)
    if not result.ok:
        return {"verdict": None, "raw": None, "error": result.error}
    return {"verdict": parse_true_false(result.text), "raw": result.text, "error": None}
