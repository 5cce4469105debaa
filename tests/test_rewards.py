"""The reward formulas, pinned on hand-made cases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prcli.rewards import (
    REWARD_NAMES,
    RewardWeights,
    accuracy_reward,
    accuracy_rewards,
    answer_content,
    format_reward,
    repetition_penalty,
    total_reward,
)
from prcli.verify import VerifierPool, math_equal

GOOD = "<think>\nAB = 3 and BC = 4, so AC = 5.\n</think>\n<answer>\nThe answer is \\boxed{5}.\n</answer>"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (GOOD, 1.0),
        ("<think>\nx\n</think>\n<answer>\n\\boxed{5}\n</answer>", 1.0),
        ("<think>\nmulti\nline\n</think>\n<answer>\nso\n\\boxed{\\frac{1}{2}} done\n</answer>", 1.0),
        (GOOD + "\n", 0.0),  # nothing allowed after </answer>
        ("Sure! " + GOOD, 0.0),  # nothing allowed before <think>
        ("<think>x</think>\n<answer>\n\\boxed{5}\n</answer>", 0.0),  # newlines around the think text
        ("<think>\nx\n</think>\n<answer>\n5\n</answer>", 0.0),  # no \boxed
        ("<think>\nx\n</think>\n<answer>\n\\boxed{}\n</answer>", 0.0),  # empty \boxed
        ("<think>\nx\n</think><answer>\n\\boxed{5}\n</answer>", 0.0),  # newline between blocks
        ("<answer>\n\\boxed{5}\n</answer>", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward(response: str, expected: float) -> None:
    assert format_reward(response) == expected


def test_answer_content_takes_the_first_answer_block_across_lines() -> None:
    assert answer_content(GOOD) == "The answer is \\boxed{5}."
    assert answer_content("<answer>1</answer> then <answer>2</answer>") == "1"
    assert answer_content("no tags, \\boxed{7}") == "no tags, \\boxed{7}"


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        (GOOD, "5", 1.0),
        (GOOD, "6", 0.0),
        ("<answer>\n\\boxed{2\\sqrt{3}}\n</answer>", "2\\sqrt{3}", 1.0),
        ("<answer>\n\\boxed{2}\n</answer>", "2\\sqrt{3}", 0.0),  # the official bare-gold parse gave 1.0
        ("<answer>\n\\boxed{13.333333}\n</answer>", "\\frac{40}{3}", 1.0),
        ("<answer>\n\\boxed{71^\\circ}\n</answer>", "71", 1.0),
        ("<answer>\n\\boxed{1 + x^2}\n</answer>", "x^2+1", 1.0),
        ("<answer>\n\\boxed{B}\n</answer>", "B", 1.0),
        ("<answer>\n\\boxed{C}\n</answer>", "B", 0.0),
        ("The answer is (A).", "A", 1.0),
        (
            "<think>\nmaybe 5\n</think>\n<answer>\n\\boxed{4}\n</answer>",
            "5",
            0.0,
        ),  # the think text is not the answer
        ("no answer at all", "5", 0.0),
        ("", "5", 0.0),
    ],
)
def test_accuracy_reward(response: str, answer: str, expected: float) -> None:
    assert accuracy_reward(response, answer) == expected


def test_accuracy_is_zero_for_a_pathological_answer_and_never_hangs() -> None:
    # sympy does not return from this one (measured: over a minute); the worker is killed.
    tower = "<answer>\n\\boxed{9^{9^{9^{9}}}}\n</answer>"
    with VerifierPool(workers=2, timeout=1.0) as pool:
        started = time.monotonic()
        rewards = accuracy_rewards([tower, GOOD, tower, GOOD], ["1", "5", "1", "5"], pool=pool)
        elapsed = time.monotonic() - started
        assert rewards == [0.0, 1.0, 0.0, 1.0]
        assert pool.stats.timeouts == 2 and pool.stats.restarts == 2
        assert elapsed < 20  # two 1 s timeouts, not a hang
        assert accuracy_rewards([GOOD], ["5"], pool=pool) == [1.0]  # the pool works on afterwards


def test_accuracy_rewards_checks_lengths() -> None:
    with pytest.raises(ValueError, match="2 responses but 1 answers"):
        accuracy_rewards(["a", "b"], ["1"])


def test_math_equal_never_raises_on_junk() -> None:
    assert math_equal("\\boxed{\\frac{", "1") is False
    assert math_equal("}}}{{{", "\\frac{1}{") is False


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("", 0.0),
        ("   ", 0.0),
        (" ".join(f"w{i}" for i in range(19)), 0.0),  # fewer than 20 words
        (" ".join(f"w{i}" for i in range(40)), 0.0),  # all 21 20-grams distinct
        (" ".join(["same"] * 20), 0.0),  # one 20-gram, unique/total = 1
        (" ".join(["same"] * 21), -1.0),  # two identical 20-grams: (1 - 1/2) * -2
        (" ".join(["same"] * 39), -1.9),  # 20 grams, 1 unique: (1 - 1/20) * -2
    ],
)
def test_repetition_penalty(response: str, expected: float) -> None:
    assert repetition_penalty(response) == pytest.approx(expected)


def test_repetition_penalty_is_case_and_whitespace_insensitive() -> None:
    a = "AB = 3 " * 10
    b = "ab   =\n3 " * 10
    assert repetition_penalty(a, n=3) == repetition_penalty(b, n=3) < 0
    # a cycle of 3 words: of 28 trigrams only 3 are distinct
    assert repetition_penalty(a, n=3) == pytest.approx((1 - 3 / 28) * -2.0)
    assert repetition_penalty(a, n=3, max_penalty=-1.0) == pytest.approx((1 - 3 / 28) * -1.0)
    with pytest.raises(ValueError):
        repetition_penalty(a, n=0)


def test_weights_default_to_the_released_run() -> None:
    w = RewardWeights()
    assert REWARD_NAMES == ("accuracy", "format", "perception", "repetition")
    assert w.as_list() == [0.9, 0.1, 0.7, 1.0]
    assert total_reward(1.0, 1.0, 1.0, 0.0) == pytest.approx(1.7)  # the maximum
    assert total_reward(0.0, 0.0, 0.0, -2.0) == pytest.approx(-2.0)  # the minimum
    assert total_reward(1.0, 0.0, 0.5, -0.5) == pytest.approx(0.9 + 0.35 - 0.5)
    assert total_reward(1.0, 1.0, None, 0.0) == pytest.approx(1.0)  # no perception score adds nothing
    custom = RewardWeights(accuracy=1.0, format=0.5, perception=0.3, repetition=0.5)
    assert total_reward(1.0, 1.0, 1.0, -2.0, custom) == pytest.approx(1.0 + 0.5 + 0.3 - 1.0)


def test_workers_that_cannot_start_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that dies before it is ready (here: a Python that cannot import prcli) is not
    respawned forever: after a few tries the pool says why."""
    from prcli.sandbox import SandboxError

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'No module named prcli' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr("prcli.sandbox.sys.executable", str(broken))
    pool = VerifierPool(workers=1, timeout=2)
    with pytest.raises(SandboxError, match="cannot start:\nNo module named prcli"):
        pool.map([("1", "1")])
    assert pool.stats.restarts < 5


def test_word_answers_are_compared_as_words_not_algebra() -> None:
    """math-verify alone read `no` as n*o and accepted `on`, `o n`, `n*o`; `blue` accepted `bleu`."""
    for wrong, gold in [("on", "no"), ("o n", "no"), ("n*o", "no"), ("sey", "yes"), ("bleu", "blue")]:
        assert not math_equal(f"\\boxed{{{wrong}}}", gold), (wrong, gold)
    for said, gold in [
        ("\\boxed{No}", "no"),
        ("\\boxed{\\text{blue}}", "blue"),
        ("The answer is yes.", "yes"),
    ]:
        assert math_equal(said, gold), (said, gold)
    assert accuracy_reward("<think>x</think><answer>\\boxed{on}</answer>", "no") == 0.0
    assert math_equal("\\boxed{12}", "12") and math_equal("\\boxed{B}", "B")  # numbers, letters as before
