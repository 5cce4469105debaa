"""The figure kinds: each draws one item with PIL and recomputes its answer from the drawn facts."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from prcli.tasks.base import (
    ANGLES,
    COLOURS,
    SHAPES,
    SIDES,
    Item,
    TaskKind,
    draw_canvas,
    draw_shape,
    draw_text,
    plural,
    think_text,
)

# ----------------------------------------------------------------------------- rectangle


def _rectangle(rng: random.Random, size: int, ask: str) -> Item:
    w, h = rng.choice(SIDES), rng.choice(SIDES)
    margin = 0.2 * size
    room = size - 2 * margin
    scale = room / max(w, h) * rng.randint(70, 100) / 100
    pw, ph = max(w * scale, 0.25 * room), max(h * scale, 0.25 * room)  # a thin side still carries text
    x0 = margin + rng.random() * (room - pw)
    y0 = margin + rng.random() * (room - ph)
    x0, y0 = round(x0), round(y0)
    x1, y1 = round(x0 + pw), round(y0 + ph)
    im, d, font = draw_canvas(size)
    d.rectangle([x0, y0, x1, y1], outline="black", width=max(1, size // 64))
    off = 0.07 * size
    for (x, y), name in zip(
        [(x0 - off, y0 - off), (x1 + off, y0 - off), (x1 + off, y1 + off), (x0 - off, y1 + off)],
        "ABCD",
        strict=True,
    ):
        draw_text(d, font, (x, y), name)
    draw_text(d, font, ((x0 + x1) / 2, y0 - off), str(w), fill=COLOURS["blue"])
    draw_text(d, font, (x1 + off, (y0 + y1) / 2), str(h), fill=COLOURS["blue"])
    facts = [f"AB = {w}", f"BC = {h}"]
    if ask == "area":
        answer = str(w * h)
        reasoning = f"The area of the rectangle is AB \\times BC = {w} \\times {h} = {answer}."
    else:
        answer = str(2 * (w + h))
        reasoning = f"The perimeter of the rectangle is 2(AB + BC) = 2({w} + {h}) = {answer}."
    question = f"<image>Rectangle ABCD has the side lengths shown. What is its {ask}?"
    return Item(
        f"rect_{ask}",
        im,
        question,
        answer,
        think_text(facts, reasoning),
        facts,
        {"AB": w, "BC": h},
        (x0, y0, x1, y1),
    )


# ----------------------------------------------------------------------------- triangle angle


def _triangle_angle(rng: random.Random, size: int) -> Item:
    x, y = rng.choice(ANGLES)
    ax, bx = math.radians(x), math.radians(y)
    ac = math.sin(bx) / math.sin(ax + bx)  # law of sines with AB = 1
    pts = [(0.0, 0.0), (1.0, 0.0), (ac * math.cos(ax), ac * math.sin(ax))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    margin = 0.18 * size
    room = size - 2 * margin
    scale = room / max(max(xs) - min(xs), max(ys) - min(ys)) * rng.randint(80, 100) / 100
    dx = margin + rng.random() * (room - scale * (max(xs) - min(xs)))
    dy = margin + rng.random() * (room - scale * (max(ys) - min(ys)))
    flip = rng.random() < 0.5  # mirror left-right: the marked angles are not always on the same side
    screen = []
    for px, py in pts:
        sx = dx + scale * (px - min(xs))
        if flip:
            sx = size - sx
        screen.append((round(sx), round(size - (dy + scale * (py - min(ys))))))
    im, d, font = draw_canvas(size)
    d.polygon(screen, outline="black", width=max(1, size // 64))
    gx, gy = sum(p[0] for p in screen) / 3, sum(p[1] for p in screen) / 3
    for (px, py), name in zip(screen, "ABC", strict=True):
        nx, ny = px - gx, py - gy
        norm = math.hypot(nx, ny) or 1.0
        draw_text(d, font, (px + nx / norm * 0.07 * size, py + ny / norm * 0.07 * size), name)
    for (px, py), value in zip(screen[:2], (x, y), strict=True):
        draw_text(d, font, (px + (gx - px) * 0.42, py + (gy - py) * 0.42), f"{value}°", fill=COLOURS["red"])
    facts = [f"angle A = {x}°", f"angle B = {y}°"]
    answer = str(180 - x - y)
    reasoning = f"The angles of a triangle add up to 180°, so angle C = 180 - {x} - {y} = {answer}."
    question = "<image>Two angles of triangle ABC are marked. What is angle C in degrees?"
    return Item(
        "triangle_angle",
        im,
        question,
        answer,
        think_text(facts, reasoning),
        facts,
        {"A": x, "B": y},
        tuple(screen),
    )


# ----------------------------------------------------------------------------- counting


def _count(rng: random.Random, size: int) -> Item:
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    k = rng.randint(1, 4)
    others = [(s, c) for s in SHAPES for c in COLOURS if (s, c) != (shape, colour)]
    near = [(s, c) for s, c in others if s == shape or c == colour]  # distractors that share one trait
    n_other = rng.randint(2, 9 - k)
    shapes = [(shape, colour)] * k + [rng.choice(near if i % 2 == 0 else others) for i in range(n_other)]
    cells = rng.sample(range(9), len(shapes))
    im, d, _ = draw_canvas(size)
    cell = size / 3
    placed = []
    for (s, c), at in zip(shapes, cells, strict=True):
        cx = (at % 3 + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell
        cy = (at // 3 + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell
        draw_shape(d, s, cx, cy, 0.28 * cell, COLOURS[c])
        placed.append((s, c, round(cx), round(cy)))
    facts = [f"there {'is' if k == 1 else 'are'} {plural(k, colour, shape)}"]
    reasoning = f"Counting the {colour} {shape}s and ignoring the other shapes gives {k}."
    question = f"<image>How many {colour} {shape}s are in the figure?"
    values = {"target": (shape, colour), "shapes": [(s, c) for s, c, _, _ in placed]}
    return Item(
        "count_shapes", im, question, str(k), think_text(facts, reasoning), facts, values, tuple(placed)
    )


# ----------------------------------------------------------------------------- colour of the largest / leftmost shape


def _colour_of(rng: random.Random, size: int, which: str) -> Item:
    n = rng.randint(3, 4)
    colours = rng.sample(list(COLOURS), n)
    cell = size / 4
    if which == "largest":
        radii = sorted(rng.sample(range(6, 14), n), reverse=True)
        radii[0] = max(radii[0], round(radii[1] * 1.4))  # the largest is clearly the largest
        radii = [r / 112 * size for r in radii]
        spots = rng.sample([(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73)], n)
        centres = [
            (x * size + rng.uniform(-0.04, 0.04) * size, y * size + rng.uniform(-0.04, 0.04) * size)
            for x, y in spots
        ]
    else:
        radii = [rng.uniform(0.3, 0.42) * cell for _ in range(n)]
        columns = sorted(rng.sample(range(4), n))
        order = rng.sample(range(n), n)  # left-to-right order is not the drawing order
        centres = [((columns[i] + 0.5) * cell, rng.uniform(0.2, 0.8) * size) for i in order]
    shapes = [rng.choice(SHAPES[:2]) for _ in range(n)]
    im, d, _ = draw_canvas(size)
    placed = []
    for s, c, r, (cx, cy) in zip(shapes, colours, radii, centres, strict=True):
        draw_shape(d, s, cx, cy, r, COLOURS[c])
        placed.append({"shape": s, "colour": c, "x": round(cx), "y": round(cy), "r": round(r, 2)})
    values = {"shapes": placed}
    answer = _solve_colour(which)(values)
    facts = [f"the {which} shape is {answer}"]
    if which == "largest":
        reasoning = f"Comparing the sizes of the {n} shapes, the largest one is {answer}."
    else:
        reasoning = f"Going from left to right across the {n} shapes, the first one is {answer}."
    question = f"<image>What colour is the {which} shape in the figure?"
    return Item(f"{which}_colour", im, question, answer, think_text(facts, reasoning), facts, values)


def _solve_colour(which: str) -> Callable[[dict[str, Any]], str]:
    def solve(values: dict[str, Any]) -> str:
        if which == "largest":
            return max(values["shapes"], key=lambda s: s["r"])["colour"]
        return min(values["shapes"], key=lambda s: s["x"] - s["r"])["colour"]

    return solve


# ----------------------------------------------------------------------------- point on a segment


def _dist(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance from p to segment ab."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    t = max(
        0.0, min(1.0, ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2))
    )
    return math.hypot(px - ax - t * (bx - ax), py - ay - t * (by - ay))


def _point_on_segment(rng: random.Random, size: int) -> Item:
    lo, hi = 0.12 * size, 0.88 * size
    gap = 0.08 * size
    asked = rng.choice(("AB", "CD"))
    # half the answers are "yes": a blind guess is right half the time
    where = asked if rng.random() < 0.5 else rng.choice(("CD" if asked == "AB" else "AB", "neither"))
    while True:
        ends = [(round(rng.uniform(lo, hi)), round(rng.uniform(lo, hi))) for _ in range(4)]
        (a, b), (c, e) = ends[:2], ends[2:]
        if min(math.dist(a, b), math.dist(c, e)) < 0.45 * size:
            continue
        t = rng.uniform(0.25, 0.75)
        if where == "neither":  # beside the middle of AB, off both segments
            mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
            length = math.dist(a, b)
            nx, ny = -(b[1] - a[1]) / length, (b[0] - a[0]) / length
            side = rng.choice((-1, 1)) * rng.uniform(1.5, 2.5) * gap
            p = (round(mx + nx * side), round(my + ny * side))
        else:
            s0, s1 = (a, b) if where == "AB" else (c, e)
            p = (round(s0[0] + t * (s1[0] - s0[0])), round(s0[1] + t * (s1[1] - s0[1])))
        on_ab, on_cd = _dist(p, a, b) <= 1.5, _dist(p, c, e) <= 1.5
        far_ab, far_cd = _dist(p, a, b) >= gap, _dist(p, c, e) >= gap
        clear = {"AB": on_ab and far_cd, "CD": on_cd and far_ab, "neither": far_ab and far_cd}[where]
        inside = all(0.08 * size <= v <= 0.92 * size for v in p)
        if clear and inside and all(math.dist(p, q) >= gap for q in ends):
            break
    im, d, font = draw_canvas(size)
    width = max(1, size // 64)
    d.line([a, b], fill="black", width=width)
    d.line([c, e], fill="black", width=width)
    for (x, y), name in zip(ends, "ABCD", strict=True):
        r = max(1.5, size / 70)
        d.ellipse([x - r, y - r, x + r, y + r], fill="black")
        draw_text(d, font, (x, y - 0.07 * size if y > 0.2 * size else y + 0.07 * size), name)
    r = max(2, size / 50)
    d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=COLOURS["red"])
    draw_text(d, font, (p[0] + 0.07 * size, p[1] - 0.05 * size), "P", fill=COLOURS["red"])
    values = {"on": where, "asked": asked}
    answer = _solve_point(values)
    facts = [f"point P lies on segment {where}" if where != "neither" else "point P lies on neither segment"]
    reasoning = f"So P {'is' if answer == 'yes' else 'is not'} on segment {asked}."
    question = f"<image>Segments AB and CD are drawn. Does point P lie on segment {asked}?"
    return Item(
        "point_on_segment", im, question, answer, think_text(facts, reasoning), facts, values, (*ends, p)
    )


def _solve_point(values: dict[str, Any]) -> str:
    return "yes" if values["on"] == values["asked"] else "no"


# ----------------------------------------------------------------------------- two shapes: left and right


def _two_shapes(rng: random.Random, size: int, ask: str) -> Item:
    """A shape on the left and one on the right; the CoT states both colours whatever is asked, so a
    response can be right for the question and still misread the other shape (a perception error)."""
    left = rng.choice(list(COLOURS))
    same = ask == "same" and rng.random() < 0.5  # half the answers are "yes"
    right = left if same else rng.choice([c for c in COLOURS if c != left])
    im, d, _ = draw_canvas(size)
    placed = []
    for colour, x in ((left, 0.27), (right, 0.73)):
        shape = rng.choice(SHAPES)
        cx, cy = (x + rng.uniform(-0.05, 0.05)) * size, rng.uniform(0.3, 0.7) * size
        r = rng.uniform(0.12, 0.2) * size
        draw_shape(d, shape, cx, cy, r, COLOURS[colour])
        placed.append((shape, colour, round(cx), round(cy), round(r)))
    values = {"left": left, "right": right, "ask": ask}
    question, answer, reasoning, facts = two_shapes_text(values)
    return Item(
        f"{'same' if ask == 'same' else 'side'}_colour",
        im,
        question,
        answer,
        reasoning,
        facts,
        values,
        tuple(placed),
    )


def two_shapes_text(values: dict[str, Any], answer: str | None = None) -> tuple[str, str, str, list[str]]:
    """Question, answer, think text and facts of a two-shape figure, from its colours as read: the
    generator's truth, or what `prcli.tasks.teacher` misreads (and the answer it slips to, if given)."""
    left, right, ask = values["left"], values["right"], values["ask"]
    facts = [f"the left shape is {left}", f"the right shape is {right}"]
    answer = answer or _solve_two(values)
    if ask == "same":
        reasoning = (
            f"The colours are {'the same' if left == right else 'different'}, so the answer is {answer}."
        )
        question = "<image>Are the two shapes in the figure the same colour?"
    else:
        reasoning = f"The {ask} shape is {answer}."
        question = f"<image>What colour is the {ask} shape in the figure?"
    return question, answer, think_text(facts, reasoning), facts


