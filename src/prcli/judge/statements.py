"""What a response states, read by regular expressions: the lexical judge's verdicts.

A fact is `contradicted` when the response states one of the fact's quantities (a segment, angle or
arc named by its points, `AB = 6`, `angle B is 40`; the colour of a shape named by its place, `the
left shape is red`; a count, `there are 3 red circles`) only with other values, or puts the fact's
two named lines in the opposite relation (parallel vs perpendicular); `consistent` when its key
terms appear in the response (`prcli.judge.lexical`) and it is not contradicted; `absent` otherwise.
A colour or count fact is `consistent` only where the response states it in one of these forms (its
words elsewhere earn nothing); a shape has one colour, so any other colour stated for its place
contradicts. Counts split over sentences (`2 ... and 1 ..., 3 in all`) are read as other values.
The lexical judge (`pr judge --backend lexical`, the demo's perception reward) counts a fact as
reflected when it is `consistent`: naming the right words with the wrong value earns nothing. A value that starts a
computation (`AB = 2 * 3`), an unknown (`AB = 2x`) or a further equation (`AB = 6 = ...`) is not a
statement of the quantity; nor is a value after a quantity that ends an expression
(`angle MAN = 180 - angle BAD = 60` states 60 for the expression, not for BAD) or that names the
target of a distance (`the distance from O to the chord AB is 3`). In a chain of bare quantities
(`angle A = angle C = 45`) the value is stated for each of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from prcli.judge.lexical import COLOURS, RELATIONS, ResponseIndex, canonical_number, normalise, reflected

# Names these rules in resume hashes (`pr judge`, `pr diagnose`): a lexical result made under other
# rules is redone, not reused. v2: colours and counts read; the judge counts consistent facts only.
LEXICAL_VERSION = "lexical-v2"

Verdict = Literal["consistent", "contradicted", "absent"]
VERDICTS: tuple[Verdict, ...] = ("consistent", "contradicted", "absent")

_STATEMENT = re.compile(
    r"(?:\b(?P<kind>angle|arc)\s+)?\b(?P<name>[A-Z]{1,3})\b"
    r"\s*(?:=|:|\bis(?:\s+equal\s+to)?\b|\bequals\b|\bmeasures\b|\bhas\s+(?:a\s+)?(?:length|measure)(?:\s+of)?\b)"
    r"\s*(?P<value>-?\d+(?:\.\d+)?)(?:\s*(?:cm|mm|km|m|in|ft|units?)\b)?(?!\s*[-+*/^(=]|\s*:\s*\d|\w|\.\d)"
)
# Rule "ratio": `BD:DC = 2:1` states a ratio, not DC = 2 (the `:\d` after the value above).
# Rule "expression tail": a quantity right after an arithmetic operator that follows an operand on the
# same line (`180 - angle BAD = 60`, `1/2 * AC * DC = 12`) is the last term of an expression, and the
# value after its `=` is the expression's. An operator with no operand before it is a list bullet
# (`- AB = 3`, `* AB = 3`), and the quantity is still the subject.
_EXPRESSION_TAIL = re.compile(r"[\w)\]]\s*[-+*/^×·÷]\s*$")
# Rule "distance target": a segment named as where a distance goes to (`the distance from O to the
# chord AB is 3`, `the distance between O and AB is 3`, `from O to AB is 3`) is not the quantity whose
# value is stated; the value is the distance's.
_DISTANCE_TARGET = re.compile(
    r"(?:\bdistance\s+(?:from|between)\b[^.;:=\n]{0,40}?\b(?:to|and)|\bfrom\s+(?:point\s+)?[A-Z]\s+to)"
    r"\s+(?:the\s+)?(?:(?:chord|line|segment|side)\s+)?$",
    re.IGNORECASE,
)
# Rule "chain of quantities": `angle A = angle C = 45` states 45 for C and, through the chain of bare
# quantities before it, for A; `Q = expr = V` does not reach Q, since the expression is no bare quantity.
_CHAIN_HEAD = re.compile(r"(?:\b(?P<kind>angle|arc)\s+)?\b(?P<name>[A-Z]{1,3})\s*=\s*$")
# A colour given to a shape named by its place (`the left shape is red`, `the largest circle is a blue
# one`, `the shape on the right is not green`, `the top shape: red`): the subject is the place,
# whatever the shape is called. A shape has one colour: any other colour stated for its place
# contradicts the fact; a negated one (`is not red`) only contradicts `red`.
_PLACES = "left|right|top|bottom|upper|lower|middle|largest|smallest|biggest|leftmost|rightmost|first|last"
_SHAPE_WORD = r"(?:shape|circle|square|triangle|one|object)"
_COLOUR_WORD = "|".join(sorted(COLOURS))
_COLOUR_STATEMENT = re.compile(
    rf"\bthe\s+(?:(?P<place>{_PLACES})\s+{_SHAPE_WORD}|{_SHAPE_WORD}\s+on\s+the\s+(?P<side>left|right|top|bottom))"
    rf"\s*(?::\s*|(?:is|was|looks|appears)\s+(?P<neg>not\s+)?(?:(?:coloured|colored)\s+)?(?:an?\s+)?)"
    rf"(?P<value>{_COLOUR_WORD})\b",
    re.IGNORECASE,
)
# A count (`there are 3 red circles`, `there is 1 blue square`): the subject is what is counted.
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
}
_COUNT_STATEMENT = re.compile(
    rf"\bthere\s+(?:is|are)\s+(?P<n>\d+|{'|'.join(_NUMBER_WORDS)})\s+"
    rf"(?P<what>(?:(?:{'|'.join(sorted(COLOURS))})\s+)?(?:shape|circle|square|triangle)s?)\b",
    re.IGNORECASE,
)
_LINE = re.compile(r"\b[A-Z]{2}\b")
_OPPOSITE = {"parallel": "perpendicular", "perpendicular": "parallel"}
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def _subject(kind: str | None, name: str) -> str | None:
    """One key per quantity, whatever the order of its points: `BA` is `AB`, `angle CBA` is `angle ABC`."""
    if kind == "angle":
        if len(name) == 3:
            a, b = sorted((name[0], name[2]))
            name = a + name[1] + b
        elif len(name) != 1:
            return None
        return f"angle {name}"
    if kind is None and len(name) != 2:  # a bare letter is a variable or a point, ABC a figure
        return None
    return f"{kind or 'segment'} {''.join(sorted(name))}"


def _is_subject(before: str) -> bool:
    """Whether a quantity with this text before it (on its line) is the subject of what follows it."""
    return not (_EXPRESSION_TAIL.search(before) or _DISTANCE_TARGET.search(before))


def stated_values(text: str) -> dict[str, set[str]]:
    """{quantity: the values the text states for it}."""
    out: dict[str, set[str]] = {}
    for m in _STATEMENT.finditer(text):
        before = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
        if not _is_subject(before):
            continue
        value = canonical_number(m.group("value"))
        names = [(m.group("kind"), m.group("name"))]
        while (head := _CHAIN_HEAD.search(before)) and _is_subject(before[: head.start()]):
            names.append((head.group("kind"), head.group("name")))
            before = before[: head.start()]
        for kind, name in names:
            subject = _subject(kind, name)
            if subject is not None:
                out.setdefault(subject, set()).add(value)
    return out


def stated_attributes(text: str) -> dict[str, set[str]]:
    """{subject: values} of the colour and count statements (rules above); a negated colour is `not red`."""
    out: dict[str, set[str]] = {}
    for m in _COLOUR_STATEMENT.finditer(text):
        place = (m.group("place") or m.group("side")).lower()
        value = ("not " if m.group("neg") else "") + m.group("value").lower()
        out.setdefault(f"colour of the {place} shape", set()).add(value)
    for m in _COUNT_STATEMENT.finditer(text):
        n = m.group("n").lower()
        counted = m.group("what").lower().removesuffix("s")
        out.setdefault(f"number of {counted}s", set()).add(
            _NUMBER_WORDS.get(n, canonical_number(n) if n.isdigit() else n)
        )
    return out


def _plain_lines(text: str) -> str:
    """`normalise` line by line: the line breaks stay, so a bullet (`* AB = 3`) after a line ending in
    `)` is not read as a product (rule "expression tail")."""
    return "\n".join(normalise(line) for line in text.splitlines())


def _relations(text: str) -> list[tuple[frozenset[str], set[str]]]:
    """(the lines named, the parallel/perpendicular relations stated) of each sentence."""
    out = []
    for sentence in _SENTENCE.split(text):
        plain = normalise(sentence)
        words = {RELATIONS.get(w) for w in re.findall(r"[a-z]+", plain.lower())} & set(_OPPOSITE)
        lines = frozenset("".join(sorted(n)) for n in _LINE.findall(plain))
        if words and len(lines) >= 2:
            out.append((lines, {w for w in words if w}))
    return out


@dataclass(frozen=True)
class StatedResponse:
    """What a response says, read once and checked against every fact."""

    index: ResponseIndex
    values: dict[str, set[str]]
    relations: list[tuple[frozenset[str], set[str]]]
    attributes: dict[str, set[str]]

    @classmethod
    def of(cls, response: str) -> StatedResponse:
        index = ResponseIndex.of(response)  # its text is the normalised response
        return cls(
            index, stated_values(_plain_lines(response)), _relations(response), stated_attributes(index.text)
        )


def _attribute_contradicted(subject: str, values: set[str], said: set[str]) -> bool:
    if subject.startswith("colour of"):  # one colour per shape
        negated = {v.removeprefix("not ") for v in said if v.startswith("not ")}
        return bool({v for v in said if not v.startswith("not ")} - values or negated & values)
    return bool(said) and not values & said  # a count: stated only with other numbers


def fact_verdict(fact: str, response: StatedResponse) -> Verdict:
    attributes = stated_attributes(normalise(fact))
    for subject, values in attributes.items():
        if _attribute_contradicted(subject, values, response.attributes.get(subject, set())):
            return "contradicted"
    for subject, values in stated_values(_plain_lines(fact)).items():
        said = response.values.get(subject)
        if said and not (values & said):
            return "contradicted"
    for lines, relations in _relations(fact):
        for said_lines, said in response.relations:
            if lines <= said_lines and not (relations & said) and {_OPPOSITE[r] for r in relations} & said:
                return "contradicted"
    if attributes:  # a colour or count fact holds only where the response states it, not by its words
        stated = all(
            values & response.attributes.get(subject, set()) for subject, values in attributes.items()
        )
        return "consistent" if stated else "absent"
    return "consistent" if reflected(fact, response.index) else "absent"


def lexical_fact_verdicts(facts: list[str], response: str) -> list[Verdict]:
    stated = StatedResponse.of(response)
    return [fact_verdict(f, stated) for f in facts]


def lexical_verdicts(annotations: list[str], response: str) -> list[int]:
    """The lexical judge: 1 for each annotation the response reflects without contradicting it."""
    return [int(v == "consistent") for v in lexical_fact_verdicts(annotations, response)]
