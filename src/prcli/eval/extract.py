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

from prcli.verify import last_boxed

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
# what makes a string name an option letter: "option B" / "(B) ..." / "B", "B.", "B:", "B)" (text may
# follow) / "A (5)" (a closed parenthesis, then the end or punctuation) / "B - dog" / in a marked
# answer only, "C, Opposite" ("A, B" lists letters; "I, ..." is the pronoun). A word ("A triangle",
# "I think"), "A (partially hidden) cat" and an unmarked "A, as shown, ..." are prose
_LETTER_LIKE = re.compile(
    r"(?i:(?:the )?(?:option|choice|letter)\s*[:#]?\s*)(?:\(([A-Z])\)|([A-Z])\b)"
    r"|\(([A-Z])\)|\[([A-Z])\]|([A-Z])(?:$|[.:)]|\s*[(（][^()（）\n]*[)）](?=\s*(?:$|[.,;:。，]))|\s+[-–—]\s)"
)
_LETTER_COMMA = re.compile(r"([A-Z])(?<!I),(?!\s*[A-Z]\b)")
# what rejects the letter just named: "Option A is wrong", "(A) is not", "A cannot"
_REJECTED = re.compile(
    r"\s*(?:(?:is|was)\s+(?:not|wrong|incorrect|false)\b|(?:is|was)n'?t\b|wrong\b|incorrect\b"
    r"|cannot\b|can'?t\b|can not\b)",
    re.IGNORECASE,
)
# a commitment that names the letter first: "option (E) is the correct answer", "(B) is correct"
_LETTER_FIRST = re.compile(
    r"(?:\b(?:option|choice)\s*)?\((?-i:([A-Z]))\)\s+is\s+(?:the\s+)?(?:correct|right|best)\b"
    r"|\b(?:option|choice)\s+(?-i:([A-Z]))\s+is\s+(?:the\s+)?(?:correct|right|best)\b",
    re.IGNORECASE,
)
# a LaTeX inline-math wrapper around a whole answer: "\(B\)", "\[B\]"
_LATEX_WRAP = re.compile(r"\\\((.*)\\\)|\\\[(.*)\\\]", re.DOTALL)


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


def _unwrap(text: str) -> str:
    """An answer without a LaTeX wrapper around all of it: `\\(B\\)` -> `B`."""
    m = _LATEX_WRAP.fullmatch(text.strip())
    return next(g for g in m.groups() if g is not None).strip() if m else text


def extract_answer(response: str) -> Extraction:
    text = (response or "").strip()
    if not text:
        return Extraction("", "empty")
    tag = _ANSWER_TAG.search(text)
    if tag:
        inner = tag.group(1).strip()
        boxed = last_boxed(inner)
        return Extraction(boxed if boxed is not None else _unwrap(inner), "answer_tag")
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    # the last commitment: a phrase with something after it, or one naming its letter first
    found: list[tuple[int, str]] = [
        (m.end(), next(g for g in m.groups() if g)) for m in _LETTER_FIRST.finditer(text)
    ]
    for phrase in reversed(list(_PHRASES.finditer(text))):
        tail = text[phrase.end() :].strip().split("\n", 1)[0].strip()
        tail = _unwrap(re.sub(r"[.。]\s*$", "", tail).strip().strip("*").strip())
        if tail:
            found.append((phrase.end(), tail))
            break
    if found:
        return Extraction(max(found)[1], "phrase")
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


def _letter_match(text: str, letters: str, marked: bool) -> tuple[str, str] | None:
    """(letter, what follows it) if `text` starts with a letter written as one and not rejected."""
    text = _unwrap(text.strip(_MARKUP)).strip(_MARKUP)
    m = _LETTER_LIKE.match(text) or (_LETTER_COMMA.match(text) if marked else None)
    if m is None:
        return None
    letter, rest = next(g for g in m.groups() if g), text[m.end() :]
    if letter not in letters or _REJECTED.match(rest):
        return None
    return letter, rest


