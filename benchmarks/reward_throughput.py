"""Reward throughput: accuracy + format + repetition over realistic responses, prcli vs the official loop.

    python benchmarks/reward_throughput.py [--n 8192] [--workers 2] [--timeout 5]

The baseline is what the released code does: one process, a sequential loop, math-verify called
in-process (its own signal-based timeouts: 5 s to parse, 5 s to verify). prcli verifies answers in
sandboxed worker processes (killed after `--timeout`) and computes format and repetition in process.
The mix: correct and wrong think/answer/boxed responses, LaTeX answers (fractions, roots, pi),
multiple-choice letters, long rambling responses with repetition, and a few pathological towers of
exponents that make sympy spin.
"""

from __future__ import annotations

import argparse
import random
import re
import time

from prcli.rewards import accuracy_rewards, format_reward, repetition_penalty
from prcli.verify import VerifierPool

ANSWERS = [
    ("5", "5"),
    ("\\frac{3}{4}", "0.75"),
    ("2\\sqrt{3}", "2\\sqrt{3}"),
    ("12\\pi", "12\\pi"),
    ("B", "B"),
    ("71", "71^\\circ"),
    ("\\frac{40}{3}", "13.3333"),
    ("x^2+1", "1+x^2"),
    ("8", "8.0"),
]
WRONG = ["4", "\\frac{2}{3}", "3\\sqrt{2}", "11\\pi", "C", "70", "13", "x^2-1", "9"]
FILLER = [
    "From",
    "the",
    "figure,",
    "AB",
    "=",
    "3",
    "and",
    "BC",
    "=",
    "4,",
    "and",
    "the",
    "angle",
    "at",
    "B",
    "is",
    "a",
    "right",
    "angle.",
    "So",
    "by",
    "the",
    "Pythagorean",
    "theorem",
    "the",
    "hypotenuse",
    "AC",
    "is",
    "5.",
    "Then",
    "the",
    "area",
    "of",
    "the",
    "triangle",
    "is",
    "half",
    "of",
    "3",
    "times",
    "4,",
    "which",
    "is",
    "6.",
]


def make_responses(n: int, seed: int, pathological: bool = True) -> list[tuple[str, str, str]]:
    """(kind, response, ground truth)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gold, right = rng.choice(ANSWERS)
        kind = rng.choices(
            ["correct", "wrong", "long", "unformatted", "pathological"], [40, 35, 15, 9.95, 0.05]
        )[0]
        if not pathological and kind == "pathological":
            kind = "wrong"
        if kind == "pathological" or (i == 0 and pathological):
            kind, answer = "pathological", "9^{9^{9^{9}}}"
        else:
            answer = right if kind in ("correct", "long") else rng.choice(WRONG)
        think = " ".join(rng.choices(FILLER, k=rng.randint(20, 80)))
        if kind == "long":
            think = " ".join(FILLER * rng.randint(8, 20))  # long and repetitive
        if kind == "unformatted":
            response = f"{think} The answer is {answer}."
        else:
            response = f"<think>\n{think}\n</think>\n<answer>\nThe answer is \\boxed{{{answer}}}.\n</answer>"
        out.append((kind, response, gold))
    return out


def official_accuracy(response: str, gold: str) -> float:
    """The released code's accuracy reward, verbatim in behaviour: no DOTALL, bare gold parse."""
    from math_verify import parse, verify

    try:
        m = re.search(r"<answer>(.*?)</answer>", response)
        given = m.group(1).strip() if m else response.strip()
        return 1.0 if verify(parse(gold.strip()), parse(given)) else 0.0
    except Exception:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pathological", action="store_true", help="leave the towers of exponents out")
    args = parser.parse_args()
    data = make_responses(args.n, args.seed, pathological=not args.no_pathological)
    responses, golds = [r for _, r, _ in data], [g for _, _, g in data]
    kinds = {
        k: sum(1 for x, _, _ in data if x == k)
        for k in ("correct", "wrong", "long", "unformatted", "pathological")
    }

    with VerifierPool(workers=args.workers, timeout=args.timeout) as pool:
        pool.map([("\\boxed{1}", "1")] * (2 * args.workers))  # warm-up: workers started and imported
        t0 = time.perf_counter()
        acc = accuracy_rewards(responses, golds, pool=pool)
        fmt = [format_reward(r) for r in responses]
        rep = [repetition_penalty(r) for r in responses]
        ours = time.perf_counter() - t0
        longest, timeouts = pool.stats.longest, pool.stats.timeouts

    t1 = time.perf_counter()
    slowest = 0.0
    base_acc = []
    for r, g in zip(responses, golds, strict=True):
        s = time.perf_counter()
        base_acc.append(official_accuracy(r, g))
        format_reward(r)
        repetition_penalty(r)
        slowest = max(slowest, time.perf_counter() - s)
    baseline = time.perf_counter() - t1

    print(f"mix: {kinds}")
    print(
        "| responses | workers | baseline (s) | prcli (s) | speed-up | slowest item, baseline | slowest item, prcli | "
        "prcli timeouts | mean accuracy, baseline / prcli | mean format | mean repetition |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.n} | {args.workers} | {baseline:.1f} | {ours:.1f} | {baseline / ours:.2f}x | {slowest:.2f} s | "
        f"{longest:.2f} s | {timeouts} | {sum(base_acc) / args.n:.3f} / {sum(acc) / args.n:.3f} | "
        f"{sum(fmt) / args.n:.3f} | {sum(rep) / args.n:.3f} |"
    )


if __name__ == "__main__":
    main()
