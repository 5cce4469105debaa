"""The shipped examples are valid: accelerate configs load, the training YAML resolves, scripts parse,
the GPU install gives what they use, and our pins stay inside the ranges the installed TRL declares."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from prcli.config import resolve_config
from prcli.train import TrainConfig
from prcli.train.config import build_grpo_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
TRAIN_CONFIGS = sorted(
    EXAMPLES.glob("*.yaml")
)  # `pr train --config` files (accelerate's live in accelerate/)


@pytest.mark.parametrize(
    ("name", "kind", "processes", "machines"),
    [
        ("single_gpu.yaml", "NO", 1, 1),
        ("zero3_8gpu.yaml", "DEEPSPEED", 8, 1),
        ("zero3_2nodes.yaml", "DEEPSPEED", 16, 2),
        ("fsdp_8gpu.yaml", "FSDP", 8, 1),
    ],
)
def test_accelerate_configs_load(name: str, kind: str, processes: int, machines: int) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(EXAMPLES / "accelerate" / name))
    assert cfg.distributed_type.value == kind
    assert (cfg.num_processes, cfg.num_machines) == (processes, machines)


def test_paper_training_yaml_resolves_to_the_released_run(tmp_path: Path) -> None:
    cli = {"model": "qwen2.5-vl-7b", "data": tmp_path / "a.jsonl", "output_dir": tmp_path / "run"}
    cfg = resolve_config(TrainConfig, cli, explicit=set(cli), config_file=EXAMPLES / "train_paper.yaml")
    assert cfg.judge == "openai" and cfg.judge_endpoint.model == "Qwen/Qwen2.5-32B-Instruct-AWQ"
    assert cfg.weights.as_list() == [0.9, 0.1, 0.7, 1.0] and cfg.vllm == "colocate"
    args = build_grpo_config(cfg.model_copy(update={"device": "cpu", "vllm": "off"}))
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 128 * 8
    assert cfg.dual_clip == 3.0 and args.delta == 3.0
    # what the released run did beyond the numbers: no constrained judge decoding, no IS correction,
    # a judge timeout that outlasts the server's queue at 1,024 requests a step
    assert cfg.judge_endpoint.structured == "off" and cfg.judge_endpoint.timeout >= 300
    args = build_grpo_config(cfg.model_copy(update={"device": "cpu"}))
    assert args.use_vllm and args.vllm_importance_sampling_correction is False


def test_paper_prompt_is_the_one_line_text_the_released_run_fed() -> None:
    """The launch script passes the instruction with line breaks on the command line; the config
    loader (OmegaConf.from_cli) parses `key=value` as the YAML `key: value`, a plain scalar, whose
    line breaks fold with the next line's indent into one space."""
    from prcli.prompts import R1_FORMAT, R1_FORMAT_MULTILINE, render_template

    folded = yaml.safe_load("format_prompt: " + R1_FORMAT_MULTILINE)["format_prompt"]
    assert folded == R1_FORMAT != R1_FORMAT_MULTILINE
    assert render_template("r1", "Q?") == "Q? " + R1_FORMAT


def test_paper_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(EXAMPLES / "perception_r1_paper.sh")], check=True)


def test_scripts_use_only_shipped_train_configs() -> None:
    used = {m for sh in EXAMPLES.glob("*.sh") for m in re.findall(r"--config (\S+\.yaml)", sh.read_text())}
    assert used and used <= {f"examples/{p.name}" for p in TRAIN_CONFIGS}


# ----------------------------------------------------------------------------- the GPU install


def extra_requirements(extra: str) -> list[Requirement]:
    """The requirements of one of our extras, with `prcli[a,b]` self-references expanded."""
    found = []
    for line in PYPROJECT["optional-dependencies"][extra]:
        req = Requirement(line)
        if canonicalize_name(req.name) == "prcli":
            found += [r for e in sorted(req.extras) for r in extra_requirements(e)]
        else:
            found.append(req)
    return found


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_example_train_config_is_valid_and_its_tracker_is_in_the_gpu_extra(
    path: Path, tmp_path: Path
) -> None:
    cli = {"model": "qwen2.5-vl-7b", "data": tmp_path / "a.jsonl", "output_dir": tmp_path / "run"}
    cfg = resolve_config(TrainConfig, cli, explicit=set(cli), config_file=path)
    build_grpo_config(cfg.model_copy(update={"device": "cpu", "vllm": "off"}))  # TRL's own checks
    gpu = {canonicalize_name(r.name) for r in extra_requirements("gpu")}
    package = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(cfg.report_to)
    assert package is None or canonicalize_name(package) in gpu, f"{path.name}: {package} not in [gpu]"
    if cfg.vllm != "off":
        assert "vllm" in gpu


