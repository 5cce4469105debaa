"""The instruction texts the method uses, verbatim, and how a question becomes a chat turn."""

from __future__ import annotations

from typing import Any

# Perception-R1's format instruction, appended to the question in the user turn. This one-line text is
# what the released run fed the policy (its launch script's line-broken value is folded by the config
# loader's YAML rules: a line break plus the next line's indent becomes one space) and what the eval
# scripts use.
R1_FORMAT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags, and the answer process MUST BE "
    "enclosed within <answer> </answer> tags. The final answer MUST BE put in \\boxed{} in <answer> </answer> tags."
)
# The launch script's literal text, before the loader folded it (never fed to the released policy).
R1_FORMAT_MULTILINE = R1_FORMAT.replace("answer. The", "answer.\n The").replace("tags. The", "tags.\n The")
COT_BOXED = "Please reason step by step, and put your final answer within \\boxed{}."

TEMPLATES = {
    "r1": "{question} " + R1_FORMAT,
    "r1-multiline": "{question} " + R1_FORMAT_MULTILINE,
    "cot": "{question}\n" + COT_BOXED,
    "plain": "{question}",
}

IMAGE_PLACEHOLDER = "<image>"


def render_template(template: str, question: str) -> str:
    """A named template (`r1`, `r1-multiline`, `cot`, `plain`) or a custom one containing `{question}`."""
    fmt = TEMPLATES.get(template, template)
    if "{question}" not in fmt:
        raise ValueError(f"prompt template must be one of {', '.join(TEMPLATES)} or contain '{{question}}'")
    return fmt.replace("{question}", question)


def user_content(text: str, n_images: int, placeholder: str = IMAGE_PLACEHOLDER) -> list[dict[str, Any]]:
    """Chat content parts: each `placeholder` in `text` becomes an image part where it stands.

    Images beyond the placeholders (or all of them, when the text has none) go first, the way
    Qwen-VL and TRL place them.
    """
    pieces = text.split(placeholder)
    n_inline = min(len(pieces) - 1, n_images)
    parts: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images - n_inline)]
    for i, piece in enumerate(pieces):
        if i > 0:
            parts.append({"type": "image"} if i <= n_inline else {"type": "text", "text": placeholder})
        if piece:
            parts.append({"type": "text", "text": piece})
    return _merge_text(parts)


def _merge_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and merged and merged[-1]["type"] == "text":
            merged[-1] = {"type": "text", "text": merged[-1]["text"] + part["text"]}
        else:
            merged.append(part)
    return merged
