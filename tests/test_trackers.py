"""`--report-to tensorboard|wandb` on pr eval, judge, annotate and mcnemar: what the trackers wrote,
read back from their own files (TensorBoard's event files through its EventAccumulator; an offline
W&B run's `.wandb` log through wandb's record protobuf). Nothing reaches the network."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import eval_fixtures as fx
from conftest import make_image
from prcli.cli import app

runner = CliRunner()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ok(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


# ----------------------------------------------------------------------------- TensorBoard


def tensorboard_run(
    log_dir: Path,
) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[tuple[int, str]]]]:
    """({scalar tag: [(step, value)]}, {text tag: [(step, markdown)]}) of one TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(log_dir.glob("events.out.tfevents.*")), f"no event file in {log_dir}"
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    texts = {
        t.removesuffix("/text_summary"): [
            (e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(t)
        ]
        for t in acc.Tags()["tensors"]
    }
    return scalars, texts


def markdown_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown table a text summary holds."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def test_eval_to_tensorboard_logs_the_summary_items_and_completions_and_a_rerun_goes_on_a_step(
    tmp_path: Path,
) -> None:
    data = fx.mathvista(tmp_path)
    preds = write_jsonl(
        tmp_path / "preds.jsonl",
        [
            {"id": "1", "response": "AB is 5 cm, so the answer is \\boxed{5}"},
            {"id": "2", "response": "The answer is (A)."},
            {"id": "3", "response": "\\boxed{2.5}"},
        ],
    )
    out = tmp_path / "eval"
    args = ["eval", "-b", "mathvista", "--data", str(data), "--predictions", str(preds), "-o", str(out)]
    args += ["--report-to", "tensorboard", "--run-name", "qwen-7b", "--json"]
    summary = json.loads(ok(args).stdout)
    assert (summary["correct"], summary["n"]) == (2, 3)

    scalars, texts = tensorboard_run(out / "runs" / "qwen-7b")
    assert scalars["accuracy"] == [(0, pytest.approx(summary["accuracy"]))]
    assert scalars["correct"] == [(0, 2.0)] and scalars["n"] == [(0, 3.0)]
    assert scalars["missing_predictions"] == [(0, 0.0)] and scalars["complete"] == [(0, 1.0)]
    task = summary["breakdown"]["task"]["geometry problem solving"]
    assert scalars["breakdown/task/geometry problem solving/accuracy"] == [
        (0, pytest.approx(task["accuracy"]))
    ]
    assert scalars["tables/items_rows"] == [(0, 3.0)] and scalars["tables/items_total"] == [(0, 3.0)]

    ((step, items),) = texts["items"]
    header = next(line for line in items.splitlines() if line.startswith("| "))
    assert step == 0 and "response" not in header and "input_hash" not in header
    columns = [c.strip() for c in header.strip("|").split(" | ")]
    rows = {r[0]: dict(zip(columns, r, strict=True)) for r in markdown_rows(items)}
    assert {k: v["correct"] for k, v in rows.items()} == {"1": "True", "2": "False", "3": "True"}
    assert rows["2"]["prediction"] == "A" and rows["2"]["answer"] == "B"
    ((_, completions),) = texts["completions"]
    assert markdown_rows(completions)[0] == ["1", "True", "5", "5", "AB is 5 cm, so the answer is \\boxed{5}"]

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["report_to"], saved["run_name"], saved["project"]) == ("tensorboard", "qwen-7b", None)

    ok(args)  # the same command again (a resume): the run goes on at step 1, not over step 0
    scalars, texts = tensorboard_run(out / "runs" / "qwen-7b")
    assert [step for step, _ in scalars["accuracy"]] == [0, 1]
    assert [step for step, _ in texts["items"]] == [0, 1]


