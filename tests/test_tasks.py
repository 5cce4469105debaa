"""The synthetic perception tasks: deterministic, disjoint across seeds, answers that follow from the
drawn facts, questions that do not give them away, CoTs that the rewards accept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prcli.records import AnnotatedProblem, Problem
from prcli.rewards import format_reward
from prcli.tasks import COLOURS, KINDS, chance_accuracy, generate, image_digest, write_tasks
from prcli.verify import math_equal

N = 4 * len(KINDS)


@pytest.fixture(scope="module")
def items():
    return generate(N, seed=0)


def test_same_seed_identical_bytes(tmp_path):
    a = write_tasks(tmp_path / "a", 14, seed=3, prefix="train-")
    b = write_tasks(tmp_path / "b", 14, seed=3, prefix="train-")
    assert a.read_bytes() == b.read_bytes()
    for row in map(json.loads, a.read_text().splitlines()):
        image = row["images"][0]
        assert (a.parent / image).read_bytes() == (b.parent / image).read_bytes()


def test_different_seeds_disjoint(items):
    other = generate(N, seed=1)
    assert not {i.key for i in items} & {i.key for i in other}
    assert not {image_digest(i) for i in items} & {image_digest(i) for i in other}
    assert len({i.key for i in items}) == N  # distinct within a set too


def test_answer_recomputed_from_facts(items):
    assert {i.kind for i in items} == set(KINDS)
    for item in items:
        values = json.loads(json.dumps(item.values))  # as read back from the JSONL
        assert KINDS[item.kind].solve(values) == item.answer, item
    # the facts' sentences carry the values the answer is computed from
    for item in items:
        if item.kind.startswith("rect_"):
            w, h = (int(re.search(rf"{s} = (\d+)", " ".join(item.facts)).group(1)) for s in ("AB", "BC"))
            assert item.answer == str(w * h if item.kind == "rect_area" else 2 * (w + h))
        elif item.kind == "triangle_angle":
            a, b = (int(x) for x in re.findall(r"= (\d+)°", " ".join(item.facts)))
            assert item.answer == str(180 - a - b)
        elif item.kind == "count_shapes":
            assert re.search(rf"\b{item.answer}\b", item.facts[0])
        elif item.kind in ("side_colour", "same_colour"):
            left, right = (
                re.fullmatch(rf"the {s} shape is (\w+)", f).group(1)
                for s, f in zip(("left", "right"), item.facts, strict=True)
            )
            if item.kind == "same_colour":
                assert item.answer == ("yes" if left == right else "no")
            else:
                assert item.answer == (left if "left" in item.question else right)
        elif item.kind.endswith("_colour"):
            assert item.facts[0].endswith(item.answer)
        else:
            on = item.facts[0].rsplit(" ", 2)[-1] if "neither" not in item.facts[0] else "neither"
            assert item.answer == ("yes" if item.question.rstrip("?").endswith(on) else "no")


def test_question_leaks_no_answer_nor_values(items):
    for item in items:
        q = item.question
        assert q.startswith("<image>")
        assert not re.search(r"\d", q), q  # no length, angle or count
        assert not re.search(rf"\b{re.escape(item.answer)}\b", q, re.IGNORECASE), q
        if item.kind.endswith("_colour"):
            assert not any(c in q for c in COLOURS), q
        if item.kind == "point_on_segment":  # both segments are named whichever holds P
            assert "AB" in q and "CD" in q


def test_cot_format_and_accuracy(items):
    for item in items:
        assert format_reward(item.cot) == 1.0, item.cot
        for fact in item.facts:
            assert fact in item.cot
        boxed = re.search(r"\\boxed\{(.+?)\}", item.cot).group(1)
        assert math_equal(f"\\boxed{{{boxed}}}", item.answer)
    # a wrong answer of the same type does not verify (word answers are compared as words)
    assert not math_equal("\\boxed{blue}", "red") and not math_equal("\\boxed{no}", "yes")
    assert not math_equal("\\boxed{orange}", "purple") and math_equal("\\boxed{purple}", "purple")


def test_accuracy_reward_on_written_records(tmp_path):
    from prcli.rewards import accuracy_rewards

    path = write_tasks(tmp_path, len(KINDS), seed=5, prefix="test-")
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert accuracy_rewards([r["cot"] for r in rows], [r["answer"] for r in rows]) == [1.0] * len(rows)
    for row in rows:
        Problem.model_validate(row, context={"base_dir": path.parent})
        AnnotatedProblem.model_validate(row, context={"base_dir": path.parent})
        assert (path.parent / row["images"][0]).is_file()


def test_yes_no_kinds_are_drawn_half_and_half():
    """What `chance` assumes for them: a blind "yes" is right half the time."""
    for kind in ("same_colour", "point_on_segment"):
        answers = [i.answer for i in generate(400, seed=9, kinds=[kind])]
        assert 0.42 < answers.count("yes") / len(answers) < 0.58, kind


def test_chance_accuracy():
    assert KINDS["count_shapes"].chance == pytest.approx(1 / 4)
    assert (
        KINDS["largest_colour"].chance == KINDS["leftmost_colour"].chance == pytest.approx(1 / len(COLOURS))
    )
    assert KINDS["point_on_segment"].chance == KINDS["same_colour"].chance == pytest.approx(1 / 2)
    assert KINDS["side_colour"].chance == pytest.approx(1 / len(COLOURS))
    assert KINDS["rect_area"].chance < 0.05 and KINDS["triangle_angle"].chance < 0.05
    assert chance_accuracy(["count_shapes", "point_on_segment"]) == pytest.approx(3 / 8)
    assert chance_accuracy(["count_shapes", "point_on_segment"], n=3) == pytest.approx((2 / 4 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="unknown task kind"):
        chance_accuracy(["nope"])


def test_size_and_kinds_parameters(tmp_path):
    from PIL import Image

    path = write_tasks(tmp_path, 3, seed=0, kinds=["count_shapes"], size=56)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert path.name == "tasks.jsonl" and {r["category"] for r in rows} == {"count_shapes"}
    assert Image.open(path.parent / rows[0]["images"][0]).size == (56, 56)
    for item in generate(len(KINDS), seed=2, size=224):
        assert item.image.size == (224, 224)


def test_pr_tasks_writes_both_splits(tmp_path):
    from typer.testing import CliRunner

    from prcli.cli import app

    args = ["tasks", "--train-size", "12", "--test-size", "6", "--kinds", "side_colour,same_colour", "--json"]
    first = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "a")])
    again = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b")])
    assert first.exit_code == again.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["chance_accuracy"] == pytest.approx(chance_accuracy(["side_colour", "same_colour"], 6))
    train, test = (tmp_path / "a" / "train.jsonl", tmp_path / "a" / "test.jsonl")
    assert train.read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    rows = {
        name: [json.loads(x) for x in p.read_text().splitlines()]
        for name, p in (("train", train), ("test", test))
    }
    assert [len(rows["train"]), len(rows["test"])] == [12, 6]
    digest = {name: {(tmp_path / "a" / r["images"][0]).read_bytes() for r in rs} for name, rs in rows.items()}
    assert not digest["train"] & digest["test"]  # the held-out figures are not training figures

    assert report["teacher"] is None and not (tmp_path / "a" / "train-teacher.jsonl").exists()  # unless asked
    for option in ("--teacher-slip", "--teacher-misread"):
        taught = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "t"), option, "1"])
        assert taught.exit_code == 0, taught.output
        teacher = Path(json.loads(taught.stdout)["teacher"])
        assert teacher == tmp_path / "t" / "train-teacher.jsonl"
        assert (tmp_path / "t" / "train.jsonl").read_bytes() == train.read_bytes()  # the true split unchanged
        taught_rows = [json.loads(x) for x in teacher.read_text().splitlines()]
        assert [(r["id"], r["images"], r["answer"], r["annotations"]) for r in taught_rows] == [
            (r["id"], r["images"], r["answer"], r["annotations"]) for r in rows["train"]
        ]
        changed = [r for r, t in zip(taught_rows, rows["train"], strict=True) if r["cot"] != t["cot"]]
        if option == "--teacher-slip":  # rate 1: every 'different colours' CoT concludes yes
            differ = [t for t in rows["train"] if t["category"] == "same_colour" and t["answer"] == "no"]
            assert len(changed) == len(differ) > 0 and all(
                r["slip"] and r["teacher_answer"] == "yes" for r in changed
            )
        else:  # rate 1: every orange or purple shape is misread, nothing else
            hued = [
                t for t in rows["train"] if {t["values"]["left"], t["values"]["right"]} & {"orange", "purple"}
            ]
            assert len(changed) == len(hued) > 0 and all(r["misread"] and not r["slip"] for r in changed)
    again = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "t")])  # no teacher this time
    assert again.exit_code == 0 and not teacher.exists()  # the last run's teacher file is gone, not stale

    bad = CliRunner().invoke(app, ["tasks", "-o", str(tmp_path / "c"), "--kinds", "hexagons"])
    assert bad.exit_code != 0 and "unknown task kind" in bad.output and not (tmp_path / "c").exists()


def test_a_shared_figure_between_the_splits_is_refused(tmp_path, monkeypatch):
    import prcli.tasks as tasks

    same = tasks.generate(3, seed=0, kinds=["side_colour"])
    monkeypatch.setattr(tasks, "generate", lambda n, seed, kinds=None, size=112: same[:n])
    with pytest.raises(ValueError, match="also training items"):
        tasks.write_splits(tasks.TasksConfig(out=tmp_path / "x", train_size=3, test_size=2))
    assert not (tmp_path / "x").exists()


def test_the_teacher_misreads_only_its_colours_and_answers_from_what_it_read(tmp_path):
    from prcli.tasks import TasksConfig, write_splits
    from prcli.tasks.teacher import MISREADS, write_teacher

    cfg = TasksConfig(out=tmp_path, train_size=300, test_size=2, kinds=["side_colour", "same_colour"])
    train, _, teacher = write_splits(cfg)
    assert teacher is None  # none asked for
    truth = [json.loads(x) for x in train.read_text().splitlines()]
    half = write_teacher(train, 0.5, 0.0, seed=0)
    assert half == tmp_path / "train-teacher.jsonl"
    rows = [json.loads(x) for x in half.read_text().splitlines()]
    assert [(r["id"], r["images"], r["answer"]) for r in rows] == [
        (t["id"], t["images"], t["answer"]) for t in truth
    ]  # same figures, true answers kept
    misreadable = misread = 0
    for t, r in zip(truth, rows, strict=True):
        stated = dict(re.findall(r"the (left|right) shape is (\w+)", r["cot"].split("</think>")[0]))
        for side in ("left", "right"):
            true = t["values"][side]
            if true in MISREADS:
                misreadable += 1
                misread += stated[side] == MISREADS[true]
                assert stated[side] in (true, MISREADS[true])
            else:
                assert stated[side] == true  # red, blue, green are always read right
            assert (side in r["misread"]) == (stated[side] != true)
        assert r["slip"] is False
        read = {**t["values"], **stated}
        assert r["teacher_answer"] == KINDS[t["category"]].solve(read)  # the answer follows what it read
        assert r["teacher_facts"] == [f"the {side} shape is {stated[side]}" for side in ("left", "right")]
        assert r["annotations"] == t["annotations"]  # the reference facts stay the figure's
        assert r["cot"].endswith(f"\\boxed{{{r['teacher_answer']}}}\n</answer>")
        assert format_reward(r["cot"]) == 1.0
    assert misreadable > 100 and misread == round(0.5 * misreadable)  # an exact share, drawn at random
    assert sum(r["teacher_answer"] != r["answer"] for r in rows) > 20  # some answers are wrong

    again = write_teacher(train, 0.5, 0.0, seed=0).read_bytes()
    assert again == half.read_bytes()  # deterministic under seed
    honest = [json.loads(x) for x in write_teacher(train, 0.0, 0.0, seed=0).read_text().splitlines()]
    assert [r["cot"] for r in honest] == [t["cot"] for t in truth]  # rate 0: the generator's CoTs


def test_the_teacher_refuses_kinds_it_cannot_rewrite(tmp_path):
    from pydantic import ValidationError

    from prcli.tasks import TasksConfig

    for rate in ({"teacher_misread": 0.5}, {"teacher_slip": 0.5}):
        with pytest.raises(ValidationError, match="imperfect teacher needs figure kinds"):
            TasksConfig(out=tmp_path, kinds=["side_colour", "count_shapes"], **rate)
        with pytest.raises(ValidationError, match="not rect_area"):
            TasksConfig(out=tmp_path, **rate)  # every kind, by default
        TasksConfig(out=tmp_path, kinds=["side_colour", "same_colour"], **rate)  # accepted
    with pytest.raises(ValidationError, match="slips only on same_colour figures"):
        TasksConfig(out=tmp_path, kinds=["side_colour"], teacher_slip=0.5)  # nothing to slip on
    TasksConfig(out=tmp_path, kinds=["side_colour"], teacher_misread=0.5)

    from prcli.tasks import write_splits
    from prcli.tasks.teacher import teacher_path, write_teacher

    train, _, _ = write_splits(TasksConfig(out=tmp_path / "all", train_size=12, test_size=2))  # every kind
    with pytest.raises(ValueError, match=r"train.jsonl: record 'train-0000': the teacher rewrites only"):
        write_teacher(train, 0.0, 0.5, seed=0)
    assert not teacher_path(train).exists()  # nothing partial


def test_the_teacher_slips_only_on_different_colours_and_keeps_its_facts_right(tmp_path):
    from prcli.tasks import TasksConfig, write_splits
    from prcli.tasks.teacher import write_teacher

    cfg = TasksConfig(out=tmp_path, train_size=300, test_size=2, kinds=["side_colour", "same_colour"])
    train, _, teacher = write_splits(cfg)
    assert teacher is None  # none asked for
    truth = [json.loads(x) for x in train.read_text().splitlines()]
    rows = [json.loads(x) for x in write_teacher(train, 0.0, 0.6, seed=1).read_text().splitlines()]
    pairs = list(zip(truth, rows, strict=True))
    differ = [(t, r) for t, r in pairs if t["values"]["ask"] == "same" and t["answer"] == "no"]
    for t, r in pairs:
        assert r["annotations"] == t["annotations"] and not r["misread"]  # the facts stay right
        if (t, r) not in differ:
            assert not r["slip"] and r["cot"] == t["cot"]
    assert len(differ) > 50 and sum(r["slip"] for _, r in differ) == round(0.6 * len(differ))  # exact
    for _, r in differ:
        assert r["teacher_answer"] == ("yes" if r["slip"] else "no")
        assert (r["teacher_answer"] != r["answer"]) == r["slip"]
        assert "The colours are different, so the answer is " + r["teacher_answer"] in r["cot"]
        assert r["cot"].endswith(f"\\boxed{{{r['teacher_answer']}}}\n</answer>")
