"""`pr demo`: the whole method on a laptop, through the same library calls as the real commands.

1. a synthetic geometry set: figures drawn with PIL (rectangles, right triangles, triangles with two
   angles, circles, squares; labelled lengths and angles), questions with exact answers, and
   templated correct chains of thought that state the visual facts;
2. a tiny Qwen2.5-VL built locally; 3. `pr annotate` (rules extractor); 4. `pr train` (GRPO with the
   lexical judge); 5. `pr eval` of the base and the trained model on a held-out split (the `local`
   benchmark, math-verify); 6. `pr judge` on both models' eval responses; 7. `pr diagnose` (lexical,
   the annotated test set as reference facts): each failure's type, and the share of failures that
   are perception errors; 8. `pr mcnemar` between them, on accuracy and on "no perception error"
   (the diagnose labels, `--outcome perception`); 9. plots.

The tiny model cannot learn geometry in a few dozen steps; what the demo shows is every stage
working and the perception reward being learned (its annotations name the figure, which the policy
can learn to mention).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from prcli.config import StageConfig
from prcli.jsonl import InputError, write_jsonl_atomic

KINDS = ("rectangle", "right_triangle", "triangle_angles", "circle", "square")
TRIPLES = ((3, 4, 5), (5, 12, 13), (6, 8, 10), (8, 15, 17), (9, 12, 15), (7, 24, 25))


class DemoConfig(StageConfig):
    out: Path = Field(Path("demo-out"), description="Folder for every artifact of the demo.")
    n_train: int = Field(32, ge=4, description="Synthetic training problems.")
    n_test: int = Field(16, ge=2, description="Held-out problems for the evaluation.")
    steps: int = Field(60, ge=1, description="GRPO steps.")
    seed: int = Field(0, description="Seed of the data, the tiny model and training.")
    verbose: bool = Field(False, description="Training shows TRL's raw logs and library warnings.")


def _draw(kind: str, labels: dict[str, str], size: int = 128) -> Any:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    if kind in ("rectangle", "square"):
        x0, y0, x1, y1 = 20, 30 if kind == "rectangle" else 24, 108, 90 if kind == "rectangle" else 104
        d.rectangle([x0, y0, x1, y1], outline="black", width=2)
        for (x, y), name in zip(
            [(x0 - 12, y0 - 12), (x1 + 2, y0 - 12), (x1 + 2, y1), (x0 - 12, y1)], "ABCD", strict=True
        ):
            d.text((x, y), name, fill="black")
        d.text(((x0 + x1) // 2 - 4, y0 - 14), labels["AB"], fill="blue")
        d.text((x1 + 4, (y0 + y1) // 2), labels.get("BC", labels["AB"]), fill="blue")
    elif kind in ("right_triangle", "triangle_angles"):
        a, b, c = (20, 20), (20, 104), (108, 104)
        d.polygon([a, b, c], outline="black", width=2)
        for (x, y), name in zip(
            [(a[0] - 12, a[1] - 6), (b[0] - 12, b[1]), (c[0] + 2, c[1])], "ABC", strict=True
        ):
            d.text((x, y), name, fill="black")
        if kind == "right_triangle":
            d.rectangle([20, 94, 30, 104], outline="black")
            d.text((4, 58), labels["AB"], fill="blue")
            d.text((58, 108), labels["BC"], fill="blue")
        else:
            d.text((26, 30), labels["A"], fill="red")
            d.text((26, 86), labels["B"], fill="red")
    else:  # circle
        d.ellipse([14, 14, 114, 114], outline="black", width=2)
        d.line([64, 64, 114, 64], fill="black", width=2)
        d.text((56, 56), "O", fill="black")
        d.text((116, 58), "A", fill="black")
        d.text((84, 50), labels["OA"], fill="blue")
    return im


def _problem(kind: str, rng: random.Random) -> tuple[str, str, str, dict[str, str]]:
    """(question, answer, chain of thought, labels drawn in the figure)."""
    if kind == "rectangle":
        w, h = rng.randint(2, 12), rng.randint(2, 12)
        cot = (
            f"The figure shows a rectangle. From the figure, AB = {w} and BC = {h}. "
            f"The area is AB \\times BC = {w} \\times {h} = {w * h}."
        )
        return (
            "<image>Rectangle ABCD has the side lengths shown. What is its area?",
            str(w * h),
            cot,
            {"AB": str(w), "BC": str(h)},
        )
    if kind == "square":
        s = rng.randint(2, 15)
        cot = (
            f"The figure shows a square. From the figure, AB = {s}. The perimeter is 4 \\times {s} = {4 * s}."
        )
        return (
            "<image>Square ABCD has the side length shown. What is its perimeter?",
            str(4 * s),
            cot,
            {"AB": str(s)},
        )
    if kind == "right_triangle":
        a, b, c = rng.choice(TRIPLES)
        cot = (
            f"The figure shows a right triangle. From the figure, AB = {a} and BC = {b}. "
            f"By the Pythagorean theorem, AC = \\sqrt{{{a}^2 + {b}^2}} = {c}."
        )
        return (
            "<image>Triangle ABC has a right angle at B. How long is AC?",
            str(c),
            cot,
            {"AB": str(a), "BC": str(b)},
        )
    if kind == "triangle_angles":
        x, y = rng.randint(30, 80), rng.randint(30, 80)
        cot = (
            f"The figure shows a triangle. From the figure, angle A = {x}° and angle B = {y}°. "
            f"The angles of a triangle add up to 180°, so angle C = 180 - {x} - {y} = {180 - x - y}."
        )
        labels = {"A": f"{x}°", "B": f"{y}°"}
        return (
            "<image>In triangle ABC, two angles are marked. What is angle C in degrees?",
            str(180 - x - y),
            cot,
            labels,
        )
    r = rng.randint(2, 20)
    cot = f"The figure shows a circle. From the figure, the radius OA = {r}. The diameter is 2 \\times {r} = {2 * r}."
    return "<image>Circle O has the radius shown. What is its diameter?", str(2 * r), cot, {"OA": str(r)}


def synthetic_geometry(folder: Path, n: int, seed: int, prefix: str) -> Path:
    """`n` problems with drawn figures and correct CoTs, as Problem JSONL in `folder`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        question, answer, cot, labels = _problem(kind, rng)
        image = folder / "images" / f"{prefix}{i:03d}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        _draw(kind, labels).save(image)
        think = f"<think>\n{cot}\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"
        rows.append(
            {
                "id": f"{prefix}{i:03d}",
                "question": question,
                "images": [f"images/{prefix}{i:03d}.png"],
                "answer": answer,
                "cot": think,
                "category": kind,
            }
        )
    path = folder / f"{prefix.rstrip('-')}.jsonl"
    write_jsonl_atomic(path, rows)
    return path


