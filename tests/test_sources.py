"""Datasets as stage inputs: parquet files and folders, save_to_disk folders, the released Perception-R1
parquet, field maps, row-named errors and resume. Everything is local; nothing reaches the Hub."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from prcli.cli import app
from prcli.config import plain_values
from prcli.jsonl import InputError
from prcli.judge.run import JudgeRunConfig
from prcli.records import AnnotatedProblem, Problem, Response
from prcli.sources import Source, _records_path, read_source

runner = CliRunner()

COT = (
    "From the figure, AB = 6 and BC = 8, and angle ABC is a right angle. By the Pythagorean theorem, "
    "AC = 10. Since D is the midpoint of AC, AD = 5. The answer is \\boxed{5}."
)


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets`' cache in the test's folder (prcli's is set by conftest, which also keeps the hub offline)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def png(color: str = "red", size: tuple[int, int] = (32, 32)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


RELEASED_SCHEMA = pa.schema(
    [
        ("problem", pa.string()),
        ("answer", pa.string()),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("visual_key_info", pa.string()),
    ]
)


def released_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """The released `geo3k_with_visual_key_info.parquet` layout: images as `datasets.Image` storage
    ({bytes, path} structs) and the facts as `<infoK>` tags in one string."""
    pq.write_table(pa.Table.from_pylist(rows, schema=RELEASED_SCHEMA), path)
    return path


def released_row(i: int, color: str = "red") -> dict[str, Any]:
    return {
        "problem": f"<image>Find AD in figure {i}.",
        "answer": "5",
        "images": [{"bytes": png(color), "path": f"{i}.png"}],
        "visual_key_info": "<info1>AB = 6 and BC = 8</info1>\n<info2>D is the midpoint of AC</info2>",
    }


def response_rows(n: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "qid": f"q{i}",
            "output": f"AB = 6 and BC = {8 + i}, so the answer is 5.",
            "annotations": ["AB = 6", "BC = 8"],
        }
        for i in range(n)
    ]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- the released parquet


def test_the_released_parquet_reads_as_annotated_records_without_a_map(tmp_path: Path) -> None:
    data = released_parquet(tmp_path / "geo3k.parquet", [released_row(0, "red"), released_row(1, "blue")])
    records = list(read_source(Source(data, {}), AnnotatedProblem))
    assert [r.id for r in records] == ["row-0", "row-1"]
    assert records[0].question == "<image>Find AD in figure 0." and records[0].answer == "5"
    assert records[0].annotations == ["AB = 6 and BC = 8", "D is the midpoint of AC"]
    (image,) = records[1].images
    assert Path(image).read_bytes() == png("blue")  # the embedded bytes, written once, unchanged
    assert Path(image).is_relative_to(tmp_path / ".prcli-cache" / "datasets" / "images")


def test_an_edited_dataset_is_never_read_stale(tmp_path: Path) -> None:
    """`datasets` keys its cache of a local file on its modification time, which `cp -p` keeps."""
    import os

    (tmp_path / "set").mkdir()
    data = tmp_path / "set" / "geo3k.parquet"
    for source in (data, data.parent):  # the file, and its folder through load_dataset
        released_parquet(data, [released_row(0), released_row(1)])
        first = [r.answer for r in read_source(Source(source, {}), AnnotatedProblem)]
        stamp = data.stat()
        released_parquet(data, [{**released_row(i), "answer": str(7 + i)} for i in range(2)])
        os.utime(data, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # an edit that kept the old time
        again = [r.answer for r in read_source(Source(source, {}), AnnotatedProblem)]
        assert (first, again) == (["5", "5"], ["7", "8"])


def test_an_undecodable_embedded_image_is_named_by_row(tmp_path: Path) -> None:
    bad = {**released_row(1), "images": [{"bytes": b"not an image", "path": None}]}
    data = released_parquet(tmp_path / "geo3k.parquet", [released_row(0), bad])
    with pytest.raises(InputError) as exc:
        read_source(Source(data, {}), AnnotatedProblem)
    (problem,) = exc.value.problems
    assert str(problem).startswith(f"{data} row 1: images[0]: image file cannot be decoded")


@pytest.mark.slow
def test_pr_train_takes_the_released_parquet(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import SMALL

    data = released_parquet(
        tmp_path / "geo3k.parquet",
        [released_row(i, c) for i, c in enumerate(("red", "green", "blue", "white"))],
    )
    run = tmp_path / "run"
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL]
    result = runner.invoke(app, [*args, "--max-steps", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["global_step"] == 1 and summary["train_examples"] == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["data"] == str(data.resolve())


@pytest.mark.slow
def test_pr_sft_takes_a_dataset_folder_with_a_field_map(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Worked solutions under other column names, in a save_to_disk folder with two splits."""
    import datasets

    rows = [{**released_row(i), "solution": "AD is half of AC.", "gt": str(i)} for i in range(4)]
    for row in rows:
        row["images"] = [row["images"][0]["bytes"]]
    table = {k: [r[k] for r in rows] for k in ("problem", "gt", "images", "solution")}
    split = datasets.Dataset.from_dict(table, features=datasets.Features(
        {"problem": datasets.Value("string"), "gt": datasets.Value("string"),
         "images": datasets.Sequence(datasets.Image()), "solution": datasets.Value("string")}
    ))  # fmt: skip
    datasets.DatasetDict({"train": split, "test": split.select([0])}).save_to_disk(str(tmp_path / "sft-set"))
    run = tmp_path / "sft"
    args = ["sft", "-m", str(tiny_model_dir), "--data", str(tmp_path / "sft-set"), "--split", "train"]
    args += ["--field", "question=problem", "--field", "answer=gt", "--field", "cot=solution"]
    args += ["-o", str(run), "--batch-size", "2", "--max-pixels", "3136", "--max-steps", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train_examples"] == 4
    result = runner.invoke(app, [*args[:7], "--field", "question=problem", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and "answer" in result.output and "gt" in result.output, result.output


# ----------------------------------------------------------------------------- datasets' own layouts


def test_a_parquet_folder_goes_through_load_dataset_with_its_splits(tmp_path: Path) -> None:
    """A folder of split files, as on the Hub: the same `load_dataset` call a hub name makes."""
    folder = tmp_path / "mathset"
    (folder / "data").mkdir(parents=True)
    for split, n in (("train", 3), ("test", 2)):
        rows = [
            {"qid": f"{split}{i}", "query": f"q{i}", "label": str(i), "image": {"bytes": png(), "path": None}}
            for i in range(n)
        ]
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    fields = {"id": "qid", "question": "query", "answer": "label", "images": "image"}

    with pytest.raises(InputError, match="the dataset has splits train, test: choose one with --split"):
        read_source(Source(folder, fields), Problem)
    records = list(read_source(Source(folder, fields, split="test"), Problem))
    assert [(r.id, r.question, r.answer, len(r.images)) for r in records] == [
        ("test0", "q0", "0", 1),
        ("test1", "q1", "1", 1),
    ]
    with pytest.raises(InputError) as exc:
        read_source(Source(folder, fields, split="dev"), Problem)
    assert str(exc.value).startswith(f"{folder} (dev split): the dataset cannot be loaded") and "dev" in str(
        exc.value
    )


def test_relative_image_paths_start_at_the_dataset_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.png").write_bytes(png("green"))
    rows = [{"question": "<image>q", "answer": "1", "images": ["img/a.png"]}]
    pq.write_table(pa.Table.from_pylist(rows), folder / "train.parquet")
    for source in (folder / "train.parquet", folder):  # a file, and the folder load_dataset reads
        (record,) = read_source(Source(source, {}), Problem)
        assert record.images == [str(folder / "img" / "a.png")]
    monkeypatch.chdir(tmp_path)  # a path given relative to the working folder, as on a command line
    (record,) = read_source(Source(Path("set/train.parquet"), {}), Problem)
    assert record.images == [str(folder / "img" / "a.png")]
    with pytest.raises(InputError, match="file not found"):
        read_source(Source(folder / "tset.parquet", {}), Problem)


def test_pr_judge_on_a_save_to_disk_folder_resumes_by_content(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    def save(rows: list[dict[str, Any]]) -> Path:
        folder = tmp_path / "responses"
        DatasetDict({"test": Dataset.from_list(rows)}).save_to_disk(str(folder))
        return folder

    rows = response_rows(3)
    folder = save(rows)
    out = tmp_path / "judged.jsonl"
    args = [
        "judge",
        str(folder),
        "-o",
        str(out),
        "--split",
        "test",
        "--field",
        "id=qid",
        "--field",
        "response=output",
    ]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    judged = read_lines(out)
    assert [j["id"] for j in judged] == ["q0", "q1", "q2"]
    assert [j["verdicts"] for j in judged] == [[1, 1], [1, 0], [1, 0]]  # "BC = 9" is not "BC = 8"

    again = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (again["already_done"], again["written"]) == (3, 0)

    rows[1]["output"] = "AB = 6 and BC = 8."  # one row changed: it alone is judged again
    save(rows)
    changed = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (changed["already_done"], changed["written"], changed["redone"]) == (2, 1, 1)
    assert [j["verdicts"] for j in read_lines(out)] == [[1, 1], [1, 1], [1, 0]]


def test_pr_judge_joins_annotations_from_the_released_parquet(tmp_path: Path) -> None:
    facts = released_parquet(tmp_path / "geo3k.parquet", [released_row(0), released_row(1, "blue")])
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        json.dumps({"id": "row-1", "response": "AB = 6 and BC = 8; D is the midpoint of AC."})
        + "\n"
        + json.dumps({"id": "row-0", "response": "AB = 7."})
        + "\n"
    )
    out = tmp_path / "judged.jsonl"
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out), "--annotations", str(facts)])
    assert result.exit_code == 0, result.output
    assert [(j["id"], j["verdicts"]) for j in read_lines(out)] == [("row-1", [1, 1]), ("row-0", [0, 0])]

    responses.write_text(json.dumps({"id": "row-9", "response": "AB = 6."}) + "\n")
    missing = runner.invoke(
        app, ["judge", str(responses), "-o", str(tmp_path / "o2.jsonl"), "--annotations", str(facts)]
    )
    assert missing.exit_code == 1 and f"no annotated record with id 'row-9' in {facts}" in missing.output
    assert not (tmp_path / "o2.jsonl").exists()


