"""Model cards: `pr sft` and `pr train` name the real base model, the data, the method, rewards and
prcli's version; `pr eval --model-card` puts scores in the card's model-index; Hub options reach TRL."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

import eval_fixtures as fx
import prcli
from conftest import SMALL, annotated_set
from prcli.cli import app
from prcli.model_card import CITATION, base_model_of, published_files, render_card
from prcli.sft.config import SFTStageConfig, build_sft_config
from prcli.train import TrainConfig
from prcli.train.config import build_grpo_config

runner = CliRunner()
DATA = Path(__file__).parent / "data"
QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"


def test_the_base_model_is_followed_to_the_hub_not_guessed(tmp_path: Path) -> None:
    assert base_model_of("qwen2.5-vl-7b") == (QWEN, None)  # an alias
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2.5-VL-7B-Instruct" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert base_model_of(str(snapshot)) == (QWEN, str(snapshot.resolve()))  # the HF cache's layout
    (snapshot / "README.md").write_text("---\nbase_model: Qwen/Qwen2.5-VL-7B\n---\n")
    assert base_model_of(str(snapshot))[0] == QWEN  # a hub card names its parent: not followed
    plain = tmp_path / "mine"
    plain.mkdir()
    assert base_model_of(str(plain)) == (None, str(plain.resolve()))


def test_hub_options_reach_trl(tmp_path: Path) -> None:
    common = {"model": "m", "data": tmp_path / "d.jsonl", "output_dir": tmp_path / "my-run", "device": "cpu"}
    args = build_grpo_config(TrainConfig(**common, push_to_hub=True, hub_model_id="me/pr1"))
    assert args.push_to_hub and args.hub_model_id == "me/pr1"
    args = build_grpo_config(TrainConfig(**common, push_to_hub=True))
    assert args.hub_model_id == "my-run"  # TRL's default: the output folder's name
    assert not build_grpo_config(TrainConfig(**common)).push_to_hub
    sft = build_sft_config(SFTStageConfig(**common, push_to_hub=True, hub_model_id="me/sft"))
    assert sft.push_to_hub and sft.hub_model_id == "me/sft"


def _card(folder: Path) -> tuple[dict, str]:
    card = ModelCard.load(folder / "README.md")
    return card.data.to_dict(), card.text


@pytest.mark.slow
def test_sft_then_grpo_cards_then_eval_results(tiny_model_dir: Path, tmp_path: Path) -> None:
    # the tiny model where a download of Qwen2.5-VL-7B-Instruct would be
    base = tmp_path / "hub" / "models--Qwen--Qwen2.5-VL-7B-Instruct" / "snapshots" / "0123"
    shutil.copytree(tiny_model_dir, base)
    data = annotated_set(tmp_path, n=2)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**r, "cot": "Area is width times height."}) + "\n" for r in rows))
    sha = hashlib.sha256(data.read_bytes()).hexdigest()

    sft = tmp_path / "sft"
    args = ["sft", "-m", str(base), "--data", str(data), "-o", str(sft), "--batch-size", "2"]
    result = runner.invoke(app, [*args, "--max-pixels", "3136", "--max-steps", "2", "--save-steps", "1"])
    assert result.exit_code == 0, result.output
    meta, text = _card(sft)
    assert meta["base_model"] == QWEN and "prcli" in meta["tags"] and "sft" in meta["tags"]
    assert meta["pipeline_tag"] == "image-text-to-text" and meta["library_name"] == "transformers"
    assert f"prcli](https://github.com/prcli/prcli) {prcli.__version__}" in text
    assert (
        "supervised fine-tuning" in text and f"file `{data.name}`, sha256 `{sha}` (2 examples used)" in text
    )
    assert "fine-tuned version of" not in text  # TRL's card, written at each checkpoint, is replaced

    run = tmp_path / "pr1"
    result = runner.invoke(
        app, ["train", "-m", str(sft), "--data", str(data), "-o", str(run), *SMALL, "--max-steps", "1"]
    )
    assert result.exit_code == 0, result.output
    meta, text = _card(run)
    assert meta["base_model"] == QWEN  # through the SFT checkpoint's own card
    assert "(by way of the local checkpoint `sft`)" in text and str(tmp_path) not in text
    assert "perception-r1" in meta["tags"] and "Perception-R1: GRPO with a visual perception reward" in text
    for reward, weight in (
        ("accuracy", "0.9"),
        ("format", "0.1"),
        ("perception", "0.7"),
        ("repetition", "1"),
    ):
        assert f"| {reward} | {weight} |" in text
    assert "lexical rules (lexical-v2)" in text and CITATION in text
    assert "| num_generations | 4 |" in text and "| learning_rate | 1e-06 |" in text
    pushed = published_files(run)  # what --push-to-hub would upload: the model and its card only
    assert {"README.md", "config.json", "model.safetensors"} <= set(pushed)
    assert not [
        f for f in pushed if f.endswith((".yaml", ".jsonl")) or f.startswith(("checkpoint-", "runs/"))
    ]
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()

    # scores into the card's model-index: real MathVista testmini and Bard's real responses; a second eval
    # of the same benchmark and protocol replaces the entry
    outputs = json.loads((DATA / "mathvista" / "outputs" / "bard" / "output.json").read_text())
    preds = tmp_path / "preds.jsonl"
    eval_args = ["eval", "-b", "mathvista", "--data", str(DATA / "mathvista" / "testmini.json")]
    eval_args += [
        "--predictions",
        str(preds),
        "-o",
        str(tmp_path / "ev"),
        "--model-card",
        str(run),
        "--overwrite",
    ]
    values = []
    for blanked in (0, 100):  # the second time, the first 100 responses are lost (count as wrong)
        lines = [{"id": pid, "response": r["response"]} for pid, r in list(outputs.items())[blanked:]]
        preds.write_text("".join(json.dumps(x) + "\n" for x in lines))
        result = runner.invoke(app, eval_args)
        assert result.exit_code == 0, result.output
        summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
        (index,) = _card(run)[0]["model-index"]
        (entry,) = index["results"]
        assert entry["dataset"] == {
            "name": "MathVista (testmini)",
            "type": "AI4Math/MathVista",
            "split": "testmini",
        }
        (metric,) = entry["metrics"]
        assert (
            metric["value"] == round(summary["accuracy"], 2) and metric["name"] == "accuracy (rules protocol)"
        )
        values.append(metric["value"])
    assert values[0] > values[1] > 0
    assert _card(run)[0]["base_model"] == QWEN  # the rest of the card is kept


def test_eval_model_card_refuses_what_it_cannot_state(tmp_path: Path) -> None:
    bench = fx.mathvista(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "1", "response": "5"}) + "\n")
    args = [
        "eval",
        "-b",
        "mathvista",
        "--data",
        str(bench),
        "--predictions",
        str(preds),
        "-o",
        str(tmp_path / "o"),
    ]
    result = runner.invoke(app, [*args, "--model-card", str(tmp_path)])
    assert result.exit_code == 1 and "README.md not found" in result.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "README.md").write_text("---\ntags: [prcli]\n---\n")
    result = runner.invoke(app, [*args, "--model-card", str(tmp_path), "--limit", "2"])
    assert result.exit_code != 0 and "whole benchmark" in result.output
    result = runner.invoke(app, [*args, "--model-card", str(tmp_path)])  # 3 items are not testmini's 1000
    assert result.exit_code == 1 and "this copy of it has 3" in result.output, result.output
    assert not (tmp_path / "o").exists() and "model-index" not in (tmp_path / "README.md").read_text()


def test_a_hub_dataset_is_named_in_the_metadata(tmp_path: Path) -> None:
    facts = TrainConfig(model="qwen2.5-vl-7b", data="someone/geo3k-r1", output_dir=tmp_path / "o").card(10)
    card = ModelCard(render_card(facts))
    assert card.data.to_dict()["datasets"] == ["someone/geo3k-r1"]
    assert (
        "hub dataset [someone/geo3k-r1](https://huggingface.co/datasets/someone/geo3k-r1), revision not "
        "pinned (its latest when trained) (10 examples used)" in card.text
    )
    pinned = SFTStageConfig(
        model="qwen2.5-vl-7b", data="someone/geo3k-r1", revision="v1.2", output_dir=tmp_path / "s"
    ).card(10)
    assert (
        "hub dataset [someone/geo3k-r1](https://huggingface.co/datasets/someone/geo3k-r1/tree/v1.2) at "
        "revision `v1.2` (a branch or tag: the commit it named then is not recorded) (10 examples used)"
        in ModelCard(render_card(pinned)).text
    )
    sha = "0123456789abcdef0123456789abcdef01234567"
    for revision, shown in (
        (sha, f"tree/{sha}) at commit `{sha}` (10"),
        ("refs/pr/3", "tree/refs%2Fpr%2F3) at"),
    ):
        facts = SFTStageConfig(
            model="qwen2.5-vl-7b", data="someone/geo3k-r1", revision=revision, output_dir=tmp_path / "s"
        ).card(10)
        assert shown in ModelCard(render_card(facts)).text


def test_a_card_shows_no_local_path_or_custom_prompt_text(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    cfg = TrainConfig(
        model="qwen2.5-vl-7b",
        data=data,
        output_dir=tmp_path / "o",
        judge="hf",
        judge_model=str(tmp_path / "private" / "judge-32b"),
        prompt_template="Look | closely.\n{question}\nAnswer in \\boxed{}.",
    )
    text = ModelCard(render_card(cfg.card(1))).text
    assert str(tmp_path) not in text and "judge-32b (hf backend)" in text
    from prcli.train.checkpoints import prompt_text_hash

    assert (
        f"| prompt_template | custom text, prompt_text_hash {prompt_text_hash(cfg.prompt_template)} |" in text
    )
    assert "Look" not in text
    lines = text.split("## Training settings")[1].split("## Citation")[0].strip().splitlines()
    assert all(line.startswith("|") and line.endswith("|") for line in lines)  # one table, unbroken
    hub_judge = TrainConfig(
        model="m",
        data=data,
        output_dir=tmp_path / "o",
        judge="openai",
        judge_model="Qwen/Qwen2.5-32B-Instruct",
    )
    assert "Qwen/Qwen2.5-32B-Instruct (openai backend)" in render_card(hub_judge.card(1))


def test_the_items_scored_not_the_rows_read_must_be_the_published_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MathVerse's Text Only rows are read but not scored: rows can pass the count while the headline's
    items do not. Here the fixture's 3 rows stand against a published size of 2."""
    from prcli.eval import get_benchmark

    monkeypatch.setattr(get_benchmark("mathvista").hub, "items", 2)
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "README.md").write_text("---\ntags: [prcli]\n---\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "1", "response": "5"}) + "\n")
    args = ["eval", "-b", "mathvista", "--data", str(fx.mathvista(tmp_path)), "--predictions", str(preds)]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "o"), "--model-card", str(tmp_path / "card")])
    assert (
        result.exit_code == 1
        and "this copy of it has 3" in result.output
        and "the card is unchanged" in result.output
    )
    assert (tmp_path / "o" / "summary.json").is_file()  # the scores themselves stand
    assert "model-index" not in (tmp_path / "card" / "README.md").read_text()
