"""`pr train` on CPU with the tiny Qwen2.5-VL: checkpoints, resume, LoRA, judge outages, learning.

Runs across processes (DDP, FSDP2) are in test_train_distributed.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SMALL, annotated_set
from prcli.cli import app
from prcli.errors import StageError
from prcli.records import AnnotatedProblem
from prcli.train import TrainConfig
from prcli.train.config import build_grpo_config
from prcli.train.data import build_rows
from prcli.train.rewards import completion_text

pytestmark = pytest.mark.slow
runner = CliRunner()


def train_args(model: Path, data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "-m", str(model), "--data", str(data), "-o", str(run), *SMALL, *extra]


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_few_steps_give_a_reloadable_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL]
    result = runner.invoke(
        app, [*args, "--max-steps", "3", "--save-steps", "2", "--sample-every", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["global_step"] == 3 and summary["train_examples"] == 6 and summary["judge_failures"] == 0

    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        for name in ("accuracy", "format", "perception", "repetition"):
            assert f"rewards/{name}/mean" in r
        assert {"reward", "judge/failures", "step_time", "loss"} <= r.keys()
    samples = [json.loads(x) for x in (run / "completions.jsonl").read_text().splitlines()]
    assert samples and {"step", "completion", "reward_perception", "verdicts"} <= samples[0].keys()

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["w_accuracy"] == 0.9 and saved["w_perception"] == 0.7 and saved["max_steps"] == 3
    assert saved["data"] == str(data.resolve())
    assert (run / "checkpoint-2").is_dir() and (run / "checkpoint-3").is_dir()

    from prcli.generation import ChatGenerator

    gen = ChatGenerator(str(run), device="cpu")
    from PIL import Image

    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find x."}]}]
    (text,) = gen.chat([conv], images=[[Image.new("RGB", (56, 56))]], max_new_tokens=4)
    assert isinstance(text, str)


def test_resume_continues_the_step_count(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    base = train_args(tiny_model_dir, data, run, "--save-steps", "1")
    assert runner.invoke(app, [*base, "--max-steps", "2"]).exit_code == 0
    result = runner.invoke(app, [*base, "--max-steps", "4", "--resume", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["global_step"] == 4 and summary["resumed_from"].endswith("checkpoint-2")
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4]
    state = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_kl_is_logged_when_on(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = train_args(tiny_model_dir, data, run, "--max-steps", "2", "--beta", "0.04")
    assert runner.invoke(app, args).exit_code == 0
    assert all(isinstance(r.get("kl"), float) for r in metrics(run))


def test_missing_tracker_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    data = annotated_set(tmp_path)
    result = runner.invoke(app, train_args(tiny_model_dir, data, tmp_path / "r", "--report-to", "wandb"))
    assert result.exit_code == 1 and "needs the wandb package: pip install wandb" in result.output


def test_lora_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = train_args(
        tiny_model_dir,
        data,
        run,
        "--max-steps",
        "2",
        "--lora",
        "--lora-r",
        "4",
        "--lora-alpha",
        "8",
        "--lora-targets",
        "q_proj,v_proj",
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and "visual" in adapter["target_modules"]  # the regex keeps the vision tower out
    from safetensors.torch import load_file

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    names = list(weights)
    assert names and all("lora_" in n for n in names)
    assert any("q_proj" in n for n in names) and any("v_proj" in n for n in names)
    assert not any("visual" in n for n in names)
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(run)  # the merged full model
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_perception_reward_is_learned(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A toy task where the perception reward is learnable: the annotations ask for two words the
    tiny model can learn to emit. With a fixed seed the mean perception reward rises clearly."""
    data = annotated_set(
        tmp_path, n=8, annotations=["The figure shows a circle", "The figure shows a square"]
    )
    run = tmp_path / "run"
    flags = (
        "--prompts-per-step 8 --num-generations 8 --per-device-batch-size 64 --max-completion-length 12 "
        "--min-pixels 3136 --max-pixels 3136 --max-steps 30 --learning-rate 5e-3 --warmup-ratio 0 "
        "--prompt-template plain --w-accuracy 0 --w-format 0 --w-repetition 0 --w-perception 1 "
        "--save-steps 1000 --seed 0"
    )
    args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *flags.split()]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    perception = [r["rewards/perception/mean"] for r in metrics(run)]
    first, last = sum(perception[:8]) / 8, sum(perception[-8:]) / 8
    assert last > first + 0.3, (first, last, perception)