@dataclass
class DemoSummary:
    out: Path
    steps: list[tuple[str, str, float]] = field(default_factory=list)  # (stage, what happened, seconds)
    files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)


def breakdown_line(cell: dict[str, Any]) -> str:
    """One model's failure breakdown in words (`pr diagnose`'s overall cell)."""
    share = cell["perception_share"]
    return (
        f"{cell['failures']} failures: {cell['perception']} perception, {cell['reasoning']} reasoning, "
        f"{cell['unknown_failures']} unknown; perception share "
        + (f"{share:.0%}" if share is not None else "n/a (no failure checkable)")
    )


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = lambda _: None) -> DemoSummary:
    from prcli.annotate.run import AnnotateConfig, run_annotate
    from prcli.eval.run import EvalConfig, run_eval
    from prcli.judge.run import JudgeRunConfig, run_judge
    from prcli.mcnemar import McNemarConfig, run_mcnemar
    from prcli.plots import plot_eval, plot_perception, plot_training
    from prcli.tiny import build_tiny_model
    from prcli.train import TrainConfig, train

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary(out)
    data = out / "data"

    def stage(name: str, fn: Callable[[], str]) -> None:
        say(f"[bold]{name}[/] ...")
        started = time.monotonic()
        what = fn()
        summary.steps.append((name, what, time.monotonic() - started))
        say(f"  {what}")

    def make_data() -> str:
        summary.files["train problems"] = synthetic_geometry(data, cfg.n_train, cfg.seed, "train-")
        summary.files["test problems"] = synthetic_geometry(data, cfg.n_test, cfg.seed + 1, "test-")
        return f"{cfg.n_train} training and {cfg.n_test} held-out problems with drawn figures in {data}"

    def make_model() -> str:
        summary.files["tiny model"] = build_tiny_model(out / "tiny-model", seed=cfg.seed)
        return f"tiny Qwen2.5-VL in {summary.files['tiny model']}"

    def annotate() -> str:
        kept = []
        for split in ("train", "test"):
            result = run_annotate(
                AnnotateConfig(
                    problems=summary.files[f"{split} problems"],
                    out=out / "annotate" / f"{split}.jsonl",
                    overwrite=True,
                )
            )
            summary.files[f"annotated {split}"] = result.out
            kept.append(
                f"{split}: {result.kept}/{result.problems} kept, {result.mean_annotations:.1f} annotations each"
            )
        return "; ".join(kept)

    def run_train() -> str:
        # at most the kept records: a step needs that many prompts (pr demo --n-train 4 still trains)
        kept = len(Path(summary.files["annotated train"]).read_text(encoding="utf-8").splitlines())
        result = train(
            TrainConfig(
                model=str(summary.files["tiny model"]),
                data=summary.files["annotated train"],
                output_dir=out / "train",
                prompts_per_step=max(1, min(8, kept)),
                num_generations=8,
                per_device_batch_size=64,
                max_completion_length=24,
                max_steps=cfg.steps,
                learning_rate=5e-3,
                warmup_ratio=0.0,
                min_pixels=3136,
                max_pixels=12544,
                save_steps=max(cfg.steps, 1),
                sample_every=max(1, cfg.steps // 4),
                seed=cfg.seed,
                device="cpu",
                verbose=cfg.verbose,
            )
        )
        rows = [json.loads(x) for x in result.metrics_path.read_text().splitlines()]
        perception = [r.get("rewards/perception/mean") or 0.0 for r in rows]
        k = max(1, len(perception) // 4)
        first, last = sum(perception[:k]) / k, sum(perception[-k:]) / k
        summary.numbers.update(perception_first=first, perception_last=last)
        summary.files["metrics"] = result.metrics_path
        summary.files["trained model"] = result.output_dir
        return f"{result.global_step} GRPO steps; mean perception reward {first:.2f} (first quarter) -> {last:.2f} (last quarter)"

    def evaluate() -> str:
        accs = []
        for name, model in (
            ("base", summary.files["tiny model"]),
            ("trained", summary.files["trained model"]),
        ):
            result = run_eval(
                EvalConfig(
                    bench="local",
                    data=summary.files["test problems"],
                    model=str(model),
                    out=out / "eval" / name,
                    prompt_style="r1",
                    max_new_tokens=24,
                    batch_size=8,
                    device="cpu",
                    min_pixels=3136,
                    max_pixels=12544,
                    overwrite=True,
                )
            )
            summary.files[f"eval {name}"] = result.out / "items.jsonl"
            summary.numbers[f"accuracy_{name}"] = result.summary["accuracy"]
            accs.append(f"{name} {result.summary['accuracy']:.1f}%")
        return "accuracy on the held-out split (math-verify): " + ", ".join(accs)

    def judge() -> str:
        means = []
        for name in ("base", "trained"):
            result = run_judge(
                JudgeRunConfig(
                    responses=summary.files[f"eval {name}"],
                    annotations=summary.files["annotated test"],
                    out=out / "judge" / f"{name}.jsonl",
                    backend="lexical",
                    overwrite=True,
                )
            )
            summary.files[f"judgements {name}"] = result.out
            summary.numbers[f"perception_{name}"] = result.mean_score
            means.append(f"{name} {result.mean_score or 0:.2f}")
        return "mean perception score of the eval responses (lexical judge): " + ", ".join(means)

    def diagnose() -> str:
        # the real error analysis (pr diagnose), not a threshold on the judge's score
        from prcli.diagnose.run import DiagnoseConfig, run_diagnose

        parts = []
        for name in ("base", "trained"):
            result = run_diagnose(
                DiagnoseConfig(
                    items=summary.files[f"eval {name}"],
                    annotations=summary.files["annotated test"],
                    out=out / "diagnose" / f"{name}.labels.jsonl",
                    judge="lexical",
                    overwrite=True,
                )
            )
            summary.files[f"perception labels {name}"] = result.out
            overall = result.summary["overall"]
            summary.numbers[f"breakdown_{name}"] = overall
            parts.append(f"{name} {breakdown_line(overall)}")
        return "failures by type (lexical, reference facts from the annotated test set): " + "; ".join(parts)

    def compare() -> str:
        acc = run_mcnemar(McNemarConfig(a=summary.files["eval base"], b=summary.files["eval trained"]))
        result: dict[str, Any] = {"accuracy": acc.as_dict()}
        summary.numbers["p_accuracy"] = acc.overall.p_value
        said = f"accuracy: b={acc.overall.b} c={acc.overall.c} p={acc.overall.p_value:.3g}; "
        try:
            per = run_mcnemar(
                McNemarConfig(
                    a=summary.files["perception labels base"],
                    b=summary.files["perception labels trained"],
                    outcome="perception",
                )
            )
        except InputError:  # no item had a perception verdict in both models: nothing to pair
            result["perception"] = None
            summary.numbers["p_perception"] = None
            said += "no perception error: no item checkable in both models, not tested"
        else:
            result["perception"] = per.as_dict()
            summary.numbers["p_perception"] = per.overall.p_value
            said += (
                f"no perception error: b={per.overall.b} c={per.overall.c} p={per.overall.p_value:.3g} "
                f"(exact; {per.overall.n} items checkable in both)"
            )
        (out / "mcnemar.json").write_text(json.dumps(result, indent=2) + "\n")
        summary.files["mcnemar"] = out / "mcnemar.json"
        return said

    def plots() -> str:
        plots_dir = out / "plots"
        summary.plots = [
            plot_training(summary.files["metrics"], plots_dir / "training_curves.png"),
            plot_eval(
                [summary.files["eval base"], summary.files["eval trained"]],
                plots_dir / "eval_comparison.png",
                "category",
            ),
            plot_perception(
                [summary.files["judgements base"], summary.files["judgements trained"]],
                plots_dir / "perception_scores.png",
            ),
        ]
        return f"{len(summary.plots)} plots in {plots_dir}"

    for name, fn in [
        ("data", make_data),
        ("tiny model", make_model),
        ("annotate", annotate),
        ("train", run_train),
        ("eval", evaluate),
        ("judge", judge),
        ("diagnose", diagnose),
        ("mcnemar", compare),
        ("plots", plots),
    ]:
        stage(name, fn)
    return summary
