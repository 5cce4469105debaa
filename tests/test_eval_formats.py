"""`pr eval --predictions` in lmms-eval's and VLMEvalKit's layouts, and `--log-samples lmms-eval`.

The files are built in each tool's real layout (from their writers: lmms-eval's evaluator.py and
loggers/evaluation_tracker.py, VLMEvalKit's inference.py and smp/file.py `dump`) out of the real
MathVista testmini records and the real Bard outputs in tests/data (from the MathVista authors).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from prcli.cli import app
from prcli.eval import BENCHMARKS

DATA = Path(__file__).parent / "data" / "mathvista"
RECORDS = json.loads((DATA / "testmini.json").read_text())
OUTPUTS = json.loads((DATA / "outputs" / "bard" / "output.json").read_text())
N = 40  # the first 40 testmini items (pids 1..40)
PIDS = list(RECORDS)[:N]
runner = CliRunner()


def pr_eval(out: Path, predictions: Path, *extra: str) -> tuple[int, str]:
    args = ["eval", "-b", "mathvista", "--data", str(DATA / "testmini.json"), "--limit", str(N)]
    result = runner.invoke(app, [*args, "--predictions", str(predictions), "-o", str(out), "--json", *extra])
    return result.exit_code, result.output


def summary_of(out: Path, predictions: Path, *extra: str) -> dict:
    code, output = pr_eval(out, predictions, *extra)
    assert code == 0, output
    return json.loads((out / "summary.json").read_text())


def verdicts(out: Path) -> dict[str, bool]:
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    return {i["id"]: i["correct"] for i in items}


def prcli_predictions(path: Path, pids: list[str] = PIDS) -> Path:
    path.write_text("".join(json.dumps({"id": p, "response": OUTPUTS[p]["response"]}) + "\n" for p in pids))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, bool], Path]:
    """Our own predictions scored, with the lmms-eval log written beside them."""
    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "out"
    summary = summary_of(out, prcli_predictions(tmp / "p.jsonl"), "--log-samples", "lmms-eval")
    return summary, verdicts(out), out


def written_samples(out: Path) -> list[dict]:
    (path,) = (out / "lmms-eval" / "predictions").glob("*_samples_mathvista.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    return path


# ----------------------------------------------------------------------------- lmms-eval


def test_lmms_eval_log_round_trip(reference: tuple[dict, dict[str, bool], Path], tmp_path: Path) -> None:
    """Written in lmms-eval's layout, read back as lmms-eval: the same verdict for every item, the
    same accuracy; the log holds what lmms-eval's writer puts in a line and a results.json."""
    summary, ours, out = reference
    assert 0 < summary["correct"] < N  # a mix of right and wrong, so a mix-up would show
    lines = written_samples(out)
    assert [x["doc_id"] for x in lines] == list(range(N))
    first = lines[0]
    assert {
        "doc_id",
        "doc",
        "target",
        "resps",
        "filtered_resps",
        "doc_hash",
        "target_hash",
        "accuracy",
    } <= set(first)
    assert (first["doc"]["pid"], first["target"]) == ("1", RECORDS["1"]["answer"])
    assert first["resps"] == [[OUTPUTS["1"]["response"]]]
    (results_file,) = (out / "lmms-eval" / "predictions").glob("*_results.json")
    results = json.loads(results_file.read_text())
    assert results["results"]["mathvista"]["accuracy,none"] == pytest.approx(summary["correct"] / N)
    assert results["n-samples"]["mathvista"] == {"original": N, "effective": N}

    back = summary_of(
        tmp_path / "back",
        out
        / "lmms-eval"
        / "predictions"
        / results_file.name.replace("results.json", "samples_mathvista.jsonl"),
    )
    assert verdicts(tmp_path / "back") == ours
    assert (back["accuracy"], back["correct"], back["missing_predictions"]) == (
        summary["accuracy"],
        summary["correct"],
        0,
    )
    assert back["predictions_read"]["format"] == "lmms-eval"  # told by the file: no --predictions-format
    assert back["predictions_read"]["ids"].startswith("doc.pid")


