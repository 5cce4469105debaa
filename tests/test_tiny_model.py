"""The tiny VLM: built locally, saved, reloaded by the Auto classes, generates from an image on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from prcli.cli import app
from prcli.tiny import build_tiny_model


def _generate(model_dir: Path, n_images: int = 1) -> tuple[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    images = [Image.new("RGB", (64, 64), c) for c in ["red", "blue"][:n_images]]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": "Find the length of AB."}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == 4 * n_images  # 64x64 -> 4x4 patches -> 2x2 merged tokens
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    return processor.decode(new, skip_special_tokens=True), new


def test_qwen25_round_trip(tiny_model_dir: Path) -> None:
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_model_dir).model_type == "qwen2_5_vl"
    text, ids = _generate(tiny_model_dir, n_images=2)
    assert isinstance(text, str) and 1 <= len(ids) <= 6
    # greedy generation of a saved model is reproducible after a reload
    assert _generate(tiny_model_dir, n_images=2)[1].tolist() == ids.tolist()


def test_same_seed_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a = load_file(build_tiny_model(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_model(tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(build_tiny_model(tmp_path / "c", seed=4) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_cli_builds_qwen2_vl(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "m"), "--family", "qwen2-vl"])
    assert result.exit_code == 0, result.output
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "m").model_type == "qwen2_vl"
    text, _ = _generate(tmp_path / "m")
    assert isinstance(text, str)


def test_cli_rejects_unknown_family(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "m"), "--family", "llava"])
    assert result.exit_code == 2
    assert "--family must be one of qwen2.5-vl, qwen2-vl" in result.output
    assert not (tmp_path / "m").exists()


def test_chat_template_renders_text_only_turns(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(
        [{"role": "system", "content": "Judge."}, {"role": "user", "content": "AB = 3"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert (
        text
        == "<|im_start|>system\nJudge.<|im_end|>\n<|im_start|>user\nAB = 3<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.decode(tok.encode("The answer is \\boxed{42}.")) == "The answer is \\boxed{42}."


@pytest.mark.parametrize("bad", ["", "llava"])
def test_build_rejects_unknown_family(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_model(tmp_path, bad)  # type: ignore[arg-type]


def test_local_generation_reports_whether_an_answer_was_cut(tiny_model_dir: Path) -> None:
    """The hf backends tell a reply that stopped from one cut at max_new_tokens, as servers do."""
    from prcli.generation import ChatGenerator

    gen = ChatGenerator(str(tiny_model_dir), device="cpu")
    conv = [[{"role": "user", "content": "Is AB = 3?"}]]
    ((text, reason),) = gen.chat_with_reasons(conv, max_new_tokens=6)
    assert reason == "length" and text  # an untrained model rambles to the limit
    first = gen.tokenizer(text, add_special_tokens=False)["input_ids"][0]
    gen.model.generation_config.eos_token_id = first  # make its first token an end of answer
    ((_, reason),) = gen.chat_with_reasons(conv, max_new_tokens=6)
    assert reason == "stop"
