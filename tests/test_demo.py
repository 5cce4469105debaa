"""`pr demo --quick`: every stage runs, the two arms differ only in their rewards, every reported number
is the files' own; `pr plot` on a run's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from prcli.cli import app
from prcli.jsonl import read_jsonl
from prcli.records import AnnotatedProblem, EvalItem, Problem

runner = CliRunner()


def is_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


@pytest.mark.slow
def test_quick_demo_runs_the_comparison_and_reports_it_truthfully(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    files = {k: Path(v) for k, v in report["files"].items()}

    train = read_jsonl(files["train problems"], Problem)
    test = read_jsonl(files["test problems"], Problem)
    assert len(train) == 24 and len(test) == 12
    assert {p.model_extra["category"] for p in train} == {"side_colour", "same_colour"}
    assert not {Path(p.images[0]).read_bytes() for p in train} & {
        Path(p.images[0]).read_bytes() for p in test
    }
    annotated = read_jsonl(files["annotated train"], AnnotatedProblem)
    assert len(annotated) == 24 and all(len(a.annotations) == 2 for a in annotated)  # both shapes' colours

    # SFT imitates the imperfect teacher (its slips, the same figures); GRPO trains on the true answers
    teacher = [json.loads(x) for x in files["sft problems"].read_text().splitlines()]
    assert files["sft problems"].name == "train-teacher.jsonl"
    assert [t["id"] for t in teacher] == [p.id for p in train] and any(t["slip"] for t in teacher)
    assert yaml.safe_load((files["sft model"] / "config.yaml").read_text())["data"] == str(
        files["sft problems"]
    )
    assert report["numbers"]["teacher_slips"] == sum(t["slip"] for t in teacher)
    assert report["config"]["teacher_slip"] == 0.55 and report["config"]["quick"] is True

    # one SFT checkpoint, two arms from it with one budget: only the reward weights differ
    sft_loss = [json.loads(x)["loss"] for x in files["sft metrics"].read_text().splitlines()]
    assert len(sft_loss) == 6
    configs = {
        arm: yaml.safe_load((files[f"{arm} model"] / "config.yaml").read_text())
        for arm in ("rlvr", "perception-r1")
    }
    assert configs["rlvr"]["model"] == configs["perception-r1"]["model"] == str(files["sft model"])
    differ = {k for k in configs["rlvr"] if configs["rlvr"][k] != configs["perception-r1"].get(k)}
    assert differ == {"output_dir", "w_perception", "w_repetition"}, differ
    assert configs["rlvr"]["w_perception"] == configs["rlvr"]["w_repetition"] == 0
    assert configs["rlvr"]["data"] == str(files["annotated train"])  # GRPO on the true answers and facts
    for arm in ("rlvr", "perception-r1"):
        metrics = [json.loads(x) for x in files[f"metrics {arm}"].read_text().splitlines()]
        assert [m["step"] for m in metrics] == [1, 2] and all("rewards/perception/mean" in m for m in metrics)

    # every number in the report is the files' own
    rows = {r["model"]: r for r in report["models"]}
    assert list(rows) == ["sft", "rlvr", "perception-r1"]
    for name, row in rows.items():
        items = read_jsonl(files[f"eval {name}"], EvalItem)
        assert [i.id for i in items] == [p.id for p in test]
        assert row["correct"] == sum(i.correct for i in items) and row["n"] == 12
        labels = [json.loads(x) for x in files[f"perception labels {name}"].read_text().splitlines()]
        marks = [x["perception_error"] for x in labels]
        assert row["checked"] == sum(m is not None for m in marks) and row["unchecked"] == marks.count(None)
        assert row["perception_errors"] == sum(m is True for m in marks)
        wrong = [m for i, m in zip(items, marks, strict=True) if not i.correct]
        assert (row["wrong_misread"], row["wrong_reasoning"]) == (wrong.count(True), wrong.count(False))
        low, high = row["accuracy_ci"]
        assert 0 <= low <= row["accuracy"] <= high <= 1
    pairs = {(t["a"], t["b"], t["outcome"]) for t in report["tests"]}
    assert {
        (a, b, "accuracy") for a, b in [("sft", "rlvr"), ("sft", "perception-r1"), ("rlvr", "perception-r1")]
    } <= pairs
    mcnemar = json.loads(files["mcnemar"].read_text())
    for t in report["tests"]:
        saved = mcnemar[f"{t['a']} vs {t['b']}: {t['outcome']}"]
        assert (saved["n"], saved["b"], saved["c"], saved["p_value"]) == (
            t["n"],
            t["only_a"],
            t["only_b"],
            t["p_value"],
        )
    assert report["verdict"].startswith(("Perception-R1 makes", "perception errors: not comparable"))
    p_rlvr = next(
        t["p_value"] for t in report["tests"] if (t["a"], t["b"], t["outcome"]) == ("sft", "rlvr", "accuracy")
    )
    assert report["gain"].startswith(
        f"GRPO from the SFT checkpoint, held-out accuracy: SFT {rows['sft']['accuracy']:.1%} -> "
    )
    assert f"RLVR {rows['rlvr']['accuracy']:.1%} (McNemar p = {p_rlvr:.3g})" in report["gain"]
    p_pr1 = next(
        t["p_value"]
        for t in report["tests"]
        if (t["a"], t["b"], t["outcome"]) == ("sft", "perception-r1", "accuracy")
    )
    assert (
        f"Perception-R1 {rows['perception-r1']['accuracy']:.1%} (McNemar p = {p_pr1:.3g})" in report["gain"]
    )
    assert report["gain"].endswith("these numbers mean nothing]")  # --quick says so on both lines
    assert 0 < report["numbers"]["chance_accuracy"] < 1

    plots = [Path(p) for p in report["plots"]]
    assert [p.name for p in plots] == ["training_arms.png", "heldout_models.png", "heldout_by_answer.png"]
    assert all(is_png(p) for p in plots)
    with Image.open(plots[0]) as im:
        assert json.loads(im.text["Series"]) == ["RLVR (accuracy only)", "Perception-R1"] * 2
    with Image.open(plots[1]) as im:
        assert json.loads(im.text["Series"])[0].startswith("blind guess")
    with Image.open(plots[2]) as im:
        assert json.loads(im.text["Series"]) == ["sft", "rlvr", "perception-r1"]


def test_demo_refuses_an_unknown_kind(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "d"), "--kinds", "hexagons"])
    assert result.exit_code != 0 and "unknown task kind" in result.output and "hexagons" in result.output
    assert not (tmp_path / "d").exists()


def test_demo_refuses_kinds_its_teacher_cannot_rewrite(tmp_path: Path) -> None:
    out = str(tmp_path / "d")
    result = runner.invoke(app, ["demo", "--quick", "--out", out, "--kinds", "count_shapes"])
    assert result.exit_code != 0 and "--teacher-slip 0 --teacher-misread 0" in result.output
    result = runner.invoke(app, ["demo", "--quick", "--out", out, "--kinds", "side_colour"])
    assert result.exit_code != 0 and "slips only on same_colour" in result.output
    assert not (tmp_path / "d").exists()
    small = runner.invoke(app, ["demo", "--train-size", "5", "--out", str(tmp_path / "d")])
    assert small.exit_code != 0 and "below the 8 prompts of a GRPO step" in small.output
    assert not (tmp_path / "d").exists()


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


def test_eval_plot_counts_groups_and_draws_no_bar_for_a_group_a_model_lacks(tmp_path: Path) -> None:
    import math

    from prcli.plots import _accuracy, _group_label, plot_eval

    base = [{"id": str(i), "correct": i < 3, "answer": ["yes", "no"][i % 2]} for i in range(6)]
    other = [*base[:5], {"id": "5", "correct": True, "answer": "maybe"}]  # one "no" fewer, one "maybe"
    models = {"a": base, "b": other}
    assert (
        _group_label(models, "answer", "yes") == "yes (n=3)" and _group_label(models, "answer", "no") == "no"
    )
    assert _group_label({"a": base, "b": base}, "answer", "overall") == "overall (n=6)"
    assert math.isnan(_accuracy(base, ("answer", "maybe")))  # nothing to score: no bar, not 0%
    assert _accuracy(base, ("answer", "yes")) == pytest.approx(200 / 3)
    files = []
    for name, rows in models.items():
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = plot_eval(files, tmp_path / "by.png", field="answer", labels=["a", "b"], title="by answer")
    assert is_png(png)
