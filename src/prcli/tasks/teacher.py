"""An imperfect teacher for a warm start: worked solutions with a perception error and a reasoning slip.

Cold-start CoTs are usually distilled from a stronger model without checking each one, and they carry
that model's habits. `write_teacher` rewrites training records as such a teacher would, with two
errors, each at its own rate:
- a misread (perception): it reads orange as red and purple as blue (a share `misread_rate` of the
  orange and purple shapes), states what it read and answers from it;
- a slip (reasoning): asked whether the shapes share a colour, it states two different colours and
  concludes "yes" (in a share `slip_rate` of those CoTs): its answer contradicts its own facts. The slip is
  decided on the colours as read, so after a misread (orange and orange read as red and orange) it
  can land on the true answer; `slip` marks the contradiction, `teacher_answer` the outcome.
Each share is exact (the CoTs that err are drawn at random, their number is fixed): whether SFT's
greedy answer takes on a habit depends on whether it is the majority, so a share drawn per CoT would
put some seeds on the other side of one half by chance. SFT learns the more frequent habit as the rule; GRPO, rewarded against the true answers (and, in the
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


def check_teachable(kinds: list[str], misread_rate: float, slip_rate: float) -> None:
    """Refuse, before anything is written, a teacher (any rate above 0) for kinds it cannot rewrite (an
    empty list: all kinds), and a slip rate with no figure to slip on (a teacher that quietly did nothing)."""
    from prcli.tasks.kinds import KINDS

    if not (misread_rate or slip_rate):
        return
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


def teacher_row(row: dict[str, Any], read: dict[str, Any], slip: bool) -> dict[str, Any]:
    """A training record with the teacher's CoT, from the colours it `read` and whether it slips.
    `answer` and `annotations` stay the truth (a reward or judge given this file checks against the
    figure, not the teacher); `teacher_facts`, `teacher_answer`, `misread` and `slip` say what the
    teacher wrote and where it went wrong."""
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
    rows = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines()]  # `write_splits`'
    for row in rows:
        if row.get("category") not in TEACHABLE:
            raise ValueError(
                f"{train}: record {row.get('id')!r}: the teacher rewrites only {', '.join(TEACHABLE)} "
                f"figures, not {row.get('category')!r}"
            )
    rng = random.Random(f"prcli.tasks.teacher:{seed}")
    hued = [
        (i, side) for i, r in enumerate(rows) for side in ("left", "right") if r["values"][side] in MISREADS
    ]
    misread = set(rng.sample(hued, round(misread_rate * len(hued))))
    read = [
        {
            **r["values"],
            **{side: MISREADS[r["values"][side]] for side in ("left", "right") if (i, side) in misread},
        }
        for i, r in enumerate(rows)
    ]
    differ = [i for i, v in enumerate(read) if v["ask"] == "same" and v["left"] != v["right"]]
    slips = set(rng.sample(differ, round(slip_rate * len(differ))))
    out = teacher_path(train)
    write_jsonl_atomic(out, [teacher_row(r, read[i], i in slips) for i, r in enumerate(rows)])
    return out


def teacher_counts(path: Path) -> dict[str, int]:
    """What a teacher file holds: figures with a misread, slips, the CoTs stating two different colours
    (as read, so the ones it could slip on), and answers that differ from the truth."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    read = [{**r["values"], **r["misread"]} for r in rows]
    return {
        "teacher_misread_figures": sum(bool(r["misread"]) for r in rows),
        "teacher_slips": sum(r["slip"] for r in rows),
        "teacher_different_colour_cots": sum(v["ask"] == "same" and v["left"] != v["right"] for v in read),
        "teacher_wrong_answers": sum(r["teacher_answer"] != r["answer"] for r in rows),
    }
