"""Inputs of the hostile corpus that YAML text cannot hold: images, binary files, huge lines."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def png(tmp: Path) -> None:
    """`img.png`, a small real image."""
    Image.new("RGB", (32, 32), "white").save(tmp / "img.png")


def bench16(tmp: Path) -> None:
    """`bench.jsonl`: a 16-item local benchmark whose answers are 1..16."""
    rows = [{"id": str(i), "question": f"What is {i}?", "answer": str(i)} for i in range(1, 17)]
    (tmp / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def huge_prediction(tmp: Path) -> None:
    """`huge.jsonl`: one prediction line of 17 MiB (past 24-bit offsets), then a normal one."""
    pad = "x" * (17 * 1024 * 1024)
    rows = [
        {"id": "1", "response": pad + " The answer is \\boxed{1}."},
        {"id": "2", "response": "\\boxed{2}"},
    ]
    (tmp / "huge.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def non_utf8_json(tmp: Path) -> None:
    (tmp / "preds.json").write_bytes(b'{"1": "caf\xe9"}')


def garbage_parquet(tmp: Path) -> None:
    (tmp / "released.parquet").write_bytes(b"PAR1 this is not a parquet file at all")


def released_bytes_as_str(tmp: Path) -> None:
    """`released.jsonl`: the released layout with an image's bytes given as a string."""
    row = {
        "id": "r1",
        "problem": "<image>Find x.",
        "answer": "3",
        "images": [{"bytes": "not bytes", "path": None}],
        "visual_key_info": "<info1>AB = 3</info1>",
    }
    (tmp / "released.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")


def a_file_in_the_way(tmp: Path) -> None:
    """`blocker`: a plain file where an output folder's parent would go."""
    (tmp / "blocker").write_text("not a folder")


def annotated_set(folder: Path, n: int = 4) -> Path:
    """`annotated.jsonl`: `n` annotated problems with real 56x56 images, for `pr train`."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (56, 56), (40 * i, 120, 200)).save(folder / "img" / f"{i}.png")
        rows.append(
            {
                "id": f"p{i}",
                "question": f"<image>The rectangle has sides {i + 2} and 3. What is its area?",
                "images": [f"img/{i}.png"],
                "answer": str((i + 2) * 3),
                "annotations": [f"The rectangle has width {i + 2}", "The rectangle has height 3"],
            }
        )
    path = folder / "annotated.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def annotated4(tmp: Path) -> None:
    annotated_set(tmp)


def annotated4_sliver_wide_model(tmp: Path) -> None:
    """`annotated.jsonl`: 4 annotated problems, then on line 5 one whose image is 1x10000 pixels; and
    `wide-model`, the tiny Qwen2.5-VL with Qwen2.5-VL's own pixel bounds (the tiny model's narrow ones
    squeeze any image to 16:1 at most). Fitted to those, the image is 28x9996: past Qwen-VL's 200:1."""
    from prcli.tiny import build_tiny_model

    path = annotated_set(tmp)
    Image.new("RGB", (1, 10000), "white").save(tmp / "img" / "sliver.png")
    row = {"id": "sliver", "question": "<image>How long?", "images": ["img/sliver.png"], "answer": "1"}
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({**row, "annotations": ["a line"]}) + "\n")
    build_tiny_model(tmp / "wide-model", max_pixels=12845056)


def two_evals_of_one_benchmark(tmp: Path) -> None:
    """`evals/{base,pr1}/mathvista/items.jsonl`: two models' items in folders that share a name."""
    for model, flip in (("base", False), ("pr1", True)):
        folder = tmp / "evals" / model / "mathvista"
        folder.mkdir(parents=True)
        rows = [{"id": str(i), "correct": (i % 2 == 0) != flip, "response": "r"} for i in range(6)]
        (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
