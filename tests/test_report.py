"""`pr report` on eval folders laid out as `pr eval` writes them (and one written by `pr eval` itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import eval_fixtures as fx
from prcli.cli import app

runner = CliRunner()


def eval_folder(
    folder: Path,
    model: str | None,
    bench: str,
    outcomes: list[bool],
    *,
    subset: str | None = None,
    protocol: str | None = None,
) -> Path:
    """items.jsonl + summary.json with the fields `pr eval` writes; item i has id q{i}."""
    folder.mkdir(parents=True)
    items = [
        {"id": f"q{i}", "correct": ok, "response": "...", "extracted": "B", "prediction": "B", "answer": "B"}
        | {"method": "boxed", "category": "math"}
        for i, ok in enumerate(outcomes)
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    correct = sum(outcomes)
    summary = {
        "bench": bench,
        "n": len(outcomes),
        "correct": correct,
        "accuracy": round(100 * correct / len(outcomes), 2),
        "breakdown": {},
        "title": bench,
        "model": model,
        "subset": subset,
        "answer_judge": None,
    }
    if protocol:
        summary["protocol"] = protocol
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def cells(both: int, b: int, c: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Outcomes of A and B with the given 2x2 table (b: A right and B wrong; c: the reverse)."""
    pairs = [(True, True)] * both + [(True, False)] * b + [(False, True)] * c + [(False, False)] * neither
    return [x for x, _ in pairs], [y for _, y in pairs]