def test_grpo_config_maps_the_released_run(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="qwen2.5-vl-7b", data=tmp_path / "d.jsonl", output_dir=tmp_path / "o", device="cpu"
    )
    args = build_grpo_config(cfg)
    assert args.num_generations == 8 and args.temperature == 1.0 and args.learning_rate == 1e-6
    assert args.beta == 0.0 and args.epsilon == 0.2 and args.epsilon_high == 0.3
    assert args.max_completion_length == 4096 and args.weight_decay == 1e-3
    assert args.reward_weights == [0.9, 0.1, 0.7, 1.0]
    # 128 prompts x 8 rollouts = 1024 completions = one optimizer step: 8 per pass x 128 accumulation steps
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 1024
    assert args.lr_scheduler_type == "constant_with_warmup" and args.warmup_steps == 0.05
    with pytest.raises(StageError, match="split evenly"):
        build_grpo_config(
            cfg.model_copy(update={"prompts_per_step": 3, "num_generations": 3, "per_device_batch_size": 2})
        )
    with pytest.raises(ValueError, match="vllm-server-url"):
        TrainConfig(model="m", data=tmp_path, output_dir=tmp_path, vllm="server")


def test_rows_put_images_where_the_placeholders_are(tmp_path: Path) -> None:
    rec = AnnotatedProblem.model_validate(
        {
            "id": "a",
            "question": "Look: <image> and <image>. Find x.",
            "images": [],
            "answer": "1",
            "annotations": ["x"],
        },
        context={"check_images": False},
    )
    rec = rec.model_copy(update={"images": ["/a.png", "/b.png"]})
    (row,) = build_rows([rec], "plain")
    assert row["prompt"][0]["content"] == [
        {"type": "text", "text": "Look: "},
        {"type": "image"},
        {"type": "text", "text": " and "},
        {"type": "image"},
        {"type": "text", "text": ". Find x."},
    ]
    (row,) = build_rows([rec.model_copy(update={"question": "No placeholder."})], "r1")
    parts = row["prompt"][0]["content"]
    assert [p["type"] for p in parts] == ["image", "image", "text"]
    assert parts[2]["text"].startswith("No placeholder. You FIRST think")
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"


def test_bad_training_data_is_reported_before_anything_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    with open(data, "a") as fh:
        fh.write('{"id": "bad", "question": "q", "answer": "1"}\n')
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL]
    )
    assert result.exit_code == 1
    assert f"{data}:7: annotations: required field is missing" in result.output
    assert not (run / "metrics.jsonl").exists()


def test_failed_judgements_move_no_advantage() -> None:
    from prcli.records import Judgement
    from prcli.train.rewards import neutral_failures

    def j(score: float | None, error: str | None = None) -> Judgement:
        return Judgement(id="x", verdicts=[], score=score, error=error)

    groups = ["a", "a", "a", "b", "b", "c"]
    judgements = [j(1.0), j(0.5), j(None, "HTTP 500"), j(None, "timeout"), j(None, "timeout"), j(None)]
    assert neutral_failures(groups, judgements) == [1.0, 0.5, 0.75, None, None, None]


def test_each_batch_is_scored_on_its_own() -> None:
    """Batches are told apart by identity, not by id(), which Python reuses for a new list."""
    import asyncio

    from prcli.judge import JudgeConfig, build_judge
    from prcli.train.rewards import BatchRewards
    from prcli.verify import VerifierPool

    with VerifierPool(workers=1) as pool:
        rewards = BatchRewards(build_judge(JudgeConfig()), pool=pool, samples_path=None)
        accuracy = rewards.functions()[0]

        async def step(answer: str) -> list[float | None]:
            completions = [[{"role": "assistant", "content": "\\boxed{5}"}]]
            return await accuracy(["p"], completions, answer=[answer], annotations=[["x"]], id=["q"])

        results = [asyncio.run(step(a)) for a in ["5", "6", "5", "6", "5", "6"]]
    assert results == [[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]]
