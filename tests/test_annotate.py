"""`pr annotate` and the converters: rules extraction, the accuracy filter, LLM roles over real HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_image
from prcli.annotate.extract import clean_annotations, parse_annotations, rules_annotations
from prcli.cli import app
from prcli.convert import from_perception_r1, to_perception_r1
from prcli.jsonl import read_jsonl
from prcli.records import AnnotatedProblem
from prcli.testing import FaultServer

runner = CliRunner()

GEOMETRY_COTS = [
    (
        "<think>\nFrom the figure, AB = 6 and BC = 8, and angle ABC is a right angle. By the Pythagorean theorem, "
        "AC = \\sqrt{36+64} = 10. Since D is the midpoint of AC, AD = 5.\n</think>\n<answer>\n\\boxed{5}\n</answer>",
        ["AB = 6 and BC = 8, and angle ABC is a right angle.", "D is the midpoint of AC."],
    ),
    (
        "The diagram shows a circle with center O. Segment AB is a diameter, and C lies on the circle. The angle ACB "
        "is inscribed in a semicircle, so it measures 90 degrees. We are given that AC = 5 and BC = 12. So AB = 13 "
        "and the radius is 6.5. The answer is \\boxed{6.5}.",
        [
            "A circle with center O.",
            "Segment AB is a diameter.",
            "C lies on the circle.",
            "AC = 5 and BC = 12.",
        ],
    ),
    (
        "In the figure, lines l and m are parallel. Angle 1 measures 65°. Angle 1 and angle 2 are corresponding "
        "angles, so angle 2 = 65°. \\boxed{65}",
        ["Lines l and m are parallel.", "Angle 1 measures 65°."],
    ),
    (
        "We see that JKLM is a parallelogram, JK = 3f - 6 and ML = 2f + 8. Opposite sides are equal, so "
        "3f - 6 = 2f + 8. Solving gives f = 14.",
        ["JKLM is a parallelogram.", "JK = 3f - 6 and ML = 2f + 8."],
    ),
    ("x^2 = 12^2 - 7^2 = 95, therefore x = \\sqrt{95}.", []),
]


@pytest.mark.parametrize(("cot", "expected"), GEOMETRY_COTS)
def test_rules_extractor_on_geometry_cots(cot: str, expected: list[str]) -> None:
    assert rules_annotations(cot) == expected


def test_rules_extractor_respects_limits() -> None:
    cot = " ".join(f"Point P{i} lies on the circle." for i in range(30))
    assert len(rules_annotations(cot, max_items=5)) == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"annotations": ["AB = 3", "BC = 4"]}', ["AB = 3", "BC = 4"]),
        ('["AB = 3"]', ["AB = 3"]),
        ("<info2>BC = 4</info2>\n<info1>AB = 3</info1>", ["AB = 3", "BC = 4"]),
        ("Here you go:\n1. AB = 3\n2) BC = 4\n- angle B = 90", ["AB = 3", "BC = 4", "angle B = 90"]),
        ("I cannot see the figure.", []),
        ("", []),
        (None, []),
        ('{"annotations": "not a list"}', []),
    ],
)
def test_parse_annotations(text: str | None, expected: list[str]) -> None:
    assert parse_annotations(text) == expected


def test_clean_annotations() -> None:
    items = ["  AB = 3 ", "ab = 3.", "", "x" * 300, '"BC = 4"', "CD  =\n5", "E"]
    assert clean_annotations(items, max_items=3, max_chars=200) == ["AB = 3", "BC = 4", "CD = 5"]


def problems_file(folder: Path, rows: list[dict]) -> Path:
    for r in rows:
        for img in r.get("images", []):
            make_image(folder / img, color="white")
    path = folder / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_accuracy_filter_keeps_only_verified_cots(tmp_path: Path) -> None:
    rows = [
        {
            "id": "ok",
            "question": "<image>Find x.",
            "images": ["a.png"],
            "answer": "2\\sqrt{3}",
            "cot": "From the figure, AB = 4 and BC = 2. So x = \\boxed{2\\sqrt{3}}.",
        },
        {
            "id": "wrong",
            "question": "<image>Find y.",
            "images": ["b.png"],
            "answer": "5",
            "cot": "From the figure, AB = 4. So y = \\boxed{4}.",
        },
        {
            "id": "letter",
            "question": "<image>Which?",
            "images": ["c.png"],
            "answer": "B",
            "cot": "In the figure, AB is parallel to CD. The answer is (B).",
        },
        {"id": "nocot", "question": "<image>Find z.", "images": ["d.png"], "answer": "1"},
        {
            "id": "nofacts",
            "question": "<image>Find w.",
            "images": ["e.png"],
            "answer": "7",
            "cot": "Therefore w = 3 + 4 = 7, so \\boxed{7}.",
        },
    ]
    src = problems_file(tmp_path, rows)
    out = tmp_path / "out" / "annotated.jsonl"
    result = runner.invoke(app, ["annotate", str(src), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out, AnnotatedProblem)
    assert [r.id for r in kept] == ["ok", "letter"]
    assert kept[0].annotations == ["AB = 4 and BC = 2."]
    assert kept[0].provenance is not None and kept[0].provenance.extractor == "rules"
    assert kept[0].images == [str((tmp_path / "a.png").resolve())]
    dropped = rows_of(tmp_path / "out" / "annotated.dropped.jsonl")
    assert {d["id"]: d["reason"] for d in dropped} == {
        "wrong": "wrong_answer",
        "nocot": "no_cot",
        "nofacts": "no_annotations",
    }
    summary = json.loads(result.stdout)
    assert summary["kept"] == 2 and summary["dropped"] == 3 and summary["failed"] == 0
    assert summary["drop_reasons"] == {"wrong_answer": 1, "no_cot": 1, "no_annotations": 1}
    assert summary["mean_annotations"] == 1.0
    # a re-run has nothing left to do
    again = json.loads(runner.invoke(app, ["annotate", str(src), "-o", str(out), "--json"]).stdout)
    assert again["already_done"] == 5 and again["kept"] == 2

    # without the filter the wrong CoT is kept
    out2 = tmp_path / "nofilter.jsonl"
    assert runner.invoke(app, ["annotate", str(src), "-o", str(out2), "--no-filter"]).exit_code == 0
    assert [r.id for r in read_jsonl(out2, AnnotatedProblem)] == ["ok", "wrong", "letter"]


def fake_models(request: dict) -> str:
    """Plays both roles over HTTP: the teacher (a user turn with an image) and the extractor."""
    first = request["messages"][0]
    if first["role"] == "system":  # the extractor
        cot = request["messages"][-1]["content"]
        facts = re.findall(r"([A-Z]{2} = \d+)", cot)
        return "\n".join(f"<info{i}>{f}</info{i}>" for i, f in enumerate(facts, 1))
    text = next(p["text"] for p in first["content"] if p["type"] == "text")
    assert any(
        p["type"] == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,")
        for p in first["content"]
    )
    if "sides 3 and 4" in text:
        return "<think>\nThe figure gives AB = 3 and BC = 4 at a right angle.\n</think>\n<answer>\n\\boxed{5}\n</answer>"
    seed = request.get("seed", 0)
    if "wrong first" in text and seed == 0:
        return "It is \\boxed{1}."
    return "From the figure, CD = 9. \\boxed{9}"


def teacher_problems(tmp_path: Path) -> Path:
    return problems_file(
        tmp_path,
        [
            {
                "id": "a",
                "question": "<image>Right triangle with sides 3 and 4. Hypotenuse?",
                "images": ["a.png"],
                "answer": "5",
            },
            {"id": "b", "question": "<image>wrong first. Find CD.", "images": ["b.png"], "answer": "9"},
            {"id": "c", "question": "<image>Impossible one.", "images": ["c.png"], "answer": "42"},
        ],
    )


def llm_args(url: str) -> list[str]:
    return [
        "--teacher",
        "openai",
        "--teacher-base-url",
        url,
        "--teacher-model",
        "teacher",
        "--extractor",
        "openai",
        "--extractor-base-url",
        url,
        "--extractor-model",
        "extractor",
        "--samples",
        "2",
        *both("max-retries", "1"),
        *both("timeout", "5"),
    ]


def both(option: str, value: str) -> list[str]:
    """One connection setting for the teacher and the extractor alike."""
    return [f"--teacher-{option}", value, f"--extractor-{option}", value]


def test_teacher_and_extractor_over_http(tmp_path: Path) -> None:
    src = teacher_problems(tmp_path)
    out = tmp_path / "annotated.jsonl"
    with FaultServer(reply=fake_models) as srv:
        result = runner.invoke(app, ["annotate", str(src), "-o", str(out), *llm_args(srv.base_url), "--json"])
        assert result.exit_code == 0, result.output
        kept = read_jsonl(out, AnnotatedProblem)
        assert [(r.id, r.annotations) for r in kept] == [("a", ["AB = 3", "BC = 4"]), ("b", ["CD = 9"])]
        assert kept[1].provenance is not None
        assert (
            kept[1].provenance.teacher == "teacher"
            and kept[1].provenance.model_extra["teacher_attempts"] == 2
        )
        dropped = rows_of(tmp_path / "annotated.dropped.jsonl")
        assert [{k: v for k, v in d.items() if k != "input_hash"} for d in dropped] == [
            {"id": "c", "reason": "wrong_answer", "cot_source": "teacher", "attempts": 2}
        ]
        extractor_calls = [r for r in srv.requests if r["messages"][0]["role"] == "system"]
        assert extractor_calls[0]["structured_outputs"]["json"]["properties"]["annotations"]["maxItems"] == 12
        summary = json.loads(result.stdout)
        assert summary["cot_distilled"] == 3 and summary["kept"] == 2 and summary["failed"] == 0
        n_requests = len(srv.requests)
        endpoints = summary["endpoints"]  # per role, per URL
        assert {role: [e["url"] for e in eps] for role, eps in endpoints.items()} == {
            "teacher": [srv.base_url],
            "extractor": [srv.base_url],
        }
        assert sum(eps[0]["requests"] for eps in endpoints.values()) == n_requests

        # everything is cached: a fresh run into another file makes no request
        out2 = tmp_path / "again.jsonl"
        result = runner.invoke(
            app, ["annotate", str(src), "-o", str(out2), *llm_args(srv.base_url), "--json"]
        )
        assert result.exit_code == 0 and len(srv.requests) == n_requests
        assert json.loads(result.stdout)["cache_hits"] > 0
        assert out2.read_text().count("\n") == 2


def test_failed_calls_are_retried_by_the_next_run(tmp_path: Path) -> None:
    src = teacher_problems(tmp_path)
    out = tmp_path / "annotated.jsonl"
    with FaultServer(reply=fake_models, default="500") as srv:
        args = [
            "annotate",
            str(src),
            "-o",
            str(out),
            *llm_args(srv.base_url),
            *both("max-retries", "0"),
            "--json",
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "3 problem(s) failed" in result.output
        failed = rows_of(tmp_path / "annotated.failed.jsonl")
        assert [f["id"] for f in failed] == ["a", "b", "c"] and all("HTTP 500" in f["error"] for f in failed)
        assert rows_of(out) == []  # nothing half-done was written

        srv.set(default="ok")
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert [r["id"] for r in rows_of(out)] == ["a", "b"]
        assert not (tmp_path / "annotated.failed.jsonl").exists()


@pytest.mark.server
@pytest.mark.slow
def test_against_transformers_serve(tiny_server: dict, tmp_path: Path) -> None:
    """Teacher and extractor are the tiny (untrained) model behind a real server. It rambles until
    `max_tokens`: the teacher's cut CoT is a dropped attempt (`cot_truncated`), the extractor's cut
    answer a failed call listed for the next run - never half an answer parsed into annotations."""
    src = problems_file(
        tmp_path,
        [
            {"id": "t", "question": "<image>Find x.", "images": ["a.png"], "answer": "3"},
            {
                "id": "g",
                "question": "<image>Find y.",
                "images": ["b.png"],
                "answer": "4",
                "cot": "From the figure, AB = 4. So y = \\boxed{4}.",
            },
        ],
    )
    out = tmp_path / "annotated.jsonl"
    url, model = tiny_server["base_url"], tiny_server["model"]
    args = [
        "annotate",
        str(src),
        "-o",
        str(out),
        "--teacher",
        "openai",
        "--teacher-base-url",
        url,
        "--teacher-model",
        model,
        "--teacher-max-tokens",
        "16",
        "--extractor",
        "openai",
        "--extractor-base-url",
        url,
        "--extractor-model",
        model,
        *both("timeout", "60"),
        "--json",
    ]
    result = runner.invoke(app, [*args, *both("max-retries", "0")])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["failed"], summary["kept"], summary["dropped"]) == (1, 0, 1)
    assert summary["cot_given"] == 1 and summary["cot_distilled"] == 1
    reasons = {d["id"]: d["reason"] for d in rows_of(tmp_path / "annotated.dropped.jsonl")}
    assert reasons == {"t": "cot_truncated"}
    (failed,) = rows_of(tmp_path / "annotated.failed.jsonl")
    assert failed["id"] == "g" and "cut at max_tokens" in failed["error"]


def test_converters_round_trip(tmp_path: Path) -> None:
    src = problems_file(
        tmp_path,
        [
            {
                "id": f"g{i}",
                "question": f"<image>Find x{i}.",
                "images": [f"img/{i}.png"],
                "answer": str(i),
                "annotations": [f"AB = {i}", "$\\angle C = 90^\\circ$"],
                "cot": "c",
            }
            for i in range(3)
        ],
    )
    ours = read_jsonl(src, AnnotatedProblem)
    for suffix in (".parquet", ".jsonl"):
        released = tmp_path / f"released{suffix}"
        assert to_perception_r1(src, released) == 3
        back = tmp_path / f"back{suffix}" / "annotated.jsonl"
        assert from_perception_r1(released, back) == 3
        again = read_jsonl(back, AnnotatedProblem)
        assert [(r.id, r.question, r.answer, r.annotations) for r in again] == [
            (r.id, r.question, r.answer, r.annotations) for r in ours
        ]
        from PIL import Image, ImageChops

        for a, b in zip(ours, again, strict=True):
            with Image.open(a.images[0]) as x, Image.open(b.images[0]) as y:
                assert ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getbbox() is None


def test_reading_the_released_layout(tmp_path: Path) -> None:
    """A parquet shaped like the authors' file: no ids, image bytes embedded, `<infoK>` strings."""
    import io

    from datasets import Dataset, Features, Image, Sequence, Value
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (20, 20), "red").save(buf, format="JPEG")
    rows = [
        {
            "problem": "<image>Find f.",
            "answer": "14",
            "images": [{"bytes": buf.getvalue(), "path": None}],
            "visual_key_info": "<info1>$JKLM$ is a parallelogram.</info1>\n<info2>$JK = 3f - 6$</info2>",
        },
        {
            "problem": "<image>Find g.",
            "answer": "2",
            "images": [{"bytes": buf.getvalue(), "path": None}],
            "visual_key_info": "<info1>$g = 2$</info1>",
        },
    ]
    features = Features(
        {
            "problem": Value("string"),
            "answer": Value("string"),
            "images": Sequence(Image()),
            "visual_key_info": Value("string"),
        }
    )
    src = tmp_path / "geo3k_with_visual_key_info.parquet"
    Dataset.from_list(rows, features=features).to_parquet(str(src))
    out = tmp_path / "data" / "annotated.jsonl"
    result = runner.invoke(app, ["convert", str(src), str(out)])
    assert result.exit_code == 0, result.output
    recs = read_jsonl(out, AnnotatedProblem)
    assert [r.id for r in recs] == ["r1-1", "r1-2"]
    assert recs[0].annotations == ["$JKLM$ is a parallelogram.", "$JK = 3f - 6$"]
    assert recs[1].annotations == ["$g = 2$"]
    assert recs[0].images[0].endswith(".jpg") and Path(recs[0].images[0]).parent.name == "annotated_images"
    (name,) = json.loads(out.read_text().splitlines()[0])["images"]
    assert name.startswith("annotated_images/r1-1-") and name.endswith("_0.jpg")


