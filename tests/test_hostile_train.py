"""Issue 12, "never report a wrong result as right": `pr train` and `pr plot` on hostile inputs.

A judge that always fails, a half-written checkpoint, a model that cannot be found, a bad data
file, and eval items whose folders share a name. Real runs with the tiny model, real local servers.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SMALL, free_port
from hostile.builders import annotated_set
from prcli.cli import app
from prcli.testing import FaultServer

runner = CliRunner()
JUDGE = ["--judge", "openai", "--judge-max-retries", "1", "--judge-timeout", "2", "--no-judge-cache"]


def train(model: Path | str, data: Path, run: Path, *extra: str):
    return runner.invoke(
        app, ["train", "-m", str(model), "--data", str(data), "-o", str(run), *SMALL, *extra]
    )


def one_clean_error(output: str, expected: str) -> None:
    """The failure is reported as one `error:` line, without a traceback."""
    assert "Traceback" not in output, output
    errors = re.findall(r"error: (.*)", output)  # may follow a progress bar left open on its line
    assert len(errors) == 1 and expected in errors[0], output


def metric_steps(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- a judge that always fails


def test_dead_judge_stops_the_run_at_its_first_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    result = train(tiny_model_dir, data, run, "--max-steps", "2", *JUDGE, "--judge-base-url", dead)
    assert result.exit_code == 1
    one_clean_error(result.output, "judge: every judgement of the first step failed: connection error")
    assert not run.exists()  # a failed start leaves nothing behind, least of all a "trained" model


@pytest.mark.parametrize("status", ["401", "500"])
def test_judge_answering_errors_stops_the_run_before_any_update(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    secret = "sk-wrong-key-0123456789"
    monkeypatch.setenv("PRCLI_TEST_JUDGE_KEY", secret)
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")  # a folder that existed before the run is never deleted
    with FaultServer(default=status) as srv:
        result = train(
            tiny_model_dir,
            data,
            run,
            "--max-steps",
            "3",
            "--save-steps",
            "1",
            *JUDGE,
            "--judge-base-url",
            srv.base_url,
            "--judge-api-key-env",
            "PRCLI_TEST_JUDGE_KEY",
        )
        requests = len(srv.requests)
    assert result.exit_code == 1
    one_clean_error(result.output, f"judge: every judgement of the first step failed: HTTP {status}")
    assert secret not in result.output
    # the first step only: 8 rollouts, at most 2 attempts each (500 is retried once, 401 never)
    assert 8 <= requests <= 16
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "notes.txt"]  # no checkpoint, no model


def test_a_judge_that_fails_after_the_first_step_does_not_stop_training(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The first-step rule only: a later failure is logged (skip policy), not fatal at once (the
    outage guard needs a full window of steps: tests/test_outage.py)."""
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    with FaultServer(script=["ok"] * 8, default="500") as srv:
        result = train(
            tiny_model_dir, data, run, "--max-steps", "2", *JUDGE, "--judge-base-url", srv.base_url, "--json"
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["judge_failures"] == 8  # the second step's rollouts
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert [r["judge/failures"] for r in rows] == [0.0, 8.0] and rows[1]["judge/failure_rate"] == 1.0
    assert rows[1]["rewards/perception/mean"] is None  # skipped, not counted as zeros
    # the judge URL's traffic, as the client saw it: 8 answered, then 8 x (1 + 1 retry) failed attempts
    assert rows[0]["judge/endpoint/0/requests"] == 8 and rows[0]["judge/endpoint/0/failures"] == 0
    assert rows[1]["judge/endpoint/0/requests"] == 24 and rows[1]["judge/endpoint/0/failures"] == 16
    assert rows[1]["judge/endpoint/0/p95_s"] >= rows[1]["judge/endpoint/0/p50_s"] > 0


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def two_checkpoints(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run of 2 steps with a checkpoint after each (trained once for the module's tests)."""
    folder = tmp_path_factory.mktemp("two-checkpoints")
    data = annotated_set(folder)
    run = folder / "run"
    result = train(
        tiny_model_dir, data, run, "--max-steps", "2", "--save-steps", "1"
    )  # lexical judge: no cache
    assert result.exit_code == 0, result.output
    return data, run


def kill_during_save(checkpoint: Path, how: str) -> None:
    """What a kill -9 during transformers' save leaves behind."""
    if how == "only config.json":  # the model's config is written first
        for path in checkpoint.iterdir():
            if path.name != "config.json":
                path.unlink() if path.is_file() else shutil.rmtree(path)
    elif how == "truncated weights":
        weights = checkpoint / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:  # weights written, the optimizer and trainer state not yet
        for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"):
            (checkpoint / name).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["only config.json", "truncated weights", "no optimizer state"])
def test_resume_falls_back_to_the_newest_complete_checkpoint(
    tiny_model_dir: Path,
    tmp_path: Path,
    two_checkpoints: tuple[Path, Path],
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data, original = two_checkpoints
    run = tmp_path / "run"
    shutil.copytree(original, run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss": 0.0, "rewa')  # the kill also cut the metrics log mid-line
    kill_during_save(run / "checkpoint-2", how)
    result = train(tiny_model_dir, data, run, "--max-steps", "3", "--save-steps", "1", "--resume", "--json")
    assert result.exit_code == 0, result.output
    said = caplog.text  # warnings reach the console through logging (pytest captures them here)
    why = {"only config.json": "missing model weights", "truncated weights": "model.safetensors is truncated"}
    assert f"skipping incomplete checkpoint-2 ({why.get(how, 'missing optimizer state')}" in said
    assert "resuming from" in said and "checkpoint-1" in said
    summary = json.loads(result.stdout)
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["global_step"] == 3
    assert metric_steps(run) == [1, 2, 3]  # steps 2-3 redone, each logged once
    state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_resume_continues_from_the_checkpoint_weights(
    tiny_model_dir: Path, tmp_path: Path, two_checkpoints: tuple[Path, Path]
) -> None:
    """The policy after resuming is the checkpoint's, not the base model's (transformers 5 alone
    restores only lm_head: the saved names differ from the model's)."""
    from safetensors.torch import load_file, save_file

    data, original = two_checkpoints
    run = tmp_path / "run"
    shutil.copytree(original, run)
    weights = run / "checkpoint-2" / "model.safetensors"
    trained = {k: v + 0.05 for k, v in load_file(weights).items()}  # far from the base model
    save_file(trained, weights, metadata={"format": "pt"})
    result = train(tiny_model_dir, data, run, "--max-steps", "3", "--resume")
    assert result.exit_code == 0, result.output
    final = load_file(run / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert final.keys() == trained.keys()
    for name, value in final.items():  # one step at lr 1e-6 moves a weight by about 1e-6
        assert (value - trained[name]).abs().max() < 1e-3, name
        assert (value - base[name]).abs().max() > 0.04, name


def test_resume_without_a_complete_checkpoint_is_an_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-4" / "config.json").write_text("{}")
    result = train(tiny_model_dir, data, run, "--resume")
    assert result.exit_code == 1
    one_clean_error(result.output, "--resume: no complete checkpoint in")
    assert (
        "checkpoint-4: missing model weights, optimizer state, scheduler state, trainer_state.json"
        in result.output
    )
    assert sorted(p.name for p in run.rglob("*")) == ["checkpoint-4", "config.json"]  # untouched


# ----------------------------------------------------------------------------- start-up errors


@pytest.mark.parametrize(
    "model, message",
    [
        ("{tmp}/no-such-model", "model folder not found: {tmp}/no-such-model"),
        ("no-such-org/no-such-model", "cannot load model 'no-such-org/no-such-model': not a local folder"),
        ("{tmp}/img", "cannot load model '{tmp}/img' from {tmp}/img"),  # a folder without a model
    ],
)
def test_a_model_that_cannot_be_loaded_is_one_clean_line(tmp_path: Path, model: str, message: str) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    model, message = model.format(tmp=tmp_path), message.format(tmp=tmp_path)
    result = train(model, data, run)
    assert result.exit_code == 1
    one_clean_error(result.output, message)
    assert not run.exists()

    # `pr eval` loads models through the same path and says the same
    result = runner.invoke(
        app, ["eval", "-b", "local", "--data", str(data), "-m", model, "-o", str(tmp_path / "ev")]
    )
    assert result.exit_code == 1
    one_clean_error(result.output, message)


def test_a_policy_with_a_missing_weight_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    """transformers would initialise the weight at random and only log it: training noise, exit 0."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, model)
    weights = load_file(model / "model.safetensors")
    dropped = next(k for k in sorted(weights) if "visual" in k)
    del weights[dropped]
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    run = tmp_path / "run"
    result = train(model, annotated_set(tmp_path), run, "--max-steps", "1")
    assert result.exit_code == 1
    one_clean_error(result.output, "1 weight(s) missing or of the wrong shape")
    assert not run.exists()


def test_a_failed_start_leaves_no_run_files_and_the_fixed_rerun_just_works(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = annotated_set(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data.read_text() + '{"id": "x", "question": "q", "answer": "1"}\n')
    fresh = tmp_path / "fresh"
    result = train(tiny_model_dir, bad, fresh)
    assert result.exit_code == 1 and f"{bad}:5: annotations: required field is missing" in result.output
    assert not fresh.exists()

    # options that cannot work (8 completions on batches of 3), once found out at TRL's set-up
    uneven = ["--per-device-batch-size", "3"]
    result = train(tiny_model_dir, data, fresh, *uneven)
    assert result.exit_code == 1
    one_clean_error(result.output, "must split evenly")
    assert not fresh.exists()  # no config.yaml left to stand in the way of the corrected run

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "README").write_text("kept")
    for data_file, extra in ((bad, []), (data, uneven)):
        assert train(tiny_model_dir, data_file, existing, *extra).exit_code == 1
        assert sorted(p.name for p in existing.iterdir()) == ["README"]  # nothing written, nothing deleted

    result = train(tiny_model_dir, data, existing, "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert (existing / "config.yaml").exists() and (existing / "model.safetensors").exists()
    assert (existing / "README").read_text() == "kept"


@pytest.mark.parametrize("extra", [[], ["--max-steps", "5"], ["--epochs", "100"]])
def test_a_dataset_smaller_than_one_step_is_refused_before_the_model_loads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    """4 records, 8 prompts a step: TRL would run 0 steps and the untrained model be saved, exit 0."""
    from transformers import AutoModelForImageTextToText

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the data size was checked")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", no_model)
    data = annotated_set(tmp_path, n=4)
    run = tmp_path / "run"
    result = train(tiny_model_dir, data, run, "--prompts-per-step", "8", *extra)
    assert result.exit_code == 1
    one_clean_error(
        result.output,
        f"{data} has 4 usable record(s), but one optimizer step needs --prompts-per-step 8 prompts: "
        "nothing would be trained; lower --prompts-per-step to at most 4",
    )
    assert not run.exists()


def test_the_size_refusal_counts_the_prompts_dropped_for_length(tmp_path: Path) -> None:
    from prcli.errors import StageError
    from prcli.train import TrainConfig
    from prcli.train.data import check_enough_prompts

    cfg = TrainConfig(model="m", data=tmp_path / "d.jsonl", output_dir=tmp_path / "r", max_prompt_length=64)
    check_enough_prompts(128, 0, cfg)  # one whole step: fine
    with pytest.raises(
        StageError,
        match=r"has 100 usable record\(s\) \(30 more dropped as longer than "
        r"max_prompt_length=64\), but one optimizer step needs --prompts-per-step 128",
    ):
        check_enough_prompts(100, 30, cfg)


# ----------------------------------------------------------------------------- pr plot


DATA = Path(__file__).parent / "data" / "mathvista" / "outputs"


def eval_items(folder: Path, model: str, limit: int = 40) -> Path:
    """Real `pr eval` items: MathVista scored from a published model's outputs."""
    outputs = json.loads((DATA / model / "output.json").read_text())
    preds = folder / f"{model}.preds.jsonl"
    preds.write_text(
        "".join(json.dumps({"id": k, "response": v["extraction"]}) + "\n" for k, v in outputs.items())
    )
    out = folder / "evals" / model / "mathvista"
    args = [
        "eval",
        "-b",
        "mathvista",
        "--data",
        str(DATA / model / "output.json"),
        "--predictions",
        str(preds),
    ]
    result = runner.invoke(app, [*args, "--limit", str(limit), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "items.jsonl"


def series(png: Path) -> list[str]:
    """The legend entries drawn in a figure (written into the PNG by `pr plot`)."""
    from PIL import Image

    with Image.open(png) as im:
        return json.loads(im.text["Series"])


def test_plot_names_models_by_what_differs_in_their_paths(tmp_path: Path) -> None:
    items = [eval_items(tmp_path, "bard"), eval_items(tmp_path, "gpt4_2shot_solution")]
    out = tmp_path / "plots"
    result = runner.invoke(app, ["plot", *map(str, items), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert series(out / "eval_comparison.png") == ["bard", "gpt4_2shot_solution"]

    result = runner.invoke(app, ["plot", *map(str, items), "-o", str(out), "--labels", "base,pr1"])
    assert result.exit_code == 0, result.output
    assert series(out / "eval_comparison.png") == ["base", "pr1"]
    result = runner.invoke(app, ["plot", *map(str, items), "-o", str(out), "--labels", "A", "--labels", "B"])
    assert result.exit_code == 0, result.output
    assert series(out / "eval_comparison.png") == ["A", "B"]


def test_plot_refuses_two_series_with_one_name(tmp_path: Path) -> None:
    item = eval_items(tmp_path, "bard", limit=10)
    out = tmp_path / "plots"
    result = runner.invoke(app, ["plot", str(item), str(item), "-o", str(out)])
    assert result.exit_code == 1
    one_clean_error(result.output, "two series would be named")
    result = runner.invoke(app, ["plot", str(item), str(item), "-o", str(out), "--labels", "same,same"])
    assert result.exit_code == 1
    one_clean_error(result.output, "two series would be named 'same'")
    result = runner.invoke(app, ["plot", str(item), "-o", str(out), "--labels", "a,b"])
    assert result.exit_code == 1
    one_clean_error(result.output, "--labels gives 2 name(s) for 1 file(s)")
    assert not out.exists()
