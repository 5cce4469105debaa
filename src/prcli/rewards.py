"""Perception-R1's rewards as plain functions (method.md section 2).

    total = 0.9 * accuracy + 0.1 * format + 0.7 * perception + repetition_penalty

Formulas follow the released run. Two deliberate differences, both fixes:
- `<answer>` is matched across lines (the official regex lacks DOTALL, so a multi-line answer fell
  back to the whole response, think section included);
- the ground truth is parsed inside `$..$` (see `prcli.verify`), so `2\\sqrt{3}` is not read as `2`.
The perception score's denominator is the number of annotations (see `prcli.judge`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from prcli.verify import VerifierPool, shared_pool

# The released run's layout, verbatim: think block, answer block with a non-empty \boxed{}, nothing else.
FORMAT_PATTERN = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\\boxed{.+?}.*?\n</answer>$", re.DOTALL)
ANSWER_PATTERN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

DEFAULT_TIMEOUT = 5.0


def format_reward(response: str) -> float:
    """1.0 iff the whole response is `<think>\\n...\\n</think>\\n<answer>\\n...\\boxed{...}...\\n</answer>`."""
    return 1.0 if FORMAT_PATTERN.fullmatch(response) else 0.0


def answer_content(response: str) -> str:
    """The first `<answer>...</answer>` content, or the whole response when there is none."""
    match = ANSWER_PATTERN.search(response)
    return (match.group(1) if match else response).strip()


def accuracy_rewards(
    responses: Sequence[str],
    answers: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    pool: VerifierPool | None = None,
) -> list[float]:
    """1.0 per response whose answer verifies against its ground truth, else 0.0.

    Verification runs in worker processes; an item that takes longer than `timeout` seconds is 0.0.
    """
    if len(responses) != len(answers):
        raise ValueError(f"{len(responses)} responses but {len(answers)} answers")
    pool = pool or shared_pool(timeout)
    verdicts = pool.map([(answer_content(r), a) for r, a in zip(responses, answers, strict=True)])
    return [1.0 if v else 0.0 for v in verdicts]


def accuracy_reward(response: str, answer: str, *, timeout: float = DEFAULT_TIMEOUT) -> float:
    """`accuracy_rewards` for one response."""
    return accuracy_rewards([response], [answer], timeout=timeout)[0]


def repetition_penalty(response: str, n: int = 20, max_penalty: float = -2.0) -> float:
    """(1 - unique/total word n-grams) * max_penalty over lower-cased whitespace words; 0 below n words."""
    if n < 1:
        raise ValueError("n must be >= 1")
    words = response.lower().split()
    if len(words) < n:
        return 0.0
    ngrams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return (1.0 - len(set(ngrams)) / len(ngrams)) * max_penalty


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the released run: 0.9 accuracy + 0.1 format + 0.7 perception + 1.0 x penalty."""

    accuracy: float = 0.9
    format: float = 0.1
    perception: float = 0.7
    repetition: float = 1.0

    def as_list(self) -> list[float]:
        """In the order of `REWARD_NAMES`."""
        return [self.accuracy, self.format, self.perception, self.repetition]


REWARD_NAMES = ("accuracy", "format", "perception", "repetition")


def total_reward(
    accuracy: float,
    format: float,
    perception: float | None,
    repetition: float,
    weights: RewardWeights = RewardWeights(),
) -> float:
    """The weighted sum; a missing perception score (no annotations, skipped failure) adds nothing."""
    return (
        weights.accuracy * accuracy
        + weights.format * format
        + weights.perception * (perception or 0.0)
        + weights.repetition * repetition
    )
