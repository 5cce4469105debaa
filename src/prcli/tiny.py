"""A tiny, randomly initialised Qwen-VL model built locally (no hub): for tests, the demo and CI.

The model is the real transformers architecture (same code path as Qwen2.5-VL-7B), only small:
a byte-level BPE tokenizer trained in a second on an embedded corpus, a Qwen-style chat template,
the real image/video processors with small pixel bounds, and a 2-layer text model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

Family = Literal["qwen2.5-vl", "qwen2-vl"]
FAMILIES: tuple[str, ...] = ("qwen2.5-vl", "qwen2-vl")

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The structure of Qwen2-VL's chat template: a default system turn, images as
# <|vision_start|><|image_pad|><|vision_end|> where they appear in the content list.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# What the tokenizer learns its merges from: the words the demo, the tests and the R1 prompt use,
# so that prompts and answers tokenize into few tokens.
_CORPUS = """
You FIRST think about the reasoning process as an internal monologue and then provide the final answer.
The reasoning process MUST BE enclosed within <think> </think> tags, and the answer process MUST BE
enclosed within <answer> </answer> tags. The final answer MUST BE put in \\boxed{} in <answer> </answer> tags.
<think>
The triangle ABC has AB = 3 cm, BC = 4 cm and the angle ABC = 90 degrees. So AC = 5.
</think>
<answer>
The answer is \\boxed{5}.
</answer>
Find the length of the side x. Find the measure of angle 1. Find the area of the rectangle.
The square has side 7. The circle has radius 2 and center O. Point D is the midpoint of segment AB.
Line GE is perpendicular to DF at point E. JKLM is a parallelogram. The sum of the interior angles is 360.
Question: Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Choices: (A) 12 (B) 24 (C) 36 (D) 48. Answer: B. The answer is 42. parallel perpendicular bisects equal
length width height area perimeter radius diameter angle degrees triangle square circle rectangle
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 25 30 45 60 90 100 180 360 + - * / = ( ) [ ] { } , . : ; ? !
You are a helpful assistant. user assistant system Picture Video image red blue green yellow shape
From the figure, the left shape is red; the right shape is blue. The colours are different, so the answer is no.
From the figure, the left shape is orange; the right shape is purple. The colours are the same, so the answer is yes.
Are the two shapes in the figure the same colour? What colour is the left shape in the figure? right
How many green circles are in the figure? Counting the purple squares and ignoring the other triangles
What colour is the largest shape? leftmost Comparing the sizes, Going from left to right, the first one
Does point P lie on segment CD? Segments AB and CD are drawn. neither
"""


def _train_tokenizer(vocab_size: int = 1024):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok


def build_tokenizer():
    """A `Qwen2Tokenizer` with Qwen's special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    trained = json.loads(_train_tokenizer().to_str())
    vocab: dict[str, int] = trained["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    family: Family = "qwen2.5-vl",
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
) -> Path:
    """Build and save a tiny VLM of `family` into `out_dir`; returns the directory.

    The directory loads with `AutoModelForImageTextToText.from_pretrained` and
    `AutoProcessor.from_pretrained`, like any hub checkpoint of that family.
    """
    import torch

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads, kv_heads = 4, 2
    head_dim = hidden_size // heads
    mrope = [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]  # sums to head_dim / 2
    mrope[0] += head_dim // 2 - sum(mrope)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=2, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )

    if family == "qwen2.5-vl":
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
        )

        vision.update(
            intermediate_size=64, out_hidden_size=hidden_size, window_size=112, fullatt_block_indexes=[1]
        )
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor_cls = Qwen2_5_VLProcessor
    else:
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        vision.update(embed_dim=32, mlp_ratio=2, in_channels=3)
        vision.pop("hidden_size")
        vision["hidden_size"] = hidden_size
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **common)
        model = Qwen2VLForConditionalGeneration(config)
        processor_cls = Qwen2VLProcessor

    from transformers import GenerationConfig, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=CHAT_TEMPLATE,
    )
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
