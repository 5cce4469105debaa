"""From an extractor's answer (or, with the `rules` extractor, from the CoT itself) to clean annotations."""

from __future__ import annotations

import json
import re

from prcli.judge.lexical import COLOURS

# ----------------------------------------------------------------------------- LLM answers

_TAG = re.compile(r"<info(\d+)>(.*?)</info\1>", re.DOTALL)
_LISTED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$", re.MULTILINE)


def parse_annotations(text: str | None) -> list[str]:
    """Annotations from an extractor's answer: a JSON object or list, `<infoK>` tags, or a
    numbered/bulleted list, tried in that order; anything else gives none."""
    if not text:
        return []
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            obj = obj.get("annotations")
        if isinstance(obj, list):
            return [str(x) for x in obj if isinstance(x, (str, int, float))]
    tags = _TAG.findall(text)
    if tags:
        return [body for _, body in sorted(tags, key=lambda t: int(t[0]))]
    return _LISTED.findall(text)


def clean_annotations(items: list[str], *, max_items: int = 12, max_chars: int = 200) -> list[str]:
    """Strip, drop empty and over-long items, drop duplicates (case and spacing ignored), cap the count."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        text = " ".join(item.split()).strip().strip('"').strip()
        if not text or len(text) > max_chars:
            continue
        key = text.casefold().rstrip(".")
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
        if len(out) == max_items:
            break
    return out


# ----------------------------------------------------------------------------- the rules extractor

_CUES = re.compile(
    r"\b(figure|diagram|image|picture|graph|shown|given|labell?ed|marked|depicted|we see|we can see|observe)\b",
    re.IGNORECASE,
)
_RELATIONS = re.compile(
    r"\b(parallel|perpendicular|midpoint|bisect\w*|tangent|diameter|radius|radii|chord|inscribed|circumscribed|"
    r"right angle|right triangle|congruent|isosceles|equilateral|center|centre|intersect\w*|lies on|on the circle|"
    r"parallelogram|rhombus|rectangle|square|trapezoid)\b|\\(?:parallel|perp|cong)\b|[⊥∥]",
    re.IGNORECASE,
)
_MEASURE = re.compile(
    r"(?:(?-i:\b[A-Z]{2,3}\b)|(?:\\angle|\bangle|∠)\s*(?:[A-Z]{1,3}|\d+)\b)\s*(?:=|is|measures)\s*"
    r"\(?\s*-?(?:\d+(?:\.\d+)?\s*[a-z]?|[a-z])(?:\s*[-+]\s*\d+(?:\.\d+)?)?\s*\)?"
    r"\s*(?:\^\s*\{?\\circ\}?|°|degrees?|cm|mm|m|in|ft|units?)?(?![\d\w.*/^=])",
    re.IGNORECASE,
)
_INFERENCE = re.compile(
    r"\b(therefore|thus|hence|so|we get|gives|solve|solving|substitut\w*|calculate\w*|compute\w*|theorem|"
    r"formula|answer|find|need|let|implies|which means|plug\w*)\b|\\boxed|\\approx|\\sqrt|=[^=a-zA-Z]*=",
    re.IGNORECASE,
)
_LEAD = re.compile(
    r"^(?:(?:and|but|also|first|next|then|since|as|because|now|here|note that|notice that|it is given that|"
    r"we are given that|we are given|we know that|we see that|we can see that|we observe that|"
    r"(?:from|in|according to) the (?:figure|diagram|image|picture|chart|graph|plot|table)),?(?:\s+|$))+",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+|\n+")
# ", so ..." / ", therefore ...": what follows is drawn from what precedes.
_CONSEQUENCE = re.compile(r",\s+(?:so|thus|hence|therefore|which means)\b", re.IGNORECASE)

# Arithmetic on numbers: "2*(3+4)", "2 \times 5", "180 - 40", "3^2", "\frac{1}{2}". A clause that computes
# is a step of reasoning, not something read off the figure. "3f - 6" (a label's expression) is not
# matched: its left operand is a letter.
_COMPUTATION = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?\s*(?:[*×÷+]|\\times|\\cdot|\\div|\s[-/]\s)\s*\(?\s*\d"
    r"|\d\s*\^\s*\{?\s*\d|\\frac\b|\)\s*="
)
# Hypotheses and obligations ("if the side is 3", "the height must be 6") are not stated facts.
_HYPOTHETICAL = re.compile(r"\b(if|suppose|assum\w*|would|could|should|must|might)\b", re.IGNORECASE)

# Parts of a figure whose size, position or reading a plain statement gives: sides, lengths, angles,
# a chart's bars and slices, points. "Side AB", "the top side", "the bar for 2019", "the radius".
_FIGURE_PART = re.compile(
    r"\b(sides?|edges?|lengths?|widths?|heights?|bases?|legs?|hypotenuse|radius|radii|diameter|altitude|"
    r"segments?|lines?|arcs?|chords?|angles?|bars?|columns?|slices?|sectors?|points?|vertex|vertices|"
    r"coordinates?|values?|readings?|labels?|depth|distance|measure)\b|\\angle|∠|(?-i:\b[A-Z]{2,3}\b)",
    re.IGNORECASE,
)
# Quantities that are computed from the figure rather than read off it ("the area is 12", "the sum of
# the angles is 180°"), what is sought ("the missing angle", "the value of x"), and pronoun subjects
# ("it is 5") whose referent is a step of reasoning.
_DERIVED = re.compile(
    r"\b(area|perimeter|volume|surface|circumference|sum|total|difference|product|ratio|average|mean|"
    r"probability|result|answer|solution|missing|unknown|remaining|it|this|that|we|i|they)\b"
    r"|\bvalues? of (?:[a-z]|the \w+ expression)\b",
    re.IGNORECASE,
)
# A plain statement of one quantity: SUBJECT VERB VALUE [UNIT] [long]. "The top side is 3",
# "the radius is 5 cm", "Side AB has length 7", "The bar for 2019 reaches 35", "The cylinder has a
# height of 10", "the angle at B measures 40^\circ". VALUE is a number, a percentage, or a label's
# letter or simple expression ("x", "2x + 1"); the subject is a few words at most.
_VALUE = rf"-?\d+(?:\.\d+)?|(?:{'|'.join(sorted(COLOURS))})\b|\d*[a-z](?:\s*[-+]\s*\d+(?:\.\d+)?)?"
_UNIT = (
    r"\^\s*\{?\s*\\circ\s*\}?|°|%|percent|degrees?|(?:square |cubic )?(?:cm|mm|km|m|in|inch(?:es)?|ft|feet|foot|"
    r"yards?|meters?|metres?|centimeters?|units?)(?:\s*\^\s*\{?[23]\}?|²|³)?"
)
_STATEMENT = re.compile(
    r"^(?P<subject>[^,;]{1,60}?)\s*"
    r"(?P<verb>=|\b(?:is|are|equals?|measures?|reaches|reads|shows|has|have)"
    r"(?:\s+(?:a|an|the))?(?:\s+(?:length|measure|height|width|radius|diameter|value|side|sides|base|depth)"
    r"(?:\s+of)?)?\b)\s*"
    rf"(?P<value>(?:{_VALUE})(?:\s*,\s*(?:{_VALUE}))*(?:,?\s+and\s+(?:{_VALUE}))?)"  # "sides 3, 4 and 5"
    rf"(?:\s*(?:{_UNIT}))?(?:\s+(?:long|tall|wide|high|in length))?$",
    re.IGNORECASE,
)
_SHAPE_PART = re.compile(r"\b(shapes?|circles?|squares?|triangles?|objects?|regions?)\b", re.IGNORECASE)
# A count of things in the picture: "There are 4 red cubes", "there is one triangle". Counts of
# solutions, ways or cases are reasoning.
_NUMBER_WORD = r"\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_COUNT = re.compile(
    rf"^there (?:are|is) (?:{_NUMBER_WORD})\s+(?!(?:\w+\s+)?(?:solutions?|ways?|cases?|possibilit\w*|outcomes?|options?|steps?|"
    r"answers?|choices?)\b)\w",
    re.IGNORECASE,
)


def _clauses(cot: str) -> list[str]:
    body = re.sub(r"</?think>|<answer>.*?</answer>", " ", cot, flags=re.DOTALL)
    out = []
    for sentence in _SENTENCE_END.split(body):
        if sentence.rstrip().endswith("?"):
            continue  # a question asks; it states nothing about the figure
        clauses = re.split(r",\s+(?=(?:and\s+|while\s+|where\s+)?[A-Z\\$∠(])", sentence)
        if re.match(r"\s*(since|because|as)\b", sentence, re.IGNORECASE):
            # "Since <fact>, <consequence>": the consequence is reasoning, whatever its case
            clauses = re.split(r",\s+", sentence, maxsplit=1)[:1]
        else:
            premise = _CONSEQUENCE.split(sentence, maxsplit=1)
            if len(premise) == 2 and _is_plain_statement(premise[0].strip().rstrip(".;:,")):
                clauses = [premise[0]]  # "The side is 6, so the area is 36": the stated side only
        for clause in clauses:
            clause = clause.strip().rstrip(".;:,")
            if clause:
                out.append(clause)
    return out


def _is_plain_statement(clause: str) -> bool:
    """`SUBJECT is VALUE` about a part of the figure (each conjunct, if joined by "and"), not a derived one."""
    text = _LEAD.sub("", re.sub(r"\$|\\[()]", "", clause)).strip()
    if _COUNT.match(text):
        return True
    # "The length is 8 cm and its width is 5 cm": each part on its own ("sides 3, 4 and 5" stays whole)
    for part in re.split(r",?\s+and\s+(?![-\d])", text):
        statement = _STATEMENT.match(part)
        if statement is None:
            return False
        lhs = statement["subject"] + " " + statement["verb"]
        part_of_figure = _FIGURE_PART.search(lhs) or (  # "The left shape is red": a colour names a shape
            statement["value"].lower() in COLOURS and _SHAPE_PART.search(lhs)
        )
        if _DERIVED.search(statement["subject"]) or not part_of_figure or len(lhs.split()) > 8:
            return False
    return True


def _states_derived_quantity(clause: str) -> bool:
    """`The area of the square is 36`: a computed quantity in plain form, unless the figure gives it."""
    statement = _STATEMENT.match(_LEAD.sub("", re.sub(r"\$|\\[()]", "", clause)).strip())
    return bool(statement and _DERIVED.search(statement["subject"]) and not _CUES.search(clause))


def _is_visual_fact(clause: str) -> bool:
    """A clause read off the figure: kept only when it also draws no inference and computes nothing."""
    if _INFERENCE.search(clause) or _INFERENCE.search(re.sub(r"\\[a-zA-Z]+", " ", clause)):
        return False  # the second look drops LaTeX commands, so `= 4 \times 11 =` reads as a chain
    if _COMPUTATION.search(clause) or _HYPOTHETICAL.search(clause) or _states_derived_quantity(clause):
        return False
    return bool(
        _CUES.search(clause)
        or _RELATIONS.search(clause)
        or _MEASURE.search(clause)
        or _is_plain_statement(clause)
    )


def _tidy(clause: str) -> str:
    clause = _LEAD.sub("", clause).strip()
    clause = re.sub(r"^(?:the (?:figure|diagram|image) shows(?: that)?)\s+", "", clause, flags=re.IGNORECASE)
    if not clause:
        return ""
    return clause[0].upper() + clause[1:] + "."


def rules_annotations(cot: str, *, max_items: int = 12, max_chars: int = 200) -> list[str]:
    """The CoT's clauses that state visual facts, as annotations (no model; a baseline).

    A clause is kept when it reads something off the figure (a cue such as "from the figure",
    "labeled", "given"; a geometric relation such as parallel, midpoint, tangent; or a measurement
    `AB = 6`, `angle C = 40°`; or a plain statement of a part's quantity, "The top side is 3", "The bar
    for 2019 reaches 35", "There are 4 red cubes") and draws no inference (no "so", "therefore",
    arithmetic, theorem, hypothesis, answer, or derived quantity such as an area). Leading connectives
    ("Since", "From the figure,") are dropped.
    """
    facts = [_tidy(c) for c in _clauses(cot) if _is_visual_fact(c)]
    return clean_annotations([f for f in facts if len(f) > 3], max_items=max_items, max_chars=max_chars)