def letter_like(text: str, letters: str, marked: bool = True) -> str | None:
    """The option letter `text` starts with, if it is written as one (`B`, `(B) 93`, `B: a dog`,
    `option B`, `**B.**`), is one of `letters` and is not rejected ("option A is wrong"); None for
    prose ("A triangle", "I think"). `marked=False` (a whole response): no "A, ..." form."""
    m = _letter_match(text, letters, marked)
    return m[0] if m else None


def read_option(
    text: str, choices: list[str] | None, letters: str | None = None, marked: bool = True
) -> tuple[str | None, str]:
    """(letter, how) for the option `text` gives: how is "letter" (written as one), "text" (the
    option's text, see `choice_letter`), "mention" (`mentioned_option`), "conflict" (a letter whose
    stated value is another option's or another number: "(D) 140°" with D "20°") or "" (none)."""
    if not text:
        return None, ""
    valid = letters or (LETTERS[: len(choices)] if choices else LETTERS)
    m = _letter_match(text, valid, marked)
    if m is not None:
        letter, rest = m
        return (
            (letter, "letter")
            if not choices or not _contradicts(rest, letter, choices)
            else (None, "conflict")
        )
    if not choices:
        return None, ""
    by_text = choice_letter(text, choices, valid, marked)
    if by_text is not None:
        return by_text, "text"
    mention = mentioned_option(text, choices)
    return (mention, "mention") if mention is not None else (None, "")


def _contradicts(rest: str, letter: str, choices: list[str]) -> bool:
    """Whether the value stated after a letter is not that option's: a short value whose numbers
    differ from the option's ("(D) 140°" with D "20°"), else another option's text ("(D) quarter
    past" with D "quarter to")."""
    rest = re.sub(r"^[\s.:)\-–—,]+", "", rest).strip(_MARKUP + ".")
    index = LETTERS.index(letter)
    if not rest or index >= len(choices) or _norm(rest) == _norm(choices[index]):
        return False
    stated, own = _NUMBER.findall(rest), _NUMBER.findall(choices[index])
    if stated and own and len(rest.split()) <= 3:
        return [float(n.replace(",", "")) for n in stated] != [float(n.replace(",", "")) for n in own]
    other = choice_letter(rest, choices, marked=False)
    return other is not None and other != letter


def choice_letter(
    text: str, choices: list[str] | None = None, letters: str | None = None, marked: bool = True
) -> str | None:
    """The option `text` names: a letter written as one (see `letter_like`), else an option's text
    (exactly, or at the start: "dog, because ..."; the longest such option)."""
    if not text:
        return None
    valid = letters or (LETTERS[: len(choices)] if choices else LETTERS)
    letter = letter_like(text, valid, marked)
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


# prose that says no option fits: "this option is not available in the choices", "None of the
# options matches", "we cannot provide a definitive answer", "不在选项中"
_NO_OPTION = re.compile(
    r"not (?:available )?(?:in|among|one of) the (?:given |provided |answer )?(?:options|choices)"
    r"|(?:options|choices)(?: provided| given)? (?:do|does) not (?:include|contain|match)"
    r"|(?:none|neither) of the (?:given |provided |answer )?(?:options|choices)"
    r"|not an? (?:option|choice)\b|no (?:option|choice) (?:matches|fits|is correct)"
    r"|cannot (?:provide|be provided|answer)|can't (?:provide|answer)|unable to (?:provide|answer)"
    r"|不在选项|选项中没有",
    re.IGNORECASE,
)


def mentioned_option(text: str, choices: list[str]) -> str | None:
    """The letter of the one option whose text appears in `text` as a phrase of its own (VLMEvalKit's
    `can_infer_text`): prose that names exactly one option commits to it. None if it names none or
    several (an option inside a longer one that also appears, "one" in "white one", does not count),
    or if the prose says no option fits or declines to answer."""
    if _NO_OPTION.search(text):
        return None
    norm = _norm(text)
    hits = {i: c for i, c in _phrases(choices) if re.search(r"(?<![\w.])" + re.escape(c) + _END, norm)}
    named = [i for i, c in hits.items() if not any(j != i and c in d for j, d in hits.items())]
    return LETTERS[named[0]] if len(named) == 1 else None
