"""Rule-based answer extraction shared by the benchmarks (benchmarks.md section 10.1, step 3).

`extract_answer` finds what a chain-of-thought response commits to: the `<answer>` block (the first,
as Perception-R1 does), else the last balanced `\\boxed{}`, else the text after the last commitment
phrase ("the answer is", "The correct option is", "Answer:", "Choice:", "答案是" ...), else a last
line that is only an option letter ("... so the answer is\\n\\nB", "**B**"), else the response itself.
Each benchmark then applies its official normaliser and comparator to that short string.

`choice_letter` reads an option from such a string. It accepts only what is letter-like (`B`, `B.`,
`(B)`, `B) text`, `B: text`, `option B`, `A (5)`) or an option's own text, so prose that merely
starts with a capital ("A triangle ...", "I think ...", "Because ...") never names an option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# How `method` says the rules found no answer; such items are scored wrong, never guessed right.
UNDECIDED_METHODS = frozenset({"raw", "empty", "random", "unmatched"})

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_PHRASES = re.compile(
    r"(?:answer(?: choice| option| letter)? (?:is|should be|would be)"
    r"|(?:correct|right|best|final) (?:option|choice)(?: letter)? (?:is|should be|would be)"
    r"|answer[*\s]*:|choice[*\s]*:|答案(?:是|为|：|:))"
    r"(?:\s*(?:therefore|thus),?)?\s*:?\s*",
    re.IGNORECASE,
)
_MARKUP = "*_$` \t\n"
_LONE_LETTER_LINE = re.compile(r"\(?([A-Z])\)?\.?")
# what makes a string name an option letter: "option B" / "(B) ..." / "B", "B.", "B:", "B)", "B, no"
# (text may follow; "A, B" lists letters; "I, ..." is the pronoun) / "B (5)", "B - dog"; a word ("A
# triangle", "I think") is prose, not an option
_LETTER_LIKE = re.compile(
    r"(?i:(?:the )?(?:option|choice|letter)\s*[:#]?\s*)(?:\(([A-Z])\)|([A-Z])\b)"
    r"|\(([A-Z])\)|\[([A-Z])\]|([A-Z])(?:$|[.:)]|(?<!I),(?!\s*[A-Z]\b)|\s*[(（]|\s+[-–—]\s)"
)


@dataclass(frozen=True)
class Extraction:
    text: str
    method: str  # answer_tag | boxed | phrase | last_line | raw | empty

    @property
    def decided(self) -> bool:
        """False when nothing marked the answer (the whole response is the fallback)."""
        return self.method not in UNDECIDED_METHODS

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
    for phrase in reversed(list(_PHRASES.finditer(text))):  # the last phrase with something after it
        tail = text[phrase.end() :].strip().split("\n", 1)[0].strip()
        tail = re.sub(r"[.。]\s*$", "", tail).strip().strip("*").strip()
        if tail:
            return Extraction(tail, "phrase")
    last_line = text.rsplit("\n", 1)[-1].strip(_MARKUP)
    lone = _LONE_LETTER_LINE.fullmatch(last_line)
    if lone:
        return Extraction(lone.group(1), "last_line")
    return Extraction(text, "raw")


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The number a plain-prose answer ends on: the last bold (`**16 m**`) one, else the last one."""
    for source in (" ".join(re.findall(r"\*\*(.+?)\*\*", text)), text):
        numbers = _NUMBER.findall(source)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def letter_like(text: str, letters: str) -> str | None:
    """The option letter `text` starts with, if it is written as one (`B`, `(B) 93`, `B: a dog`,
    `option B`, `**B.**`), and is one of `letters`; None for prose ("A triangle", "I think")."""
    m = _LETTER_LIKE.match(text.strip(_MARKUP))
    if m is None:
        return None
    letter = next(g for g in m.groups() if g)
    return letter if letter in letters else None


def choice_letter(text: str, choices: list[str] | None = None, letters: str | None = None) -> str | None:
    """The option `text` names: a letter written as one (see `letter_like`), else an option's text
    (exactly, or at the start: "dog, because ..."; the longest such option)."""
    if not text:
        return None
    valid = letters or (LETTERS[: len(choices)] if choices else LETTERS)
    letter = letter_like(text, valid)
    if letter is not None or not choices:
        return letter
    norm = _norm(text)
    exact = [i for i, c in enumerate(choices) if _norm(c) == norm]
    if exact:
        return LETTERS[exact[0]]
    starts = [(len(c), i) for i, c in _phrases(choices) if re.match(re.escape(c) + _END, norm)]
    return LETTERS[max(starts)[1]] if starts else None


def _norm(text: str) -> str:
    return " ".join(str(text).lower().replace("$", "").split()).rstrip(".")


_END = r"(?![\w]|[.,]\d)"  # where an option's text ends inside prose: not "12" for "1", not "1.5" for "1"


def _phrases(choices: list[str]) -> list[tuple[int, str]]:
    """Options whose text can be found inside longer text: not empty, and not a lone letter (option
    texts "A", "B" would match the article "a" or any capital)."""
    return [
        (i, c)
        for i, c in ((i, _norm(c)) for i, c in enumerate(choices))
        if c and not re.fullmatch(r"[a-z]", c)
    ]


def mentioned_option(text: str, choices: list[str]) -> str | None:
    """The letter of the one option whose text appears in `text` as a phrase of its own (VLMEvalKit's
    `can_infer_text`): prose that names exactly one option commits to it. None if it names none or
    several (an option inside a longer one that also appears, "one" in "white one", does not count)."""
    norm = _norm(text)
    hits = {i: c for i, c in _phrases(choices) if re.search(r"(?<![\w.])" + re.escape(c) + _END, norm)}
    named = [i for i, c in hits.items() if not any(j != i and c in d for j, d in hits.items())]
    return LETTERS[named[0]] if len(named) == 1 else None