def test_pr_annotate_on_a_parquet_file_with_a_field_map(tmp_path: Path) -> None:
    rows = [
        {"question_text": "<image>Find AD.", "gt": "5", "picture": png(), "solution": COT},
        {"question_text": "<image>Find AD.", "gt": "7", "picture": png("blue"), "solution": COT},  # wrong CoT
    ]
    data = tmp_path / "problems.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    out = tmp_path / "annotated.jsonl"
    maps = ["--field", "question=question_text", "--field", "answer=gt", "--field", "images=picture"]
    result = runner.invoke(
        app, ["annotate", str(data), "-o", str(out), *maps, "--field", "cot=solution", "--json"]
    )
    assert result.exit_code == 0, result.output
    (kept,) = read_lines(out)
    assert kept["id"] == "row-0" and kept["annotations"][0].startswith("AB = 6 and BC = 8")
    assert (out.parent / kept["images"][0]).read_bytes() == png()  # in the prcli cache, here inside tmp_path
    assert json.loads(result.stdout)["dropped"] == 1


# ----------------------------------------------------------------------------- field maps and bad rows


def test_an_unknown_column_is_refused_with_the_columns_listed(tmp_path: Path) -> None:
    data = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist(response_rows()), data)
    out = tmp_path / "judged.jsonl"
    result = runner.invoke(app, ["judge", str(data), "-o", str(out), "--field", "response=outptu"])
    assert result.exit_code == 1
    assert (
        "--field response=outptu: no column outptu; did you mean output? (columns: qid, output, annotations)"
        in result.output
    )
    assert not out.exists()

    result = runner.invoke(app, ["judge", str(data), "-o", str(out), "--field", "respons=output"])
    assert (
        result.exit_code == 1
        and "respons is not a field of these records; did you mean response?" in result.output
    )

    result = runner.invoke(app, ["judge", str(data), "-o", str(out)])
    assert result.exit_code == 1
    assert (
        "no column for response: map one with --field response=COLUMN (columns: qid, output, annotations)"
        in result.output
    )
    assert not out.exists()


