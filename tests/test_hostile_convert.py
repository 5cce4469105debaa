"""`pr convert` on hostile and malformed input: it validates like every other stage, writes nothing
outside its images folder, and on any bad row leaves no output at all (issue 12)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from prcli.cli import app
from prcli.paths import safe_filename

runner = CliRunner()
INFO = "<info1>AB = 3</info1>\n<info2>BC = 4</info2>"
HOSTILE_IDS = [
    "../../evil",
    "a/b",
    "a_b",
    "a\\b",
    "..",
    ".",
    ".hidden",
    "/etc/passwd",
    "x" * 5000,
    "x" * 4999 + "y",
    "a\x00b",
    "图/像",
    "é",  # precomposed
    "e\u0301",  # e + combining accent: looks the same, is another id
    "A",
    "a",
    "CON",
]


def png(i: int) -> bytes:
    """A small PNG whose colour encodes `i`, so a file overwritten by another row's image shows."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (i % 256, (i * 7) % 256, 200)).save(buf, format="PNG")
    return buf.getvalue()


def row(i: int, **extra: object) -> dict:
    return {
        "problem": f"<image>Find x{i}.",
        "answer": str(i),
        "images": [{"bytes": png(i), "path": None}],
        "visual_key_info": INFO,
        **extra,
    }


def parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def convert_fails(src: Path, out: Path, *expected: str) -> str:
    """Run `pr convert`, expect a clean failure naming `expected`, and nothing written."""
    before = files_under(src.parent)
    result = runner.invoke(app, ["convert", str(src), str(out)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for text in expected:
        assert text in result.output, result.output
    assert files_under(src.parent) == before, "a failed conversion left files behind"
    return result.output


# ----------------------------------------------------------------------------- item 6: safe names


def test_safe_filename_never_leaves_its_folder_and_never_collides() -> None:
    names = [safe_filename(v, "_0.png") for v in HOSTILE_IDS]
    assert len(set(names)) == len(HOSTILE_IDS)
    assert len({n.lower() for n in names}) == len(HOSTILE_IDS)  # case-insensitive disks too
    for name in names:
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".") and name not in {".", ".."}
        assert name.isascii() and len(name.encode()) <= 100
    assert safe_filename("../../evil") == safe_filename("../../evil")  # stable across runs
    assert safe_filename("r1-7").startswith("r1-7-")  # still readable


def test_a_dotdot_id_writes_no_file_outside_the_images_folder(tmp_path: Path) -> None:
    src = parquet(tmp_path / "r1.parquet", [row(0, id="../../evil"), row(1, id="..")])
    out = tmp_path / "a" / "b" / "annotated.jsonl"
    result = runner.invoke(app, ["convert", str(src), str(out)])
    assert result.exit_code == 0, result.output
    outside = [p for p in tmp_path.rglob("*.png") if p.parent != out.parent / "annotated_images"]
    assert outside == [] and len(list((out.parent / "annotated_images").iterdir())) == 2


def test_hostile_ids_stay_in_the_images_folder_and_keep_their_images(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    rows = [row(i, id=rid) for i, rid in enumerate(HOSTILE_IDS)]
    src = parquet(tmp_path / "src" / "r1.parquet", rows)
    out = tmp_path / "work" / "deep" / "annotated.jsonl"
    result = runner.invoke(app, ["convert", str(src), str(out)])
    assert result.exit_code == 0, result.output

    image_dir = out.parent / "annotated_images"
    assert files_under(tmp_path) - files_under(src.parent) - {src.parent} == {
        tmp_path / "work",
        out.parent,
        out,
        image_dir,
        *image_dir.iterdir(),
    }
    assert len(list(image_dir.iterdir())) == len(HOSTILE_IDS)  # no two rows share a file
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == HOSTILE_IDS
    for i, rec in enumerate(records):
        (image,) = rec["images"]
        path = (out.parent / image).resolve()
        assert path.parent == image_dir.resolve()
        assert path.read_bytes() == png(i)


# ----------------------------------------------------------------------------- item 8: clear messages


def test_image_bytes_given_as_a_string(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "r1.jsonl", [{**row(0), "images": [{"bytes": "iVBORw0KGgo=", "path": None}]}])
    convert_fails(
        src, tmp_path / "o" / "a.jsonl", f"{src}:1: images[0].bytes: expected raw image bytes, got str"
    )


def test_embedded_bytes_that_are_no_image(tmp_path: Path) -> None:
    src = parquet(
        tmp_path / "r1.parquet", [row(0), {**row(1), "images": [{"bytes": b"not a png", "path": None}]}]
    )
    convert_fails(
        src, tmp_path / "o" / "a.jsonl", f"{src}:2: images[0].bytes: embedded bytes are not a readable image"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"id,problem\n1,q\n", "not a parquet file"),
        (b"PAR1" + bytes(range(256)) * 4 + b"PAR1", "cannot read the parquet file"),
    ],
)
def test_garbage_parquet(tmp_path: Path, content: bytes, expected: str) -> None:
    src = tmp_path / "r1.parquet"
    src.write_bytes(content)
    output = convert_fails(src, tmp_path / "o" / "a.jsonl", f"{src}: {expected}")
    assert "Traceback" not in output


