"""From an extractor's answer (or, with the `rules` extractor, from the CoT itself) to clean annotations."""

from __future__ import annotations

import json
import re

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
    r"(?:\b[A-Z]{2,3}\b|(?:\\angle|\bangle|∠)\s*(?:[A-Z]{1,3}|\d+)\b)\s*(?:=|is|measures)\s*"
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
    r"(?:from|in|according to) the (?:figure|diagram|image|picture)),?(?:\s+|$))+",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+|\n+")


def _clauses(cot: str) -> list[str]:
    body = re.sub(r"</?think>|<answer>.*?</answer>", " ", cot, flags=re.DOTALL)
    out = []
    for sentence in _SENTENCE_END.split(body):
        clauses = re.split(r",\s+(?=(?:and\s+|while\s+|where\s+)?[A-Z\\$∠(])", sentence)
        if re.match(r"\s*(since|because|as)\b", sentence, re.IGNORECASE):
            clauses = clauses[:1]  # "Since <fact>, <consequence>": the consequence is reasoning
        for clause in clauses:
            clause = clause.strip().rstrip(".;:,")
            if clause:
                out.append(clause)
    return out


def _is_visual_fact(clause: str) -> bool:
    if _INFERENCE.search(clause) or _INFERENCE.search(re.sub(r"\\[a-zA-Z]+", " ", clause)):
        return False  # the second look drops LaTeX commands, so `= 4 \times 11 =` reads as a chain
    return bool(_CUES.search(clause) or _RELATIONS.search(clause) or _MEASURE.search(clause))


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
    `AB = 6`, `angle C = 40°`) and draws no inference (no "so", "therefore", computation, theorem or
    answer). Leading connectives ("Since", "From the figure,") are dropped.
    """
    facts = [_tidy(c) for c in _clauses(cot) if _is_visual_fact(c)]
    return clean_annotations([f for f in facts if len(f) > 3], max_items=max_items, max_chars=max_chars)
