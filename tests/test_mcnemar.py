"""`pr mcnemar` on hand-built files whose b and c are known; p-values computed here independently."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prcli.cli import app
from prcli.stats import mcnemar

runner = CliRunner()


def exact_p(b: int, c: int) -> float:
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def midp(b: int, c: int) -> float:
    n, k = b + c, min(b, c)
    return min(1.0, 2 * (sum(math.comb(n, i) for i in range(k)) + 0.5 * math.comb(n, k)) / 2**n)


def chi2_p(b: int, c: int, corrected: bool) -> float:
    x = ((abs(b - c) - (1 if corrected else 0)) ** 2) / (b + c)
    return math.erfc(math.sqrt(x / 2))  # survival function of chi-square with 1 degree of freedom


def pair_files(
    folder: Path, both: int, b: int, c: int, neither: int, *, field: str = "correct", extra=None
) -> tuple[Path, Path]:
    """Two items.jsonl-like files with the given 2x2 cells (A right/B wrong = b, A wrong/B right = c)."""
    cells = [(True, True)] * both + [(True, False)] * b + [(False, True)] * c + [(False, False)] * neither
    rows_a, rows_b = [], []
    for i, (x, y) in enumerate(cells):
        cat = {"task": "geometry" if i % 2 else "algebra"} if extra is None else extra(i)
        rows_a.append({"id": f"q{i}", field: x, **cat})
        rows_b.append({"id": f"q{i}", field: y, **cat})
    a, bb = folder / "a.jsonl", folder / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    bb.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows_b)))  # pairing is by id, not order
    return a, bb


def run(*args: str) -> dict:
    result = runner.invoke(app, ["mcnemar", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("b", "c", "paper"), [(1, 5, 0.22), (2, 4, 0.69), (2, 10, 0.04)])
def test_reproduces_the_papers_p_values(tmp_path: Path, b: int, c: int, paper: float) -> None:
    a_path, b_path = pair_files(tmp_path, both=30, b=b, c=c, neither=14 - b - c + 6)
    out = run(str(a_path), str(b_path))
    assert (out["b"], out["c"], out["method"]) == (b, c, "exact")
    assert out["p_value"] == pytest.approx(exact_p(b, c), abs=1e-12)
    assert round(out["p_value"], 2) == paper


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 7), (3, 3), (9, 31), (40, 25)])
def test_every_method_against_independent_formulas(tmp_path: Path, b: int, c: int) -> None:
    a_path, b_path = pair_files(tmp_path, both=20, b=b, c=c, neither=11)
    for method, expected in [
        ("exact", exact_p(b, c) if b + c else 1.0),
        ("midp", midp(b, c) if b + c else 1.0),
        ("chi2", chi2_p(b, c, False) if b + c else 1.0),
        ("chi2-cc", chi2_p(b, c, True) if b + c else 1.0),
    ]:
        out = run(str(a_path), str(b_path), "--method", method)
        assert out["p_value"] == pytest.approx(expected, abs=1e-9), method
    n = 20 + b + c + 11
    assert (
        out["n"] == n
        and out["acc_a"] == pytest.approx(100 * (20 + b) / n)
        and out["acc_b"] == pytest.approx(100 * (20 + c) / n)
    )
    assert out["difference"] == pytest.approx(100 * (c - b) / n)
    assert out["ci"][0] <= out["difference"] <= out["ci"][1] or b == c == 0


def test_confidence_interval_and_odds_ratio(tmp_path: Path) -> None:
    from scipy.stats import binomtest

    a_path, b_path = pair_files(tmp_path, both=28, b=2, c=10, neither=10)
    out = run(str(a_path), str(b_path))
    n, z = 52.0, 1.959963984540054  # Agresti-Min: half a count added to each of the four cells
    diff = (10.5 - 2.5) / n
    se = math.sqrt(13 - 8**2 / n) / n
    assert out["ci"] == pytest.approx([100 * (diff - z * se), 100 * (diff + z * se)], abs=1e-6)
    ci = binomtest(10, 12).proportion_ci(method="exact")
    assert out["odds_ratio"] == 5.0
    assert out["odds_ratio_ci"] == pytest.approx([ci.low / (1 - ci.low), ci.high / (1 - ci.high)])


def test_small_discordant_counts_warn_for_asymptotic_tests() -> None:
    a = [True] * 5 + [False] * 5
    b = [False] * 5 + [True] * 5
    assert mcnemar(a, b, method="chi2").warnings and mcnemar(a, b, method="chi2-cc").warnings
    assert not mcnemar(a, b, method="exact").warnings
    with pytest.raises(ValueError, match="10 outcomes for A but 9"):
        mcnemar(a, b[:-1])


def test_bootstrap_is_seeded(tmp_path: Path) -> None:
    a_path, b_path = pair_files(tmp_path, both=28, b=2, c=10, neither=10)
    one = run(str(a_path), str(b_path), "--bootstrap", "2000", "--seed", "3")["bootstrap_ci"]
    two = run(str(a_path), str(b_path), "--bootstrap", "2000", "--seed", "3")["bootstrap_ci"]
    assert one == two and one[0] < 16.0 < one[1]


def test_other_key_and_field_eg_perception_labels(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"pid": str(i), "perception_ok": int(i < 7)}) + "\n" for i in range(10)))
    b.write_text("".join(json.dumps({"pid": str(i), "perception_ok": int(i < 9)}) + "\n" for i in range(10)))
    out = run(str(a), str(b), "--key", "pid", "--field", "perception_ok")
    assert (out["b"], out["c"], out["n"]) == (0, 2, 10) and out["field"] == "perception_ok"
    assert len(out["inputs"]["a_sha256"]) == 64


def test_by_category_with_holm_and_bh(tmp_path: Path) -> None:
    def cat(i: int) -> dict:
        return {"task": ["geometry", "algebra", "charts"][i % 3], "skills": ["a", "b"] if i % 2 else ["a"]}

    a_path, b_path = pair_files(tmp_path, both=30, b=3, c=15, neither=12, extra=cat)
    rows_a = [json.loads(x) for x in a_path.read_text().splitlines()]
    rows_b = {r["id"]: r for r in map(json.loads, b_path.read_text().splitlines())}
    raw = {}
    for task in ("geometry", "algebra", "charts"):
        ids = [r["id"] for r in rows_a if r["task"] == task]
        b = sum(
            1
            for i in ids
            if rows_b[i]["correct"] is False and next(r for r in rows_a if r["id"] == i)["correct"]
        )
        c = sum(
            1
            for i in ids
            if rows_b[i]["correct"] is True and not next(r for r in rows_a if r["id"] == i)["correct"]
        )
        raw[task] = exact_p(b, c) if b + c else 1.0
    out = run(str(a_path), str(b_path), "--by", "task")
    cats = {c["value"]: c for c in out["by"]["categories"]}
    assert {k: v["p_value"] for k, v in cats.items()} == pytest.approx(raw)
    ordered = sorted(raw.items(), key=lambda kv: kv[1])
    holm, running = {}, 0.0
    for rank, (k, p) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p))
        holm[k] = running
    assert {k: v["p_adjusted"] for k, v in cats.items()} == pytest.approx(holm)
    bh_out = run(str(a_path), str(b_path), "--by", "task", "--correction", "bh")
    m = len(ordered)
    bh, running = {}, 1.0
    for rank in range(m - 1, -1, -1):
        k, p = ordered[rank]
        running = min(running, p * m / (rank + 1))
        bh[k] = running
    assert {c["value"]: c["p_adjusted"] for c in bh_out["by"]["categories"]} == pytest.approx(bh)
    multi = run(str(a_path), str(b_path), "--by", "skills")  # list-valued: an item counts in each
    counts = {c["value"]: c["n"] for c in multi["by"]["categories"]}
    assert counts == {"a": 60, "b": 30}


def test_malformed_inputs_are_clear_errors(tmp_path: Path) -> None:
    a_path, b_path = pair_files(tmp_path, both=3, b=1, c=1, neither=1)
    with open(b_path, "a") as fh:
        fh.write(json.dumps({"id": "extra", "correct": True}) + "\n")
        fh.write(json.dumps({"id": "q0", "correct": False}) + "\n")
        fh.write(json.dumps({"id": "q9", "correct": "yes"}) + "\n")
    result = runner.invoke(app, ["mcnemar", str(a_path), str(b_path)])
    assert result.exit_code == 1
    assert f"{b_path}:8: id: duplicate id 'q0' (first at line 6)" in result.output
    assert f"{b_path}:9: correct: expected a boolean or 0/1, got 'yes'" in result.output
    assert f"{b_path}: id: 'extra' is not in {a_path}" in result.output

    out = run(str(a_path), str(b_path), "--intersect")
    # q0 is dropped (its outcome is ambiguous), 'extra' and 'q9' have no partner
    assert out["n"] == 5 and out["only_in_b"] == 1 and len(out["dropped"]) == 2

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "q0", "correct": true}\n{"id": "q1",\n{"correct": false}\n')
    result = runner.invoke(app, ["mcnemar", str(a_path), str(broken), "--intersect"])
    assert result.exit_code == 1
    assert (
        f"{broken}:2: invalid JSON" in result.output
        and f"{broken}:3: id: required field is missing" in result.output
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(app, ["mcnemar", str(a_path), str(empty)])
    assert result.exit_code == 1 and f"{empty}: empty file: no items" in result.output
    result = runner.invoke(app, ["mcnemar", str(a_path), str(tmp_path / "none.jsonl")])
    assert result.exit_code == 1 and "file not found" in result.output


def test_table_output(tmp_path: Path) -> None:
    a_path, b_path = pair_files(tmp_path, both=28, b=2, c=10, neither=10)
    result = runner.invoke(app, ["mcnemar", str(a_path), str(b_path), "--method", "chi2"])
    assert result.exit_code == 0
    assert "b = 2" in result.output and "c = 10" in result.output and "p (chi2) <- selected" in result.output
    assert "warning:" in result.output  # 12 discordant pairs is too few for chi-square


def test_a_field_no_line_has_is_one_error_listing_the_fields(tmp_path: Path) -> None:
    a_path, b_path = pair_files(tmp_path, both=100, b=10, c=5, neither=5)
    result = runner.invoke(app, ["mcnemar", str(a_path), str(b_path), "--field", "acc"])
    assert result.exit_code == 1
    problems = result.output.splitlines()[1:]
    assert problems == [
        f"{a_path}: acc: no such field in all 120 lines; the fields are: id, correct, task",
        f"{b_path}: acc: no such field in all 120 lines; the fields are: id, correct, task",
    ]
    result = runner.invoke(app, ["mcnemar", str(a_path), str(b_path), "--key", "qid"])
    assert result.exit_code == 1 and result.output.count("qid: no such field") == 2


@pytest.mark.parametrize(("bad_id", "shown"), [(0, "0"), (None, "null"), (1.5, "1.5"), (["q"], '["q"]')])
def test_ids_must_be_strings(tmp_path: Path, bad_id: object, shown: str) -> None:
    """0 and "0" (or null and "None") are not the same item: a non-string id is an error, not paired."""
    a_path = tmp_path / "a.jsonl"
    a_path.write_text(json.dumps({"id": bad_id, "correct": True}) + "\n" + '{"id": "x", "correct": true}\n')
    b_path = tmp_path / "b.jsonl"
    b_path.write_text(
        json.dumps({"id": str(bad_id), "correct": False}) + "\n" + '{"id": "x", "correct": true}\n'
    )
    for extra in ([], ["--intersect"]):
        result = runner.invoke(app, ["mcnemar", str(a_path), str(b_path), *extra])
        assert result.exit_code == 1, result.output
        assert f"{a_path}:1: id: expected a string, got {shown}" in result.output
