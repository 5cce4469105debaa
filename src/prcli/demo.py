"""`pr demo`: the paper's comparison in miniature, through the same library calls as the real commands.

1. `prcli.tasks`: figures whose answer must be read from the image (two coloured shapes: what colour
   is the left/right one, are they the same colour), with correct templated CoTs; held-out split
   from another seed; 2. a tiny Qwen2.5-VL built locally; 3. `pr annotate` (rules extractor) turns
   the correct CoTs into visual facts; 4. `pr sft` warm start on an imperfect teacher's CoTs
   (`prcli.tasks.teacher`: by default, 55% of its "different colours" conclusions say "yes"), as a
   cold start distilled without checking inherits its teacher's habits; 5. two `pr train` GRPO arms
   from that checkpoint with one budget and seed, on the true answers: accuracy-only RLVR (accuracy +
   format) and Perception-R1 (+ perception reward from the lexical judge + repetition penalty);
   6. `pr eval` of SFT, RLVR and Perception-R1 on the held-out split; 7. `pr diagnose` (lexical, the
   generator's facts as reference): each response's perception errors; 8. `pr mcnemar` on accuracy
   and on "no perception error" for each pair; 9. plots (training curves of both arms; held-out accuracy and
   perception errors per model; held-out accuracy per true answer).

The tiny model starts blind: everything it perceives it learns here, on two CPU cores. The budget
(steps, learning rates, sizes) keeps the default run under 8 minutes (4.5 measured on two cores);
`--quick` runs every stage on a handful of items (a smoke test, numbers meaningless). What five seeds
show is in README and benchmarks/RESULTS.md: GRPO removes most of the teacher's slip that SFT learnt
(held-out accuracy up 9.5-17.5 points, McNemar p < 0.01, in four seeds of five); `--teacher-slip 0`
warms up on the correct CoTs instead, where GRPO at this budget moves nothing measurable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from prcli.config import StageConfig
from prcli.errors import StageError
from prcli.jsonl import InputError

DEMO_KINDS = ("side_colour", "same_colour")
MODELS = ("sft", "rlvr", "perception-r1")
PAIRS = (("sft", "rlvr"), ("sft", "perception-r1"), ("rlvr", "perception-r1"))
PIXELS = 112 * 112  # the figures' own size: one 4x4 grid of image tokens


@dataclass(frozen=True)
class Budget:
    """What the demo spends: sizes and steps (the full run, or --quick). The learning rates are fixed:
    SFT_LR with beta2 0.98 (the blind model must first learn to see), GRPO_LR for both arms."""

    train_size: int
    test_size: int
    sft_steps: int
    grpo_steps: int
    prompts_per_step: int
    num_generations: int


FULL = Budget(
    train_size=1000, test_size=200, sft_steps=600, grpo_steps=100, prompts_per_step=8, num_generations=8
)
QUICK = Budget(train_size=24, test_size=12, sft_steps=6, grpo_steps=2, prompts_per_step=4, num_generations=4)
SFT_LR = 3e-3
GRPO_LR = 1e-4
TEACHER_MISREAD = 0.0
TEACHER_SLIP = 0.55
QUICK_WARNING = " [--quick: a smoke run; these numbers mean nothing]"


class DemoConfig(StageConfig):
    out: Path = Field(Path("demo-out"), description="Folder for every artifact of the demo.")
    quick: bool = Field(False, description="A smoke run of every stage on a few items (about 15 s).")
    train_size: int | None = Field(None, ge=4, description="Training problems (default 1000; quick 24).")
    test_size: int | None = Field(None, ge=2, description="Held-out problems (default 200; quick 12).")
    kinds: list[str] = Field(
        default_factory=lambda: list(DEMO_KINDS),
        description="Figure kinds (prcli.tasks), comma-separated or repeated.",
    )
    sft_steps: int | None = Field(None, ge=1, description="SFT optimizer steps (default 600; quick 6).")
    grpo_steps: int | None = Field(None, ge=1, description="GRPO steps of each arm (default 100; quick 2).")
    teacher_misread: float = Field(
        TEACHER_MISREAD,
        ge=0.0,
        le=1.0,
        description="Share of orange/purple shapes the warm start's teacher misreads as red/blue.",
    )
    teacher_slip: float = Field(
        TEACHER_SLIP,
        ge=0.0,
        le=1.0,
        description="Share of 'same colour?' questions the teacher answers 'yes' after stating two different colours.",
    )
    seed: int = Field(0, description="Seed of the data (held-out: seed + 1), the tiny model and training.")
    verbose: bool = Field(False, description="Training shows TRL's raw logs and library warnings.")

    @model_validator(mode="after")
    def _kinds_known(self) -> DemoConfig:
        from prcli.tasks import parse_kinds

        self.kinds = parse_kinds(self.kinds)
        if not self.kinds:
            raise ValueError("no figure kind given (--kinds)")
        from prcli.tasks.teacher import check_teachable

        check_teachable(self.kinds, self.teacher_misread, self.teacher_slip)
        if self.budget.train_size < self.budget.prompts_per_step:
            raise ValueError(
                f"train_size {self.budget.train_size} is below the {self.budget.prompts_per_step} prompts of a GRPO step"
            )
        return self

    @property
    def budget(self) -> Budget:
        base = QUICK if self.quick else FULL
        return Budget(
            train_size=self.train_size or base.train_size,
            test_size=self.test_size or base.test_size,
            sft_steps=self.sft_steps or base.sft_steps,
            grpo_steps=self.grpo_steps or base.grpo_steps,
            prompts_per_step=base.prompts_per_step,
            num_generations=base.num_generations,
        )


@dataclass
class DemoSummary:
    out: Path
    steps: list[tuple[str, str, float]] = field(default_factory=list)  # (stage, what happened, seconds)
    files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)  # one row per model: accuracy, errors, CIs
    tests: list[dict[str, Any]] = field(default_factory=list)  # one row per pair and outcome: McNemar
    gain: str = ""  # what GRPO did to held-out accuracy, in one line
    verdict: str = ""  # the comparison the demo makes, in one line


def model_row(name: str, items: Path, labels: Path) -> dict[str, Any]:
    """Held-out accuracy and perception-error rate of one model, each with its 95% Wilson interval.

    The error rate is over the responses `pr diagnose` could check (it states at least one reference
    fact); the others are counted as `unchecked`, never silently dropped from the report."""
    from prcli.stats import proportion_ci

    rows = [json.loads(x) for x in items.read_text(encoding="utf-8").splitlines()]
    by_id = {
        (lab := json.loads(x))["id"]: lab["perception_error"]
        for x in labels.read_text(encoding="utf-8").splitlines()
    }
    marks = [by_id.get(r["id"]) for r in rows]  # an item without a label is unchecked, never dropped
    correct = sum(bool(r["correct"]) for r in rows)
    checked = [m for m in marks if m is not None]
    errors = sum(bool(m) for m in checked)
    wrong = [m for r, m in zip(rows, marks, strict=True) if not r["correct"]]
    return {
        "model": name,
        "n": len(rows),
        "correct": correct,
        "accuracy": correct / len(rows),
        "accuracy_ci": proportion_ci(correct, len(rows)),
        "checked": len(checked),
        "unchecked": len(marks) - len(checked),
        "perception_errors": errors,
        "perception_error_rate": errors / len(checked) if checked else None,
        "perception_error_ci": proportion_ci(errors, len(checked)) if checked else None,
        "wrong_misread": sum(m is True for m in wrong),  # a wrong answer with a misread shape
        "wrong_reasoning": sum(m is False for m in wrong),  # a wrong answer from facts stated right
    }


def pair_test(tests: list[dict[str, Any]], a: str, b: str, outcome: str) -> dict[str, Any] | None:
    return next((t for t in tests if (t["a"], t["b"], t["outcome"]) == (a, b, outcome)), None)


def gain_line(rows: dict[str, dict[str, Any]], tests: list[dict[str, Any]]) -> str:
    """What GRPO did to held-out accuracy, each arm against the SFT checkpoint it started from."""
    arms = []
    for arm, label in (("rlvr", "RLVR"), ("perception-r1", "Perception-R1")):
        test = pair_test(tests, "sft", arm, "accuracy")
        p = "n/a" if test is None else f"{test['p_value']:.3g}"
        arms.append(f"{label} {rows[arm]['accuracy']:.1%} (McNemar p = {p})")
    return (
        f"GRPO from the SFT checkpoint, held-out accuracy: SFT {rows['sft']['accuracy']:.1%} -> "
        + ", ".join(arms)
    )


def verdict_line(rows: dict[str, dict[str, Any]], tests: list[dict[str, Any]]) -> str:
    """What the run says about perception: Perception-R1 against accuracy-only RLVR, in one line."""
    rlvr, pr1 = rows["rlvr"], rows["perception-r1"]
    test = pair_test(tests, "rlvr", "perception-r1", "perception")
    if rlvr["perception_error_rate"] is None or pr1["perception_error_rate"] is None or test is None:
        return "perception errors: not comparable (a model's responses state none of the reference facts)"
    a, b = rlvr["perception_error_rate"], pr1["perception_error_rate"]
    word = (
        "fewer perception errors than"
        if b < a
        else "more perception errors than"
        if b > a
        else "as many perception errors as"
    )
    sig = "significant" if test["p_value"] < 0.05 else "not significant"
    return (
        f"Perception-R1 makes {word} accuracy-only RLVR: {b:.1%} vs {a:.1%} of "
        f"checked responses (McNemar p = {test['p_value']:.3g}, {sig} at 0.05, this seed)"
    )


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = lambda _: None) -> DemoSummary:
    from prcli.annotate.run import AnnotateConfig, run_annotate
    from prcli.diagnose.run import DiagnoseConfig, run_diagnose
    from prcli.eval.run import EvalConfig, run_eval
    from prcli.mcnemar import McNemarConfig, run_mcnemar
    from prcli.plots import plot_arms, plot_eval, plot_models
    from prcli.sft import SFTStageConfig, sft
    from prcli.tasks import TasksConfig, chance_accuracy, write_splits
    from prcli.tasks.teacher import teacher_counts
    from prcli.tiny import build_tiny_model
    from prcli.train import TrainConfig, train

    budget = cfg.budget
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary(out)
    data = out / "data"
    files = summary.files
    chance = chance_accuracy(cfg.kinds, budget.test_size)
    summary.numbers["chance_accuracy"] = chance

    def stage(name: str, fn: Callable[[], str]) -> None:
        say(f"[bold]{name}[/] ...")
        started = time.monotonic()
        what = fn()
        summary.steps.append((name, what, time.monotonic() - started))
        say(f"  {what}")

    def make_data() -> str:
        files["train problems"], files["test problems"], teacher = write_splits(
            TasksConfig(
                out=data,
                train_size=budget.train_size,
                test_size=budget.test_size,
                kinds=cfg.kinds,
                seed=cfg.seed,
                teacher_misread=cfg.teacher_misread,
                teacher_slip=cfg.teacher_slip,
            )
        )
        files["sft problems"] = teacher or files["train problems"]
        said = ""
        if teacher:
            counts = teacher_counts(teacher)
            summary.numbers.update(counts)
            said = (
                f"; the SFT teacher misreads {counts['teacher_misread_figures']} figures and slips on "
                f"{counts['teacher_slips']} of its {counts['teacher_different_colour_cots']} 'different colours' "
                f"CoTs: {counts['teacher_wrong_answers']} answers wrong"
            )
        return (
            f"{budget.train_size} training and {budget.test_size} held-out figures ({', '.join(cfg.kinds)}); "
            f"best accuracy without looking: {chance:.1%}{said}"
        )

    def make_model() -> str:
        files["tiny model"] = build_tiny_model(out / "tiny-model", seed=cfg.seed)
        return f"tiny Qwen2.5-VL (random weights: it sees nothing yet) in {files['tiny model']}"

    def annotate() -> str:
        result = run_annotate(
            AnnotateConfig(
                problems=files["train problems"], out=out / "annotate" / "train.jsonl", overwrite=True
            )
        )
        files["annotated train"] = result.out
        return (
            f"{result.kept}/{result.problems} CoTs kept, {result.mean_annotations:.1f} visual facts each "
            "(rules extractor)"
        )

    def warm_start() -> str:
        result = sft(
            SFTStageConfig(
                model=str(files["tiny model"]),
                data=files["sft problems"],
                output_dir=out / "sft",
                prompt_template="plain",
                max_steps=budget.sft_steps,
                learning_rate=SFT_LR,
                adam_beta2=0.98,
                warmup_ratio=0.05,
                batch_size=16,
                per_device_batch_size=16,
                min_pixels=PIXELS,
                max_pixels=PIXELS,
                save_steps=budget.sft_steps,
                seed=cfg.seed,
                device="cpu",
                verbose=cfg.verbose,
                overwrite=True,
            )
        )
        files["sft model"] = result.output_dir
        files["sft metrics"] = result.metrics_path
        losses = [json.loads(x)["loss"] for x in result.metrics_path.read_text().splitlines()]
        return f"{result.global_step} steps on {result.train_examples} CoTs; loss {losses[0]:.2f} -> {losses[-1]:.3f}"

    def grpo(arm: str) -> Callable[[], str]:
        weights = {"w_perception": 0.0, "w_repetition": 0.0} if arm == "rlvr" else {}

        def run() -> str:
            result = train(
                TrainConfig(
                    model=str(files["sft model"]),
                    data=files["annotated train"],
                    output_dir=out / "train" / arm,
                    prompt_template="plain",
                    prompts_per_step=budget.prompts_per_step,
                    num_generations=budget.num_generations,
                    per_device_batch_size=budget.prompts_per_step * budget.num_generations,
                    max_completion_length=48,
                    max_steps=budget.grpo_steps,
                    learning_rate=GRPO_LR,
                    warmup_ratio=0.1,
                    freeze_vision=True,  # 800 images per arm move the vision tower by noise, not signal
                    min_pixels=PIXELS,
                    max_pixels=PIXELS,
                    save_steps=budget.grpo_steps,
                    sample_every=max(1, budget.grpo_steps // 4),
                    seed=cfg.seed,
                    device="cpu",
                    verbose=cfg.verbose,
                    overwrite=True,
                    **weights,
                )
            )
            files[f"metrics {arm}"] = result.metrics_path
            files[f"{arm} model"] = result.output_dir
            rows = [json.loads(x) for x in result.metrics_path.read_text().splitlines()]
            k = max(1, len(rows) // 4)

            def mean(key: str, part: list[dict[str, Any]]) -> str:  # over the steps that logged it
                logged = [r[key] for r in part if r.get(key) is not None]
                return f"{sum(logged) / len(logged):.2f}" if logged else "n/a"

            acc, per = "rewards/accuracy/mean", "rewards/perception/mean"
            return (
                f"{result.global_step} steps; accuracy reward {mean(acc, rows[:k])} -> {mean(acc, rows[-k:])}, "
                f"perception reward {mean(per, rows[:k])} -> {mean(per, rows[-k:])} (first and last quarter)"
            )

        return run

    def evaluate() -> str:
        said = []
        for name in MODELS:
            result = run_eval(
                EvalConfig(
                    bench="local",
                    data=files["test problems"],
                    model=str(files[f"{name} model"]),
                    out=out / "eval" / name,
                    prompt_style="official",  # the question alone: the `plain` template trained on
                    max_new_tokens=64,
                    batch_size=50,
                    device="cpu",
                    min_pixels=PIXELS,
                    max_pixels=PIXELS,
                    overwrite=True,
                )
            )
            files[f"eval {name}"] = result.out / "items.jsonl"
            if result.failed or result.summary["n"] != budget.test_size:
                raise StageError(
                    f"pr eval of {name}: {result.summary['n']} of {budget.test_size} held-out items scored, "
                    f"{result.failed} failed ({result.first_error}); the comparison needs all of them"
                )
            said.append(f"{name} {result.summary['accuracy']:.1f}%")
        return f"held-out accuracy: {', '.join(said)} (chance {chance:.1%})"

    def diagnose() -> str:
        parts = []
        for name in MODELS:
            result = run_diagnose(
                DiagnoseConfig(
                    items=files[f"eval {name}"],
                    annotations=files["test problems"],  # the generator's facts: the figure's truth
                    out=out / "diagnose" / f"{name}.labels.jsonl",
                    judge="lexical",
                    overwrite=True,
                )
            )
            files[f"perception labels {name}"] = result.out
            if result.failed:
                raise StageError(f"pr diagnose of {name}: {result.failed} item(s) failed; see {result.out}")
            summary.numbers[f"breakdown_{name}"] = result.summary["overall"]
            row = model_row(name, files[f"eval {name}"], result.out)
            summary.models.append(row)
            rate = row["perception_error_rate"]
            parts.append(f"{name} {'n/a' if rate is None else f'{rate:.1%}'}")
        return "responses with a perception error: " + ", ".join(parts)

    def compare() -> str:
        result: dict[str, Any] = {}
        for a, b in PAIRS:
            for outcome in ("accuracy", "perception"):
                try:
                    test = run_mcnemar(
                        McNemarConfig(
                            a=files[f"perception labels {a}" if outcome == "perception" else f"eval {a}"],
                            b=files[f"perception labels {b}" if outcome == "perception" else f"eval {b}"],
                            outcome="perception" if outcome == "perception" else "field",
                        )
                    )
                except InputError:  # no item checkable in both: nothing to pair
                    result[f"{a} vs {b}: {outcome}"] = None
                    continue
                o = test.overall
                result[f"{a} vs {b}: {outcome}"] = test.as_dict()
                summary.tests.append(
                    {
                        "a": a,
                        "b": b,
                        "outcome": outcome,
                        "n": o.n,
                        "only_a": o.b,
                        "only_b": o.c,
                        "p_value": o.p_value,
                    }
                )
        (out / "mcnemar.json").write_text(json.dumps(result, indent=2) + "\n")
        files["mcnemar"] = out / "mcnemar.json"
        rows = {r["model"]: r for r in summary.models}
        summary.gain = gain_line(rows, summary.tests)
        summary.verdict = verdict_line(rows, summary.tests)
        if cfg.quick:
            summary.gain += QUICK_WARNING
            summary.verdict += QUICK_WARNING
        return f"{len(summary.tests)} paired tests"

    def plots() -> str:
        plots_dir = out / "plots"
        summary.plots = [
            plot_arms(
                {
                    "RLVR (accuracy only)": files["metrics rlvr"],
                    "Perception-R1": files["metrics perception-r1"],
                },
                plots_dir / "training_arms.png",
            ),
            plot_models(summary.models, plots_dir / "heldout_models.png", chance=chance),
            # where the accuracy moved: per true answer, "no" is where the teacher's slip shows
            plot_eval(
                [files[f"eval {name}"] for name in MODELS],
                plots_dir / "heldout_by_answer.png",
                field="answer",
                labels=list(MODELS),
                title="held-out accuracy by true answer",
            ),
        ]
        return f"{len(summary.plots)} plots in {plots_dir}"

    for name, fn in [
        ("data", make_data),
        ("tiny model", make_model),
        ("annotate", annotate),
        ("sft", warm_start),
        ("grpo rlvr", grpo("rlvr")),
        ("grpo perception-r1", grpo("perception-r1")),
        ("eval", evaluate),
        ("diagnose", diagnose),
        ("mcnemar", compare),
        ("plots", plots),
    ]:
        stage(name, fn)
    summary.numbers.update({f"accuracy_{r['model']}": r["accuracy"] for r in summary.models})
    summary.numbers.update(
        {f"perception_error_rate_{r['model']}": r["perception_error_rate"] for r in summary.models}
    )
    return summary
