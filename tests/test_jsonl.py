"""The JSONL layer on real malformed files: every error names FILE:LINE and the field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import make_image
from prcli import jsonl
from prcli.jsonl import (
    InputError,
    ResumableJsonl,
    check_jsonl,
    read_jsonl,
    write_jsonl_atomic,
)
from prcli.records import AnnotatedProblem, Judgement, Problem, Response
from prcli.runs import sibling


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for line in lines:
            fh.write(line if isinstance(line, bytes) else line.encode("utf-8"))
            fh.write(b"\n")
    return path


def problem(i: int, **extra: object) -> str:
    rec = {
        "id": f"p{i}",
        "question": f"<image>What is x in figure {i}?",
        "images": ["img/a.png"],
        "answer": str(i),
    }
    rec.update(extra)
    return json.dumps(rec)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    make_image(tmp_path / "data" / "img" / "a.png")
    return tmp_path / "data"


def errors_of(path: Path, model: type = Problem, **kw: object) -> list[str]:
    with pytest.raises(InputError) as info:
        check_jsonl(path, model, **kw)
    return str(info.value).splitlines()


def test_valid_file_streams_records_and_resolves_images(data_dir: Path) -> None:
    path = write_lines(data_dir / "problems.jsonl", [problem(1), "", problem(2, source="geo3k")])
    checked = check_jsonl(path, Problem)
    records = list(checked)
    assert [r.id for r in records] == ["p1", "p2"]
    assert records[0].images == [str(data_dir.resolve() / "img" / "a.png")]
    assert records[1].model_extra == {"source": "geo3k"}  # unknown fields survive
    assert len(checked) == 2 and checked.n_rejected == 0


def test_malformed_json_names_file_line_and_column(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", [problem(1), '{"id": "p2", "question": "q"', problem(3)])
    (msg,) = errors_of(path)
    assert msg.startswith(f"{path}:2: invalid JSON:")
    assert "column" in msg


def test_non_object_line(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", [problem(1), "[1, 2, 3]"])
    assert errors_of(path) == [f"{path}:2: expected a JSON object, got list"]


def test_missing_field(data_dir: Path) -> None:
    rec = json.loads(problem(1))
    del rec["answer"]
    path = write_lines(data_dir / "p.jsonl", [json.dumps(rec)])
    assert errors_of(path) == [f"{path}:1: answer: required field is missing"]


def test_mistyped_fields_are_not_coerced(data_dir: Path) -> None:
    path = write_lines(
        data_dir / "p.jsonl", [problem(1, id=7), problem(2, images="img/a.png"), problem(3, cot=5)]
    )
    msgs = errors_of(path)
    assert msgs[0].startswith(f"{path}:1: id: Input should be a valid string") and "(got 7)" in msgs[0]
    assert msgs[1].startswith(f"{path}:2: images: Input should be a valid list")
    assert msgs[2].startswith(f"{path}:3: cot: Input should be a valid string")


def test_missing_image_names_list_index_and_resolved_path(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", [problem(1, images=["img/a.png", "img/missing.png"])])
    (msg,) = errors_of(path)
    assert msg.startswith(f"{path}:1: images[1]: image file not found:")
    assert str(data_dir.resolve() / "img" / "missing.png") in msg


def test_corrupt_image(data_dir: Path) -> None:
    (data_dir / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    path = write_lines(data_dir / "p.jsonl", [problem(1, images=["img/bad.png"])])
    (msg,) = errors_of(path)
    assert msg.startswith(f"{path}:1: images[0]: image file cannot be decoded:")


def test_non_utf8_line(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", [problem(1), b'{"id": "p\xff2"}'])
    assert errors_of(path) == [f"{path}:2: not valid UTF-8 (byte 0xff at column 10)"]


def test_binary_garbage(data_dir: Path) -> None:
    path = data_dir / "garbage.jsonl"
    path.write_bytes(bytes(range(256)) * 4)
    msgs = errors_of(path)
    assert msgs[0].startswith(f"{path}:1: ")


def test_utf8_bom_is_accepted(data_dir: Path) -> None:
    path = data_dir / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + problem(1).encode() + b"\n")
    assert [r.id for r in read_jsonl(path, Problem)] == ["p1"]


def test_empty_and_blank_files(data_dir: Path) -> None:
    empty = data_dir / "empty.jsonl"
    empty.write_bytes(b"")
    assert errors_of(empty) == [f"{empty}: empty file: no records"]
    blank = write_lines(data_dir / "blank.jsonl", ["", "   ", ""])
    assert errors_of(blank) == [f"{blank}: empty file: no records"]
    assert list(check_jsonl(empty, Problem, allow_empty=True)) == []


def test_missing_file_and_folder(data_dir: Path) -> None:
    assert errors_of(data_dir / "nope.jsonl") == [f"{data_dir / 'nope.jsonl'}: file not found"]
    assert errors_of(data_dir) == [f"{data_dir}: is a folder, expected a JSONL file"]


def test_huge_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)
    path = write_lines(data_dir / "p.jsonl", [problem(1), problem(2, cot="x" * 5000), problem(3)])
    assert errors_of(path) == [f"{path}:2: line is longer than 1000 bytes"]
    checked = check_jsonl(path, Problem, skip_invalid=True)
    assert [r.id for r in checked] == ["p1", "p3"]  # the reader resynchronises after the long line


def test_duplicate_ids(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", [problem(1), problem(2), problem(1)])
    assert errors_of(path) == [f"{path}:3: id: duplicate id 'p1' (first at line 1)"]


def test_empty_id_and_blank_annotation(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", [problem(1, id="  ", annotations=["AB = 3"])])
    (msg,) = errors_of(path, AnnotatedProblem)
    assert msg == f"{path}:1: id: must not be empty"
    path = write_lines(data_dir / "q.jsonl", [problem(1, annotations=["AB = 3", " "])])
    (msg,) = errors_of(path, AnnotatedProblem)
    assert msg == f"{path}:1: annotations: annotation 1 is empty"


def test_all_problems_reported_with_a_cap(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", ["nope"] * 30)
    msgs = errors_of(path)
    assert len(msgs) == 21 and msgs[-1] == "... and 10 more problem(s)"


def test_skip_invalid_writes_rejected_lines_and_keeps_going(data_dir: Path) -> None:
    path = write_lines(
        data_dir / "p.jsonl", [problem(1), "{broken", problem(3, images=["img/none.png"]), problem(4)]
    )
    out = data_dir / "out" / "annotated.jsonl"
    rejected = sibling(out, ".rejected.jsonl")
    assert rejected == data_dir / "out" / "annotated.rejected.jsonl"
    checked = check_jsonl(path, Problem, skip_invalid=True, rejected_path=rejected)
    assert [r.id for r in checked] == ["p1", "p4"]
    rows = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [r["line"] for r in rows] == [2, 3]
    assert rows[0]["raw"] == "{broken\n" and rows[0]["file"] == str(path)
    assert "images[0]: image file not found" in rows[1]["errors"][0]


def test_skip_invalid_with_nothing_valid_is_still_an_error(data_dir: Path) -> None:
    path = write_lines(data_dir / "p.jsonl", ["{broken"])
    msgs = errors_of(path, skip_invalid=True)
    assert msgs[-1] == f"{path}: no valid records"


def test_side_files_of_outputs(tmp_path: Path) -> None:
    assert sibling(tmp_path / "x.json", ".rejected.jsonl") == tmp_path / "x.json.rejected.jsonl"
    assert sibling(tmp_path / "qwen2.5-vl.jsonl", ".config.yaml") == tmp_path / "qwen2.5-vl.config.yaml"


def test_images_written_relative_to_the_output_folder(data_dir: Path, tmp_path: Path) -> None:
    src = write_lines(data_dir / "p.jsonl", [problem(1)])
    (rec,) = read_jsonl(src, Problem)
    inside = data_dir / "annotated.jsonl"
    write_jsonl_atomic(inside, [rec])
    assert json.loads(inside.read_text())["images"] == ["img/a.png"]
    elsewhere = tmp_path / "other" / "annotated.jsonl"
    write_jsonl_atomic(elsewhere, [rec])
    assert json.loads(elsewhere.read_text())["images"] == [str(data_dir.resolve() / "img" / "a.png")]
    # and both read back to the same file
    assert read_jsonl(inside, Problem)[0].images == read_jsonl(elsewhere, Problem)[0].images


def test_atomic_write_leaves_old_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl_atomic(path, [{"id": "old"}])

    def records():
        yield {"id": "new1"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, records())
    assert path.read_text() == '{"id":"old"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_resumable_output_skips_done_and_repairs_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "judgements.jsonl"
    with ResumableJsonl(path) as out:
        out.write(Judgement(id="a", verdicts=[1], score=1.0), "h-a")
        out.write({"id": "b", "verdicts": [0], "score": 0.0}, "h-b")
    with open(path, "ab") as fh:
        fh.write(b'{"id":"c","verd')  # what a SIGKILL in the middle of a write leaves
    out = ResumableJsonl(path)
    assert out.n_found == 2 and out.has("a") and out.has("b") and not out.has("c")
    assert out.repaired_bytes == len(b'{"id":"c","verd')
    assert out.reuse("a", "h-a") and out.reuse("b", "h-b")
    out.write({"id": "c", "verdicts": [], "score": None}, "h-c")
    out.finish(lambda: ["a", "b", "c"])
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
    assert ResumableJsonl(path, overwrite=True).n_found == 0
    assert not path.exists() or path.read_text() == ""


def test_resume_reuses_a_record_only_for_the_same_input(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with ResumableJsonl(path) as out:
        for k in "abc":
            out.write({"id": k, "value": f"old-{k}"}, f"in-{k}")
        out.finish(lambda: "abc")
    # next run: b's input changed, c is no longer in the input, d is new
    out = ResumableJsonl(path)
    assert out.reuse("a", "in-a")
    assert not out.reuse("b", "in-b-changed")
    out.write({"id": "b", "value": "new-b"}, "in-b-changed")
    out.write({"id": "d", "value": "new-d"}, "in-d")
    out.finish(lambda: ["d", "a", "b"])
    assert (out.reused, out.redone, out.written) == (1, 1, 2)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["id"], r["value"]) for r in rows] == [("d", "new-d"), ("a", "old-a"), ("b", "new-b")]
    assert all(r["input_hash"] for r in rows)
    # nothing finished is lost: the superseded and the orphaned records wait in the stale file...
    stale = {json.loads(x)["value"] for x in out.stale_path.read_text().splitlines()}
    assert stale == {"old-b", "old-c"}
    # ...and come back, without recomputation, when their input does
    out = ResumableJsonl(path)
    assert out.reuse("b", "in-b") and out.reuse("c", "in-c") and out.reuse("a", "in-a")
    out.finish(lambda: "abc")
    assert [json.loads(x)["value"] for x in path.read_text().splitlines()] == ["old-a", "old-b", "old-c"]
    assert {json.loads(x)["value"] for x in out.stale_path.read_text().splitlines()} == {"new-b", "new-d"}


def test_records_without_an_input_hash_are_redone(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "out.jsonl", ['{"id": "a", "score": 1.0}'])  # an older prcli's output
    out = ResumableJsonl(path)
    assert out.has("a") and not out.reuse("a", "anything")
    out.write({"id": "a", "score": 0.5}, "h")
    out.finish(lambda: ["a"])
    assert [json.loads(x)["score"] for x in path.read_text().splitlines()] == [0.5]


def test_an_interrupted_redo_leaves_the_new_record_not_the_old(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with ResumableJsonl(path) as out:
        out.write({"id": "a", "v": 1}, "h1")
    with ResumableJsonl(path) as out:  # input changed; killed before finish(): both lines remain
        out.write({"id": "a", "v": 2}, "h2")
    out = ResumableJsonl(path)
    assert out.reuse("a", "h2") and not ResumableJsonl(path).reuse("a", "h3")
    out.finish(lambda: ["a"])
    assert [json.loads(x)["v"] for x in path.read_text().splitlines()] == [2]


def test_resumable_output_refuses_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "out.jsonl", ['{"id": "a"}', "garbage", '{"id": "b"}'])
    with pytest.raises(InputError, match=r"out.jsonl:2: existing output is not a JSONL record"):
        ResumableJsonl(path)
    assert path.read_text().count("\n") == 3  # nothing was truncated


def test_sigkill_while_appending_never_loses_finished_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        from prcli.jsonl import ResumableJsonl
        out = ResumableJsonl({str(path)!r})
        i = out.n_found
        while True:
            out.write({{"id": str(i), "payload": "x" * 50000}}, "h")
            i += 1
            if i == 40: print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = ResumableJsonl(path)
    n = out.n_found
    out.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and n >= 40
    assert [json.loads(x)["id"] for x in lines[:-1]] == [str(i) for i in range(n)]


def test_response_records_need_no_annotations(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", [json.dumps({"id": "1", "response": "AB = 3"})])
    (rec,) = read_jsonl(path, Response)
    assert rec.annotations is None


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("problems.parquet", b"PAR1" + bytes(range(256)) * 4 + b"PAR1", "a parquet file"),
        ("problems.jsonl", b"PAR1" + bytes(range(256)) * 4 + b"PAR1", "a parquet file"),
        ("problems.jsonl.gz", b"\x1f\x8b\x08\x00" + bytes(64), "a gzip-compressed file"),
        ("problems.csv", b"id,question,answer\np1,q,1\np2,q,2\n", "a CSV file"),
    ],
)
def test_another_format_is_one_clear_error(tmp_path: Path, name: str, content: bytes, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    (msg,) = errors_of(path)
    assert msg.startswith(f"{path}: expected a JSONL file (one JSON object a line), got {kind}")


def test_response_annotations_follow_the_annotated_problem_rule(data_dir: Path) -> None:
    for blank in ("", "   "):
        path = write_lines(
            data_dir / "r.jsonl", [json.dumps({"id": "1", "response": "x", "annotations": ["AB = 3", blank]})]
        )
        assert errors_of(path, Response) == [f"{path}:1: annotations: annotation 1 is empty"]
        path = write_lines(data_dir / "a.jsonl", [problem(1, annotations=["AB = 3", blank])])
        assert errors_of(path, AnnotatedProblem) == [f"{path}:1: annotations: annotation 1 is empty"]


def test_an_annotated_problem_needs_an_annotation(data_dir: Path) -> None:
    path = write_lines(data_dir / "a.jsonl", [problem(1, annotations=[])])
    assert errors_of(path, AnnotatedProblem) == [
        f"{path}:1: annotations: an annotated problem needs at least one annotation"
    ]
