"""The offline `rules` extractor keeps a figure's stated facts in plain phrasing and drops reasoning.

Issue 16, item 3: on "The figure shows a rectangle. The top side is 3. The right side is 4. Perimeter is
2*(3+4) = 14." it kept only "A rectangle."; the sides are the facts that matter. The phrasings below are
varied on purpose (shapes, charts, counts, units, LaTeX) so the rules are not fitted to one sentence.
"""

from __future__ import annotations

import pytest

from prcli.annotate.extract import rules_annotations

# One sentence each, stated facts: kept as they are (leading connectives dropped, a full stop added).
KEPT = [
    ("The top side is 3.", "The top side is 3."),
    ("the radius is 5 cm.", "The radius is 5 cm."),
    ("Angle ABC measures 40 degrees.", "Angle ABC measures 40 degrees."),
    ("The height of the triangle is 6.", "The height of the triangle is 6."),
    ("Side AB has length 7.", "Side AB has length 7."),
    ("There are 4 red cubes.", "There are 4 red cubes."),
    ("There are 12 small squares in the grid.", "There are 12 small squares in the grid."),
    ("The bar for 2019 reaches 35.", "The bar for 2019 reaches 35."),
    ("The hypotenuse is labeled 10.", "The hypotenuse is labeled 10."),
    ("Point D lies on BC.", "Point D lies on BC."),
    ("$AB = 6$", "$AB = 6$."),
    ("$\\angle ABC = 40^\\circ$", "$\\angle ABC = 40^\\circ$."),
    ("Here, \\(BC = 9\\).", "\\(BC = 9\\)."),
    ("The angle at B is 90°.", "The angle at B is 90°."),
    (
        "The length of the rectangle is 8 cm and its width is 5 cm.",
        "The length of the rectangle is 8 cm and its width is 5 cm.",
    ),
    (
        "The cylinder has a radius of 3 and a height of 10.",
        "The cylinder has a radius of 3 and a height of 10.",
    ),
    ("The tallest bar is 40.", "The tallest bar is 40."),
    ("The slice for cats is 25%.", "The slice for cats is 25%."),
    (
        "Each leg of the isosceles triangle is 13 units long.",
        "Each leg of the isosceles triangle is 13 units long.",
    ),
    ("The base is 12 m.", "The base is 12 m."),
    ("Segment CD = 2x + 1.", "Segment CD = 2x + 1."),
    ("The diameter of the circle is 10 inches.", "The diameter of the circle is 10 inches."),
    ("The value for March is 12.", "The value for March is 12."),
    ("The triangle has sides 3, 4 and 5.", "The triangle has sides 3, 4 and 5."),
    ("The shorter leg measures 5 cm.", "The shorter leg measures 5 cm."),
    ("The side opposite angle A is x.", "The side opposite angle A is x."),
    ("The circle's radius is 7.", "The circle's radius is 7."),
    ("From the chart, the bar for Tuesday is 20.", "The bar for Tuesday is 20."),
    ("In the diagram, DE = 4 cm.", "DE = 4 cm."),
    ("The area of the shaded region is given as 20.", "The area of the shaded region is given as 20."),
    # the premise of a consequence is kept when it is a plain reading, the consequence never
    ("The side length is 6, so the area is 36.", "The side length is 6."),
    ("Since the radius is 4, the diameter is 8.", "The radius is 4."),
]

# Inferences, computations, questions, hypotheses and derived quantities: none is a fact of the figure.
DROPPED = [
    "Perimeter is 2*(3+4) = 14.",
    "So x = 5.",
    "Therefore the area is 12.",
    "Using the Pythagorean theorem, c = 5.",
    "The answer is 14.",
    "We need to find the area.",
    "What is the length of AB?",
    "In the figure, what is the measure of angle C?",
    "The area is 12.",
    "The sum is 5.",
    "The total number of students is 50.",
    "The sum of the angles in a triangle is 180°.",
    "The diameter is 2 \\times 5 = 10.",
    "The missing angle is 180 - 40 - 60 = 80.",
    "The area of the triangle is 1/2 * 6 * 4 = 12.",
    "AC = \\sqrt{36 + 64} = 10.",
    "The hypotenuse is \\frac{10}{2}.",
    "If the side is 3, the area is 9.",
    "The height must be 6.",
    "The value of x is 5.",
    "There are 2 solutions.",
    "It is 5.",
    "x + 2 = 7.",
    "Let the radius be r.",
    "The perimeter of the square is 16 cm.",
    "Thus AB = 13.",
]


@pytest.mark.parametrize(("sentence", "expected"), KEPT)
def test_plain_statements_of_figure_facts_are_kept(sentence: str, expected: str) -> None:
    assert rules_annotations(sentence) == [expected]


@pytest.mark.parametrize("sentence", DROPPED)
def test_inferences_and_computations_are_dropped(sentence: str) -> None:
    assert rules_annotations(sentence) == []


@pytest.mark.parametrize(
    ("cot", "expected"),
    [
        (  # the issue's own example
            "The figure shows a rectangle. The top side is 3. The right side is 4. Perimeter is 2*(3+4) = 14.",
            ["A rectangle.", "The top side is 3.", "The right side is 4."],
        ),
        (
            "<think>\nThe figure shows a bar chart. The bar for 2019 reaches 35 and the bar for 2020 reaches 40. "
            "The difference is 40 - 35 = 5.\n</think>\n<answer>\\boxed{5}</answer>",
            ["A bar chart.", "The bar for 2019 reaches 35 and the bar for 2020 reaches 40."],
        ),
        (
            "The image shows a cylinder. Its radius is 3 cm and its height is 10 cm. The volume is "
            "\\pi r^2 h = 90\\pi. The answer is 90\\pi.",
            ["A cylinder.", "Its radius is 3 cm and its height is 10 cm."],
        ),
        (
            "I see a pie chart. The slice for dogs is 40% and the slice for cats is 25%. Therefore the rest, "
            "35%, are birds. What share is birds? 35%.",
            ["The slice for dogs is 40% and the slice for cats is 25%."],
        ),
        (
            "There are 3 blue spheres and 2 red cubes. If we remove the cubes, 3 objects remain. \\boxed{3}",
            ["There are 3 blue spheres and 2 red cubes."],
        ),
        (  # the demo's circle CoT: the radius is read, the diameter computed
            "The figure shows a circle. From the figure, the radius OA = 7. The diameter is 2 \\times 7 = 14.",
            ["A circle.", "The radius OA = 7."],
        ),
    ],
)
def test_whole_cots_keep_readings_and_drop_the_rest(cot: str, expected: list[str]) -> None:
    assert rules_annotations(cot) == expected


def test_colour_statements_about_shapes_are_facts_letters_are_not() -> None:
    cot = "<think>\nFrom the figure, the left shape is blue; the right shape is orange. The left shape is blue.\n</think>"
    assert rules_annotations(cot) == ["The left shape is blue.", "The right shape is orange."]
    assert rules_annotations("The bar for 2019 is red.") == ["The bar for 2019 is red."]
    assert rules_annotations("The circle is x. The shape is a.") == []  # a letter names no colour
