"""The command surface, model aliases and config layering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from prcli.config import StageConfig, load_config_file, resolve_config, save_config
from prcli.jsonl import InputError
from prcli.models import ALIASES, resolve_model

COMMANDS = [
    "annotate",
    "convert",
    "sft",
    "train",
    "judge",
    "eval",
    "mcnemar",
    "report",
    "diagnose",
    "demo",
    "plot",
    "tasks",
    "tiny-model",
]


PR = str(Path(sys.executable).parent / "pr")  # the installed console script


def run_pr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PR, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand_with_a_description() -> None:
    result = run_pr("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        line = next((ln for ln in result.stdout.splitlines() if f" {name} " in ln), None)
        assert line is not None, f"{name} missing from pr --help"
        assert len(line.split(name, 1)[1].strip(" │")) > 10, f"{name} has no description"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_has_help(name: str) -> None:
    result = run_pr(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: pr " + name in " ".join(result.stdout.split())


def test_version() -> None:
    result = run_pr("--version")
    assert result.returncode == 0 and result.stderr.startswith("prcli ")


@pytest.mark.parametrize(
    ("alias", "hub_id"),
    [
        ("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
        ("Qwen2.5-VL-3B", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("qwen2.5-vl-32b", "Qwen/Qwen2.5-VL-32B-Instruct"),
        ("qwen2.5-vl-72b", "Qwen/Qwen2.5-VL-72B-Instruct"),
        ("qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct"),
        ("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct"),
        ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
        ("someone/custom-vlm", "someone/custom-vlm"),
    ],
)
def test_aliases(alias: str, hub_id: str) -> None:
    assert resolve_model(alias) == hub_id


def test_local_path_passes_through_even_if_named_like_an_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen2.5-vl-7b").mkdir()
    assert resolve_model("qwen2.5-vl-7b") == "qwen2.5-vl-7b"
    assert all(v.count("/") == 1 for v in ALIASES.values())


class DemoConfig(StageConfig):
    backend: str = "lexical"
    concurrency: int = 8
    weights: list[float] = Field(default_factory=lambda: [0.9, 0.1])


def test_cli_flags_win_over_yaml_which_wins_over_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend: openai\nconcurrency: 64\nweights: [1.0, 0.5]\n")
    cli = {"backend": "lexical", "concurrency": 16, "weights": [0.9, 0.1]}
    merged = resolve_config(DemoConfig, cli, explicit={"concurrency"}, config_file=cfg)
    assert merged == DemoConfig(backend="openai", concurrency=16, weights=[1.0, 0.5])
    saved = save_config(merged, tmp_path / "run" / "config.yaml", extra={"prcli_version": "x"})
    assert load_config_file(saved) == {
        "backend": "openai",
        "concurrency": 16,
        "weights": [1.0, 0.5],
        "prcli_version": "x",
    }


def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("concurency: 3\n")
    with pytest.raises(
        InputError, match=r"c.yaml: concurency: not an option of this command; did you mean concurrency\?"
    ):
        resolve_config(DemoConfig, {}, set(), cfg)
    cfg.write_text("zzz: 3\n")
    with pytest.raises(InputError, match=r"c.yaml: zzz: not an option of this command$"):
        resolve_config(DemoConfig, {}, set(), cfg)
    cfg.write_text("concurrency: lots\n")
    with pytest.raises(InputError, match=r"c.yaml: concurrency: Input should be a valid integer"):
        resolve_config(DemoConfig, {}, set(), cfg)
    cfg.write_text("a: [1, 2\n")
    with pytest.raises(InputError, match=r"c.yaml:2: invalid YAML"):
        load_config_file(cfg)
    cfg.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config_file(cfg)
    with pytest.raises(InputError, match="config file not found"):
        load_config_file(tmp_path / "none.yaml")


def test_dashed_keys_are_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("concurrency: 2\n")
    assert isinstance(resolve_config(DemoConfig, {}, set(), cfg), BaseModel)
    (tmp_path / "d.yaml").write_text("max-steps: 3\n")
    assert load_config_file(tmp_path / "d.yaml") == {"max_steps": 3}


# ----------------------------------------------------------------------------- one LLM connection config


def test_an_llm_connection_is_one_model_given_flat_or_nested(tmp_path: Path) -> None:
    """`judge_*` keys, a nested `judge_endpoint` mapping and the flags all fill one Endpoint; the
    role's own defaults hold for what is not given."""
    from prcli.judge.core import JudgeConfig
    from prcli.llm import Endpoint
    from prcli.train import TrainConfig

    base = {"model": "m", "data": tmp_path / "a.jsonl", "output_dir": tmp_path / "run"}
    flat = TrainConfig(**base, judge_base_url="http://a/v1", judge_timeout=5)
    assert flat.judge_endpoint == Endpoint(base_url=["http://a/v1"], timeout=5, concurrency=256)
    nested = tmp_path / "nested.yaml"
    nested.write_text("judge_endpoint:\n  base_url: [http://a/v1, http://b/v1]\n  timeout: 5\n")
    cfg = resolve_config(TrainConfig, base, explicit=set(base), config_file=nested)
    assert (
        cfg.judge_endpoint.base_url == ["http://a/v1", "http://b/v1"]
        and cfg.judge_endpoint.concurrency == 256
    )
    # the same defaults for the perception judge in `pr judge` and `pr train`
    assert JudgeConfig().endpoint == TrainConfig(**base).judge_endpoint
    # a saved config.yaml (nested) is a valid --config again
    save_config(cfg, tmp_path / "saved.yaml")
    again = resolve_config(TrainConfig, base, explicit=set(base), config_file=tmp_path / "saved.yaml")
    assert again.judge_endpoint == cfg.judge_endpoint


