"""`pr sft` on CPU with the tiny Qwen2.5-VL: the loss falls and the saved model answers in the trained format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import annotated_set
from prcli.cli import app
from prcli.rewards import format_reward
from prcli.sft.run import target_text

pytestmark = pytest.mark.slow
runner = CliRunner()


def with_cots(folder: Path, n: int = 4) -> Path:
    path = annotated_set(folder, n=n)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        r["cot"] = "Area is width times height."
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_target_wraps_a_plain_cot_and_keeps_a_formatted_one() -> None:
    wrapped = target_text("Area is 2 x 3.", "6")
    assert format_reward(wrapped) == 1.0 and wrapped.startswith("<think>\nArea is 2 x 3.\n</think>")
    done = "<think>\nok\n</think>\n<answer>\n\\boxed{6}\n</answer>"
    assert target_text(done, "6") == done


def test_a_record_without_cot_is_refused_with_its_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path, n=2)
    run = tmp_path / "run"
    result = runner.invoke(app, ["sft", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run)])
    assert result.exit_code != 0
    assert f"{data}:1" in result.output and "cot" in result.output, result.output
    assert not run.exists()


def test_sft_learns_the_format_and_the_model_reloads(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = with_cots(tmp_path)
    run = tmp_path / "run"
    args = ["sft", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), "--seed", "0"]
    args += [
        "--max-steps",
        "40",
        "--learning-rate",
        "1e-2",
        "--warmup-ratio",
        "0",
        "--batch-size",
        "4",
        "--per-device-batch-size",
        "4",
    ]
    args += ["--min-pixels", "3136", "--max-pixels", "3136", "--save-steps", "10", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["global_step"] == 40 and summary["train_examples"] == 4

    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and losses[-1] < losses[0] / 3, losses
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["loss_on"].startswith("completion") and saved["max_steps"] == 40
    assert (run / "checkpoint-10").is_dir()

    from transformers import AutoModelForImageTextToText

    from prcli.generation import ChatGenerator
    from prcli.prompts import render_template, user_content
    from prcli.train.data import fit_image

    AutoModelForImageTextToText.from_pretrained(run)  # a plain from_pretrained model folder
    gen = ChatGenerator(str(run), device="cpu", min_pixels=3136, max_pixels=3136)
    first = json.loads(data.read_text().splitlines()[0])
    text = render_template("r1", first["question"])
    conv = [{"role": "user", "content": user_content(text, 1)}]
    from prcli.train.data import ImageBounds

    image = fit_image(tmp_path / first["images"][0], ImageBounds(3136, 3136, 28))
    (reply,) = gen.chat([conv], images=[[image]], max_new_tokens=60)
    assert reply.startswith("<think>\n") and format_reward(reply) == 1.0, (reply, losses[-5:])


def test_lora_sft_saves_a_merged_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = with_cots(tmp_path, n=2)
    run = tmp_path / "run"
    args = ["sft", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), "--max-steps", "2"]
    args += ["--batch-size", "2", "--lora", "--lora-r", "4", "--lora-alpha", "8", "--max-pixels", "3136"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["global_step"] == 2
    assert (run / "config.json").is_file() and not (run / "adapter_config.json").exists()


def test_a_fresh_run_never_mixes_with_an_earlier_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A second run into the same folder used to append its metrics to the first run's."""
    data = with_cots(tmp_path, n=2)
    run = tmp_path / "run"
    args = ["sft", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), "--batch-size", "2"]
    args += ["--max-pixels", "3136", "--save-steps", "1"]
    assert runner.invoke(app, [*args, "--max-steps", "2"]).exit_code == 0
    before = (run / "metrics.jsonl").read_bytes()

    again = runner.invoke(app, [*args, "--max-steps", "3"])
    assert again.exit_code != 0 and "holds an earlier run" in again.output and "--overwrite" in again.output
    assert (run / "metrics.jsonl").read_bytes() == before  # nothing of the refused run written

    both = runner.invoke(app, [*args, "--max-steps", "3", "--resume", "--overwrite"])
    assert both.exit_code != 0 and "choose one" in both.output

    fresh = runner.invoke(app, [*args, "--max-steps", "3", "--overwrite"])
    assert fresh.exit_code == 0, fresh.output
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]


def test_overwrite_never_removes_an_input(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    data = with_cots(run, n=2)  # the data lives in the folder of an earlier run
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    args = ["sft", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), "--max-steps", "1"]
    result = runner.invoke(app, [*args, "--batch-size", "2", "--max-pixels", "3136", "--overwrite"])
    assert result.exit_code != 0 and "would remove" in result.output, result.output
    assert data.is_file() and (run / "metrics.jsonl").read_text() == '{"step": 1}\n'
