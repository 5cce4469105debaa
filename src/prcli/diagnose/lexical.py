"""The lexical three-way verdict: offline, deterministic, for what a regular expression can read.

A fact is `contradicted` when the response states one of the fact's quantities (a segment, angle or
arc named by its points, `AB = 6`, `angle B is 40`) only with other values, or puts the fact's two
named lines in the opposite relation (parallel vs perpendicular); `consistent` when its key terms
appear in the response (`prcli.judge.lexical`); `absent` otherwise. A value that starts a
computation (`AB = 2 * 3`) or an unknown (`AB = 2x`) is not a statement of the quantity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from prcli.judge.lexical import RELATIONS, ResponseIndex, canonical_number, normalise, reflected

Verdict = Literal["consistent", "contradicted", "absent"]
VERDICTS: tuple[Verdict, ...] = ("consistent", "contradicted", "absent")

_STATEMENT = re.compile(
    r"(?:\b(?P<kind>angle|arc)\s+)?\b(?P<name>[A-Z]{1,3})\b"
    r"\s*(?:=|:|\bis(?:\s+equal\s+to)?\b|\bequals\b|\bmeasures\b|\bhas\s+(?:a\s+)?(?:length|measure)(?:\s+of)?\b)"
    r"\s*(?P<value>-?\d+(?:\.\d+)?)(?:\s*(?:cm|mm|km|m|in|ft|units?)\b)?(?!\s*[-+*/^(]|\w|\.\d)"
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


def stated_values(text: str) -> dict[str, set[str]]:
    """{quantity: the values the text states for it}."""
    out: dict[str, set[str]] = {}
    for m in _STATEMENT.finditer(text):
        subject = _subject(m.group("kind"), m.group("name"))
        if subject is not None:
            out.setdefault(subject, set()).add(canonical_number(m.group("value")))
    return out


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

    @classmethod
    def of(cls, response: str) -> StatedResponse:
        return cls(ResponseIndex.of(response), stated_values(normalise(response)), _relations(response))


def fact_verdict(fact: str, response: StatedResponse) -> Verdict:
    for subject, values in stated_values(normalise(fact)).items():
        said = response.values.get(subject)
        if said and not (values & said):
            return "contradicted"
    for lines, relations in _relations(fact):
        for said_lines, said in response.relations:
            if lines <= said_lines and not (relations & said) and {_OPPOSITE[r] for r in relations} & said:
                return "contradicted"
    return "consistent" if reflected(fact, response.index) else "absent"


def lexical_fact_verdicts(facts: list[str], response: str) -> list[Verdict]:
    stated = StatedResponse.of(response)
    return [fact_verdict(f, stated) for f in facts]
