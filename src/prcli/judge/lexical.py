"""The `lexical` judge: a deterministic, model-free baseline.

This module is the presence half: an annotation's key terms all appear in the response -
numbers (units and degree signs ignored), algebraic expressions such as `3f-6`, names of points,
segments, angles and figures (`JK`, `QRST`, `angle B`), relation words (parallel, perpendicular,
bisects, midpoint, ...) and colour words. An annotation without numbers, names or relations falls
back to its content words (at least half must appear), plus its colours. Both texts are normalised
first: LaTeX markup is reduced to plain text (`\\angle` -> `angle`, `\\frac{a}{b}` -> `a/b`,
`^\\circ` dropped). `prcli.judge.statements` adds the other half: an annotation is reflected only
when present and not contradicted (the response gives its quantity or attribute another value).

This is a cheap, reproducible stand-in for the LLM judge (CPU demos, tests, smoke runs), NOT the
paper's judge: paraphrases with other words are missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

RELATIONS = {
    "parallel": "parallel",
    "perpendicular": "perpendicular",
    "bisect": "bisect",
    "bisects": "bisect",
    "bisector": "bisect",
    "midpoint": "midpoint",
    "tangent": "tangent",
    "congruent": "congruent",
    "similar": "similar",
    "isosceles": "isosceles",
    "equilateral": "equilateral",
    "diameter": "diameter",
    "radius": "radius",
    "radii": "radius",
    "chord": "chord",
    "center": "cent",
    "centre": "cent",
    "inscribed": "inscribed",
    "circumscribed": "circumscribed",
    "intersect": "intersect",
    "intersects": "intersect",
    "parallelogram": "parallelogram",
    "rhombus": "rhombus",
    "rectangle": "rectangle",
    "square": "square",
    "trapezoid": "trapezoid",
    "circle": "circle",
    "triangle": "triangle",
    "quadrilateral": "quadrilateral",
    "pentagon": "pentagon",
    "hexagon": "hexagon",
    "alternate": "alternate",
    "supplementary": "supplementary",
    "complementary": "complementary",
    "vertical": "vertical",
    "adjacent": "adjacent",
    "right": "right",
    "arc": "arc",
    "sector": "sector",
    "median": "median",
    "altitude": "altitude",
    "hypotenuse": "hypotenuse",
}

COLOURS = frozenset(
    [
        "red",
        "blue",
        "green",
        "orange",
        "purple",
        "yellow",
        "black",
        "white",
        "gray",
        "grey",
        "pink",
        "brown",
        "cyan",
        "magenta",
        "violet",
    ]
)

STOPWORDS = set(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "and",
        "or",
        "with",
        "by",
        "as",
        "from",
        "that",
        "this",
        "these",
        "those",
        "it",
        "its",
        "has",
        "have",
        "had",
        "given",
        "shown",
        "figure",
        "image",
        "diagram",
        "labeled",
        "labelled",
        "marked",
        "value",
        "measure",
        "measures",
        "length",
        "which",
        "what",
        "there",
        "their",
        "than",
        "then",
        "so",
        "such",
        "each",
        "other",
        "also",
        "into",
        "onto",
    ]
)

_LATEX_WORDS = {
    r"\angle": " angle ",
    r"\triangle": " triangle ",
    r"\parallel": " parallel ",
    r"\perp": " perpendicular ",
    r"\cong": " congruent ",
    r"\sim": " similar ",
    r"\odot": " circle ",
    r"\overline": " ",
    r"\overarc": " arc ",
    r"\widehat": " arc ",
    r"\measuredangle": " angle ",
    r"\pi": "pi",
    r"\cdot": "*",
    r"\times": "*",
    r"\div": "/",
    r"\sqrt": "sqrt",
    r"\left": "",
    r"\right": "",
}
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\^\{\\circ\}|\s*degrees?\b", re.IGNORECASE)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:cm|mm|km|m|in|ft)?(?!\w)")
_EXPR = re.compile(r"\(?[0-9a-z.]+\)?(?:\s*[-+*/^]\s*\(?[0-9a-z.]+\)?)+")
_NAME = re.compile(r"\b[A-Z]{2,4}\b")
_SINGLE_NAME = re.compile(
    r"\b(angle|point|vertex|side|line|segment|ray|arc|circle)\s+([A-Z])\b", re.IGNORECASE
)


def normalise(text: str) -> str:
    """LaTeX-light plain text: markup removed, fractions as a/b, degree signs dropped."""
    text = (
        text.replace("$", " ").replace("\\(", " ").replace("\\)", " ").replace("\\[", " ").replace("\\]", " ")
    )
    text = _DEGREE.sub(" ", text)
    for _ in range(3):
        text = _FRAC.sub(r"(\1)/(\2)", text)
    for cmd, plain in _LATEX_WORDS.items():
        text = text.replace(cmd, plain)
    text = _COMMAND.sub(" ", text)
    text = text.replace("{", "").replace("}", "").replace("∠", " angle ").replace("△", " triangle ")
    text = text.replace("⊥", " perpendicular ").replace("∥", " parallel ").replace("−", "-")
    return re.sub(r"\s+", " ", text).strip()


def _compact(expr: str) -> str:
    return re.sub(r"\s+", "", expr).lower().strip("().")


def canonical_number(token: str) -> str:
    """One spelling per value: `6`, `6.0` and `06` are all `6`."""
    return str(float(token)).removesuffix(".0")


@dataclass(frozen=True)
class KeyTerms:
    numbers: frozenset[str]
    expressions: frozenset[str]
    names: frozenset[str]
    relations: frozenset[str]
    words: frozenset[str]
    colours: frozenset[str]

    @property
    def empty(self) -> bool:
        """No numbers, expressions, names or relations: the content words decide (with the colours)."""
        return not (self.numbers or self.expressions or self.names or self.relations)


@lru_cache(maxsize=65536)
def key_terms(annotation: str) -> KeyTerms:
    text = normalise(annotation)
    lowered = text.lower()
    expressions = {
        _compact(m.group(0))
        for m in _EXPR.finditer(lowered)
        if re.search(r"[a-z]", m.group(0)) and re.search(r"\d", m.group(0))
    }
    names = set(_NAME.findall(text)) | {f"{k.lower()} {v}" for k, v in _SINGLE_NAME.findall(text)}
    words = re.findall(r"[a-z]+", lowered)
    relations = {RELATIONS[w] for w in words if w in RELATIONS}
    content = {w for w in words if len(w) >= 4 and w not in STOPWORDS and w not in COLOURS}
    return KeyTerms(
        numbers=frozenset(canonical_number(n) for n in _NUMBER.findall(text)),
        expressions=frozenset(expressions),
        names=frozenset(names),
        relations=frozenset(relations),
        words=frozenset(content),
        colours=frozenset(w for w in words if w in COLOURS),
    )


@dataclass(frozen=True)
class ResponseIndex:
    """What a response contains, computed once and matched against every annotation."""

    numbers: frozenset[str]
    compact: str
    text: str
    lowered_words: frozenset[str]

    @classmethod
    def of(cls, response: str) -> ResponseIndex:
        text = normalise(response)
        words = re.findall(r"[a-z]+", text.lower())
        return cls(
            numbers=frozenset(canonical_number(n) for n in _NUMBER.findall(text)),
            compact=re.sub(r"\s+", "", text).lower(),
            text=text,
            lowered_words=frozenset(RELATIONS.get(w, w) for w in words),
        )

    def has_name(self, name: str) -> bool:
        if " " in name:  # "angle B": the kind word and the letter; a point may be named bare
            kind, letter = name.split(" ", 1)
            if kind in ("point", "vertex") and re.search(rf"\b{letter}\b", self.text):
                return True
            return re.search(rf"\b{kind}\s*{letter}\b", self.text, re.IGNORECASE) is not None
        return re.search(rf"\b{name}\b", self.text) is not None


def reflected(annotation: str, response: ResponseIndex) -> bool:
    terms = key_terms(annotation)
    if not terms.colours <= response.lowered_words:
        return False
    if terms.empty:
        if not terms.words:
            return bool(terms.colours)
        hits = sum(1 for w in terms.words if w in response.lowered_words)
        return hits * 2 >= len(terms.words)
    return (
        terms.numbers <= response.numbers
        and all(e in response.compact for e in terms.expressions)
        and all(response.has_name(n) for n in terms.names)
        and terms.relations <= response.lowered_words
    )