def test_lmms_eval_newer_layouts_by_position(
    reference: tuple[dict, dict[str, bool], Path], tmp_path: Path
) -> None:
    """lmms-eval 0.4-0.6 drop `doc` and `resps` (equal to `filtered_resps: [text]`); 0.7 unwraps
    `filtered_resps` to the text and keeps `resps` only when a filter changed it (here: reasoning
    tags stripped). Items are then matched by doc_id position, checked against each target, and the
    raw `resps` is what gets scored."""
    summary, ours, out = reference
    lines = written_samples(out)
    v04 = [{k: v for k, v in x.items() if k not in ("doc", "resps")} for x in lines]
    v07 = [{**x, "filtered_resps": x["filtered_resps"][0]} for x in v04]
    v07[1] = {**v07[1], "resps": ["<think>working</think>" + v07[1]["filtered_resps"]]}
    v07[0] = {**v07[0], "resps": [v07[0]["filtered_resps"]], "filtered_resps": "stripped by a filter"}
    for name, layout in (("v04", v04), ("v07", v07)):
        back = summary_of(
            tmp_path / name, write_lines(tmp_path / f"20250101_000000_samples_{name}.jsonl", layout)
        )
        assert verdicts(tmp_path / name) == ours, name
        assert back["accuracy"] == summary["accuracy"]
        assert back["predictions_read"]["ids"].startswith("doc_id as the position")
    items = {i["id"]: i for i in map(json.loads, (tmp_path / "v07" / "items.jsonl").read_text().splitlines())}
    assert items["2"]["response"].startswith("<think>working</think>")  # resps, not filtered_resps
    assert items["1"]["response"] == OUTPUTS["1"]["response"]


def test_lmms_eval_misnumbered_or_unreadable_logs_are_refused(
    reference: tuple[dict, dict[str, bool], Path], tmp_path: Path
) -> None:
    _, _, out = reference
    no_doc = [{k: v for k, v in x.items() if k != "doc"} for x in written_samples(out)]
    shifted = [{**x, "doc_id": x["doc_id"] + 1} for x in no_doc]  # a log of another split's order
    code, output = pr_eval(tmp_path / "o1", write_lines(tmp_path / "shifted.jsonl", shifted))
    assert code != 0 and "shifted.jsonl:1: target:" in output and "numbers the items otherwise" in output
    assert not (tmp_path / "o1" / "items.jsonl").exists()

    doubled = [no_doc[0], no_doc[1], {**no_doc[0]}]
    code, output = pr_eval(tmp_path / "o2", write_lines(tmp_path / "doubled.jsonl", doubled))
    assert code != 0 and "doubled.jsonl:3" in output and "second prediction for mathvista item '1'" in output

    repeats = [{**no_doc[0], "resps": [["one", "two"]]}]
    code, output = pr_eval(tmp_path / "o3", write_lines(tmp_path / "repeats.jsonl", repeats))
    assert code != 0 and "repeats.jsonl:1: resps: expected one text response, got 2 responses" in output

    unknown = [{**written_samples(out)[0], "doc": {"pid": "99999"}}]
    code, output = pr_eval(tmp_path / "o4", write_lines(tmp_path / "unknown.jsonl", unknown))
    assert code != 0 and "unknown.jsonl:1" in output and "'99999' matches no mathvista item" in output


def test_a_file_in_no_layout_or_two_asks_for_the_format(tmp_path: Path) -> None:
    neither = write_lines(tmp_path / "neither.jsonl", [{"question_id": "1", "text": "5"}])
    code, output = pr_eval(tmp_path / "o1", neither)
    assert code != 0 and "neither.jsonl" in output and "--predictions-format" in output
    both = write_lines(tmp_path / "both.jsonl", [{"id": "1", "response": "5", "doc_id": 0}])
    code, output = pr_eval(tmp_path / "o2", both)
    assert code != 0 and "fits prcli and lmms-eval" in output
    # told, the same file is read as that layout
    assert summary_of(tmp_path / "o3", both, "--predictions-format", "prcli")["missing_predictions"] == N - 1


