"""Each benchmark module on a local fixture with its real field layout; generation backends end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import eval_fixtures as fx
from prcli.cli import app
from prcli.errors import StageError
from prcli.eval import BENCHMARKS, Benchmark, get_benchmark
from prcli.eval.config import EvalConfig
from prcli.eval.extract import choice_letter, extract_answer, last_boxed, letter_like, mentioned_option
from prcli.testing import FaultServer

runner = CliRunner()
R1 = "You FIRST think about the reasoning process"


def images_in(parts: list[dict]) -> list[int]:
    return [p["index"] for p in parts if p["type"] == "image"]


def text_of(parts: list[dict]) -> str:
    return "".join(p.get("text", "<img>") for p in parts)


def score(name: str, sample, response: str) -> dict:
    bench = get_benchmark(name)
    return bench.score(bench.score_input(sample), response)


# the paper's eight benchmarks, in its Table 1 order
PAPER_EIGHT = ["mathvista", "mathverse", "mathvision", "wemath", "mmmu", "mmmu_pro", "mmstar", "emma"]


def test_registry_has_every_benchmark() -> None:
    assert set(BENCHMARKS) == {*PAPER_EIGHT, "local"}
    assert get_benchmark("MMMU-Pro").name == "mmmu_pro"
    with pytest.raises(StageError, match="unknown benchmark"):
        get_benchmark("mmbench")
    # the --bench help lists what is registered
    help_text = EvalConfig.model_fields["bench"].description or ""
    assert all(f"{name} ({cls.title})" in help_text for name, cls in BENCHMARKS.items())


def test_a_benchmark_registers_where_it_is_defined() -> None:
    @Benchmark.register
    class Toy(Benchmark):
        name = "toy"
        title = "Toy"

    try:
        assert get_benchmark("toy").title == "Toy"
        with pytest.raises(ValueError, match="two benchmarks are named 'toy'"):
            Benchmark.register(type("Other", (Benchmark,), {"name": "toy", "title": "Other"}))
    finally:
        del BENCHMARKS["toy"]


def test_generic_extraction() -> None:
    assert extract_answer("<think>x</think><answer>\nThe answer is \\boxed{12}\n</answer>").text == "12"
    assert extract_answer("so \\boxed{\\frac{1}{2}} and later \\boxed{\\text{B}}").text == "B"
    assert extract_answer("Therefore, the answer is 42.").text == "42"
    assert extract_answer("Answer: C").method == "phrase"
    assert extract_answer("no marker here").method == "raw"
    assert last_boxed("\\boxed{a{b}c}") == "a{b}c" and last_boxed("\\boxed{unbalanced") is None
    assert choice_letter("(B) 12", ["10", "12"]) == "B" and choice_letter("12", ["10", "12"]) == "B"
    assert choice_letter("Z", ["a", "b"]) is None


@pytest.mark.parametrize(
    ("response", "text"),
    [
        ("Adding the two angles gives 93. The correct option is B.", "B"),
        ("Comparing the bars, the answer is (B)", "(B)"),
        ("Comparing the bars...\nChoice: C", "C"),
        ("45 + 48 = 93, so the answer is\n\nB", "B"),
        ("Adding the two angles gives 93.\n\nB", "B"),  # a bare trailing letter
        ("Adding the two angles gives 93.\n\n**(B)**", "B"),
        ("So the correct option is therefore **(A)**.", "(A)"),
        ("**Answer**: D", "D"),
        ("所以，答案是 A (5)。", "A (5)"),
        ("The best option is C, Opposite.", "C, Opposite"),
    ],
)
def test_extraction_finds_common_commitments(response: str, text: str) -> None:
    ex = extract_answer(response)
    assert ex.text == text and ex.decided


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("(B) 93", "B"),
        ("B) a dog", "B"),
        ("B: a dog", "B"),
        ("**B.**", "B"),
        ("option B is right", "B"),
        ("A (5)", "A"),
        ("C, Opposite", "C"),
        ("A triangle has three sides", None),  # prose, not option A
        ("I think it is the first one", None),  # prose, not option I
        ("I, for one, cannot tell", None),
        ("Because it is a dog", None),  # the official first-character rule would read B
        ("Based on the image, it is red", None),
        ("A, B and C are all wrong", None),
        ("K", None),  # not one of the options
    ],
)
def test_only_letter_like_text_names_an_option_letter(text: str, letter: str | None) -> None:
    assert letter_like(text, "ABCDEFGHIJ") == letter


def test_prose_that_opens_with_a_capital_is_not_a_committed_letter() -> None:
    """No new false positives: a last line or answer slot of prose is not an option letter."""
    assert extract_answer("A triangle has three sides.\nI think so").method == "raw"
    assert extract_answer("The answer is a triangle").text == "a triangle"
    assert choice_letter("a triangle", ["a square", "a triangle"]) == "B"  # the option's text
    assert choice_letter("A triangle", ["1", "2", "3"]) is None
    assert choice_letter("I think", None, letters="ABCDEFGHIJ") is None
    assert choice_letter("A triangle", ["A", "B", "C"]) is None  # options that are letters: only exactly
    assert mentioned_option("a triangle at B", ["A", "B", "C"]) is None
    assert choice_letter("9.5 cm", ["9", "9.5"]) == "B" and choice_letter("12", ["1", "2"]) is None
    assert mentioned_option("The wettest month is May.", ["August", "April", "May"]) == "C"
    assert mentioned_option("It is May, not April.", ["August", "April", "May"]) is None  # two named
    assert mentioned_option("the white one", ["one", "white one"]) == "B"  # "one" is inside "white one"


def test_a_rejected_or_prose_letter_is_no_answer() -> None:
    """Review 15: "option A is wrong" rejects A; "A (partially hidden) ..." and an unmarked "A, as
    shown, ..." are the article or a label in prose; a LaTeX-wrapped letter is still a letter."""
    assert letter_like("Option A is wrong, so B", "ABCD") is None
    assert (
        letter_like("(A) is incorrect", "ABCD") is None and letter_like("option B cannot be", "ABCD") is None
    )
    assert letter_like("A (partially hidden) cat sits on the mat", "ABCD") is None
    assert letter_like("A (5).", "ABCD") == "A" and letter_like("B. a dog", "ABCD") == "B"
    assert letter_like("A, as shown, is larger than B.", "ABCD", marked=False) is None
    assert letter_like("C, Opposite", "ABCD") == "C"  # a marked answer may list the option's text
    assert extract_answer("Answer: \\(B\\)").text == "B"
    assert extract_answer("Option A is incorrect. Option B is correct.").text == "B"