def test_gpu_extra_covers_vllm_and_deepspeed() -> None:
    """examples/perception_r1_paper.sh runs `vllm serve`; the zero3 accelerate configs run DeepSpeed."""
    gpu = {canonicalize_name(r.name) for r in extra_requirements("gpu")}
    assert {"vllm", "deepspeed", "tensorboard"} <= gpu


# ----------------------------------------------------------------------------- pins inside TRL's ranges

CHECKED = ("vllm", "deepspeed", "transformers", "accelerate", "peft")
TRL_EXTRAS = ("", "vllm", "deepspeed", "peft")  # what our install pulls in, as TRL names it


def our_requirements() -> list[Requirement]:
    lines = list(PYPROJECT["dependencies"])
    lines += [x for extra, reqs in PYPROJECT["optional-dependencies"].items() if extra != "dev" for x in reqs]
    return [Requirement(x) for x in lines if canonicalize_name(Requirement(x).name) != "prcli"]


def trl_specifier(name: str) -> SpecifierSet | None:
    """All that the installed TRL declares for `name`, over its core and the extras we rely on."""
    env = default_environment()
    found = None
    for line in importlib.metadata.requires("trl") or []:
        req = Requirement(line)
        if canonicalize_name(req.name) != name:
            continue
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in TRL_EXTRAS):
            found = req.specifier if found is None else found & req.specifier
    return found


def candidates(*specs: SpecifierSet) -> list[Version]:
    """Versions on and around every bound of `specs`, plus a very old and a very new one."""
    out = [Version("0.0.1"), Version("999")]
    for spec in specs:
        for s in spec:
            v = Version(s.version.replace(".*", ""))
            major, minor, micro = (*v.release, 0, 0)[:3]
            out += [v, Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}")]
            out += [Version(f"{major}.{minor}.{micro - 1}")] if micro else []
            out += [Version(f"{major}.{minor - 1}.99")] if minor else []
    return out


def test_installed_trl_is_the_one_we_pin() -> None:
    (trl,) = [r for r in our_requirements() if r.name == "trl"]
    assert any(s.operator in ("<", "<=", "==", "~=") for s in trl.specifier), "trl needs an upper bound"
    assert Version(importlib.metadata.version("trl")) in trl.specifier


@pytest.mark.parametrize("name", CHECKED)
def test_our_pins_stay_inside_what_trl_declares(name: str) -> None:
    theirs = trl_specifier(name)
    if theirs is None:
        pytest.skip(f"the installed trl declares nothing for {name}")
    ours = [r for r in our_requirements() if canonicalize_name(r.name) == name]
    assert ours, f"trl declares {name}{theirs}; pin it too"
    for req in ours:
        outside = [
            str(v) for v in candidates(req.specifier, theirs) if v in req.specifier and v not in theirs
        ]
        assert not outside, f"{req} allows {outside}, outside trl's {name}{theirs}"


def test_the_trl_named_example_is_the_paper_run(tmp_path: Path) -> None:
    """README "Coming from TRL": the paper's run in TRL's names gives TRL the same settings as ours."""
    cli = {"data": tmp_path / "a.jsonl", "output_dir": tmp_path / "run"}
    trl = resolve_config(TrainConfig, cli, explicit=set(cli), config_file=EXAMPLES / "train_trl_names.yaml")
    cli_paper = {**cli, "model": "qwen2.5-vl-7b"}
    paper = resolve_config(
        TrainConfig, cli_paper, explicit=set(cli_paper), config_file=EXAMPLES / "train_paper.yaml"
    )
    assert trl.model == "Qwen/Qwen2.5-VL-7B-Instruct" and trl.extra_trl_args == {
        "mask_truncated_completions": False,
        "log_completions": False,
    }
    ours = {k: v for k, v in trl.model_dump().items() if k not in ("model", "extra_trl_args")}
    assert ours == {k: v for k, v in paper.model_dump().items() if k not in ("model", "extra_trl_args")}
    cpu = {"device": "cpu", "vllm": "off"}
    assert (
        build_grpo_config(trl.model_copy(update=cpu)).to_dict()
        == build_grpo_config(paper.model_copy(update=cpu)).to_dict()
    )


def test_the_trl_named_example_runs_from_the_command_line_without_m(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's command: the model comes from the YAML's model_name_or_path (no -m); offline, the run
    gets as far as loading that model, and stops there without writing anything."""
    from typer.testing import CliRunner

    from prcli.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "a.jsonl"
    data.write_text("{}\n")
    args = ["train", "--config", str(EXAMPLES / "train_trl_names.yaml"), "--data", str(data)]
    args += ["-o", str(tmp_path / "run"), "--vllm", "off", "--judge", "lexical", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "cannot load model 'Qwen/Qwen2.5-VL-7B-Instruct'" in result.output
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, ["train", "--data", str(data), "-o", str(tmp_path / "run")])
    assert (
        result.exit_code == 1
        and "model: required: give --model on the command line or model:" in result.output
    )
