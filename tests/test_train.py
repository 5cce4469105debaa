"""`pr train` on CPU with the tiny Qwen2.5-VL: checkpoints, resume, LoRA, judge outages, learning.

Runs across processes (DDP, FSDP2) are in test_train_distributed.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SMALL, annotated_set, make_image
from prcli.cli import app
from prcli.errors import StageError
from prcli.records import AnnotatedProblem
from prcli.train import TrainConfig
from prcli.train.config import build_grpo_config
from prcli.train.data import ImageBounds, build_rows, load_dataset_rows, load_processor, prompt_length
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
        assert {"reward", "judge/failures", "judge/seconds", "step_time", "loss"} <= r.keys()
    # the console: one line a step with the essentials, none of TRL's raw dicts or library warnings
    shown = [x for x in result.stderr.splitlines() if x.startswith("step ")]
    assert [x.split(" | ")[0] for x in shown] == ["step 1/3", "step 2/3", "step 3/3"], result.stderr
    assert all("acc " in x and "perc " in x and "judge 0 failed" in x and " left" in x for x in shown)
    for noise in ("{'loss'", "Warning", "Writing model shards", "Casting the dataset"):
        assert noise not in result.stderr, noise
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


def test_verbose_shows_trl_raw_logs(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path, n=2)
    result = runner.invoke(
        app, train_args(tiny_model_dir, data, tmp_path / "run", "--max-steps", "1", "--verbose")
    )
    assert result.exit_code == 0, result.output
    assert "'rewards/perception/mean'" in result.stderr and "step 1/1 |" not in result.stderr


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

    # going on with another prompt text than the run started with is refused, nothing changed
    before = (run / "config.yaml").read_text()
    result = runner.invoke(app, [*base, "--max-steps", "5", "--resume", "--prompt-template", "cot"])
    assert result.exit_code == 1 and "prompt_text_hash differ(s)" in result.output, result.output
    assert (run / "config.yaml").read_text() == before and not (run / "checkpoint-5").exists()

    # so is going on under other lexical judge rules (a run started by an older prcli)
    assert "judge_rules: lexical-v2" in before
    (run / "config.yaml").write_text(before.replace("judge_rules: lexical-v2", "judge_rules: lexical-v1"))
    result = runner.invoke(app, [*base, "--max-steps", "5", "--resume"])
    assert result.exit_code == 1 and "judge_rules differ(s)" in result.output, result.output
    assert not (run / "checkpoint-5").exists()


def test_kl_is_logged_when_on(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    args = train_args(tiny_model_dir, data, run, "--max-steps", "2", "--beta", "0.04")
    assert runner.invoke(app, args).exit_code == 0
    assert all(isinstance(r.get("kl"), float) for r in metrics(run))


def test_a_tracker_that_cannot_start_stops_the_run_first(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    data = annotated_set(tmp_path)
    result = runner.invoke(app, train_args(tiny_model_dir, data, tmp_path / "r", "--report-to", "wandb"))
    assert result.exit_code == 1 and "no W&B API key; set WANDB_API_KEY" in result.output
    assert not (tmp_path / "r").exists()


def test_tensorboard_run_goes_where_the_other_stages_put_theirs(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = annotated_set(tmp_path, n=2)
    run = tmp_path / "run"
    args = ["--max-steps", "1", "--report-to", "tensorboard", "--run-name", "lr1e-6", "--project", "ablation"]
    result = runner.invoke(app, train_args(tiny_model_dir, data, run, *args))
    assert result.exit_code == 0, result.output
    (events,) = (run / "runs" / "ablation" / "lr1e-6").glob("events.out.tfevents.*")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert any("rewards/perception" in tag for tag in scalars), scalars
    assert yaml.safe_load((run / "config.yaml").read_text())["run_name"] == "lr1e-6"


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
    assert not args.use_vllm and args.vllm_max_model_length is None and not args.vllm_enable_sleep_mode


def test_grpo_config_bounds_colocated_vllm(tmp_path: Path) -> None:
    """vLLM's context is what a run can use (prompt + completion), not the model's whole window."""
    cfg = TrainConfig(
        model="qwen2.5-vl-7b",
        data=tmp_path / "d.jsonl",
        output_dir=tmp_path / "o",
        device="cpu",
        vllm="colocate",
        vllm_gpu_memory_utilization=0.5,
        vllm_sleep_mode=True,
        max_prompt_length=3000,
    )
    args = build_grpo_config(cfg)
    assert args.use_vllm and args.vllm_mode == "colocate" and args.vllm_gpu_memory_utilization == 0.5
    assert args.vllm_max_model_length == 3000 + 4096 and args.vllm_enable_sleep_mode
    with pytest.raises(ValueError, match="--vllm-sleep-mode needs --vllm colocate"):
        TrainConfig(model="m", data=tmp_path, output_dir=tmp_path, vllm_sleep_mode=True)


def test_fitted_images_are_left_alone_by_the_processors() -> None:
    """A fitted size has sides in whole 28-pixel cells and an area within the bounds, so Qwen-VL's
    `smart_resize` keeps it, under our bounds as under any wider ones (Qwen2.5-VL's own: 3136..12845056)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    for low, high in [(3136, 1806336), (3136, 12544), (6272, 9408), (3136, 3136)]:
        bounds = ImageBounds(low, high, 28)
        for width in range(20, 3000, 71):
            for height in range(20, 3000, 97):
                w, h = bounds.fitted_size(width, height)
                assert w % 28 == h % 28 == 0 and low <= w * h <= high, (low, high, width, height)
                assert smart_resize(h, w, 28, low, high) == (h, w)
                assert smart_resize(h, w, 28, 3136, 12845056) == (h, w)
    assert ImageBounds(3136, 1806336, 28).fitted_size(1344, 1344) == (1344, 1344)
    assert ImageBounds(3136, 1806336, 28).fitted_size(2000, 1000) == (1876, 952)  # aspect kept
    with pytest.raises(StageError, match="no image of whole 28x28 cells has between 5000 and 5400 pixels"):
        ImageBounds(5000, 5400, 28)


@pytest.mark.parametrize("bounds", [(6272, 9408), (3136, 1806336)])
def test_image_tokens_agree_with_the_processor_vllm_builds(
    tiny_model_dir: Path, tmp_path: Path, bounds: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    """vLLM (colocated or `trl vllm-serve`) builds its processor from the model folder, with the model's
    own bounds (the tiny model's: 3136..12544), not ours. Images fitted once in the dataset give it the
    same image tokens as the trainer's processor: above --max-pixels, below --min-pixels (ours only, or
    the model's too), and above the model's own bound (1806336 is clamped to 12544, with a warning)."""
    from PIL import Image
    from transformers import AutoProcessor

    sizes = [(300, 200), (70, 70), (40, 30), (56, 56)]
    rows = []
    for i, size in enumerate(sizes):
        make_image(tmp_path / "img" / f"{i}.png", color=(40 * i, 120, 200), size=size)
        rows.append(
            {
                "id": f"p{i}",
                "question": "<image>Area?",
                "images": [f"img/{i}.png"],
                "answer": "6",
                "annotations": ["x"],
            }
        )
    Image.new("RGBA", (60, 60), (0, 0, 0, 0)).save(tmp_path / "img" / "clear.png")  # transparent: white
    rows.append({**rows[0], "id": "clear", "images": ["img/clear.png"]})
    data = tmp_path / "annotated.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    low, high = bounds
    cfg = TrainConfig(
        model=str(tiny_model_dir), data=data, output_dir=tmp_path / "o", min_pixels=low, max_pixels=high
    )

    processor = load_processor(cfg)
    dataset, dropped = load_dataset_rows(data, cfg, processor)
    vllm_view = AutoProcessor.from_pretrained(tiny_model_dir)
    assert dropped == 0 and len(dataset) == len(rows)
    assert ("reach outside" in caplog.text) == (high > 12544)  # the model's bound wins, with a warning

    def grid(proc: Any, image: Any) -> list[list[int]]:
        return proc.image_processor(images=[image], return_tensors="np")["image_grid_thw"].tolist()

    for row in dataset:
        (image,) = row["images"]
        assert image.mode == "RGB" and low <= image.width * image.height <= min(high, 12544)
        assert grid(processor, image) == grid(vllm_view, image)
        assert prompt_length(row, processor) == prompt_length(row, vllm_view)
    assert [Image.open(tmp_path / "img" / f"{i}.png").size for i in range(len(sizes))] == sizes  # files kept
    assert dataset[len(sizes)]["images"][0].getpixel((0, 0)) == (255, 255, 255)


def test_a_phone_photo_is_trained_upright(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A JPEG stored sideways with EXIF Orientation=6 is turned upright, as `load_image`
    turns it, before it is fitted: the PNG in the dataset keeps no EXIF to turn it later. 112x56 is
    already whole 28-pixel cells within the bounds, so fitting leaves the pixels as `load_image` gives them."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor
    from transformers.image_utils import load_image

    sideways = Image.new("RGB", (112, 56), "red")
    sideways.paste((0, 0, 255), (56, 0, 112, 56))  # right half blue: after turning, the bottom half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    photo = tmp_path / "img" / "photo.jpg"
    photo.parent.mkdir()
    sideways.save(photo, exif=exif, quality=95)
    row = {
        "id": "p",
        "question": "<image>Which?",
        "images": ["img/photo.jpg"],
        "answer": "1",
        "annotations": ["x"],
    }
    data = tmp_path / "annotated.jsonl"
    data.write_text(json.dumps(row) + "\n")
    cfg = TrainConfig(model=str(tiny_model_dir), data=data, output_dir=tmp_path / "o")

    dataset, _ = load_dataset_rows(data, cfg, load_processor(cfg))
    (stored,) = dataset[0]["images"]
    upright = load_image(str(photo))
    assert stored.size == upright.size == (56, 112)  # taller than wide
    assert np.array_equal(np.asarray(stored), np.asarray(upright))
    fresh = AutoProcessor.from_pretrained(tiny_model_dir).image_processor
    grid = fresh(images=[upright], return_tensors="np")["image_grid_thw"].tolist()
    assert fresh(images=[stored], return_tensors="np")["image_grid_thw"].tolist() == grid == [[1, 8, 4]]


def test_an_image_too_long_and_thin_is_a_bad_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Qwen-VL refuses an aspect ratio over 200:1: such a record is rejected with --skip-invalid, with
    its line and why, like any bad line (without it, the hostile case train-an-image-too-long-and-thin).
    The model gets Qwen2.5-VL's own bounds: the tiny model's squeeze a 10000x1 image to 448x28."""
    model = tmp_path / "wide-model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "processor_config.json").read_text())
    config["image_processor"]["size"]["longest_edge"] = 12845056
    (model / "processor_config.json").write_text(json.dumps(config))
    data = annotated_set(tmp_path, n=2)
    make_image(tmp_path / "img" / "wide.png", size=(10000, 1))
    row = {
        "id": "wide",
        "question": "<image>?",
        "images": ["img/wide.png"],
        "answer": "1",
        "annotations": ["x"],
    }
    data.write_text(data.read_text() + json.dumps(row) + "\n")
    cfg = TrainConfig(model=str(model), data=data, output_dir=tmp_path / "o", skip_invalid=True)

    rejected = tmp_path / "rejected.jsonl"
    dataset, dropped = load_dataset_rows(data, cfg, load_processor(cfg), rejected)
    assert dataset["id"] == ["p0", "p1"] and dropped == 0
    (bad,) = [json.loads(x) for x in rejected.read_text().splitlines()]
    assert bad["line"] == 3 and json.loads(bad["raw"])["id"] == "wide"
    assert "wide.png (10000x1 pixels) is too long and thin" in bad["errors"][0]
    assert "it would be 9996x28, an aspect ratio of 357:1" in bad["errors"][0]


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


def test_each_batch_is_scored_on_its_own_and_once() -> None:
    """Batches are told apart by identity, not by id(), which Python reuses for a new list; the four
    reward functions of one batch share one computation."""
    import asyncio

    from prcli.judge import JudgeConfig, build_judge
    from prcli.train.rewards import BatchRewards
    from prcli.verify import VerifierPool

    with VerifierPool(workers=1) as pool:
        rewards = BatchRewards(build_judge(JudgeConfig()), pool=pool, samples_path=None)

        async def step(answer: str) -> list[list[float | None]]:
            completions = [[{"role": "assistant", "content": "\\boxed{5}"}]]
            kw = {"answer": [answer], "annotations": [["x"]], "id": ["q"]}
            return list(await asyncio.gather(*(f(["p"], completions, **kw) for f in rewards.functions())))

        results = [asyncio.run(step(a))[0] for a in ["5", "6", "5", "6", "5", "6"]]
    assert results == [[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]]
    assert rewards.batches == 6


def test_a_broken_sharing_contract_stops_instead_of_giving_stale_rewards() -> None:
    import asyncio

    from prcli.judge import JudgeConfig, build_judge
    from prcli.train.rewards import BatchRewards
    from prcli.verify import VerifierPool

    with VerifierPool(workers=1) as pool:
        kw = {"annotations": [["x"]], "id": ["q"]}
        completions = [[{"role": "assistant", "content": "\\boxed{5}"}]]

        async def call(rewards: BatchRewards, which: int, comps: list, answer: str) -> list[float | None]:
            return await rewards.functions()[which](["p"], comps, answer=[answer], **kw)

        # one list object reused, changed in place, for the next batch: asked twice -> an error
        rewards = BatchRewards(build_judge(JudgeConfig()), pool=pool, samples_path=None)
        assert asyncio.run(call(rewards, 0, completions, "5")) == [1.0]
        completions[0] = [{"role": "assistant", "content": "\\boxed{6}"}]
        with pytest.raises(StageError, match="reward 'accuracy' was asked twice"):
            asyncio.run(call(rewards, 0, completions, "6"))

        # a new batch before every function asked for the last one (a copy per function) -> an error
        rewards = BatchRewards(build_judge(JudgeConfig()), pool=pool, samples_path=None)
        asyncio.run(call(rewards, 0, completions, "5"))
        with pytest.raises(StageError, match=r"only \['accuracy'\] of the last one"):
            asyncio.run(call(rewards, 1, list(completions), "5"))


def test_trl_calls_the_reward_functions_as_batch_rewards_expects(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The contract, against the installed TRL's own `_calculate_rewards`: one computation a batch."""
    from prcli.judge import JudgeConfig, build_judge
    from prcli.train.data import load_dataset_rows, load_processor
    from prcli.train.rewards import BatchRewards
    from prcli.train.trainer import trainer_class
    from prcli.verify import VerifierPool

    data = annotated_set(tmp_path, n=2)
    cfg = TrainConfig(model=str(tiny_model_dir), data=data, output_dir=tmp_path / "run", device="cpu")
    cfg = cfg.model_copy(update={"prompts_per_step": 2, "num_generations": 2, "per_device_batch_size": 4})
    processor = load_processor(cfg)
    dataset, _ = load_dataset_rows(data, cfg, processor)
    with VerifierPool(workers=1) as pool:
        rewards = BatchRewards(build_judge(JudgeConfig()), pool=pool, samples_path=None)
        trainer = trainer_class(False, cfg.card(2))(
            model=str(tiny_model_dir),
            reward_funcs=rewards.functions(),
            args=build_grpo_config(cfg),
            train_dataset=dataset,
            processing_class=processor,
        )
        rows = [dataset[0], dataset[0], dataset[1], dataset[1]]
        prompts = [r["prompt"] for r in rows]

        def completions() -> list:  # a new list per batch, as TRL makes one
            answers = [f"<answer>\\boxed{{{r['answer']}}}</answer>" for r in rows]
            answers[1] = "no answer"
            return [[{"role": "assistant", "content": a}] for a in answers]

        for _ in range(2):
            table = trainer._calculate_rewards(rows, prompts, completions(), [[1]] * 4)
    assert rewards.batches == 2  # one computation per call, shared by the four functions
    assert table[:, 0].tolist() == [1.0, 0.0, 1.0, 1.0]  # accuracy column, in REWARD_NAMES order