def test_mmstar_prose_and_rejections_name_no_option(tmp_path: Path) -> None:
    s0, _ = get_benchmark("mmstar").load(fx.mmstar(tmp_path))  # A: a cat, B: a dog
    for response in (
        "Answer: Option A is wrong, so B",
        "A (partially hidden) animal sits on the mat.",
        "A, as shown, is larger than B.",
    ):
        assert score("mmstar", s0, response)["prediction"] is None, response
    assert score("mmstar", s0, "Answer: \\(B\\)")["correct"]


def test_mathvista_refusals_and_contradictions_are_undecided() -> None:
    """Review 15, on real outputs: a refusal that mentions an option in its working commits to none;
    an explicit letter wins over a number mentioned before it; a letter whose stated value is not
    that option's ("(D) 140°" with D "20°") is undecided (the official normaliser would take D)."""
    task = {"question_type": "multi_choice", "answer_type": "text", "precision": None}
    angles = {**task, "choices": ["110°", "55°", "70°", "35°"], "answer": "35°"}
    refusal = "So ∠BOE = 110°, ∠AOE = 55°. \n\nHowever, this option is not available in the choices."
    assert get_benchmark("mathvista").score(angles, refusal)["prediction"] is None
    assert mentioned_option("The options provided do not include 4. It is 2.", ["2", "3"]) is None
    lengths = {**task, "choices": ["3", "5", "6", "7", "It cannot be determined"], "answer": "5"}
    pid234 = "AB cannot be found. The image only provides AC, which is 6. Therefore, option (E) is the correct answer."
    assert get_benchmark("mathvista").score(lengths, pid234)["prediction"] == "It cannot be determined"
    pid119 = {**task, "choices": ["45°", "40°", "25°", "20°"], "answer": "20°"}
    result = get_benchmark("mathvista").score(
        pid119, "∠P = 140°\n\nTherefore, the correct answer is (D) 140°."
    )
    assert (result["prediction"], result["correct"]) == (None, False)
    assert get_benchmark("mathvista").score(pid119, "The correct answer is (D) 20°.")["correct"]


def test_mathvista_fixture(tmp_path: Path) -> None:
    bench = get_benchmark("mathvista")
    s1, s2, s3 = bench.load(fx.mathvista(tmp_path))
    assert (s1.id, s1.answer, s1.fields["skills"]) == (
        "1",
        "5",
        ["geometry reasoning", "algebraic reasoning"],
    )
    assert s2.choices == ["A", "B", "C"] and s1.images[0].size == (56, 56)
    official = bench.prompt_parts(s1, "official")
    assert images_in(official) == [0] and text_of(official).startswith(
        "<img>Hint: Please answer the question requiring an integer"
    )
    assert "(Unit: cm)" in text_of(official)
    assert text_of(bench.prompt_parts(s2, "r1")).endswith("tags.") and R1 in text_of(
        bench.prompt_parts(s2, "r1")
    )
    assert "put your final answer within \\boxed{}" in text_of(bench.prompt_parts(s2, "cot"))
    assert score("mathvista", s1, "<answer>\\boxed{5}</answer>")["correct"]
    assert (
        score("mathvista", s2, "The answer is (B).")["prediction"] == "B"
    )  # a letter maps to the choice text
    assert score("mathvista", s3, "\\boxed{2.46}")["prediction"] == "2.5"  # rounded to the precision
    assert score("mathvista", s3, "\\boxed{2.44}")["correct"] is False


def test_mathverse_fixture(tmp_path: Path) -> None:
    bench = get_benchmark("mathverse")
    td, vo, tl = bench.load(fx.mathverse(tmp_path))
    assert td.choices == ["30°", "40°"] and vo.question == "" and vo.choices == ["30°", "40°"]
    assert text_of(bench.prompt_parts(td, "official")).startswith("<img>Please first conduct reasoning")
    assert score("mathverse", td, "... so the answer is \\boxed{B}")["correct"]
    assert score("mathverse", tl, "x = \\boxed{\\sqrt{12}}")["correct"]  # math-verify equivalence
    summary = bench.aggregate(
        [
            {"correct": True, "problem_version": "Text Dominant"},
            {"correct": False, "problem_version": "Vision Only"},
            {"correct": True, "problem_version": "Text Only"},
        ]
    )
    assert summary["n"] == 2 and summary["accuracy"] == 50.0 and summary["text_only"]["total"] == 1


