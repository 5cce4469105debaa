"""Synthetic perception tasks: figures whose answer must be read from the image (issue 17, item 1).

Each kind draws a figure with PIL and asks a question that names what to look at but never the
values needed (no lengths, angles, counts or colours of the answer in the text), so a model that
does not perceive the figure is at chance. Reasoning is light (one formula, a count, a comparison).
Every item carries a correct templated chain of thought that states the visual facts it uses, and
those facts as a list, usable as reference annotations for `pr train` and `pr diagnose`.

`write_tasks` writes images and JSONL records that are both `Problem`s (id, question, images,
answer, cot) and `AnnotatedProblem`s (plus `annotations`: the stated facts), with `category` (the
kind) and `values` (the drawn facts as data: what the answer is computed from). `pr annotate` reads
them as Problems; `pr train` and `pr diagnose` can use them directly without an annotation step.

Deterministic under seed (same seed, same arguments: identical bytes); items of one set are
distinct and, because every figure's layout is drawn too (its position, scale and distractors),
sets drawn with different seeds are disjoint in practice: the held-out split is `seed + 1`.
`write_splits` (`pr tasks`, the demo) writes a training and a held-out split (and, if asked, the
imperfect teacher's CoTs: `prcli.tasks.teacher`) and checks that no held-out figure is also a
training one. `chance_accuracy` is the best accuracy without seeing the image: the probability of the most
likely answer of each kind, exact over the generator's value grid.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from prcli.config import StageConfig
from prcli.jsonl import write_jsonl_atomic
from prcli.tasks.base import COLOURS, DEFAULT_SIZE, Item, TaskKind
from prcli.tasks.kinds import KINDS

__all__ = [
    "COLOURS",
    "DEFAULT_SIZE",
    "KINDS",
    "Item",
    "TaskKind",
    "TasksConfig",
    "chance_accuracy",
    "generate",
    "image_digest",
    "parse_kinds",
    "write_splits",
    "write_tasks",
]


def _kinds(kinds: Sequence[str] | None) -> list[str]:
    names = list(kinds) if kinds else list(KINDS)
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown task kind(s) {unknown}; known: {', '.join(KINDS)}")
    return names


def parse_kinds(values: Sequence[str]) -> list[str]:
    """Kind names from options given comma-separated or repeated; an unknown one is an error."""
    names = [k.strip() for value in values for k in value.split(",") if k.strip()]
    _kinds(names or None)
    return names


def chance_accuracy(kinds: Sequence[str] | None = None, n: int | None = None) -> float:
    """Best accuracy without the image on a set of these kinds: the mean of the kinds' chance levels,
    weighted as `write_tasks` deals `n` items round-robin (equal weights when `n` is None)."""
    names = _kinds(kinds)
    weights = [1] * len(names) if n is None else [len(range(i, n, len(names))) for i in range(len(names))]
    return sum(w * KINDS[k].chance for w, k in zip(weights, names, strict=True)) / sum(weights)


def generate(n: int, seed: int, kinds: Sequence[str] | None = None, size: int = DEFAULT_SIZE) -> list[Item]:
    """`n` distinct items, the kinds dealt round-robin, from one seeded stream."""
    names = _kinds(kinds)
    rng = random.Random(f"prcli.tasks:{seed}")
    items: list[Item] = []
    seen: set[tuple] = set()
    for i in range(n):
        for _ in range(1000):
            item = KINDS[names[i % len(names)]].make(rng, size)
            if item.key not in seen:
                break
        else:
            raise ValueError(f"could not draw {n} distinct items of kind {names[i % len(names)]}")
        seen.add(item.key)
        items.append(item)
    return items


def write_tasks(
    folder: Path,
    n: int,
    seed: int,
    kinds: Sequence[str] | None = None,
    prefix: str = "",
    size: int = DEFAULT_SIZE,
) -> Path:
    """Write `n` items as PNGs under `folder/images` and records (Problem + `annotations`) to
    `folder/<prefix or 'tasks'>.jsonl`; returns the JSONL path."""
    return write_items(Path(folder), generate(n, seed, kinds, size), prefix)


def write_items(folder: Path, items: Sequence[Item], prefix: str = "") -> Path:
    """`write_tasks` for items already drawn."""
    rows = []
    for i, item in enumerate(items):
        name = f"{prefix}{i:04d}"
        image = folder / "images" / f"{name}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        item.image.save(image, format="PNG")
        rows.append(
            {
                "id": name,
                "question": item.question,
                "images": [f"images/{name}.png"],
                "answer": item.answer,
                "cot": item.cot,
                "annotations": item.facts,
                "category": item.kind,
                "values": item.values,
            }
        )
    path = folder / f"{prefix.rstrip('-_') or 'tasks'}.jsonl"
    write_jsonl_atomic(path, rows)
    return path


def image_digest(item: Item) -> str:
    """SHA-256 of the item's PNG bytes (how the tests compare figures)."""
    import io

    buf = io.BytesIO()
    item.image.save(buf, format="PNG")
    return hashlib.sha256(buf.getvalue()).hexdigest()


class TasksConfig(StageConfig):
    out: Path = Field(description="Folder for train.jsonl, test.jsonl and images/.")
    train_size: int = Field(1000, ge=1, description="Training problems.")
    test_size: int = Field(200, ge=1, description="Held-out problems (drawn with seed + 1).")
    kinds: list[str] = Field(
        default_factory=list, description="Figure kinds, comma-separated or repeated (default: all)."
    )
    seed: int = Field(0, description="Seed of the training split; the held-out split uses seed + 1.")
    size: int = Field(DEFAULT_SIZE, ge=28, description="Side of the square figures, in pixels.")
    teacher_misread: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Write train-teacher.jsonl too: CoTs of a teacher that misreads this share of "
        "orange/purple shapes as red/blue (side_colour, same_colour only).",
    )
    teacher_slip: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Write train-teacher.jsonl too: CoTs of a teacher that, after stating two "
        "different colours, concludes 'yes, the same colour' in this share of them (same_colour).",
    )

    @field_validator("kinds")
    @classmethod
    def _known(cls, kinds: list[str]) -> list[str]:
        return parse_kinds(kinds)

    @model_validator(mode="after")
    def _teachable(self) -> TasksConfig:
        from prcli.tasks.teacher import check_teachable

        check_teachable(self.kinds, self.teacher_misread, self.teacher_slip)
        return self


def write_splits(cfg: TasksConfig) -> tuple[Path, Path, Path | None]:
    """train.jsonl (seed) and test.jsonl (seed + 1) in `cfg.out`, and train-teacher.jsonl when a teacher
    is asked for (else None, and an earlier run's teacher file is removed: its rows would name these
    figures' images with another run's CoTs). A held-out figure that is also a training one (same
    kind, question, facts and layout) is an error, never a silent leak."""
    from prcli.tasks.teacher import teacher_path, write_teacher

    kinds = cfg.kinds or None
    items = generate(cfg.train_size, cfg.seed, kinds, cfg.size)
    test = generate(cfg.test_size, cfg.seed + 1, kinds, cfg.size)
    seen = {i.key for i in items}
    shared = sum(i.key in seen for i in test)
    if shared:
        raise ValueError(f"{shared} held-out item(s) are also training items; choose another --seed")
    train = write_items(cfg.out, items, "train-")
    teacher = None
    if cfg.teacher_misread or cfg.teacher_slip:
        teacher = write_teacher(train, cfg.teacher_misread, cfg.teacher_slip, cfg.seed)
    else:
        teacher_path(train).unlink(missing_ok=True)
    return train, write_items(cfg.out, test, "test-"), teacher
