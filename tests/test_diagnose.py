"""`pr diagnose` on constructed responses with known misreadings (the lexical backend, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prcli.cli import app
from prcli.diagnose.lexical import lexical_fact_verdicts
from prcli.diagnose.records import error_type

runner = CliRunner()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("fact", "response", "verdict"),
    [
        ("AB = 6", "Since AB = 8 and BC = 3, the answer is 11.", "contradicted"),
        ("AB = 6", "BA is 8 cm, so the perimeter is 20.", "contradicted"),
        ("angle B is 40°", "We have $\\angle B = 50^\\circ$.", "contradicted"),
        ("$\\angle ABC = 30^\\circ$", "angle CBA measures 60 degrees", "contradicted"),
        ("The length of segment AC is 10 cm", "AC has length 12", "contradicted"),
        ("AB is parallel to CD", "Because AB is perpendicular to CD, ...", "contradicted"),
        ("AB = 6", "AB = 6, so AB + 2 = 8.", "consistent"),
        ("angle B is 40°", "angle B = 40 degrees, so angle C = 50", "consistent"),
        ("AB is parallel to CD", "AB ∥ CD", "consistent"),
        ("AB = 6", "AB = 2 * 3 gives 6", "consistent"),  # a computation, not a misreading
        ("AB = 6", "AB = 2x, so x = 3", "absent"),  # an unknown, not a stated value
        ("AB = 6", "The triangle is isosceles.", "absent"),
        ("angle B is 40°", "angle ABC = 50", "absent"),  # another name: not known to be angle B
    ],
)
def test_lexical_verdicts(fact: str, response: str, verdict: str) -> None:
    assert lexical_fact_verdicts([fact], response) == [verdict]


def test_error_types() -> None:
    assert [error_type(c, p) for c, p in [(True, False), (False, True), (False, False), (True, True)]] == [
        "none",
        "perception",
        "reasoning",
        "lucky",
    ]
    assert error_type(True, None) == error_type(False, None) == "unknown"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    annotated = write_jsonl(
        tmp_path / "annotated.jsonl",
        [
            {"id": "g1", "question": "q", "answer": "14", "annotations": ["AB = 3", "BC = 4"]},
            {"id": "g2", "question": "q", "answer": "50", "annotations": ["angle B is 40°"]},
            {"id": "g3", "question": "q", "answer": "5", "annotations": ["AC = 5"]},
            {"id": "g4", "question": "q", "answer": "1", "annotations": ["AB is parallel to CD"]},
            {"id": "g5", "question": "q", "answer": "2", "annotations": ["The radius is 2"]},
        ],
    )
    items = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "g1", "correct": True, "response": "AB = 3 and BC = 4, so 14", "task": "geometry"},
            {"id": "g2", "correct": False, "response": "angle B = 50, so 40", "task": "geometry"},
            {"id": "g3", "correct": False, "response": "AC = 5 but I add 1: 6", "task": "geometry"},
            {"id": "g4", "correct": True, "response": "AB is perpendicular to CD, so 1", "task": "algebra"},
            {"id": "g5", "correct": False, "response": "no idea, 3", "task": "algebra"},
            {"id": "g6", "correct": False, "response": "7", "task": "algebra"},
            {"id": "g7", "correct": False, "response": "", "task": "algebra"},
        ],
    )
    return {"annotated": annotated, "items": items, "out": tmp_path / "labels.jsonl"}


def diagnose(files: dict[str, Path], *extra: str):
    args = [
        "diagnose",
        str(files["items"]),
        "-o",
        str(files["out"]),
        "--annotations",
        str(files["annotated"]),
    ]
    return runner.invoke(app, [*args, *extra])


def test_labels_summary_and_resume(files: dict[str, Path]) -> None:
    result = diagnose(files)
    assert result.exit_code == 0, result.output
    labels = {r["id"]: r for r in read_jsonl(files["out"])}
    assert {k: v["error_type"] for k, v in labels.items()} == {
        "g1": "none",
        "g2": "perception",
        "g3": "reasoning",
        "g4": "lucky",
        "g5": "unknown",
        "g6": "unknown",
        "g7": "unknown",
    }
    assert [f["verdict"] for f in labels["g2"]["facts"]] == ["contradicted"]
    assert labels["g3"]["perception_error"] is False and labels["g5"]["perception_error"] is None
    assert labels["g5"]["reason"] == "the response states none of the facts"
    assert "no annotations for id 'g6'" in labels["g6"]["reason"]
    assert labels["g7"]["reason"] == "no response"
    assert labels["g1"]["task"] == "geometry"  # category fields travel, for `pr mcnemar --by`

    summary = json.loads((files["out"].parent / "labels.summary.json").read_text())
    overall = summary["overall"]
    assert (
        overall["failures"],
        overall["perception"],
        overall["reasoning"],
        overall["unknown_failures"],
    ) == (
        5,
        1,
        1,
        3,
    )
    assert overall["perception_share"] == 0.5
    assert summary["by"]["task"]["geometry"]["perception_share"] == 0.5
    assert summary["by"]["task"]["algebra"]["lucky"] == 1
    assert "unknown: 1 (no response)" in result.output

    again = diagnose(files, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["already_done"] == 7


def test_malformed_line_writes_nothing(files: dict[str, Path]) -> None:
    with files["items"].open("a") as fh:
        fh.write('{"id": "g8", "response": "x"}\n')
    result = diagnose(files)
    assert result.exit_code != 0
    assert "items.jsonl:8: correct: required field is missing" in result.output
    assert not files["out"].exists()


def test_mcnemar_on_perception_reproduces_the_papers_p(tmp_path: Path) -> None:
    """Two models diagnosed, then compared on "no perception error": discordant 2 and 10 -> p 0.0386."""
    right, misread, silent = "AB = 6, so 12", "AB = 8, so 16", "the answer is 12"
    cells = (
        [(right, right)] * 30 + [(right, misread)] * 2 + [(misread, right)] * 10 + [(misread, misread)] * 5
    )
    cells += [(silent, right), (right, silent), (silent, silent)]  # nothing checked: excluded
    write_jsonl(
        tmp_path / "annotated.jsonl",
        [
            {"id": f"q{i}", "question": "q", "answer": "12", "annotations": ["AB = 6"]}
            for i in range(len(cells))
        ],
    )
    labels = []
    for model, column in (("a", 0), ("b", 1)):
        items = [
            {
                "id": f"q{i}",
                "correct": False,
                "response": pair[column],
                "task": "geometry" if i % 2 else "algebra",
            }
            for i, pair in enumerate(cells)
        ]
        write_jsonl(tmp_path / f"{model}.items.jsonl", items)
        out = tmp_path / f"{model}.labels.jsonl"
        args = ["diagnose", str(tmp_path / f"{model}.items.jsonl"), "-o", str(out)]
        result = runner.invoke(app, [*args, "--annotations", str(tmp_path / "annotated.jsonl")])
        assert result.exit_code == 0, result.output
        labels.append(str(out))

    result = runner.invoke(app, ["mcnemar", *labels, "--outcome", "perception", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["b"], report["c"], report["n"]) == (2, 10, 47)
    assert round(report["p_value"], 4) == 0.0386
    assert report["excluded_null"] == {"a": 2, "b": 2, "items": 3}

    shown = runner.invoke(app, ["mcnemar", *labels, "--outcome", "perception", "--by", "task"])
    assert shown.exit_code == 0, shown.output
    assert "excluded 3 item(s) whose perception_error is null" in shown.output
    assert "geometry" in shown.output


def test_parse_three_way_is_strict() -> None:
    from prcli.diagnose.llm import parse_three_way

    assert parse_three_way("<info1>consistent</info1>\n<info2> Absent </info2>", 2) == [
        "consistent",
        "absent",
    ]
    for bad in (
        "<info1>consistent</info1>",  # a tag missing
        "<info2>absent</info2><info1>consistent</info1>",  # out of order
        "<info1>yes</info1><info2>absent</info2>",  # not a verdict
        "Sure! <info1>consistent</info1><info2>absent</info2>",  # text outside the tags
    ):
        with pytest.raises(ValueError):
            parse_three_way(bad, 2)


def test_openai_judge_against_a_real_server(files: dict[str, Path], tmp_path: Path) -> None:
    """Fixed verdicts from a local OpenAI-compatible server; an unparsable answer fails only its item."""
    from prcli.testing import FaultServer

    answers = {
        "AB = 3 and BC = 4": "<info1>consistent</info1>\n<info2>consistent</info2>",
        "angle B = 50": "<info1>contradicted</info1>",
        "AC = 5 but": "<info1>consistent</info1>",
        "perpendicular": "I think it is fine.",  # unparsable: g4 fails and is retried next run
        "no idea": "<info1>absent</info1>",
    }

    def reply(request: dict) -> str:
        text = str(request["messages"][-1]["content"])
        return next(a for k, a in answers.items() if k in text)

    with FaultServer(reply=reply) as srv:
        base = [
            "--judge",
            "openai",
            "--judge-base-url",
            srv.base_url,
            "--judge-model",
            "m",
            "--judge-max-retries",
            "0",
        ]
        cache = ["--cache-dir", str(tmp_path / "cache")]
        result = diagnose(files, *base, *cache)
        assert result.exit_code == 1, result.output
        assert "1 item(s) failed" in result.output
        labels = {r["id"]: r for r in read_jsonl(files["out"])}
        assert "g4" not in labels
        assert {k: labels[k]["error_type"] for k in ("g1", "g2", "g3", "g5")} == {
            "g1": "none",
            "g2": "perception",
            "g3": "reasoning",
            "g5": "unknown",
        }
        failed = read_jsonl(files["out"].with_name("labels.failed.jsonl"))
        assert failed[0]["id"] == "g4" and failed[0]["error"].startswith("unparsable")
        assert len(srv.requests) == 5  # g6 (no annotations) and g7 (no response) ask nothing
        sent = [r["messages"][-1]["content"] for r in srv.requests]  # concurrent: in any order
        assert any("<info1>AB is parallel to CD</info1>" in text for text in sent)

        answers["perpendicular"] = "<info1>contradicted</info1>"
        again = diagnose(files, *base, *cache, "--json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["written"] == 1 and len(srv.requests) == 6  # only g4 asked again
        assert read_jsonl(files["out"])[3]["error_type"] == "lucky"
        assert not files["out"].with_name("labels.failed.jsonl").exists()

        fresh = diagnose(files, *base, *cache, "--overwrite", "--json")  # relabelled from the cache
        assert fresh.exit_code == 0, fresh.output
        assert len(srv.requests) == 6