def test_connection_options_are_generated_for_every_role() -> None:
    for command, prefixes in {
        "train": ["--judge-"],
        "judge": ["--"],
        "annotate": ["--teacher-", "--extractor-"],
        "eval": ["--answer-judge-"],
    }.items():
        text = run_pr(command, "--help").stdout
        for prefix in prefixes:
            for option in ("base-url", "model", "api-key-env", "concurrency", "timeout", "max-retries"):
                assert f"{prefix}{option} " in text, (command, prefix, option)


def test_a_connection_setting_a_role_does_not_use_is_refused(tmp_path: Path) -> None:
    from prcli.annotate.run import AnnotateConfig

    base = {"problems": tmp_path / "p.jsonl", "out": tmp_path / "o.jsonl"}
    from prcli.eval.config import EvalConfig
    from prcli.train import TrainConfig

    with pytest.raises(ValueError, match="--teacher-prompt: teacher does not use this setting"):
        AnnotateConfig(**base, teacher="openai", teacher_model="t", teacher_prompt=tmp_path / "x.txt")
    with pytest.raises(ValueError, match="--teacher-structured: teacher does not use"):
        AnnotateConfig(**base, teacher="openai", teacher_model="t", teacher_endpoint={"structured": "json"})
    with pytest.raises(ValueError, match="--answer-judge-device: answer_judge does not use"):
        EvalConfig(bench="local", out=tmp_path / "e", model="m", answer_judge_device="cuda")
    with pytest.raises(ValueError, match="--teacher openai needs --teacher-model"):
        AnnotateConfig(**base, teacher="openai")
    with pytest.raises(ValueError, match="nonsense"):
        TrainConfig(model="m", data=tmp_path / "a", output_dir=tmp_path / "r", judge_endpoint={"nonsense": 1})
    # no option is offered for what a role does not use
    assert "--teacher-prompt" not in run_pr("annotate", "--help").stdout


def test_an_error_shows_brackets_as_written(tmp_path: Path) -> None:
    """rich used to read `[test]` in a path as markup and drop it from the message."""
    from typer.testing import CliRunner

    from prcli.cli import app

    missing = tmp_path / "runs[test]" / "none.jsonl"
    result = CliRunner().invoke(app, ["judge", str(missing), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code != 0 and "runs[test]" in result.output, result.output


@pytest.mark.parametrize(
    "url",
    ["https://alice:sk-proj-SECRET1234@api.example.com/v1", "https://gen.example.com/v1?key=AIzaSECRET1234"],
)
def test_a_url_with_a_credential_is_refused_without_repeating_it(tmp_path: Path, url: str) -> None:
    from typer.testing import CliRunner

    from prcli.cli import app

    runner = CliRunner()
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"id": "a", "response": "x", "annotations": ["y"]}\n')
    for args in (
        ["judge", str(responses), "-o", str(tmp_path / "j.jsonl"), "--backend", "openai", "--base-url", url],
        [
            "eval",
            "-b",
            "mathvista",
            "--predictions",
            str(responses),
            "-o",
            str(tmp_path / "e"),
            "--base-url",
            url,
        ],
        [
            "train",
            "-m",
            "m",
            "--data",
            str(responses),
            "-o",
            str(tmp_path / "t"),
            "--vllm",
            "server",
            "--vllm-server-url",
            url,
        ],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "carries a credential" in result.output, result.output
        assert "SECRET" not in result.output
    assert not any(tmp_path.glob("[jet]*"))
    from prcli.llm import Endpoint

    assert Endpoint(base_url="http://judge:8000/v1?timeout=30").base_url == [
        "http://judge:8000/v1?timeout=30"
    ]


def test_an_input_argument_may_come_from_the_config_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from prcli.cli import app

    responses = tmp_path / "r.jsonl"
    responses.write_text('{"id": "a", "response": "AB = 3", "annotations": ["AB = 3", "BC = 4"]}\n')
    cfg = tmp_path / "judge.yaml"
    cfg.write_text(f"responses: {responses}\nout: {tmp_path / 'j.jsonl'}\n")
    result = CliRunner().invoke(app, ["judge", "--config", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "j.jsonl").read_text())["score"] == 0.5
    result = CliRunner().invoke(app, ["mcnemar", str(tmp_path / "j.jsonl")])
    assert (
        result.exit_code == 1
        and "b: required: give B on the command line or b: in the --config file" in result.output
    )
