"""The judge's prompt layout and the parser of its answers: real-looking and junk outputs."""

from __future__ import annotations

import re

import pytest

from prcli.judge.lexical import key_terms, normalise
from prcli.judge.prompt import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    build_messages,
    format_annotations,
    parse_verdicts,
    verdict_json_schema,
    verdict_regex,
)
from prcli.judge.statements import lexical_verdicts

ANNS = ["$JKLM$ is a parallelogram.", "Side $JK$ has length $3f - 6$.", "Side $ML$ has length $2f + 8$."]


def test_annotations_are_numbered_info_tags() -> None:
    assert format_annotations(["a", "b"]) == "<info1>a</info1>\n<info2>b</info2>"


def test_messages_follow_the_official_structure() -> None:
    system, user = build_messages(ANNS, "f = 14")
    assert system["role"] == "system" and user["role"] == "user"
    assert user["content"] == f"Visual Key Information: {format_annotations(ANNS)}\nResponse: f = 14\n"
    # three worked examples, each with its judgement, in the system prompt
    assert SYSTEM_PROMPT.count("Visual Key Information: <info1>") == 3
    judgements = re.findall(r"Judgement: ((?:<info\d+>[01]</info\d+>\n?)+)", SYSTEM_PROMPT)
    assert [re.findall(r">([01])<", j) for j in judgements] == [
        ["0", "1", "1"],
        ["1", "1", "1", "1", "0", "1"],
        ["0", "0", "0"],
    ]
    assert PROMPT_VERSION == "pr-judge-v1"


@pytest.mark.parametrize(
    ("text", "n", "verdicts", "found"),
    [
        ("<info1>1</info1>\n<info2>0</info2>\n<info3>1</info3>", 3, [1, 0, 1], 3),
        ("<info1>1</info1>, <info2>1</info2>, <info3>0</info3>", 3, [1, 1, 0], 3),
        # a chatty judge: reasoning, then the tags
        ("Let me check.\nItem 1 is stated.\n<info1> 1 </info1>\n<info2>0</info2>", 2, [1, 0], 2),
        # missing tags count 0 and the denominator stays the number of annotations
        ("<info1>1</info1>", 5, [1, 0, 0, 0, 0], 1),
        # the last occurrence of a tag wins (official greedy regex)
        ("<info1>0</info1> wait, actually <info1>1</info1>", 1, [1], 1),
        # out-of-range values are clamped, non-numbers are 0
        ("<info1>3</info1><info2>-1</info2><info3>yes</info3><info4>0.5</info4>", 4, [1, 0, 0, 0.5], 4),
        # extra tags are ignored
        ("<info1>1</info1><info2>1</info2><info3>1</info3>", 2, [1, 1], 2),
        # tags that are out of order or skip numbers
        ("<info3>1</info3><info1>1</info1>", 3, [1, 0, 1], 2),
        # mismatched or empty tags are not verdicts
        ("<info1>1</info2><info2></info2>", 2, [0, 0], 0),
        ("", 2, [0, 0], 0),
        (None, 2, [0, 0], 0),
        ("I cannot help with that.", 3, [0, 0, 0], 0),
        ("nan <info1>nan</info1> <info2>inf</info2>", 2, [0, 1], 2),
        # structured JSON answers
        ('{"info1": 1, "info2": 0, "info3": 1}', 3, [1, 0, 1], 3),
        ('{"info2": 1, "other": 5}', 2, [0, 1], 1),
        ('{"info1": 1, broken', 1, [0], 0),
    ],
)
def test_parse_verdicts(text: str | None, n: int, verdicts: list[float], found: int) -> None:
    assert parse_verdicts(text, n) == (verdicts, found)


def test_score_would_be_hackable_with_the_official_denominator() -> None:
    verdicts, found = parse_verdicts("<info1>1</info1>", 5)
    assert sum(verdicts) / found == 1.0  # what the official parser rewarded
    assert sum(verdicts) / 5 == 0.2  # what we reward


def test_structured_output_constraints() -> None:
    regex = verdict_regex(3)
    assert re.fullmatch(regex, "<info1>1</info1>\n<info2>0</info2>\n<info3>1</info3>")
    assert not re.fullmatch(regex, "<info1>1</info1>\n<info2>0</info2>")
    assert not re.fullmatch(regex, "<info1>2</info1>\n<info2>0</info2>\n<info3>1</info3>")
    schema = verdict_json_schema(2)
    assert schema["required"] == ["info1", "info2"]
    assert schema["properties"]["info1"] == {"type": "integer", "enum": [0, 1]}


def test_lexical_normalises_latex() -> None:
    assert normalise("$m\\angle Q = (2x + 5)^\\circ$") == "m angle Q = (2x + 5)"
    assert normalise("\\(\\frac{1}{2}\\)") == "(1)/(2)"
    assert normalise("AB \\perp CD, \\triangle ABC") == "AB perpendicular CD, triangle ABC"


def test_lexical_key_terms() -> None:
    terms = key_terms("Side $JK$ has length $3f - 6$.")
    assert terms.names == {"JK"} and terms.expressions == {"3f-6"} and terms.numbers == {"6"}
    terms = key_terms("GE is perpendicular to DF at point E")
    assert terms.names == {"GE", "DF", "point E"} and terms.relations == {"perpendicular"}
    assert key_terms("AB = 3 cm").numbers == {"3"}
    assert key_terms("The radius is 2.5cm").numbers == {"2.5"}
    assert key_terms("Angle B measures 90 degrees").names == {"angle B"}


def test_lexical_verdicts_on_a_realistic_solution() -> None:
    anns = [
        "$JKLM$ is a parallelogram.",
        "Side $JK$ has length $3f - 6$.",
        "Side $ML$ has length $2f + 8$.",
        "$m\\angle J = 56^\\circ$",
        "GE is perpendicular to DF at point E",
        "The figure shows a circle",
    ]
    response = (
        "<think>\nSince JK and ML are opposite sides, \\( 3f - 6 = 2f + 8 \\), so f = 14.\n"
        "Also \\( \\angle J = 56^\\circ \\). GE \\perp DF at E.\n</think>\n<answer>\n\\boxed{14}\n</answer>"
    )
    assert lexical_verdicts(anns, response) == [0, 1, 1, 1, 1, 0]


def test_lexical_numbers_match_whole_numbers_only() -> None:
    assert lexical_verdicts(["AB = 3"], "AB = 30") == [0]
    assert lexical_verdicts(["AB = 3"], "AB = 3.0") == [1]
    assert lexical_verdicts(["The angle is 45 degrees"], "angle of 45°") == [1]


def test_lexical_words_fallback_for_annotations_without_key_terms() -> None:
    assert lexical_verdicts(["The shaded region is shaded blue"], "the shaded region looks blue") == [1]
    assert lexical_verdicts(["The shaded region is shaded blue"], "nothing relevant") == [0]
    assert lexical_verdicts(["is a"], "anything") == [0]