def test_parquet_missing_required_columns_is_one_error_per_column(tmp_path: Path) -> None:
    src = parquet(tmp_path / "r1.parquet", [{"problem": f"q{i}", "images": []} for i in range(50)])
    output = convert_fails(
        src,
        tmp_path / "o" / "a.jsonl",
        f"{src}: answer: required column is missing",
        f"{src}: visual_key_info: required column is missing",
    )
    assert output.count("required column is missing") == 2


# ----------------------------------------------------------------------------- item 9: nothing left behind


def test_a_bad_late_row_leaves_no_images_and_keeps_the_last_good_output(tmp_path: Path) -> None:
    out = tmp_path / "o" / "annotated.jsonl"
    bad = parquet(tmp_path / "bad.parquet", [row(0, id="a"), row(1, id="b"), row(2, id="c", answer=None)])
    convert_fails(bad, out, f"{bad}:3: answer:")
    assert not (tmp_path / "o").exists()

    good = parquet(tmp_path / "good.parquet", [row(0, id="old")])
    assert runner.invoke(app, ["convert", str(good), str(out)]).exit_code == 0
    snapshot = {p: p.read_bytes() for p in files_under(tmp_path / "o") if p.is_file()}
    convert_fails(bad, out, f"{bad}:3: answer:")
    assert {p: p.read_bytes() for p in files_under(tmp_path / "o") if p.is_file()} == snapshot

    fixed = parquet(tmp_path / "fixed.parquet", [row(0, id="a"), row(1, id="b"), row(2, id="c")])
    result = runner.invoke(app, ["convert", str(fixed), str(out)])
    assert result.exit_code == 0, result.output
    images = sorted(p.name for p in (tmp_path / "o" / "annotated_images").iterdir())
    assert [n.split("-")[0] for n in images] == ["a", "b", "c"]  # the earlier run's image is replaced
    assert sorted(os.listdir(tmp_path / "o")) == ["annotated.jsonl", "annotated_images"]


# ----------------------------------------------------------------------------- item 10: strict records


def test_a_number_where_a_string_belongs(tmp_path: Path) -> None:
    src = jsonl(
        tmp_path / "r1.jsonl", ['{"problem": "q", "answer": 3.10, "visual_key_info": "<info1>x</info1>"}']
    )
    convert_fails(src, tmp_path / "o" / "a.jsonl", f"{src}:1: answer: Input should be a valid string")
    pq_src = parquet(tmp_path / "r1.parquet", [row(0, answer=3.1), row(1, answer=2.0)])
    convert_fails(
        pq_src, tmp_path / "o" / "a.jsonl", f"{pq_src}:2: answer: Input should be a valid string (got 2.0)"
    )


def test_ids_are_strings_and_unique(tmp_path: Path) -> None:
    rows = [row(0, id=5), row(1, id="5"), row(2, id="5"), row(3, id=None)]
    src = jsonl(tmp_path / "r1.jsonl", [{**r, "images": []} for r in rows])
    output = convert_fails(
        src,
        tmp_path / "o" / "a.jsonl",
        f"{src}:1: id: Input should be a valid string (got 5)",
        f"{src}:3: id: duplicate id '5' (first at line 2)",
        f"{src}:4: id: Input should be a valid string (got null)",
    )
    assert f"{src}:2:" not in output


@pytest.mark.parametrize("info", ["", None, "   ", "no tags here", "<info1> </info1>"])
def test_a_record_needs_an_annotation(tmp_path: Path, info: str | None) -> None:
    src = parquet(tmp_path / "r1.parquet", [row(0), row(1, visual_key_info=info)])
    convert_fails(src, tmp_path / "o" / "a.jsonl", f"{src}:2: visual_key_info: ")


def test_annotate_reads_the_released_parquet_as_problems(tmp_path: Path) -> None:
    """Read directly (prcli.sources): no CoT in the released rows and no teacher, so each is dropped as such."""
    src = parquet(tmp_path / "problems.parquet", [row(i) for i in range(4)])
    out = tmp_path / "o" / "annotated.jsonl"
    result = runner.invoke(app, ["annotate", str(src), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["problems"], summary["kept"], summary["drop_reasons"]) == (4, 0, {"no_cot": 4})