def _solve_two(values: dict[str, Any]) -> str:
    if values["ask"] == "same":
        return "yes" if values["left"] == values["right"] else "no"
    return values[values["ask"]]


def _side_colour(rng: random.Random, size: int) -> Item:
    return _two_shapes(rng, size, rng.choice(("left", "right")))


# ----------------------------------------------------------------------------- registry


def _count_answers() -> list[str]:
    return [str(k) for k in range(1, 5)]


KINDS: dict[str, TaskKind] = {
    k.name: k
    for k in (
        TaskKind(
            "rect_area",
            lambda rng, size: _rectangle(rng, size, "area"),
            lambda v: str(v["AB"] * v["BC"]),
            lambda: [str(w * h) for w in SIDES for h in SIDES],
        ),
        TaskKind(
            "rect_perimeter",
            lambda rng, size: _rectangle(rng, size, "perimeter"),
            lambda v: str(2 * (v["AB"] + v["BC"])),
            lambda: [str(2 * (w + h)) for w in SIDES for h in SIDES],
        ),
        TaskKind(
            "triangle_angle",
            _triangle_angle,
            lambda v: str(180 - v["A"] - v["B"]),
            lambda: [str(180 - x - y) for x, y in ANGLES],
        ),
        TaskKind(
            "count_shapes",
            _count,
            lambda v: str(sum(1 for s in v["shapes"] if tuple(s) == tuple(v["target"]))),
            _count_answers,
        ),
        TaskKind(
            "largest_colour",
            lambda rng, size: _colour_of(rng, size, "largest"),
            _solve_colour("largest"),
            lambda: list(COLOURS),
        ),
        TaskKind(
            "leftmost_colour",
            lambda rng, size: _colour_of(rng, size, "leftmost"),
            _solve_colour("leftmost"),
            lambda: list(COLOURS),
        ),
        TaskKind(
            "point_on_segment",
            _point_on_segment,
            _solve_point,
            lambda: ["yes", "no"],  # drawn half and half
        ),
        TaskKind("side_colour", _side_colour, _solve_two, lambda: list(COLOURS)),
        TaskKind(
            "same_colour",
            lambda rng, size: _two_shapes(rng, size, "same"),
            _solve_two,
            lambda: ["yes", "no"],  # drawn half and half
        ),
    )
}
