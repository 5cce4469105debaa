"""Scoring speed and streaming memory.

    python benchmarks/streaming.py

1. Items per second of rule-based scoring on the real MathVista outputs (full responses, 3 x 1000).
2. Peak memory (max RSS) of `pr eval --predictions` and `pr judge` on inputs of 1k and 100k lines:
   inputs are streamed, so memory should stay nearly flat as the input grows 100x.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prcli.eval import get_benchmark

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PR = str(Path(sys.executable).parent / "pr")


def scoring_speed() -> str:
    bench = get_benchmark("mathvista")
    total, seconds = 0, 0.0
    for model in ("bard", "gpt4_2shot_solution", "llava_llama_2_13b"):
        path = DATA / "mathvista" / "outputs" / model / "output.json"
        outputs = json.loads(path.read_text())
        samples = list(bench.load(path, decode_images=False))
        t0 = time.perf_counter()
        for s in samples:
            bench.score(bench.score_input(s), outputs[s.id]["response"])
        seconds += time.perf_counter() - t0
        total += len(samples)
    return f"MathVista rule-based scoring of full responses: {total} items in {seconds:.2f} s = {total / seconds:.0f} items/s"


def peak_rss_mb(cmd: list[str]) -> float:
    """Max RSS of `cmd` (its own process), measured by a fresh wrapper process."""
    code = (
        "import resource, subprocess, sys; "
        f"r = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    if out[0] != "0":
        raise RuntimeError(f"{cmd} failed")
    return int(out[1]) / 1024


def write_mmstar(folder: Path, n: int) -> tuple[Path, Path]:
    rng = random.Random(n)
    data, preds = folder / f"mmstar_{n}.jsonl", folder / f"preds_{n}.jsonl"
    with open(data, "w") as d, open(preds, "w") as p:
        for i in range(n):
            answer = rng.choice("ABCD")
            d.write(
                json.dumps(
                    {
                        "index": i,
                        "question": f"Question {i}?\nOptions: A: one, B: two, C: three, D: four",
                        "image": None,
                        "answer": answer,
                        "category": rng.choice(["math", "science"]),
                        "l2_category": "x",
                    }
                )
                + "\n"
            )
            p.write(
                json.dumps(
                    {
                        "id": str(i),
                        "response": f"Reasoning about item {i}... The answer is ({rng.choice('ABCD')}).",
                    }
                )
                + "\n"
            )
    return data, preds


def write_responses(folder: Path, n: int) -> Path:
    path = folder / f"responses_{n}.jsonl"
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": f"r{i}",
                        "response": f"From the figure AB = {i % 7} and BC = 4, so AC = 5. " * 4,
                        "annotations": [f"AB = {i % 7}", "BC = 4", "Angle B is 90 degrees"],
                    }
                )
                + "\n"
            )
    return path


def main() -> None:
    print(scoring_speed())
    print()
    print("| command | 1k lines: peak RSS | 100k lines: peak RSS | growth |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rss = {}
        for n in (1000, 100_000):
            data, preds = write_mmstar(folder, n)
            rss[("eval", n)] = peak_rss_mb(
                [
                    PR,
                    "eval",
                    "-b",
                    "mmstar",
                    "--data",
                    str(data),
                    "--predictions",
                    str(preds),
                    "-o",
                    str(folder / f"eval_{n}"),
                ]
            )
            responses = write_responses(folder, n)
            rss[("judge", n)] = peak_rss_mb(
                [PR, "judge", str(responses), "-o", str(folder / f"judge_{n}.jsonl")]
            )
        for name, label in (
            ("eval", "pr eval --predictions (mmstar layout)"),
            ("judge", "pr judge (lexical)"),
        ):
            small, large = rss[(name, 1000)], rss[(name, 100_000)]
            print(f"| {label} | {small:.0f} MB | {large:.0f} MB | {100 * (large - small) / small:+.0f}% |")


if __name__ == "__main__":
    main()