# ----------------------------------------------------------------------------- VLMEvalKit


def vlmevalkit_frame(pids: list[str] = PIDS, index=int) -> pd.DataFrame:
    """The dataset's TSV columns without `image`, plus `prediction`, as infer_data_job leaves them."""
    rows = []
    for pid in pids:
        r = RECORDS[pid]
        rows.append(
            {
                "index": index(pid),
                "question": r["question"],
                "answer": r["answer"],
                "question_type": r["question_type"],
                "answer_type": r["answer_type"],
                "choices": str(r["choices"]),
                "unit": r["unit"],
                "precision": r["precision"],
                "task": r["metadata"]["task"],
                "prediction": OUTPUTS[pid]["response"],
            }
        )
    return pd.DataFrame(rows)


def dump(frame: pd.DataFrame, path: Path) -> Path:
    """vlmeval.smp.file.dump's writers for each suffix."""
    if path.suffix == ".xlsx":
        with pd.ExcelWriter(
            path, engine="xlsxwriter", engine_kwargs={"options": {"strings_to_formulas": False}}
        ) as w:
            frame.to_excel(w, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    else:
        path.write_text(json.dumps(frame.to_dict("records"), indent=4, ensure_ascii=False))
    return path


@pytest.mark.parametrize("suffix", [".xlsx", ".tsv", ".csv", ".json"])
def test_vlmevalkit_predictions_score_as_ours(
    reference: tuple[dict, dict[str, bool], Path], tmp_path: Path, suffix: str
) -> None:
    summary, ours, _ = reference
    path = dump(vlmevalkit_frame(), tmp_path / f"Qwen2.5-VL-7B_MathVista_MINI{suffix}")
    back = summary_of(tmp_path / "out", path)
    assert verdicts(tmp_path / "out") == ours
    assert (back["accuracy"], back["predictions_read"]["format"]) == (summary["accuracy"], "vlmevalkit")


def test_vlmevalkit_missing_rows_count_wrong(
    reference: tuple[dict, dict[str, bool], Path], tmp_path: Path
) -> None:
    _, ours, _ = reference
    path = dump(vlmevalkit_frame(PIDS[:30]), tmp_path / "m_MathVista_MINI.xlsx")
    back = summary_of(tmp_path / "out", path)
    assert back["missing_predictions"] == 10 and back["n"] == N
    assert back["correct"] == sum(ours[p] for p in PIDS[:30])


def test_vlmevalkit_numbering_duplicates_and_strangers_are_refused(tmp_path: Path) -> None:
    zero_based = dump(vlmevalkit_frame(index=lambda pid: int(pid) - 1), tmp_path / "zero_MathVista_MINI.xlsx")
    code, output = pr_eval(tmp_path / "o1", zero_based)
    # pid 1 is absent from a 0-based file's rows until index 1, whose answer is pid 2's
    assert (
        code != 0
        and "zero_MathVista_MINI.xlsx:3: answer:" in output
        and "numbers the items otherwise" in output
    )
    assert not (tmp_path / "o1").exists()

    frame = vlmevalkit_frame(PIDS[:3])
    doubled = dump(pd.concat([frame, frame.iloc[[1]]]), tmp_path / "dup_MathVista_MINI.tsv")
    code, output = pr_eval(tmp_path / "o2", doubled)
    assert (
        code != 0
        and "dup_MathVista_MINI.tsv: row 4" in output
        and "second prediction for mathvista item '2'" in output
    )

    stranger = dump(vlmevalkit_frame(PIDS[:2]).assign(index=[1, 5000]), tmp_path / "s_MathVista_MINI.xlsx")
    code, output = pr_eval(tmp_path / "o3", stranger)
    assert code != 0 and "s_MathVista_MINI.xlsx:3" in output and "'5000' matches no mathvista item" in output

    no_answer = dump(vlmevalkit_frame(PIDS[:2]).drop(columns="answer"), tmp_path / "n_MathVista_MINI.tsv")
    code, output = pr_eval(tmp_path / "o4", no_answer)
    assert code != 0 and "row 1.answer: no answer to check" in output

    # a record under another key than `prediction` is no response at all, not an empty one
    renamed = vlmevalkit_frame(PIDS[:3]).rename(columns={"prediction": "response"}).to_dict("records")
    code, output = pr_eval(
        tmp_path / "o5", write_lines(tmp_path / "r.jsonl", renamed), "--predictions-format", "vlmevalkit"
    )
    assert code != 0 and "r.jsonl:1: prediction: no prediction in this record" in output, output

    broken = tmp_path / "b_MathVista_MINI.xlsx"
    broken.write_bytes(dump(vlmevalkit_frame(PIDS[:3]), tmp_path / "whole.xlsx").read_bytes()[:300])
    code, output = pr_eval(tmp_path / "o6", broken)
    assert code == 1 and "b_MathVista_MINI.xlsx: not a readable xlsx table" in output, output


def test_other_json_and_jsonl_files_keep_their_readers(tmp_path: Path) -> None:
    """A JSON object keyed by id stays ours: its values are the responses (or records with a text
    `response`, as MathVista's own outputs), never the JSON of a record scored as text; VLMEvalKit's
    records as JSONL are VLMEvalKit's; a pickle is refused (unpickling runs code)."""
    id_map = tmp_path / "map.json"
    id_map.write_text(json.dumps({p: {"response": OUTPUTS[p]["response"], "answer": "leak"} for p in PIDS}))
    read = summary_of(tmp_path / "o1", id_map)
    as_text = tmp_path / "text.json"
    as_text.write_text(json.dumps({p: OUTPUTS[p]["response"] for p in PIDS}))
    assert read["predictions_read"]["format"] == "prcli"
    assert read["accuracy"] == summary_of(tmp_path / "o1b", as_text)["accuracy"]
    id_map.write_text(json.dumps({p: {"text": OUTPUTS[p]["response"]} for p in PIDS}))
    code, output = pr_eval(tmp_path / "o1c", id_map)
    assert code != 0 and f'["{PIDS[0]}"]: the value of an id must be the response text' in output
    assert not (tmp_path / "o1c").exists()
    records = vlmevalkit_frame(PIDS[:5]).to_dict("records")
    back = summary_of(tmp_path / "o2", write_lines(tmp_path / "v.jsonl", records))
    assert back["predictions_read"]["format"] == "vlmevalkit" and back["missing_predictions"] == N - 5
    pickle = tmp_path / "m_MathVista_MINI.pkl"
    pickle.write_bytes(b"")
    code, output = pr_eval(tmp_path / "o3", pickle, "--predictions-format", "vlmevalkit")
    assert code != 0 and "a .pkl is not read" in output


def test_every_benchmark_names_its_native_id_field() -> None:
    """A benchmark added later must say which row field is its id before lmms-eval docs can name it."""
    assert all(isinstance(getattr(cls, "id_field", None), str) for cls in BENCHMARKS.values())


def test_an_id_named_twice_in_a_json_map_is_refused(tmp_path: Path) -> None:
    """json.loads keeps the last of two equal keys: the first response would vanish unseen."""
    doubled = tmp_path / "map.json"
    a, b = json.dumps(PIDS[0]), json.dumps(PIDS[1])
    doubled.write_text(f'{{{a}: "\\\\boxed{{5}}", {b}: "(A)", {a}: "\\\\boxed{{9}}"}}')
    code, output = pr_eval(tmp_path / "o", doubled)
    assert code != 0 and f"duplicate id '{PIDS[0]}'" in output and not (tmp_path / "o").exists()
