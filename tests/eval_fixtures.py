"""Small local copies of each benchmark with its real field layout (as the hub rows come), with
images made on the spot. Written as parquet with `datasets` Image columns, like the hub's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


def image(color: str, size: tuple[int, int] = (56, 56)) -> Image.Image:
    return Image.new("RGB", size, color)


def to_parquet(rows: list[dict[str, Any]], path: Path, image_columns: tuple[str, ...]) -> Path:
    from datasets import Dataset, Features
    from datasets import Image as ImageFeature

    ds = Dataset.from_list(rows)
    features = Features({**ds.features, **{c: ImageFeature() for c in image_columns if c in ds.column_names}})
    ds = Dataset.from_list(rows, features=features)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


def mathvista(folder: Path) -> Path:
    rows = [
        {
            "pid": "1",
            "question": "What is the length of AB?",
            "image": "images/1.jpg",
            "decoded_image": image("red"),
            "choices": None,
            "unit": "cm",
            "precision": None,
            "answer": "5",
            "question_type": "free_form",
            "answer_type": "integer",
            "metadata": {
                "split": "testmini",
                "language": "english",
                "img_width": 56,
                "img_height": 56,
                "source": "Geometry3K",
                "category": "math-targeted-vqa",
                "task": "geometry problem solving",
                "context": "geometry diagram",
                "grade": "high school",
                "skills": ["geometry reasoning", "algebraic reasoning"],
            },
            "query": "",
        },
        {
            "pid": "2",
            "question": "Which angle is largest?",
            "image": "images/2.jpg",
            "decoded_image": image("blue"),
            "choices": ["A", "B", "C"],
            "unit": None,
            "precision": None,
            "answer": "B",
            "question_type": "multi_choice",
            "answer_type": "text",
            "metadata": {
                "split": "testmini",
                "language": "english",
                "img_width": 56,
                "img_height": 56,
                "source": "GeoQA+",
                "category": "math-targeted-vqa",
                "task": "geometry problem solving",
                "context": "geometry diagram",
                "grade": "high school",
                "skills": ["geometry reasoning"],
            },
            "query": "",
        },
        {
            "pid": "3",
            "question": "What is the mean?",
            "image": "images/3.jpg",
            "decoded_image": image("green"),
            "choices": None,
            "unit": None,
            "precision": 1.0,
            "answer": "2.5",
            "question_type": "free_form",
            "answer_type": "float",
            "metadata": {
                "split": "testmini",
                "language": "english",
                "img_width": 56,
                "img_height": 56,
                "source": "ChartQA",
                "category": "general-vqa",
                "task": "figure question answering",
                "context": "bar chart",
                "grade": "daily life",
                "skills": ["statistical reasoning"],
            },
            "query": "",
        },
    ]
    from prcli.eval.mathvista import build_query

    for r in rows:
        r["query"] = build_query(r)
    return to_parquet(rows, folder / "mathvista.parquet", ("decoded_image",))


def mathverse(folder: Path) -> Path:
    base = {
        "problem_index": "1",
        "question_type": "multi-choice",
        "answer": "B",
        "metadata": {
            "split": "testmini",
            "source": "GeoQA",
            "subject": "Plane Geometry",
            "subfield": "Angle",
        },
        "query_wo": "",
        "query_cot": "Please first conduct reasoning, and then answer the question and provide the "
        "correct option letter, e.g., A, B, C, D, at the end.\nQuestion: As shown, find angle 1.\nChoices:\nA:30°\nB:40°",
        "question_for_eval": "As shown, find angle 1.\nChoices:\nA:30°\nB:40°",
    }
    rows = [
        {
            **base,
            "sample_index": "1",
            "problem_version": "Text Dominant",
            "question": "As shown, find angle 1.\nChoices:\nA:30°\nB:40°",
            "image": image("red"),
        },
        {
            **base,
            "sample_index": "2",
            "problem_version": "Vision Only",
            "question": "",
            "image": image("blue"),
        },
        {
            **base,
            "sample_index": "3",
            "problem_version": "Text Lite",
            "question": "Find x.",
            "image": image("green"),
            "question_type": "free-form",
            "answer": "2\\sqrt{3}",
            "question_for_eval": "Find x.",
        },
    ]
    return to_parquet(rows, folder / "mathverse.parquet", ("image",))


def mathvision(folder: Path) -> Path:
    rows = [
        {
            "id": "4",
            "question": "<image1>Which shape comes next?",
            "options": ["A", "B", "C", "D", "E"],
            "image": "images/4.jpg",
            "decoded_image": image("red"),
            "answer": "C",
            "solution": None,
            "level": 2,
            "subject": "logic",
        },
        {
            "id": "5",
            "question": "How long is the side?",
            "options": [],
            "image": "images/5.jpg",
            "decoded_image": image("blue"),
            "answer": "\\frac{3}{2}",
            "solution": None,
            "level": 3,
            "subject": "metric geometry - length",
        },
        {
            "id": "6",
            "question": "<image1>Which one?",
            "options": ["1", "2", "3", "4", "5"],
            "image": "images/6.jpg",
            "decoded_image": image("green"),
            "answer": "D",
            "solution": None,
            "level": 1,
            "subject": "counting",
        },
    ]
    return to_parquet(rows, folder / "mathvision.parquet", ("decoded_image",))


def wemath(folder: Path) -> Path:
    rows = []
    n = 0
    for group, keys in (
        ("2steps_1", ["2steps_1", "2steps_2", "2steps_multi"]),
        ("3steps_1", ["3steps_1", "3steps_2", "3steps_3", "3steps_multi"]),
    ):
        for key in keys:
            n += 1
            rows.append(
                {
                    "ID": group,
                    "split": "testmini",
                    "knowledge concept": "Angles",
                    "question": f"Question {key}",
                    "option": "A. 30;B. 40;C. 50;D. 60;E. No correct answer",
                    "answer": "B",
                    "image_path": image("red"),
                    "key": key,
                    "question number": n,
                    "knowledge concept description": "...",
                }
            )
    return to_parquet(rows, folder / "wemath.parquet", ("image_path",))


def mmmu(folder: Path) -> Path:
    rows = [
        {
            "id": "validation_Math_1",
            "question": "<image 1> Which graph matches <image 2>?",
            "options": "['<image 3>', 'the first', 'the second']",
            "explanation": "",
            "image_1": image("red"),
            "image_2": image("blue"),
            "image_3": image("green"),
            "image_4": None,
            "image_5": None,
            "image_6": None,
            "image_7": None,
            "img_type": "['Plots and Charts']",
            "answer": "B",
            "topic_difficulty": "Easy",
            "question_type": "multiple-choice",
            "subfield": "Calculus",
        },
        {
            "id": "validation_Art_2",
            "question": "How many colours in <image 1>?",
            "options": "[]",
            "explanation": "",
            "image_1": image("red"),
            "image_2": None,
            "image_3": None,
            "image_4": None,
            "image_5": None,
            "image_6": None,
            "image_7": None,
            "img_type": "['Paintings']",
            "answer": "3",
            "topic_difficulty": "Medium",
            "question_type": "open",
            "subfield": "Painting",
        },
    ]
    return to_parquet(rows, folder / "mmmu.parquet", tuple(f"image_{i}" for i in range(1, 8)))


def mmmu_pro(folder: Path) -> tuple[Path, Path]:
    standard = [
        {
            "id": "test_History_1",
            "question": "What does <image 1> show?",
            "options": str([f"option {i}" for i in range(10)]),
            "explanation": "",
            "image_1": image("red"),
            "image_2": None,
            "image_3": None,
            "image_4": None,
            "image_5": None,
            "image_6": None,
            "image_7": None,
            "img_type": "['Diagrams']",
            "answer": "C",
            "topic_difficulty": "Medium",
            "subject": "History",
        },
    ]
    vision = [
        {
            "id": "test_History_1",
            "image": image("blue"),
            "options": str([f"option {i}" for i in range(10)]),
            "answer": "C",
            "subject": "History",
        }
    ]
    a = to_parquet(standard, folder / "standard.parquet", tuple(f"image_{i}" for i in range(1, 8)))
    b = to_parquet(vision, folder / "vision.parquet", ("image",))
    return a, b


def mmstar(folder: Path) -> Path:
    rows = [
        {
            "index": 0,
            "question": "What is in the image?\nOptions: A: a cat, B: a dog, C: a bird, D: a fish",
            "image": image("red"),
            "answer": "B",
            "category": "coarse perception",
            "l2_category": "image scene and topic",
            "meta_info": {"source": "MMBench", "split": "val", "image_path": "x.jpg"},
        },
        {
            "index": 1,
            "question": "How many?\nOptions: A: 1, B: 2, C: 3, D: 4",
            "image": image("blue"),
            "answer": "D",
            "category": "math",
            "l2_category": "numeric commonsense and calculation",
            "meta_info": {"source": "MathVista", "split": "val", "image_path": "y.jpg"},
        },
    ]
    return to_parquet(rows, folder / "mmstar.parquet", ("image",))


def emma(folder: Path) -> Path:
    rows = [
        {
            "pid": "Math_1",
            "question": "Swap which square? <image_1>",
            "options": ["A", "B", "C"],
            "answer": "B",
            "image_1": image("red"),
            "image_2": None,
            "image_3": None,
            "image_4": None,
            "image_5": None,
            "solution": None,
            "subject": "Math",
            "task": "",
            "category": "2D Transformation",
            "source": "MathVision",
            "type": "Multiple Choice",
            "context": "",
        },
        {
            "pid": "chem_1",
            "question": "Compare <image_1> and <image_2>. How many carbons?",
            "options": [],
            "answer": "6",
            "image_1": image("red"),
            "image_2": image("blue"),
            "image_3": None,
            "image_4": None,
            "image_5": None,
            "solution": None,
            "subject": "Chemistry",
            "task": "",
            "category": "Knowledge-based counting",
            "source": "x",
            "type": "Open-ended",
            "context": "Organic molecules.",
        },
    ]
    return to_parquet(rows, folder / "emma.parquet", tuple(f"image_{i}" for i in range(1, 6)))
