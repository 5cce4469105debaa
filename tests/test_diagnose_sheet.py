"""`pr diagnose --sample/--agreement`: the labelling sheet in a real headless browser, and kappa."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from prcli.diagnose.agreement import kappa_and_table
from prcli.diagnose.sheet import marked_response
from test_diagnose import diagnose

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_kappa_and_confusion_hand_computed() -> None:
    # human yes/auto yes 20, yes/no 5, no/yes 10, no/no 15: po = 35/50 = 0.7,
    # pe = 25/50 * 30/50 + 25/50 * 20/50 = 0.5, kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    pairs += [(None, True)] * 3 + [(False, None)] * 2  # undecided: in the table, not in kappa
    got = kappa_and_table(pairs)
    assert got["kappa"] == 0.4
    assert got["observed_agreement"] == 0.7
    assert (got["n"], got["n_decided"]) == (55, 50)
    assert got["confusion"] == {
        "yes": {"yes": 20, "no": 5, "unknown": 0},
        "no": {"yes": 10, "no": 15, "unknown": 2},
        "unknown": {"yes": 3, "no": 0, "unknown": 0},
    }
    assert kappa_and_table([(True, True)] * 4)["kappa"] is None  # one category: undefined, not nan


def test_marks_the_judged_facts() -> None:
    facts = [{"fact": "AB = 6", "verdict": "contradicted"}, {"fact": "BC = 4", "verdict": "consistent"}]
    out = marked_response("Since AB = 8 and BC = 4 <b>, so 12", facts)
    assert '<mark class="contradicted" title="fact 1: AB = 6 (contradicted)">AB = 8</mark>' in out
    assert '<mark class="consistent" title="fact 2: BC = 4 (consistent)">BC = 4</mark>' in out
    assert "&lt;b&gt;" in out  # the response is escaped


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    Image.new("RGB", (8, 8), "red").save(tmp_path / "fig.png")
    annotated = write_jsonl(
        tmp_path / "annotated.jsonl",
        [
            {"id": "g1", "question": "Find the perimeter", "answer": "14", "images": ["fig.png"],
             "annotations": ["AB = 3", "BC = 4"]},
            {"id": "g2", "question": "Find angle C", "answer": "50", "annotations": ["angle B is 40°"]},
            {"id": "g3", "question": "Find AC", "answer": "5", "annotations": ["AC = 5"]},
        ],
    )  # fmt: skip
    items = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "g1", "correct": True, "response": "AB = 3 and BC = 4, so 14"},
            {"id": "g2", "correct": False, "response": "angle B = 50, so 40"},
            {"id": "g3", "correct": False, "response": "AC = 5 but I add 1: 6"},
        ],
    )
    return {"annotated": annotated, "items": items, "out": tmp_path / "labels.jsonl", "dir": tmp_path}


def test_sheet_is_written_and_self_contained(files: dict[str, Path]) -> None:
    result = diagnose(files, "--sample", "2", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    sheet = json.loads(result.output)["sheet"]
    assert (sheet["n"], sheet["of"]) == (2, 3)
    page = Path(sheet["path"]).read_text()
    assert page.count('<section class="item"') == 2
    assert "http://" not in page and "https://" not in page  # no network
    again = diagnose(files, "--sample", "2", "--seed", "1", "--json")
    assert Path(json.loads(again.output)["sheet"]["path"]).read_text() == page  # the seed fixes the draw


def test_agreement_reports_kappa_and_names_bad_lines(files: dict[str, Path]) -> None:
    human = write_jsonl(
        files["dir"] / "human.jsonl",
        [
            {"id": "g1", "perception_error": False, "notes": None},
            {"id": "g2", "perception_error": True},
            {"id": "g3", "perception_error": True},
            {"id": "zz", "perception_error": None},
        ],
    )
    result = diagnose(files, "--agreement", str(human), "--json")
    assert result.exit_code == 0, result.output
    agreed = json.loads(result.output)["summary"]["agreement"]
    # automatic: g1 no, g2 yes, g3 no -> po = 2/3, pe = 2/3*1/3 + 1/3*2/3 = 4/9, kappa = (2/9)/(5/9) = 0.4
    assert agreed["kappa"] == 0.4 and agreed["n_decided"] == 3 and agreed["not_in_labels"] == 1
    assert agreed["confusion"]["yes"] == {"yes": 1, "no": 1, "unknown": 0}
    summary = json.loads((files["dir"] / "labels.summary.json").read_text())
    assert summary["agreement"]["kappa"] == 0.4
    printed = diagnose(files, "--agreement", str(human))
    assert "kappa 0.4" in printed.output

    bad = files["dir"] / "bad.jsonl"
    bad.write_text('{"id": "g1", "perception_error": false}\n{"id": "g2", "perception_error": "maybe"}\n')
    result = diagnose(files, "--agreement", str(bad))
    assert result.exit_code != 0
    assert f"{bad}:2" in result.output


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_sheet_in_headless_chromium(files: dict[str, Path], tmp_path: Path) -> None:
    result = diagnose(files, "--sample", "3")
    assert result.exit_code == 0, result.output
    page = files["dir"] / "labels.sheet.html"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        page.as_uri() + "#selftest",
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'data-selftest="done"' in dom  # the page's script ran to the end without an error
    assert dom.count('<section class="item"') == 3
    assert dom.count('src="data:image/png;base64,') == 1  # g1's figure, inlined
    assert dom.count("no image") == 2
    assert "Find the perimeter" in dom
    assert '<mark class="contradicted"' in dom  # g2's misread angle
    export = dom.split('<pre id="export">', 1)[1].split("</pre>", 1)[0]
    lines = [json.loads(x) for x in export.strip().splitlines()]
    assert lines == [
        {"id": "g1", "perception_error": True, "notes": "selftest note"},
        {"id": "g2", "perception_error": False, "notes": None},
        {"id": "g3", "perception_error": None, "notes": None},
    ]
    # and the export is what --agreement reads
    write_jsonl(files["dir"] / "human.jsonl", lines)
    agreed = diagnose(files, "--agreement", str(files["dir"] / "human.jsonl"), "--json")
    assert json.loads(agreed.output)["summary"]["agreement"]["n"] == 3
