"""What every task kind is built from: the item, the kind, and the drawing helpers."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SIZE = 112  # the tiny Qwen-VL's images are 56-224 px
COLOURS = {
    "red": (215, 30, 30),
    "blue": (30, 70, 220),
    "green": (20, 140, 40),
    "orange": (240, 140, 0),
    "purple": (140, 40, 170),
}
SHAPES = ("circle", "square", "triangle")
SIDES = range(2, 16)
ANGLES = [(x, y) for x in range(30, 81) for y in range(30, 81) if x + y <= 150]


@dataclass
class Item:
    """One generated problem: the figure, the question, the answer and the facts it rests on."""

    kind: str
    image: Any  # PIL.Image.Image
    question: str
    answer: str
    reasoning: str  # the CoT's think block: states the facts, then the light reasoning
    facts: list[str]  # the visual facts the reasoning uses, as sentences (reference annotations)
    values: dict[str, Any]  # the same facts as data (what `TaskKind.solve` computes the answer from)
    layout: tuple = ()  # how the figure was drawn, beyond the facts: makes items of other seeds differ

    @property
    def cot(self) -> str:
        """The chain of thought in the released run's format (passes `format_reward`)."""
        return f"<think>\n{self.reasoning}\n</think>\n<answer>\n\\boxed{{{self.answer}}}\n</answer>"

    @property
    def key(self) -> tuple:
        return (self.kind, self.question, repr(sorted(self.values.items())), self.layout)


@dataclass(frozen=True)
class TaskKind:
    """A family of figures: `make(rng, size)` draws one item; `solve(values)` recomputes its answer;
    `answers` lists every answer once per point of the value grid (its mode gives the chance level)."""

    name: str
    make: Callable[[random.Random, int], Item]
    solve: Callable[[dict[str, Any]], str]
    answers: Callable[[], list[str]] = field(repr=False)

    @property
    def chance(self) -> float:
        """Accuracy of always giving the most likely answer: the best that the question text allows."""
        counts = Counter(self.answers())
        return max(counts.values()) / sum(counts.values())


# ----------------------------------------------------------------------------- drawing helpers


def font(size: int) -> Any:
    """PIL's default font, scaled with the image (about 10% of its side, at least 9 px)."""
    from PIL import ImageFont

    px = max(9, round(size / 10))
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def draw_canvas(size: int) -> tuple[Any, Any, Any]:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "white")
    return im, ImageDraw.Draw(im), font(size)


def draw_text(d: Any, font: Any, xy: tuple[float, float], text: str, fill: Any = "black") -> None:
    """Text centred on `xy`."""
    d.text(xy, text, fill=fill, font=font, anchor="mm")


def draw_shape(d: Any, kind: str, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == "circle":
        d.ellipse(box, fill=colour)
    elif kind == "square":
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)


def think_text(facts: Sequence[str], reasoning: str) -> str:
    return "From the figure, " + "; ".join(facts) + ". " + reasoning


def plural(n: int, colour: str, shape: str) -> str:
    return f"{n} {colour} {shape}" + ("" if n == 1 else "s")
