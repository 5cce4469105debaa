"""Where a GRPO step's time goes on CPU with the tiny model: generation, rewards (judge), the rest.

    python benchmarks/train_step.py [--steps 6] [--judge-latency 0.1]

The judge is the OpenAI-compatible fake server (`python -m prcli.testing`, own process) answering
each request after `--judge-latency` seconds, like a remote LLM judge. The same run is made with the
judge's concurrency at 256 (prcli's default) and at 1 (requests one after another), to show how much
of the step the judge takes when its calls overlap. Timings come from TRL's own profiling sections.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

from prcli.testing import ServerProcess
from prcli.tiny import build_tiny_model
from prcli.train import TrainConfig, train

TIMINGS: dict[str, list[float]] = defaultdict(list)


def record_trl_profiling() -> None:
    """Collect the durations TRL measures in its profiling sections (it only sends them to trackers)."""
    from trl.extras import profiling

    def log(self: object, duration: float) -> None:
        TIMINGS[self.name].append(duration)  # type: ignore[attr-defined]

    profiling.ProfilingContext._log_metrics = log  # type: ignore[method-assign]


def dataset(folder: Path, n: int = 16) -> Path:
    rows = []
    for i in range(n):
        Image.new("RGB", (56, 56), (20 * i % 255, 90, 160)).save(folder / f"{i}.png")
        rows.append(
            {
                "id": f"p{i}",
                "question": f"<image>Rectangle ABCD has sides {i + 2} and 3. What is its area?",
                "images": [f"{i}.png"],
                "answer": str(3 * (i + 2)),
                "annotations": [f"AB = {i + 2}", "BC = 3", "ABCD is a rectangle"],
            }
        )
    path = folder / "annotated.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(model: Path, data: Path, out: Path, base_url: str, concurrency: int, steps: int) -> dict[str, float]:
    TIMINGS.clear()
    result = train(
        TrainConfig(
            model=str(model),
            data=data,
            output_dir=out,
            prompts_per_step=8,
            num_generations=8,
            per_device_batch_size=64,
            max_completion_length=32,
            max_steps=steps,
            min_pixels=3136,
            max_pixels=3136,
            save_steps=1000,
            judge="openai",
            judge_base_url=base_url,
            judge_model="fake",
            judge_concurrency=concurrency,
            judge_cache=False,
            judge_structured="off",
            device="cpu",
        )
    )
    rows = [json.loads(x) for x in result.metrics_path.read_text().splitlines()][
        1:
    ]  # the first step warms up
    step = sum(r["step_time"] for r in rows) / len(rows)
    gen = sum(TIMINGS["GRPOTrainer.transformers.generate"][1:]) / len(rows)
    rewards = sum(TIMINGS["GRPOTrainer._calculate_rewards"][1:]) / len(rows)
    return {"step": step, "generation": gen, "rewards": rewards, "rest": step - gen - rewards}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--judge-latency", type=float, default=0.1)
    args = parser.parse_args()
    record_trl_profiling()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_tiny_model(folder / "tiny")
        data = dataset(folder)
        with ServerProcess(args.judge_latency, 512) as srv:
            results = {c: run(model, data, folder / f"run{c}", srv.base_url, c, args.steps) for c in (256, 1)}
    print(
        f"64 rollouts per step (8 prompts x 8), 32 new tokens, judge latency {args.judge_latency * 1000:.0f} ms; "
        f"mean over steps 2-{args.steps}\n"
    )
    print(
        "| judge concurrency | step (s) | generation (s) | rewards incl. judge (s) | update and the rest (s) | rewards share |"
    )
    print("|---|---|---|---|---|---|")
    for c, r in results.items():
        print(
            f"| {c} | {r['step']:.2f} | {r['generation']:.2f} | {r['rewards']:.2f} | {r['rest']:.2f} | "
            f"{100 * r['rewards'] / r['step']:.0f}% |"
        )


if __name__ == "__main__":
    main()
