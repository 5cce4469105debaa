"""An imperfect teacher for a warm start: worked solutions with a perception error and a reasoning slip.

Cold-start CoTs are usually distilled from a stronger model without checking each one, and they carry
that model's habits. `write_teacher` rewrites training records as such a teacher would, with two
errors, each at its own rate:
- a misread (perception): it reads orange as red and purple as blue (each such shape, with
  probability `misread_rate`), states what it read and answers from it;
- a slip (reasoning): asked whether the shapes share a colour, it states two different colours and
  concludes "yes" (with probability `slip_rate`): its answer contradicts its own facts. The slip is
  decided on the colours as read, so after a misread (orange and orange read as red and orange) it
  can land on the true answer; `slip` marks the contradiction, `teacher_answer` the outcome.
SFT learns the more frequent habit as the rule; GRPO, rewarded against the true answers (and, in the
Perception-R1 arm, the true facts), can unlearn it. That gap between imitating a teacher and a
verified reward is what the demo measures.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from prcli.jsonl import write_jsonl_atomic
from prcli.tasks.base import Item
from prcli.tasks.kinds import two_shapes_text

MISREADS = {"orange": "red", "purple": "blue"}  # what the teacher sees instead: near hues
TEACHABLE = ("side_colour", "same_colour")  # kinds whose text is rebuilt from the colours read


def check_teachable(kinds: list[str], slip_rate: float) -> None:
    """Refuse, before anything is written, kinds the teacher cannot rewrite (an empty list: all kinds)
    and a slip rate with no figure to slip on (a teacher that quietly did nothing)."""
    from prcli.tasks.kinds import KINDS

    other = [k for k in kinds or KINDS if k not in TEACHABLE]
    if other:
        raise ValueError(
            f"an imperfect teacher needs figure kinds among {', '.join(TEACHABLE)}; not {', '.join(other)} "
            "(give --kinds, or --teacher-slip 0 --teacher-misread 0 for the correct CoTs)"
        )
    if slip_rate and "same_colour" not in kinds:
        raise ValueError(
            "the teacher slips only on same_colour figures, and --kinds has none (--teacher-slip 0)"
        )


def misread(values: dict[str, Any], rng: random.Random, rate: float) -> dict[str, Any]:
    """The colours as the teacher reads them: each shape in MISREADS is misread with probability rate."""
    read = dict(values)
    for side in ("left", "right"):
        if read[side] in MISREADS and rng.random() < rate:
            read[side] = MISREADS[read[side]]
    return read


def teacher_row(
    row: dict[str, Any], rng: random.Random, misread_rate: float, slip_rate: float
) -> dict[str, Any]:
    """A training record with the teacher's CoT. `answer` and `annotations` stay the truth (a reward or
    judge given this file checks against the figure, not the teacher); `teacher_facts`,
    `teacher_answer`, `misread` and `slip` say what the teacher wrote and where it went wrong."""
    if row.get("category") not in TEACHABLE:
        raise ValueError(
            f"record {row.get('id')!r}: the teacher rewrites only {', '.join(TEACHABLE)} figures, "
            f"not {row.get('category')!r}"
        )
    read = misread(row["values"], rng, misread_rate)
    slip = read["ask"] == "same" and read["left"] != read["right"] and rng.random() < slip_rate
    _, answer, reasoning, facts = two_shapes_text(read, "yes" if slip else None)
    cot = Item(row["category"], None, row["question"], answer, reasoning, facts, read).cot
    wrong = {side: read[side] for side in ("left", "right") if read[side] != row["values"][side]}
    return {
        **row,
        "cot": cot,
        "teacher_facts": facts,
        "teacher_answer": answer,
        "misread": wrong,
        "slip": slip,
    }


def teacher_path(train: Path) -> Path:
    return train.with_name(f"{train.stem}-teacher.jsonl")


def write_teacher(train: Path, misread_rate: float, slip_rate: float, seed: int) -> Path:
    """`train-teacher.jsonl` beside `train` (same ids and images): the teacher's CoTs, deterministic
    under seed."""
    for name, rate in (("misread", misread_rate), ("slip", slip_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"teacher {name} rate {rate} is not in [0, 1]")
    rng = random.Random(f"prcli.tasks.teacher:{seed}")
    lines = train.read_text(encoding="utf-8").splitlines()  # written by `write_splits`: one record per line
    out = teacher_path(train)
    write_jsonl_atomic(out, [teacher_row(json.loads(line), rng, misread_rate, slip_rate) for line in lines])
    return out