def test_converter_errors_name_the_row(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    info = '"visual_key_info": "<info1>AB = 1</info1>"'
    src.write_text(
        f'{{"problem": "q", "answer": "1", "images": ["missing.png"], {info}}}\n{{"answer": "1", {info}}}\n'
    )
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1
    assert f"{src}:1: images[0]: image file not found" in result.output
    assert f"{src}:2: problem: required column is missing" in result.output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupted_run_resumes_to_the_same_output(tmp_path: Path, sig: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    rows = [
        {
            "id": f"p{i:02d}",
            "question": f"<image>Right triangle with sides 3 and 4, case {i}.",
            "images": ["a.png"],
            "answer": "5",
        }
        for i in range(30)
    ]
    src = problems_file(tmp_path, rows)
    pr = str(Path(sys.executable).parent / "pr")

    def strip_time(path: Path) -> list[dict]:
        out = rows_of(path)
        for r in out:
            r["provenance"].pop("created")
        return out

    with FaultServer(reply=fake_models, latency=0.05) as srv:
        args = [*llm_args(srv.base_url), "--no-cache", *both("concurrency", "2")]
        reference = tmp_path / "reference.jsonl"
        assert runner.invoke(app, ["annotate", str(src), "-o", str(reference), *args]).exit_code == 0

        out = tmp_path / "interrupted.jsonl"
        proc = subprocess.Popen([pr, "annotate", str(src), "-o", str(out), *args], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
            time.sleep(0.05)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        if sig == "SIGINT":
            assert b"interrupted" in err and b"Traceback" not in err
        partial = out.read_text()
        assert 5 <= partial.count("\n") < 30 and partial.endswith("\n")

        result = runner.invoke(app, ["annotate", str(src), "-o", str(out), *args, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["already_done"] >= 5
    assert strip_time(out) == strip_time(reference)
