"""Rule-based answer extraction shared by the benchmarks (benchmarks.md section 10.1, step 3).

`extract_answer` finds what a chain-of-thought response commits to: the `<answer>` block (the first,
as Perception-R1 does), else the last balanced `\\boxed{}`, else the text after the last
"answer is" / "Answer:" phrase, else the response itself. Each benchmark then applies its official
normaliser and comparator to that short string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_PHRASES = re.compile(
    r"(?:final answer is|correct answer is|answer should be|answer is|answer:|final answer:)\s*:?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Extraction:
    text: str
    method: str  # answer_tag | boxed | phrase | raw | empty

    @property
    def decided(self) -> bool:
        """False when nothing marked the answer (the whole response is the fallback)."""
        return self.method not in ("raw", "empty")

    def for_math_verify(self) -> str:
        """What to hand math-verify: an extracted answer boxed (bare LaTeX such as `2\\sqrt{3}` is
        otherwise read as `2`), an undecided response as it is."""
        return f"\\boxed{{{self.text}}}" if self.decided else self.text


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{}`) with balanced braces; `\\text{}` unwrapped."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            content = text[start : i - 1].strip()
            inner = re.fullmatch(r"\\text(?:bf)?\{(.*)\}", content, re.DOTALL)
            return inner.group(1).strip() if inner else content
    return None


def extract_answer(response: str) -> Extraction:
    text = (response or "").strip()
    if not text:
        return Extraction("", "empty")
    tag = _ANSWER_TAG.search(text)
    if tag:
        inner = tag.group(1).strip()
        boxed = last_boxed(inner)
        return Extraction(boxed if boxed is not None else inner, "answer_tag")
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    phrases = list(_PHRASES.finditer(text))
    if phrases:
        tail = text[phrases[-1].end() :].strip()
        tail = tail.split("\n", 1)[0].strip()
        tail = re.sub(r"[.。]\s*$", "", tail).strip().strip("*").strip()
        if tail:
            return Extraction(tail, "phrase")
    return Extraction(text, "raw")


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The number a plain-prose answer ends on: the last bold (`**16 m**`) one, else the last one."""
    for source in (" ".join(re.findall(r"\*\*(.+?)\*\*", text)), text):
        numbers = _NUMBER.findall(source)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


_LETTER_ONLY = re.compile(r"^\s*\(?\s*([A-Z])\s*\)?\s*(?:[.:)]|$)")


def choice_letter(text: str, choices: list[str] | None = None, letters: str | None = None) -> str | None:
    """The option letter `text` names: `B`, `(B)`, `B.`, `B: ...`, or an option's exact text."""
    if not text:
        return None
    valid = letters or ("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)] if choices else None)
    m = _LETTER_ONLY.match(text)
    if m and (valid is None or m.group(1) in valid):
        return m.group(1)
    if choices:
        norm = _norm(text)
        for i, choice in enumerate(choices):
            if _norm(choice) == norm:
                return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i]
    return None


def _norm(text: str) -> str:
    return " ".join(str(text).lower().replace("$", "").split()).rstrip(".")
