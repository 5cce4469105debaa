"""`pr diagnose` on constructed responses with known misreadings (the lexical backend, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prcli.cli import app
from prcli.diagnose.records import error_type
from prcli.judge.statements import lexical_fact_verdicts, lexical_verdicts

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
        # chained equations (real MathVista outputs): the last value is the expression's, not the quantity's
        ("angle BAD = 120°", "∠MAN = 180° - ∠BAD = 60°", "absent"),
        ("DC = 4", "S△ACD = 1/2 * AC * DC = 12", "absent"),
        ("angle BCD = 25°", "∠COD = 180°/2 - ∠BCD = 155°", "absent"),
        ("AB = 6", "AB = 180 - CD = 60", "absent"),  # Q = expr = V states V for expr, not for Q
        ("AB = 6", "AB = 8 = 2 * 4", "absent"),  # a value followed by another equation
        # a distance's target is not the subject of the distance's value
        ("AB = 8", "the distance from O to the chord AB is 3", "absent"),
        ("AB = 8", "The distance between O and AB is 3.", "absent"),
        # the true misreadings among them are still found
        ("AD = 2", "AD = 5", "contradicted"),
        ("angle C = 110", "∠A = ∠C = 45°", "contradicted"),  # 45° is stated for both A and C
        ("angle A = 110", "∠A = ∠C = 45°", "contradicted"),
        ("AB = 6", "- AB = 8", "contradicted"),  # a list bullet, not a minus
        ("angle BOC = 50°", "so ∠BOC = 2∠BAC (twice)\n* ∠BOC = 40°", "contradicted"),  # a bullet
        ("CD = 1", "BD:DC = 2:1, so BD = 2", "absent"),  # a ratio, not DC = 2
        # colours of shapes named by their place, and counts (the synthetic tasks' facts)
        ("the left shape is red", "the left shape is blue; the right shape is red.", "contradicted"),
        ("the left shape is red", "The left circle is red and the right one is blue.", "consistent"),
        ("the right shape is red", "the left shape is red; the right shape is green.", "contradicted"),
        ("the right shape is red", "I see a red shape.", "absent"),  # no place named: no credit by words
        ("the left shape is red", "I see a red shape.", "absent"),
        (
            "the left shape is red",
            "the left shape is red; the left shape is blue",
            "contradicted",
        ),  # one colour
        (
            "the left shape is red",
            "The shape on the left is blue, the shape on the right is red.",
            "contradicted",
        ),
        ("the left shape is red", "The left shape is not red.", "contradicted"),
        ("the left shape is blue", "The left shape is not red; it is blue.", "absent"),  # a true negation
        ("the right shape is blue", "the right shape is a green square. blue", "contradicted"),
        ("the left shape is red", "the left one is red", "consistent"),
        ("the largest shape is blue", "The largest shape is coloured orange.", "contradicted"),
        ("there are 3 red circles", "there are 2 red circles", "contradicted"),
        ("there are 3 red circles", "There are 3 red circles and 1 blue square.", "consistent"),
        ("there is 1 red circle", "there are two red circles", "contradicted"),
        ("there are 3 red circles", "there are 2 blue circles", "absent"),  # other shapes counted
    ],
)
def test_lexical_verdicts(fact: str, response: str, verdict: str) -> None:
    assert lexical_fact_verdicts([fact], response) == [verdict]
    # the lexical judge (the demo's perception reward) counts a fact only when it is consistent
    assert lexical_verdicts([fact], response) == [int(verdict == "consistent")]


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


def test_parse_claims_is_strict() -> None:
    from prcli.diagnose.vlm import parse_claims

    answer = (
        '<claim verdict="consistent">AB = 3</claim>\n<claim verdict="Contradicted"> angle B\n is 50 </claim>'
    )
    assert parse_claims(answer) == [("AB = 3", "consistent"), ("angle B is 50", "contradicted")]
    assert parse_claims(" <none/>\n") == []
    for bad in (
        "",  # nothing
        "The solution says AB = 3.",  # no tags
        '<claim verdict="absent">AB = 3</claim>',  # not a verdict of this judge
        '<claim verdict="consistent"> </claim>',  # an empty claim
        'Claims: <claim verdict="consistent">AB = 3</claim>',  # text outside the tags
        '<claim verdict="consistent">AB = 3</claim><none/>',  # both
    ):
        with pytest.raises(ValueError):
            parse_claims(bad)


def test_vlm_judge_against_a_real_server(tmp_path: Path) -> None:
    """Fixed claims from a local OpenAI-compatible server that receives the image as a data URL; an
    unparsable answer fails its item, no claims or an unreadable image make it unknown with the reason."""
    from PIL import Image

    from prcli.images import data_url
    from prcli.testing import FaultServer

    (tmp_path / "img").mkdir()
    for name, colour in (("a", "red"), ("b", "blue")):
        Image.new("RGB", (8, 8), colour).save(tmp_path / "img" / f"{name}.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image")
    problems = write_jsonl(  # a problems file lends images (and the question); no annotations needed
        tmp_path / "problems.jsonl",
        [
            {"id": "v1", "question": "Find the perimeter.", "answer": "14", "images": ["img/a.png"]},
            {"id": "v2", "question": "q", "answer": "40", "images": ["img/a.png"]},
            {"id": "v3", "question": "q", "answer": "1", "images": ["img/a.png"]},
            {"id": "v4", "question": "q", "answer": "1", "images": ["img/a.png"]},
            {"id": "v5", "question": "q", "answer": "1", "images": ["img/broken.png"]},
        ],
    )
    items = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "v1", "correct": True, "response": "The top is 3, the side 4: 14", "task": "geometry"},
            {"id": "v2", "correct": False, "response": "Angle B is 50, so 50", "task": "geometry"},
            {"id": "v3", "correct": False, "response": "Just guessing: 2", "task": "algebra"},
            {"id": "v4", "correct": False, "response": "The figure is a circle", "task": "algebra"},
            {"id": "v5", "correct": False, "response": "AB = 3", "task": "algebra"},
            {"id": "v6", "correct": False, "response": "AB = 3", "task": "algebra"},  # no record
            {"id": "v7", "correct": True, "response": "AB = 3", "images": ["img/b.png"]},  # inline
        ],
    )
    answers = {
        "The top is 3": '<claim verdict="consistent">The top side is 3</claim>\n'
        '<claim verdict="consistent">The right side is 4</claim>',
        "Angle B is 50": '<claim verdict="contradicted">Angle B is 50 degrees</claim>',
        "Just guessing": "<none/>",
        "a circle": "It is a triangle, not a circle.",  # unparsable: v4 fails and is retried next run
        "AB = 3": '<claim verdict="contradicted">AB = 3</claim>',
    }

    def reply(request: dict) -> str:
        text = request["messages"][-1]["content"][-1]["text"]
        return next(a for k, a in answers.items() if k in text)

    out = tmp_path / "labels.jsonl"
    with FaultServer(reply=reply) as srv:
        args = ["diagnose", str(items), "-o", str(out), "--annotations", str(problems), "--judge", "vlm"]
        args += ["--judge-base-url", srv.base_url, "--judge-max-retries", "0"]
        args += ["--cache-dir", str(tmp_path / "cache")]
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "1 item(s) failed" in result.output
        labels = {r["id"]: r for r in read_jsonl(out)}
        assert "v4" not in labels
        assert {k: v["error_type"] for k, v in labels.items()} == {
            "v1": "none",
            "v2": "perception",
            "v3": "unknown",
            "v5": "unknown",
            "v6": "unknown",
            "v7": "lucky",
        }
        assert labels["v1"]["facts"] == [
            {"fact": "The top side is 3", "verdict": "consistent"},
            {"fact": "The right side is 4", "verdict": "consistent"},
        ]
        assert labels["v3"]["reason"] == "the vision judge found no visual claim in the response"
        assert labels["v5"]["reason"].startswith("image cannot be read: ")
        assert "broken.png" in labels["v5"]["reason"]
        assert labels["v6"]["reason"] == f"no image for id 'v6' in {problems}"
        failed = read_jsonl(out.with_name("labels.failed.jsonl"))
        assert failed[0]["id"] == "v4" and failed[0]["error"].startswith("unparsable")

        assert len(srv.requests) == 5  # v5 (unreadable image) and v6 (no image) ask nothing
        by_text = {r["messages"][-1]["content"][-1]["text"]: r for r in srv.requests}
        first = next(r for t, r in by_text.items() if "The top is 3" in t)
        assert first["model"] == "Qwen/Qwen2.5-VL-72B-Instruct"
        image_part = first["messages"][-1]["content"][0]
        assert image_part["type"] == "image_url"
        assert image_part["image_url"]["url"] == data_url(str(tmp_path / "img" / "a.png"))
        assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
        assert "Find the perimeter." in next(t for t in by_text if "The top is 3" in t)
        inline = next(r for t, r in by_text.items() if "AB = 3" in t)
        assert inline["messages"][-1]["content"][0]["image_url"]["url"] == data_url(
            str(tmp_path / "img/b.png")
        )

        answers["a circle"] = '<claim verdict="contradicted">The figure is a circle</claim>'
        again = runner.invoke(app, [*args, "--json"])
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["written"] == 1 and len(srv.requests) == 6  # only v4 asked again
        assert {r["id"]: r for r in read_jsonl(out)}["v4"]["error_type"] == "perception"
        assert not out.with_name("labels.failed.jsonl").exists()

        fresh = runner.invoke(app, [*args, "--overwrite", "--json"])  # relabelled from the cache
        assert fresh.exit_code == 0, fresh.output
        assert len(srv.requests) == 6


def test_vlm_bad_images_field_is_a_line_error(tmp_path: Path) -> None:
    items = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "v1", "correct": True, "response": "AB = 3"},  # no images anywhere: unknown
            {"id": "v2", "correct": True, "response": "AB = 3", "images": "a.png"},  # not a list
        ],
    )
    out = tmp_path / "labels.jsonl"
    result = runner.invoke(app, ["diagnose", str(items), "-o", str(out), "--judge", "vlm"])
    assert result.exit_code != 0
    assert "items.jsonl:2: images: expected a list of image paths" in result.output
    assert not out.exists()
    write_jsonl(items, [{"id": "v1", "correct": True, "response": "AB = 3"}])
    result = runner.invoke(app, ["diagnose", str(items), "-o", str(out), "--judge", "vlm"])
    assert result.exit_code == 0, result.output
    assert "no image for id 'v1' (give --annotations records with images)" in read_jsonl(out)[0]["reason"]