def test_a_bad_row_is_named_by_source_row_and_column(tmp_path: Path) -> None:
    rows = response_rows(3)
    rows[1]["output"] = None
    data = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    out = tmp_path / "judged.jsonl"
    args = ["judge", str(data), "-o", str(out), "--field", "id=qid", "--field", "response=output"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"{data} row 1: output: Input should be a valid string (got null)" in result.output, result.output
    assert not out.exists() and not out.with_name("judged.rejected.jsonl").exists()

    result = runner.invoke(app, [*args, "--skip-invalid", "--json"])
    assert result.exit_code == 0, result.output
    assert [j["id"] for j in read_lines(out)] == ["q0", "q2"]
    (rejected,) = read_lines(out.with_name("judged.rejected.jsonl"))
    assert (rejected["file"], rejected["row"]) == (str(data), 1)
    assert rejected["errors"] == [f"{data} row 1: output: Input should be a valid string (got null)"]


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    rows = response_rows(3)
    rows[2]["qid"] = "q0"
    data = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    with pytest.raises(InputError) as exc:
        read_source(Source(data, {"id": "qid", "response": "output"}), Response)
    assert str(exc.value) == f"{data} row 2: qid: duplicate id 'q0' (first at row 0)"


def test_a_jsonl_file_takes_a_field_map_and_keeps_file_line_errors(tmp_path: Path) -> None:
    data = tmp_path / "responses.jsonl"
    data.write_text(json.dumps({"qid": "a", "output": "AB = 6"}) + "\n" + json.dumps({"qid": "b"}) + "\n")
    with pytest.raises(InputError) as exc:
        read_source(Source(data, {"id": "qid", "response": "output"}), Response)
    assert str(exc.value) == f"{data}:2: output: column missing (--field response=output)"
    with pytest.raises(
        InputError, match="--subset and --split choose within a dataset; this is a JSONL file"
    ):
        read_source(Source(data, {}, split="test"), Response)


def test_a_hub_name_is_kept_as_a_name_and_loaded_through_datasets(tmp_path: Path) -> None:
    cfg = JudgeRunConfig(responses="someone/responses", out=tmp_path / "o.jsonl", split="test")
    assert cfg.responses == "someone/responses"  # not a path: the saved config must not make it one
    assert plain_values(cfg.model_dump(mode="python"))["responses"] == "someone/responses"
    local = JudgeRunConfig(responses="responses.jsonl", out=tmp_path / "o.jsonl")
    assert isinstance(local.responses, Path)

    result = runner.invoke(
        app, ["judge", "someone/responses", "-o", str(tmp_path / "o.jsonl"), "--split", "test"]
    )
    assert result.exit_code == 1
    assert (
        "someone/responses (test split): not a local file or folder, and the hub dataset cannot be loaded"
        in result.output
    )
    assert not (tmp_path / "o.jsonl").exists()


def test_a_revision_pins_a_hub_dataset_and_is_refused_for_local_data(tmp_path: Path) -> None:
    data = tmp_path / "r.jsonl"
    data.write_text('{"id": "a", "response": "x"}\n')
    local = runner.invoke(app, ["judge", str(data), "-o", str(tmp_path / "o.jsonl"), "--revision", "v1"])
    assert (
        local.exit_code == 1
        and f"--revision pins a hub dataset's version; {data} is local data" in local.output
    )
    hub = runner.invoke(
        app,
        [
            "judge",
            "someone/responses",
            "-o",
            str(tmp_path / "o.jsonl"),
            "--split",
            "test",
            "--revision",
            "v1",
        ],
    )
    assert (
        hub.exit_code == 1 and "someone/responses@v1 (test split): not a local file or folder" in hub.output
    )
    assert not (tmp_path / "o.jsonl").exists()
    spec = Source("someone/responses", {}, split="test")
    assert _records_path(spec, {}) != _records_path(
        Source("someone/responses", {}, split="test", revision="v1"), {}
    )
    with pytest.raises(InputError, match="--revision pins a hub dataset's version; this is a local file"):
        read_source(Source(data, {}, revision="v1"), Response)  # the library call refuses it too

    from prcli.train import TrainConfig

    cfg = TrainConfig(
        model="m", data="someone/geo3k", revision="v1.2", eval_data=data, output_dir=tmp_path / "t"
    )
    assert Source.of(cfg.data, cfg).revision == "v1.2"
    assert Source.of(cfg.eval_data, cfg, split=cfg.eval_split).revision is None  # --data's version only


def test_judge_annotations_come_from_one_file_and_diagnose_reads_jsonl_ones(tmp_path: Path) -> None:
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"id": "row-0", "response": "AB = 6."}) + "\n")
    folder = tmp_path / "facts"
    folder.mkdir()
    result = runner.invoke(
        app, ["judge", str(responses), "-o", str(tmp_path / "o.jsonl"), "--annotations", str(folder)]
    )
    assert (
        result.exit_code == 1
        and "--annotations takes a JSONL, parquet or arrow file, not a folder" in result.output
    )
    facts = released_parquet(tmp_path / "geo3k.parquet", [released_row(0)])
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "row-0", "response": "AB = 6.", "correct": True}) + "\n")
    result = runner.invoke(
        app, ["diagnose", str(items), "-o", str(tmp_path / "d.jsonl"), "--annotations", str(facts)]
    )
    assert (
        result.exit_code == 1 and "expected a JSONL file" in result.output and "pr convert" in result.output
    )
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "d.jsonl").exists()