def test_mathvision_fixture(tmp_path: Path) -> None:
    bench = get_benchmark("mathvision")
    s4, s5, s6 = bench.load(fx.mathvision(tmp_path))
    official = text_of(bench.prompt_parts(s4, "official"))
    assert official.startswith('<img>Please solve the problem and put your answer in one "\\boxed{}".')
    assert "(A) A" not in official  # options drawn in the image are left out
    assert "(A) 1\n(B) 2" in text_of(bench.prompt_parts(s6, "official"))
    assert "<image1>" in official  # one composite image: the token stays text
    assert "\nChoices:\nA. 1\nB. 2" in text_of(bench.prompt_parts(s6, "r1"))
    assert score("mathvision", s4, "The answer is \\boxed{C}")["correct"]
    assert score("mathvision", s5, "so the side is \\boxed{1.5}")["correct"]  # latex2sympy values to 2 dp
    assert score("mathvision", s5, "\\boxed{\\frac{6}{4}}")["correct"]
    assert score("mathvision", s6, "\\boxed{4}")["correct"]  # the option text of D
    assert not score("mathvision", s6, "\\boxed{E}")["correct"]


def test_wemath_fixture(tmp_path: Path) -> None:
    bench = get_benchmark("wemath")
    samples = list(bench.load(fx.wemath(tmp_path)))
    assert [s.id for s in samples] == [str(i) for i in range(1, 8)]
    assert samples[0].choices == ["30", "40", "50", "60", "No correct answer"]
    prompt = text_of(bench.prompt_parts(samples[0], "official"))
    assert "Option: A. 30;B. 40" in prompt and prompt.endswith("<Answer>: <<your option>>")
    assert text_of(bench.prompt_parts(samples[0], "r1")).startswith(
        "<img>Question 2steps_1\nChoices:\nA. 30;B. 40"
    )
    assert score("wemath", samples[0], "<Thought process>: ... <Answer>: <B>")["correct"]
    assert score("wemath", samples[0], "<answer>\\boxed{B}</answer>")["correct"]
    assert not score("wemath", samples[0], "the answer is b")[
        "correct"
    ]  # the official rule is case-sensitive