def test_annotate_to_tensorboard_under_a_default_run_name_saved_in_the_config(tmp_path: Path) -> None:
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
    ]
    for r in rows:
        make_image(tmp_path / r["images"][0])
    src = write_jsonl(tmp_path / "problems.jsonl", rows)
    out = tmp_path / "out" / "annotated.jsonl"
    result = ok(
        ["annotate", str(src), "-o", str(out), "--report-to", "tensorboard", "--project", "r1", "--json"]
    )
    assert json.loads(result.stdout)["kept"] == 1

    run_name = yaml.safe_load((tmp_path / "out" / "annotated.config.yaml").read_text())["run_name"]
    assert run_name.startswith("annotate-")
    scalars, texts = tensorboard_run(tmp_path / "out" / "runs" / "r1" / run_name)
    assert (
        scalars["kept"] == [(0, 1.0)]
        and scalars["dropped"] == [(0, 1.0)]
        and scalars["problems"] == [(0, 2.0)]
    )
    assert scalars["mean_annotations"] == [(0, 1.0)]
    assert markdown_rows(texts["annotated"][0][1]) == [["ok", "2\\sqrt{3}", '["AB = 4 and BC = 2."]']]
    assert [r[0] for r in markdown_rows(texts["dropped"][0][1])] == ["wrong"]
    ((_, sample),) = texts["completions"]
    assert "From the figure, AB = 4 and BC = 2." in markdown_rows(sample)[0][2]


def test_mcnemar_to_tensorboard_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A right / B wrong on 1 item (b), the reverse on 4 (c); two tasks
    cells = [
        (True, True),
        (True, False),
        (False, True),
        (False, True),
        (False, True),
        (False, True),
        (False, False),
    ]
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [{"id": str(i), "correct": x, "task": "geo" if i % 2 else "alg"} for i, (x, _) in enumerate(cells)],
    )
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": str(i), "correct": y} for i, (_, y) in enumerate(cells)])
    monkeypatch.chdir(tmp_path)
    report = json.loads(
        ok(
            [
                "mcnemar",
                str(a),
                str(b),
                "--by",
                "task",
                "--report-to",
                "tensorboard",
                "--run-name",
                "ab",
                "--json",
            ]
        ).stdout
    )
    assert (report["b"], report["c"]) == (1, 4)

    scalars, texts = tensorboard_run(tmp_path / "runs" / "ab")
    assert scalars["b"] == [(0, 1.0)] and scalars["c"] == [(0, 4.0)] and scalars["n"] == [(0, 7.0)]
    assert scalars["p_value"] == [(0, pytest.approx(report["p_value"]))]
    assert scalars["p_values/exact"] == [(0, pytest.approx(report["p_values"]["exact"]))]
    assert markdown_rows(texts["contingency"][0][1]) == [["A right", "1", "1"], ["A wrong", "4", "1"]]
    by_task = {r[0]: r for r in markdown_rows(texts["by_task"][0][1])}
    assert set(by_task) == {"geo", "alg"}
    categories = {c["value"]: c for c in report["by"]["categories"]}
    assert [by_task["geo"][i] for i in (1, 2, 3)] == [str(categories["geo"][k]) for k in ("n", "b", "c")]


# ----------------------------------------------------------------------------- W&B


def wandb_records(run_dir: Path) -> list[Any]:
    """The records of an offline run's `run-*.wandb` file: a LevelDB-style log (32 KiB blocks, a 7-byte
    header per chunk: checksum, length, type) after a 7-byte `:W&B` file header, each record one
    `wandb_internal_pb2.Record`, as wandb's core writes them."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B's folders in tmp_path, no key, settings read afresh (wandb keeps them per process)."""
    import wandb

    root = tmp_path / "wandb-home"
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        (root / name).mkdir(parents=True)
        monkeypatch.setenv(name, str(root / name))
    monkeypatch.setenv("NETRC", str(root / "netrc"))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    wandb.teardown()
    yield root / "WANDB_DIR"
    wandb.teardown()


@pytest.fixture
def judge_files(tmp_path: Path) -> tuple[Path, Path]:
    responses = write_jsonl(
        tmp_path / "responses.jsonl",
        [
            {"id": "p1#0", "problem": "p1", "response": "AB = 3 and BC = 4 with angle B = 90, so AC = 5"},
            {"id": "p1#1", "problem": "p1", "response": "AB = 3 so 5"},
        ],
    )
    annotated = write_jsonl(
        tmp_path / "annotated.jsonl",
        [{"id": "p1", "question": "q", "answer": "5", "annotations": ["AB = 3 cm", "BC = 4 cm"]}],
    )
    return responses, annotated


