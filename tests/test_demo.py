"""A shortened `pr demo`: every artifact exists and is well-formed; `pr plot` on a run's files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from prcli.cli import app
from prcli.jsonl import read_jsonl
from prcli.records import AnnotatedProblem, EvalItem, Judgement, Problem

runner = CliRunner()


def is_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


@pytest.mark.slow
def test_short_demo_writes_every_artifact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(
        app, ["demo", "--out", str(out), "--steps", "3", "--n-train", "10", "--n-test", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    files = {k: Path(v) for k, v in report["files"].items()}

    train = read_jsonl(files["train problems"], Problem)
    test = read_jsonl(files["test problems"], Problem)
    assert len(train) == 10 and len(test) == 5 and not {p.id for p in train} & {p.id for p in test}
    assert {p.model_extra["category"] for p in train} == {
        "rectangle",
        "right_triangle",
        "triangle_angles",
        "circle",
        "square",
    }
    with Image.open(train[0].images[0]) as im:
        assert im.size == (128, 128)

    annotated = read_jsonl(files["annotated train"], AnnotatedProblem)
    assert len(annotated) == 10 and all(a.annotations for a in annotated)
    assert all(a.annotations[0].startswith("A ") for a in annotated)  # "A rectangle." etc: the figure's shape

    metrics = [json.loads(x) for x in files["metrics"].read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and all("rewards/perception/mean" in m for m in metrics)
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(files["trained model"])

    for name in ("base", "trained"):
        items = read_jsonl(files[f"eval {name}"], EvalItem)
        assert [i.id for i in items] == [p.id for p in test]
        summary = json.loads((files[f"eval {name}"].parent / "summary.json").read_text())
        assert summary["n"] == 5 and set(summary["breakdown"]["category"]) <= {
            p.model_extra["category"] for p in test
        }
        judgements = read_jsonl(files[f"judgements {name}"], Judgement)
        assert len(judgements) == 5 and all(j.score is not None and 0 <= j.score <= 1 for j in judgements)

    # pr diagnose replaced the score threshold: the breakdown is the label files' own counts
    assert "failures by type" in result.output
    checkable = []
    for name in ("base", "trained"):
        labels = [json.loads(x) for x in files[f"perception labels {name}"].read_text().splitlines()]
        assert [x["id"] for x in labels] == [p.id for p in test]
        types = Counter(x["error_type"] for x in labels)
        cell = report["numbers"][f"breakdown_{name}"]
        assert {t: cell[t] for t in ("none", "perception", "reasoning", "lucky", "unknown")} == {
            t: types[t] for t in ("none", "perception", "reasoning", "lucky", "unknown")
        }
        unknown_failures = sum(1 for x in labels if x["error_type"] == "unknown" and not x["correct"])
        assert cell["n"] == 5 and cell["unknown_failures"] == unknown_failures
        assert cell["failures"] == sum(1 for x in labels if not x["correct"])
        known = types["perception"] + types["reasoning"]
        assert cell["perception_share"] == (round(types["perception"] / known, 4) if known else None)
        checkable.append({x["id"] for x in labels if x["perception_error"] is not None})

    mcnemar = json.loads(files["mcnemar"].read_text())
    assert {"n", "b", "c", "p_value", "method", "acc_a", "acc_b"} <= mcnemar["accuracy"].keys()
    assert mcnemar["accuracy"]["n"] == 5 and mcnemar["accuracy"]["method"] == "exact"
    both = checkable[0] & checkable[1]
    if both:
        assert mcnemar["perception"]["outcome"] == "perception" and mcnemar["perception"]["n"] == len(both)
        assert mcnemar["perception"]["excluded_null"]["items"] == 5 - len(both)
    else:
        assert mcnemar["perception"] is None and report["numbers"]["p_perception"] is None

    plots = [Path(p) for p in report["plots"]]
    assert [p.name for p in plots] == ["training_curves.png", "eval_comparison.png", "perception_scores.png"]
    assert all(is_png(p) for p in plots)
    assert {"perception_first", "perception_last", "accuracy_base", "accuracy_trained"} <= report[
        "numbers"
    ].keys()


def test_pr_plot_on_run_files(tmp_path: Path) -> None:
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text(
        "".join(
            json.dumps(
                {
                    "step": s,
                    "loss": 0.0,
                    "reward": 0.1 * s,
                    "kl": 0.01 * s,
                    "completions/mean_length": 20 + s,
                    **{
                        f"rewards/{k}/mean": 0.05 * s
                        for k in ("accuracy", "format", "perception", "repetition")
                    },
                }
            )
            + "\n"
            for s in range(1, 11)
        )
    )
    items = []
    for name, acc in (("base", 0.3), ("trained", 0.6)):
        path = tmp_path / name / "items.jsonl"
        path.parent.mkdir()
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "id": str(i),
                        "correct": (i % 10) < acc * 10,
                        "response": "",
                        "extracted": None,
                        "prediction": None,
                        "task": ["geometry", "charts"][i % 2],
                    }
                )
                + "\n"
                for i in range(20)
            )
        )
        items.append(path)
    judged = tmp_path / "judge" / "trained.jsonl"
    judged.parent.mkdir()
    judged.write_text(
        "".join(
            json.dumps({"id": str(i), "verdicts": [1, 0], "score": 0.5, "raw": None, "error": None}) + "\n"
            for i in range(5)
        )
    )
    out = tmp_path / "plots"
    result = runner.invoke(app, ["plot", str(metrics), *map(str, items), str(judged), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["eval_comparison.png", "perception_scores.png", "training_run.png"]
    assert all(is_png(out / name) for name in written)

    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"x": 1}\n')
    result = runner.invoke(app, ["plot", str(odd), "-o", str(out)])
    assert result.exit_code == 1 and "not training metrics, eval items or judgements" in result.output