def test_mmmu_fixture_interleaves_images_by_first_mention(tmp_path: Path) -> None:
    bench = get_benchmark("mmmu")
    mc, op = bench.load(fx.mmmu(tmp_path))
    parts = bench.prompt_parts(mc, "official")
    assert images_in(parts) == [0, 1, 2]
    assert text_of(parts) == (
        "<img> Which graph matches <img>?\n(A) <img>\n(B) the first\n(C) the second\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert images_in(bench.prompt_parts(op, "official")) == [0]
    assert mc.fields["discipline"] == "Science" and mc.fields["img_type"] == ["Plots and Charts"]
    assert score("mmmu", mc, "The answer is (B).")["prediction"] == "B"
    assert (
        score("mmmu", mc, "I think it is the first one, definitely the first")["prediction"] == "B"
    )  # option text
    assert score("mmmu", op, "There are 3 colours.")["correct"]
    assert score("mmmu", mc, "so \\boxed{the first}")["prediction"] == "B"  # the option text, boxed
    assert score("mmmu", mc, "<answer>\\boxed{B. the first}</answer>")["prediction"] == "B"
    guess = score("mmmu", mc, "no idea")
    assert guess["method"] == "random" and guess == score("mmmu", mc, "no idea")  # seeded by the item id


def test_mmmu_pro_fixture_and_mean_of_settings(tmp_path: Path) -> None:
    bench = get_benchmark("mmmu_pro")
    standard_path, vision_path = fx.mmmu_pro(tmp_path)
    (std,) = bench.load(standard_path)
    (vis,) = bench.load(vision_path)
    assert std.id == "test_History_1:standard10" and vis.id == "test_History_1:vision"
    assert text_of(bench.prompt_parts(std, "official")).endswith("Think step by step before answering.")
    assert "J. option 9" in text_of(bench.prompt_parts(std, "official"))
    assert text_of(bench.prompt_parts(vis, "official")).startswith(
        "<img>Write out the multiple-choice question"
    )
    assert score("mmmu_pro", std, "Reasoning...\nAnswer: C")["correct"]
    # r1/cot styles: no "Answer:" line; what the answer block commits to counts, not stray capitals
    r1 = "<think>\nIt could be A or I... So it must be C. I am sure.\n</think>\n<answer>\n\\boxed{C}\n</answer>"
    assert score("mmmu_pro", std, r1)["prediction"] == "C"
    summary = bench.aggregate(
        [
            {"correct": True, "setting": "standard10"},
            {"correct": True, "setting": "standard10"},
            {"correct": False, "setting": "standard10"},
            {"correct": True, "setting": "vision"},
        ]
    )
    assert summary["settings"] == {"standard10": 66.67, "vision": 100.0}
    assert summary["accuracy"] == round((66.67 + 100.0) / 2, 2) and summary["pooled_accuracy"] == 75.0
    assert summary["headline"] == "mean_of_settings"
    one = bench.aggregate(
        [{"correct": True, "setting": "standard10"}, {"correct": False, "setting": "standard10"}]
    )
    assert (one["accuracy"], one["headline"]) == (50.0, "standard10")  # never called the two-setting mean


def test_mmmu_pro_limit_takes_both_settings(tmp_path: Path) -> None:
    """`--limit N` keeps the first N items: they must come from both settings, not N standard ones."""
    options = str([f"o{i}" for i in range(10)])
    rows = [
        {"id": f"q{i}", "bench": "mmmu_pro", "subset": setting, "images": [], "image_tokens": None,
         "raw": {"id": f"q{i}", "question": "Which?", "options": options, "answer": "A", "subject": "Art"}}
        for setting in ("standard10", "vision") for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "mmmu_pro.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": f"q{i}:{s}", "response": "Answer: A"}) + "\n"
                                   for s in ("standard10", "vision") for i in range(3)))  # fmt: skip
    ids = [s.id for s in get_benchmark("mmmu_pro").load(path, decode_images=False)]
    assert ids[:4] == ["q0:standard10", "q0:vision", "q1:standard10", "q1:vision"] and len(ids) == 6
    args = ["eval", "-b", "mmmu_pro", "--data", str(path), "--predictions", str(predictions), "--json"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out"), "--limit", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["settings"] == {"standard10": 100.0, "vision": 100.0}
    assert summary["headline"] == "mean_of_settings" and summary["n"] == 2


def test_mmstar_fixture(tmp_path: Path) -> None:
    bench = get_benchmark("mmstar")
    s0, s1 = bench.load(fx.mmstar(tmp_path))
    assert s0.choices == ["a cat", "a dog", "a bird", "a fish"]
    assert text_of(bench.prompt_parts(s0, "official")) == (
        "<img>What is in the image?\nA. a cat\nB. a dog\nC. a bird\nD. a fish\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert score("mmstar", s0, "B")["correct"] and score("mmstar", s0, "(B) a dog")["correct"]
    assert score("mmstar", s1, "Let me count... the answer is \\boxed{D}")["correct"]
    assert not score("mmstar", s1, "A lot of things")["correct"]


@pytest.mark.parametrize(
    ("response", "prediction", "method"),
    [
        ("B", "B", "last_line"),
        ("b", "B", "official_rule"),  # the official rule ignores case
        ("(B) a dog", "B", "official_rule"),
        ("B. a dog", "B", "official_rule"),
        ("B: a dog", "B", "official_rule"),
        ("B) a dog", "B", "official_rule"),
        ("option B", "B", "official_rule"),
        ("<answer>B</answer>", "B", "answer_tag"),
        ("The correct option is B.", "B", "phrase"),
        ("<answer>a dog</answer>", "B", "answer_tag"),  # the option's own text
        ("Based on the image, it is a dog.", "B", "option_text"),  # prose naming one option
        ("I see fur and a tail.\n\nB", "B", "last_line"),
        # the official first-character rule would count each of these as B
        ("<answer>Because it is a cat</answer>", "A", "answer_tag"),
        ("<answer>Because of the lighting</answer>", None, "unmatched"),
        ("Based on the image, there is an animal.", None, "raw"),
        ("Because of the lighting, I cannot tell.", None, "raw"),
    ],
)
def test_mmstar_reads_the_first_letter_only_of_letter_like_answers(
    tmp_path: Path, response: str, prediction: str | None, method: str
) -> None:
    s0, _ = get_benchmark("mmstar").load(fx.mmstar(tmp_path))  # answer B: "a dog"
    result = score("mmstar", s0, response)
    assert (result["prediction"], result["method"]) == (prediction, method)
    assert result["correct"] is (prediction == "B")


def test_emma_fixture(tmp_path: Path) -> None:
    bench = get_benchmark("emma")
    m, c = bench.load(fx.emma(tmp_path))
    parts = bench.prompt_parts(c, "official")
    assert images_in(parts) == [0, 1] and text_of(parts).startswith(
        "Organic molecules.\nCompare <img> and <img>."
    )
    assert text_of(bench.prompt_parts(m, "official")).endswith(
        'put the letter in one "\\boxed{}". Please solve the problem step by step.'
    )
    # configs/gpt.yaml: a blank line between the options and the instruction
    assert "\nC: C\n\nAnswer with the option's letter" in text_of(bench.prompt_parts(m, "official"))
    assert text_of(bench.prompt_parts(c, "official")).endswith(
        'How many carbons?\nAnswer the question using a single word or phrase and put the answer in one "\\boxed{}". '
        "Please solve the problem step by step."
    )
    assert score("emma", m, "Final Answer: The final answer is $\\boxed{B}$")["correct"]
    assert score("emma", c, "\\boxed{6}")["correct"] and not score("emma", c, "\\boxed{7}")["correct"]


def test_official_decoding_is_offered_where_the_runner_samples(tmp_path: Path) -> None:
    """EMMA's runner samples open models at temperature 0.7: that is its `official` decoding, keyed
    like `EvalConfig.decoding`; greedy stays the default, and benchmarks run greedily offer nothing."""
    from prcli.eval.config import EvalConfig

    emma = get_benchmark("emma")
    assert emma.official_decoding == {"temperature": 0.7, "max_new_tokens": 4096}
    decoding = EvalConfig(bench="emma", model="m", out=tmp_path).decoding
    assert decoding["temperature"] == 0 and set(emma.official_decoding) <= set(decoding)
    assert all(get_benchmark(name).official_decoding == {} for name in BENCHMARKS if name != "emma")


def test_normalised_jsonl_with_image_files(tmp_path: Path) -> None:
    """The normalised record of benchmarks.md 10.2: the original record in `raw`, images as files."""
    from conftest import make_image

    make_image(tmp_path / "images" / "mmstar" / "0.png", color="red")
    record = {
        "id": "mmstar:0",
        "bench": "mmstar",
        "split": "val",
        "native_id": "0",
        "images": ["images/mmstar/0.png"],
        "raw": {
            "index": 0,
            "question": "What?\nOptions: A: x, B: y, C: z, D: w",
            "answer": "C",
            "category": "math",
            "l2_category": "geometry",
            "meta_info": {"source": "s"},
        },
    }
    path = tmp_path / "mmstar.jsonl"
    path.write_text(json.dumps(record) + "\n")
    bench = get_benchmark("mmstar")
    (sample,) = bench.load(path)
    assert sample.id == "0" and sample.choices == ["x", "y", "z", "w"] and sample.answer == "C"
    assert sample.images == ["images/mmstar/0.png"]
    from prcli.eval.base import open_image

    assert open_image(sample.images[0], sample.base_dir).size == (64, 64)


# ----------------------------------------------------------------------------- end to end


def served(url: str) -> list[str]:
    """The options of a model behind an OpenAI-compatible server at `url`."""
    return ["--backend", "openai", "--base-url", url, "-m", "served-vlm"]


def eval_args(bench: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "-b", bench, "--data", str(data), "-o", str(out), *extra, "--json"]


@pytest.mark.slow
def test_hf_backend_with_the_tiny_model_resume_and_limit(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = fx.mathvista(tmp_path)
    out = tmp_path / "out"
    gen = ["-m", str(tiny_model_dir), "--max-new-tokens", "8", "--batch-size", "2", "--device", "cpu"]
    result = runner.invoke(app, eval_args("mathvista", data, out, *gen, "--limit", "2"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 2
    result = runner.invoke(app, eval_args("mathvista", data, out, *gen))
    summary = json.loads(result.stdout)
    assert summary["n"] == 3 and summary["items_in_benchmark"] == 3
    assert summary["decoding"] == {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    assert summary["model"] == str(tiny_model_dir) and summary["prompt_style"] == "official"
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == ["1", "2", "3"]
    assert all(isinstance(i["response"], str) and isinstance(i["correct"], bool) for i in items)
    # greedy decoding: a fresh run gives the same responses
    again = tmp_path / "again"
    assert runner.invoke(app, eval_args("mathvista", data, again, *gen)).exit_code == 0
    assert [json.loads(x)["response"] for x in (again / "items.jsonl").read_text().splitlines()] == [
        i["response"] for i in items
    ]
    # other decoding into the same folder redoes every item: none of the old responses is reused
    gen16 = [*gen[:2], "--max-new-tokens", "16", *gen[4:]]
    result = runner.invoke(app, eval_args("mathvista", data, out, *gen16))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["reused"], summary["redone"]) == (0, 3) and summary["decoding"]["max_new_tokens"] == 16


def fake_vlm(request: dict) -> str:
    content = request["messages"][0]["content"]
    n_images = sum(1 for p in content if p["type"] == "image_url")
    text = "".join(p.get("text", "") for p in content if p["type"] == "text")
    return f"I see {n_images} image(s). " + (
        "The answer is (B)." if "Which graph" in text else "There are 3 colours."
    )


def test_openai_backend_sends_images_in_order(tmp_path: Path) -> None:
    data = fx.mmmu(tmp_path)
    out = tmp_path / "out"
    with FaultServer(reply=fake_vlm) as srv:
        result = runner.invoke(
            app,
            eval_args(
                "mmmu",
                data,
                out,
                *served(srv.base_url),
                "--max-new-tokens",
                "64",
            ),
        )
        assert result.exit_code == 0, result.output
        first = next(r for r in srv.requests if "Which graph" in json.dumps(r))
        assert first["model"] == "served-vlm" and first["max_tokens"] == 64 and first["temperature"] == 0.0
        kinds = [p["type"] for p in first["messages"][0]["content"]]
        assert kinds == ["image_url", "text", "image_url", "text", "image_url", "text"]
        assert all(
            p["image_url"]["url"].startswith("data:image/png;base64,")
            for p in first["messages"][0]["content"]
            if p["type"] == "image_url"
        )
    summary = json.loads(result.stdout)
    assert summary["accuracy"] == 100.0 and summary["backend"] == "openai"


def test_failed_generations_are_retried_by_the_next_run(tmp_path: Path) -> None:
    data = fx.mmstar(tmp_path)
    out = tmp_path / "out"
    with FaultServer(reply=lambda r: "B", script=["500", "500"]) as srv:
        args = eval_args(
            "mmstar",
            data,
            out,
            "--backend",
            "openai",
            "--base-url",
            srv.base_url,
            "-m",
            "m",
            "--max-retries",
            "1",
            "--concurrency",
            "1",
        )
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "1 item(s) failed" in result.output
        assert [json.loads(x)["id"] for x in (out / "failed.jsonl").read_text().splitlines()] == ["0"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert [json.loads(x)["id"] for x in (out / "items.jsonl").read_text().splitlines()] == ["0", "1"]
        assert not (out / "failed.jsonl").exists()


def test_predictions_problems_are_clear_errors(tmp_path: Path) -> None:
    data = fx.mmstar(tmp_path)
    bad = tmp_path / "preds.jsonl"
    bad.write_text('{"id": "0", "response": "B"}\n{"id": "1"}\n')
    result = runner.invoke(app, eval_args("mmstar", data, tmp_path / "o", "--predictions", str(bad)))
    assert result.exit_code == 1 and f"{bad}:2: response: required field is missing" in result.output
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"id": "zzz", "response": "B"}\n')
    result = runner.invoke(app, eval_args("mmstar", data, tmp_path / "o2", "--predictions", str(unknown)))
    assert result.exit_code == 1 and "no prediction id matches a mmstar item id" in result.output
    result = runner.invoke(app, ["eval", "-b", "mmstar", "-o", str(tmp_path / "o3")])
    assert result.exit_code == 1 and "give --model" in result.output


def test_hub_loading_fails_clearly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    result = runner.invoke(
        app, ["eval", "-b", "mmstar", "-o", str(tmp_path / "o"), "--predictions", str(tmp_path / "p.jsonl")]
    )
    assert result.exit_code == 1


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize(("preset", "temperature"), [("default", 0.0), ("official", 0.7)])
def test_official_decoding_is_the_benchmarks_own(tmp_path: Path, preset: str, temperature: float) -> None:
    """EMMA's runner samples open models at temperature 0.7: offered, recorded, greedy by default."""
    out = tmp_path / "out"
    with FaultServer(reply=lambda r: "\\boxed{A}") as srv:
        args = ["--backend", "openai", "--base-url", srv.base_url, "-m", "vlm", "--decoding-preset", preset]
        result = runner.invoke(app, eval_args("emma", fx.emma(tmp_path), out, *args))
        assert result.exit_code == 0, result.output
        assert {r["temperature"] for r in srv.requests} == {temperature}
    assert json.loads(result.stdout)["decoding"]["temperature"] == temperature


def test_openai_backend_against_transformers_serve(tiny_server: dict, tmp_path: Path) -> None:
    data = fx.emma(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        eval_args(
            "emma",
            data,
            out,
            "--backend",
            "openai",
            "--base-url",
            tiny_server["base_url"],
            "-m",
            tiny_server["model"],
            "--max-new-tokens",
            "8",
            "--timeout",
            "120",
        ),
    )
    assert result.exit_code == 0, result.output
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == ["Math_1", "chem_1"] and all(
        isinstance(i["response"], str) for i in items
    )


@pytest.mark.slow
def test_a_trained_checkpoint_is_evaluated(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`pr train` -> `pr eval`: the saved policy is a model `pr eval` loads and runs."""
    from conftest import make_image

    rows = []
    for i in range(4):
        make_image(tmp_path / f"{i}.png", color=(40 * i, 80, 120), size=(56, 56))
        rows.append(
            {
                "id": f"q{i}",
                "question": "<image>Find x.",
                "images": [f"{i}.png"],
                "answer": str(i),
                "annotations": ["x is given"],
                "category": "toy",
            }
        )
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    train = [
        "train",
        "-m",
        str(tiny_model_dir),
        "--data",
        str(data),
        "-o",
        str(run),
        "--prompts-per-step",
        "2",
        "--num-generations",
        "2",
        "--max-completion-length",
        "8",
        "--max-steps",
        "1",
        "--min-pixels",
        "3136",
        "--max-pixels",
        "3136",
    ]
    assert runner.invoke(app, train).exit_code == 0
    result = runner.invoke(
        app,
        eval_args(
            "local",
            data,
            tmp_path / "eval",
            "-m",
            str(run),
            "--max-new-tokens",
            "6",
            "--prompt-style",
            "r1",
            "--device",
            "cpu",
        ),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 4 and summary["breakdown"]["category"]["toy"]["total"] == 4


MATHVISTA_MC = {
    "answer": "93",
    "choices": ["97", "93", "87", "83"],
    "question_type": "multi_choice",
    "answer_type": "text",
    "precision": None,
}


@pytest.mark.parametrize(
    "response",
    [
        "The two angles add up: 45 + 48 = 93, which is not 97. The correct option is B.",
        "The two angles add up: 45 + 48 = 93, which is not 97. So the answer is (B) 93.",
        "The two angles add up: 45 + 48 = 93, which is not 97.\nChoice: B",
        "The two angles add up: 45 + 48 = 93, which is not 97, so the answer is\n\nB",
        "The two angles add up: 45 + 48 = 93, which is not 97.\n\nB",
        "The two angles add up to 93 degrees in total.",  # prose naming exactly one choice
    ],
)
def test_mathvista_reads_the_committed_choice_not_the_nearest_to_the_prose(response: str) -> None:
    from prcli.eval.mathvista import MathVista

    result = MathVista.score(MATHVISTA_MC, response)
    assert result["prediction"] == "93" and result["correct"]


def test_mathvista_prose_without_an_answer_is_undecided_not_a_guess() -> None:
    from prcli.eval.mathvista import MathVista

    result = MathVista.score(MATHVISTA_MC, "The figure does not show enough to decide; it could be 87 or 97.")
    assert (result["prediction"], result["method"], result["correct"]) == (None, "raw", False)
    # an LLM's extraction (the official pipeline) goes through the official normaliser as it is
    assert MathVista.score_extracted(MATHVISTA_MC, "N/A")["prediction"] in MATHVISTA_MC["choices"]


def test_mathvista_reads_numbers_written_with_latex_and_units(tmp_path: Path) -> None:
    bench = get_benchmark("mathvista")
    s1, _, s3 = bench.load(fx.mathvista(tmp_path))
    assert score("mathvista", s1, "<answer>\\boxed{5 \\text{ cm}}</answer>")["prediction"] == "5"
    assert score("mathvista", s1, "so \\boxed{AB = 5}")["correct"]
    assert score("mathvista", s3, "\\boxed{\\frac{5}{2}}")["correct"]  # 2.5 at one decimal place
    assert score("mathvista", s1, "\\boxed{inf}")["prediction"] is None  # not a crash


def test_normalised_mmmu_pro_keeps_the_setting_and_image_numbers(tmp_path: Path) -> None:
    from conftest import make_image

    for name, color in (("a", "red"), ("b", "blue")):
        make_image(tmp_path / f"{name}.png", color=color)
    options = str(["<image 2>", "<image 1>"] + [f"o{i}" for i in range(8)])
    rows = [
        {"id": "mmmu_pro:x:standard10", "bench": "mmmu_pro", "subset": "standard10", "images": ["b.png", "a.png"],
         "image_tokens": ["<image 2>", "<image 1>"],
         "raw": {"id": "x", "question": "Which?", "options": options, "answer": "A", "subject": "Art"}},
        {"id": "mmmu_pro:x:vision", "bench": "mmmu_pro", "subset": "vision", "images": ["a.png"], "image_tokens": None,
         "raw": {"id": "x", "options": options, "answer": "A", "subject": "Art"}},
    ]  # fmt: skip
    path = tmp_path / "mmmu_pro.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = get_benchmark("mmmu_pro")
    std, vis = bench.load(path)
    assert (std.id, vis.id) == ("x:standard10", "x:vision")
    assert std.images == ["a.png", "b.png"]  # slot k holds the file of <image k>
    parts = bench.prompt_parts(std, "official")
    assert images_in(parts) == [1, 0] and "A. <image 2>" not in text_of(parts)
    assert text_of(bench.prompt_parts(vis, "official")).startswith(
        "<img>Write out the multiple-choice question"
    )


def test_a_dotted_output_folder_resumes_by_content_like_any_other(tmp_path: Path) -> None:
    data = fx.mmstar(tmp_path)
    first = tmp_path / "p1.jsonl"
    second = tmp_path / "p2.jsonl"
    first.write_text(json.dumps({"id": "0", "response": "B"}) + "\n")
    second.write_text(json.dumps({"id": "0", "response": "A"}) + "\n")
    out = tmp_path / "evals" / "qwen2.5-vl-7b"
    assert runner.invoke(app, eval_args("mmstar", data, out, "--predictions", str(first))).exit_code == 0
    assert (out / "config.yaml").exists() and not (tmp_path / "evals" / "qwen2.5-vl-7b.config.yaml").exists()
    result = runner.invoke(app, eval_args("mmstar", data, out, "--predictions", str(second)))
    assert result.exit_code == 0, result.output
    items = {json.loads(x)["id"]: json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()}
    assert items["0"]["response"] == "A" and json.loads(result.stdout)["redone"] == 1


def test_vllm_batch_with_one_bad_prompt_fails_only_that_item() -> None:
    """vLLM is not installable here (GPU wheel); a stand-in engine with vLLM's `chat` contract
    (a list of outputs, or an exception for the whole batch) drives the fallback we own."""
    from types import SimpleNamespace

    from prcli.eval.generate import chat_each_on_failure

    class Engine:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def chat(self, conversations: list, params: object, use_tqdm: bool) -> list:
            self.calls.append(len(conversations))
            if any(c == "too long" for c in conversations):
                raise ValueError("prompt is longer than max_model_len")
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f"answer to {c}")]) for c in conversations]

    engine = Engine()
    results = chat_each_on_failure(engine, ["a", "too long", "b"], None)
    assert results[0] == "answer to a" and results[2] == "answer to b"
    assert isinstance(results[1], ValueError) and engine.calls == [3, 1, 1, 1]
    assert chat_each_on_failure(engine, ["c"], None) == ["answer to c"] and engine.calls[-1] == 1


def test_the_image_limit_is_sized_from_the_largest_item(tmp_path: Path) -> None:
    from prcli.eval.run import _count_items

    data = fx.emma(tmp_path)  # the first item has one image, the second two
    cfg = EvalConfig(bench="emma", data=data, out=tmp_path / "o", model="m")
    assert _count_items(cfg, get_benchmark("emma"), None) == (2, 2)


# ----------------------------------------------------------------------------- several benchmarks


def two_benchmarks(tmp_path: Path) -> Path:
    """A --data folder for -b mathvista,mmstar: each benchmark's copy under its name."""
    data = tmp_path / "data"
    fx.mathvista(data), fx.mmstar(data)  # data/mathvista.parquet, data/mmstar.parquet
    return data


@pytest.mark.slow
def test_several_benchmarks_load_the_model_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    data, out = two_benchmarks(tmp_path), tmp_path / "out"
    gen = ["-m", str(tiny_model_dir), "--max-new-tokens", "8", "--batch-size", "2", "--device", "cpu"]
    result = runner.invoke(app, eval_args("mathvista,mmstar", data, out, *gen, "--limit", "2"))
    assert result.exit_code == 0, result.output
    assert "model loaded 1 time(s) for 2 benchmarks" in result.stderr
    summaries = json.loads(result.stdout)
    assert list(summaries) == ["mathvista", "mmstar"]
    assert [s["n"] for s in summaries.values()] == [2, 2]  # --limit per benchmark
    for bench in summaries:
        assert (out / bench / "summary.json").exists() and (out / bench / "config.yaml").exists()
        assert len((out / bench / "items.jsonl").read_text().splitlines()) == 2
    assert f"{data / 'mmstar.parquet'}" in (out / "mmstar" / "config.yaml").read_text()
    # resume per benchmark: the rest of MathVista is new, MMStar is done
    result = runner.invoke(app, eval_args("mathvista,mmstar", data, out, *gen))
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.stdout)
    assert [(s["n"], s["reused"]) for s in summaries.values()] == [(3, 2), (2, 2)]
    assert "mathvista: accuracy" in result.stderr and "protocol rules" in result.stderr


def test_several_benchmarks_fail_alone_and_the_call_exits_1_naming_them(tmp_path: Path) -> None:
    data, out = two_benchmarks(tmp_path), tmp_path / "out"
    # every MathVista request fails; MMStar's still run
    with FaultServer(script=["400"] * 3, default="ok") as srv:
        result = runner.invoke(
            app,
            eval_args(
                "mathvista,mmstar",
                data,
                out,
                *served(srv.base_url),
                "--max-retries",
                "0",
                "--concurrency",
                "1",
            ),
        )
    assert result.exit_code == 1, result.output
    assert "items failed in mathvista (" in result.stderr
    summaries = json.loads(result.stdout)
    assert (summaries["mathvista"]["failed"], summaries["mmstar"]["failed"]) == (3, 0)
    assert (out / "mathvista" / "failed.jsonl").exists() and not (out / "mmstar" / "failed.jsonl").exists()
    assert summaries["mmstar"]["n"] == 2


def test_several_benchmarks_score_a_predictions_folder(tmp_path: Path) -> None:
    data, preds, out = two_benchmarks(tmp_path), tmp_path / "preds", tmp_path / "out"
    preds.mkdir()
    (preds / "mathvista.jsonl").write_text(json.dumps({"id": "1", "response": "The answer is 5."}) + "\n")
    (preds / "mmstar.json").write_text(json.dumps({"0": "B", "1": "D"}))
    result = runner.invoke(app, eval_args("MathVista, mmstar", data, out, "--predictions", str(preds)))
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.stdout)
    assert summaries["mathvista"]["missing_predictions"] == 2 and summaries["mmstar"]["accuracy"] == 100.0
    assert "model loaded 0 time(s)" in result.stderr


@pytest.mark.parametrize(
    ("bench", "layout", "says"),
    [
        ("mathvista,mathvistaa", "folder", "unknown benchmark 'mathvistaa'; choose one of emma, local"),
        ("mathvista,mmstar", "file", "with several benchmarks, --data is a folder"),
        ("mathvista,emma", "folder", "no entry for emma; expected one emma or emma.<ext>"),
        ("mathvista,mmstar", "twice", "2 entries (mmstar, mmstar.parquet) for mmstar"),
        (" , ", "folder", "--bench is empty"),
    ],
)
def test_several_benchmarks_refuse_before_anything_loads(
    tmp_path: Path, bench: str, layout: str, says: str
) -> None:
    data, out = two_benchmarks(tmp_path), tmp_path / "out"
    if layout == "file":
        data = data / "mathvista.parquet"
    if layout == "twice":
        (data / "mmstar").mkdir()
    result = runner.invoke(app, eval_args(bench, data, out, "-m", "no-such-model"))
    assert result.exit_code == 1
    assert says in " ".join(result.stderr.split()), result.stderr
    assert not out.exists()


def test_all_is_the_papers_eight_in_its_order() -> None:
    from prcli.eval.several import benchmark_names

    assert benchmark_names("all") == PAPER_EIGHT
    assert benchmark_names("MMMU-Pro,mmstar,mmmu_pro") == ["mmmu_pro", "mmstar"]


def test_mmmu_pro_native_ids_do_not_answer_both_settings(tmp_path: Path) -> None:
    """A standard-only predictions file keyed by native ids must not also answer the vision items
    of a two-setting dataset (it would score both with the same responses)."""
    from conftest import make_image

    rows = []
    for i in range(2):
        make_image(tmp_path / f"s{i}.png", "red")
        make_image(tmp_path / f"v{i}.png", "blue")
        common = {"id": f"q{i}", "options": str([f"option {k}" for k in range(10)]), "answer": "C"}
        rows.append(
            {**common, "setting": "standard10", "question": "What is <image 1>?", "image_1": f"s{i}.png"}
        )
        rows.append({**common, "setting": "vision", "image": f"v{i}.png"})
    data = tmp_path / "mmmu_pro.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": f"q{i}", "response": "\\boxed{C}"}) + "\n" for i in range(2)))
    result = runner.invoke(app, eval_args("mmmu_pro", data, tmp_path / "out", "--predictions", str(preds)))
    assert result.exit_code == 1 and "no prediction id matches a mmmu_pro item id" in result.output, (
        result.output
    )
    # one setting in the data: native ids name one item each and are taken
    single = tmp_path / "standard.jsonl"
    single.write_text("".join(json.dumps(r) + "\n" for r in rows if r["setting"] == "standard10"))
    result = runner.invoke(app, eval_args("mmmu_pro", single, tmp_path / "out1", "--predictions", str(preds)))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == 100.0


def test_an_edited_local_parquet_is_scored_as_it_now_is(tmp_path: Path) -> None:
    """`datasets` caches a local parquet by its modification time, which an edited copy can keep."""
    import os

    data = fx.mathvista(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "response": "\\boxed{5}"}) + "\n" for i in ("1", "2", "3")))
    args = [
        "eval",
        "-b",
        "mathvista",
        "--data",
        str(data),
        "--predictions",
        str(preds),
        "--json",
        "--overwrite",
    ]
    first = json.loads(CliRunner().invoke(app, [*args, "-o", str(tmp_path / "a")]).stdout)["correct"]
    stamp = data.stat()
    table = pq.read_table(data)
    answers = table.column("answer").to_pylist()
    pq.write_table(
        table.set_column(table.schema.get_field_index("answer"), "answer", pa.array(["7"] * len(answers))),
        data,
    )
    os.utime(data, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    again = json.loads(CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b")]).stdout)["correct"]
    assert (first, again) == (answers.count("5"), 0)