def test_judge_to_wandb_offline(
    wandb_env: Path, judge_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses, annotated = judge_files
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "from-the-environment")
    out = tmp_path / "out" / "judgements.jsonl"
    args = [
        "judge",
        str(responses),
        "-o",
        str(out),
        "--annotations",
        str(annotated),
        "--annotation-key",
        "problem",
    ]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "p1#0", "problem": "p1"}])  # no response
    failed = runner.invoke(
        app, ["judge", str(bad), *args[2:], "--report-to", "wandb", "--run-name", "broken"]
    )
    assert failed.exit_code == 1 and "bad.jsonl:1" in failed.output
    printed = json.loads(ok([*args, "--report-to", "wandb", "--run-name", "lexical-audit", "--json"]).stdout)
    assert printed["mean_score"] == pytest.approx(0.75)
    down = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0", "--no-cache"]
    down_out = ["-o", str(tmp_path / "down" / "j.jsonl")]
    partial = runner.invoke(
        app, [*args[:2], *down_out, *args[4:], *down, "--report-to", "wandb", "--run-name", "judge-down"]
    )
    assert partial.exit_code == 1, partial.output  # every judgement failed: the stage returned, with failures

    import wandb

    wandb.teardown()  # wandb's service finishes writing its run files when it stops
    runs = {}
    for run_dir in (wandb_env / "wandb").glob("offline-run-*"):
        records = wandb_records(run_dir)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        (exit_code,) = [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]
        runs[run.display_name] = (run_dir, records, exit_code)
    assert {name: code for name, (_, _, code) in runs.items()} == {
        "broken": 1,
        "lexical-audit": 0,
        "judge-down": 1,
    }
    run_dir, records, _ = runs["lexical-audit"]
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.project, run.job_type) == ("lexical-audit", "from-the-environment", "judge")
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["report_to"] == "wandb" and config["annotation_key"] == "problem"
    summary = {  # (key,) or (table, attribute) -> value, the last update winning
        tuple(u.nested_key) or (u.key,): json.loads(u.value_json)
        for r in records
        if r.WhichOneof("record_type") == "summary"
        for u in r.summary.update
    }
    assert summary[("mean_score",)] == pytest.approx(0.75)
    assert (summary[("total",)], summary[("written",)], summary[("failed",)]) == (2, 2, 0)
    assert summary[("judgements", "_type")] == "table-file" and summary[("judgements", "nrows")] == 2
    tables = {name: summary[(name, "path")] for name in ("judgements", "completions")}
    judged = json.loads((run_dir / "files" / tables["judgements"]).read_text())
    assert judged["columns"][:3] == ["id", "verdicts", "score"]
    assert [row[:3] for row in judged["data"]] == [["p1#0", "[1, 1]", 1.0], ["p1#1", "[1, 0]", 0.5]]
    sample = json.loads((run_dir / "files" / tables["completions"]).read_text())
    assert sample["columns"] == ["id", "response", "annotations", "score", "verdicts", "raw"]
    assert sample["data"][1][:3] == ["p1#1", "AB = 3 so 5", '["AB = 3 cm", "BC = 4 cm"]']
    saved = yaml.safe_load((tmp_path / "out" / "judgements.config.yaml").read_text())
    assert (saved["report_to"], saved["run_name"]) == ("wandb", "lexical-audit")


# ----------------------------------------------------------------------------- trackers that cannot start


def test_wandb_without_a_key_stops_before_any_work(
    wandb_env: Path, judge_files: tuple[Path, Path], tmp_path: Path
) -> None:
    responses, _ = judge_files
    out = tmp_path / "out" / "judgements.jsonl"
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out), "--report-to", "wandb"])
    assert result.exit_code == 1
    assert "no W&B API key" in result.output and "WANDB_MODE=offline" in result.output
    assert not out.parent.exists()  # nothing judged, nothing written