def report(*args: str) -> dict:
    result = runner.invoke(app, ["report", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def two_models(tmp_path: Path) -> Path:
    """base and pr1 on MathVista (b = 2, c = 10 of 50) and MMStar (b = 1, c = 1 of 4)."""
    base, pr1 = cells(both=30, b=2, c=10, neither=8)
    eval_folder(tmp_path / "base/mathvista", "qwen2.5-vl-7b", "mathvista", base)
    eval_folder(tmp_path / "pr1/mathvista", "runs/pr1-7b", "mathvista", pr1)
    base, pr1 = cells(both=1, b=1, c=1, neither=1)
    eval_folder(tmp_path / "base/mmstar", "qwen2.5-vl-7b", "mmstar", base)
    eval_folder(tmp_path / "pr1/mmstar", "runs/pr1-7b", "mmstar", pr1, protocol="paper")
    return tmp_path


def test_table_differences_and_pr_mcnemars_p(two_models: Path) -> None:
    t = two_models
    out = report(
        *(str(t / m / b) for b in ("mmstar", "mathvista") for m in ("pr1", "base")), "-o", str(t / "out")
    )
    assert out["baseline"] == "runs/pr1-7b"  # the first model given
    out = report(
        *(str(t / m / b) for m in ("base", "pr1") for b in ("mmstar", "mathvista")), "-o", str(t / "out")
    )
    assert out["baseline"] == "qwen2.5-vl-7b"
    assert list(out["benchmarks"]) == ["mathvista", "mmstar"]  # the paper's column order
    base, pr1 = out["models"]["qwen2.5-vl-7b"], out["models"]["runs/pr1-7b"]
    assert (base["mathvista"]["accuracy"], pr1["mathvista"]["accuracy"]) == (64.0, 80.0)
    assert base["mathvista"]["difference"] is None and pr1["mathvista"]["difference"] == pytest.approx(16.0)
    assert (pr1["mmstar"]["protocol"], base["mmstar"]["protocol"]) == ("paper", "rules")
    assert pr1["mathvista"]["mcnemar"]["b"] == 2 and pr1["mathvista"]["mcnemar"]["c"] == 10

    result = runner.invoke(
        app,
        ["mcnemar", str(t / "base/mathvista/items.jsonl"), str(t / "pr1/mathvista/items.jsonl"), "--json"],
    )
    assert pr1["mathvista"]["p_value"] == json.loads(result.stdout)["p_value"]

    md = (t / "out/report.md").read_text()
    assert "| qwen2.5-vl-7b (baseline) | 64.0 · rules | 50.0 · rules |" in md
    assert "| runs/pr1-7b | 80.0 · rules · +16.0 (p = 0.039) | 50.0 · paper · +0.0 (p = 1) |" in md
    assert json.loads((t / "out/report.json").read_text()) == out
    assert r"80.0 \textperiodcentered{} rules" in (t / "out/report.tex").read_text()
    series = json.loads(Image.open(t / "out/report.png").text["Series"])
    assert series == ["qwen2.5-vl-7b (rules)", "runs/pr1-7b (rules, paper)"]


def test_subset_is_marked_and_not_paired(tmp_path: Path) -> None:
    full, limited = cells(both=5, b=0, c=3, neither=2)
    eval_folder(tmp_path / "a", "base", "mathverse", full)
    eval_folder(tmp_path / "b", "tuned", "mathverse", limited[:4], subset="the first 4 items (--limit 4)")
    out = report(str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out"))
    cell = out["models"]["tuned"]["mathverse"]
    assert cell["subset"] == "the first 4 items (--limit 4)" and cell["n"] == 4
    assert cell["mcnemar"] == "n/a: different items" and cell["p_value"] is None
    md = (tmp_path / "out/report.md").read_text()
    assert "| tuned | 100.0† · rules · +50.0 (n/a: different items) |" in md
    assert "- † tuned on MathVerse was scored on a subset of 4 items: the first 4 items (--limit 4)." in md
    assert r"100.0$^\dagger$" in (tmp_path / "out/report.tex").read_text()
    shown = runner.invoke(
        app, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out")]
    )
    assert shown.exit_code == 0 and "MathVerse" in shown.output and "100.0†" in shown.output


def test_labels_baseline_and_published_rows(two_models: Path) -> None:
    t = two_models
    folders = [str(t / m / "mathvista") for m in ("base", "pr1")]
    out = report(*folders, "--labels", "Qwen,PR1", "--baseline", "PR1", "--paper", "-o", str(t / "out"))
    assert out["models"]["Qwen"]["mathvista"]["difference"] == pytest.approx(-16.0)
    assert out["published"] == {
        "Qwen2.5-VL-7B-IT": {"mathvista": 68.1},
        "Perception-R1-7B": {"mathvista": 74.2},
    }
    md = (t / "out/report.md").read_text()
    assert "| Qwen2.5-VL-7B-IT (published) | 68.1 · paper |" in md
    assert "| Perception-R1-7B (published) | 74.2 · paper |" in md
    assert "Marked published: Perception-R1's Table 1" in md
    tex = (t / "out/report.tex").read_text()
    assert tex.count(r"\midrule") == 2 and "Perception-R1-7B (published) & 74.2" in tex


def test_folders_written_by_pr_eval(tmp_path: Path) -> None:
    data = fx.mmstar(tmp_path)
    folders = []
    for name, responses, limit in (
        ("a", ["B", "A"], []),
        ("b", ["B", "D"], []),
        ("c", ["B"], ["--limit", "1"]),
    ):
        preds = tmp_path / f"{name}.jsonl"
        preds.write_text(
            "".join(json.dumps({"id": str(i), "response": r}) + "\n" for i, r in enumerate(responses))
        )
        folder = tmp_path / name
        args = [
            "eval",
            "-b",
            "mmstar",
            "--data",
            str(data),
            "-o",
            str(folder),
            "--predictions",
            str(preds),
            *limit,
        ]
        assert runner.invoke(app, args).exit_code == 0
        folders.append(str(folder))
    result = runner.invoke(app, ["report", *folders, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "names no model (scored from --predictions)" in result.output
    out = report(*folders, "--labels", "a", "--labels", "b", "--labels", "c", "-o", str(tmp_path / "out"))
    a, b, c = (out["models"][m]["mmstar"] for m in "abc")
    assert (a["accuracy"], b["accuracy"], b["difference"]) == (50.0, 100.0, 50.0)
    assert b["mcnemar"]["b"] == 0 and b["mcnemar"]["c"] == 1 and b["p_value"] == 1.0
    assert c["subset"] and c["mcnemar"] == "n/a: different items"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no summary", "mathvista: no summary.json; is it a `pr eval` output folder?"),
        ("same model and bench", "two folders for model 'qwen2.5-vl-7b' on mathvista"),
        ("unknown baseline", "--baseline 'gpt' is none of the models: qwen2.5-vl-7b, runs/pr1-7b"),
        ("labels", "--labels gives 1 name(s) for 2 folder(s)"),
        ("stale items", "summary.json counts 50 items but items.jsonl has 51; rerun `pr eval` on it"),
        ("failed items", "3 item(s) failed and are not in its accuracy (see failed.jsonl)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(two_models: Path, case: str, message: str) -> None:
    t = two_models
    folders = [str(t / "base/mathvista"), str(t / "pr1/mathvista")]
    extra: list[str] = []
    if case == "no summary":
        (t / "pr1/mathvista/summary.json").unlink()
    elif case == "same model and bench":
        folders.append(str(t / "base/mathvista"))
    elif case == "unknown baseline":
        extra = ["--baseline", "gpt"]
    elif case == "labels":
        extra = ["--labels", "one"]
    elif case == "failed items":  # their accuracy is over the items that did not fail
        summary = json.loads((t / "pr1/mathvista/summary.json").read_text())
        (t / "pr1/mathvista/summary.json").write_text(json.dumps({**summary, "failed": 3}))
    else:
        with open(t / "pr1/mathvista/items.jsonl", "a") as fh:
            fh.write(json.dumps({"id": "extra", "correct": True}) + "\n")
    result = runner.invoke(app, ["report", *folders, *extra, "-o", str(t / "out")])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (t / "out").exists()


def test_a_problem_level_headline_is_labelled_and_not_tested_per_item(tmp_path: Path) -> None:
    """We-Math's headline is Score (Strict) over problems: a difference in it is shown, but McNemar on
    the rows would test another quantity."""
    base, pr1 = cells(both=30, b=2, c=10, neither=8)
    for name, model, outcomes in (("base", "qwen2.5-vl-7b", base), ("pr1", "runs/pr1-7b", pr1)):
        folder = eval_folder(tmp_path / name / "wemath", model, "wemath", outcomes)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "headline": "score_strict"}))
    out = report(str(tmp_path / "base/wemath"), str(tmp_path / "pr1/wemath"), "-o", str(tmp_path / "out"))
    assert "score_strict" in (tmp_path / "out" / "report.md").read_text()
    cell = out["models"]["runs/pr1-7b"]["wemath"]
    assert cell["headline"] == "score_strict" and cell["difference"] == 16.0
    assert cell["mcnemar"] == "n/a: not a per-item accuracy" and cell["p_value"] is None