def test_wandb_turned_off_by_its_mode_is_refused_not_a_silent_no_op(
    wandb_env: Path, judge_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses, _ = judge_files
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "out" / "judgements.jsonl"
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out), "--report-to", "wandb"])
    assert result.exit_code == 1 and "turns W&B off: nothing would be logged" in result.output
    assert not out.parent.exists()


def test_a_stage_that_fails_leaves_no_tensorboard_run(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "responses.jsonl", [{"id": "p1", "annotations": ["AB = 3"]}])  # no response
    out = tmp_path / "out" / "judgements.jsonl"
    result = runner.invoke(app, ["judge", str(bad), "-o", str(out), "--report-to", "tensorboard"])
    assert result.exit_code == 1 and "responses.jsonl:1" in result.output
    assert not (tmp_path / "out" / "runs").exists()


def test_a_missing_tracker_package_stops_before_any_work(
    judge_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses, _ = judge_files
    out = tmp_path / "out" / "judgements.jsonl"
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: importing it fails
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out), "--report-to", "wandb"])
    assert result.exit_code == 1 and "needs the wandb package: pip install wandb" in result.output
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--run-name", "x"], "--run-name and --project need --report-to tensorboard or wandb"),
        (["--project", "x"], "--run-name and --project need --report-to tensorboard or wandb"),
        (["--report-to", "tensorboard", "--run-name", "../x"], "one name without /"),
        (["--report-to", "tensorboard", "--run-name", ".."], "one name without /"),
    ],
)
def test_tracker_options_that_make_no_sense_are_refused(
    judge_files: tuple[Path, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    responses, _ = judge_files
    out = tmp_path / "out" / "judgements.jsonl"
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out), *extra])
    assert result.exit_code != 0 and message in result.output
    assert not out.parent.exists()


def test_several_benchmarks_get_a_run_each(tmp_path: Path) -> None:
    from prcli.eval.config import EvalConfig
    from prcli.eval.several import per_benchmark

    preds = tmp_path / "preds"
    for name in ("mathvista", "mmstar"):
        write_jsonl(preds / f"{name}.jsonl", [{"id": "1", "response": "A"}])
    cfg = EvalConfig(
        bench="mathvista,mmstar",
        out=tmp_path / "out",
        predictions=preds,
        report_to="tensorboard",
        run_name="m",
    )
    assert [c.run_name for c in per_benchmark(cfg)] == ["m-mathvista", "m-mmstar"]


def test_judge_of_a_dataset_with_a_field_map_shows_its_responses(
    judge_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The completions table reads the responses as `pr judge` did: a parquet file, its --field map."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    responses, annotated = judge_files
    rows = [json.loads(x) for x in responses.read_text().splitlines()]
    data = tmp_path / "responses.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"id": r["id"], "problem": r["problem"], "text": r["response"]} for r in rows]),
        data,
    )
    out = tmp_path / "out" / "j.jsonl"
    ok(["judge", str(data), "-o", str(out), "--annotations", str(annotated), "--annotation-key", "problem",
        "--field", "response=text", "--report-to", "tensorboard", "--run-name", "from-parquet"])  # fmt: skip
    _, texts = tensorboard_run(out.parent / "runs" / "from-parquet")
    (_, table), *_ = texts["completions"]
    shown = {row[0]: row[1] for row in markdown_rows(table)}  # id -> response
    assert shown == {r["id"]: r["response"] for r in rows}, table


@pytest.mark.slow
def test_a_training_run_reports_to_prclis_project_and_is_closed_after(
    wandb_env: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers' W&B fallback project is `huggingface` and it leaves its run open, so the next run of
    the process (an eval after training, from Python) would have been logged into it."""
    import wandb

    from conftest import SMALL, annotated_set

    monkeypatch.setenv("WANDB_MODE", "offline")
    data = annotated_set(tmp_path, n=2)
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(tmp_path / "run"), *SMALL]
    ok([*args, "--max-steps", "1", "--report-to", "wandb", "--run-name", "grpo-1"])
    assert wandb.run is None and "WANDB_PROJECT" not in os.environ
    wandb.teardown()
    (run_dir,) = (wandb_env / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    (exit_code,) = [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]
    assert (run.display_name, run.project, exit_code) == ("grpo-1", "prcli", 0)
